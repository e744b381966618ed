"""TensorBoard: one event directory per run, written live per epoch (docs/architecture.md, Layers:
``tracking/``).

Layout: ``DIR/<study>/<task>-<optimizer>-seed<seed>-<run id>/`` (names made path-safe), holding
the scalars of :func:`optbench.tracking.record.epoch_scalars` (step = epoch), the recipe and the
task in the hparams plugin (``torch.utils.tensorboard.summary.hparams``: the parameters of
:func:`~optbench.tracking.record.recipe_params` plus ``task``, ``run_id``, ``study`` and
``status``; the session ends with success unless the run failed or diverged), and
``optbench-run.json`` once the run is complete. A run whose directory holds that file is never
written again; a directory without it (a session interrupted mid-run) is written anew, the
earlier events hidden by TensorBoard's ``purge_step``.

``tensorboard`` (the package) is imported when a logger is created, never with optbench.
View: ``tensorboard --logdir DIR``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, RunResult, RunStatus
from optbench.tracking.record import RunInfo, epoch_scalars, safe_name

#: The file that marks a run's directory as complete.
MARKER = "optbench-run.json"
_FAILED = (RunStatus.FAILED, RunStatus.DIVERGED)


class TensorBoardLogger:
    """Writes TensorBoard event files under ``root``.

    Args:
        root: the log directory (created when missing).

    Raises:
        ConfigError: (field ``--log``) the ``tensorboard`` package is missing, or ``root`` cannot
            be created.
    """

    def __init__(self, root: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("--log", "tensorboard", "tensorboard[:DIR] with the package tensorboard installed "
                                                      "(pip install 'optbench[tracking]')") from exc
        self._writer_class = SummaryWriter
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("--log", f"tensorboard:{root}", f"a writable directory ({exc.strerror})") from exc
        self.where = f"tensorboard {self.root}"
        self._live: dict[str, Any] = {}

    def run_dir(self, study: str, run: RunInfo) -> Path:
        """The event directory of ``run`` in ``study``."""
        leaf = f"{run.task}-{run.recipe.label}-seed{run.seed}-{run.run_id}"
        return self.root / safe_name(study) / safe_name(leaf)

    def _open(self, directory: Path) -> Any:
        purge = 1 if directory.exists() else None  # an interrupted session's events are hidden
        return self._writer_class(log_dir=str(directory), purge_step=purge, flush_secs=10)

    def start(self, study: str, run: RunInfo) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        directory = self.run_dir(study, run)
        if (directory / MARKER).exists() or run.run_id in self._live:
            return
        self._live[run.run_id] = self._open(directory)

    def epoch(self, study: str, run: RunInfo, record: EpochRecord) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        writer = self._live.get(run.run_id)
        if writer is not None:
            _scalars(writer, record)
            writer.flush()

    def finish(self, study: str, result: RunResult) -> None:
        """See :class:`~optbench.tracking.base.RunLogger`."""
        run = RunInfo.of(result)
        directory = self.run_dir(study, run)
        writer = self._live.pop(result.run_id, None)
        if writer is None:
            if (directory / MARKER).exists():
                return
            writer = self._open(directory)
            for record in result.epochs:
                _scalars(writer, record)
        try:
            for summary in _hparams(study, run, result):
                writer.file_writer.add_summary(summary)
        finally:
            writer.close()
        marker = {"run_id": result.run_id, "study": study, "task": result.task, "status": result.status.value}
        (directory / MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n", encoding="utf-8")

    def attach_report(self, study: str, run_ids: Sequence[str], path: Path) -> None:
        """TensorBoard has no artifacts: nothing to do (the report is in the output directory)."""

    def close(self) -> None:
        """Close the writers of runs still open (their directories stay unmarked)."""
        while self._live:
            _, writer = self._live.popitem()
            writer.close()


def _scalars(writer: Any, record: EpochRecord) -> None:
    for tag, value in epoch_scalars(record).items():
        writer.add_scalar(tag, value, global_step=record.epoch)


def _hparams(study: str, run: RunInfo, result: RunResult) -> list[Any]:
    """The hparams plugin's experiment, session-start and session-end summaries of a run."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from torch.utils.tensorboard.summary import hparams

    params = {**run.params(), "task": run.task, "run_id": run.run_id, "study": study,
              "status": result.status.value}
    metrics = {tag: 0.0 for record in result.epochs for tag in epoch_scalars(record)}
    experiment, start, _ = hparams(params, metrics)
    status = Status.Value("STATUS_FAILURE" if result.status in _FAILED else "STATUS_SUCCESS")
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=PLUGIN_DATA_VERSION)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME,
                                                                      content=content.SerializeToString()))
    end = Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=metadata)])
    return [experiment, start, end]


__all__ = ["MARKER", "TensorBoardLogger"]
