"""Pieces every process of a distributed job shares: its context (task, data, device), the data
shard of each step, training-metric sums (the single-process loop's
:class:`~optbench.engine.metrics.TrainMetrics`), flat parameter vectors, and collectives on small messages.

Data order: every rank draws the same permutation per epoch from a generator seeded with the run's
seed; global step ``c`` takes the examples ``perm[c*G : (c+1)*G]`` (``G = N * b``) and worker ``w``
the slice ``[w*b, (w+1)*b)`` of them. So ``ddp`` with N workers sees exactly the batches of
single-process training with batch ``N * b`` (:func:`optbench.engine.train` draws its permutation the
same way), which is what the equivalence tests check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Task, TaskData
from optbench.engine.build import RunSetup, build_run
from optbench.engine.data import memory_format, split_data, to_device
from optbench.engine.distributed.config import DistributedConfig, Mode
from optbench.engine.loop import sync  # one helper for both loops (re-exported)
from optbench.engine.metrics import TrainMetrics


@dataclass
class RankContext:
    """What one process knows: its rank, the job, the task and its data on ``device``.

    ``comm_device`` is where tensors handed to the process group live (the GPU for NCCL, else CPU).
    """

    rank: int
    world_size: int
    config: DistributedConfig
    mode: Mode
    task: Task
    data: TaskData
    device: torch.device
    comm_device: torch.device
    layout: torch.memory_format
    steps_per_epoch: int

    @property
    def is_server(self) -> bool:
        """True on rank 0 of the parameter-server modes."""
        return self.mode.has_server and self.rank == 0

    @property
    def worker(self) -> int:
        """Worker index 0..N-1 (rank - 1 in the server modes); -1 on the server."""
        return self.rank - 1 if self.mode.has_server else self.rank

    @property
    def n_workers(self) -> int:
        """N, the number of processes computing gradients."""
        return self.config.nproc

    @property
    def batch_size(self) -> int:
        """Examples per worker and step."""
        return self.config.recipe.batch_size

    def shard(self, perm: Tensor, step_in_epoch: int, worker: int | None = None) -> Tensor:
        """Indices (1-d int64) of ``worker``'s examples (this rank's by default) for a step of the epoch
        whose permutation is ``perm``."""
        w = self.worker if worker is None else worker
        start = step_in_epoch * self.config.global_batch + w * self.batch_size
        return perm[start:start + self.batch_size]

    def make_model(self) -> nn.Module:
        """The task's model, initialized under ``torch.manual_seed(seed)`` (identical on every rank), on
        ``device`` in the data's memory layout. Afterwards the RNG is reseeded per rank, so dropout
        masks differ between workers."""
        torch.manual_seed(self.config.seed)
        model = self.task.make_model().to(self.device, memory_format=self.layout)
        torch.manual_seed(self.config.seed * 1_000_003 + self.rank + 1)
        return model


class UpdateSide:
    """What a process that holds the optimizer (every DDP rank, the parameter server) does between
    epochs, through its :class:`~optbench.engine.build.RunSetup` ``setup`` and trained ``model``."""

    setup: RunSetup
    model: nn.Module

    def before_train_epoch(self, epoch: int) -> None:
        """The components' hook before an epoch's steps."""
        self.setup.before_train_epoch(epoch)

    def after_train_epoch(self, epoch: int) -> None:
        """The components' per-epoch update-side hook (SWA's average)."""
        self.setup.after_train_epoch(epoch)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> dict[str, dict]:
        """Schedule and components at the epoch's end (never test metrics); the stop reasons."""
        return self.setup.on_epoch_end(epoch, metrics)

    def eval_model(self, train_inputs: Any) -> nn.Module:
        """What to evaluate: the trained model, or what a component swaps in (averaged weights);
        ``train_inputs()`` iterates training inputs (batch-norm statistics)."""
        return self.setup.eval_model(train_inputs)

    def final_model(self) -> nn.Module:
        """The trained model (identical on every DDP rank; the server's current weights)."""
        return self.model

    def lr(self) -> float:
        """Learning rate of the first parameter group."""
        return self.setup.lr()


