"""2:4 semi-structured sparsity (NVIDIA's fine-grained structured sparsity, Mishra et al. 2021,
"Accelerating sparse deep neural networks", sec. 3: in every group of 4 consecutive weights along the
input dimension at most 2 are nonzero, which Ampere (SM80) and later tensor cores run at up to twice
the dense speed), trained from scratch (Zhou et al. 2021, "Learning N:M fine-grained structured
sparse neural networks from scratch", who train N:M sparse from the initialization) with an optional
"sparse first, dense later" schedule: the masks hold for the first ``dense_after`` fraction of the
optimizer steps and are then dropped, the pruned weights regrowing from 0 (the reverse of
Han et al. 2017's dense-sparse-dense training; ``dense_after=0.7`` is the schedule the project's
survey names, ``1.0`` keeps the model 2:4 sparse to the end).

The masks are computed once, at initialization (in ``setup``, on the weights the run starts from,
e.g. after a pre-trained model was loaded by an earlier component), keeping the 2 largest-magnitude
weights of each group of 4; they are explicit boolean masks applied to the gradients after backward
and to the weights after every step, for the reasons given in :mod:`optbench.techniques.pruning`
(optimizer state would regrow pruned weights; masks must survive checkpoints and the parameter
server). Layers: every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` (``groups=1``) whose input dimension
(``in_features``, or ``in_channels * prod(kernel_size)`` for a convolution, the weight flattened to
``out x in*k*k``) is a multiple of 4, the output layer only with ``include_last=true``.

Training here is always a simulation with masks (dense kernels on zeros): the component records
``metrics()["sparse_2_4_simulated"] = 1.0``. For the end-of-run model cost on a CUDA device of
compute capability 8.0 or more, :meth:`Sparse24.model_to_measure` converts the eligible Linear
weights with ``torch.sparse.to_sparse_semi_structured`` (each layer that the kernel refuses stays
dense), so the recorded latency is that of the real sparse kernels; on CPU the dense masked model is
measured and its ``nonzero_parameters`` shows the sparsity.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.pruning import PRUNABLE, MaskedComponent, _bool

GROUP, KEEP = 4, 2


def mask_2_4(weight: Tensor) -> Tensor:
    """Boolean mask of ``weight``'s shape keeping the 2 largest ``|w|`` of every 4 consecutive
    entries along the input dimension (``weight`` viewed as ``(out, in * prod(kernel))``; ties by
    ``torch.topk``'s order). Exactly 2 entries of every group are True.

    Raises:
        ValueError: an input dimension that is not a multiple of 4.
    """
    flat = weight.detach().reshape(weight.shape[0], -1)
    if flat.shape[1] % GROUP:
        raise ValueError(f"input dimension {flat.shape[1]} is not a multiple of {GROUP}")
    groups = flat.abs().reshape(flat.shape[0], -1, GROUP)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=weight.device)
    keep.scatter_(-1, groups.topk(KEEP, dim=-1).indices, True)
    return keep.reshape(weight.shape)


def eligible_layers(model: nn.Module, *, include_last: bool) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of the Linear/Conv layers (``groups=1``) whose flattened input dimension is
    a multiple of 4, in module order; the model's last Linear/Conv only with ``include_last``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not include_last:
        layers = layers[:-1]
    return [(n, m) for n, m in layers
            if getattr(m, "groups", 1) == 1 and m.weight[0].numel() % GROUP == 0]


def _structure(task: Any) -> nn.Module:
    """The task's model built without allocating or drawing weights (meta device)."""
    with torch.device("meta"):
        return task.make_model()


class Sparse24(MaskedComponent):
    """2:4 semi-structured sparsity from initialization, optionally dense after a fraction of the
    steps (see the module docstring).

    Args:
        dense_after: fraction of the run's optimizer steps trained 2:4 sparse, in (0, 1]; 1.0: sparse
            to the end.
        include_last: also sparsify the output layer.

    Raises:
        ConfigError: ``dense_after`` outside (0, 1]; for a task whose model has no eligible layer
            (``check_task``, and at setup).
    """

    name = "sparse_2_4"
    source = "Mishra et al. 2021, sec. 3 (2:4 sparsity); Zhou et al. 2021 (N:M from scratch)"
    description = "Keep the 2 largest of every 4 consecutive input weights (masks from init; dense after a fraction)."

    def __init__(self, *, dense_after: float = 1.0, include_last: bool = False) -> None:
        super().__init__()
        self.dense_after = _validate.number("sparse_2_4 dense_after", dense_after, low=0.0, high=1.0, low_open=True)
        self.include_last = _bool("sparse_2_4 include_last", include_last)
        self.dense_step: int | None = None
        self._device = torch.device("cpu")

    def _refuse(self, model: nn.Module) -> None:
        if not eligible_layers(model, include_last=self.include_last):
            hint = " (include_last=true: its output layer is one)" if eligible_layers(model, include_last=True) else ""
            raise ConfigError("sparse_2_4 for this model", "no eligible layer",
                              "a model with a Linear/Conv layer whose input dimension is a multiple of 4" + hint)

    def check_task(self, task: Any) -> None:
        try:
            model = _structure(task)
        except Exception:  # a model that cannot be built on the meta device is checked at setup
            return
        self._refuse(model)

    def setup(self, run: RunContext) -> None:
        self._refuse(run.model)
        layers = eligible_layers(run.model, include_last=self.include_last)
        self._bind(run, layers)
        self._device = run.device
        self.masks = {f"{n}.weight": mask_2_4(m.weight) for n, m in layers}
        self.dense_step = None if self.dense_after >= 1.0 else round(self.dense_after * run.total_steps)
        if self.dense_step == 0:
            self.masks = {}
        self.apply_masks()

    def after_step(self) -> None:
        self.t += 1
        if self.t == self.dense_step:
            self.masks = {}  # sparse first, dense later
        self.apply_masks()

    def metrics(self) -> dict[str, float]:
        return super().metrics() | {"sparse_2_4_active": float(bool(self.masks)), "sparse_2_4_simulated": 1.0}

    def model_to_measure(self, model: nn.Module) -> nn.Module:
        """A copy with the 2:4 Linear weights in ``torch.sparse`` semi-structured form on a CUDA device
        of compute capability >= 8.0 while the masks hold (half precision, as the kernels require),
        else ``model``; also ``model`` when no layer converts or the copy fails a forward pass on
        batches of 1 and 256 built from the example input (shape limits of the sparse kernels).
        Untested on a GPU in this project's CI (CPU only)."""
        if not self.masks or self.example_input is None or self._device.type != "cuda" \
                or torch.cuda.get_device_capability(self._device) < (8, 0):
            return model
        from torch.sparse import to_sparse_semi_structured

        sparse = copy.deepcopy(model).half().eval()
        converted = 0
        for name, module in sparse.named_modules():
            if isinstance(module, nn.Linear) and f"{name}.weight" in self.masks:
                try:
                    module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()),
                                                 requires_grad=False)
                    converted += 1
                except Exception:  # noqa: BLE001 - a shape or dtype the kernels refuse: the layer stays dense
                    continue
        if not converted:
            return model
        row = self.example_input[:1].to(self._device)
        row = row.half() if row.is_floating_point() else row
        try:
            with torch.inference_mode():
                for size in (1, 256):
                    sparse(row.expand(size, *row.shape[1:]).contiguous())
        except Exception:  # noqa: BLE001 - the sparse kernels refuse this model's shapes: measure it dense
            return model
        return sparse

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"dense_step": self.dense_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.dense_step = state["dense_step"]


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (Sparse24,)

__all__ = ["COMPONENTS", "GROUP", "KEEP", "Sparse24", "eligible_layers", "mask_2_4"]
