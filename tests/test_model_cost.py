"""Model cost (engine/model_cost.py): FLOPs as FlopCounterMode counts them (2 * in * out * batch for a
Linear), serialized bytes, nonzero parameters, latency fields, and the record of a finished run."""

from __future__ import annotations

import io

import torch
from torch import nn

from optbench.core.spec import Recipe, RunStatus
from optbench.engine import split_data, train
from optbench.engine.model_cost import batch_of, forward_flops, measure_model, parameter_counts, serialized_bytes
from optbench.tasks import get_task


def test_linear_flops_are_two_in_out_batch():
    layer = nn.Linear(30, 7)
    assert forward_flops(layer, torch.randn(1, 30)) == 2 * 30 * 7
    assert forward_flops(layer, torch.randn(16, 30)) == 2 * 30 * 7 * 16
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    assert forward_flops(conv, torch.randn(1, 3, 5, 5)) == 2 * (3 * 9) * 4 * 25


def test_bytes_and_nonzero_parameters():
    model = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        model[0].weight[:, :5] = 0
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_bytes(model) == len(buffer.getvalue())
    assert serialized_bytes(model) > 4 * (88 + 18)
    assert parameter_counts(model) == (88 + 18, 88 + 18 - 40)


def test_measure_model_is_json_ready_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 16), nn.Dropout(0.5), nn.Linear(16, 4)).train()
    example = torch.randn(1, 40)
    before = [p.detach().clone() for p in model.parameters()]
    cost = measure_model(model, example)
    assert model.training and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert cost["parameters"] == cost["nonzero_parameters"] == 40 * 16 + 16 + 16 * 4 + 4
    assert cost["flops"] == 2 * (40 * 16 + 16 * 4) and cost["input_shape"] == [40]
    assert cost["latency_ms_batch_1"] > 0 and cost["latency_ms_batch_256"] > 0 and cost["device"] == "cpu"
    assert set(cost) == {"parameters", "nonzero_parameters", "model_bytes", "flops", "input_shape", "device",
                         "latency_ms_batch_1", "latency_ms_batch_256", "measure_seconds"}
    assert batch_of(example, 3).shape == (3, 40)


def test_a_pruned_run_records_its_model_cost():
    task = get_task("mnist1d_mlp")
    data = split_data(task.load_data(), task.valid_size, seed=0, train_size=400)
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=2,
                    techniques=["magnitude_pruning:sparsity=0.75,end_epoch=1"])
    result = train(task, data, recipe, seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    cost = result.environment["model_cost"]
    dense = 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert cost["parameters"] == dense and cost["input_shape"] == [40]
    assert cost["parameters"] - cost["nonzero_parameters"] >= round(0.75 * 4000) + round(0.75 * 10000)
    assert cost["flops"] == 2 * (40 * 100 + 100 * 100 + 100 * 10)  # masks: dense kernels count in full
    plain = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=1), seed=0)
    assert "model_cost" not in plain.environment  # only techniques that change the model are measured
    baseline = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=1,
                                        techniques=["model_cost"]), seed=0)
    measured = baseline.environment["model_cost"]  # the dense baseline of a compression comparison
    assert measured["parameters"] == measured["nonzero_parameters"] == dense
    assert measured["flops"] == cost["flops"] and measured["model_bytes"] > 4 * dense


def test_an_int8_model_counts_its_packed_weights_and_its_float_flops():
    from optbench.techniques.quantization import Int8Model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    quantized = Int8Model(torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8),
                          "x86", reference=model)
    cost = measure_model(quantized, torch.randn(1, 40))
    assert cost["parameters"] == 40 * 16 + 16 + 16 * 4 + 4  # weights and biases of the packed layers
    assert cost["flops"] == 2 * (40 * 16 + 16 * 4)
    assert cost["model_bytes"] < serialized_bytes(model)