def resolve_device(choice: str | None, local_rank: int) -> torch.device:
    """``cuda:<local_rank mod GPUs>`` when CUDA is chosen or available (``choice`` None), else CPU.

    Raises:
        ConfigError: ``choice == "cuda"`` without a GPU.
    """
    if choice == "cpu" or (choice is None and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device", choice, "cpu (no CUDA device is available)")
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def backend_for(mode: Mode, device: torch.device) -> str:
    """``nccl`` for ``ddp`` and ``fsdp`` on GPUs, else ``gloo``. The server modes always use gloo: they rely on
    point-to-point receives from any source, which NCCL lacks; on GPUs their messages go through
    host memory."""
    return "nccl" if mode.kind in ("ddp", "fsdp") and device.type == "cuda" else "gloo"


def setup_rank(rank: int, world_size: int, config: DistributedConfig, local_rank: int) -> RankContext:
    """Load the task and its data (each process loads its own copy), split as single-process runs do.

    Raises:
        ConfigError: when the training set holds less than one global batch.
    """
    from optbench.tasks import get_task

    mode = config.parsed_mode
    task = get_task(config.task)
    data = split_data(task.load_data(), task.valid_size, config.seed, config.recipe.train_size)
    steps = len(data.train) // config.global_batch
    if steps < 1:
        raise ConfigError("batch_size", config.recipe.batch_size,
                          f"at most {len(data.train) // config.nproc} with {config.nproc} workers and "
                          f"{len(data.train)} training examples (one global batch per step)")
    device = resolve_device(config.device, local_rank)
    layout = memory_format(data)
    data = to_device(data, device, layout)
    comm_device = device if backend_for(mode, device) == "nccl" else torch.device("cpu")
    return RankContext(rank, world_size, config, mode, task, data, device, comm_device, layout, steps)


def now() -> float:
    """``time.perf_counter()`` (s)."""
    return time.perf_counter()


def train_metrics(ctx: RankContext, group: int = 32, *, loss_is_task_loss: bool = True) -> TrainMetrics:
    """The single-process loop's :class:`~optbench.engine.metrics.TrainMetrics` for a worker of ``ctx``
    (sums on ``ctx.device``, metrics computed every ``group`` batches), without the divergence check:
    a rank must not stop alone, so divergence is read from the averaged ``train_loss`` on rank 0.
    ``loss_is_task_loss``: False when a component wraps the loss (the task's loss is then computed
    apart for the ``loss`` metric), as in the single-process loop."""
    return TrainMetrics(ctx.task, ctx.device, group, check_finite=False, loss_is_task_loss=loss_is_task_loss)


def build_rank_run(ctx: RankContext, model: nn.Module, *, engine: str, wrap_forward: Any = None,
                   with_optimizer: bool = True) -> RunSetup:
    """The run of this process, built by :func:`optbench.engine.build.build_run` exactly as a
    single-process run is: the same components, optimizer, schedule (over ``steps_per_epoch`` global
    steps) and step. Learning-rate scaling sees the global batch (all workers' examples of one step).
    Data-side randomness (augmentations) comes from a generator seeded ``seed + 1`` for worker 0 (as
    the single-process loop) and apart for every other worker. Use the returned setup's ``model``
    (components may have prepared a new one) and ``step.forward`` (``wrap_forward`` of it)."""
    generator = torch.Generator().manual_seed(ctx.config.seed + 1 + 1_000_003 * max(ctx.worker, 0))
    return build_run(ctx.task, ctx.config.recipe, model, device=ctx.device, generator=generator, engine=engine,
                     batch_size=ctx.config.global_batch, steps_per_epoch=ctx.steps_per_epoch, seed=ctx.config.seed,
                     wrap_forward=wrap_forward, with_optimizer=with_optimizer)


class FlatParams:
    """The trainable parameters of a model as one flat vector (parameter order), for messages.

    A gradient message (:meth:`grads_into`, :meth:`load_grads`) also carries the model's floating
    buffers (batch-norm running statistics) after the gradients: the server never runs a training
    forward pass, so it takes the workers' statistics (averaged with the gradients in the averaging
    modes) and evaluates and averages (EMA) exactly what a single process would.

    Args:
        params: the parameters (all of one floating dtype).
        buffers: the floating buffers sent with gradients (integer buffers stay local).

    Raises:
        ConfigError: when the parameters have several dtypes.
    """

    def __init__(self, params: Sequence[nn.Parameter], buffers: Sequence[Tensor] = ()) -> None:
        self.params = list(params)
        dtypes = {p.dtype for p in self.params}
        if len(dtypes) != 1:
            raise ConfigError("model parameters", sorted(map(str, dtypes)), "parameters of a single dtype")
        self.dtype = dtypes.pop()
        self.sizes = [p.numel() for p in self.params]
        self.numel = sum(self.sizes)
        self.buffers = [b for b in buffers if b.is_floating_point()]
        self.buffer_sizes = [b.numel() for b in self.buffers]
        self.message_numel = self.numel + sum(self.buffer_sizes)

    def empty(self, device: torch.device | str = "cpu") -> Tensor:
        """An uninitialized flat vector of the parameters' size and dtype."""
        return torch.empty(self.numel, dtype=self.dtype, device=device)

    def empty_message(self, device: torch.device | str = "cpu") -> Tensor:
        """An uninitialized gradient message: the parameters' size plus the floating buffers'."""
        return torch.empty(self.message_numel, dtype=self.dtype, device=device)

    def _flatten_into(self, tensors: Sequence[Tensor], out: Tensor) -> Tensor:
        flat = [t.detach().reshape(-1) for t in tensors]
        if flat and flat[0].device == out.device:
            return torch.cat(flat, out=out)
        return out.copy_(torch.cat(flat))

    def params_into(self, out: Tensor) -> Tensor:
        """Copy the parameter values into ``out`` (flat); returns ``out``."""
        return self._flatten_into(self.params, out)

    def grads_into(self, out: Tensor) -> Tensor:
        """Copy the gradients (zeros for parameters without one), then the floating buffers, into the
        message ``out`` (:meth:`empty_message`)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        return self._flatten_into(grads + [b.to(self.dtype) for b in self.buffers], out)

    @torch.no_grad()
    def load_params(self, flat: Tensor) -> None:
        """Set the parameters from a flat vector (any device; copies keep each parameter's layout)."""
        for p, chunk in zip(self.params, flat.split(self.sizes), strict=True):
            p.copy_(chunk.view(p.shape))

    @torch.no_grad()
    def load_grads(self, flat: Tensor) -> None:
        """Set every parameter's ``.grad`` (allocated once in the parameter's layout), then the floating
        buffers, from a gradient message."""
        chunks = flat.split(self.sizes + self.buffer_sizes)
        for p, chunk in zip(self.params, chunks[:len(self.params)], strict=True):
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(chunk.view(p.shape))
        for b, chunk in zip(self.buffers, chunks[len(self.params):], strict=True):
            b.copy_(chunk.view(b.shape))


def average_into(grads: Sequence[Tensor], out: Tensor) -> Tensor:
    """``out = mean(grads)``, summed in the given order (deterministic): used by every server mode that
    averages, so that ``ps-sync`` and ``ps-ssp:0`` round identically."""
    out.copy_(grads[0])
    for g in grads[1:]:
        out.add_(g)
    return out.div_(len(grads))


def agree(ctx: RankContext, flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a broadcast, which also synchronizes the ranks)."""
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=ctx.comm_device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_json(ctx: RankContext, obj: object) -> Any:
    """Rank 0's JSON-serializable ``obj`` on every rank (``obj`` is ignored elsewhere). Sent as UTF-8
    bytes in uint8 tensors (no pickling)."""
    payload = json.dumps(obj, allow_nan=True).encode() if ctx.rank == 0 else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=ctx.comm_device)
    dist.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8)
    if ctx.rank == 0:
        buf[:] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    buf = buf.to(ctx.comm_device)
    dist.broadcast(buf, src=0)
    return json.loads(buf.cpu().numpy().tobytes().decode())


def gather_json(ctx: RankContext, obj: object) -> list[object] | None:
    """Every rank's JSON-serializable ``obj`` on rank 0 (a list in rank order); None elsewhere.

    Sent as UTF-8 bytes in uint8 tensors (no pickling)."""
    payload = json.dumps(obj, allow_nan=True).encode()
    size = torch.tensor([len(payload)], dtype=torch.int64, device=ctx.comm_device)
    sizes = [torch.zeros_like(size) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    buf = torch.zeros(longest, dtype=torch.uint8)
    buf[:len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    buf = buf.to(ctx.comm_device)
    bufs = [torch.zeros_like(buf) for _ in range(ctx.world_size)] if ctx.rank == 0 else None
    dist.gather(buf, bufs, dst=0)
    if bufs is None:
        return None
    return [json.loads(b[:int(s.item())].cpu().numpy().tobytes().decode()) for b, s in zip(bufs, sizes, strict=True)]


__all__ = ["FlatParams", "RankContext", "UpdateSide", "agree", "average_into", "backend_for", "broadcast_json",
           "build_rank_run", "gather_json", "now", "resolve_device", "setup_rank", "sync", "train_metrics"]
