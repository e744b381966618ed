"""Continual learning: keep what earlier tasks taught while training on a new one.

* ``ewc`` — Elastic Weight Consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting
  in neural networks", PNAS, eq. 3): the penalty ``lambda / 2 * sum_i F_i (theta_i - theta*_i)^2``
  with ``theta*`` the final weights of the run that learned the earlier task (stored with
  ``--save-weights``) and ``F`` the diagonal of the Fisher information of that model on that task's
  training inputs, computed when the run is built (:func:`fisher_diagonal`): the mean over ``samples``
  examples of squared per-example gradients of ``log p(y | x)``, ``y`` drawn from the model's own
  prediction (``fisher="sampled"``, the Fisher of the paper) or the true label
  (``fisher="empirical"``). Several earlier tasks: one ``ewc`` per task (the paper's sum of
  penalties, sec. "Results" for more than two tasks).
* ``lwf`` — Learning without Forgetting (Li & Hoiem 2017, IEEE TPAMI, sec. 3, eq. 2-4): the
  distillation term ``alpha * mean_batch(-sum_c softmax(t / T)_c log softmax(s / T)_c)`` between the
  outputs ``t`` of the stored earlier model (the *teacher*, frozen, eval mode) and the outputs ``s`` of
  the trained model on the new task's inputs, temperature ``T = 2`` and weight ``alpha = 1`` (their
  ``lambda_o``) by default; no ``T^2`` factor, as in the paper. One output layer shared by all tasks
  (single head): every logit is distilled.

Both load stored runs through :attr:`~optbench.core.component.ModelContext.load_weights`, so they run
in the single-process engine.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optbench.core.component import Component, ModelContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.transfer import load_stored, run_id_param

FISHER_KINDS = ("sampled", "empirical")


def fisher_diagonal(model: nn.Module, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None,
                    batch_size: int = 256) -> dict[str, Tensor]:
    """The diagonal Fisher information of a classifier at its current weights: for every parameter
    (frozen ones included), ``mean_n (d/dtheta log softmax(model(x_n))[y_n])^2`` over the examples ``x`` (per-example
    gradients, :func:`torch.func.vmap`), in eval mode.

    Args:
        model: outputs logits ``(B, C)``.
        x: inputs ``(N, ...)`` on the model's device.
        y: labels ``(N,)`` (the empirical Fisher); None: each ``y_n`` drawn from the model's prediction
            with ``generator`` (the Fisher of Kirkpatrick et al. 2017).
        generator: the random source of the drawn labels (CPU).
        batch_size: examples per vectorized pass.

    Returns:
        ``{parameter name: tensor of its shape}``.
    """
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    was_training = model.training
    model.eval()

    def log_likelihood(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        log_p = F.log_softmax(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), dim=-1)[0]
        return (log_p * yi).sum()  # yi: the one-hot label (no data-dependent indexing under vmap)

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    try:
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            if y is None:
                with torch.no_grad():
                    probs = F.softmax(model(xb), dim=-1).cpu()
                yb = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(xb.device)
            else:
                yb = y[start:start + batch_size]
            with torch.no_grad():
                classes = model(xb[:1]).shape[-1]
            grads = per_example(params, xb, F.one_hot(yb, classes).to(xb.dtype))
            for n, g in grads.items():
                total[n] += g.pow(2).sum(0)
    finally:
        model.train(was_training)
    return {n: t / max(int(x.shape[0]), 1) for n, t in total.items()}


class EWC(Component):
    """Elastic Weight Consolidation (Kirkpatrick et al. 2017, eq. 3): ``lambda/2 * sum_i F_i (theta_i -
    theta*_i)^2``, ``theta*`` the final weights of run ``run`` (trained on task ``task``) and ``F`` the
    diagonal Fisher of that model on ``samples`` training inputs of ``task`` (a seeded subset).

    Args:
        run: the earlier run (stored with its weights).
        task: the earlier run's task (a task reference: its training inputs estimate the Fisher).
        strength: ``lambda`` (> 0).
        samples: training examples of ``task`` the Fisher is averaged over.
        fisher: ``sampled`` (labels drawn from the model, the paper's Fisher) or ``empirical``.
    """

    name = "ewc"
    family = "continual"
    engines = ("single",)
    source = "Kirkpatrick et al. 2017 (PNAS), eq. 3"
    description = "Elastic weight consolidation: a Fisher-weighted L2 pull towards an earlier run's weights."

    def __init__(self, *, run: str, task: str, strength: float, samples: int = 1000, fisher: str = "sampled") -> None:
        self.run = run_id_param("ewc run", run)
        if not isinstance(task, str) or not task:
            raise ConfigError("ewc task", task, "a task reference (the earlier run's task)")
        self.task = task
        self.strength = _validate.number("ewc strength", strength, low=0.0, low_open=True, high_open=True)
        self.samples = _validate.integer("ewc samples", samples, low=1)
        if fisher not in FISHER_KINDS:
            raise ConfigError("ewc fisher", fisher, FISHER_KINDS)
        self.fisher_kind = fisher
        self.weights_runs = (("ewc run", self.run),)
        self.anchors: list[tuple[nn.Parameter, Tensor, Tensor]] = []  # (parameter, theta*, F)

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        from optbench.tasks import get_task

        stored = load_stored(context, self.run, "ewc run")
        earlier = get_task(self.task)
        reference = _copy_with(model, stored, "ewc run", self.run)
        data = earlier.load_data().train
        generator = torch.Generator().manual_seed(context.seed + 104_729)
        index = torch.randperm(len(data), generator=generator)[:self.samples]
        x, labels = data.gather(index)
        x = x.to(context.device)
        y = None if self.fisher_kind == "sampled" else labels.to(context.device)
        fisher = fisher_diagonal(reference, x, y, generator=generator)
        self.set_anchors(model, {n: p.detach() for n, p in reference.named_parameters()}, fisher)
        return model

    def set_anchors(self, model: nn.Module, theta_star: Mapping[str, Tensor], fisher: Mapping[str, Tensor]) -> None:
        """Penalize ``model``'s trainable parameters towards ``theta_star`` with weights ``fisher``
        (both keyed by parameter name; parameters missing from either are not penalized)."""
        self.anchors = [(p, theta_star[n].detach().to(p.device, p.dtype).clone(),
                         fisher[n].detach().to(p.device, p.dtype))
                        for n, p in model.named_parameters() if p.requires_grad and n in theta_star and n in fisher]

    def penalty(self) -> Tensor | None:
        if not self.anchors:
            return None
        total = sum((f * (p - star).pow(2)).sum() for p, star, f in self.anchors)
        return 0.5 * self.strength * total


class LwF(Component):
    """Learning without Forgetting (Li & Hoiem 2017, eq. 2-4): distill the stored run ``teacher``'s
    outputs at temperature ``temperature`` into the trained model on the new task's inputs.

    Args:
        teacher: the earlier run (stored with its weights; same architecture).
        alpha: the weight of the distillation term (the paper's ``lambda_o``, 1 there).
        temperature: ``T`` (2 in the paper).
    """

    name = "lwf"
    family = "continual"
    engines = ("single",)
    source = "Li & Hoiem 2017 (IEEE TPAMI), sec. 3, eq. 2-4"
    description = "Learning without forgetting: distill an earlier run's outputs (temperature T) on the new inputs."

    def __init__(self, *, teacher: str, alpha: float = 1.0, temperature: float = 2.0) -> None:
        self.teacher_run = run_id_param("lwf teacher", teacher)
        self.alpha = _validate.number("lwf alpha", alpha, low=0.0, low_open=True, high_open=True)
        self.temperature = _validate.number("lwf temperature", temperature, low=0.0, low_open=True, high_open=True)
        self.weights_runs = (("teacher", self.teacher_run),)
        self.teacher: nn.Module | None = None

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        stored = load_stored(context, self.teacher_run, "teacher")
        self.teacher = _copy_with(model, stored, "teacher", self.teacher_run)
        return model

    def distillation(self, student: Tensor, teacher: Tensor) -> Tensor:
        """``alpha * mean_batch(-sum_c softmax(teacher/T)_c * log_softmax(student/T)_c)``."""
        t = self.temperature
        target = F.softmax(teacher.float() / t, dim=-1)
        return self.alpha * -(target * F.log_softmax(student.float() / t, dim=-1)).sum(-1).mean()

    def loss_term(self, x: Tensor, output: Tensor, y: Tensor) -> Tensor | None:
        if self.teacher is None:
            return None
        with torch.no_grad():
            old = self.teacher(x)
        return self.distillation(output, old)


def _copy_with(model: nn.Module, state: Mapping[str, Tensor], field: str, run: str) -> nn.Module:
    """A frozen copy of ``model`` (eval mode) holding ``state``.

    Raises:
        ConfigError: ``state`` does not fit the model's architecture.
    """
    import copy

    clone = copy.deepcopy(model)
    own = clone.state_dict()
    for k, v in state.items():
        if k not in own or tuple(own[k].shape) != tuple(v.shape):
            raise ConfigError(field, run, f"weights of the same architecture; {k} does not fit")
    missing = sorted(set(own) - set(state))
    if missing:
        raise ConfigError(field, run, f"weights of the same architecture; {missing[0]} is missing there")
    clone.load_state_dict({k: v.to(own[k].device, own[k].dtype) for k, v in state.items()})
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (EWC, LwF)

__all__ = ["COMPONENTS", "EWC", "FISHER_KINDS", "LwF", "fisher_diagonal"]
