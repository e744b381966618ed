"""What a distributed job is: the mode, the number of workers, the task and recipe.

Modes (docs/distributed.md):

* ``ddp`` — :class:`torch.nn.parallel.DistributedDataParallel`: every process is a worker
  holding a replica and the optimizer; gradients are averaged by bucketed ring all-reduce
  overlapped with the backward pass.
* ``ps-sync`` — a parameter server: rank 0 holds the weights and the optimizer; every step each
  worker pulls the weights, computes a gradient on its shard of the global batch and pushes it;
  the server averages the N gradients (in worker order) and takes one optimizer step.
* ``ps-async`` — the server applies each worker's gradient as soon as it arrives (one optimizer
  step per gradient, Downpour SGD style, Dean et al. 2012) and replies with its current weights;
  workers never wait for each other.
* ``fsdp`` — fully sharded data parallelism (``fully_shard``, ZeRO-3 style): each worker holds a
  ``1/N`` shard of the parameters, gradients and optimizer state; parameters are all-gathered per
  module for its forward and backward, gradients reduce-scattered. The same math as ``ddp``.
* ``ddp+METHOD`` — ``ddp`` with communication-efficient training: gradients compressed (``fp16``,
  ``bf16``, ``powersgd:R``, ``topk:F``) or models averaged every ``H`` updates (``local:H``,
  ``diloco:H``); see :mod:`optbench.engine.distributed.compression`.
* ``ps-ssp:S`` — stale-synchronous parallel (Ho et al. 2013) with bound ``S``: a worker may
  start its clock ``c`` once the server holds every update of clocks ``<= c - S - 1``, i.e. it
  runs at most ``S`` steps ahead of the slowest worker. Gradients of one clock are averaged (in
  worker order) into one optimizer step, applied in clock order, so ``ps-ssp:0`` computes exactly
  what ``ps-sync`` computes.

The parameter server is **not** a worker: with ``--nproc N`` the server modes start ``N + 1``
processes (rank 0 = server, ranks ``1..N`` = workers), ``ddp`` starts ``N``. So every mode has N
processes computing gradients. ``batch_size`` is the batch **per worker**; one step of the job
processes a global batch of ``N * batch_size`` examples (the last incomplete global batch of an
epoch is dropped, so every worker gets exactly ``batch_size`` examples per step).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Literal

from optbench.core.errors import ConfigError, require_positive
from optbench.core.spec import Recipe
from optbench.engine.distributed.compression import Compression, parse_compression

ModeKind = Literal["ddp", "fsdp", "ps-sync", "ps-async", "ps-ssp"]
MODE_KINDS: tuple[ModeKind, ...] = ("ddp", "fsdp", "ps-sync", "ps-async", "ps-ssp")
MODES_ALLOWED = ("ddp, fsdp, ps-sync, ps-async, ps-ssp:S (S an integer >= 0, the staleness bound), ddp+METHOD "
                 "(METHOD: fp16, bf16, powersgd:R, topk:F, local:H, diloco:H)")


@dataclass(frozen=True)
class Mode:
    """A parsed mode: ``kind``, for ``ps-ssp`` the staleness bound ``staleness`` (steps), and for a
    communication-efficient ``ddp+METHOD`` mode its ``compression``
    (:mod:`optbench.engine.distributed.compression`)."""

    kind: ModeKind
    staleness: int | None = None
    compression: Compression | None = None

    @property
    def name(self) -> str:
        """The canonical text form, e.g. ``"ps-ssp:2"``, ``"ddp+powersgd:4"``."""
        if self.compression is not None:
            return f"{self.kind}+{self.compression.name}"
        return f"{self.kind}:{self.staleness}" if self.kind == "ps-ssp" else self.kind

    @property
    def has_server(self) -> bool:
        """True for the parameter-server modes (rank 0 is a server, not a worker)."""
        return self.kind not in ("ddp", "fsdp")

    @property
    def survives_worker_loss(self) -> bool:
        """True for the modes that continue without a lost worker (``ps-async``, ``ps-ssp``)."""
        return self.kind in ("ps-async", "ps-ssp")

    def world_size(self, nproc: int) -> int:
        """Processes started for ``nproc`` workers: ``nproc`` (+1 server for the PS modes)."""
        return nproc + 1 if self.has_server else nproc

    def __str__(self) -> str:
        return self.name


def parse_mode(text: str, field: str = "--mode") -> Mode:
    """``"ddp"`` / ``"ps-sync"`` / ``"ps-async"`` / ``"ps-ssp:S"`` / ``"ddp+METHOD"`` -> :class:`Mode`.

    Raises:
        ConfigError: for anything else (names the allowed forms).
    """
    word = text.strip().lower()
    if word.startswith("ddp+"):
        try:
            return Mode("ddp", compression=parse_compression(word[4:], field))
        except ConfigError as exc:
            raise ConfigError(field, text, exc.allowed) from None
    kind, sep, bound = word.partition(":")
    if kind == "ps-ssp" and sep:
        try:
            staleness = int(bound)
        except ValueError:
            raise ConfigError(field, text, MODES_ALLOWED) from None
        if staleness < 0:
            raise ConfigError(field, text, MODES_ALLOWED)
        return Mode("ps-ssp", staleness)
    if kind in ("ddp", "fsdp", "ps-sync", "ps-async") and not sep:
        return Mode(kind)  # type: ignore[arg-type]
    raise ConfigError(field, text, MODES_ALLOWED)


def parse_modes(text: str) -> tuple[Mode, ...]:
    """``"ddp,ps-sync,ps-ssp:2"`` -> modes, in order, without repeats.

    Raises:
        ConfigError: for an empty list, an unknown mode or a repeated one.
    """
    modes = tuple(parse_mode(item, "--modes") for item in text.split(",") if item.strip())
    if not modes:
        raise ConfigError("--modes", text, f"a comma-separated list of {MODES_ALLOWED}")
    names = [m.name for m in modes]
    if len(set(names)) != len(names):
        raise ConfigError("--modes", text, "a list without repeated modes")
    return modes


def parse_counts(text: str, field: str = "--nproc", maximum: int | None = None) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``: sorted, unique, each >= 1 (and <= ``maximum``).

    Raises:
        ConfigError: for a non-integer, a value < 1 or > ``maximum``, or an empty list.
    """
    allowed = "a comma-separated list of integers >= 1" + (f" and <= {maximum}" if maximum else "")
    values = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            value = int(item)
        except ValueError:
            raise ConfigError(field, text, allowed) from None
        if value < 1 or (maximum is not None and value > maximum):
            raise ConfigError(field, text, allowed)
        values.append(value)
    if not values:
        raise ConfigError(field, text, allowed)
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class DistributedConfig:
    """One distributed training job.

    Args:
        task: task registry name or ``module:factory`` / ``file.py:factory``.
        recipe: optimizer, hyperparameters, **per-worker** batch size, epochs, training-set size
            (``recipe.train_size`` already resolved: an int or None for all).
        mode: ``"ddp"``, ``"ps-sync"``, ``"ps-async"`` or ``"ps-ssp:S"``.
        nproc: number of workers N (processes computing gradients).
        seed: seed of initialization, validation split and data order.
        target: validation value for time-to-target; None for the task's own.
        timeout: wall-clock limit of the whole job (s); the job is stopped with an error after it.
        comm_timeout: limit of any single collective / point-to-point wait (s), the process-group
            timeout: a peer that stops answering ends the job with an error, never a hang.
        threads: CPU threads per process (1 by default, so that N processes use N cores and
            counts are honest).
        device: ``"cpu"``, ``"cuda"`` or None (CUDA when available).
        keep_state: return the final parameters (rank 0's model) with the result (for tests).
        kill_worker: ``(worker, step)``: worker ``worker`` (0..N-1) kills itself with SIGKILL just before
            computing its global step ``step`` (its clock, >= 1), a crash in the middle of the job for
            measuring failures (:mod:`optbench.engine.distributed.failures`); None: no failure. Part of the
            run's identity, so a disturbed run is never mistaken for an undisturbed one.
        max_restarts: how often the local launcher starts a failed ``ddp``/``ps-sync`` job again from its
            last per-epoch checkpoint (:mod:`optbench.engine.distributed.elastic`; under ``torchrun`` use its
            ``--max-restarts``); 0: a failure ends the job.
        checkpoint_dir: where every rank keeps its per-epoch checkpoint (needed under ``torchrun``; the local
            launcher uses a temporary directory when restarts are asked for and this is None).

    Raises:
        ConfigError: for a bad mode, a non-positive count or timeout, a ``kill_worker`` outside the workers.
    """

    task: str
    recipe: Recipe
    mode: str = "ddp"
    nproc: int = 2
    seed: int = 0
    target: float | None = None
    timeout: float = 3600.0
    comm_timeout: float = 300.0
    threads: int = 1
    device: str | None = None
    keep_state: bool = False
    kill_worker: tuple[int, int] | None = None
    max_restarts: int = 0
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", parse_mode(self.mode).name)
        require_positive("nproc", self.nproc, integer=True)
        require_positive("threads", self.threads, integer=True)
        require_positive("timeout", self.timeout)
        require_positive("comm_timeout", self.comm_timeout)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("seed", self.seed, "an integer >= 0")
        if self.target is not None and not math.isfinite(self.target):
            raise ConfigError("target", self.target, "a finite number")
        if self.device not in (None, "cpu", "cuda"):
            raise ConfigError("device", self.device, "cpu, cuda")
        if self.kill_worker is not None:
            object.__setattr__(self, "kill_worker", check_kill_worker(self.kill_worker, self.nproc))
        check_elastic(self.parsed_mode, self.max_restarts, self.checkpoint_dir)

    @property
    def parsed_mode(self) -> Mode:
        """The :class:`Mode` of :attr:`mode`."""
        return parse_mode(self.mode)

    @property
    def world_size(self) -> int:
        """Processes of the job (workers, plus the server in the PS modes)."""
        return self.parsed_mode.world_size(self.nproc)

    @property
    def global_batch(self) -> int:
        """Examples per step over all workers: ``nproc * recipe.batch_size``."""
        return self.nproc * self.recipe.batch_size


