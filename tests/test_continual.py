"""Continual learning: average accuracy and forgetting of an accuracy matrix (Chaudhry et al. 2018,
eq. 5-6) on hand-made matrices, the EWC penalty and the LwF term against hand computations, the
diagonal Fisher against a per-example loop, and the split tasks (class pairs, both scenarios)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optbench.analysis.continual import ContinualScores, average_accuracy, forgetting, forgetting_per_task
from optbench.core.component import ModelContext
from optbench.core.errors import ConfigError
from optbench.core.spec import TechniqueSpec
from optbench.tasks import get_task
from optbench.techniques.continual import EWC, LwF, fisher_diagonal
from optbench.techniques.registry import make_component

NAN = math.nan
CPU = torch.device("cpu")


def test_average_accuracy_and_forgetting_as_defined():
    a = [[0.90, NAN, NAN],
         [0.70, 0.95, NAN],
         [0.60, 0.80, 0.97]]
    assert average_accuracy(a) == pytest.approx((0.60 + 0.80 + 0.97) / 3)
    assert average_accuracy(a, 1) == pytest.approx((0.70 + 0.95) / 2)
    # f_0 = max(0.90, 0.70) - 0.60, f_1 = 0.95 - 0.80
    assert forgetting_per_task(a) == pytest.approx([0.30, 0.15])
    assert forgetting(a) == pytest.approx(0.225)
    assert forgetting(a, 1) == pytest.approx(0.20) and math.isnan(forgetting(a, 0))
    scores = ContinualScores.of(a)
    assert scores.average_accuracy_per_stage == pytest.approx((0.90, 0.825, (0.60 + 0.80 + 0.97) / 3))
    # entries before a task was learned count when given (the paper's max over every l < T)
    b = [[0.50, 0.60], [0.40, 0.55]]
    assert forgetting(b) == pytest.approx(0.10)
    with pytest.raises(ValueError, match="square"):
        forgetting([[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"a\[1\]\[0\]"):
        forgetting([[0.5, NAN], [NAN, 0.5]])


def test_ewc_penalty_equals_the_hand_computation():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    star = {"weight": torch.randn(2, 3), "bias": torch.randn(2)}
    fisher = {"weight": torch.rand(2, 3), "bias": torch.rand(2)}
    ewc = EWC(run="0123456789abcdef", task="digits_mlp", strength=40.0)
    ewc.set_anchors(model, star, fisher)
    hand = 0.0
    for name, p in model.named_parameters():
        for f, w, s in zip(fisher[name].flatten().tolist(), p.detach().flatten().tolist(),
                           star[name].flatten().tolist(), strict=True):
            hand += f * (w - s) ** 2
    assert ewc.penalty().item() == pytest.approx(40.0 / 2 * hand, rel=1e-6)
    ewc.penalty().backward()  # gradient lambda * F * (w - w*)
    assert torch.allclose(model.weight.grad, 40.0 * fisher["weight"] * (model.weight.detach() - star["weight"]))


def test_lwf_term_equals_the_hand_computation():
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    lwf = LwF(teacher="0123456789abcdef", alpha=0.5, temperature=2.0)
    hand = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        t_exp = [math.exp(v / 2) for v in t_row]
        s_exp = [math.exp(v / 2) for v in s_row]
        targets = [e / sum(t_exp) for e in t_exp]
        log_probs = [math.log(e / sum(s_exp)) for e in s_exp]
        hand += -sum(t * lp for t, lp in zip(targets, log_probs, strict=True))
    assert lwf.distillation(student, teacher).item() == pytest.approx(0.5 * hand / 2, rel=1e-6)
    model = nn.Linear(3, 3)
    lwf.teacher = nn.Identity()  # loss_term distills the teacher's outputs on the same inputs
    x = torch.randn(4, 3)
    assert lwf.loss_term(x, model(x), None).item() == pytest.approx(lwf.distillation(model(x), x).item())


def test_fisher_diagonal_equals_a_per_example_loop():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
    fisher = fisher_diagonal(model, x, y, batch_size=3)
    loop = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(7):
        model.zero_grad()
        F.log_softmax(model(x[i:i + 1]), -1)[0, y[i]].backward()
        for n, p in model.named_parameters():
            loop[n] += p.grad.pow(2) / 7
    for n in loop:
        assert torch.allclose(fisher[n], loop[n], atol=1e-6), n
    sampled = fisher_diagonal(model, x, generator=torch.Generator().manual_seed(0))
    again = fisher_diagonal(model, x, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(sampled[n], again[n]) for n in sampled) and all((v >= 0).all() for v in sampled.values())


def test_ewc_and_lwf_load_the_stored_run():
    task = get_task("split_digits[pair=0]")
    torch.manual_seed(0)
    model = task.make_model()
    stored = {k: v.clone() for k, v in model.state_dict().items()}
    context = ModelContext(task=task, device=CPU, seed=0, load_weights=lambda rid: stored)
    ewc = make_component(TechniqueSpec.parse("ewc:run=0123456789abcdef,task=split_digits[pair=0],strength=10,"
                                             "samples=50"))
    assert ewc.prepare_model(model, context) is model
    assert ewc.penalty().item() == 0.0  # at theta*
    with torch.no_grad():
        model[1].weight.add_(0.1)
    assert ewc.penalty().item() > 0
    lwf = make_component(TechniqueSpec.parse("lwf:teacher=0123456789abcdef"))
    lwf.prepare_model(model, context)
    assert not any(p.requires_grad for p in lwf.teacher.parameters()) and not lwf.teacher.training
    with pytest.raises(ConfigError, match="teacher"):
        lwf.prepare_model(model, ModelContext(task=task, device=CPU))
    with pytest.raises(ConfigError, match="fisher"):
        make_component(TechniqueSpec("ewc", {"run": "0123456789abcdef", "task": "x", "strength": 1, "fisher": "x"}))


def test_split_tasks_hold_one_class_pair_in_either_scenario():
    task = get_task("split_digits[pair=2]")
    data = task.load_data()
    assert set(data.train.y.tolist()) == {4, 5} and set(data.test.y.tolist()) == {4, 5}
    assert task.name == "split_digits[pair=2]" and task.valid_size == 40
    incremental = get_task("split_digits[pair=2,scenario=task]")
    output = torch.zeros(2, 10)
    output[:, 9] = 5.0  # class 9 wins over all logits, class 5 over the pair's
    output[:, 5] = 1.0
    y = torch.tensor([5, 4])
    accuracy = {m.name: m for m in incremental.metrics}["accuracy"]
    assert accuracy.batch_sum(output, y).item() == 1
    assert {m.name: m for m in task.metrics}["accuracy"].batch_sum(output, y).item() == 0
    assert incremental.loss(output, y).item() == pytest.approx(F.cross_entropy(output[:, [4, 5]], y - 4).item())
    with pytest.raises(ConfigError, match="pair"):
        get_task("split_digits[pair=5]")
    with pytest.raises(ConfigError, match="scenario"):
        get_task("split_digits[scenario=domain]")


def test_continual_protocol_trains_chains_and_scores_them(tmp_path):
    from optbench.analysis.continual import average_accuracy as avg
    from optbench.core.errors import ConfigProblems
    from optbench.runs.weights import WeightsDir
    from optbench.study.config import study_from_dict
    from optbench.study.runner import planned_runs, run_study

    tasks = [f"split_digits[pair={k}]" for k in range(3)]
    data = {"study": {"name": "c", "protocol": "continual", "tasks": tasks, "seeds": 2},
            "budget": {"epochs": 1, "train_size": 120},
            "recipes": [{"optimizer": "adam", "hyperparams": {"lr": 0.01}, "batch_size": 40}],
            "protocol": {"ewc_strength": 100.0, "ewc_samples": 50}}
    config = study_from_dict(data)
    outcome = run_study(config, tmp_path / "s.db", device=CPU)
    assert planned_runs(config) == 2 * (1 + 2 * 3) == len(outcome.results)  # stage 0 shared by the methods
    result = outcome.result
    assert [m.label for m in result.methods] == ["finetune", "lwf", "ewc"] and result.metric == "accuracy"
    by_id = {r.run_id: r for r in outcome.results}
    weights = WeightsDir(tmp_path / "s.db.weights")
    assert all(weights.has(rid) for rid in by_id)  # the protocol stores every stage's weights
    finals = sorted(r.epochs[-1].metrics["test_accuracy"] for r in outcome.results)
    for method in result.methods:
        assert method.seeds == (0, 1) and len(method.matrices) == 2
        for matrix in method.matrices:
            assert all(math.isnan(matrix[i][j]) for i in range(3) for j in range(i + 1, 3))
            for i in range(3):  # the diagonal is each stage run's own final test accuracy
                assert any(matrix[i][i] == pytest.approx(v, abs=1e-12) for v in finals)
        scores = [ContinualScores.of(m) for m in method.matrices]
        assert method.average_accuracy.mean == pytest.approx(sum(s.average_accuracy for s in scores) / 2)
        assert method.forgetting.mean == pytest.approx(sum(s.forgetting for s in scores) / 2)
        assert avg(method.mean_matrix) == pytest.approx(method.average_accuracy.mean)
    ewc_runs = [r for r in outcome.results if sum(t.name == "ewc" for t in r.recipe.techniques) == 2]
    assert len(ewc_runs) == 2 and all(r.task == tasks[2] for r in ewc_runs)  # one penalty per earlier task
    headers, rows, notes = result.table()
    assert len(rows) == 3 and "forgetting F_T" in headers and "Chaudhry" in notes[1]
    bad = {**data, "recipes": [{"optimizer": "adam", "techniques": ["lwf:teacher=0123456789abcdef"]}]}
    with pytest.raises(ConfigProblems, match="adds init_from, lwf and ewc itself"):
        study_from_dict(bad)
    with pytest.raises(ConfigProblems, match="two or more tasks"):
        study_from_dict({**data, "study": {**data["study"], "tasks": tasks[:1]}})
