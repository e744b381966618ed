"""Network architectures of the task catalogue.

Every model maps a batch ``x`` of shape ``(B, *input_shape)`` to logits ``(B, classes)``.
"""

from __future__ import annotations

from torch import Tensor, nn

from optbench.core.errors import ConfigError, require_positive


def _norm(kind: str, features: int, *, spatial: bool, spatial_dims: int = 2) -> list[nn.Module]:
    """The normalization layer after a conv/linear layer (empty for ``"none"``)."""
    from optbench.techniques import norm_layer

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

    def forward(self, x):
        h = self.features(x.unsqueeze(1))
        return self.head(h.flatten(1))


def logreg(in_features: int, classes: int) -> nn.Sequential:
    """Multinomial logistic regression: flatten, one linear layer ``in_features -> classes``.

    Weights and biases start at 0.0, as DeepOBS's ``net_mnist_logreg`` (fsschneider/DeepOBS,
    ``deepobs/pytorch/testproblems/testproblems_modules.py``): the objective is convex, so the
    start needs no symmetry breaking. Parameters: ``(in_features + 1) * classes`` (7,850 for MNIST).
    """
    layer = nn.Linear(in_features, classes)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return nn.Sequential(nn.Flatten(), layer)


def _truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """TensorFlow's ``truncated_normal``: N(0, std^2) redrawn outside +-2 std (DeepOBS's init)."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def net_2c2d(classes: int = 10, channels: tuple[int, int] = (32, 64), hidden: int = 1024,
             norm: str = "none", dropout: float = 0.0) -> nn.Sequential:
    """DeepOBS's 2c2d (``net_mnist_2c2d``, adapted from the TensorFlow CNN tutorial) for 1x28x28 inputs.

    Two blocks of 5x5 conv ('same' padding 2) [+ norm] + ReLU + 2x2 max-pool (28 -> 14 -> 7), then
    linear 7*7*64 -> 1024 [+ norm] + ReLU [+ dropout] and linear 1024 -> classes. Initialization as
    DeepOBS: truncated normal (std 0.05, cut at 2 std) weights, biases 0.05. With the defaults:
    3,274,634 parameters (832 + 51,264 + 3,212,288 + 10,250). No L2 in DeepOBS's definition.

    Raises:
        ConfigError: for a dropout outside [0, 1) or an unknown norm.
    """
    if not 0 <= dropout < 1:
        raise ConfigError("dropout", dropout, "a number in [0, 1)")
    c1, c2 = channels
    layers: list[nn.Module] = [
        nn.Conv2d(1, c1, 5, padding=2), *_norm(norm, c1, spatial=True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2), *_norm(norm, c2, spatial=True), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * c2, hidden), *_norm(norm, hidden, spatial=False), nn.ReLU(),
        *([nn.Dropout(dropout)] if dropout else []), nn.Linear(hidden, classes)]
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            _truncated_normal_(module.weight, 0.05)
            nn.init.constant_(module.bias, 0.05)
    return model


def net_3c3d(classes: int = 10, channels: tuple[int, int, int] = (64, 96, 128), hidden: tuple[int, int] = (512, 256),
             norm: str = "none", dropout: float = 0.0) -> nn.Sequential:
    """DeepOBS's 3c3d (``net_cifar10_3c3d``) for 3x32x32 inputs.

    conv 5x5 (no padding, 64) -> 28, conv 3x3 (no padding, 96) -> 12 (after the first pool),
    conv 3x3 ('same', 128); each [+ norm] + ReLU + 3x3 max-pool stride 2 with TensorFlow's 'same'
    padding (28 -> 14, 12 -> 6, 6 -> 3; done here with ``ceil_mode=True``, which pads bottom/right
    like TF, and equals DeepOBS's zero padding because the inputs are ReLU outputs >= 0); then
    linear 3*3*128 -> 512 -> 256 (ReLU [+ dropout]) -> classes. Initialization as DeepOBS: conv
    weights Xavier normal, linear weights Xavier uniform, biases 0. With the defaults: 895,210
    parameters for 10 classes (4,864 + 55,392 + 110,720 + 590,336 + 131,328 + 2,570), 918,340
    for 100. DeepOBS adds L2 0.002 on the weights (the task's ``l2``, not part of the model).

    Raises:
        ConfigError: for a dropout outside [0, 1) or an unknown norm.
    """
    if not 0 <= dropout < 1:
        raise ConfigError("dropout", dropout, "a number in [0, 1)")
    c1, c2, c3 = channels
    layers: list[nn.Module] = []
    for c_in, c_out, k, pad in ((3, c1, 5, 0), (c1, c2, 3, 0), (c2, c3, 3, 1)):
        layers += [nn.Conv2d(c_in, c_out, k, padding=pad), *_norm(norm, c_out, spatial=True), nn.ReLU(),
                   nn.MaxPool2d(3, stride=2, ceil_mode=True)]
    layers.append(nn.Flatten())
    width = 3 * 3 * c3
    for h in hidden:
        layers += [nn.Linear(width, h), *_norm(norm, h, spatial=False), nn.ReLU(),
                   *([nn.Dropout(dropout)] if dropout else [])]
        width = h
    layers.append(nn.Linear(width, classes))
    model = nn.Sequential(*layers)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model
