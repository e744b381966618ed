"""Int8 quantization as training techniques: quantization-aware training and two post-training
baselines, each evaluated as the int8 model it produces.

* ``qat`` -- quantization-aware training (Jacob et al. 2018, "Quantization and training of neural
  networks for efficient integer-arithmetic-only inference", sec. 3; Krishnamoorthi 2018,
  "Quantizing deep convolutional networks for efficient inference: a whitepaper", sec. 3.2): the
  model is trained with fake quantization of weights (per channel) and activations (per tensor),
  ``q(r) = S * (clamp(round(r / S) + Z, q_min, q_max) - Z)`` (Jacob et al. eq. 1), the gradient
  passed straight through the rounding (Bengio et al. 2013); batch norm folded into the preceding
  convolution (Jacob et al. sec. 3.2). Optionally the observers (and batch-norm statistics) are
  frozen after ``freeze_after`` epochs (Krishnamoorthi 2018, sec. 3.2, "freeze" experiments).
* ``ptq_dynamic`` -- post-training dynamic quantization: int8 weights of ``Linear``/``LSTM``/``GRU``
  layers, activations quantized on the fly per batch (Krishnamoorthi 2018, sec. 3.1; convolutions
  stay fp32: torch has no dynamic int8 convolution).
* ``ptq_static`` -- post-training static quantization: activation ranges calibrated on
  ``calibration_batches`` training batches (min/max observers by default, torch's histogram
  observer -- ranges minimizing the L2 quantization error -- with ``observer=histogram``), weights
  per channel (Krishnamoorthi 2018, sec. 3.1; Jacob et al. 2018, sec. 2).

Implementation: ``torch.ao.quantization``, FX graph mode (``prepare_qat_fx``/``prepare_fx`` +
``convert_fx``). FX mode needs no ``QuantStub``/``DeQuantStub`` edits of the task's models, fuses
conv/linear + batch norm + ReLU by itself, and works on CPU with torch 2.13 on the catalogue's CNNs
and MLPs (tried: ``mnist1d_cnn``, ``mnist1d_mlp``, ``fmnist_cnn3``, the parity test's conv net with
batch norm); a model FX cannot trace (data-dependent control flow) is refused when the run is built.

Backend ``onednn`` by default (oneDNN's int8 kernels for x86 CPUs); ``x86``, ``fbgemm`` and
``qnnpack`` on request (this build supports all four). Why not torch's default ``x86``: measured
here (mnist1d_cnn after 30 QAT steps), its QAT qconfig observes activations on 0..255 with the
deprecated ``reduce_range=True``, and the converted model's logits then differ from the
fake-quantized ones by 0.44, i.e. 128 output quantization steps (argmax agreement 0.86), ``fbgemm``
alike; with ``onednn`` and ``qnnpack`` they differ by 0.016 and 0.007 (a few steps through four
quantized layers; argmax agreement 0.99+), and a single quantized layer agrees within one step
(``tests/test_quantization.py``).

Why not torchao: it is not a dependency (``pip download torchao --no-deps`` fetches 0.18.0; tried in
a scratch directory with torch 2.13 on CPU). Its QAT (``QATConfig`` with, e.g.,
``Int8DynamicActivationIntxWeightConfig``) runs on CPU but fake-quantizes and converts ``nn.Linear``
(and embeddings) only: the catalogue's convolutions stay fp32, activations are quantized dynamically
(no static int8 activations, no conv + batch-norm folding), so it would not measure an int8 CNN.
``torch.ao.quantization`` is deprecated in favour of torchao (its deprecation warnings are silenced
inside these components); if it is removed, these components need porting to torchao's PT2E flow.

What the run reports. The int8 kernels run on CPU, so every epoch ``eval_model`` converts a copy of
the model (moved to CPU) to int8 and returns it, wrapped so that it runs under the component's
backend (``torch.backends.quantized.engine`` is set around each call and restored: no global state
outlives a call) and takes and returns tensors on the run's device. So the ``valid_*``/``test_*``
metrics of these runs ARE the int8 model's (early stopping, best epoch and time-to-target too); the
training itself is untouched by ``ptq_*``, so the fp32 numbers of the same seed are those of the
same recipe without the technique (``optbench compare`` with and without it: identical training,
only the evaluated model differs). ``metrics()`` adds, every epoch, on one training batch:

    int8_bytes, fp32_bytes           serialized state dict of the int8 model / of the fp32 model
    int8_latency_ms, fp32_latency_ms median CPU forward time of one evaluation batch (5 repeats
                                     after a warm-up, the process's thread count)
    int8_agreement                   fraction of the batch where the int8 argmax equals the
                                     reference's (ptq: the fp32 model; qat: the fake-quantized model)

The fp32 reference of ``qat`` is the task's float architecture (latency does not depend on the
weights' values; bytes do not either). Latency is wall time on the evaluating process's CPU threads.

Engines: the int8 copy is built and evaluated where the run evaluates (single process, DDP rank 0,
the parameter server), from that process's model, so every engine runs these components. QAT's
observers live in the model: DDP broadcasts rank 0's observer buffers with every forward; the
parameter server receives the workers' floating buffers (the observed ranges, as it receives
batch-norm statistics) with the gradients, and its integer zero points are recomputed from those
ranges before it evaluates (``_refresh_qparams``; the int8 conversion reads the ranges anyway).
The int8 numbers are a discontinuous function of the weights: engines whose fp32
weights differ in the last bits (the single process on 2 threads, a rank on 1) can round some
activation differently and differ by ~1e-5 relative in the int8 loss, where the fp32 numbers agree
to 1e-7 (measured with ``ptq_static`` on the parity test's conv net: valid loss 1.46265 on 2
threads, 1.46267 on 1 thread or in ``ddp``).
"""

