"""A sequence classifier from a point of the architecture space (docs/architecture.md, "Architecture search").

Input ``(B, L)`` (one scalar per step) or ``(B, L, F)`` -> ``layers`` cells of ``width`` units -> the last
step's state -> dropout -> linear -> logits ``(B, classes)``. Cells:

* ``lstm`` (Hochreiter & Schmidhuber 1997), ``gru`` (Cho et al. 2014): PyTorch's, stacked; layer ``i`` has
  ``g h (in_i + h) + 2 g h`` parameters (``g`` = 4 gates for LSTM, 3 for GRU; PyTorch keeps two bias
  vectors), ``in_0 = F``, ``in_i = h`` after.
* ``transformer`` (Vaswani et al. 2017): a linear embedding ``F -> h`` (``F h + h``), learned positional
  embeddings (``L h``) and pre-norm encoder layers (``nn.TransformerEncoderLayer``, feed-forward ``4 h``,
  ``heads`` heads): ``12 h^2 + 13 h`` each. ``heads`` exists only for this cell and must divide ``h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from optbench.core.errors import ConfigError

CELLS = ("lstm", "gru", "transformer")
_GATES = {"lstm": 4, "gru": 3}


@dataclass(frozen=True)
class SequenceArchitecture:
    """One point of the sequence space: ``cell`` (:data:`CELLS`), ``layers`` (>= 1), ``width`` h (>= 1),
    ``heads`` (transformer only; None otherwise), ``dropout`` before the classifier in [0, 1)."""

    cell: str = "gru"
    layers: int = 1
    width: int = 64
    heads: int | None = None
    dropout: float = 0.0

    def check(self) -> None:
        """Raise when the point cannot be realized.

        Raises:
            ConfigError: naming the key (``cell``, ``layers``, ``width``, ``heads``, ``dropout``)."""
        if self.cell not in CELLS:
            raise ConfigError("cell", self.cell, CELLS)
        for key in ("layers", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(key, value, "an integer >= 1")
        if self.cell == "transformer":
            if isinstance(self.heads, bool) or not isinstance(self.heads, int) or self.heads < 1 \
                    or self.width % self.heads:
                raise ConfigError("heads", self.heads, f"a divisor of width {self.width} (the transformer's heads)")
        elif self.heads is not None:
            raise ConfigError(f"heads of cell {self.cell}", self.heads, "none (only the transformer has heads)")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout", self.dropout, "a number in [0, 1)")

    def describe(self) -> str:
        """A one-line description, e.g. ``transformer 2x64 heads 4 drop0.1``."""
        heads = f" heads {self.heads}" if self.cell == "transformer" else ""
        return f"{self.cell} {self.layers}x{self.width}{heads} drop{self.dropout:g}"

    def parameters(self, features: int, length: int, classes: int) -> int:
        """The parameter count of :meth:`build` in closed form (see the module docstring)."""
        h = self.width
        head = h * classes + classes
        if self.cell == "transformer":
            return features * h + h + length * h + self.layers * (12 * h * h + 13 * h) + head
        g = _GATES[self.cell]
        cells = sum(g * h * ((features if i == 0 else h) + h) + 2 * g * h for i in range(self.layers))
        return cells + head

    def build(self, features: int, length: int, classes: int) -> nn.Module:
        """The classifier for sequences of ``length`` steps of ``features`` values.

        Raises:
            ConfigError: from :meth:`check`."""
        self.check()
        return SequenceNet(self, features, length, classes)


class SequenceNet(nn.Module):
    """The module :meth:`SequenceArchitecture.build` returns."""

    def __init__(self, arch: SequenceArchitecture, features: int, length: int, classes: int) -> None:
        super().__init__()
        self.cell = arch.cell
        h = arch.width
        if arch.cell == "transformer":
            self.embed = nn.Linear(features, h)
            self.position = nn.Parameter(torch.zeros(length, h))
            nn.init.normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(h, arch.heads, dim_feedforward=4 * h, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.body = nn.TransformerEncoder(layer, arch.layers, enable_nested_tensor=False)
        else:
            rnn = nn.LSTM if arch.cell == "lstm" else nn.GRU
            self.body = rnn(features, h, num_layers=arch.layers, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(arch.dropout), nn.Linear(h, classes))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        if self.cell == "transformer":
            out = self.body(self.embed(x) + self.position[: x.shape[1]])
        else:
            out, _ = self.body(x)
        return self.head(out[:, -1])


__all__ = ["CELLS", "SequenceArchitecture", "SequenceNet"]
