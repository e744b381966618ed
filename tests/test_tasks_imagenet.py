"""The five networks of the reference distributed experiment on synthetic ImageNet: parameter counts
against the published definitions, a forward/backward at 224x224 for each, reduced resolutions, the
synthetic data, the task options and one run through the engine."""

from __future__ import annotations

import math

import pytest
import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine import split_data, train
from optbench.tasks import check_task, get_task, tasks
from optbench.tasks import imagenet as I

NAMES = {net: f"synthetic_imagenet_{net}" for net in I.NETWORKS}


def conv(c_in: int, c_out: int, kh: int, kw: int | None = None, *, bias: bool = False, bn: bool = True) -> int:
    """Parameters of one convolution (+ its batch norm's weight and bias)."""
    return c_in * c_out * kh * (kh if kw is None else kw) + (c_out if bias else 0) + (2 * c_out if bn else 0)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def resnet_formula(blocks: tuple[int, ...]) -> int:
    """He et al. 2016, Table 1, bottleneck blocks with projection shortcuts where the shape changes."""
    total = conv(3, 64, 7)
    c = 64
    for planes, count in zip((64, 128, 256, 512), blocks, strict=True):
        for j in range(count):
            total += conv(c, planes, 1) + conv(planes, planes, 3) + conv(planes, 4 * planes, 1)
            if j == 0:
                total += conv(c, 4 * planes, 1)  # every stage's first block changes the channels
            c = 4 * planes
    return total + linear(2048, 1000)


def vgg_formula(convs_per_stage: tuple[int, ...]) -> int:
    """Simonyan & Zisserman 2015, Table 1: 3x3 convolutions with bias, 64-128-256-512-512 channels."""
    total, c = 0, 3
    for width, count in zip((64, 128, 256, 512, 512), convs_per_stage, strict=True):
        for _ in range(count):
            total += conv(c, width, 3, bias=True, bn=False)
            c = width
    return total + linear(512 * 7 * 7, 4096) + linear(4096, 4096) + linear(4096, 1000)


def inception_v4_formula() -> int:
    """Szegedy et al. 2017, Figures 3-9, every convolution followed by batch norm (weight and bias),
    summed block by block from the figures (1xn and nx1 kernels written as such)."""
    stem = (conv(3, 32, 3) + conv(32, 32, 3) + conv(32, 64, 3) + conv(64, 96, 3)
            + conv(160, 64, 1) + conv(64, 96, 3)
            + conv(160, 64, 1) + conv(64, 64, 7, 1) + conv(64, 64, 1, 7) + conv(64, 96, 3)
            + conv(192, 192, 3))
    block_a = (conv(384, 96, 1) + conv(384, 64, 1) + conv(64, 96, 3)
               + conv(384, 64, 1) + conv(64, 96, 3) + conv(96, 96, 3) + conv(384, 96, 1))
    k, l_, m, n = 192, 224, 256, 384  # Table 1's k, l, m, n for Inception-v4
    reduction_a = conv(384, n, 3) + conv(384, k, 1) + conv(k, l_, 3) + conv(l_, m, 3)
    block_b = (conv(1024, 384, 1)
               + conv(1024, 192, 1) + conv(192, 224, 1, 7) + conv(224, 256, 7, 1)
               + conv(1024, 192, 1) + conv(192, 192, 1, 7) + conv(192, 224, 7, 1) + conv(224, 224, 1, 7)
               + conv(224, 256, 7, 1)
               + conv(1024, 128, 1))
    reduction_b = (conv(1024, 192, 1) + conv(192, 192, 3)
                   + conv(1024, 256, 1) + conv(256, 256, 1, 7) + conv(256, 320, 7, 1) + conv(320, 320, 3))
    block_c = (conv(1536, 256, 1)
               + conv(1536, 384, 1) + conv(384, 256, 1, 3) + conv(384, 256, 3, 1)
               + conv(1536, 384, 1) + conv(384, 448, 1, 3) + conv(448, 512, 3, 1)
               + conv(512, 256, 1, 3) + conv(512, 256, 3, 1)
               + conv(1536, 256, 1))
    return stem + 4 * block_a + reduction_a + 7 * block_b + reduction_b + 3 * block_c + linear(1536, 1000)


