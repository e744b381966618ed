"""Federated learning with Flower (optbench.federated, docs/federated.md): client partitions, the
client's local training against the single-process engine, FedAvg's weighted aggregation, FedProx
with mu=0 against FedAvg, and the ``optbench federated`` command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402

from optbench.cli.main import main  # noqa: E402
from optbench.core.errors import ConfigError, UnknownNameError  # noqa: E402
from optbench.core.spec import Recipe  # noqa: E402
from optbench.engine.data import split_data  # noqa: E402
from optbench.engine.loop import train  # noqa: E402
from optbench.federated.client import ProximalTerm, TaskClient, get_weights, set_weights  # noqa: E402
from optbench.federated.partition import dirichlet_partition, iid_partition, label_counts, partition  # noqa: E402
from optbench.federated.simulation import FederatedConfig, run_federated  # noqa: E402
from optbench.federated.strategies import STRATEGIES, StrategySettings, make_strategy  # noqa: E402
from optbench.federated.summary import final_rows, round_curves  # noqa: E402
from optbench.tasks import get_task  # noqa: E402

TASK = "mnist1d_mlp"


@pytest.fixture(scope="module")
def task_and_data():
    task = get_task(TASK)
    return task, task.load_data()


# ---------------------------------------------------------------------------------------- partition
def _check_cover(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))  # each example exactly once
    assert all(len(p) >= 1 for p in parts)
    assert all(np.array_equal(p, np.sort(p)) for p in parts)


def test_iid_partition_is_balanced_and_covers_every_example():
    parts = iid_partition(1003, 10, seed=3)
    _check_cover(parts, 1003)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 1003
    assert [np.array_equal(a, b) for a, b in zip(parts, iid_partition(1003, 10, seed=3), strict=True)] == [True] * 10


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not():
    labels = np.repeat(np.arange(10), 200)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]

    def dominant_share(alpha):
        parts = dirichlet_partition(labels, 10, alpha, seed=1)
        _check_cover(parts, len(labels))
        counts = label_counts(labels, parts, 10)
        return float(np.mean(counts.max(axis=1) / counts.sum(axis=1)))

    skewed, mixed = dominant_share(0.05), dominant_share(100.0)
    iid = label_counts(labels, iid_partition(len(labels), 10, seed=1), 10)
    assert skewed > 0.6  # a few classes dominate each client
    assert mixed < 0.2 and float(np.mean(iid.max(axis=1) / iid.sum(axis=1))) < 0.2  # 0.1 is perfectly even


def test_dirichlet_is_seeded_and_gives_every_client_an_example():
    labels = np.repeat(np.arange(3), 20)
    a = dirichlet_partition(labels, 40, 0.01, seed=7)
    b = dirichlet_partition(labels, 40, 0.01, seed=7)
    c = dirichlet_partition(labels, 40, 0.01, seed=8)
    _check_cover(a, 60)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("call, field", [
    (lambda: partition(np.zeros(5, np.int64), 6, "iid", 0), "--clients"),
    (lambda: partition(np.zeros(5, np.int64), 0, "iid", 0), "--clients"),
    (lambda: partition(np.zeros(5, np.int64), 2, "dirichlet", 0, alpha=0.0), "--alpha"),
    (lambda: partition(np.zeros(5, np.int64), 2, "shards", 0), "--partition"),
    (lambda: partition(np.zeros(5, np.float32), 2, "dirichlet", 0), "partition labels"),
])
def test_partition_bad_input(call, field):
    with pytest.raises(ConfigError) as info:
        call()
    assert info.value.field == field


# ------------------------------------------------------------------------------ client and server
def test_one_client_fedavg_equals_single_process_training(task_and_data):
    """One client holding the whole training split, every round: FedAvg's average of one model is
    that model, so R rounds of E local epochs are R*E epochs of the engine's own training loop."""
    task, dataset = task_and_data
    config = FederatedConfig(strategy="fedavg", clients=1, fraction=1.0, rounds=2, local_epochs=2, partition="iid",
                             optimizer="sgd", lr=0.1, batch_size=32, train_size=800)
    fed = run_federated(task, config, seed=0, dataset=dataset)
    recipe = Recipe("sgd", {"lr": 0.1}, batch_size=32, epochs=4)
    plain = train(task, split_data(dataset, task.valid_size, 0, 800), recipe, seed=0, device=torch.device("cpu"))
    assert plain.status.value == "finished" and fed.status == "finished"
    for record in fed.rounds[1:]:
        epoch = plain.epochs[2 * record["round"] - 1].metrics
        for key in ("valid_loss", "valid_accuracy", "test_loss", "test_accuracy"):
            assert record[key] == pytest.approx(epoch[key], rel=1e-5, abs=1e-7), key
    assert fed.rounds[-1]["test_accuracy"] > fed.rounds[0]["test_accuracy"] + 0.05


