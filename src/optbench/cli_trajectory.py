"""`optbench trajectory`: optimizer paths on 2-D test functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from optbench.errors import ConfigError


def trajectory_command(
    function: Annotated[str, typer.Option(help="2-D test function (rosenbrock, beale, rastrigin, himmelblau, "
                                               "saddle, monkey_saddle, ill_conditioned_quadratic).")] = "rosenbrock",
    optimizers: Annotated[str, typer.Option(help="Comma-separated optimizer names.")] = "sgd,momentum,adam",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 500,
    lr: Annotated[list[str] | None, typer.Option(help="Learning rate: a number for all, or NAME=VALUE per "
                                                      "optimizer (repeatable).")] = None,
    noise: Annotated[float, typer.Option(help="Std of Gaussian noise added to each gradient.")] = 0.0,
    condition: Annotated[float | None, typer.Option(help="Condition number (ill_conditioned_quadratic).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the gradient noise.")] = 0,
    out: Annotated[Path, typer.Option(help="JSON file with the paths.")] = Path("trajectories.json"),
) -> None:
    """Run optimizers on a 2-D test function and record their paths (JSON: points and values)."""
    import json

    from optbench.fileio import atomic_write_text
    from optbench.study.compare import parse_optimizers
    from optbench.testfns import get_function, trajectory

    f = get_function(function, **({"condition": condition} if condition is not None else {}))
    names = parse_optimizers(optimizers)
    rates: dict[str, float] = {}
    default = 1e-3
    for item in lr or []:
        name, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError("--lr", item, "a number or NAME=NUMBER") from None
        if sep:
            rates[name] = number
        else:
            default = number
    paths = []
    for name in names:
        t = trajectory(f, name, steps=steps, noise=noise, seed=seed, lr=rates.get(name, default))
        paths.append({"optimizer": name, "hyperparams": t.hyperparams, "diverged": t.diverged,
                      "points": t.points.tolist(), "values": t.values.tolist()})
        typer.echo(f"{name:<12} lr={rates.get(name, default):<8g} final f={t.final_value:.4g}"
                   f"{'  (diverged)' if t.diverged else ''}")
    payload = {"function": f.name, "formula": f.formula, "minima": f.minima, "start": f.start,
               "bounds": f.bounds, "steps": steps, "noise": noise, "trajectories": paths}
    atomic_write_text(out, json.dumps(payload))
    typer.echo(str(out))


def register(app: typer.Typer, handle_errors: Callable) -> None:
    """Add ``trajectory`` to ``app``; ``handle_errors`` turns optbench errors into exit codes."""
    app.command("trajectory")(handle_errors(trajectory_command))