#: Published counts (torchvision's resnet50/resnet152/vgg16/vgg19; for Inception-v4 the reference
#: implementation's, Cadene's pretrainedmodels / timm ``inception_v4``, 1000 classes).
PUBLISHED = {"resnet50": 25_557_032, "resnet152": 60_192_808, "vgg16": 138_357_544, "vgg19": 143_667_240,
             "inception_v4": 42_679_816}


def count(network: str) -> int:
    with torch.device("meta"):  # no memory, no initialization: counting only
        model = I.NETWORKS[network]()
    return sum(p.numel() for p in model.parameters())


def test_formulas_give_the_published_counts():
    assert resnet_formula((3, 4, 6, 3)) == PUBLISHED["resnet50"]
    assert resnet_formula((3, 8, 36, 3)) == PUBLISHED["resnet152"]
    assert vgg_formula((2, 2, 3, 3, 3)) == PUBLISHED["vgg16"]
    assert vgg_formula((2, 2, 4, 4, 4)) == PUBLISHED["vgg19"]
    assert inception_v4_formula() == PUBLISHED["inception_v4"]


@pytest.mark.parametrize("network", sorted(PUBLISHED))
def test_parameter_count_matches_the_published_definition(network):
    assert count(network) == PUBLISHED[network]


@pytest.mark.parametrize("network", sorted(I.NETWORKS))
def test_forward_backward_at_224(network):
    """Batch 2 in training mode (batch norm's batch statistics), 3x224x224, on the CPU."""
    torch.manual_seed(0)
    model = I.NETWORKS[network]().train()
    x = torch.randn(2, 3, 224, 224)
    y = torch.tensor([3, 999])
    output = model(x)
    assert output.shape == (2, 1000)
    loss = torch.nn.functional.cross_entropy(output, y)
    assert math.isfinite(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("network", sorted(I.NETWORKS))
def test_smallest_resolution_gives_logits_and_one_less_fails(network):
    """Shapes only, on the meta device: every network accepts its MIN_RESOLUTION and the paper's
    299 too, and the adaptive pooling keeps the classifier's input size."""
    low = I.MIN_RESOLUTION[network]
    with torch.device("meta"):
        model = I.NETWORKS[network]()
        for side in (low, 96, 299):
            assert model(torch.empty(2, 3, side, side)).shape == (2, 1000)
        if network == "inception_v4":  # the unpadded stem: 74 leaves nothing for Reduction-B
            with pytest.raises(RuntimeError):
                model(torch.empty(2, 3, low - 1, low - 1))


def test_reduced_resolution_trains_on_cpu():
    """The same code at a CPU-friendly size: ResNet-50 at 32x32 and Inception-v4 at 75x75,
    forward and backward with finite gradients."""
    for network, side in (("resnet50", 32), ("inception_v4", 75)):
        torch.manual_seed(0)
        model = I.NETWORKS[network]()
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, side, side)), torch.arange(4))
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_synthetic_data_shape_classes_and_seeds():
    data = I.synthetic_imagenet(resolution=40, train_examples=300, test_examples=50, seed=7)
    assert data.train.x.shape == (300, 3, 40, 40) and data.train.x.dtype == torch.float32
    assert data.test.x.shape == (50, 3, 40, 40)
    for split in (data.train, data.test):
        assert split.y.dtype == torch.int64
        assert int(split.y.min()) >= 0 and int(split.y.max()) < 1000
    assert len(data.train.y.unique()) > 200  # uniform over 1000 classes: 300 draws hit ~260 classes
    assert abs(float(data.train.x.mean())) < 0.01 and abs(float(data.train.x.std()) - 1) < 0.01
    again = I.synthetic_imagenet(resolution=40, train_examples=300, test_examples=50, seed=7)
    assert torch.equal(again.train.x, data.train.x) and torch.equal(again.train.y, data.train.y)
    assert torch.equal(again.test.x, data.test.x) and torch.equal(again.test.y, data.test.y)
    other = I.synthetic_imagenet(resolution=40, train_examples=300, test_examples=50, seed=8)
    assert not torch.equal(other.train.x, data.train.x) and not torch.equal(other.train.y, data.train.y)
    assert not torch.equal(data.train.x[:50], data.test.x)  # train and test are independent streams
    fewer = I.synthetic_imagenet(resolution=40, train_examples=10, test_examples=5, seed=7)
    assert torch.equal(fewer.train.y, data.train.y[:10])  # labels: a stream of their own


