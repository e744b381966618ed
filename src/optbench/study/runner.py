"""Run a study definition: validate, check the data, create the study in the store, dispatch to
its protocol, and write the outputs (the HTML report and ``protocol.md``).

Everything is resumable: the protocol's phases are recomputed from the stored runs (deterministic
plans, content-hashed run ids), so running the same definition again after a kill executes only
what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from optbench.core.errors import ConfigError, ConfigProblems
from optbench.core.spec import RunResult
from optbench.study.config import StudyConfig, validate_study
from optbench.study.protocols import StudyContext, protocols


@dataclass
class StudyOutcome:
    """What a study run produced.

    Attributes:
        config: the definition.
        result: the protocol's answer (a dataclass of :mod:`optbench.analysis.protocols`).
        results: every run stored for the study.
        planned: the protocol's upper bound of runs.
        files: written files (``report``, ``protocol``) once :func:`write_study_outputs` ran.
    """

    config: StudyConfig
    result: Any
    results: list[RunResult]
    planned: int
    files: dict[str, Path] = field(default_factory=dict)


def planned_runs(config: StudyConfig) -> int:
    """An upper bound of the runs ``config`` executes (shared runs between phases are counted twice)."""
    return protocols.get(config.protocol).planned_runs(config)


def study_record(config: StudyConfig) -> dict[str, Any]:
    """The JSON-ready configuration stored with the study (read by ``study status`` and reports)."""
    return {"protocol": config.protocol, "target": config.target, "planned_runs": planned_runs(config),
            "source": config.source, "definition": config.to_dict()}


def plan_context(config: StudyConfig) -> dict[str, str]:
    """What a study runs, as ``{item: text}`` (for ``--dry-run`` and ``protocol.md``)."""
    spec = protocols.get(config.protocol)
    b = config.budget
    budget = f"{b.epochs} epochs, train size {'all' if b.train_size is None else b.train_size}" + (
        f", at most {b.seconds:g} s" if b.seconds is not None else "") + (
        f", {b.trials} trials per search" if spec.needs_space else "")
    lines = {"study": f"{config.name} ({config.source})", "protocol": f"{spec.name}: {spec.summary} [{spec.source}]",
             "tasks": ", ".join(config.tasks), "seeds": ", ".join(map(str, config.seeds)), "budget": budget,
             "runs": f"at most {planned_runs(config)}"}
    lines.update({f"recipe {i}": str(r.to_dict()) for i, r in enumerate(config.recipes)})
    if config.options:
        lines["options"] = str(dict(config.options))
    if config.search is not None:
        lines["search space"] = str(dict(config.search.space_table))
    return lines


def describe_plan(config: StudyConfig) -> list[str]:
    """Lines saying what a study would run (for ``--dry-run``)."""
    return [f"{key}: {value}" for key, value in plan_context(config).items()]


def check_data(config: StudyConfig, context: StudyContext) -> None:
    """Load every task's data (fetching it if needed) and check the training-set size.

    Raises:
        ConfigError: more training examples asked for than a task's pool has after the validation split.
        DataUnavailableError: data that cannot be obtained.
    """
    for ref in config.tasks:
        task = context.task(ref)
        available = len(task.load_data().train) - task.valid_size
        size = config.budget.train_size
        if size is not None and size > available:
            raise ConfigError(f"budget.train_size for task {task.name}", size, f"an integer in [1, {available}]")


def run_study(config: StudyConfig, store: str | Path, *, workers: int = 1, device: torch.device | None = None,
              on_event: Callable[[Any], None] | None = None, create_store_dir: bool = False,
              context: StudyContext | None = None, checkpoint_dir: str | Path | None = None,
              save_weights: bool = False, weights_dir: str | Path | None = None) -> StudyOutcome:
    """Run (or resume) ``config`` with the results in ``store``.

    Validated before anything is written (names, data, training-set size, store path).

    Args:
        config: the study (from :func:`~optbench.study.config.load_study` or ``study_from_dict``).
        store: SQLite file path or SQLAlchemy URL.
        workers / device / on_event: how runs execute (see ``optbench.runs.executor.execute_plan``).
        create_store_dir: create the SQLite file's directory (after validation) when missing.
        context: a ready :class:`StudyContext` (tests, other backends); default: one on ``store``.
        checkpoint_dir: save per-epoch checkpoints there (overrides ``config.execution``; by
            default its ``[execution]`` section decides: off, or ``<store>.checkpoints``). An
            interrupted run then continues from its last finished epoch when the study is run again.
        save_weights / weights_dir: store every finished run's final weights (or the file's
            ``[execution] save_weights``) in ``weights_dir`` (default: the file's ``weights_dir``, else
            ``<store>.weights`` next to a SQLite store); runs that start from or learn from stored
            runs load them from there (:mod:`optbench.runs.weights`).

    Raises:
        ConfigProblems: every problem of ``config``.
        ConfigError: a bad worker count, train size or store path; checkpoints on without a
            ``checkpoint_dir`` for a store that is not a SQLite file; a run named by ``init_from``,
            ``lwf`` or ``ewc`` without stored weights, or saving weights without a directory (all
            before anything is written).
    """
    from optbench.runs.store import open_store
    from optbench.runs.weights import check_available

    problems = validate_study(config)
    if problems:
        raise ConfigProblems(problems)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("--workers", workers, "an integer >= 1")
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else config.execution.directory(store)
    weights = config.execution.weights(store, save=save_weights, directory=weights_dir)
    check_available(config.recipes, weights)
    context = context or StudyContext(str(store), config.name, workers, device, on_event, checkpoint_dir=directory,
                                      weights=weights)
    check_data(config, context)
    if create_store_dir and "://" not in str(store):
        Path(store).parent.mkdir(parents=True, exist_ok=True)
    with open_store(store) as db:
        db.ensure_study(config.name, study_record(config))
    result = protocols.get(config.protocol).run(config, context)
    with open_store(store) as db:
        results = db.load_runs(study=config.name)
    return StudyOutcome(config, result, results, planned_runs(config))


def write_study_outputs(outcome: StudyOutcome, store: str | Path, out: str | Path) -> dict[str, Path]:
    """Write the HTML report (``out/index.html`` with figures and tables, from the store) and
    ``out/protocol.md`` (the protocol's tables); return their paths (keys ``report``, ``protocol``).

    Raises:
        ConfigError: the study has no stored run.
        OSError: ``out`` cannot be written.
    """
    from optbench.core.fileio import atomic_write_text
    from optbench.report.html import report_from_store
    from optbench.report.protocols import protocol_markdown

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = report_from_store(store, out, study=outcome.config.name)
    protocol = out / "protocol.md"
    atomic_write_text(protocol, protocol_markdown(outcome.result, context=plan_context(outcome.config)))
    outcome.files = {"report": report.html, "protocol": protocol}
    return outcome.files


__all__ = ["StudyOutcome", "check_data", "describe_plan", "plan_context", "planned_runs", "run_study", "study_record",
           "write_study_outputs"]
