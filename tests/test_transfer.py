"""Transfer learning (optbench.techniques.transfer): init_from loads exactly the stored tensors and makes
a new head when the classes differ, freeze keeps layers fixed through training, discriminative learning
rates per layer group, gradual unfreezing (and torch's optimizers skipping parameters without a
gradient), one-line errors, and the CLI refusing a missing run with exit 2 and nothing stored."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from optbench.cli.main import main
from optbench.core.component import ModelContext
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus, TechniqueSpec
from optbench.engine import split_data, train
from optbench.engine.build import build_run
from optbench.runs.weights import NEEDED, WeightsDir
from optbench.tasks import get_task
from optbench.techniques.registry import make_component
from optbench.techniques.transfer import TransferWarning, head_prefix, layer_groups

CPU = torch.device("cpu")
TASK = "mnist1d_mlp"  # 40-100-100-10: three layer groups


def _build(recipe, task=None, load_weights=None, seed=0):
    task = task or get_task(TASK)
    torch.manual_seed(seed)
    model = task.make_model()
    return build_run(task, recipe, model, device=CPU, generator=torch.Generator().manual_seed(1), engine="single",
                     batch_size=recipe.batch_size, steps_per_epoch=4, seed=seed, load_weights=load_weights)


def _recipe(*techniques, optimizer="adam", lr=1e-2, epochs=1):
    return Recipe(optimizer, {"lr": lr}, batch_size=50, epochs=epochs, train_size=200,
                  techniques=tuple(TechniqueSpec.parse(t) for t in techniques))


def _stored(seed=5, classes=10):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(40, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                         nn.Linear(100, classes)).state_dict()


def test_init_from_loads_exactly_the_stored_tensors():
    stored = _stored()
    asked = []
    setup = _build(_recipe("init_from:run=0123456789abcdef"), load_weights=lambda rid: asked.append(rid) or stored)
    assert asked == ["0123456789abcdef"]
    own = setup.model.state_dict()
    assert own.keys() == stored.keys()
    for key in stored:
        assert torch.equal(own[key], stored[key]), key


def test_new_head_when_the_classes_differ_keeps_the_seeded_initialization():
    stored = _stored(classes=5)
    with pytest.warns(TransferWarning, match=r"new head 5.bias, 5.weight"):
        setup = _build(_recipe("init_from:run=0123456789abcdef"), load_weights=lambda rid: stored, seed=3)
    fresh = _build(_recipe(), seed=3).model.state_dict()  # the same run without init_from
    own = setup.model.state_dict()
    assert head_prefix(setup.model) == "5."
    for key in own:
        if key.startswith("5."):
            assert torch.equal(own[key], fresh[key]), key  # initialized under the run's seed
        else:
            assert torch.equal(own[key], stored[key]), key
    component = setup.components[0]
    assert component.loaded == ["1.bias", "1.weight", "3.bias", "3.weight"] and component.new == ["5.bias", "5.weight"]
    with pytest.raises(ConfigError) as err:
        _build(_recipe("init_from:run=0123456789abcdef,strict=true"), load_weights=lambda rid: stored)
    assert "\n" not in str(err.value) and "5.bias has shape (5,) there, (10,) here" in str(err.value)
    body = {k: v for k, v in _stored().items()}
    body["1.weight"] = torch.zeros(100, 41)  # not the head: refused even when not strict
    with pytest.raises(ConfigError, match="only the output layer may differ"):
        _build(_recipe("init_from:run=0123456789abcdef"), load_weights=lambda rid: body)


def test_missing_run_and_bad_parameters_are_one_line_config_errors(tmp_path):
    weights = WeightsDir(tmp_path / "w")
    with pytest.raises(ConfigError) as err:
        _build(_recipe("init_from:run=feedfacefeedface"), load_weights=weights.load)
    assert "\n" not in str(err.value) and "init run id" in str(err.value) and NEEDED in str(err.value)
    with pytest.raises(ConfigError, match="no access to stored weights"):
        _build(_recipe("init_from:run=feedfacefeedface"))
    with pytest.raises(ConfigError) as err:
        _build(_recipe("freeze:layers=^conv"))
    assert "\n" not in str(err.value) and "1.weight" in str(err.value)  # lists the parameter names
    with pytest.raises(ConfigError, match="valid regular expression"):
        make_component(TechniqueSpec("freeze", {"layers": "(unclosed"}))
    with pytest.raises(ConfigError, match="trainable"):
        _build(_recipe("freeze:layers=."))
    with pytest.raises(ConfigError, match="factor"):
        make_component(TechniqueSpec("discriminative_lr", {"factor": 0.5}))
    assert make_component(TechniqueSpec.parse("init_from:run=0012345678901234")).run == "0012345678901234"


def test_frozen_layers_do_not_change_in_training(tmp_path):
    task = get_task(TASK)
    data = split_data(task.load_data(), task.valid_size, 0, 200)
    weights = WeightsDir(tmp_path / "w", saving=True)
    first = train(task, data, _recipe(epochs=1), 0, device=CPU, weights=weights)
    assert first.status is RunStatus.FINISHED, first.error
    tuned = _recipe(f"init_from:run={first.run_id}", r"freeze:layers=^(1|3)\.", "no_decay_bias_norm",
                    optimizer="adamw", epochs=2)
    second = train(task, data, tuned, 1, device=CPU, weights=weights)
    assert second.status is RunStatus.FINISHED, second.error
    before, after = weights.load(first.run_id), weights.load(second.run_id)
    for key in ("1.weight", "1.bias", "3.weight", "3.bias"):
        assert torch.equal(before[key], after[key]), key  # frozen (adamw's weight decay included)
    assert not torch.equal(before["5.weight"], after["5.weight"])
    setup = _build(_recipe(r"freeze:layers=^1\."))
    in_optimizer = {id(p) for g in setup.optimizer.param_groups for p in g["params"]}
    assert id(setup.model[1].weight) not in in_optimizer and id(setup.model[3].weight) in in_optimizer


def test_discriminative_lr_gives_each_group_lr_over_factor_to_the_depth():
    setup = _build(_recipe("discriminative_lr:factor=2.6", lr=0.01))
    groups = setup.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.01 / 2.6, 0.01 / 2.6 ** 2])
    names = {id(p): n for n, p in setup.model.named_parameters()}
    assert [sorted(names[id(p)] for p in g["params"]) for g in groups] == [
        ["5.bias", "5.weight"], ["3.bias", "3.weight"], ["1.bias", "1.weight"]]  # top (head) first
    assert setup.lr() == pytest.approx(0.01)  # the recorded learning rate is the recipe's
    frozen = _build(_recipe(r"freeze:layers=^1\.", "discriminative_lr"))
    assert len(frozen.optimizer.param_groups) == 2  # frozen layers are left out
    with pytest.raises(ConfigError, match="explicit learning rate"):
        _build(Recipe("adam", {}, batch_size=50, epochs=1, techniques=(TechniqueSpec("discriminative_lr", {}),)))


def test_layer_groups_put_normalization_with_the_layer_before():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    groups = layer_groups(model)
    assert [[n for n, _ in g] for g in groups] == [["0.weight", "0.bias", "1.weight", "1.bias"],
                                                   ["3.weight", "3.bias"]]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_torch_optimizers_skip_parameters_without_gradient(optimizer):
    """What gradual unfreezing relies on: a parameter in the optimizer with requires_grad False gets
    no gradient (None), and SGD (momentum, weight decay) and Adam leave it and its state alone."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1))
    model[0].weight.requires_grad_(False)
    before = model[0].weight.detach().clone()
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        model(torch.randn(4, 3)).pow(2).mean().backward()
        opt.step()
    assert model[0].weight.grad is None and torch.equal(model[0].weight, before)
    assert model[0].weight not in opt.state and model[1].weight in opt.state