def test_tasks_are_registered_with_recipe_target_and_augmentations():
    assert set(NAMES.values()) <= set(tasks.names())
    for network, name in NAMES.items():
        task = get_task(name)  # cheap: no model, no data yet
        assert task.name == name
        assert f"{PUBLISHED[network]:,}" in task.description
        assert task.target.key == "train_loss" and task.target.value == pytest.approx(math.log(224) - 1, abs=0.01)
        assert task.valid_size == 32
        assert task.recipe["optimizer"] == "momentum" and task.recipe["hyperparams"]["momentum"] == 0.9
        assert task.recipe["batch_size"] == 32
        assert {"random_crop", "horizontal_flip"} <= set(task.augmentations)
    assert I.train_loss_target(256) == 4.41


def test_task_options_name_the_task_and_change_the_data():
    task = get_task("synthetic_imagenet_vgg16[resolution=32,train_examples=24,test_examples=4,seed=3]")
    assert task.name == "synthetic_imagenet_vgg16[resolution=32,seed=3,test_examples=4,train_examples=24]"
    data = task.load_data()
    assert data.train.x.shape == (24, 3, 32, 32) and data.test.x.shape == (4, 3, 32, 32)
    assert task.valid_size == 3
    assert task.target.value == round(math.log(21) - 1, 2)


@pytest.mark.parametrize("option", [
    "resolution=16", "resolution=513", "resolution=64.5", "resolution=true", "train_examples=8", "seed=-1",
])
def test_bad_option_is_a_one_line_config_error(option):
    with pytest.raises(ConfigError) as info:
        get_task(f"synthetic_imagenet_resnet50[{option}]")
    message = str(info.value)
    assert "\n" not in message
    assert f"synthetic_imagenet_resnet50 parameter {option.split('=')[0]}" in message


def test_inception_needs_75_pixels_and_unknown_options_are_refused():
    with pytest.raises(ConfigError, match=r"resolution.*\[75, 512\]"):
        get_task("synthetic_imagenet_inception_v4[resolution=64]")
    get_task("synthetic_imagenet_inception_v4[resolution=75]")
    with pytest.raises(ConfigError, match="parameter of task"):
        get_task("synthetic_imagenet_resnet50[width=2]")


def test_task_passes_check_and_trains_through_the_engine():
    """ResNet-50 at 32x32 on 20 examples: the harness's check, one epoch, finite train loss."""
    task = get_task("synthetic_imagenet_resnet50[resolution=32,train_examples=20,test_examples=4]")
    dataset = task.load_data()
    check_task(task, dataset)
    data = split_data(dataset, task.valid_size, seed=0)
    result = train(task, data, Recipe("momentum", {"lr": 0.01, "momentum": 0.9}, batch_size=8, epochs=1,
                                      techniques=("random_crop:padding=4", "horizontal_flip")), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    assert math.isfinite(result.final("train_loss"))
    assert math.isfinite(result.final("test_accuracy"))