from __future__ import annotations

import copy
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import ModelContext, RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.model_measure import MeasuredModel

#: The quantized backends a component may name (``torch.backends.quantized.engine``).
BACKENDS = ("x86", "fbgemm", "onednn", "qnnpack")
_LATENCY_REPEATS = 5


@contextmanager
def quantized_engine(backend: str) -> Iterator[None]:
    """Run the block with ``torch.backends.quantized.engine = backend``, then restore the previous one;
    the deprecation warnings of ``torch.ao.quantization`` are silenced inside."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*Please use quant_min and quant_max.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        torch.backends.quantized.engine = backend
        try:
            yield
        finally:
            torch.backends.quantized.engine = previous


def model_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s serialized state dict (``torch.save``): the size of the file one ships."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def latency_ms(model: nn.Module, x: Tensor, repeats: int = _LATENCY_REPEATS) -> float:
    """Median wall time (ms) of ``model(x)`` in inference mode over ``repeats`` calls after one warm-up."""
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


class Int8Model(nn.Module):
    """A converted int8 module run on CPU under its quantized backend: takes inputs on any device and
    returns float outputs on the input's device, so the harness evaluates it like any model."""

    def __init__(self, quantized: nn.Module, backend: str, reference: nn.Module | None = None) -> None:
        super().__init__()
        self.quantized = quantized
        self.backend = backend
        # a plain attribute, not a submodule: the float model stays out of this one's state dict
        self.__dict__["_reference"] = reference

    def flops_reference(self) -> nn.Module:
        """The float architecture whose forward FLOPs the int8 kernels perform (the model measure
        counts FLOPs on it: ``FlopCounterMode`` has no formulas for quantized kernels)."""
        return self._reference if self._reference is not None else self.quantized

    def forward(self, x: Tensor) -> Tensor:
        with quantized_engine(self.backend):
            out = self.quantized(x.cpu())
        return out.to(x.device)


def _check_backend(field: str, backend: Any) -> str:
    if backend not in BACKENDS:
        raise ConfigError(field, backend, BACKENDS)
    return backend


def _check_traceable(name: str, model: nn.Module) -> None:
    """Refuse a model FX cannot trace (data-dependent control flow), before anything trains."""
    try:
        torch.fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises TraceError, TypeError, NotImplementedError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{name} model", type(model).__name__,
                          f"a model torch.fx can trace (FX graph mode quantization; {first})") from exc


def _minmax_activations(mapping: Any) -> Any:
    """``mapping`` (a ``QConfigMapping``) with every histogram activation observer replaced by a
    min/max observer of the same range."""
    from torch.ao.quantization import MinMaxObserver, QConfig
    from torch.ao.quantization.observer import HistogramObserver

    def swap(qconfig: Any) -> Any:
        if qconfig is None:
            return qconfig
        partial = getattr(qconfig.activation, "p", None)
        if getattr(partial, "func", qconfig.activation) is not HistogramObserver:
            return qconfig
        keywords = dict(partial.keywords) if partial is not None else {}
        return QConfig(activation=MinMaxObserver.with_args(**keywords), weight=qconfig.weight)

    mapping.set_global(swap(mapping.global_qconfig))
    for object_type, qconfig in list(mapping.object_type_qconfigs.items()):
        mapping.set_object_type(object_type, swap(qconfig))
    return mapping


@torch.no_grad()
def _observe_weights(model: nn.Module) -> None:
    """Let every weight fake-quantizer observe its layer's initial weight once, so that the per-channel
    observers' buffers (created empty, sized on their first observation) have their final shapes
    before the optimizer, DDP, checkpoints and the parameter server's buffer exchange see them: the
    server never runs a forward, and the floating buffers it receives from the workers must have the
    sizes of its own (measured: without this, gloo aborts on the size mismatch). For a layer without
    folded batch norm this is exactly what its first forward observes (the moving average of two
    equal observations is that observation)."""
    for module in model.modules():
        fake_quant = getattr(module, "weight_fake_quant", None)
        weight = getattr(module, "weight", None)
        if fake_quant is not None and isinstance(weight, Tensor):
            fake_quant(weight)


