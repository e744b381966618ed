"""Where the studies of a store stand: runs done and planned, running claims, problems, run times (the
time left is estimated from them by :func:`optbench.analysis.timing.estimate_remaining`)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from optbench.core.errors import ConfigError


@dataclass(frozen=True)
class StudyStatus:
    """One study of a store.

    Attributes:
        study / protocol: its name and protocol.
        done / planned: runs finished or diverged, and runs planned (at least those linked).
        failed: failed runs (they are retried, so they still count as to do).
        running: claims of runs not stored yet (``run_id``, ``worker``, ``host``, ``pid``, ``heartbeat_at``).
        workers: distinct workers seen in the claims (at least 1).
        problems: failed and diverged runs (with their messages).
        seconds: wall time of each finished or diverged run.
    """

    study: str
    protocol: str
    done: int
    planned: int
    failed: int
    running: list[Any]
    workers: int
    problems: list[Any]
    seconds: tuple[float, ...]

    @property
    def mean_seconds(self) -> float:
        """Mean wall time of a finished or diverged run (NaN before any)."""
        return statistics.fmean(self.seconds) if self.seconds else math.nan

    @property
    def pending(self) -> int:
        """Runs still to do."""
        return max(0, self.planned - self.done - self.failed)


def study_status(store: str, study: str | None = None) -> list[StudyStatus]:
    """Per study (or only ``study``): runs done / planned, running claims, failed and diverged runs,
    the wall time of each finished run and the workers seen.

    Raises:
        ConfigError: an unknown study (lists the known ones).
    """
    from optbench.runs.store import open_store

    with open_store(store) as db:
        infos = {s.name: s for s in db.studies()}
        if study is not None and study not in infos:
            raise ConfigError("--study", study, sorted(infos) or "none (the store has no study)")
        out = []
        for name in [study] if study is not None else list(infos):
            info = infos[name]
            runs = db.load_runs(study=name)
            claims = db.claims(name)
            stored = {r.run_id for r in runs}
            planned = max(info.n_runs, int(info.config.get("planned_runs") or 0))
            done = info.n_finished + info.n_diverged
            times = [r.total_seconds for r in runs if r.status.value in ("finished", "diverged")]
            workers = len({(c.worker.host, c.worker.name, c.worker.pid) for c in claims}) or 1
            out.append(StudyStatus(
                study=name, protocol=str(info.config.get("protocol", "?")), done=done, planned=planned,
                failed=info.n_failed, running=[c for c in claims if c.run_id not in stored], workers=workers,
                problems=[r for r in runs if r.status.value in ("failed", "diverged")], seconds=tuple(times)))
        return out


__all__ = ["StudyStatus", "study_status"]
