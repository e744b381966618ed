"""Regularizers as loss/model/data components: penalties, decay groups, label smoothing, early
stopping, augmentation, normalization layers and the catalogue."""

from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import Direction
from optbench.techniques import (
    EarlyStopping,
    augmentations,
    averagers,
    clipping,
    decay_groups,
    elastic_net,
    gaussian_noise,
    horizontal_flip,
    l1,
    l2,
    lr_scaling,
    make_augmentation,
    make_penalty,
    norm_layer,
    norms,
    penalties,
    penalty,
    precisions,
    random_crop,
    smoothed_cross_entropy,
    split_decay_parameters,
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.LayerNorm(3))


# ------------------------------------------------------------------ penalties
def test_penalty_values_and_gradients_match_formulas() -> None:
    a = torch.tensor([1.0, -2.0, 0.0], requires_grad=True)
    b = torch.tensor([[3.0, -0.5]], requires_grad=True)
    assert penalty("l1", [a, b], strength=0.1).item() == pytest.approx(0.1 * 6.5)
    assert penalty("l2", [a, b], strength=0.1).item() == pytest.approx(0.05 * 14.25)
    en = penalty("elastic_net", [a, b], strength=0.1, l1_ratio=0.3)
    assert en.item() == pytest.approx(0.1 * (0.3 * 6.5 + 0.7 / 2 * 14.25))
    assert en.dim() == 0 and en.dtype == torch.float32
    l2(iter([a, b]), strength=0.2).backward()  # any iterable; gradient strength * theta
    torch.testing.assert_close(a.grad, 0.2 * a.detach())
    a.grad = None
    l1([a], strength=0.5).backward()  # subgradient 0 at 0
    torch.testing.assert_close(a.grad, torch.tensor([0.5, -0.5, 0.0]))
    for p in (a, b):
        assert elastic_net([p], 0.3, l1_ratio=1.0).item() == pytest.approx(l1([p], 0.3).item())
        assert elastic_net([p], 0.3, l1_ratio=0.0).item() == pytest.approx(l2([p], 0.3).item())
    assert penalty("none", [a]).item() == 0.0


def test_l2_penalty_equals_sgd_weight_decay() -> None:
    """The module docstring's claim: a step on loss + l2(strength) is SGD(weight_decay=strength)."""
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    torch.manual_seed(1)
    m1 = nn.Linear(4, 3)
    m2 = nn.Linear(4, 3)
    m2.load_state_dict(m1.state_dict())
    o1 = torch.optim.SGD(m1.parameters(), lr=0.1, momentum=0.9)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05)
    for _ in range(5):
        for m, o, pen in ((m1, o1, True), (m2, o2, False)):
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            if pen:
                loss = loss + penalty("l2", m.parameters(), strength=0.05)
            loss.backward()
            o.step()
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=1e-6, atol=1e-7)


def test_penalty_errors() -> None:
    p = [torch.ones(2)]
    with pytest.raises(UnknownNameError, match="elastic_net, l1, l2, none"):
        penalty("l3", p, strength=1.0)
    with pytest.raises(ConfigError, match="strength"):
        penalty("l2", p, strength=-1.0)
    with pytest.raises(ConfigError, match="missing"):
        penalty("l2", p)
    with pytest.raises(ConfigError, match="l1_ratio"):
        penalty("l2", p, strength=1.0, l1_ratio=0.5)  # not an option of l2
    with pytest.raises(ConfigError, match="l1_ratio"):
        penalty("elastic_net", p, strength=1.0, l1_ratio=1.5)


def test_make_penalty_excludes_biases_and_norm_weights() -> None:
    model = _net()
    fn = make_penalty("l2", model, strength=2.0)
    weights = [model[0].weight, model[3].weight]
    assert fn is not None
    assert fn().item() == pytest.approx(sum(float((w.detach() ** 2).sum()) for w in weights))
    every = make_penalty("l2", model, exclude_bias_and_norm=False, strength=2.0)
    assert every().item() == pytest.approx(sum(float((p.detach() ** 2).sum()) for p in model.parameters()))
    assert make_penalty("none", model) is None


