"""Measuring the trained model (docs/architecture.md, "The component contract"): the shared way a
component asks the run to record ``environment["model_cost"]`` (parameters, nonzero parameters,
serialized bytes, forward FLOPs, inference latency; :func:`optbench.engine.model_cost.measure_model`)
and the ``model_cost`` technique that asks it for a model no compression method touched, so that the
dense baseline of a compression comparison sits on the same accuracy-size and accuracy-latency
planes as the compressed models.

A measuring component declares ``measures_model = True``, holds ``example_input`` (one row of the
task's inputs, captured by a forward pre-hook on the first batch the model sees: the measurement
needs the input shape, which a component never gets otherwise) and answers ``model_to_measure``
(the trained module by default; structured pruning gives its physically shrunk copy, the int8
techniques their converted model). :meth:`optbench.engine.build.RunSetup.records` calls them at the
end of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from optbench.core.component import Component, RunContext


def capture_hook(component: Any):
    """A forward pre-hook storing the first input example the model sees (one row, detached) in
    ``component.example_input``, then removing itself (``component._hook``). A plain function, not a
    bound method, so a deep copy of the model (EMA, SWA) does not copy the component."""
    def hook(module: nn.Module, args: tuple) -> None:
        if component.example_input is None and args and isinstance(args[0], Tensor):
            component.example_input = args[0][:1].detach().clone()
            if component._hook is not None:
                component._hook.remove()
                component._hook = None
    return hook


class MeasuredModel(Component):
    """Base of the components whose runs record the trained model's cost: the example input (captured
    on the first forward pass, kept in the component's checkpoint state) and ``model_to_measure``."""

    #: the run records ``environment["model_cost"]`` (:mod:`optbench.engine.model_cost`)
    measures_model: ClassVar[bool] = True

    def __init__(self) -> None:
        self.example_input: Tensor | None = None
        self._hook: Any = None

    def capture_example(self, model: nn.Module) -> None:
        """Register the hook that keeps the first input row ``model`` sees (once)."""
        if self._hook is None and self.example_input is None:
            self._hook = model.register_forward_pre_hook(capture_hook(self))

    def model_to_measure(self, model: nn.Module) -> nn.Module:
        """The module whose cost the run records (the trained one here)."""
        return model

    def example_state(self) -> dict[str, Any]:
        """The captured example for the checkpoint (empty before the first forward pass)."""
        return {} if self.example_input is None else {"example_input": self.example_input}

    def load_example_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`example_state`'s example (a resumed run measures the same input shape)."""
        if "example_input" in state:
            self.example_input = state["example_input"]


class ModelCost(MeasuredModel):
    """Record the trained model's parameters, nonzero parameters, serialized bytes, forward FLOPs
    (``torch.utils.flop_counter``) and median inference latency at batch 1 and 256, without changing
    training: the uncompressed baseline of a compression comparison (every compression technique
    records the same figures for its own model).

    No parameters; runs in every engine (the measurement is rank 0's trained model, on its device).
    """

    name = "model_cost"
    family = "measurement"
    source = "torch.utils.flop_counter.FlopCounterMode; median of timed forward passes after warm-up"
    description = "Record the trained model's parameters, bytes, FLOPs and latency (a compression baseline)."

    def setup(self, run: RunContext) -> None:
        self.capture_example(run.model)

    def state_dict(self) -> dict[str, Any]:
        return self.example_state()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_example_state(state)


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (ModelCost,)

__all__ = ["COMPONENTS", "MeasuredModel", "ModelCost", "capture_hook"]
