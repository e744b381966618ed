"""The building blocks of the image architecture space (docs/architecture.md, "Architecture search").

Every block maps ``(B, c_in, H, W)`` to ``(B, c_out, H / stride, W / stride)`` and has a closed-form
parameter count (:func:`block_parameters`), which the tests check against the built module:

* ``plain`` — ``k x k`` convolution + norm + activation (VGG-style; Simonyan & Zisserman 2015).
* ``separable`` — depthwise ``k x k`` convolution + norm + activation, then pointwise ``1 x 1`` + norm +
  activation (Howard et al., MobileNets, 2017).
* ``inverted`` — MobileNetV2's inverted residual (Sandler et al. 2018): ``1 x 1`` expansion to
  ``t c_in`` channels + norm + activation, depthwise ``k x k`` + norm + activation, linear ``1 x 1``
  projection + norm; the input is added when ``stride == 1`` and ``c_in == c_out``. ``t`` (the expansion
  ratio) exists only for this block.
* ``residual`` — ResNet's basic block (He et al. 2016): two ``k x k`` convolutions with norm, activation
  after the first and after the sum; the shortcut is the identity, or ``1 x 1`` convolution + norm when
  the shape changes.

Convolutions have a bias only without normalization (a norm's shift makes it redundant); batch norm has 2
parameters per channel.
"""

from __future__ import annotations

from torch import Tensor, nn

from optbench.core.errors import ConfigError

BLOCKS = ("plain", "separable", "inverted", "residual")
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "gelu": nn.GELU}
NORMS = ("none", "batch")


def _norm(norm: str, channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels)] if norm == "batch" else []


def _act(activation: str) -> nn.Module:
    return ACTIVATIONS[activation]()


def conv_unit(c_in: int, c_out: int, kernel: int, stride: int, norm: str, activation: str | None,
              groups: int = 1) -> nn.Sequential:
    """Convolution (padding ``kernel // 2``; bias only without norm) + norm + activation (None: none)."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups,
                                         bias=norm == "none"), *_norm(norm, c_out)]
    if activation is not None:
        layers.append(_act(activation))
    return nn.Sequential(*layers)


def conv_parameters(c_in: int, c_out: int, kernel: int, norm: str, groups: int = 1) -> int:
    """Parameters of :func:`conv_unit`: ``k^2 c_in c_out / groups`` (+ ``c_out`` bias without norm, + ``2 c_out``
    with batch norm)."""
    return kernel * kernel * c_in * c_out // groups + (c_out if norm == "none" else 2 * c_out)


class InvertedResidual(nn.Module):
    """MobileNetV2's block (see the module docstring); ``expansion`` t >= 1 (t = 1 skips the expansion
    convolution, as in MobileNetV2's first block)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, activation: str,
                 expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [conv_unit(c_in, hidden, 1, 1, norm, activation)]
        layers += [conv_unit(hidden, hidden, kernel, stride, norm, activation, groups=hidden),
                   conv_unit(hidden, c_out, 1, 1, norm, None)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class BasicResidual(nn.Module):
    """ResNet's basic block (see the module docstring)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, norm: str, activation: str) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_unit(c_in, c_out, kernel, stride, norm, activation),
                                  conv_unit(c_out, c_out, kernel, 1, norm, None))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else conv_unit(c_in, c_out, 1, stride, norm,
                                                                                       None)
        self.act = _act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def make_block(kind: str, c_in: int, c_out: int, *, kernel: int, stride: int, norm: str, activation: str,
               expansion: int | None = None) -> nn.Module:
    """One block of ``kind`` (:data:`BLOCKS`).

    Raises:
        ConfigError: an unknown block, activation or norm; an even or < 1 kernel; a stride not 1 or 2;
            ``expansion`` missing (or < 1) for ``inverted`` or given for another block.
    """
    if kind not in BLOCKS:
        raise ConfigError("block", kind, BLOCKS)
    if activation not in ACTIVATIONS:
        raise ConfigError("activation", activation, ACTIVATIONS)
    if norm not in NORMS:
        raise ConfigError("norm", norm, NORMS)
    if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError("kernel", kernel, "an odd integer >= 1")
    if stride not in (1, 2):
        raise ConfigError("stride", stride, "1, 2")
    if kind == "inverted":
        if isinstance(expansion, bool) or not isinstance(expansion, int) or expansion < 1:
            raise ConfigError("expansion", expansion, "an integer >= 1 (the inverted residual's ratio)")
        return InvertedResidual(c_in, c_out, kernel, stride, norm, activation, expansion)
    if expansion is not None:
        raise ConfigError(f"expansion of block {kind}", expansion, "none (only the inverted block has one)")
    if kind == "plain":
        return conv_unit(c_in, c_out, kernel, stride, norm, activation)
    if kind == "separable":
        return nn.Sequential(conv_unit(c_in, c_in, kernel, stride, norm, activation, groups=c_in),
                             conv_unit(c_in, c_out, 1, 1, norm, activation))
    return BasicResidual(c_in, c_out, kernel, stride, norm, activation)


def block_parameters(kind: str, c_in: int, c_out: int, *, kernel: int, stride: int, norm: str,
                     expansion: int | None = None) -> int:
    """The parameter count of :func:`make_block` in closed form (see the module docstring)."""
    if kind == "plain":
        return conv_parameters(c_in, c_out, kernel, norm)
    if kind == "separable":
        return conv_parameters(c_in, c_in, kernel, norm, groups=c_in) + conv_parameters(c_in, c_out, 1, norm)
    if kind == "inverted":
        t = int(expansion or 1)
        hidden = c_in * t
        expand = 0 if t == 1 else conv_parameters(c_in, hidden, 1, norm)
        return expand + conv_parameters(hidden, hidden, kernel, norm, groups=hidden) \
            + conv_parameters(hidden, c_out, 1, norm)
    shortcut = 0 if stride == 1 and c_in == c_out else conv_parameters(c_in, c_out, 1, norm)
    return conv_parameters(c_in, c_out, kernel, norm) + conv_parameters(c_out, c_out, kernel, norm) + shortcut


__all__ = ["ACTIVATIONS", "BLOCKS", "NORMS", "BasicResidual", "InvertedResidual", "block_parameters",
           "conv_parameters", "conv_unit", "make_block"]
