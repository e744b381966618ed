"""The cost model against measurements here and against the reference distributed experiment.

Two uses of :mod:`optbench.analysis.scaling`'s alpha-beta model:

* **Predicting a measurement before it is made** (``optbench scale``). The model is calibrated on
  this machine: the per-step compute time of a 1-process job (its median ``compute_seconds``:
  forward, backward, update), the model's gradient bytes, and the latency and bandwidth of the local
  transport measured by ping-pong (:func:`optbench.engine.distributed.probe.probe_link`), stored as a
  :class:`Calibration` in the study. The N-process throughput it predicts is
  ``N * batch / (compute_1 + comm(N) [+ server_1])``, with ``comm`` the ring all-reduce time for
  ``ddp`` and the parameter-server time (one server) for the ``ps-*`` modes, ``server_1`` the server's
  update measured in the 1-process job (:func:`predicted_samples_per_second`); no overlap (on CPU,
  gloo reduces one bucket after the backward pass). Not modelled: CPU contention between processes
  on a machine with few cores (a server mode runs N + 1 processes), stragglers, wake-up latency —
  the printed error says how much those matter.
* **The reference experiment's setting** (TensorFlow benchmarks with Horovod and a parameter server,
  16 K80 GPUs, 25 Gbit/s, batch 32 per GPU, synthetic ImageNet): per-GPU compute from the published
  K80 throughput of tf_cnn_benchmarks (:data:`K80_SOURCE`), parameter counts of the networks defined in
  :mod:`optbench.tasks.imagenet`; :func:`reference_findings` sets the predicted shape beside each of
  the reference's conclusions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from optbench.analysis.scaling import (
    Network,
    Prediction,
    Workload,
    parameter_server_seconds,
    predict,
    ring_allreduce_seconds,
)
from optbench.core.errors import ConfigError, require_positive


# ---------------------------------------------------------------- predicting a measurement here
@dataclass(frozen=True)
class Calibration:
    """What the model needs besides a 1-process job's compute time: the local transport's one-way
    ``latency`` (s) and ``bandwidth`` (bytes/s), and the model's ``parameters`` (gradient bytes =
    ``bytes_per_parameter`` x parameters)."""

    latency: float
    bandwidth: float
    parameters: int
    bytes_per_parameter: int = 4

    def __post_init__(self) -> None:
        require_positive("calibration bandwidth", self.bandwidth)
        require_positive("calibration parameters", self.parameters, integer=True)
        if not (self.latency >= 0 and math.isfinite(self.latency)):
            raise ConfigError("calibration latency", self.latency, "a finite number >= 0 (seconds)")

    @property
    def network(self) -> Network:
        """The measured link as a :class:`~optbench.analysis.scaling.Network`."""
        return Network(bandwidth=self.bandwidth, latency=self.latency)

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready form (stored in the study's configuration under ``"calibration"``)."""
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        """The calibration stored by :meth:`to_dict`, or None when ``data`` holds none."""
        if not isinstance(data, Mapping) or not {"latency", "bandwidth", "parameters"} <= set(data):
            return None
        return cls(float(data["latency"]), float(data["bandwidth"]), int(data["parameters"]),
                   int(data.get("bytes_per_parameter", 4)))


#: The modes the cost model covers (the other ``ddp+METHOD`` modes are measured, not modelled).
MODELLED = "ddp, ddp+fp16, ddp+bf16, ps-sync, ps-async, ps-ssp:S"


def modelled(mode: str) -> bool:
    """True for the modes :func:`comm_seconds` models (:data:`MODELLED`)."""
    return mode in ("ddp", "ddp+fp16", "ddp+bf16") or mode.startswith("ps-")


def comm_seconds(mode: str, n: int, calibration: Calibration) -> float:
    """Modelled communication per step (s) of ``mode`` at ``n`` workers: ring all-reduce for ``ddp``
    (0 at one worker; half the bytes for ``ddp+fp16``/``ddp+bf16``), push + pull at one parameter server
    for ``ps-sync``/``ps-async``/``ps-ssp:S``.

    Raises:
        ConfigError: an unknown mode.
    """
    model_bytes = calibration.parameters * calibration.bytes_per_parameter
    if mode == "ddp":
        return ring_allreduce_seconds(model_bytes, n, calibration.network)
    if mode in ("ddp+fp16", "ddp+bf16"):  # the same ring, half the bytes
        return ring_allreduce_seconds(model_bytes / 2, n, calibration.network)
    if mode.startswith("ps-"):
        return parameter_server_seconds(model_bytes, n, calibration.network)
    raise ConfigError("mode", mode, MODELLED)


