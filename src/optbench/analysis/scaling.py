"""A cost model of data-parallel training: step time and scaling efficiency of ring all-reduce and
of a parameter server, from one worker's compute time, the model's size and a network.

Model (the alpha-beta model of collective communication, Thakur, Rabenseifner & Gropp 2005; Patarasuk
& Yuan 2009 for the bandwidth-optimal ring):

* network: latency ``alpha`` (s per message) and bandwidth ``beta`` (bytes/s) per worker link;
* ring all-reduce of ``M`` bytes over ``N`` workers (reduce-scatter + all-gather, 2(N-1) steps of
  M/N bytes): ``T = 2 (N-1)/N * M/beta + 2 (N-1) alpha``;
* parameter server with ``S`` servers (the model sharded evenly): every worker pushes ``M`` and pulls
  ``M``; the busiest server link carries ``N M / S`` bytes in the push phase and again in the pull
  phase, which follows the update: ``T = 2 N M / (S beta) + 2 alpha``;
* overlap: a fraction ``overlap`` of the communication can run during the backward pass, which
  takes ``backward_fraction`` of the compute time (2/3 by default: backward costs about twice the
  forward); ``step = compute + comm - min(overlap * comm, backward_fraction * compute)``;
* weak scaling: every worker keeps its batch; scaling efficiency ``E(N) = compute / step(N)`` (the
  throughput of N workers over N times the throughput of one worker that does not communicate),
  samples/s ``= N * batch / step(N)``.

Not modelled: CPU/GPU contention between processes on one machine, stragglers, the number of
messages (tensor fusion and bucketing), hierarchical (intra-node) reduction, network contention
beyond one link per worker, protocol overheads (gRPC, TCP). Everything is stated in :data:`MODELS`
and :data:`PUBLISHED` with its source.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from optbench.core.errors import ConfigError, require_positive
from optbench.core.registry import Registry

Algorithm = Literal["allreduce", "ps"]
ALGORITHMS: tuple[Algorithm, ...] = ("allreduce", "ps")

GBIT = 1e9 / 8
"""Bytes per second in one Gbit/s."""
DEFAULT_LATENCY = 10e-6
"""Default per-message latency alpha (s): a few microseconds is typical of RDMA (RoCE/InfiniBand)
and tens of microseconds of kernel TCP; 10 us is our stated assumption."""
DEFAULT_OVERLAP = 0.5
"""Default fraction of communication hidden behind the backward pass: our assumption, picked while
looking at the published Horovod numbers (so agreement at 0.5 is partly a one-parameter fit); the
predicted-versus-published check also reports the bounds 0 and 1."""
BACKWARD_FRACTION = 2 / 3
"""Share of a step's compute spent in the backward pass (backward ~ 2x forward)."""


@dataclass(frozen=True)
class Network:
    """A worker's link: ``bandwidth`` in bytes/s (beta) and ``latency`` in s per message (alpha).

    Raises:
        ConfigError: for a bandwidth <= 0 or a negative latency.
    """

    bandwidth: float
    latency: float = DEFAULT_LATENCY

    def __post_init__(self) -> None:
        require_positive("bandwidth", self.bandwidth)
        if not (self.latency >= 0 and math.isfinite(self.latency)):
            raise ConfigError("latency", self.latency, "a finite number >= 0 (seconds)")

    @classmethod
    def gbit(cls, gbps: float, latency_us: float = DEFAULT_LATENCY * 1e6) -> Network:
        """A ``gbps`` Gbit/s link with ``latency_us`` microseconds of latency."""
        require_positive("bandwidth (Gb/s)", gbps)
        return cls(bandwidth=gbps * GBIT, latency=latency_us * 1e-6)

    @property
    def gbps(self) -> float:
        """Bandwidth in Gbit/s."""
        return self.bandwidth / GBIT


