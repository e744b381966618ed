"""The cost model of data-parallel scaling: formulas, and the published findings it must reproduce."""

from __future__ import annotations

import math

import pytest

from optbench.analysis.scaling import (
    GBIT,
    MODELS,
    PUBLISHED,
    MeasuredPoint,
    Network,
    Workload,
    check_published,
    measured_efficiency,
    parameter_server_seconds,
    predict,
    prediction_grid,
    ring_allreduce_seconds,
    step_seconds,
)
from optbench.core.errors import ConfigError, UnknownNameError

NET25 = Network.gbit(25)


def test_ring_allreduce_formula():
    m = 100e6  # bytes
    assert ring_allreduce_seconds(m, 1, NET25) == 0.0
    assert ring_allreduce_seconds(m, 2, Network(1e9, 0.0)) == pytest.approx(0.1)  # 2 (N-1)/N M / beta
    assert ring_allreduce_seconds(m, 4, Network(1e9, 1e-5)) == pytest.approx(1.5 * 0.1 + 6e-5)
    # bandwidth term tends to 2 M / beta: the ring's cost per worker hardly grows with N
    assert ring_allreduce_seconds(m, 512, Network(1e9, 0.0)) == pytest.approx(0.2 * 511 / 512)


def test_parameter_server_formula_and_sharding():
    m, net = 100e6, Network(1e9, 0.0)
    assert parameter_server_seconds(m, 8, net) == pytest.approx(2 * 8 * 0.1)  # grows linearly with N
    assert parameter_server_seconds(m, 8, net, servers=8) == pytest.approx(0.2)  # sharded: ~ the ring's 2 M / beta
    with pytest.raises(ConfigError, match="servers"):
        parameter_server_seconds(m, 8, net, servers=0)


def test_overlap_hides_communication_behind_backward_only():
    assert step_seconds(1.0, 0.3, overlap=0.0) == pytest.approx(1.3)
    assert step_seconds(1.0, 0.3, overlap=1.0) == pytest.approx(1.0)  # fully hidden
    assert step_seconds(1.0, 3.0, overlap=1.0) == pytest.approx(1.0 + 3.0 - 2 / 3)  # at most the backward pass
    with pytest.raises(ConfigError, match="overlap"):
        step_seconds(1.0, 0.3, overlap=1.5)


def test_predict_units_and_single_worker():
    w = Workload("toy", parameters=1_000_000, compute_seconds=0.1, batch_size=32)
    one = predict(w, 1, NET25)
    assert one.comm_seconds == 0.0 and one.efficiency == 1.0 and one.samples_per_second == pytest.approx(320)
    eight = predict(w, 8, NET25, "ps", overlap=0.0)
    assert eight.comm_seconds == pytest.approx(2 * 8 * 4e6 / (25 * GBIT) + 2e-5)
    assert eight.samples_per_second == pytest.approx(8 * 32 / eight.step_seconds)
    with pytest.raises(ConfigError):
        predict(w, 0, NET25)
    with pytest.raises(ConfigError, match="algorithm"):
        predict(w, 2, NET25, "tree")  # type: ignore[arg-type]


def test_built_in_models_are_documented():
    assert {"vgg16", "resnet50", "resnet101", "inception_v3"} <= set(MODELS.names())
    counts = {"vgg16": 138.4e6, "resnet50": 25.6e6, "resnet101": 44.5e6, "inception_v3": 23.8e6}
    for name, count in counts.items():
        w = MODELS.get(name)
        assert w.parameters == pytest.approx(count) and w.model_bytes == 4 * w.parameters
        assert 0.1 < w.compute_seconds < 1.0 and "images/s" in w.source
    with pytest.raises(UnknownNameError, match="vgg16"):
        MODELS.get("alexnet")


def test_reproduces_horovod_512_gpus_on_25_gbit():
    """Sergeev & Del Balso 2018: ~90% for Inception V3 and ResNet-101, ~68% for VGG-16 (512 GPUs, 25 Gb/s)."""
    checks = {c.published.model: c for c in check_published()}
    assert set(checks) == {p.model for p in PUBLISHED}
    for c in checks.values():
        assert abs(c.error) < 0.05, (c.published.model, c.predicted)  # within 5 points at the default overlap
        assert c.low <= c.published.efficiency <= c.high  # inside the no-overlap .. full-overlap range
    assert checks["vgg16"].predicted < checks["resnet101"].predicted - 0.15  # VGG-16 well below
    assert checks["vgg16"].predicted < checks["inception_v3"].predicted - 0.15


def test_vgg_stops_scaling_on_25_gbit_while_resnets_scale():
    """The reference experiment: all-reduce scales almost linearly on 1-16 GPUs except VGG-16/19 at 25 Gb/s;
    faster networks lift VGG; a single parameter server falls far behind all-reduce."""
    def eff(model, n, gbps, algorithm="allreduce"):
        return predict(MODELS.get(model), n, Network.gbit(gbps), algorithm).efficiency

    for model in ("resnet50", "resnet101", "inception_v3"):
        assert eff(model, 16, 25) > 0.88
    for model in ("vgg16", "vgg19"):
        assert eff(model, 16, 25) < 0.8 and eff(model, 16, 100) > 0.88
    for model in MODELS.names():
        for n in (2, 4, 16):
            ar, ps = eff(model, n, 25), eff(model, n, 25, "ps")
            assert ar > ps  # all-reduce beats one parameter server at 2+ workers
        assert eff(model, 16, 25) / eff(model, 16, 25, "ps") > 2  # and by far at 16
    efficiencies = [eff("vgg16", n, 25) for n in (1, 2, 4, 8, 16, 64, 512)]
    assert efficiencies == sorted(efficiencies, reverse=True)


def test_prediction_grid_covers_every_combination():
    grid = prediction_grid(["vgg16", "resnet50"], [10, 25], [1, 512])
    assert len(grid) == 2 * 2 * 2 * 2
    assert all(0 < p.efficiency <= 1 and math.isfinite(p.step_seconds) for p in grid)
    with pytest.raises(UnknownNameError):
        prediction_grid(["nosuchnet"], [25], [2])


def test_measured_efficiency_baselines():
    points = [MeasuredPoint("ddp", 1, 1000.0), MeasuredPoint("ddp", 2, 1800.0), MeasuredPoint("ps-sync", 2, 1200.0)]
    eff, sentence = measured_efficiency(points)
    assert eff[("ddp", 1)] == 1.0 and eff[("ddp", 2)] == pytest.approx(0.9) and eff[("ps-sync", 2)] == 0.6
    assert "ddp with 1 process" in sentence
    eff, sentence = measured_efficiency([MeasuredPoint("ps-async", 2, 800.0), MeasuredPoint("ps-async", 4, 1200.0)])
    assert eff[("ps-async", 4)] == pytest.approx(0.75) and "smallest" in sentence


def test_network_validation():
    assert Network.gbit(10).bandwidth == pytest.approx(1.25e9) and Network.gbit(10).gbps == pytest.approx(10)
    for bad in (dict(bandwidth=0.0), dict(bandwidth=1e9, latency=-1.0), dict(bandwidth=1e9, latency=math.inf)):
        with pytest.raises(ConfigError):
            Network(**bad)