def test_gradual_unfreezing_trains_one_more_group_from_the_top_each_epoch(tmp_path):
    setup = _build(_recipe("gradual_unfreezing"))
    unfreezing = setup.components[0]
    in_optimizer = {id(p) for g in setup.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_optimizer for p in setup.model.parameters())  # every parameter from the start
    trainable = {e: None for e in (1, 2, 3, 4)}
    for epoch in trainable:
        unfreezing.before_train_epoch(epoch)
        trainable[epoch] = sorted(n for n, p in setup.model.named_parameters() if p.requires_grad)
    assert trainable[1] == ["5.bias", "5.weight"]
    assert trainable[2] == ["3.bias", "3.weight", "5.bias", "5.weight"]
    assert len(trainable[3]) == len(trainable[4]) == 6
    task = get_task(TASK)
    data = split_data(task.load_data(), task.valid_size, 0, 200)
    weights = WeightsDir(tmp_path / "w", saving=True)
    start = train(task, data, _recipe(epochs=1), 0, device=CPU, weights=weights)
    one = train(task, data, _recipe(f"init_from:run={start.run_id}", "gradual_unfreezing", epochs=1), 0, device=CPU,
                weights=weights)
    assert one.status is RunStatus.FINISHED, one.error
    a, b = weights.load(start.run_id), weights.load(one.run_id)
    assert torch.equal(a["1.weight"], b["1.weight"]) and torch.equal(a["3.weight"], b["3.weight"])
    assert not torch.equal(a["5.weight"], b["5.weight"])  # epoch 1: only the head trained


def test_init_from_needs_stored_weights_in_the_engine_check():
    from optbench.engine.build import check_engine

    recipe = _recipe("init_from:run=0123456789abcdef")
    with pytest.raises(ConfigError, match="single"):
        check_engine(recipe, get_task(TASK), "ddp")
    check_engine(_recipe(r"freeze:layers=^1\.", "discriminative_lr"), get_task(TASK), "ddp")


def test_cli_refuses_a_missing_run_with_exit_2_and_stores_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--task", "digits_mlp", "--optimizers", "adam", "--seeds", "1", "--epochs", "1",
                 "--quiet", "--out", str(out), "--technique", "init_from:run=feedfacefeedface"])
    err = capsys.readouterr().err
    assert code == 2 and "feedfacefeedface" in err and "--save-weights" in err
    assert not (out / "optbench.db").exists() or _runs(out / "optbench.db") == 0


def _runs(db) -> int:
    from optbench.runs.store import open_store

    with open_store(db) as store:
        return len(store.load_runs())


def test_model_context_without_weights_is_refused_by_init_from():
    component = make_component(TechniqueSpec("init_from", {"run": "0123456789abcdef"}))
    with warnings.catch_warnings(), pytest.raises(ConfigError, match="no access"):
        component.prepare_model(nn.Linear(2, 2), ModelContext(task=None, device=CPU))
