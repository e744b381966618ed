"""The task catalogue: DeepOBS architectures (parameter counts from their definitions),
synthetic problems with known optima, task validation, and the fast tasks reaching their targets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Recipe, RunStatus, Split
from optbench.engine import Pruned, split_data, train
from optbench.tasks import check_task, get_task, tasks

CATALOGUE = {
    "fmnist_cnn3", "fmnist_mlp", "mnist_mlp", "mnist1d_mlp", "mnist1d_cnn", "digits_mlp",
    "mnist_logreg", "mnist_2c2d", "fmnist_logreg", "fmnist_2c2d", "cifar10_3c3d", "cifar100_3c3d",
    "mnist1d_logreg", "mnist1d_gru", "shakespeare_char_lstm", "shakespeare_char_transformer", "brown_word_lstm",
    "quadratic_deep", "logreg_convex", "split_mnist", "split_fmnist", "split_mnist1d", "split_digits",
    "synthetic_imagenet_resnet50", "synthetic_imagenet_resnet152", "synthetic_imagenet_vgg16",
    "synthetic_imagenet_vgg19", "synthetic_imagenet_inception_v4",
    "imagefolder_cnn", "npy_mlp", "table_mlp", "nas_cnn", "nas_seq",
}

# parameter counts derived from the definitions (DeepOBS testproblems_modules.py and the docstrings)
CONV_2C2D = (1 * 5 * 5 + 1) * 32 + (32 * 5 * 5 + 1) * 64  # two 5x5 convs
DENSE_2C2D = (7 * 7 * 64 + 1) * 1024 + (1024 + 1) * 10
CONV_3C3D = (3 * 5 * 5 + 1) * 64 + (64 * 3 * 3 + 1) * 96 + (96 * 3 * 3 + 1) * 128
DENSE_3C3D = (3 * 3 * 128 + 1) * 512 + (512 + 1) * 256


def gru_params(h: int, inputs: int = 1) -> int:
    return 3 * (h * inputs + h * h + 2 * h)


PARAMS = {
    "mnist_logreg": ((1, 28, 28), (784 + 1) * 10),
    "fmnist_logreg": ((1, 28, 28), (784 + 1) * 10),
    "mnist_2c2d": ((1, 28, 28), CONV_2C2D + DENSE_2C2D),  # 3,274,634 (DeepOBS paper)
    "fmnist_2c2d": ((1, 28, 28), CONV_2C2D + DENSE_2C2D),
    "cifar10_3c3d": ((3, 32, 32), CONV_3C3D + DENSE_3C3D + (256 + 1) * 10),  # 895,210 (DeepOBS paper)
    "cifar100_3c3d": ((3, 32, 32), CONV_3C3D + DENSE_3C3D + (256 + 1) * 100),
    "mnist1d_logreg": ((40,), (40 + 1) * 10),
    "mnist1d_gru": ((40,), gru_params(64) + (64 + 1) * 10),
    "quadratic_deep": ((100,), 100),
    "logreg_convex": ((20,), 20),
}


def fake_images(shape, classes=10, n_train=64, n_test=16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    return Dataset(Split(torch.randn((n_train, *shape), generator=g),
                         torch.randint(0, classes, (n_train,), generator=g)),
                   Split(torch.randn((n_test, *shape), generator=g), torch.randint(0, classes, (n_test,), generator=g)))


def test_catalogue_lists_every_task():
    assert set(tasks.names()) == CATALOGUE


def test_parameter_counts_match_the_definitions():
    assert PARAMS["mnist_2c2d"][1] == 3_274_634 and PARAMS["cifar10_3c3d"][1] == 895_210
    for name, (_, expected) in PARAMS.items():
        model = get_task(name).make_model()
        assert sum(p.numel() for p in model.parameters()) == expected, name


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_task_passes_check_and_trains_one_step(name):
    shape, _ = PARAMS[name]
    task = get_task(name)
    classes = 100 if name == "cifar100_3c3d" else 2 if name == "logreg_convex" else 10
    data = fake_images(shape, classes)
    task = dataclasses.replace(task, valid_size=8)
    check_task(task, data)
    splits = split_data(data, 8, seed=0, train_size=32)
    result = train(task, splits, Recipe("sgd", {"lr": 1e-3}, batch_size=32, epochs=1), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    assert math.isfinite(result.final(task.target.key))


def test_deepobs_initialization_and_regularization():
    logreg = get_task("mnist_logreg").make_model()
    assert all(torch.count_nonzero(p) == 0 for p in logreg.parameters())  # DeepOBS: zeros
    net = get_task("mnist_2c2d").make_model()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):  # truncated normal std 0.05, biases 0.05
            assert module.weight.abs().max() <= 0.1 + 1e-7 and torch.allclose(module.bias, torch.tensor(0.05))
            assert 0.03 < float(module.weight.detach().std()) < 0.05
    assert get_task("cifar10_3c3d").l2 == 0.002 and get_task("cifar100_3c3d").l2 == 0.002
    assert get_task("mnist_2c2d").l2 == 0.0 and get_task("mnist_logreg").l2 == 0.0
    # 3c3d feature maps: 32 -conv5-> 28 -pool-> 14 -conv3-> 12 -pool-> 6 -conv3 same-> 6 -pool-> 3
    sizes = []
    net3 = get_task("cifar10_3c3d").make_model()
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
             for m in net3.modules() if isinstance(m, torch.nn.MaxPool2d)]
    net3(torch.randn(2, 3, 32, 32))
    assert sizes == [14, 6, 3]
    for h in hooks:
        h.remove()


def test_architecture_options():
    task = get_task("mnist_2c2d[norm=batch,width=0.5]")
    model = task.make_model()
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [16, 32]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    gru = get_task("mnist1d_gru[width=0.5]").make_model()
    assert gru.gru.hidden_size == 32
    with pytest.raises(ConfigError):
        get_task("cifar10_3c3d[dropout=1.0]")


def test_quadratic_deep_spectrum_and_optimum():
    from optbench.tasks.synthetic import quadratic_hessian

    q = quadratic_hessian()
    eig = np.linalg.eigvalsh(q)
    assert np.allclose(q, q.T) and q.shape == (100, 100)
    assert ((eig > 0) & (eig < 1)).sum() == 90 and ((eig > 30) & (eig < 60)).sum() == 10
    task = get_task("quadratic_deep")
    assert task.metric_names == ("loss",) and task.target.key == "valid_loss"
    data = split_data(task.load_data(), task.valid_size, 0)
    model = task.make_model()
    with torch.no_grad():  # the best reachable validation loss is below the target, the start far above
        start = float(task.loss(model(data.valid.x), data.valid.y))
        model.theta.copy_(data.train.x.mean(0))
        best = float(task.loss(model(data.valid.x), data.valid.y))
    assert best < task.target.value < start


def test_logreg_convex_optimum_is_exact_and_the_split_floor_is_small():
    from optbench.tasks.synthetic import (
        LOGREG_L2,
        logreg_convex_data,
        logreg_objective,
        logreg_optimum,
    )

    x, y = logreg_convex_data()
    w, f_star = logreg_optimum(x, y, LOGREG_L2)
    value, grad, hess = logreg_objective(w, x, y, LOGREG_L2)
    assert np.linalg.norm(grad) < 1e-12 and value == pytest.approx(f_star, abs=1e-15)
    assert np.linalg.eigvalsh(hess).min() >= LOGREG_L2  # strongly convex
    task = get_task("logreg_convex")
    model = task.make_model()
    with torch.no_grad():
        model.linear.weight.copy_(torch.from_numpy(w).float()[None])
        ds = task.load_data()
        out = model(ds.test.x)
        f = float(task.metric("loss").batch_sum(out, ds.test.y)) / len(ds.test)
    assert task.metric("suboptimality").compute(f) == pytest.approx(0.0, abs=1e-5)
    for seed in range(3):  # training on the pool minus the validation carve-out moves the optimum very little
        split = split_data(ds, task.valid_size, seed)
        w_s, _ = logreg_optimum(split.train.x.double().numpy(), split.train.y.numpy(), LOGREG_L2)
        assert 0 <= logreg_objective(w_s, x, y, LOGREG_L2)[0] - f_star < 1e-4 < task.target.value


@pytest.mark.parametrize("name", ["mnist1d_logreg", "mnist1d_gru", "quadratic_deep", "logreg_convex", "digits_mlp"])
def test_fast_task_reaches_its_target_with_its_recipe(name):
    task = get_task(name)
    dataset = task.load_data()
    check_task(task, dataset)
    recipe = Recipe.from_dict(task.recipe)
    key = task.target.key

    def stop_at_target(record):
        if task.direction(key).reached(record.metrics[key], task.target.value):
            raise Pruned("target reached")

    result = train(task, split_data(dataset, task.valid_size, 0, recipe.train_size), recipe, seed=0,
                   on_epoch=stop_at_target)
    assert result.status in (RunStatus.FINISHED, RunStatus.PRUNED), result.error
    assert result.epochs_to_target(key, task.target.value, task.direction(key)) is not None, \
        [e.metrics[key] for e in result.epochs]


def test_mnist_logreg_on_cached_data():
    from optbench.data import is_cached

    if not is_cached("mnist"):
        pytest.skip("MNIST not in the cache (bench/tasks.py measures it)")
    task = get_task("mnist_logreg")
    recipe = dataclasses.replace(Recipe.from_dict(task.recipe), epochs=1, train_size=10_000)
    result = train(task, split_data(task.load_data(), task.valid_size, 0, 10_000), recipe, seed=0)
    assert result.final("valid_accuracy") >= task.target.value
