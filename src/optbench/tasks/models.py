"""Network architectures of the task catalogue.

Every model maps a batch ``x`` of shape ``(B, *input_shape)`` to logits ``(B, classes)``.
"""

from __future__ import annotations

from torch import nn

from optbench.errors import ConfigError, require_positive


def _norm(kind: str, features: int, *, spatial: bool, spatial_dims: int = 2) -> list[nn.Module]:
    """The normalization layer after a conv/linear layer (empty for ``"none"``)."""
    from optbench.regularization import norm_layer

    return [] if kind == "none" else [norm_layer(kind, features, spatial=spatial, spatial_dims=spatial_dims)]


def scaled(width: float, channels: tuple[int, ...]) -> tuple[int, ...]:
    """``channels`` multiplied by the width multiplier (at least 1 each).

    Raises:
        ConfigError: for a width <= 0.
    """
    require_positive("width", width)
    return tuple(max(1, round(c * width)) for c in channels)


def cnn3(in_channels: int = 1, classes: int = 10, image_size: int = 28, dropout: float = 0.5,
         channels: tuple[int, int, int] = (32, 64, 128), norm: str = "none") -> nn.Sequential:
    """The reference 3-conv CNN: three blocks of 3x3 conv (padding 1) [+ norm] + ReLU + 2x2
    max-pool, then dropout and a linear output layer.

    For 1x28x28 inputs the spatial size goes 28 -> 14 -> 7 -> 3, so the output layer sees
    128 * 3 * 3 = 1152 features; with (32, 64, 128) channels and no normalization the net has
    104,202 parameters (320 + 18,496 + 73,856 + 11,530).

    Raises:
        ConfigError: for a dropout outside [0, 1) or an unknown norm.
    """
    if not 0 <= dropout < 1:
        raise ConfigError("dropout", dropout, "a number in [0, 1)")
    layers: list[nn.Module] = []
    c_in, size = in_channels, image_size
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), *_norm(norm, c_out, spatial=True),
                   nn.ReLU(), nn.MaxPool2d(2)]
        c_in, size = c_out, size // 2
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * size * size, classes)]
    return nn.Sequential(*layers)


def mlp(in_features: int, hidden: tuple[int, ...], classes: int, norm: str = "none",
        dropout: float = 0.0) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_features -> hidden... -> classes`` [+ norm after each
    hidden linear layer, dropout after each hidden activation]; flattens its input.

    DeepOBS's ``mnist_mlp``/``fmnist_mlp`` use ``hidden=(1000, 500, 100)`` on 784 inputs:
    1,336,610 parameters.
    """
    if not 0 <= dropout < 1:
        raise ConfigError("dropout", dropout, "a number in [0, 1)")
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), *_norm(norm, h, spatial=False), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


class Conv1dNet(nn.Module):
    """The MNIST-1D convolutional baseline (Greydanus 2020, "Scaling down deep learning"):
    three 1-d convolutions (kernel 5/3/3, stride 2, padding 1, 25 channels, ReLU) and a linear
    layer. Input ``(B, 40)`` -> lengths 19 -> 10 -> 5 -> 125 features -> ``(B, 10)``; 5,210 parameters.
    """

    def __init__(self, length: int = 40, channels: int = 25, classes: int = 10, norm: str = "none") -> None:
        super().__init__()

        def block(c_in: int, k: int) -> list[nn.Module]:
            return [nn.Conv1d(c_in, channels, k, stride=2, padding=1),
                    *_norm(norm, channels, spatial=True, spatial_dims=1), nn.ReLU()]

        self.features = nn.Sequential(*block(1, 5), *block(channels, 3), *block(channels, 3))
        out_len = length
        for k in (5, 3, 3):
            out_len = (out_len + 2 - k) // 2 + 1
        self.head = nn.Linear(channels * out_len, classes)

    def forward(self, x):  # noqa: D102 - (B, L) -> (B, classes)
        h = self.features(x.unsqueeze(1))
        return self.head(h.flatten(1))
