"""Network architectures of the task catalogue.

Every model maps a batch ``x`` of shape ``(B, *input_shape)`` to logits ``(B, classes)``.
"""

from __future__ import annotations

from torch import nn


def cnn3(in_channels: int = 1, classes: int = 10, image_size: int = 28, dropout: float = 0.5,
         channels: tuple[int, int, int] = (32, 64, 128)) -> nn.Sequential:
    """The reference 3-conv CNN: three blocks of 3x3 conv (padding 1) + ReLU + 2x2 max-pool,
    then dropout and a linear output layer.

    For 1x28x28 inputs the spatial size goes 28 -> 14 -> 7 -> 3, so the output layer sees
    128 * 3 * 3 = 1152 features; with (32, 64, 128) channels the net has 104,202 parameters
    (320 + 18,496 + 73,856 + 11,530).
    """
    layers: list[nn.Module] = []
    c_in, size = in_channels, image_size
    for c_out in channels:
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c_in, size = c_out, size // 2
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in * size * size, classes)]
    return nn.Sequential(*layers)


def mlp(in_features: int, hidden: tuple[int, ...], classes: int) -> nn.Sequential:
    """A ReLU multilayer perceptron ``in_features -> hidden... -> classes``; flattens its input.

    DeepOBS's ``mnist_mlp``/``fmnist_mlp`` use ``hidden=(1000, 500, 100)`` on 784 inputs:
    1,336,610 parameters.
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


class Conv1dNet(nn.Module):
    """The MNIST-1D convolutional baseline (Greydanus 2020, "Scaling down deep learning"):
    three 1-d convolutions (kernel 5/3/3, stride 2, padding 1, 25 channels, ReLU) and a linear
    layer. Input ``(B, 40)`` -> lengths 19 -> 10 -> 5 -> 125 features -> ``(B, 10)``; 5,210 parameters.
    """

    def __init__(self, length: int = 40, channels: int = 25, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )
        out_len = length
        for k in (5, 3, 3):
            out_len = (out_len + 2 - k) // 2 + 1
        self.head = nn.Linear(channels * out_len, classes)

    def forward(self, x):  # noqa: D102 - (B, L) -> (B, classes)
        h = self.features(x.unsqueeze(1))
        return self.head(h.flatten(1))