# ------------------------------------------------------------------ decay groups
def test_decay_groups_split_and_apply() -> None:
    model = _net()
    groups = decay_groups(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    decay_ids = {id(p) for p in groups[0]["params"]}
    assert decay_ids == {id(model[0].weight), id(model[3].weight)}
    every = [id(p) for g in groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    # a step with zero gradient: decayed weights shrink, biases and norm weights do not move
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(groups, lr=1.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, old in zip(model.parameters(), before, strict=True):
        expected = old * 0.9 if id(p) in decay_ids else old
        torch.testing.assert_close(p.detach(), expected)
    assert len(decay_groups(model, 0.1, exclude_bias_and_norm=False)) == 1
    with pytest.raises(ConfigError, match="weight_decay"):
        decay_groups(model, -0.1)


def test_decay_groups_with_create_optimizer_and_shared_parameters() -> None:
    from optbench.optim import create_optimizer

    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.GroupNorm(1, 3), shared)  # shared layer listed once
    decay, no_decay = split_decay_parameters(model)
    assert len(decay) == 1 and len(no_decay) == 3
    opt = create_optimizer("torch.adamw", decay_groups(model, 0.01), lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


# ------------------------------------------------------------------ label smoothing
def test_label_smoothing_changes_loss_by_expected_amount() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    eps = 0.2
    ce = F.cross_entropy(logits, y)
    uniform = (-F.log_softmax(logits, dim=1)).mean(dim=1).mean()  # mean_k(-log p_k), batch mean
    smoothed = smoothed_cross_entropy(eps)(logits, y)
    torch.testing.assert_close(smoothed, (1 - eps) * ce + eps * uniform)
    assert abs(smoothed.item() - ce.item()) > 1e-3
    torch.testing.assert_close(smoothed_cross_entropy(0.0)(logits, y), ce)
    for bad in (1.0, -0.1, math.nan):
        with pytest.raises(ConfigError, match="label_smoothing"):
            smoothed_cross_entropy(bad)


# ------------------------------------------------------------------ early stopping
def test_early_stopping_stops_at_expected_epoch() -> None:
    losses = [1.0, 0.8, 0.79, 0.85, 0.9, 0.7, 0.95]
    stopper = EarlyStopping(patience=2, min_delta=0.05, direction=Direction.MINIMIZE)
    stops = [stopper.update(v) for v in losses]
    # epoch 3 (0.79) is not better than 0.8 by more than 0.05: epochs 3 and 4 do not improve
    assert stops == [False, False, False, True, True, True, True]
    assert (stopper.best, stopper.best_epoch, stopper.stopped_epoch) == (0.8, 2, 4)

    stopper = EarlyStopping(patience=2, min_delta=0.0, direction="minimize")
    assert [stopper.update(v) for v in losses][:5] == [False, False, False, False, True]
    assert (stopper.best, stopper.best_epoch) == (0.79, 3)


def test_early_stopping_maximize_nan_and_state() -> None:
    stopper = EarlyStopping(patience=3, direction=Direction.MAXIMIZE)
    for v in (0.5, 0.6, math.nan, 0.55):
        assert not stopper.update(v)
    assert stopper.improved is False and stopper.best == 0.6 and stopper.bad_epochs == 2
    clone = EarlyStopping(patience=3, direction=Direction.MAXIMIZE)
    clone.load_state_dict(stopper.state_dict())
    assert clone.update(0.61) is False and clone.improved and clone.best_epoch == 5
    assert stopper.update(0.6) is True and stopper.stopped_epoch == 5  # equal is not better
    for kwargs in ({"patience": 0}, {"patience": 2, "min_delta": -1.0}, {"patience": 2, "direction": "up"}):
        with pytest.raises(ConfigError):
            EarlyStopping(**kwargs)


# ------------------------------------------------------------------ augmentation
def test_random_crop_moves_a_one_hot_pixel_by_the_offset() -> None:
    b, pad = 64, 3
    x = torch.zeros(b, 2, 9, 9)
    x[:, :, 4, 4] = 1.0  # the centre: it stays inside for any offset within 3 pixels
    out = random_crop(x, pad, torch.Generator().manual_seed(5))
    offsets = torch.randint(0, 2 * pad + 1, (2, b), generator=torch.Generator().manual_seed(5))
    assert out.shape == x.shape
    assert torch.equal(out.sum(dim=(2, 3)), torch.ones(b, 2))  # still exactly one hot pixel
    flat = out[:, 0].flatten(1).argmax(dim=1)
    rows, cols = flat // 9, flat % 9
    assert torch.equal(rows, 4 + pad - offsets[0]) and torch.equal(cols, 4 + pad - offsets[1])
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # offsets vary per example


def test_random_crop_matches_a_per_example_reference_and_keeps_layout() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 3, 8, 10).contiguous(memory_format=torch.channels_last)
    out = random_crop(x, 2, torch.Generator().manual_seed(7), fill=-1.0)
    offsets = torch.randint(0, 5, (2, 16), generator=torch.Generator().manual_seed(7))
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    for i in range(16):
        oy, ox = int(offsets[0, i]), int(offsets[1, i])
        torch.testing.assert_close(out[i], padded[i, :, oy:oy + 8, ox:ox + 10], rtol=0, atol=0)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert random_crop(x, 0, torch.Generator()) is x
    with pytest.raises(ConfigError, match="shape"):
        random_crop(torch.zeros(4, 40), 2, torch.Generator())


def test_flip_and_noise() -> None:
    x = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3)
    assert torch.equal(horizontal_flip(x, 1.0, torch.Generator()), x.flip(-1))
    assert torch.equal(horizontal_flip(x, 0.0, torch.Generator()), x)
    big = torch.randn(1000, 1, 2, 5)
    out = horizontal_flip(big, 0.5, torch.Generator().manual_seed(0))
    same = (out == big).flatten(1).all(1)
    flipped = (out == big.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 400 < int(flipped.sum()) < 600
    z = torch.zeros(200, 3, 10, 10)
    noisy = gaussian_noise(z, 0.5, torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.5) < 0.01 and abs(noisy.mean().item()) < 0.01
    assert torch.equal(gaussian_noise(z, 0.0, torch.Generator()), z)


def test_make_augmentation_is_deterministic_ordered_and_validated() -> None:
    x = torch.randn(32, 3, 12, 12)
    spec = {"random_crop": {"padding": 2}, "horizontal_flip": {"p": 0.5}, "gaussian_noise": {"std": 0.1}}
    aug = make_augmentation(spec)
    a = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, aug(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(4)))
    g = torch.Generator().manual_seed(3)  # the same three calls by hand, in the given order
    manual = gaussian_noise(horizontal_flip(random_crop(x, 2, g), 0.5, g), 0.1, g)
    assert torch.equal(a, manual)
    assert make_augmentation({})(x, g) is x
    with pytest.raises(UnknownNameError, match="gaussian_noise, horizontal_flip, random_crop"):
        make_augmentation({"rotate": {}})
    with pytest.raises(ConfigError, match="padding"):
        make_augmentation({"random_crop": {"padding": -1}})
    with pytest.raises(ConfigError, match="missing"):
        make_augmentation({"horizontal_flip": {}})
    with pytest.raises(ConfigError, match="sigma"):
        make_augmentation({"gaussian_noise": {"sigma": 0.1}})


class _CountTorchCalls(TorchFunctionMode):
    """Counts torch function calls made from Python (a per-example loop would scale with B)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_augmentation_is_batched_and_fast() -> None:
    """The same number of torch calls for 4 and 512 examples (no per-example Python), and a
    CIFAR-sized batch of 256 in a few ms on one thread (measured 5-7 ms, 3 ms of it drawing the
    Gaussian noise; the bound is generous for a loaded machine, and the min of repeats is robust
    to other processes)."""
    aug = make_augmentation({"random_crop": {"padding": 4}, "horizontal_flip": {"p": 0.5},
                             "gaussian_noise": {"std": 0.1}})
    counts = []
    for b in (4, 512):
        x = torch.randn(b, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        with _CountTorchCalls() as counter:
            aug(x, torch.Generator().manual_seed(0))
        counts.append(counter.calls)
    assert counts[0] == counts[1] < 60, counts
    x = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2-thread kernels stall for ms when another process holds a core
    try:
        aug(x, g)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            aug(x, g)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    assert min(times) < 0.03, times


# ------------------------------------------------------------------ normalization
@pytest.mark.parametrize(("kind", "spatial", "cls"), [
    ("none", True, nn.Identity), ("none", False, nn.Identity),
    ("batch", True, nn.BatchNorm2d), ("batch", False, nn.BatchNorm1d),
    ("layer", True, nn.GroupNorm), ("layer", False, nn.LayerNorm),
    ("group", True, nn.GroupNorm), ("group", False, nn.GroupNorm),
])
def test_norm_layer_kinds(kind: str, spatial: bool, cls: type[nn.Module]) -> None:
    layer = norm_layer(kind, 16, spatial=spatial, groups=4)
    assert type(layer) is cls
    x = torch.randn(8, 16, 5, 5) * 3 + 2 if spatial else torch.randn(8, 16) * 3 + 2
    out = layer(x)
    assert out.shape == x.shape
    if kind == "layer" or (kind == "group"):  # per-example statistics
        groups = 1 if kind == "layer" else 4
        per_group = out.reshape(8, groups, -1)
        torch.testing.assert_close(per_group.mean(-1), torch.zeros(8, groups), atol=1e-5, rtol=0)
    if kind == "batch":
        torch.testing.assert_close(out.transpose(0, 1).reshape(16, -1).mean(-1), torch.zeros(16),
                                   atol=1e-5, rtol=0)


def test_norm_layer_errors_and_dims() -> None:
    assert isinstance(norm_layer("batch", 4, spatial=True, spatial_dims=1), nn.BatchNorm1d)
    assert norm_layer("layer", 6, spatial=True).num_groups == 1
    with pytest.raises(ConfigError, match="groups"):
        norm_layer("group", 10, spatial=True, groups=4)
    with pytest.raises(UnknownNameError, match="batch, group, layer, none"):
        norm_layer("instance", 4, spatial=True)
    with pytest.raises(ConfigError, match="num_features"):
        norm_layer("batch", 0, spatial=False)


# ------------------------------------------------------------------ catalogue
def test_every_family_entry_and_technique_has_a_source() -> None:
    from optbench.techniques.registry import techniques

    registries = ((penalties, "penalty"), (augmentations, "augmentation"), (averagers, "averaging"),
                  (norms, "normalization"), (precisions, "precision"), (lr_scaling, "lr_scaling"),
                  (clipping, "clipping"))
    for registry, family in registries:
        for name in registry.names():
            entry = registry.get(name)
            assert entry.family == family and entry.source and entry.description
    names = techniques.names()
    assert {"label_smoothing", "early_stopping", "no_decay_bias_norm", "accumulation"} <= set(names)
    for name in names:
        cls = techniques.get(name)
        assert cls.name == name and cls.source and cls.description