@dataclass(frozen=True)
class Workload:
    """One worker's training step: ``parameters`` (count), ``compute_seconds`` (forward + backward +
    update at ``batch_size`` examples, s), ``bytes_per_parameter`` (4: float32 gradients) and the
    ``source`` of the numbers."""

    name: str
    parameters: int
    compute_seconds: float
    batch_size: int
    source: str = ""
    bytes_per_parameter: int = 4

    @property
    def model_bytes(self) -> int:
        """Gradient size M in bytes."""
        return self.parameters * self.bytes_per_parameter


def ring_allreduce_seconds(model_bytes: float, n: int, network: Network) -> float:
    """Ring all-reduce time of ``model_bytes`` over ``n`` workers: ``2(n-1)/n M/beta + 2(n-1) alpha`` (s);
    0 for one worker."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) / n * model_bytes / network.bandwidth + 2 * (n - 1) * network.latency


def parameter_server_seconds(model_bytes: float, n: int, network: Network, servers: int = 1) -> float:
    """Push + pull time at the busiest of ``servers`` server links for ``n`` workers:
    ``2 n M / (S beta) + 2 alpha`` (s). A one-worker job still talks to its server."""
    require_positive("servers", servers, integer=True)
    return 2 * n * model_bytes / (servers * network.bandwidth) + 2 * network.latency


def step_seconds(compute: float, comm: float, overlap: float = DEFAULT_OVERLAP,
                 backward_fraction: float = BACKWARD_FRACTION) -> float:
    """``compute + comm - min(overlap * comm, backward_fraction * compute)`` (s).

    Raises:
        ConfigError: ``overlap`` or ``backward_fraction`` outside [0, 1].
    """
    for name, value in (("overlap", overlap), ("backward_fraction", backward_fraction)):
        if not 0 <= value <= 1:
            raise ConfigError(name, value, "a number in [0, 1]")
    return compute + comm - min(overlap * comm, backward_fraction * compute)


@dataclass(frozen=True)
class Prediction:
    """Predicted step of ``n`` workers: times in s, ``efficiency`` in (0, 1], ``samples_per_second``."""

    model: str
    algorithm: Algorithm
    n: int
    gbps: float
    compute_seconds: float
    comm_seconds: float
    step_seconds: float
    efficiency: float
    samples_per_second: float


def predict(workload: Workload, n: int, network: Network, algorithm: Algorithm = "allreduce", *,
            overlap: float = DEFAULT_OVERLAP, servers: int = 1,
            backward_fraction: float = BACKWARD_FRACTION) -> Prediction:
    """Predict one step of ``n`` workers running ``workload`` over ``network`` (module docstring).

    Raises:
        ConfigError: unknown ``algorithm``, ``n < 1``, bad ``overlap``/``servers``.
    """
    require_positive("nproc", n, integer=True)
    if algorithm == "allreduce":
        comm = ring_allreduce_seconds(workload.model_bytes, n, network)
    elif algorithm == "ps":
        comm = parameter_server_seconds(workload.model_bytes, n, network, servers)
    else:
        raise ConfigError("algorithm", algorithm, ALGORITHMS)
    step = step_seconds(workload.compute_seconds, comm, overlap, backward_fraction)
    return Prediction(model=workload.name, algorithm=algorithm, n=n, gbps=network.gbps,
                      compute_seconds=workload.compute_seconds, comm_seconds=comm, step_seconds=step,
                      efficiency=workload.compute_seconds / step, samples_per_second=n * workload.batch_size / step)


# ---------------------------------------------------------------- built-in models
_TF_P100 = ("TensorFlow benchmarks (tensorflow.org/performance/benchmarks, May 2017): NVIDIA DGX-1, one "
            "Tesla P100, tf_cnn_benchmarks, synthetic ImageNet data, batch 64, SGD")


def _p100(images_per_second: float) -> float:
    return 64 / images_per_second


MODELS: Registry[Workload] = Registry("model")
MODELS.register("vgg16", Workload("vgg16", 138_400_000, _p100(154.0), 64,
                                  f"138.4M parameters (Simonyan & Zisserman 2015); 154 images/s: {_TF_P100}"))
MODELS.register("vgg19", Workload("vgg19", 143_700_000, _p100(154.0 * 15.5 / 19.6), 64,
                                  "143.7M parameters; compute ASSUMED = VGG-16's 154 images/s scaled by "
                                  f"FLOPs 15.5G/19.6G = 122 images/s (VGG-19 is not in: {_TF_P100})"))
MODELS.register("resnet50", Workload("resnet50", 25_600_000, _p100(219.0), 64,
                                     f"25.6M parameters (He et al. 2016); 219 images/s: {_TF_P100}"))
MODELS.register("resnet101", Workload("resnet101", 44_500_000,
                                      _p100(1 / (1 / 219.0 + (7.6 - 3.8) / (11.3 - 3.8) * (1 / 91.8 - 1 / 219.0))),
                                      64, "44.5M parameters; compute ASSUMED = time per image interpolated by "
                                          "FLOPs (3.8G/7.6G/11.3G, He et al. 2016 Table 1) between ResNet-50 "
                                          f"(219 images/s) and ResNet-152 (91.8 images/s) = 129 images/s: {_TF_P100}"))
MODELS.register("inception_v3", Workload("inception_v3", 23_800_000, _p100(142.0), 64,
                                         f"23.8M parameters (Szegedy et al. 2016); 142 images/s: {_TF_P100}"))


@dataclass(frozen=True)
class Published:
    """A published scaling result: ``efficiency`` of ``model`` on ``n`` workers over ``gbps`` Gbit/s
    with ring all-reduce, and its ``source``."""

    model: str
    n: int
    gbps: float
    efficiency: float
    source: str


_HOROVOD = ("Sergeev & Del Balso 2018, 'Horovod: fast and easy distributed deep learning in TensorFlow' "
            "(arXiv:1802.05799): 128 servers x 4 Pascal GPUs, 25 Gbit/s RoCE, Horovod ring all-reduce")
PUBLISHED: tuple[Published, ...] = (
    Published("inception_v3", 512, 25.0, 0.90, _HOROVOD),
    Published("resnet101", 512, 25.0, 0.90, _HOROVOD),
    Published("vgg16", 512, 25.0, 0.68, _HOROVOD),
)


@dataclass(frozen=True)
class PublishedCheck:
    """Predicted versus published: ``predicted`` at the chosen overlap, ``low``/``high`` at overlap
    0 and 1 (no / full hiding behind backward)."""

    published: Published
    predicted: float
    low: float
    high: float

    @property
    def error(self) -> float:
        """``predicted - published`` (efficiency, fraction)."""
        return self.predicted - self.published.efficiency


def check_published(overlap: float = DEFAULT_OVERLAP, latency: float = DEFAULT_LATENCY,
                    results: Iterable[Published] = PUBLISHED) -> list[PublishedCheck]:
    """The model's ring all-reduce efficiency for every published result, with the overlap bounds."""
    checks = []
    for pub in results:
        workload = MODELS.get(pub.model)
        network = Network(pub.gbps * GBIT, latency)

        def eff(phi: float, w: Workload = workload, net: Network = network, n: int = pub.n) -> float:
            return predict(w, n, net, "allreduce", overlap=phi).efficiency

        checks.append(PublishedCheck(pub, eff(overlap), eff(0.0), eff(1.0)))
    return checks