def predicted_samples_per_second(mode: str, n: int, compute_seconds: float, batch_size: int,
                                 calibration: Calibration, server_seconds: float = 0.0) -> float:
    """Throughput (samples/s, all workers) of ``mode`` at ``n`` workers predicted from a 1-process
    job's per-step ``compute_seconds`` and, for the server modes, its ``server_seconds`` (the 1-process
    job's median wait: the server's update with no other worker queued):

    * ``ddp``: ``n * batch / (compute + allreduce(n))``;
    * ``ps-sync``: ``n * batch / (compute + ps(n) + server)`` (one update per step);
    * ``ps-async``/``ps-ssp:S``: the same, capped at ``batch / server`` (the server applies every
      worker's gradient in turn, so it cannot exceed one batch per update time).
    """
    require_positive("compute_seconds", compute_seconds)
    server = max(0.0, server_seconds) if mode.startswith("ps-") else 0.0
    rate = n * batch_size / (compute_seconds + comm_seconds(mode, n, calibration) + server)
    if mode.startswith("ps-") and mode != "ps-sync" and server > 0:
        rate = min(rate, batch_size / server)
    return rate


@dataclass(frozen=True)
class PredictionCheck:
    """A prediction made from the 1-process job and the measurement it predicted (samples/s);
    ``error`` = measured / predicted - 1 (NaN before the measurement)."""

    mode: str
    nproc: int
    predicted: float
    measured: float = math.nan

    @property
    def error(self) -> float:
        return self.measured / self.predicted - 1 if self.predicted > 0 else math.nan


def one_process_compute(results: Iterable[Any]) -> dict[str, tuple[float, int, float]]:
    """``{mode: (median compute s per step, batch per worker, median wait s per step)}`` of the stored
    1-process distributed jobs (``RunResult.environment["distributed"]``), for :func:`predictions_for`."""
    out: dict[str, tuple[float, int, float]] = {}
    for run in results:
        record = getattr(run, "environment", {}).get("distributed")
        if not isinstance(record, Mapping) or int(record.get("nproc", 0)) != 1:
            continue
        medians = record.get("step_medians") or {}
        compute = float(medians.get("compute_seconds", math.nan))
        wait = float(medians.get("wait_seconds", 0.0))
        if math.isfinite(compute) and compute > 0:
            out[str(record["mode"])] = (compute, int(record.get("batch_size_per_worker", 0)),
                                        wait if math.isfinite(wait) else 0.0)
    return out


def predictions_for(cells: Iterable[tuple[str, int]], compute: Mapping[str, tuple[float, int, float]],
                    calibration: Calibration) -> dict[tuple[str, int], float]:
    """Predicted samples/s of each ``(mode, nproc)`` with nproc > 1 of a :func:`modelled` mode, from
    ``compute`` (see :func:`one_process_compute`): the mode's own 1-process job, else ``ddp``'s (plain
    training, no server time)."""
    out = {}
    for mode, n in cells:
        if not modelled(mode):
            continue
        own = compute.get(mode)
        base = own or compute.get("ddp")
        if n > 1 and base is not None and base[1] > 0:
            out[(mode, n)] = predicted_samples_per_second(mode, n, base[0], base[1], calibration,
                                                          server_seconds=base[2] if own else 0.0)
    return out


# ---------------------------------------------------------------- the reference experiment's setting
K80_SOURCE = ("TensorFlow benchmarks (tensorflow.org/performance/benchmarks, May 2017), Google Compute Engine, "
              "one NVIDIA Tesla K80, tf_cnn_benchmarks, synthetic ImageNet data, batch 32: ResNet-50 49.5, "
              "ResNet-152 20.0, VGG-16 35.4 images/s")

#: Forward FLOPs of one image of the networks of :mod:`optbench.tasks.imagenet` (224 px; Inception-v4
#: 299 px), as ``torch.utils.flop_counter`` counts them (2 per multiply-add); checked by a test.
FORWARD_FLOPS = {"resnet50": 8_178_368_512, "resnet152": 23_027_253_248, "vgg16": 30_940_528_640,
                 "vgg19": 39_264_124_928, "inception_v4": 24_507_949_248}

#: Parameters of the networks of :mod:`optbench.tasks.imagenet` (the published definitions).
PARAMETERS = {"resnet50": 25_557_032, "resnet152": 60_192_808, "vgg16": 138_357_544, "vgg19": 143_667_240,
              "inception_v4": 42_679_816}

#: One K80's training images/s at batch 32: measured (:data:`K80_SOURCE`) for ResNet-50, ResNet-152 and
#: VGG-16; VGG-19 and Inception-v4 are not in that table and are ASSUMED from a measured network of
#: the same family or depth by forward FLOPs (VGG-19 from VGG-16, Inception-v4 from ResNet-152).
K80_IMAGES_PER_SECOND = {
    "resnet50": 49.5, "resnet152": 20.0, "vgg16": 35.4,
    "vgg19": 35.4 * FORWARD_FLOPS["vgg16"] / FORWARD_FLOPS["vgg19"],
    "inception_v4": 20.0 * FORWARD_FLOPS["resnet152"] / FORWARD_FLOPS["inception_v4"],
}

REFERENCE_BATCH = 32
REFERENCE_GBPS = 25.0
REFERENCE_WORKERS = 16