def test_fedavg_aggregates_the_real_clients_by_example_counts(task_and_data):
    """Two TaskClients trained from the same global weights; flwr's FedAvg returns
    (n_1 w_1 + n_2 w_2) / (n_1 + n_2), checked against numpy."""
    task, dataset = task_and_data
    data = split_data(dataset, task.valid_size, 0)
    torch.manual_seed(0)
    model = task.make_model()
    w0 = get_weights(model)
    clients = [TaskClient(task, data.train.subset(torch.arange(lo, hi)), task.make_model(), optimizer="sgd", lr=0.1,
                          batch_size=32, local_epochs=1, generator=torch.Generator().manual_seed(k))
               for k, (lo, hi) in enumerate([(0, 100), (100, 400)])]
    fits = [c.fit(w0, {}) for c in clients]
    assert [n for _, n, _ in fits] == [100, 300]
    replies = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(w), n, m)) for w, n, m in fits]
    strategy = make_strategy("fedavg", StrategySettings(ndarrays_to_parameters(w0), fraction=1.0, n_clients=2))
    aggregated, metrics = strategy.aggregate_fit(1, replies, [])
    expected = [(100 * a + 300 * b) / 400 for a, b in zip(fits[0][0], fits[1][0], strict=True)]
    for got, want in zip(parameters_to_ndarrays(aggregated), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(fits[0][0][0], fits[1][0][0])  # the clients really differ
    losses = [m["train_loss"] for _, _, m in fits]
    assert metrics["train_loss"] == pytest.approx((100 * losses[0] + 300 * losses[1]) / 400)


def test_proximal_term_value_and_fedprox_with_mu_zero_is_fedavg(task_and_data):
    task, dataset = task_and_data
    model = task.make_model()
    term = ProximalTerm(model, mu=0.5)
    shifted = [w + 0.1 for w in get_weights(model)]
    set_weights(model, shifted)
    n = sum(p.numel() for p in model.parameters())
    assert float(term.penalty().detach()) == pytest.approx(0.5 / 2 * n * 0.1 ** 2, rel=1e-4)

    base = dict(clients=3, fraction=1.0, rounds=2, partition="dirichlet", alpha=0.5, batch_size=32, train_size=600)
    avg = run_federated(task, FederatedConfig(strategy="fedavg", **base), seed=1, dataset=dataset)
    prox0 = run_federated(task, FederatedConfig(strategy="fedprox", mu=0.0, **base), seed=1, dataset=dataset)
    prox = run_federated(task, FederatedConfig(strategy="fedprox", mu=1.0, **base), seed=1, dataset=dataset)
    for a, b in zip(avg.rounds, prox0.rounds, strict=True):
        assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-6)
        assert a["bytes"] == b["bytes"] and a["clients"] == b["clients"]
    assert prox.rounds[-1]["test_loss"] != pytest.approx(avg.rounds[-1]["test_loss"], rel=1e-6)  # the term acts


def test_registry_is_strict_and_adaptive_strategies_run(task_and_data):
    task, dataset = task_and_data
    assert STRATEGIES.names() == ["fedadagrad", "fedadam", "fedavg", "fedprox", "fedyogi"]
    with pytest.raises(UnknownNameError):
        STRATEGIES.get("fedsgd")
    results = [run_federated(task, FederatedConfig(strategy=s, clients=4, fraction=0.5, rounds=2, batch_size=32,
                                                             train_size=400),
                             seed=seed, dataset=dataset)
               for s in ("fedadam", "fedyogi") for seed in (0, 1)]
    for r in results:
        assert r.status == "finished" and len(r.rounds) == 3
        assert [len(rec["clients"]) for rec in r.rounds[1:]] == [2, 2]
        per_model = sum(w.nbytes for w in get_weights(task.make_model()))
        assert r.rounds[1]["bytes_down"] == r.rounds[1]["bytes_up"] == 2 * per_model  # float32 both ways
    curves = round_curves(results)
    assert list(curves) == ["fedadam", "fedyogi"] and curves["fedadam"].n == [2, 2, 2]
    rows = final_rows(results)
    assert rows[0].final.n == 2 and rows[0].final.ci_low <= rows[0].final.mean <= rows[0].final.ci_high


# ------------------------------------------------------------------------------------------ CLI
def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "fed"
    code = main(["federated", "--task", TASK, "--strategy", "fedavg,fedadam", "--clients", "3", "--rounds", "3",
                 "--fraction", "1", "--partition", "dirichlet", "--alpha", "1", "--seeds", "2", "--train-size", "600",
                 "--out", str(out), "--quiet"])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "fedavg" in stdout and "95% CI" in stdout
    payload = json.loads((out / "federated.json").read_text())
    assert payload["strategies"] == ["fedavg", "fedadam"] and len(payload["runs"]) == 4
    for run in payload["runs"]:
        assert [r["round"] for r in run["rounds"]] == [0, 1, 2, 3]
        assert run["rounds"][-1]["test_accuracy"] > run["rounds"][0]["test_accuracy"]
        assert run["rounds"][-1]["bytes"] > 0 and sum(run["client_sizes"]) == 600
    png = out / "federated_accuracy.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args, field", [
    (["--strategy", "fedavg,fedsgd"], "federated strategy"),
    (["--strategy", "fedavg,fedavg"], "--strategy"),
    (["--fraction", "0"], "--fraction"),
    (["--fraction", "1.5"], "--fraction"),
    (["--clients", "0"], "--clients"),
    (["--rounds", "0"], "--rounds"),
    (["--partition", "shards"], "--partition"),
    (["--partition", "dirichlet", "--alpha", "0"], "--alpha"),
    (["--seeds", "0"], "--seeds"),
    (["--optimizer", "nope"], "optimizer"),
    (["--lr", "-1"], "--lr"),
    (["--clients", "999999"], "--clients"),
    (["--train-size", "0"], "--train-size"),
])
def test_cli_bad_input_exits_2_before_anything_runs(tmp_path, capsys, args, field):
    out = tmp_path / "fed"
    assert main(["federated", "--task", TASK, "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optbench: error:") and field in err and "\n" not in err
    assert not out.exists()