def _refresh_qparams(model: nn.Module) -> None:
    """Set every fake-quantizer's ``scale``/``zero_point`` from its observer's ranges (what its next
    observing forward would set; on the parameter server the floating ranges come from the workers
    while the integer zero points stay local)."""
    from torch.ao.quantization import FakeQuantize

    for module in model.modules():
        if isinstance(module, FakeQuantize):
            observer = module.activation_post_process
            if getattr(observer, "min_val", torch.empty(0)).numel() and torch.isfinite(observer.min_val).all():
                scale, zero_point = module.calculate_qparams()
                module.scale.resize_(scale.shape).copy_(scale)
                module.zero_point.resize_(zero_point.shape).copy_(zero_point)


def _cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


def _agreement(a: Tensor, b: Tensor) -> float:
    return float((a.argmax(dim=-1) == b.argmax(dim=-1)).float().mean())


class _Int8Evaluated(MeasuredModel):
    """Shared by the quantization components: evaluate the int8 model, record bytes and latency; the
    run's ``model_cost`` is the last evaluated int8 model's (:mod:`optbench.techniques.model_measure`)."""

    family = "quantization"
    backend: str = "onednn"

    def __init__(self) -> None:
        super().__init__()
        self._metrics: dict[str, float] = {}
        self._fp32_reference: nn.Module | None = None
        self._int8: nn.Module | None = None

    def setup(self, run: RunContext) -> None:
        self.capture_example(run.model)

    def model_to_measure(self, model: nn.Module) -> nn.Module:
        """The int8 model last evaluated (the fp32 one before any evaluation)."""
        return self._int8 if self._int8 is not None else model

    def state_dict(self) -> dict[str, Any]:
        return self.example_state()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_example_state(state)

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        if self.backend not in torch.backends.quantized.supported_engines:
            supported = ", ".join(torch.backends.quantized.supported_engines)
            raise ConfigError(f"{self.name} backend", self.backend, f"a backend this torch build supports: {supported}")
        return model

    def _reference(self, model: nn.Module) -> nn.Module:
        """The fp32 model measured against (bytes, latency, agreement), on CPU in eval mode."""
        return _cpu_copy(model)

    def _convert(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        raise NotImplementedError

    def eval_model(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        batch = next(iter(train_inputs())).cpu()
        if self.example_input is None:  # a parameter server never runs the model forward itself
            self.example_input = batch[:1].clone()
        reference = self._reference(model)
        with quantized_engine(self.backend):
            quantized = self._convert(model, train_inputs)
            with torch.inference_mode():
                agreement = _agreement(quantized(batch), reference(batch))
            fp32 = self._fp32_reference if self._fp32_reference is not None else reference
            int8_ms, fp32_ms = latency_ms(quantized, batch), latency_ms(fp32, batch)
        self._metrics = {"int8_bytes": float(model_bytes(quantized)), "fp32_bytes": float(model_bytes(fp32)),
                         "int8_latency_ms": int8_ms, "fp32_latency_ms": fp32_ms, "int8_agreement": agreement}
        self._int8 = Int8Model(quantized, self.backend, reference=fp32)
        return self._int8

    def metrics(self) -> dict[str, float]:
        return dict(self._metrics)


class QuantizationAwareTraining(_Int8Evaluated):
    """Quantization-aware training with fake-quantized weights and activations (Jacob et al. 2018,
    sec. 3; FX graph mode of ``torch.ao.quantization``); every epoch the model is converted to int8
    and the int8 model is what is evaluated (see the module docstring).

    Args:
        backend: the quantized backend (``onednn`` default; ``x86``, ``fbgemm``, ``qnnpack``).
        freeze_after: after this many epochs the observers (quantization ranges) and batch-norm
            statistics stop updating (Krishnamoorthi 2018, sec. 3.2); 0: never.

    Raises:
        ConfigError: an unknown backend or a negative ``freeze_after``; when the run is built: a
            backend this torch build lacks, a model FX cannot trace.
    """

    name = "qat"
    source = "Jacob et al. 2018, sec. 3 (eq. 1, simulated quantization, BN folding); Krishnamoorthi 2018, sec. 3.2"
    description = "Train with fake int8 quantization (FX QAT), evaluate the converted int8 model; bytes, latency."

    def __init__(self, *, backend: str = "onednn", freeze_after: int = 0) -> None:
        super().__init__()
        self.backend = _check_backend("qat backend", backend)
        self.freeze_after = _validate.integer("qat freeze_after", freeze_after, low=0)
        self._model: nn.Module | None = None

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        super().prepare_model(model, context)
        _check_traceable(self.name, model)
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        self._fp32_reference = _cpu_copy(model)
        with quantized_engine(self.backend):
            # example_inputs only seed FX's optional shape passes, unused by these qconfigs
            prepared = prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping(self.backend), (torch.zeros(1),))
            _observe_weights(prepared)
        return prepared.to(context.device)

    def setup(self, run: RunContext) -> None:
        super().setup(run)
        self._model = run.model

    def before_train_epoch(self, epoch: int) -> None:
        if self.freeze_after and epoch > self.freeze_after and self._model is not None:
            from torch.ao.nn.intrinsic import qat as intrinsic_qat
            from torch.ao.quantization import disable_observer

            self._model.apply(disable_observer)
            self._model.apply(intrinsic_qat.freeze_bn_stats)

    def _reference(self, model: nn.Module) -> nn.Module:
        from torch.ao.quantization import disable_observer

        fake_quant = _cpu_copy(model)
        fake_quant.apply(disable_observer)  # evaluation must not move the ranges
        _refresh_qparams(fake_quant)
        return fake_quant

    def _convert(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        from torch.ao.quantization import disable_observer
        from torch.ao.quantization.quantize_fx import convert_fx

        trained = _cpu_copy(model)
        trained.apply(disable_observer)
        return convert_fx(trained)


class DynamicQuantization(_Int8Evaluated):
    """Post-training dynamic int8 quantization of ``Linear``/``LSTM``/``GRU`` layers (weights int8,
    activations quantized per batch on the fly; Krishnamoorthi 2018, sec. 3.1), evaluated every
    epoch in place of the fp32 model; training is unchanged.

    Args:
        backend: the quantized backend (``onednn`` default; ``x86``, ``fbgemm``, ``qnnpack``).

    Raises:
        ConfigError: an unknown backend; when the run is built, a backend this torch build lacks.
    """

    name = "ptq_dynamic"
    source = "Krishnamoorthi 2018, sec. 3.1 (post-training dynamic quantization)"
    description = "Evaluate the model with int8 dynamic quantization of Linear/LSTM/GRU layers; bytes, latency."

    def __init__(self, *, backend: str = "onednn") -> None:
        super().__init__()
        self.backend = _check_backend("ptq_dynamic backend", backend)

    def _convert(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(_cpu_copy(model), {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)


class StaticQuantization(_Int8Evaluated):
    """Post-training static int8 quantization (FX graph mode): activation ranges calibrated on the
    first ``calibration_batches`` training batches, weights per channel (Krishnamoorthi 2018, sec.
    3.1; Jacob et al. 2018, sec. 2), evaluated every epoch in place of the fp32 model; training is
    unchanged.

    Args:
        backend: the quantized backend (``onednn`` default; ``x86``, ``fbgemm``, ``qnnpack``).
        calibration_batches: training batches (of the evaluation batch size) run to calibrate (>= 1).
        observer: how activation ranges are calibrated: ``minmax`` (the observed min and max) or
            ``histogram`` (torch's default: the range minimizing the L2 quantization error of a
            histogram of the activations).

    Raises:
        ConfigError: an unknown backend or observer, ``calibration_batches`` < 1; when the run is
            built: a backend this torch build lacks, a model FX cannot trace.
    """

    name = "ptq_static"
    source = "Krishnamoorthi 2018, sec. 3.1 (post-training static quantization, calibrated ranges)"
    description = "Evaluate the model with int8 static quantization calibrated on training batches; bytes, latency."

    def __init__(self, *, backend: str = "onednn", calibration_batches: int = 8, observer: str = "minmax") -> None:
        super().__init__()
        self.backend = _check_backend("ptq_static backend", backend)
        if observer not in ("minmax", "histogram"):
            raise ConfigError("ptq_static observer", observer, ("minmax", "histogram"))
        self.observer = observer
        self.calibration_batches = _validate.integer("ptq_static calibration_batches", calibration_batches, low=1)

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        super().prepare_model(model, context)
        _check_traceable(self.name, model)
        return model

    def _convert(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        mapping = get_default_qconfig_mapping(self.backend)
        if self.observer == "minmax":
            mapping = _minmax_activations(mapping)
        observed = prepare_fx(_cpu_copy(model), mapping, (torch.zeros(1),))
        with torch.no_grad():  # observers update their buffers in place
            for i, x in enumerate(train_inputs()):
                if i >= self.calibration_batches:
                    break
                observed(x.cpu())
        return convert_fx(observed)


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (QuantizationAwareTraining, DynamicQuantization, StaticQuantization)

__all__ = ["BACKENDS", "COMPONENTS", "DynamicQuantization", "Int8Model", "QuantizationAwareTraining",
           "StaticQuantization", "latency_ms", "model_bytes", "quantized_engine"]