#: Modes that restart from a checkpoint (the others go on without a lost worker, or are not checkpointed).
ELASTIC_KINDS = ("ddp", "ps-sync")


def check_elastic(mode: Mode, max_restarts: object, checkpoint_dir: str | None) -> None:
    """Refuse restarts or checkpoints the mode cannot use.

    Raises:
        ConfigError: ``max_restarts`` not an integer >= 0; restarts or a checkpoint directory with a
            mode other than plain ``ddp`` and ``ps-sync``.
    """
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ConfigError("max_restarts", max_restarts, "an integer >= 0")
    if (max_restarts or checkpoint_dir) and (mode.kind not in ELASTIC_KINDS or mode.compression is not None):
        field, value = ("max_restarts", max_restarts) if max_restarts else ("checkpoint_dir", checkpoint_dir)
        raise ConfigError(f"{field} with mode {mode.name}", value,
                          "restarts for ddp and ps-sync only (ps-async and ps-ssp go on without a lost worker; "
                          "fsdp and ddp+METHOD are not checkpointed)")


KILL_WORKER_ALLOWED = "WORKER@STEP: a worker index 0..nproc-1 and a global step >= 1, e.g. 1@40"


def parse_kill_worker(text: str, nproc: int) -> tuple[int, int]:
    """``"W@S"`` -> ``(W, S)`` (see :attr:`DistributedConfig.kill_worker`).

    Raises:
        ConfigError: for another form, a worker outside ``0..nproc-1`` or a step < 1.
    """
    worker, sep, step = text.strip().partition("@")
    try:
        parsed = (int(worker), int(step))
    except ValueError:
        raise ConfigError("--kill-worker", text, KILL_WORKER_ALLOWED) from None
    if not sep:
        raise ConfigError("--kill-worker", text, KILL_WORKER_ALLOWED)
    return check_kill_worker(parsed, nproc, text)


