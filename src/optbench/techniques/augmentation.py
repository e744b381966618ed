"""Data augmentation on batched tensors: ``random_crop``, ``horizontal_flip``, ``gaussian_noise``.

Every function takes a whole batch ``x`` and a ``torch.Generator`` and draws one random value per
example with a single tensor call: no per-example Python. The same generator state gives the same
output (deterministic on a given device). For speed on CUDA pass a generator on the batch's device
(``torch.Generator(device="cuda")``); a CPU generator also works (its draws are copied over).

Applied to training batches only, after batching and before the forward pass. Horizontal flip is
only label-preserving for images without a handedness (natural images, Fashion-MNIST clothes), not
for digits or text; the task decides where it is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique

Augmentation = Callable[[Tensor, torch.Generator], Tensor]


def _check_crop(padding: int, fill: float = 0.0) -> None:
    _validate.integer("augmentation random_crop padding", padding, low=0)
    _validate.number("augmentation random_crop fill", fill)


def _check_flip(p: float) -> None:
    _validate.number("augmentation horizontal_flip p", p, low=0.0, high=1.0)


def _check_noise(std: float) -> None:
    _validate.number("augmentation gaussian_noise std", std, low=0.0, high_open=True)


def _images(name: str, x: Tensor) -> None:
    if x.dim() != 4:
        raise ConfigError(f"augmentation {name} input shape", tuple(x.shape), "image batches (B, C, H, W)")


def _uniform(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device, non_blocking=True)


def random_crop(x: Tensor, padding: int, generator: torch.Generator, *, fill: float = 0.0) -> Tensor:
    """Pad each image by ``padding`` pixels of value ``fill`` on every side, then crop a random
    ``H x W`` window: the image content moves by ``(padding - oy, padding - ox)`` pixels, uniform
    in ``[-padding, padding]^2`` and drawn per example (Krizhevsky et al. 2012; the CIFAR "pad 4 +
    crop" of He et al. 2016, sec. 4.2; torchvision ``RandomCrop(padding=...)``).

    ``fill = 0`` is the training-set mean for standardized inputs.

    Args:
        x: ``(B, C, H, W)``.
        padding: pixels (an integer >= 0; 0 returns ``x``).
        generator: source of the offsets.
        fill: value of the padded border.

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype, device and memory format; output pixel ``(i, j)`` of
        example ``b`` is input pixel ``(i + oy_b - padding, j + ox_b - padding)`` (or ``fill``
        outside the image) with window offsets ``oy_b, ox_b`` uniform in ``[0, 2 * padding]``,
        drawn as ``torch.randint(0, 2 * padding + 1, (2, B), generator=generator)``.

    Raises:
        ConfigError: for a bad ``padding``/``fill`` or a batch that is not 4-d.
    """
    _check_crop(padding, fill)
    _images("random_crop", x)
    if padding == 0:
        return x
    b, _, h, w = x.shape
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    padded = F.pad(x, (padding, padding, padding, padding), value=fill)
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator, device=generator.device)
    offsets = offsets.to(x.device, non_blocking=True)
    # every h x w window of the padded image as a view (B, C, 2p+1, 2p+1, H, W), no copy; then one
    # gather of window (oy_b, ox_b) per example: output (B, C, H, W)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    out = windows[torch.arange(b, device=x.device), :, offsets[0], offsets[1]]
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def horizontal_flip(x: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Mirror each example left-right (last axis) with probability ``p``, drawn per example.

    Args:
        x: ``(B, ..., W)``, e.g. images ``(B, C, H, W)``.
        p: flip probability in [0, 1].
        generator: source of the coin flips.

    Returns:
        a tensor like ``x``.

    Raises:
        ConfigError: for ``p`` outside [0, 1] or ``x`` with fewer than 2 dimensions.
    """
    _check_flip(p)
    if x.dim() < 2:
        raise ConfigError("augmentation horizontal_flip input shape", tuple(x.shape), "(B, ..., W)")
    flip = _uniform(x.shape[0], generator, x.device) < p
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def gaussian_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Add i.i.d. ``N(0, std^2)`` noise to every input value (Bishop 1995, "Training with noise is
    equivalent to Tikhonov regularization"); ``std`` in the inputs' units (standardized: 1 = one
    data std).

    Args:
        x: any shape ``(B, ...)``, floating point.
        std: noise standard deviation (>= 0).
        generator: source of the noise.

    Raises:
        ConfigError: for a negative or non-finite ``std``.
    """
    _check_noise(std)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return x + std * noise.to(x.device, non_blocking=True)


augmentations: Registry[Technique[Callable[..., Tensor]]] = Registry("augmentation")
augmentations.register("random_crop", Technique(
    "random_crop", "augmentation", random_crop, "Krizhevsky et al. 2012; He et al. 2016, sec. 4.2",
    "Zero-pad by `padding` px and crop back at a random offset, per image.",
    ("x", "generator"), _check_crop))
augmentations.register("horizontal_flip", Technique(
    "horizontal_flip", "augmentation", horizontal_flip, "Krizhevsky et al. 2012",
    "Mirror left-right with probability p, per example (only where label-preserving).",
    ("x", "generator"), _check_flip))
augmentations.register("gaussian_noise", Technique(
    "gaussian_noise", "augmentation", gaussian_noise, "Bishop 1995",
    "Add N(0, std^2) noise to every input value.", ("x", "generator"), _check_noise))


def make_augmentation(specs: Mapping[str, Mapping[str, Any]]) -> Augmentation:
    """Compose augmentations applied in the mapping's order, validated now.

    Args:
        specs: ``{name: options}``, e.g. ``{"random_crop": {"padding": 4}, "horizontal_flip": {}}``.

    Returns:
        ``(x, generator) -> x'``; the identity for an empty mapping.

    Raises:
        UnknownNameError: for an unknown augmentation name (lists the known ones).
        ConfigError: for an unknown option or a bad value.
    """
    steps: list[tuple[Callable[..., Tensor], dict[str, Any]]] = []
    for name, options in specs.items():
        technique = augmentations.get(name)
        if not isinstance(options, Mapping):
            raise ConfigError(f"augmentation {name} options", options, "a mapping of option names to values")
        technique.validate(options)
        steps.append((technique.impl, dict(options)))

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        for fn, options in steps:
            x = fn(x, generator=generator, **options)
        return x

    return augment



class _Augmentation(Component):
    """An augmentation of the training batch, drawn from the run's generator (worker side)."""

    family = "augmentation"
    source = ""
    description = ""

    def __init__(self, **options: Any) -> None:
        technique = augmentations.get(self.name)
        technique.validate(options)
        self.options = options
        self._impl = technique.impl
        self._generator: torch.Generator | None = None

    def check_task(self, task: Any) -> None:
        if self.name not in task.augmentations:
            raise ConfigError(f"augmentation for task {task.name}", self.name, task.augmentations)

    def setup(self, run: RunContext) -> None:
        self._generator = run.generator

    def transform_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return self._impl(x, generator=self._generator, **self.options), y


class RandomCrop(_Augmentation):
    """Pad by ``padding`` pixels of ``fill`` and crop back at a random offset, per image (Krizhevsky
    et al. 2012; He et al. 2016, sec. 4.2); image tasks only."""

    name = "random_crop"
    source = augmentations.get("random_crop").source
    description = augmentations.get("random_crop").description

    def __init__(self, *, padding: int, fill: float = 0.0) -> None:
        super().__init__(padding=padding, fill=fill)


class HorizontalFlip(_Augmentation):
    """Mirror left-right with probability ``p``, per example (Krizhevsky et al. 2012); only where the
    labels are unchanged by it."""

    name = "horizontal_flip"
    source = augmentations.get("horizontal_flip").source
    description = augmentations.get("horizontal_flip").description

    def __init__(self, *, p: float = 0.5) -> None:
        super().__init__(p=p)


class GaussianNoise(_Augmentation):
    """Add ``N(0, std^2)`` noise to every input value (Bishop 1995)."""

    name = "gaussian_noise"
    source = augmentations.get("gaussian_noise").source
    description = augmentations.get("gaussian_noise").description

    def __init__(self, *, std: float) -> None:
        super().__init__(std=std)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (RandomCrop, HorizontalFlip, GaussianNoise,)

__all__ = ["Augmentation", "COMPONENTS", "GaussianNoise", "HorizontalFlip", "RandomCrop", "augmentations",
           "gaussian_noise", "horizontal_flip", "make_augmentation", "random_crop"]
