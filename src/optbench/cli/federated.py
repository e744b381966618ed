"""``optbench federated``: compare federated strategies on a task over seeds (docs/federated.md).

Parsing and printing only: the runs are :func:`optbench.federated.simulation.run_federated`, the
statistics :mod:`optbench.federated.summary`, the figure :mod:`optbench.federated.plot`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optbench.cli.common import check_count, command_line, handle_errors, stdout_console
from optbench.core.errors import ConfigError

DEFAULT_FEDERATED_OUT = Path("optbench-out") / "federated"
ALL_STRATEGIES = "fedavg,fedprox,fedadam,fedyogi,fedadagrad"


def _json_ready(value: object) -> object:
    """``value`` with NaN/inf floats as None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def parse_strategies(text: str) -> list[str]:
    """The comma-separated strategy names of ``text`` in order, each checked against the registry.

    Raises:
        ConfigError: an empty list or a name given twice; UnknownNameError: an unknown name.
    """
    from optbench.federated.strategies import STRATEGIES

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError("--strategy", text, STRATEGIES.names())
    canonical = [STRATEGIES.canonical(n) for n in names]
    if len(set(canonical)) != len(canonical):
        raise ConfigError("--strategy", text, "distinct names")
    return canonical


def federated_command(
    task: Annotated[str, typer.Option(help="Task name (e.g. mnist1d_mlp, digits_mlp).")] = "mnist1d_mlp",
    strategy: Annotated[str, typer.Option(help="Comma-separated strategies: fedavg, fedprox, fedadam, fedyogi, "
                                               "fedadagrad.")] = ALL_STRATEGIES,
    clients: Annotated[int, typer.Option(help="Clients the training split is divided among.")] = 10,
    fraction: Annotated[float, typer.Option(help="Fraction of clients sampled per round, in (0, 1].")] = 0.5,
    rounds: Annotated[int, typer.Option(help="Communication rounds.")] = 20,
    local_epochs: Annotated[int, typer.Option(help="Local epochs per round on each sampled client.")] = 1,
    partition: Annotated[str, typer.Option(help="Client split: iid or dirichlet (label skew, Hsu et al. 2019).")]
    = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet concentration for --partition dirichlet "
                                              "(smaller: more skewed).")] = 0.5,
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1).")] = 3,
    lr: Annotated[float, typer.Option(help="Clients' learning rate.")] = 0.1,
    optimizer: Annotated[str, typer.Option(help="Clients' optimizer (a name of `optbench list optimizers`).")]
    = "sgd",
    batch_size: Annotated[int, typer.Option(help="Clients' batch size.")] = 32,
    train_size: Annotated[int | None, typer.Option(help="Training examples divided among the clients (a seeded "
                                                        "subset; default: all).")] = None,
    mu: Annotated[float | None, typer.Option(help="FedProx's proximal strength mu (default 0.01).")] = None,
    server_lr: Annotated[float | None, typer.Option(help="Server learning rate eta of fedadam/fedyogi/fedadagrad "
                                                         "(default 0.03).")] = None,
    tau: Annotated[float | None, typer.Option(help="Adaptivity tau of fedadam/fedyogi/fedadagrad "
                                                   "(default 1e-3).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for federated.json and federated_accuracy.png.")]
    = DEFAULT_FEDERATED_OUT,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; print the table only.")] = False,
) -> None:
    """Federated learning with Flower: strategies compared on a task split among clients, over seeds.

    Prints the final test accuracy of each strategy (mean and 95% bootstrap CI over seeds), writes
    OUT/federated.json (every round of every run: accuracy, loss, bytes communicated, seconds) and
    OUT/federated_accuracy.png (test accuracy against the communication round, mean and CI band).
    """
    from optbench.federated.plot import save_accuracy_plot
    from optbench.federated.simulation import FederatedConfig, check_federated, run_federated
    from optbench.federated.summary import final_rows, round_curves
    from optbench.tasks import get_task

    names = parse_strategies(strategy)
    check_count("--seeds", seeds)
    base = FederatedConfig(strategy=names[0], clients=clients, fraction=fraction, rounds=rounds,
                           local_epochs=local_epochs, partition=partition, alpha=alpha, optimizer=optimizer, lr=lr,
                           batch_size=batch_size, train_size=train_size)
    overrides = {k: v for k, v in (("mu", mu), ("server_lr", server_lr), ("tau", tau)) if v is not None}
    base = replace(base, **overrides)
    configs = [replace(base, strategy=n) for n in names]
    for config in configs:
        config.validate()
    the_task = get_task(task)
    dataset = the_task.load_data()
    check_federated(the_task, base, dataset)

    progress = Console(stderr=True, highlight=False, soft_wrap=True)
    results = []
    for config in configs:
        for seed in range(seeds):
            result = run_federated(the_task, config, seed, dataset=dataset)
            results.append(result)
            if not quiet:
                progress.print(f"{config.strategy} seed {seed}: test accuracy {result.final():.4f} after "
                               f"{len(result.rounds) - 1} rounds ({result.status}, {result.seconds:.1f} s)",
                               markup=False)

    rows = final_rows(results)
    curves = round_curves(results)
    setting = (f"{the_task.name}, {clients} clients ({partition}" + (f", alpha={alpha:g}" if partition == "dirichlet"
                                                                      else "")
               + f"), fraction {fraction:g}, {rounds} rounds x {local_epochs} local epoch(s), {optimizer} lr={lr:g}, "
               f"{seeds} seed(s)")
    table = Table(title=f"Federated: {setting}", title_justify="left")
    for column in ("strategy", "final test acc (mean)", "95% CI", "std", "MB sent", "s/run", "diverged"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for row in sorted(rows, key=lambda r: -r.final.mean if r.final.n else 0.0):
        s = row.final
        ci = "-" if s.n < 2 else f"[{100 * s.ci_low:.2f}, {100 * s.ci_high:.2f}]"
        table.add_row(row.strategy, f"{100 * s.mean:.2f}%", ci, "-" if s.n < 2 else f"{100 * s.std:.2f}",
                      f"{row.megabytes:.1f}", f"{row.seconds:.1f}", str(row.diverged))
    stdout_console().print(table)

    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": command_line(sys.argv[1:]),
        "task": the_task.name,
        "config": {k: v for k, v in asdict(base).items() if k != "strategy"},
        "strategies": names,
        "seeds": list(range(seeds)),
        "summary": [{"strategy": r.strategy, "final_test_accuracy": asdict(r.final), "megabytes": r.megabytes,
                     "seconds_per_run": r.seconds, "diverged": r.diverged} for r in rows],
        "curves": {name: asdict(c) for name, c in curves.items()},
        "runs": [r.to_dict() for r in results],
    }
    json_path = out / "federated.json"
    json_path.write_text(json.dumps(_json_ready(payload), indent=1, allow_nan=False) + "\n")
    png_path = save_accuracy_plot(curves, out / "federated_accuracy.png", title=setting)
    if not quiet:
        progress.print(f"wrote {json_path} and {png_path}", markup=False)


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add ``federated`` to ``app`` (``errors``: the decorator turning optbench errors into exit codes)."""
    app.command("federated")(errors(federated_command))


__all__ = ["federated_command", "parse_strategies", "register"]