def prediction_grid(models: Sequence[str], gbps: Sequence[float], nprocs: Sequence[int], *,
                    algorithms: Sequence[Algorithm] = ALGORITHMS, overlap: float = DEFAULT_OVERLAP,
                    latency: float = DEFAULT_LATENCY, servers: int = 1) -> list[Prediction]:
    """Predictions for every model x bandwidth (Gbit/s) x algorithm x worker count.

    Raises:
        UnknownNameError: an unknown model (lists :data:`MODELS`).
    """
    workloads = [MODELS.get(m) for m in models]
    return [predict(w, n, Network(b * GBIT, latency), a, overlap=overlap, servers=servers)
            for w in workloads for b in gbps for a in algorithms for n in nprocs]


# ---------------------------------------------------------------- measured scaling
@dataclass(frozen=True)
class MeasuredPoint:
    """A measured job: ``mode`` at ``nproc`` workers, its ``samples_per_second`` and time-to-target (s,
    None when not reached)."""

    mode: str
    nproc: int
    samples_per_second: float
    time_to_target: float | None = None


def measured_efficiency(points: Sequence[MeasuredPoint]) -> tuple[dict[tuple[str, int], float], str]:
    """Scaling efficiency against ideal of every point: ``sps / (nproc * per-worker baseline)``.

    The baseline is ``ddp`` at one process (plain training, no communication) when measured, else each
    mode's own smallest process count. Returns the efficiencies and a sentence naming the baseline.
    """
    base = {(p.mode, p.nproc): p for p in points}
    if ("ddp", 1) in base and math.isfinite(base[("ddp", 1)].samples_per_second):
        ref = base[("ddp", 1)].samples_per_second
        return ({(p.mode, p.nproc): p.samples_per_second / (p.nproc * ref) for p in points},
                "ideal = N x the samples/s of ddp with 1 process")
    out = {}
    for p in points:
        own = min((q for q in points if q.mode == p.mode), key=lambda q: q.nproc)
        out[(p.mode, p.nproc)] = p.samples_per_second / (p.nproc * own.samples_per_second / own.nproc)
    return out, "ideal = N x each mode's samples/s per process at its smallest process count"


