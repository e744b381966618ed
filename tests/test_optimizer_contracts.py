"""Optimizer contracts the engine honours (docs/architecture.md, "The component contract"): Muon's
parameter partition, the learning-rate semantics of learning-rate-free methods, and the optimizer
cost every run records. Each test fails when the harness ignores its contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus, TechniqueSpec
from optbench.engine import split_data, train
from optbench.engine.build import build_run
from optbench.engine.cost import state_bytes
from optbench.optim import capabilities, create_optimizer
from optbench.optim.lr_semantics import LR_FREE_RANGE, lr_grid, shared_lr
from optbench.optim.partition import hidden_matrices, make_partition, partition_groups
from optbench.search.space import Param, for_optimizer
from optbench.study.compare import CompareConfig
from optbench.tasks import get_task

CPU = torch.device("cpu")


def _setup(task_name: str, recipe: Recipe):
    task = get_task(task_name)
    torch.manual_seed(0)
    model = task.make_model()
    return task, build_run(task, recipe, model, device=CPU, generator=torch.Generator().manual_seed(1),
                           engine="single", batch_size=recipe.batch_size, steps_per_epoch=4, seed=0)


# ---------------------------------------------------------------- parameter partition (Muon)
def test_muon_partition_puts_exactly_the_hidden_weights_into_muon():
    """mnist1d_cnn: conv1 (input layer), conv2, conv3 (hidden, 3-d filters flattened by Muon), head
    (output layer). Muon gets conv2 and conv3 weights only; AdamW the rest."""
    _, setup = _setup("mnist1d_cnn", Recipe("muon", {"lr": 0.02}, batch_size=32))
    record = setup.partition.record()
    assert record["rule"] == "hidden_matrices"
    assert record["parts"]["muon"]["names"] == ["features.2.weight", "features.4.weight"]
    assert record["parts"]["adamw"]["names"] == ["features.0.weight", "features.0.bias", "features.2.bias",
                                                  "features.4.bias", "head.weight", "head.bias"]
    assert record["parts"]["muon"]["parameters"] == 2 * 25 * 25 * 3
    groups = setup.optimizer.param_groups
    assert [g["use_muon"] for g in groups] == [True, False]
    muon_ids = {id(p) for p in groups[0]["params"]}
    model = setup.model
    assert muon_ids == {id(model.features[2].weight), id(model.features[4].weight)}
    assert groups[0]["lr"] == 0.02 and groups[1]["lr"] == 3e-4  # Muon's lr; the auxiliary AdamW's adamw_lr


def test_muon_partition_of_an_mlp_and_an_embedding_model():
    mlp = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    part = hidden_matrices(mlp)
    assert [p.names for p in part.parts] == [("2.weight",), ("0.weight", "0.bias", "2.bias", "3.weight", "3.bias",
                                                             "4.weight", "4.bias")]
    lm = nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 50))
    assert hidden_matrices(lm).parts[0].names == ("1.weight", "2.weight")  # embedding and head to AdamW
    with pytest.raises(ConfigError, match="hidden weight matrix"):
        hidden_matrices(nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 3)))
    with pytest.raises(ConfigError, match="parameter partition"):
        make_partition("no_such_rule", mlp)


def test_muon_given_every_parameter_fails_and_the_partition_makes_it_train():
    """Plain parameters break the contract (named in the error); the module or its partition's groups
    keep it, and a CNN run finishes above chance and records the partition."""
    model = get_task("mnist1d_cnn").make_model()
    with pytest.raises(ConfigError, match="parameter-partition contract 'hidden_matrices'"):
        create_optimizer("muon", model.parameters())
    by_groups = create_optimizer("muon", partition_groups(hidden_matrices(model)))
    by_module = create_optimizer("muon", model)
    assert [len(g["params"]) for g in by_module.param_groups] == [len(g["params"]) for g in by_groups.param_groups]
    task = get_task("mnist1d_cnn")
    data = split_data(task.load_data(), task.valid_size, 0, 2000)
    result = train(task, data, Recipe("muon", {"lr": 0.02}, batch_size=64, epochs=2, train_size=2000), 0, device=CPU)
    assert result.status is RunStatus.FINISHED, result.error
    assert result.final("test_accuracy") > 0.2  # chance is 0.1
    assert result.environment["param_partition"]["parts"]["muon"]["tensors"] == 2


def test_a_technique_setting_groups_breaks_the_partition_contract():
    recipe = Recipe("muon", {"lr": 0.02}, batch_size=32, techniques=(TechniqueSpec("no_decay_bias_norm"),))
    with pytest.raises(ConfigError, match="parameter-partition contract 'hidden_matrices'"):
        _setup("mnist1d_cnn", recipe)


def test_sam_refuses_contract_bases():
    from optbench.optim import describe

    for base in ("muon", "schedulefree_adamw"):
        with pytest.raises(ConfigError, match="parameter partition or train/eval modes"):
            describe(f"sam:{base}")


# ---------------------------------------------------------------- learning-rate semantics
def test_learning_rate_free_methods_get_lr_one_in_shared_lr_protocols():
    assert capabilities("prodigy").learning_rate_free and capabilities("dadapt_adam").learning_rate_free
    assert not capabilities("adam").learning_rate_free
    assert shared_lr("prodigy", 0.01) == 1.0 and shared_lr("adam", 0.01) == 0.01
    config = CompareConfig(task="mnist1d_cnn", optimizers=("prodigy", "adam", "dadapt_sgd"), lr=0.01, train_size=None)
    assert [r.hyperparams["lr"] for r in config.recipes()] == [1.0, 0.01, 1.0]


def test_the_compare_context_says_which_optimizers_run_at_lr_one():
    from optbench.study.outputs import _shared_words

    words = _shared_words(CompareConfig(optimizers=("prodigy", "adam"), lr=0.01, train_size=None))
    assert words[0].startswith("except prodigy: learning-rate-free, lr 1")


def test_a_search_over_lr_searches_the_multiplier_around_one():
    space = (Param("hyperparams.lr", "float", low=1e-5, high=1e-1, log=True),
             Param("hyperparams.weight_decay", "float", low=0.0, high=0.1))
    assert for_optimizer(space, "adam") == space
    searched = for_optimizer(space, "prodigy")
    assert (searched[0].low, searched[0].high, searched[0].log) == (*LR_FREE_RANGE, True)
    assert searched[1] == space[1]
    grid = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert lr_grid("adam", grid) == grid
    free = lr_grid("prodigy", grid)
    assert len(free) == 5 and free[0] == 0.1 and free[-1] == 10.0 and math.isclose(free[2], 1.0)


def test_a_study_file_shared_lr_does_not_reach_lr_free_recipes(tmp_path):
    from optbench.study.config import load_study

    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "s"\nprotocol = "seed004"\ntasks = ["mnist1d_mlp"]\nseeds = 1\n'
                    '[budget]\nepochs = 1\n[defaults]\nhyperparams = { lr = 0.01 }\n'
                    '[[recipes]]\noptimizer = "prodigy"\n[[recipes]]\noptimizer = "adam"\n'
                    '[[recipes]]\noptimizer = "dadapt_adam"\nhyperparams = { lr = 0.5 }\n')
    config = load_study(path)
    assert [r.hyperparams["lr"] for r in config.recipes] == [1.0, 0.01, 0.5]


# ---------------------------------------------------------------- optimizer cost
@pytest.mark.parametrize(("name", "hp", "per_param"), [
    ("sgd", {}, 0.0),            # no state
    ("momentum", {}, 4.0),       # one float32 buffer
    ("adam", {}, 8.0),           # two float32 moments (+ a scalar step counter per tensor)
])
def test_optimizer_state_bytes_per_parameter(name, hp, per_param):
    task = get_task("mnist1d_mlp")
    data = split_data(task.load_data(), task.valid_size, 0, 512)
    result = train(task, data, Recipe(name, {"lr": 0.01, **hp}, batch_size=64, epochs=2, train_size=512), 0,
                   device=CPU)
    cost = result.environment["optimizer_cost"]
    n_tensors = len(list(task.make_model().parameters()))
    assert cost["trained_parameters"] == sum(p.numel() for p in task.make_model().parameters())
    counters = 4 * n_tensors if name == "adam" else 0  # torch keeps Adam's step as a float32 0-d tensor
    assert cost["state_bytes_per_param"] == pytest.approx(per_param + counters / cost["trained_parameters"])
    assert cost["timed_steps"] >= 1 and cost["step_us_median"] > 0
    assert cost["step_ns_per_param"] == pytest.approx(cost["step_us_median"] * 1e3 / cost["trained_parameters"])
    assert cost["peak_memory_bytes"] is None  # CPU reports none


def test_state_bytes_counts_every_state_tensor_once():
    p = nn.Parameter(torch.ones(10))
    opt = torch.optim.Adam([p])
    p.grad = torch.ones(10)
    opt.step()
    assert state_bytes(opt) == 10 * 4 * 2 + 4
