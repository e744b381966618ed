"""An image network from a point of the architecture space (docs/architecture.md, "Architecture search").

:class:`ImageArchitecture` holds the searchable choices; :meth:`~ImageArchitecture.build` realizes them as
a stem (``3 x 3`` conv unit to the first stage's channels), ``stages`` stages of ``depth`` blocks each
(the first block of every stage after the first has stride 2, halving the resolution), global average
pooling, dropout and a linear classifier. Channels are scaled by the width multiplier and rounded to a
multiple of 4 (at least 4), as MobileNet's width multiplier; the input is resized by the resolution
multiplier (bilinear) before the stem, EfficientNet's compound scaling dimensions (Tan & Le 2019).
:meth:`~ImageArchitecture.check` says why a point cannot be realized (one line, the key named) before
anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from optbench.core.errors import ConfigError
from optbench.nas.blocks import ACTIVATIONS, BLOCKS, NORMS, block_parameters, conv_parameters, conv_unit, make_block


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 4, at least 4."""
    return max(4, int(round(channels * width / 4)) * 4)


@dataclass(frozen=True)
class ImageArchitecture:
    """One point of the image space.

    Attributes:
        channels: channels of each stage before the width multiplier, e.g. ``(16, 32)``; its length is the
            number of stages.
        depth: blocks per stage (>= 1).
        block: one of :data:`~optbench.nas.blocks.BLOCKS`.
        kernel: odd kernel size of the blocks' spatial convolutions.
        expansion: the inverted residual's expansion ratio; None for every other block.
        activation, norm: see :data:`~optbench.nas.blocks.ACTIVATIONS`, :data:`~optbench.nas.blocks.NORMS`.
        dropout: before the classifier, in [0, 1).
        width: channel multiplier (> 0).
        resolution: input resolution multiplier (> 0).
    """

    channels: tuple[int, ...] = (16, 32)
    depth: int = 1
    block: str = "plain"
    kernel: int = 3
    expansion: int | None = None
    activation: str = "relu"
    norm: str = "batch"
    dropout: float = 0.0
    width: float = 1.0
    resolution: float = 1.0

    def check(self, image_size: int) -> None:
        """Raise when the point cannot be realized for ``image_size`` x ``image_size`` inputs.

        Raises:
            ConfigError: naming the key (``channels``, ``depth``, ``block``, ``expansion``, ``kernel``, ...)
                and what is allowed, e.g. more stride-2 stages than the resized input has pixels for.
        """
        if not self.channels or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.channels):
            raise ConfigError("channels", self.channels, "one integer >= 1 per stage")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError("depth", self.depth, "an integer >= 1")
        if self.block not in BLOCKS:
            raise ConfigError("block", self.block, BLOCKS)
        if self.block == "inverted" and self.expansion is None:
            raise ConfigError("expansion", None, "an integer >= 1 for the inverted block")
        if self.block != "inverted" and self.expansion is not None:
            raise ConfigError(f"expansion of block {self.block}", self.expansion, "none (only inverted has one)")
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", self.activation, ACTIVATIONS)
        if self.norm not in NORMS:
            raise ConfigError("norm", self.norm, NORMS)
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")
        if not self.width > 0 or not self.resolution > 0:
            raise ConfigError("width" if not self.width > 0 else "resolution",
                              self.width if not self.width > 0 else self.resolution, "a number > 0")
        size = self.input_size(image_size)
        smallest = size // 2 ** (len(self.channels) - 1)
        if smallest < 1:
            raise ConfigError("channels", f"{len(self.channels)} stages for {size} x {size} inputs",
                              f"at most {size.bit_length()} stages (each after the first halves the resolution)")
        if self.kernel > 2 * smallest + 1:
            raise ConfigError("kernel", self.kernel, f"an odd size <= {2 * smallest + 1} (the last stage is "
                              f"{smallest} x {smallest})")

    def input_size(self, image_size: int) -> int:
        """The side length after the resolution multiplier (pixels)."""
        return max(1, int(round(image_size * self.resolution)))

    def stage_channels(self) -> tuple[int, ...]:
        """The channels of each stage after the width multiplier."""
        return tuple(scaled_channels(c, self.width) for c in self.channels)

    def describe(self) -> str:
        """A readable one-line description, e.g. ``inverted t=4 k3 [16x2, 32x2] relu6 batch w1 r1 drop0.1``."""
        blocks = f"{self.block} t={self.expansion}" if self.block == "inverted" else self.block
        stages = ", ".join(f"{c}x{self.depth}" for c in self.stage_channels())
        return (f"{blocks} k{self.kernel} [{stages}] {self.activation} {self.norm} w{self.width:g} "
                f"r{self.resolution:g} drop{self.dropout:g}")

    def _blocks(self, in_channels: int):
        """``(c_in, c_out, stride)`` of every block in order, after the stem."""
        c_prev = self.stage_channels()[0]
        for stage, c in enumerate(self.stage_channels()):
            for i in range(self.depth):
                yield c_prev, c, 2 if stage > 0 and i == 0 else 1
                c_prev = c

    def parameters(self, in_channels: int, classes: int) -> int:
        """The parameter count of :meth:`build` in closed form: stem + every block
        (:func:`~optbench.nas.blocks.block_parameters`) + classifier ``c_last * classes + classes``."""
        stem = conv_parameters(in_channels, self.stage_channels()[0], 3, self.norm)
        blocks = sum(block_parameters(self.block, a, b, kernel=self.kernel, stride=s, norm=self.norm,
                                      expansion=self.expansion) for a, b, s in self._blocks(in_channels))
        return stem + blocks + self.stage_channels()[-1] * classes + classes

    def build(self, in_channels: int, classes: int, image_size: int) -> nn.Module:
        """The network: ``(B, in_channels, image_size, image_size)`` -> logits ``(B, classes)``.

        Raises:
            ConfigError: from :meth:`check`.
        """
        self.check(image_size)
        return ImageNet(self, in_channels, classes, image_size)


class ImageNet(nn.Module):
    """The module :meth:`ImageArchitecture.build` returns."""

    def __init__(self, arch: ImageArchitecture, in_channels: int, classes: int, image_size: int) -> None:
        super().__init__()
        self.size = arch.input_size(image_size) if arch.resolution != 1 else None
        channels = arch.stage_channels()
        self.stem = conv_unit(in_channels, channels[0], 3, 1, arch.norm, arch.activation)
        self.blocks = nn.Sequential(*(make_block(arch.block, a, b, kernel=arch.kernel, stride=s, norm=arch.norm,
                                                 activation=arch.activation, expansion=arch.expansion)
                                      for a, b, s in arch._blocks(in_channels)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(arch.dropout),
                                  nn.Linear(channels[-1], classes))

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.head(self.blocks(self.stem(x)))


__all__ = ["ImageArchitecture", "ImageNet", "scaled_channels"]
