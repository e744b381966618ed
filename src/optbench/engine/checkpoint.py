"""Per-epoch checkpoints of a run, so that a run interrupted (SIGKILL included) continues from its
last finished epoch instead of its start, with bitwise the same numbers on CPU.

A checkpoint holds everything the next epoch depends on: the model's and the optimizer's
``state_dict``, the gradient scaler (fp16), the state of metric-driven schedules (plateau; step-based
schedules are pure functions of the step), every component's ``state_dict`` (weight averages, early
stopping, masks; keyed by position and name), the data-order and augmentation generators, the
global torch RNG inside the run's ``fork_rng``
(dropout) and the CUDA RNG when training on CUDA, and the epochs recorded so far (plain dicts).

It is written atomically (a temporary file in the same directory, then :func:`os.replace`) and read
with ``torch.load(..., weights_only=True)``: only tensors, dicts, lists, strings and numbers, never
arbitrary pickled objects. A file that cannot be read, has another format version or belongs to
another run is ignored with a warning, and the run starts from scratch: a bad checkpoint never
stops a study.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from optbench.core.component import iter_state
from optbench.core.spec import EpochRecord, RunResult

if TYPE_CHECKING:
    from optbench.engine.build import RunSetup

#: Version of the checkpoint layout; a file of another version is ignored (the run starts over).
CHECKPOINT_FORMAT = 2


class CheckpointWarning(UserWarning):
    """A checkpoint file was ignored (unreadable, foreign or of another format); the run restarts."""


class Checkpointer:
    """Saves and restores the per-epoch checkpoint of one run in one file.

    Args:
        path: the checkpoint file (the executor uses ``<checkpoint_dir>/<run_id>.pt``); its
            directory is created on the first save.
        run_id: the run the file belongs to (:func:`optbench.core.spec.run_id`); a file naming
            another run is ignored.

    The training loop calls :meth:`load` once before the first epoch and :meth:`save` after
    each epoch; whoever stores the run's result calls :meth:`delete` afterwards.
    """

    def __init__(self, path: str | Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = str(run_id)

    def __repr__(self) -> str:
        return f"Checkpointer({str(self.path)!r}, run_id={self.run_id!r})"

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (from :func:`capture`) atomically: a crash at any moment leaves either
        the previous checkpoint or the new one, never a partial file.

        Raises:
            OSError: the directory cannot be created or written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": CHECKPOINT_FORMAT, "run_id": self.run_id, **state}
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run, or None when there is no usable checkpoint.

        A file that fails to load (corrupt, truncated, not a checkpoint, holding objects other than
        tensors and plain containers), has another format version or belongs to another run is
        ignored with a :class:`CheckpointWarning`. Temporary files of saves killed midway are removed.
        """
        for partial in self._partial_files():  # a save killed midway: the previous checkpoint is whole
            with contextlib.suppress(OSError):
                partial.unlink()
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: start over, never crash a study
            self.warn_ignored(f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
            return None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            self.warn_ignored(f"format {found!r}, expected {CHECKPOINT_FORMAT}")
            return None
        if state.get("run_id") != self.run_id:
            self.warn_ignored(f"it belongs to run {state.get('run_id')!r}")
            return None
        return state

    def delete(self) -> None:
        """Remove the checkpoint file and any temporary file a save killed midway left behind (no
        error when there is none)."""
        for path in (self.path, *self._partial_files()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _partial_files(self) -> list[Path]:
        """Temporary files of interrupted saves of this checkpoint."""
        try:
            return list(self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"))
        except OSError:  # no such directory, or not readable
            return []

    def warn_ignored(self, why: str, then: str = "the run starts from scratch") -> None:
        """Warn (:class:`CheckpointWarning`) that the checkpoint is not used, ``why``, and what happens ``then``."""
        warnings.warn(f"ignoring checkpoint {self.path} of run {self.run_id}: {why}; {then}",
                      CheckpointWarning, stacklevel=3)


def setup_state(setup: RunSetup, device: torch.device) -> dict[str, Any]:
    """What a built run holds that its next epoch depends on: the model's and the optimizer's
    ``state_dict`` (None for a run without an optimizer, e.g. a parameter-server worker), the gradient
    scaler, the schedule, every component's state, the step generator, the global RNG and, on CUDA, the
    device's RNG (tensors, dicts, lists, strings and numbers only)."""
    step = setup.step
    return {
        "model": setup.model.state_dict(),
        "optimizer": setup.optimizer.state_dict() if setup.optimizer is not None else None,
        "scaler": step.scaler.state_dict() if step.scaler is not None else None,
        "schedule": setup.controller.state_dict() if setup.controller is not None else None,
        "components": {key: c.state_dict() for key, c in iter_state(setup.components)},
        "step_generator": setup.generator.get_state(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def load_setup_state(setup: RunSetup, state: dict[str, Any], device: torch.device) -> None:
    """Put a freshly built run back into ``state`` (from :func:`setup_state`).

    Raises:
        KeyError / RuntimeError / ValueError / TypeError: the state does not fit this run.
    """
    step = setup.step
    setup.model.load_state_dict(state["model"])
    if setup.optimizer is not None:
        setup.optimizer.load_state_dict(state["optimizer"])
    if step.scaler is not None and state["scaler"] is not None:
        step.scaler.load_state_dict(state["scaler"])
    if (setup.controller is None) != (state["schedule"] is None):
        raise ValueError("schedule state " + ("missing" if state["schedule"] is None else "unexpected"))
    if setup.controller is not None:
        setup.controller.load_state_dict(state["schedule"])
    saved = state["components"]
    keys = [key for key, _ in iter_state(setup.components)]
    if sorted(saved) != sorted(keys):
        raise ValueError(f"component states {sorted(saved)} saved, the run has {keys}")
    for key, c in iter_state(setup.components):
        c.load_state_dict(saved[key])
    setup.generator.set_state(state["step_generator"])
    torch.set_rng_state(state["rng"])
    if device.type == "cuda" and state["cuda_rng"] is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], device)


def capture(setup: RunSetup, result: RunResult, data_generator: torch.Generator, device: torch.device, *,
            epoch: int, stopped: bool, elapsed: float) -> dict[str, Any]:
    """The state of a run after epoch ``epoch`` (1-based), ready for :meth:`Checkpointer.save`.

    Call it inside the run's ``fork_rng``, after the epoch's record, schedule and early-stopping
    updates, so that their state is included.

    Args:
        setup: the run's model, optimizer, step, schedule controller and components.
        result: the run so far (epochs, steps, train/eval seconds, environment).
        data_generator: the generator of the data order.
        device: where the run trains (CUDA: its RNG state is saved too).
        epoch: the epoch just finished.
        stopped: whether the run ends after this epoch (early stopping or time budget).
        elapsed: wall seconds the run has taken so far (``RunResult.total_seconds`` up to now).

    Returns:
        a dict of tensors, dicts, lists, strings and numbers only.
    """
    return setup_state(setup, device) | {
        "epoch": epoch, "stopped": stopped, "elapsed": float(elapsed),
        "data_generator": data_generator.get_state(),
        "epochs": [dataclasses.asdict(record) for record in result.epochs],
        "steps": result.steps, "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds,
        "stop_reasons": {key: result.environment[key] for key in ("early_stopping", "time_budget")
                         if key in result.environment},
    }


def restore(state: dict[str, Any], setup: RunSetup, result: RunResult, data_generator: torch.Generator,
            device: torch.device) -> tuple[int, bool]:
    """Put a freshly built run back in the state of ``state`` (from :meth:`Checkpointer.load`).

    Call it inside the run's ``fork_rng``, after the run was built (which consumed the RNG for
    initialization) and before the first epoch.

    Returns:
        ``(epoch, stopped)``: the last epoch saved (continue with the next one) and whether the run
        had ended after it (early stopping or time budget). ``result`` then holds the saved epochs,
        step count and seconds (``total_seconds``: the time spent before the interruption), and
        ``result.environment["checkpoint"]`` records ``{"resumed_epoch": epoch}``.

    Raises:
        KeyError / RuntimeError / ValueError / TypeError: the state does not fit this run (the
            caller then builds the run again and starts over); ``result`` is changed only on success.
    """
    load_setup_state(setup, state, device)
    data_generator.set_state(state["data_generator"])
    epochs = [EpochRecord(**record) for record in state["epochs"]]
    epoch, stopped, steps = int(state["epoch"]), bool(state["stopped"]), int(state["steps"])
    seconds = [float(state[key]) for key in ("train_seconds", "eval_seconds", "elapsed")]
    reasons = dict(state["stop_reasons"])
    if len(epochs) != epoch:
        raise ValueError(f"{len(epochs)} epoch records saved for epoch {epoch}")
    result.epochs, result.steps = epochs, steps
    result.train_seconds, result.eval_seconds, result.total_seconds = seconds
    result.environment.update(reasons)
    result.environment["checkpoint"] = {"resumed_epoch": epoch}
    return epoch, stopped


__all__ = ["CHECKPOINT_FORMAT", "CheckpointWarning", "Checkpointer", "capture", "load_setup_state", "restore",
           "setup_state"]
