"""MLflow: one MLflow run per optbench run, in an experiment named after the study, written live
per epoch (docs/architecture.md, Layers: ``tracking/``).

Destination: a tracking URI (``sqlite:///runs.db``, ``http://host:5000``, anything
``mlflow.tracking.MlflowClient`` takes), or a local directory ``DIR`` (the default is
``OUT/mlruns``), which holds the MLflow SQLite database ``DIR/mlflow.db`` and the artifacts
``DIR/artifacts``: MLflow's plain-file tracking store is refused by MLflow 3 (its "maintenance
mode"), so a directory gets MLflow's own recommended local database instead. View:
``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db`` (the full ``mlflow`` package).

Each MLflow run holds: the parameters of :func:`optbench.tracking.record.recipe_params`, the
tags of :meth:`optbench.tracking.record.RunInfo.tags`, the metrics of
:func:`~optbench.tracking.record.epoch_scalars` per epoch (step = epoch), the status
(``FINISHED``; ``FAILED`` for failed and diverged runs; ``KILLED`` for pruned ones) and, when the
command writes one, the HTML report as the artifact ``report/index.html``.

Never twice: before creating a run, the experiment is searched (``MlflowClient.search_runs``) for
the tag ``optbench.run_id``; a run found there is left as it is, except one still ``RUNNING``
when the same optbench run starts again here (a session interrupted mid-run), which is deleted
(MLflow's soft delete) and logged anew.

``mlflow`` (``mlflow-skinny`` suffices) is imported when a logger is created, never with optbench.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, RunResult, RunStatus
from optbench.tracking.record import RUN_ID_TAG, RUNNING, RunInfo, epoch_scalars, safe_name

DATABASE = "mlflow.db"
ARTIFACTS = "artifacts"
REPORT_PATH = "report"
_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.PRUNED: "KILLED", RunStatus.DIVERGED: "FAILED",
           RunStatus.FAILED: "FAILED"}
_BATCH = 1000  # MLflow's limit of metrics per log_batch call


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence MLflow's and alembic's INFO lines while a database is created (levels restored)."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def resolve_destination(target: str) -> tuple[str, str | None]:
    """``(tracking URI, artifact location for new experiments or None)`` of a ``--log mlflow:``
    target: a URI (it has ``://``) as it is, MLflow choosing the artifact location; a directory
    ``DIR`` as ``sqlite:///DIR/mlflow.db`` with artifacts in ``DIR/artifacts``."""
    if "://" in target:
        return target, None
    directory = Path(target).expanduser().absolute()
    return f"sqlite:///{directory / DATABASE}", (directory / ARTIFACTS).as_uri()


class MlflowLogger:
    """Logs runs to MLflow.

    Args:
        target: a tracking URI or a directory (see :func:`resolve_destination`).

    Raises:
        ConfigError: (field ``--log``) ``mlflow`` is not installed, the directory cannot be created,
            or MLflow cannot open the tracking URI (the reason is in the message).
    """

    def __init__(self, target: str | Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError("--log", f"mlflow:{target}", "mlflow[:URI] with the package mlflow-skinny installed "
                                                           "(pip install 'optbench[tracking]')") from exc
        uri, self.artifact_location = resolve_destination(str(target))
        self.where = f"mlflow {target}"
        try:
            if self.artifact_location is not None:
                Path(target).expanduser().mkdir(parents=True, exist_ok=True)
            with _quiet():
                self.client = MlflowClient(tracking_uri=uri)
        except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a bad URI
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError("--log", f"mlflow:{target}", f"an MLflow tracking URI or a directory ({reason})") from exc
        self._experiments: dict[str, str] = {}
        self._live: dict[str, str] = {}  # optbench run id -> MLflow run id

    def experiment(self, study: str) -> str:
        """The id of the experiment named ``study`` (created, or restored when deleted)."""
        if study not in self._experiments:
            found = self.client.get_experiment_by_name(study)
            if found is None:
                kwargs = {} if self.artifact_location is None else {
                    "artifact_location": f"{self.artifact_location}/{safe_name(study)}"}
                self._experiments[study] = self.client.create_experiment(study, **kwargs)
            else:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                self._experiments[study] = found.experiment_id
        return self._experiments[study]

    def find(self, study: str, run_id: str) -> Any:
        """The active MLflow run of optbench run ``run_id`` in ``study``'s experiment, or None."""
        found = self.client.search_runs([self.experiment(study)], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'",
                                        max_results=1)
        return found[0] if found else None

    def _create(self, study: str, run: RunInfo, status: str) -> str:
        from mlflow.entities import Param

        created = self.client.create_run(self.experiment(study), run_name=run.name, tags=run.tags(study, status))
        params = [Param(k, str(v)) for k, v in run.params().items()]
        self.client.log_batch(created.info.run_id, params=params)
        return created.info.run_id

    def _metrics(self, mlflow_run: str, records: Sequence[EpochRecord]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, record.epoch) for record in records
                   for tag, value in epoch_scalars(record).items()]
        for i in range(0, len(metrics), _BATCH):
            self.client.log_batch(mlflow_run, metrics=metrics[i:i + _BATCH])

    def start(self, study: str, run: RunInfo) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        if run.run_id in self._live:
            return
        existing = self.find(study, run.run_id)
        if existing is not None:
            if existing.info.status != "RUNNING":
                return  # logged completely before
            self.client.delete_run(existing.info.run_id)  # left by an interrupted session
        self._live[run.run_id] = self._create(study, run, RUNNING)

    def epoch(self, study: str, run: RunInfo, record: EpochRecord) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        mlflow_run = self._live.get(run.run_id)
        if mlflow_run is not None:
            self._metrics(mlflow_run, [record])

    def finish(self, study: str, result: RunResult) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        mlflow_run = self._live.pop(result.run_id, None)
        if mlflow_run is None:
            if self.find(study, result.run_id) is not None:
                return
            mlflow_run = self._create(study, RunInfo.of(result), result.status.value)
            self._metrics(mlflow_run, result.epochs)
        self.client.set_tag(mlflow_run, "optbench.status", result.status.value)
        self.client.set_terminated(mlflow_run, _STATUS[result.status])

    def attach_report(self, study: str, run_ids: Sequence[str], path: Path) -> None:
        """Log ``path`` as ``report/<name>`` to the MLflow run of every one of ``run_ids``."""
        for run_id in dict.fromkeys(run_ids):
            found = self.find(study, run_id)
            if found is not None:
                self.client.log_artifact(found.info.run_id, str(path), REPORT_PATH)

    def close(self) -> None:
        """Runs still open stay ``RUNNING`` (see the module docstring: a later session redoes them)."""
        self._live.clear()


__all__ = ["ARTIFACTS", "DATABASE", "MlflowLogger", "resolve_destination"]