def check_kill_worker(value: object, nproc: int, text: object = None) -> tuple[int, int]:
    """``value`` as a ``(worker, step)`` pair within ``nproc`` workers.

    Raises:
        ConfigError: naming ``kill_worker`` and the allowed values.
    """
    shown = value if text is None else text
    if (not isinstance(value, tuple | list) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError("kill_worker", shown, KILL_WORKER_ALLOWED)
    worker, step = value
    if not 0 <= worker < nproc or step < 1:
        raise ConfigError("kill_worker", shown, f"a worker index 0..{nproc - 1} and a global step >= 1")
    return (worker, step)


def distributed_run_id(task: str, recipe: Recipe, seed: int, mode: str, nproc: int,
                       kill_worker: tuple[int, int] | None = None) -> str:
    """Content hash of a distributed run: sha256 of canonical JSON of (task, recipe, seed, mode,
    nproc, and the injected failure when there is one), 16 hex chars; never equal to
    :func:`optbench.core.spec.run_id` of a single-process run."""
    identity = {"task": task, "recipe": recipe.identity(), "seed": seed, "mode": parse_mode(mode).name,
                "nproc": nproc, "kind": "distributed"}
    if kill_worker is not None:
        identity["kill_worker"] = list(kill_worker)
    payload = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


#: Techniques ``fsdp`` runs: those that act on batches, the loss or gradients through torch's own
#: sharding-aware functions, tested equal to ``ddp``; the others change or copy parameters and are refused.
FSDP_TECHNIQUES = frozenset({"clip_norm", "label_smoothing", "random_crop", "horizontal_flip", "gaussian_noise",
                             "early_stopping"})


def validate(config: DistributedConfig) -> None:
    """Check the task and optimizer names and hyperparameters without loading data.

    Raises:
        UnknownNameError: unknown task, optimizer, schedule or technique (lists the known names).
        ConfigError: unknown parameter or value out of range; a ``train_size`` smaller than one
            global batch; anything the mode's engine cannot run (naming the engines that can).
    """
    import torch

    from optbench.engine.validate import check_recipe
    from optbench.tasks import get_task

    task = get_task(config.task)
    device = torch.device("cuda" if config.device == "cuda" else "cpu") if config.device else None
    kind = config.parsed_mode.kind
    check_recipe(config.recipe, task, device, engine="ddp" if kind in ("ddp", "fsdp") else "ps")
    if kind == "fsdp":
        for spec in config.recipe.techniques:
            if spec.name not in FSDP_TECHNIQUES:
                raise ConfigError("technique in mode fsdp", spec.name,
                                  f"{', '.join(sorted(FSDP_TECHNIQUES))} (the ones tested equal to ddp)")
    size = config.recipe.train_size
    if size is not None and size < config.global_batch:
        raise ConfigError("train_size", size, f"an integer >= nproc * batch_size = {config.global_batch}")


__all__ = ["ELASTIC_KINDS", "FSDP_TECHNIQUES", "KILL_WORKER_ALLOWED", "MODES_ALLOWED", "MODE_KINDS",
           "DistributedConfig", "Mode", "check_elastic", "check_kill_worker", "distributed_run_id", "parse_counts",
           "parse_kill_worker", "parse_mode", "parse_modes", "validate"]