def measured_points(runs: Iterable[Any], key: str, target: float, direction: Any) -> list[MeasuredPoint]:
    """One :class:`MeasuredPoint` per distributed job, in order: ``runs`` are
    :class:`~optbench.engine.distributed.DistributedRun` objects (``config.mode``, ``config.nproc``,
    ``samples_per_second``, ``time_to_target(key, target, direction)``); time-to-target is the training
    seconds until ``key`` reached ``target`` (None when never)."""
    points = []
    for run in runs:
        reached = run.time_to_target(key, target, direction)
        points.append(MeasuredPoint(run.config.mode, run.config.nproc, run.samples_per_second,
                                    None if reached is None else reached.seconds))
    return points


@dataclass(frozen=True)
class ScalingTable:
    """Measured jobs laid out as modes x process counts.

    Attributes:
        modes: the modes in the order first measured; counts: the process counts, ascending.
        points: ``{(mode, nproc): point}`` of the measured cells.
        efficiency: scaling efficiency against ideal of each point (:func:`measured_efficiency`).
        baseline: the sentence naming the efficiency baseline.
        ratio: ``{nproc: samples/s of ddp / samples/s of ps-sync}`` where both were measured (the
            cost of a parameter server over all-reduce at equal work).
    """

    modes: tuple[str, ...]
    counts: tuple[int, ...]
    points: Mapping[tuple[str, int], MeasuredPoint]
    efficiency: Mapping[tuple[str, int], float]
    baseline: str
    ratio: Mapping[int, float]


def scaling_table(points: Sequence[MeasuredPoint]) -> ScalingTable:
    """The :class:`ScalingTable` of measured ``points`` (one per mode and process count)."""
    efficiency, baseline = measured_efficiency(points)
    cells = {(p.mode, p.nproc): p for p in points}
    counts = tuple(sorted({p.nproc for p in points}))
    ratio = {n: cells[("ddp", n)].samples_per_second / cells[("ps-sync", n)].samples_per_second
             for n in counts if ("ddp", n) in cells and ("ps-sync", n) in cells
             and cells[("ps-sync", n)].samples_per_second > 0}
    return ScalingTable(tuple(dict.fromkeys(p.mode for p in points)), counts, cells, efficiency, baseline, ratio)


__all__ = ["ALGORITHMS", "BACKWARD_FRACTION", "DEFAULT_LATENCY", "DEFAULT_OVERLAP", "GBIT", "MODELS", "PUBLISHED",
           "MeasuredPoint", "Network", "Prediction", "Published", "PublishedCheck", "ScalingTable", "Workload",
           "check_published", "measured_efficiency", "measured_points", "parameter_server_seconds", "predict",
           "prediction_grid", "ring_allreduce_seconds", "scaling_table", "step_seconds"]
