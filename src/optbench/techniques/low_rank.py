"""Low-rank factorization of Linear and Conv layers by truncated SVD (Denton et al. 2014,
"Exploiting linear structure within convolutional networks for efficient evaluation", sec. 3; Sainath
et al. 2013, "Low-rank matrix factorization for deep neural network training", sec. 3): a weight
``W`` of shape ``(m, n)`` (a convolution's ``(out, in * kh * kw)``) becomes ``B @ A`` with
``A = sqrt(S_k) Vh_k`` (``k x n``) and ``B = U_k sqrt(S_k)`` (``m x k``) from ``W = U S Vh``
(``torch.linalg.svd``), the best rank-``k`` approximation in Frobenius norm (Eckart-Young), and the
layer is replaced by two: ``Linear(n, k, bias=False) -> Linear(k, m)``, or for a convolution
``Conv(in, k, kernel, stride, padding, dilation, bias=False) -> Conv(k, out, 1)``. Parameters go
from ``m n`` to ``k (m + n)`` (plus the bias).

The rank is ``rank`` (clamped to ``min(m, n)``) or, with ``energy``, the smallest ``k`` with
``sum_{i<=k} s_i^2 >= energy * sum_i s_i^2``. It is done once, in ``prepare_model`` (before the
optimizer and any DDP wrapper exist, identically in every process), on the weights the run starts
from: the random initialization (the usual way to train a factorized network), or pre-trained
weights loaded by a component that comes before this one in the recipe. ``from_scratch=true``
instead initializes both factors afresh with PyTorch's default initialization, so the factorized
network is trained from random factors.

Layers: ``layers``, a regular expression matched in full (``re.fullmatch``) against module names
(``features.2``), or by default every Linear/Conv except the model's first and last; grouped
convolutions are never factorized; ``min_params`` skips layers with fewer weights. A pattern that
matches no layer is refused before any run (``check_task``, on the model built on the meta device).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import ModelContext, RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.model_measure import MeasuredModel
from optbench.techniques.pruning import PRUNABLE, _bool


def svd_rank(singular_values: Tensor, *, rank: int | None = None, energy: float | None = None) -> int:
    """The rank kept: ``min(rank, len(s))``, or the smallest ``k`` whose top-``k`` squared singular
    values hold at least ``energy`` of their sum (``s`` in descending order, as ``torch.linalg.svd``
    returns them).

    Raises:
        ValueError: neither or both of ``rank`` and ``energy``.
    """
    if (rank is None) == (energy is None):
        raise ValueError("give exactly one of rank and energy")
    if rank is not None:
        return min(rank, singular_values.numel())
    power = singular_values.double().pow(2)
    share = power.cumsum(0) / power.sum()
    return min(int((share < energy - 1e-12).sum()) + 1, singular_values.numel())


def factor_weight(weight: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``(A, B)`` with ``A`` of shape ``(k, n)`` and ``B`` of shape ``(m, k)`` such that ``B @ A`` is
    the best rank-``k`` approximation of ``weight`` viewed as ``(m, n)`` (SVD in float64, returned in
    ``weight``'s dtype); the singular values are split evenly between the factors."""
    matrix = weight.detach().reshape(weight.shape[0], -1).double()
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:k].sqrt()
    return (root[:, None] * vh[:k]).to(weight.dtype), (u[:, :k] * root).to(weight.dtype)


def factorize(layer: nn.Module, k: int, *, from_scratch: bool = False) -> nn.Sequential:
    """``layer`` (a Linear, or a Conv1d/2d/3d with ``groups=1``) as two layers through rank ``k``
    (see the module docstring); the bias stays on the second. With ``from_scratch`` the factors keep
    their default random initialization (the bias too).

    Raises:
        ValueError: an unsupported layer or ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"rank {k} < 1")
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        first = nn.Linear(layer.in_features, k, bias=False, **factory)
        second = nn.Linear(k, layer.out_features, bias=bias, **factory)
    elif isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d) and layer.groups == 1:
        kind = type(layer)
        first = kind(layer.in_channels, k, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                     dilation=layer.dilation, bias=False, padding_mode=layer.padding_mode, **factory)
        second = kind(k, layer.out_channels, 1, bias=bias, **factory)
    else:
        raise ValueError(f"cannot factorize {type(layer).__name__}")
    if not from_scratch:
        a, b = factor_weight(layer.weight, k)
        with torch.no_grad():
            first.weight.copy_(a.reshape(first.weight.shape))
            second.weight.copy_(b.reshape(second.weight.shape))
            if bias:
                second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def candidate_layers(model: nn.Module, pattern: str | None, min_params: int = 0) -> list[tuple[str, nn.Module]]:
    """The layers to factorize: Linear/Conv (``groups=1``) modules whose name matches ``pattern`` in
    full, or every one but the model's first and last Linear/Conv when ``pattern`` is None; only
    those with at least ``min_params`` weights."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if pattern is None:
        layers = layers[1:-1]
    else:
        regex = re.compile(pattern)
        layers = [(n, m) for n, m in layers if regex.fullmatch(n)]
    return [(n, m) for n, m in layers if getattr(m, "groups", 1) == 1 and m.weight.numel() >= min_params]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


