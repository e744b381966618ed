"""``optbench run`` and ``optbench scale``: distributed training from the command line.

Both take the technique options of ``optbench compare`` (:mod:`optbench.cli.techniques`). Bad input
raises :class:`~optbench.core.errors.ConfigError` before any process starts (one line, exit 2); a
failed or timed-out job raises :class:`~optbench.engine.distributed.DistributedError` (exit 1).
Heavy imports happen inside the commands, so ``--help`` stays fast. The tables are computed in
:mod:`optbench.analysis.scaling` and only rendered here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from optbench.cli.common import (
    DEFAULT_OUT,
    DEFAULT_STORE,
    LOG_HELP,
    SAVE_WEIGHTS_HELP,
    check_count,
    check_lr,
    given_store,
    handle_errors,
    warning_printer,
)
from optbench.cli.techniques import TechniqueOptions, technique_options
from optbench.core.errors import ConfigError
from optbench.study.reference import DEFAULT_TRAIN_SIZE, REFERENCE_TASK

PREDICT_NPROC = "1,2,4,8,16,32,64,128,256,512"
RUN_LOG_HELP = LOG_HELP.replace("Log every run live, per epoch", "Log the run when it ends (the distributed engines "
                                 "report no epochs while they train)").replace("OUT/", f"{DEFAULT_OUT}/")
STORE_HELP = f"Results database: SQLite file or SQLAlchemy URL (default: $OPTBENCH_STORE, else {DEFAULT_STORE})."


# ---------------------------------------------------------------- shared option handling
def build_config(*, task: str, mode: str, nproc: int, optimizer: str | None, lr: float | None,
                 batch_size: int | None, epochs: int | None, train_size: str, seed: int, threads: int,
                 timeout: float, options: TechniqueOptions | None = None,
                 kill_worker: str | None = None, max_restarts: int = 0,
                 checkpoint_dir: str | None = None) -> tuple[Any, Any]:
    """A validated :class:`DistributedConfig` and its Task; missing recipe values come from the task's
    working recipe, the schedule, precision and techniques from ``options``. Loads (and if needed
    fetches) the data once here, so that children never download and ``--train-size auto`` (10,000 or
    all if fewer) is resolved before the run id is computed.

    Raises:
        ConfigError / UnknownNameError: bad input. DataUnavailableError: data cannot be obtained.
    """
    from optbench.core.spec import Recipe
    from optbench.engine.distributed import DistributedConfig, parse_mode, validate
    from optbench.engine.distributed.config import parse_kill_worker
    from optbench.tasks import get_task

    options = options or TechniqueOptions()
    parse_mode(mode)
    for field, value in (("--nproc", nproc), ("--batch-size", batch_size), ("--epochs", epochs),
                         ("--threads", threads)):
        check_count(field, value)
    kill = parse_kill_worker(kill_worker, nproc) if kill_worker is not None else None
    check_lr(lr)
    if not timeout > 0:
        raise ConfigError("--timeout", timeout, "a number of seconds > 0")
    task_obj = get_task(task)
    working = dict(task_obj.recipe)
    hyperparams = dict(working.get("hyperparams", {})) if optimizer is None else {}
    if lr is not None:
        hyperparams["lr"] = lr
    available = len(task_obj.load_data().train) - task_obj.valid_size
    size = _train_size(train_size, available)
    recipe = Recipe(optimizer=optimizer or working.get("optimizer", "sgd"), hyperparams=hyperparams,
                    batch_size=batch_size or working.get("batch_size", 128), epochs=epochs or working.get("epochs", 1),
                    train_size=size, schedule=options.schedule, schedule_params=options.schedule_params,
                    precision=options.precision, techniques=options.techniques)
    config = DistributedConfig(task=task, recipe=recipe, mode=mode, nproc=nproc, seed=seed, threads=threads,
                               timeout=timeout, kill_worker=kill, max_restarts=max_restarts,
                               checkpoint_dir=checkpoint_dir)
    validate(config)
    if (size or available) < config.global_batch:
        raise ConfigError("--batch-size", recipe.batch_size,
                          f"at most {(size or available) // nproc} with {nproc} workers and {size or available} "
                          "training examples")
    return config, task_obj


def _train_size(text: str, available: int) -> int | None:
    word = text.strip().lower()
    if word == "all":
        return None
    if word == "auto":
        return DEFAULT_TRAIN_SIZE if available > DEFAULT_TRAIN_SIZE else None
    allowed = f"an integer in [1, {available}], 'all' or 'auto'"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError("--train-size", text, allowed) from None
    if not 1 <= value <= available:
        raise ConfigError("--train-size", text, allowed)
    return value


def _open(store: str | None) -> Any:
    """The store of ``run``/``scale``: ``--store``, else ``$OPTBENCH_STORE``, else :data:`DEFAULT_STORE`
    (whose directory is created)."""
    from optbench.runs.store import open_store

    chosen = given_store(store)
    if chosen is None:
        DEFAULT_STORE.parent.mkdir(parents=True, exist_ok=True)
    return open_store(chosen or DEFAULT_STORE)


def _target(task_obj: Any, target: float | None) -> tuple[str, float, Any]:
    key = task_obj.target.key
    return key, (task_obj.target.value if target is None else target), task_obj.direction(key)


# ---------------------------------------------------------------- run
def _epoch_table(run: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"{run.result.task} {run.config.mode} x{run.config.nproc} (run {run.result.run_id})")
    for column in ("epoch", "train loss", "valid acc", "test acc", "train s", "samples/s"):
        table.add_column(column, justify="right")
    for e in run.result.epochs:
        m = e.metrics
        table.add_row(str(e.epoch), f"{m.get('train_loss', math.nan):.4f}", f"{m.get('valid_accuracy', math.nan):.4f}",
                      f"{m.get('test_accuracy', math.nan):.4f}", f"{e.train_seconds:.2f}",
                      f"{e.samples_per_second:,.0f}")
    return table


def _study_config(config: Any, kind: str) -> dict[str, Any]:
    return {"protocol": kind, "task": config.task, "recipe": config.recipe.to_dict(), "seed": config.seed,
            "threads": config.threads}


# ---------------------------------------------------------------- scale
def scale_tables(runs: Sequence[Any], task_obj: Any, target: float | None) -> tuple[Any, Any, str]:
    """Two rich tables: samples/s and efficiency per mode x processes, and time-to-target; plus the
    sentence naming the efficiency baseline (numbers: :func:`optbench.analysis.scaling.scaling_table`)."""
    from rich.table import Table

    from optbench.analysis.scaling import measured_points, scaling_table

    key, value, direction = _target(task_obj, target)
    table = scaling_table(measured_points(runs, key, value, direction))
    throughput = Table(title=f"{task_obj.name}: samples/s (scaling efficiency against ideal)")
    ttt_table = Table(title=f"time-to-target: training seconds until {key} >= {value:g}")
    for t in (throughput, ttt_table):
        t.add_column("mode")
        for n in table.counts:
            t.add_column(f"{n} proc", justify="right")
    for mode in table.modes:
        cells, ttt_cells = [], []
        for n in table.counts:
            p = table.points.get((mode, n))
            cells.append("-" if p is None else f"{p.samples_per_second:,.0f} ({table.efficiency[(mode, n)]:.0%})")
            ttt_cells.append("-" if p is None else ("not reached" if p.time_to_target is None
                                                    else f"{p.time_to_target:.2f} s"))
        throughput.add_row(mode, *cells)
        ttt_table.add_row(mode, *ttt_cells)
    if table.ratio:
        throughput.add_row("ddp / ps-sync", *(f"{table.ratio[n]:.2f}" if n in table.ratio else "-"
                                              for n in table.counts))
    return throughput, ttt_table, table.baseline


def prediction_tables(models: Sequence[str], gbps: Sequence[float], nprocs: Sequence[int], *, overlap: float,
                      latency_us: float, servers: int) -> list[Any]:
    """Rich tables of predicted efficiency per model (rows: workers; columns: algorithm x bandwidth) and
    the predicted-versus-published check."""
    from rich.table import Table

    from optbench.analysis.scaling import MODELS, check_published, prediction_grid

    tables = []
    grid = {(p.model, p.algorithm, p.gbps, p.n): p
            for p in prediction_grid(models, gbps, nprocs, overlap=overlap, latency=latency_us * 1e-6, servers=servers)}
    for model in models:
        w = MODELS.get(model)
        table = Table(title=f"{model}: predicted scaling efficiency ({w.parameters / 1e6:.1f}M parameters, "
                            f"{w.compute_seconds * 1e3:.0f} ms compute per step at batch {w.batch_size}); "
                            f"ring = ring all-reduce, PS = {servers} parameter server(s); Gbit/s",
                      caption=w.source)
        table.add_column("workers", justify="right")
        for algorithm in ("allreduce", "ps"):
            for b in gbps:
                table.add_column(f"{'ring' if algorithm == 'allreduce' else 'PS'} {b:g}G", justify="right")
        for n in nprocs:
            table.add_row(str(n), *(f"{grid[(model, a, b, n)].efficiency:.0%}" for a in ("allreduce", "ps")
                                    for b in gbps))
        tables.append(table)
    check = Table(title=f"predicted vs published (ring all-reduce, overlap {overlap:g}, latency {latency_us:g} us)")
    for column in ("model", "workers", "Gb/s", "published", "predicted", "overlap 0 .. 1", "source"):
        check.add_column(column)
    for c in check_published(overlap=overlap, latency=latency_us * 1e-6):
        p = c.published
        check.add_row(p.model, str(p.n), f"{p.gbps:g}", f"{p.efficiency:.0%}", f"{c.predicted:.0%}",
                      f"{c.low:.0%} .. {c.high:.0%}", p.source.split(",")[0])
    tables.append(check)
    return tables


# ---------------------------------------------------------------- registration
def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add the commands ``run`` and ``scale`` to ``app`` (``errors``: the decorator turning optbench
    errors into exit codes: ConfigError -> one line and exit 2, other optbench errors -> exit 1)."""

    @app.command("run")
    @errors
    @technique_options
    def run(
        mode: Annotated[str, typer.Option(help="ddp, fsdp, ps-sync, ps-async, ps-ssp:S (S = staleness bound) or "
                                          "ddp+METHOD (fp16, bf16, powersgd:R, topk:F, local:H, diloco:H).")
                        ] = "ddp",
        nproc: Annotated[int | None, typer.Option(help="Workers N (server modes start N + 1 processes) "
                                                       "(default: 2; under torchrun: from WORLD_SIZE).")] = None,
        task: Annotated[str, typer.Option(help="Task name or 'module:factory'.")] = REFERENCE_TASK,
        optimizer: Annotated[str | None, typer.Option(help="Optimizer (default: the task's recipe).")] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate (default: the task's recipe).")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Batch size PER WORKER (default: the task's).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Epochs (default: the task's recipe).")] = None,
        train_size: Annotated[str, typer.Option(help="Training examples: a number, 'all' or 'auto' "
                                                     f"({DEFAULT_TRAIN_SIZE:,} or all if fewer).")] = "auto",
        seed: Annotated[int, typer.Option(help="Seed of initialization, split and data order.")] = 0,
        target: Annotated[float | None, typer.Option(help="Target for time-to-target (default: the task's).")] = None,
        threads: Annotated[int, typer.Option(help="CPU threads per process.")] = 1,
        timeout: Annotated[float, typer.Option(help="Stop the job with an error after this many seconds.")] = 3600.0,
        kill_worker: Annotated[str | None, typer.Option(
            metavar="WORKER@STEP", help="Failure injection: worker WORKER (0..N-1) kills itself (SIGKILL) before its "
            "global step STEP; ps-async and ps-ssp go on without it and record the loss, the other modes fail "
            "cleanly.")] = None,
        max_restarts: Annotated[int, typer.Option(help="ddp and ps-sync: start a failed job again from its last "
                                                  "per-epoch checkpoint, up to this many times (under torchrun use "
                                                  "its --max-restarts with --checkpoint-dir).")] = 0,
        checkpoint_dir: Annotated[str | None, typer.Option(help="Where every process keeps its per-epoch "
                                                           "checkpoint (ddp, ps-sync; default with "
                                                           "--max-restarts: a temporary directory).")] = None,
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        study: Annotated[str | None, typer.Option(help="Study name (default: distributed-<task>).")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print the summary only.")] = False,
        log: Annotated[list[str] | None, typer.Option("--log", metavar="KIND[:WHERE]", help=RUN_LOG_HELP)] = None,
        save_weights: Annotated[bool, typer.Option("--save-weights", help=SAVE_WEIGHTS_HELP + " Distributed runs "
                                                   "store the trained weights (rank 0's model).")] = False,
        *,
        options: TechniqueOptions,
    ) -> None:
        """Train with one distributed mode on N local processes (or as one rank of a torchrun job) and
        print samples/s, per-step compute/communication/waiting, staleness and time-to-target."""
        from rich.console import Console

        from optbench.engine.distributed import run_distributed, run_under_torchrun, torchrun_nproc, under_torchrun
        from optbench.tracking import open_tracking, parse_logs

        logs = parse_logs(log)
        distributed = under_torchrun()
        workers = nproc if nproc is not None else (torchrun_nproc(mode) if distributed else 2)
        config, task_obj = build_config(task=task, mode=mode, nproc=workers, optimizer=optimizer, lr=lr,
                                        batch_size=batch_size, epochs=epochs, train_size=train_size, seed=seed,
                                        threads=threads, timeout=timeout, options=options,
                                        kill_worker=kill_worker, max_restarts=max_restarts,
                                        checkpoint_dir=checkpoint_dir)
        weights = None
        if save_weights:  # checked before anything runs; the run returns its final weights
            from dataclasses import replace as _replace

            from optbench.runs.weights import weights_for

            weights = weights_for(given_store(store) or DEFAULT_STORE, saving=True)
            config = _replace(config, keep_state=True)
        if distributed and os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 stores and prints
            run_under_torchrun(config)
            return
        console = Console(stderr=True, quiet=quiet)
        study_name = study or f"distributed-{task_obj.name}"
        with open_tracking(logs, out=DEFAULT_OUT, study=study_name, warn=warning_printer()) as tracking, \
                _open(store) as db:
            db.ensure_study(study_name, _study_config(config, "distributed"))
            console.print(f"[bold]optbench run[/] task={task_obj.name} mode={config.mode} nproc={config.nproc} "
                          f"optimizer={config.recipe.optimizer} {config.recipe.hyperparams} "
                          f"batch_size={config.recipe.batch_size}/worker epochs={config.recipe.epochs}")
            result = run_under_torchrun(config) if distributed else run_distributed(config)
            assert result is not None  # rank 0 always gets the result
            written = db.save_run(result.result, study=study_name)
            if weights is not None and result.result.status.value == "finished" and result.final_state is not None:
                weights.save(result.result.run_id, result.final_state)
            tracking.complete([db.get_run(result.result.run_id) or result.result])  # the stored numbers
            for logger in tracking.loggers:
                console.print(f"logged to {logger.where}", markup=False)
        if not quiet:
            Console().print(_epoch_table(result))
        key, value, direction = _target(task_obj, target)
        for line in result.describe(key, value, direction):
            typer.echo(line)
        typer.echo(f"stored as run {result.result.run_id} in study {study_name}"
                   + ("" if written else " (an identical run was stored before; kept)"))

    @app.command("scale")
    @errors
    @technique_options
    def scale(
        task: Annotated[str, typer.Option(help="Task name or 'module:factory'.")] = REFERENCE_TASK,
        modes: Annotated[str, typer.Option(help="Comma-separated modes (as run --mode).")
                         ] = "ddp,ps-sync,ps-async,ps-ssp:2",
        nproc: Annotated[str | None, typer.Option(help="Comma-separated worker counts (default: 1,2; with "
                                                       f"--predict: {PREDICT_NPROC}].")] = None,
        optimizer: Annotated[str | None, typer.Option(help="Optimizer (default: the task's recipe).")] = None,
        lr: Annotated[float | None, typer.Option(help="Learning rate (default: the task's recipe).")] = None,
        batch_size: Annotated[int | None, typer.Option(help="Batch size PER WORKER (default: the task's).")] = None,
        epochs: Annotated[int | None, typer.Option(help="Epochs (default: the task's recipe).")] = None,
        train_size: Annotated[str, typer.Option(help="Training examples: a number, 'all' or 'auto'.")] = "auto",
        seed: Annotated[int, typer.Option(help="Seed.")] = 0,
        target: Annotated[float | None, typer.Option(help="Target for time-to-target (default: the task's).")] = None,
        threads: Annotated[int, typer.Option(help="CPU threads per process.")] = 1,
        timeout: Annotated[float, typer.Option(help="Limit per job (s).")] = 3600.0,
        store: Annotated[str | None, typer.Option(help=STORE_HELP)] = None,
        study: Annotated[str | None, typer.Option(help="Study name (default: scale-<task>-<settings hash>).")] = None,
        predict: Annotated[bool, typer.Option("--predict", help="Print the cost model's predictions instead of "
                                                                "measuring.")] = False,
        models: Annotated[str, typer.Option(help="--predict: comma-separated built-in models.")]
        = "vgg16,resnet50,resnet101,inception_v3",
        bandwidth: Annotated[str, typer.Option(help="--predict: link bandwidths in Gbit/s.")] = "10,25,100",
        latency_us: Annotated[float, typer.Option(help="--predict: latency per message (us).")] = 10.0,
        overlap: Annotated[float, typer.Option(help="--predict: share of communication hidden behind backward "
                                                    "(0..1).")] = 0.5,
        servers: Annotated[int, typer.Option(help="--predict: parameter servers the model is sharded over.")] = 1,
        reference: Annotated[bool, typer.Option("--reference", help="--predict: the reference experiment's "
                                                "setting (16 K80 GPUs, 25 Gbit/s, its five networks) beside its "
                                                "conclusions.")] = False,
        calibrate: Annotated[bool, typer.Option(help="Measure the local link first and print the cost model's "
                                                "prediction of every multi-process job before it runs.")] = True,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Tables only.")] = False,
        *,
        options: TechniqueOptions,
    ) -> None:
        """Measure each mode at each process count (stored; finished jobs are not repeated) and report
        samples/s, scaling efficiency against ideal and time-to-target; or, with --predict, the cost model's
        predicted efficiency of large models on clusters, checked against published results."""
        from rich.console import Console

        from optbench.engine.distributed import parse_counts, parse_modes

        out = Console()
        if predict:
            from optbench.analysis.scaling import MODELS

            names = [m.strip() for m in models.split(",") if m.strip()]
            if not names:
                raise ConfigError("--models", models, MODELS.names())
            for name in names:
                MODELS.canonical(name)
            gbps = _numbers(bandwidth, "--bandwidth")
            if not (latency_us >= 0 and math.isfinite(latency_us)):
                raise ConfigError("--latency-us", latency_us, "a number >= 0")
            if not 0 <= overlap <= 1:
                raise ConfigError("--overlap", overlap, "a number in [0, 1]")
            if servers < 1:
                raise ConfigError("--servers", servers, "an integer >= 1")
            counts = parse_counts(nproc or PREDICT_NPROC, maximum=1_000_000)
            if reference:
                from optbench.cli.scale_reference import reference_tables

                for table in reference_tables(overlap=overlap):
                    out.print(table)
                return
            for table in prediction_tables(names, gbps, counts, overlap=overlap, latency_us=latency_us,
                                           servers=servers):
                out.print(table)
            return
        from dataclasses import replace

        from optbench.engine.distributed.sweep import run_sweep

        mode_list = parse_modes(modes)
        counts = parse_counts(nproc or "1,2")
        config, task_obj = build_config(task=task, mode=mode_list[0].name, nproc=max(counts), optimizer=optimizer,
                                        lr=lr, batch_size=batch_size, epochs=epochs, train_size=train_size, seed=seed,
                                        threads=threads, timeout=timeout, options=options)
        configs = [replace(config, mode=m.name, nproc=n) for m in mode_list for n in counts]
        console = Console(stderr=True, quiet=quiet)
        settings = _study_config(config, "scale") | {"modes": [m.name for m in mode_list], "nproc": list(counts)}
        study_name = study or f"scale-{task_obj.name}-{_digest(settings)}"
        calibration = None
        if calibrate and max(counts) > 1 and min(counts) == 1:  # the model predicts N from 1 process
            from optbench.cli.scale_reference import calibrate as measure_link

            calibration = measure_link(task_obj, timeout)
            settings = settings | {"calibration": calibration.to_dict()}  # not part of the study's name
        with _open(store) as db:
            db.ensure_study(study_name, settings)
            if calibration is None:
                runs = run_sweep(configs, db, study_name, task_obj.name, emit=console.print)
                checks: list[Any] = []
            else:
                runs, checks = _predicted_sweep(configs, db, study_name, task_obj.name, calibration, console)
        throughput, ttt, baseline = scale_tables(runs, task_obj, target)
        out.print(throughput)
        out.print(ttt)
        if checks:
            from optbench.cli.scale_reference import prediction_table

            out.print(prediction_table(task_obj.name, checks, calibration))
        typer.echo(f"{baseline}; study {study_name}")


def _predicted_sweep(configs: Sequence[Any], db: Any, study: str, task_name: str, calibration: Any,
                     console: Any) -> tuple[list[Any], list[Any]]:
    """Run the 1-process jobs, print the cost model's prediction of each other job, run those, and
    return all runs and the :class:`~optbench.analysis.reference_scaling.PredictionCheck` rows."""
    from optbench.analysis.reference_scaling import PredictionCheck, one_process_compute, predictions_for
    from optbench.engine.distributed.sweep import run_sweep

    first = run_sweep([c for c in configs if c.nproc == 1], db, study, task_name, emit=console.print)
    rest = [c for c in configs if c.nproc > 1]
    predicted = predictions_for([(c.mode, c.nproc) for c in rest],
                                one_process_compute(r.result for r in first), calibration)
    for (mode, n), value in predicted.items():
        console.print(f"{mode} x{n}: predicted {value:,.0f} samples/s (before running it)")
    later = run_sweep(rest, db, study, task_name, emit=console.print)
    measured = {(r.config.mode, r.config.nproc): r.samples_per_second for r in later}
    checks = [PredictionCheck(mode, n, value, measured.get((mode, n), math.nan))
              for (mode, n), value in predicted.items()]
    return [*first, *later], checks


def _numbers(text: str, field: str) -> list[float]:
    allowed = "a comma-separated list of numbers > 0"
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(field, text, allowed) from None
    if not values or not all(v > 0 and math.isfinite(v) for v in values):
        raise ConfigError(field, text, allowed)
    return values


def _digest(settings: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


__all__ = ["DEFAULT_STORE", "build_config", "prediction_tables", "register", "scale_tables"]
