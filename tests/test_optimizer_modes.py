"""Schedule-free optimizers (Defazio et al. 2024) are evaluated at their averaged iterate x and train on
at y: the engine switches them with the optimizer's own ``eval()`` / ``train()`` (the library's
implementation is the reference), in every evaluation, and refuses engines that cannot switch."""

from __future__ import annotations

import copy

import pytest
import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine import evaluate, split_data, train
from optbench.engine.build import build_run
from optbench.engine.metrics import TrainMetrics
from optbench.engine.validate import check_recipe
from optbench.optim import capabilities
from optbench.tasks import get_task

SF = "pytorch_optimizer.schedulefreeadamw"
CPU = torch.device("cpu")


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


def test_schedule_free_capability_is_introspected():
    assert capabilities(SF).train_eval_modes and capabilities("pytorch_optimizer.schedulefreesgd").train_eval_modes
    assert not capabilities("adam").train_eval_modes


def test_evaluation_sees_x_and_training_continues_at_y():
    task = get_task("digits_mlp")
    data = split_data(task.load_data(), task.valid_size, 0, 256)
    torch.manual_seed(0)
    model = task.make_model()
    setup = build_run(task, Recipe(SF, {"lr": 1e-2}, batch_size=64), model, device=CPU,
                      generator=torch.Generator().manual_seed(1), engine="single", batch_size=64, steps_per_epoch=4,
                      seed=0)
    setup.before_train_epoch(1)
    metrics = TrainMetrics(task, CPU, group=1)
    for i in range(4):
        setup.step(data.train.x[i * 64:(i + 1) * 64], data.train.y[i * 64:(i + 1) * 64], metrics)
    y = _flat(model)
    reference_model, reference_optimizer = copy.deepcopy((model, setup.optimizer))
    reference_optimizer.eval()  # the library's own switch to x
    x = _flat(reference_model)
    assert (x - y).abs().max() > 1e-4  # x and y differ after training
    evaluated = setup.eval_model(lambda: iter(()))
    assert evaluated is model and torch.equal(_flat(model), x)
    setup.before_train_epoch(2)
    assert torch.allclose(_flat(model), y, rtol=0, atol=1e-6)


def test_a_schedule_free_run_reports_the_metrics_of_x():
    task = get_task("digits_mlp")
    data = split_data(task.load_data(), task.valid_size, 0, 256)
    models = []
    original = task.make_model

    def capture():
        models.append(original())
        return models[-1]

    import dataclasses

    result = train(dataclasses.replace(task, make_model=capture), data, Recipe(SF, {"lr": 1e-2}, batch_size=64,
                                                                                  epochs=3), 0, device=CPU)
    assert result.status is RunStatus.FINISHED, result.error
    # the model ends where it was last evaluated (x): its metrics are the recorded ones, exactly
    final = evaluate(models[-1], task, data.valid, "valid") | evaluate(models[-1], task, data.test, "test")
    for key in ("valid_loss", "valid_accuracy", "test_loss"):
        assert result.epochs[-1].metrics[key] == final[key]


@pytest.mark.parametrize("engine", ["ddp", "ps"])
def test_engines_that_cannot_switch_refuse_it(engine):
    with pytest.raises(ConfigError, match="engine single"):
        check_recipe(Recipe(SF, {"lr": 1e-2}), get_task("digits_mlp"), CPU, engine=engine)