class LowRank(MeasuredModel):
    """Replace Linear/Conv layers by two layers through a rank-``k`` bottleneck (truncated SVD of
    the starting weights, or random factors with ``from_scratch``); see the module docstring.

    Args:
        rank: the rank ``k`` (>= 1; clamped per layer to ``min(m, n)``), or None with ``energy``.
        energy: the fraction of the squared singular values to keep, in (0, 1], or None with ``rank``.
        from_scratch: random factors instead of the SVD of the starting weights.
        layers: a regular expression matched in full against module names; None: every Linear/Conv but
            the first and the last.
        min_params: skip layers with fewer weights (>= 0).

    Raises:
        ConfigError: neither or both of ``rank``/``energy``, a value out of range, a pattern that does
            not compile; in ``check_task`` (before any run) and at build, no layer to factorize.
    """

    name = "low_rank"
    family = "compression"
    source = "Denton et al. 2014, sec. 3; Sainath et al. 2013 (SVD low-rank factorization)"
    description = "Factorize Linear/Conv layers into two through rank k (SVD, or an energy fraction)."

    def __init__(self, *, rank: int | None = None, energy: float | None = None, from_scratch: bool = False,
                 layers: str | None = None, min_params: int = 0) -> None:
        super().__init__()
        if (rank is None) == (energy is None):
            raise ConfigError("low_rank rank/energy", {"rank": rank, "energy": energy},
                              "exactly one of rank (an integer >= 1) and energy (a number in (0, 1])")
        self.rank = None if rank is None else _validate.integer("low_rank rank", rank, low=1)
        self.energy = None if energy is None else _validate.number("low_rank energy", energy, low=0.0, high=1.0,
                                                                   low_open=True)
        self.from_scratch = _bool("low_rank from_scratch", from_scratch)
        if layers is not None:
            layers = str(layers)  # "layers=4" arrives as the integer 4
            try:
                re.compile(layers)
            except re.error as exc:
                raise ConfigError("low_rank layers", layers, f"a regular expression ({exc})") from None
        self.layers = layers
        self.min_params = _validate.integer("low_rank min_params", min_params, low=0)
        self.ranks: dict[str, int] = {}
        self.original_params = 0
        self.factored_params = 0

    def _selected(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        chosen = candidate_layers(model, self.layers, self.min_params)
        if not chosen:
            names = [n for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
            raise ConfigError("low_rank layers", self.layers if self.layers is not None else "(default)",
                              f"a pattern matching (in full) Linear/Conv layers with >= {self.min_params} weights "
                              f"of this model: {', '.join(names) or 'none'}"
                              + ("" if self.layers is not None else " (the default skips the first and last)"))
        return chosen

    def check_task(self, task: Any) -> None:
        try:
            with torch.device("meta"):
                model = task.make_model()
        except Exception:  # a model that cannot be built on the meta device is checked at build
            return
        self._selected(model)

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        self.ranks, self.original_params, self.factored_params = {}, 0, 0
        for name, layer in self._selected(model):
            matrix = layer.weight.detach().reshape(layer.weight.shape[0], -1)
            k = min(self.rank, *matrix.shape) if self.rank is not None else \
                svd_rank(torch.linalg.svdvals(matrix.double()), energy=self.energy)
            m, n = layer.weight.shape[0], layer.weight[0].numel()
            self.ranks[name] = k
            self.original_params += m * n
            self.factored_params += k * (m + n)
            _set(model, name, factorize(layer, k, from_scratch=self.from_scratch))
        return model

    def setup(self, run: RunContext) -> None:
        self.capture_example(run.model)

    def metrics(self) -> dict[str, float]:
        """``low_rank_params``: weights of the factorized layers, ``sum k (m + n)``;
        ``low_rank_param_ratio``: that over their dense ``sum m n``."""
        return {"low_rank_params": float(self.factored_params),
                "low_rank_param_ratio": self.factored_params / self.original_params if self.original_params else 1.0}

    def state_dict(self) -> dict[str, Any]:
        return self.example_state()

    def load_state_dict(self, state: Any) -> None:
        self.load_example_state(state)


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (LowRank,)

__all__ = ["COMPONENTS", "LowRank", "candidate_layers", "factor_weight", "factorize", "svd_rank"]
