"""Stored final weights of runs, so that a run can start from (``init_from``) or learn from (a teacher,
the previous task of a sequence) another run's weights, named by its run id.

A :class:`WeightsDir` is a directory of ``<run_id>.pt`` files, each the ``state_dict`` of the model a
finished run evaluated at its end (what ``RunSetup.eval_model`` returns: the averaged iterate of a
schedule-free optimizer, the EMA/SWA weights when those are on; see :func:`optbench.engine.loop.train`).
Files are written atomically like checkpoints (:mod:`optbench.engine.checkpoint`: a temporary file in
the same directory, flushed and fsync'ed, then :func:`os.replace`) and read with
``torch.load(..., weights_only=True)``: tensors only, never arbitrary pickled objects.

Saving is opt-in (``--save-weights``, ``[execution] save_weights = true``); loading works whenever the
directory is known. The default directory sits next to a SQLite store, ``<store file>.weights/``
(as checkpoints use ``<store>.checkpoints``); a PostgreSQL store needs the directory given.
Nothing here is ever deleted by optbench.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from optbench.core.errors import ConfigError

#: What a missing run must be (the ``allowed`` part of the one-line error).
NEEDED = "a run stored with its weights (run it with --save-weights)"
_RUN_ID = re.compile(r"^[0-9a-zA-Z_.-]{1,128}$")


class WeightsDir:
    """The final weights of runs in one directory, one ``<run_id>.pt`` file each.

    Args:
        path: the directory (created on the first save).
        saving: whether finished runs save their weights here (:func:`optbench.engine.loop.train`
            reads this); loading works either way.

    Raises:
        ConfigError: ``path`` exists and is not a directory.
    """

    def __init__(self, path: str | Path, *, saving: bool = False) -> None:
        self.path = Path(path)
        self.saving = bool(saving)
        check_directory(self.path)

    def __repr__(self) -> str:
        return f"WeightsDir({str(self.path)!r}, saving={self.saving})"

    def file(self, run_id: str) -> Path:
        """The file of ``run_id``'s weights.

        Raises:
            ConfigError: ``run_id`` is not a run id (letters, digits, ``_.-``; no path separators).
        """
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or run_id in (".", ".."):
            raise ConfigError("run id", run_id, "a run id (16 hex digits, as `optbench` prints them)")
        return self.path / f"{run_id}.pt"

    def has(self, run_id: str) -> bool:
        """Whether ``run_id``'s weights are stored."""
        return self.file(run_id).is_file()

    def save(self, run_id: str, state_dict: Mapping[str, Tensor]) -> Path:
        """Store ``state_dict`` (detached copies on the CPU) as ``run_id``'s weights, atomically: a
        crash at any moment leaves the previous file or the new one, never a partial one.

        Raises:
            ConfigError: a bad run id. OSError: the directory cannot be created or written.
        """
        path = self.file(run_id)
        self.path.mkdir(parents=True, exist_ok=True)
        payload = {str(k): v.detach().to("cpu", copy=True) for k, v in state_dict.items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def load(self, run_id: str, *, field: str = "init run id") -> dict[str, Tensor]:
        """``run_id``'s stored weights (a ``state_dict`` on the CPU).

        Args:
            run_id: the run.
            field: how the error names the input (``"teacher"``, ``"init run id"``).

        Raises:
            ConfigError: (one line) no weights are stored for ``run_id`` or the file is not a state
                dict of tensors.
        """
        path = self.file(run_id)
        if not path.is_file():
            raise ConfigError(field, run_id, f"{NEEDED}; none in {self.path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input, in one line
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(field, run_id, f"{NEEDED}; {path} is unreadable ({first})") from None
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ConfigError(field, run_id, f"{NEEDED}; {path} holds no state dict of tensors")
        return state

    def check(self, runs: Iterable[tuple[str, str]]) -> None:
        """Refuse, before anything runs, a run id whose weights are not stored.

        Args:
            runs: ``(field, run id)`` pairs (:func:`weights_needed`).

        Raises:
            ConfigError: the first missing one, in one line.
        """
        for field, rid in runs:
            if not self.has(rid):
                raise ConfigError(field, rid, f"{NEEDED}; none in {self.path}")


def check_directory(path: Path) -> None:
    """Refuse a weights directory that exists and is not a directory (ConfigError, one line)."""
    if path.exists() and not path.is_dir():
        raise ConfigError("weights directory", str(path), "a directory (or a path to create one), not a file")


def default_directory(store: str | Path) -> Path | None:
    """``<store file>.weights`` next to a SQLite store; None for other stores (PostgreSQL, in memory)."""
    from optbench.runs.store import sqlite_file

    path = sqlite_file(str(store))
    if path is None or path.name in ("", ":memory:"):
        return None
    return Path(f"{path}.weights")


def weights_for(store: str | Path, directory: str | Path | None = None, *, saving: bool = False) -> WeightsDir | None:
    """The weights directory of runs stored in ``store``: ``directory`` when given, else
    :func:`default_directory`; None when there is none (a PostgreSQL store without a directory).

    Raises:
        ConfigError: ``saving`` with no directory (a store that is not a SQLite file and no
            directory given), or a directory that is a file.
    """
    path = Path(directory) if directory is not None else default_directory(store)
    if path is None:
        if saving:
            raise ConfigError("weights directory", None, "a directory for run weights (required unless the store "
                                                         "is a SQLite file)")
        return None
    return WeightsDir(path, saving=saving)


def weights_needed(techniques: Iterable[Any]) -> list[tuple[str, str]]:
    """``(field, run id)`` of every stored run the techniques (``TechniqueSpec`` of a recipe) start
    from or learn from: components listing them in a ``weights_runs`` attribute (``init_from``,
    ``lwf``, ``ewc``).

    Raises:
        UnknownNameError / ConfigError: a bad technique.
    """
    from optbench.techniques.registry import make_component

    out: list[tuple[str, str]] = []
    for spec in techniques:
        component = make_component(spec)
        out.extend(getattr(component, "weights_runs", ()))
    return out


def check_available(recipes: Iterable[Any], weights: WeightsDir | None) -> None:
    """Refuse, before anything runs, recipes (``Recipe`` objects) whose techniques start from or
    learn from a run whose final weights are not stored in ``weights``, or any such recipe when
    there is no weights directory (``weights`` None).

    Raises:
        ConfigError: (one line) naming the first such run id.
    """
    for recipe in recipes:
        needed = weights_needed(recipe.techniques)
        if needed and weights is None:
            field, rid = needed[0]
            raise ConfigError(field, rid, f"{NEEDED}, and a weights directory (required unless the store is a "
                                          f"SQLite file)")
        if weights is not None:
            weights.check(needed)


__all__ = ["NEEDED", "WeightsDir", "check_available", "check_directory", "default_directory", "weights_for",
           "weights_needed"]
