"""A user's ``LightningModule`` as an optbench task (docs/architecture.md, "Models from the libraries people use").

:func:`lightning_task` takes a factory of the user's ``lightning.LightningModule`` and the task's data and
returns a :class:`~optbench.core.spec.Task` whose

* model is the module (its ``forward``),
* loss is what the module's own ``training_step((x, y), batch_idx)`` returns (a tensor, or a dict with
  ``"loss"``), computed on the output optbench's step already has: while ``training_step`` runs, the
  module's ``forward`` returns that output for the same ``x`` instead of running again, so a step costs
  one forward pass as in any other task,
* metrics are the loss (``training_step``'s batch mean x the batch size) and, for class logits ``(B, C)``
  with integer targets, accuracy.

What the comparison needs and Lightning would otherwise decide is optbench's: the optimizer and the
learning-rate schedule are the recipe's (``configure_optimizers`` is not called, so that every method is
compared on the same module), and data order, precision, gradient clipping and accumulation are the
recipe's too. Lightning's other hooks (``on_train_epoch_end``, ``validation_step``, callbacks, the
``Trainer``) are not called and ``self.log`` records nothing; a module with manual optimization
(``automatic_optimization = False``) has its own update rule and is refused, as is a ``training_step``
that returns None (a skipped batch). ``batch_idx`` is always 0. A recipe whose technique changes the
objective (label smoothing, a loss term) makes the harness recompute the training loss metric from the
epoch's outputs, which ``training_step`` cannot do: such a run fails with a one-line error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from torch import Tensor, nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Direction, Metric, Target, Task

#: Attribute names set on the output tensor of :class:`LightningModel` (the batch it came from).
_INPUT, _MODULE = "_optbench_lightning_input", "_optbench_lightning_module"


class LightningModel(nn.Module):
    """The user's module as optbench's model: ``forward(x)`` is ``module(x)``; the output remembers ``x`` and
    the module so that the task's loss can call ``module.training_step`` on it.

    Raises:
        ConfigError: for an object that is not a ``LightningModule`` or one with manual optimization.
    """

    def __init__(self, module: nn.Module) -> None:
        import lightning

        if not isinstance(module, lightning.LightningModule):
            raise ConfigError("lightning module", type(module).__name__, "a lightning.LightningModule")
        if not module.automatic_optimization:
            raise ConfigError("lightning module automatic_optimization", False,
                              "True (manual optimization is the module's own update rule, not the recipe's)")
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        output = self.module(x)
        if not isinstance(output, Tensor):
            raise ConfigError("lightning module forward", type(output).__name__, "a tensor (B, ...)")
        setattr(output, _INPUT, x)
        setattr(output, _MODULE, self.module)
        return output


def lightning_loss(output: Tensor, y: Tensor) -> Tensor:
    """The batch-mean loss of the module's ``training_step((x, y), 0)`` for the batch ``output`` came from,
    with the module's ``forward`` answering ``output`` for that ``x`` (no second forward pass).

    Raises:
        ConfigError: when ``output`` did not come from a :class:`LightningModel`, or ``training_step``
            returns neither a 0-d tensor nor a dict with one under ``"loss"``.
    """
    x, module = getattr(output, _INPUT, None), getattr(output, _MODULE, None)
    if x is None or module is None:
        raise ConfigError("lightning loss", "an output not produced by LightningModel", "the task's own model output")
    real_forward = module.forward

    def forward(inputs: Tensor, *args, **kwargs) -> Tensor:
        return output if inputs is x and not args and not kwargs else real_forward(inputs, *args, **kwargs)

    module.forward = forward  # an instance attribute for this call only: nn.Module.__call__ finds it
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer: logging is a no-op
            returned = module.training_step((x, y), 0)
    finally:
        del module.forward
    loss = returned.get("loss") if isinstance(returned, dict) else returned
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise ConfigError("lightning training_step", type(returned).__name__,
                          "a 0-d loss tensor or a dict with one under 'loss'")
    return loss


def _loss_sum(output: Tensor, y: Tensor) -> Tensor:
    return lightning_loss(output, y).detach() * output.shape[0]


def _correct(output: Tensor, y: Tensor) -> Tensor:
    return (output.argmax(dim=1) == y).sum()


def lightning_task(name: str, make_module: Callable[[], nn.Module], load_data: Callable[[], Dataset], *,
                   valid_size: int, classification: bool = True, target_accuracy: float = 0.9,
                   recipe: dict | None = None, description: str = "") -> Task:
    """A task whose model and loss are a user's ``LightningModule`` (see the module docstring for what is the
    module's and what is the recipe's).

    Args:
        name: the task's name in the store.
        make_module: ``() -> LightningModule``, called after the harness seeded the RNG.
        load_data: ``() -> Dataset`` (in-memory or streamed splits).
        valid_size: examples carved from the training pool for validation.
        classification: the output is class logits ``(B, C)`` and targets class indices: accuracy is measured
            and the target is ``valid accuracy >= target_accuracy``; else only the loss (target: valid loss
            below ``+inf``, i.e. time-to-target is not defined).
        recipe: the task's default recipe (optimizer, hyperparameters, batch size, epochs).

    Raises:
        ConfigError: when ``lightning`` is not installed (``pip install optbench[lightning]``).
    """
    try:
        import lightning  # noqa: F401 - checked here, used by LightningModel
    except ImportError as exc:
        raise ConfigError("lightning task", name, "an installed lightning package (pip install "
                          "optbench[lightning])") from exc
    metrics = [Metric("loss", Direction.MINIMIZE, _loss_sum)]
    target = Target("valid", "loss", float("inf"))
    if classification:
        metrics.append(Metric("accuracy", Direction.MAXIMIZE, _correct))
        target = Target("valid", "accuracy", target_accuracy)
    return Task(name=name, description=description or f"LightningModule {name}",
                make_model=lambda: LightningModel(make_module()), load_data=load_data, loss=lightning_loss,
                metrics=tuple(metrics), target=target, valid_size=valid_size, recipe=recipe or {})


__all__ = ["LightningModel", "lightning_loss", "lightning_task"]