def reference_workloads() -> dict[str, Workload]:
    """The five networks as one K80's workload at batch 32 (:data:`K80_IMAGES_PER_SECOND`)."""
    measured = {"resnet50", "resnet152", "vgg16"}
    return {name: Workload(name, PARAMETERS[name], REFERENCE_BATCH / ips, REFERENCE_BATCH,
                           K80_SOURCE if name in measured else f"ASSUMED by forward FLOPs from {K80_SOURCE}")
            for name, ips in K80_IMAGES_PER_SECOND.items()}


def reference_predictions(nprocs: Sequence[int] = (1, 2, 4, 8, 16), gbps: float = REFERENCE_GBPS, *,
                          overlap: float = 0.5, servers: int = 1) -> list[Prediction]:
    """Predicted images/s and efficiency of every network, all-reduce and parameter server, at each
    process count, on ``gbps`` Gbit/s links (the reference: 25)."""
    network = Network.gbit(gbps)
    return [predict(w, n, network, algorithm, overlap=overlap, servers=servers)
            for w in reference_workloads().values() for algorithm in ("allreduce", "ps") for n in nprocs]


@dataclass(frozen=True)
class Finding:
    """One conclusion of the reference experiment, what the model predicts for it, and whether the
    prediction has the same shape (None: the model cannot say)."""

    claim: str
    predicted: str
    agrees: bool | None


def reference_findings(*, workers: int = REFERENCE_WORKERS, gbps: float = REFERENCE_GBPS, overlap: float = 0.5,
                       measured_async_over_sync: float | None = None) -> list[Finding]:
    """The reference's conclusions point by point against the model's predictions at ``workers`` K80s
    on ``gbps`` Gbit/s (and, for the asynchronous parameter server, a measured ratio when given).

    ``agrees`` compares the direction and ordering each claim states (all-reduce ahead of the
    parameter server for every network; VGG the least efficient; an efficiency of 90%+ for some
    network; at least 20 points more VGG-16 efficiency from 10 to 100 Gbit/s; asynchronous PS within
    10% of synchronous); the texts give the magnitudes, which can differ from the reference's."""
    preds = {(p.model, p.algorithm, p.n): p for p in reference_predictions((workers,), gbps, overlap=overlap)}
    names = list(PARAMETERS)
    ratio = {m: preds[(m, "allreduce", workers)].samples_per_second / preds[(m, "ps", workers)].samples_per_second
             for m in names}
    eff = {m: preds[(m, "allreduce", workers)].efficiency for m in names}
    vgg = max(eff["vgg16"], eff["vgg19"])
    others = min(eff[m] for m in names if not m.startswith("vgg"))
    vgg16 = reference_workloads()["vgg16"]
    v10, v100 = (predict(vgg16, workers, Network.gbit(b), "allreduce", overlap=overlap).efficiency for b in (10, 100))
    lo, hi = min(ratio.values()), max(ratio.values())
    out = [
        Finding("ring all-reduce gives more images/s than the parameter server at the same process count "
                "(about twice in the reference)",
                f"all-reduce / one-server PS at {workers} workers: {lo:.2f}x .. {hi:.2f}x over the five networks "
                "(the gap grows with model size)", lo > 1),
        Finding("all-reduce scales nearly linearly for some models",
                f"efficiency at {workers} workers: " + ", ".join(f"{m} {eff[m]:.0%}" for m in names),
                max(eff.values()) >= 0.9),
        Finding("VGG-16/VGG-19 scale poorly because of their size (138M/144M parameters)",
                f"VGG efficiency at most {vgg:.0%} against at least {others:.0%} for ResNets and Inception-v4 "
                "(the lowest of the five)", vgg < others),
        Finding("the right choice depends on network bandwidth",
                f"VGG-16 all-reduce efficiency at {workers} workers: {v10:.0%} at 10, {eff['vgg16']:.0%} at "
                f"{gbps:g}, {v100:.0%} at 100 Gbit/s", v100 - v10 >= 0.2),
    ]
    if measured_async_over_sync is None:
        out.append(Finding("asynchronous PS is no faster than synchronous when workers are equal",
                           "not modelled (one formula for both; measure ps-async and ps-sync here)", None))
    else:
        out.append(Finding("asynchronous PS is no faster than synchronous when workers are equal",
                           f"measured here: ps-async / ps-sync samples/s = {measured_async_over_sync:.2f}",
                           measured_async_over_sync <= 1.1))
    return out


__all__ = ["Calibration", "FORWARD_FLOPS", "Finding", "K80_IMAGES_PER_SECOND", "K80_SOURCE", "PARAMETERS",
           "PredictionCheck", "REFERENCE_BATCH", "REFERENCE_GBPS", "REFERENCE_WORKERS", "comm_seconds",
           "one_process_compute", "predicted_samples_per_second", "predictions_for", "reference_findings",
           "reference_predictions", "reference_workloads"]
