"""Int8 quantization techniques: a QAT-converted model's int8 outputs agree with its fake-quantized
outputs within one output quantization step, the int8 model is smaller than the fp32 one, post-training
dynamic quantization leaves training untouched and its int8 accuracy close to fp32, and bad
parameters or engines are refused in one line."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optbench.core.component import ModelContext, RunContext
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, TechniqueSpec
from optbench.engine import split_data, train
from optbench.tasks import get_task
from optbench.techniques.quantization import Int8Model, quantized_engine
from optbench.techniques.registry import engines_of, make_component

CPU = torch.device("cpu")


def _qat_trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 30, spec: str = "qat"):
    """A QAT component and its prepared model after ``steps`` Adam steps on ``(x, y)``."""
    torch.manual_seed(0)
    qat = make_component(TechniqueSpec.parse(spec))
    prepared = qat.prepare_model(model, ModelContext(task=None, device=CPU))
    qat.setup(RunContext(model=prepared, optimizer=None, task=None, device=CPU, generator=torch.Generator(),
                         steps_per_epoch=steps, total_steps=steps, engine="single"))
    optimizer = torch.optim.Adam(prepared.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(prepared(x), y).backward()
        optimizer.step()
    return qat, prepared


def _output_scale(fake_quant: nn.Module) -> float:
    """The scale of the graph's last activation fake-quantizer: the model's output quantization step."""
    from torch.ao.quantization import FakeQuantize

    quantizers = [m for _, m in fake_quant.named_children() if isinstance(m, FakeQuantize)]
    return float(quantizers[-1].scale)


def test_int8_outputs_agree_with_fake_quant_within_one_step():
    torch.manual_seed(0)
    x, y = torch.randn(256, 20), torch.randint(0, 5, (256,))
    qat, prepared = _qat_trained(nn.Sequential(nn.Flatten(), nn.Linear(20, 5)), x, y)
    int8 = qat.eval_model(prepared, lambda: iter([x]))
    assert isinstance(int8, Int8Model)
    fake_quant = qat._reference(prepared)
    with torch.no_grad():
        reference, quantized = fake_quant(x), int8(x)
    step = _output_scale(fake_quant)
    assert 0 < (reference - quantized).abs().max().item() <= step * (1 + 1e-4)
    metrics = qat.metrics()
    assert metrics["int8_agreement"] > 0.98  # (bytes: a 5x20 layer is smaller than its int8 file's metadata)
    assert metrics["int8_latency_ms"] > 0 and metrics["fp32_latency_ms"] > 0


def test_qat_cnn_converts_to_a_smaller_int8_model_that_agrees_with_training():
    task = get_task("mnist1d_cnn")
    torch.manual_seed(0)
    x, y = torch.randn(256, 40), torch.randint(0, 10, (256,))
    qat, prepared = _qat_trained(task.make_model(), x, y, steps=20)
    before = {k: v.clone() for k, v in prepared.state_dict().items()}
    int8 = qat.eval_model(prepared, lambda: iter([x]))
    assert all(torch.equal(before[k], v) for k, v in prepared.state_dict().items())  # evaluation moved no range
    fake_quant = qat._reference(prepared)
    with torch.no_grad():
        reference, quantized = fake_quant(x), int8(x)
    step = _output_scale(fake_quant)
    # layers' roundings add up through 4 quantized layers: a few output steps, the same predictions
    assert (reference - quantized).abs().max().item() <= 16 * step
    assert (reference.argmax(-1) == quantized.argmax(-1)).float().mean().item() >= 0.95
    assert qat.metrics()["int8_bytes"] < 0.7 * qat.metrics()["fp32_bytes"]
    assert prepared.training  # eval_model left the trained model as it was


@pytest.fixture(scope="module")
def mnist1d():
    task = get_task("mnist1d_mlp")
    return task, split_data(task.load_data(), task.valid_size, 0, 1000)


def test_ptq_dynamic_leaves_training_alone_and_stays_close_to_fp32(mnist1d):
    task, data = mnist1d
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=2, train_size=1000)
    fp32 = train(task, data, recipe, seed=0, device=CPU)
    int8 = train(task, data, dataclasses.replace(recipe, techniques=["ptq_dynamic"]), seed=0, device=CPU)
    assert fp32.status.value == int8.status.value == "finished", int8.error
    for a, b in zip(fp32.epochs, int8.epochs, strict=True):
        assert a.metrics["train_loss"] == b.metrics["train_loss"]  # training untouched
        assert math.isfinite(b.metrics["test_accuracy"])
        assert abs(a.metrics["test_accuracy"] - b.metrics["test_accuracy"]) <= 0.02
        assert b.metrics["int8_bytes"] < b.metrics["fp32_bytes"] and b.metrics["int8_agreement"] > 0.95
    assert fp32.epochs[-1].metrics["test_accuracy"] > 0.2  # 10 classes: it learned


def test_qat_and_ptq_static_train_end_to_end(mnist1d):
    task, data = mnist1d
    for technique in ("qat:freeze_after=1", "ptq_static:calibration_batches=2,observer=histogram"):
        recipe = Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=2, train_size=1000, techniques=[technique])
        result = train(task, data, recipe, seed=0, device=CPU)
        assert result.status.value == "finished", result.error
        last = result.epochs[-1].metrics
        assert last["test_accuracy"] > 0.2 and last["int8_bytes"] < last["fp32_bytes"], technique
        cost = result.environment["model_cost"]  # the run's model cost is the int8 model's
        # (the same tensors; the wrapper's state-dict keys carry a "quantized." prefix)
        assert abs(cost["model_bytes"] - last["int8_bytes"]) < 0.02 * last["int8_bytes"], technique
        assert cost["model_bytes"] < last["fp32_bytes"] and cost["parameters"] > 0, technique
    assert torch.backends.quantized.engine == "x86"  # no global state left behind


def test_quantized_engine_restores_the_backend():
    before = torch.backends.quantized.engine
    with quantized_engine("qnnpack"):
        assert torch.backends.quantized.engine == "qnnpack"
    assert torch.backends.quantized.engine == before


@pytest.mark.parametrize("spec", ["qat:backend=tpu", "qat:freeze_after=-1", "qat:freeze_after=1.5",
                                  "ptq_dynamic:backend=int4", "ptq_static:calibration_batches=0",
                                  "ptq_static:observer=percentile", "qat:bits=4"])
def test_bad_parameters_are_refused_in_one_line(spec):
    with pytest.raises(ConfigError) as err:
        make_component(TechniqueSpec.parse(spec))
    assert "\n" not in str(err.value)


def test_every_engine_runs_them_and_untraceable_models_are_refused():
    assert engines_of("qat") == engines_of("ptq_dynamic") == engines_of("ptq_static") == ("single", "ddp", "ps")

    class Branchy(nn.Module):  # data-dependent control flow: FX cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return self.linear(x) if x.sum() > 0 else -self.linear(x)

    for spec in ("qat", "ptq_static"):
        component = make_component(TechniqueSpec.parse(spec))
        with pytest.raises(ConfigError, match=f"{spec} model 'Branchy'"):
            component.prepare_model(Branchy(), ModelContext(task=SimpleNamespace(name="t"), device=CPU))
