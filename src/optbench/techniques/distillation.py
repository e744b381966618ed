"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a neural
network", sec. 2): the student is trained on a mix of the hard labels and the teacher's softened
output distribution,

    L = (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)),     (1)

``z_s``/``z_t`` the student's/teacher's logits, ``T`` the temperature. The gradient of the soft
term with respect to a student logit is (sec. 2.1, eq. 2, there with ``T`` outside)

    d/dz_s [T^2 * KL] = T * (softmax(z_s / T) - softmax(z_t / T))                           (2)

per example (divided by the batch size for the batch mean): the ``T^2`` factor keeps the soft
gradient's magnitude comparable to the hard one's as ``T`` changes (the paper: "it is important to
multiply them by T^2"); without it the soft gradient would scale as ``1/T``.

How it runs in optbench (docs/architecture.md, "The component contract"):

* ``prepare_model`` builds the teacher's architecture (``teacher_task``'s model, by default the
  student's own task's) under a forked RNG (the student's random stream is untouched) and loads the
  final weights of the stored run ``teacher`` through ``ModelContext.load_weights``; the teacher is
  held by the component, never registered in the student, so no optimizer, DDP wrapper, checkpoint
  or exported model sees it. It stays in eval mode, its parameters frozen.
* ``wrap_loss`` scales the task's (hard) loss by ``1 - alpha``; ``loss_term(x, output, y)`` adds the
  soft term of (1), the teacher run on the same ``x`` under ``torch.no_grad``. The reported ``loss``
  metric stays the task's own loss of the student.
* ``pseudo_labels=true`` (training on unlabeled data; Lee 2013, "Pseudo-label", and the
  teacher-student self-training of Xie et al. 2020, "Self-training with Noisy Student"):
  ``transform_batch`` replaces each label by the teacher's argmax, so the training pool is used
  without its labels (``alpha=1`` trains on the soft targets alone). The ``train_*`` metrics are then
  measured against those pseudo-labels (what the student is trained on); ``valid_*``/``test_*``
  keep the true labels.

A teacher of another architecture is named with ``teacher_task`` (a task reference whose model
fits the stored weights, e.g. ``teacher_task=mnist1d_mlp[width=4]`` for a run trained on that
task); its output must have the student's shape (checked on the first batch: a ConfigError naming
``teacher_task``).

On the command line a technique's parameters are separated by commas, so a ``teacher_task`` there
takes at most one task option (``teacher_task=mnist1d_mlp[width=4]``); give several in Python
(``TechniqueSpec("distillation", {...})``).

Iterative distillation (born-again networks, Furlanello et al. 2018): each generation is one run
whose teacher is the previous generation's run id, i.e. a study of chained runs, each started after
its teacher has finished and stored its final weights (``--save-weights``)::

    optbench compare --task mnist1d_mlp --optimizers adam --store s.db --save-weights     # run id A
    optbench compare --task mnist1d_mlp --optimizers adam --store s.db --save-weights \
        --technique distillation:teacher=A,temperature=4,alpha=0.7                        # run id B
    optbench compare ... --technique distillation:teacher=B,temperature=4,alpha=0.7       # run id C

A run's id is a content hash that includes its teacher's id, so every generation is a distinct,
reproducible run (the ids are printed and stored with the runs).

Not implemented: FitNets hints (Romero et al. 2015, an intermediate layer of the student regressed
onto the teacher's through a learned regressor). The regressor's parameters must be trained by the
run's optimizer while the evaluated and exported model stays the student: that needs a contract hook
for extra trainable parameters (or a student wrapper whose state dict and evaluation are the
student's), and the regressor's shape needs an example input, which ``prepare_model`` does not get.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optbench.core.component import Component, LossFn, ModelContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate


def kd_soft_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))`` averaged over the leading dimensions
    (examples, and positions of sequence outputs): the soft term of Hinton et al. 2015, eq. (1) of the
    module docstring. The class dimension is the last one. Computed in float32 (autocast outputs)."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    per_example = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    return per_example.mean() * (t * t)


class Distillation(Component):
    """Train the student on ``(1 - alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)``
    (Hinton et al. 2015, sec. 2), the teacher being a stored run's final weights.

    Args:
        teacher: the run id of the teacher (its final weights come from the store).
        temperature: ``T`` > 0 of the softened distributions (the paper uses 1-20; 2-8 is common).
        alpha: weight in [0, 1] of the soft term (0: the task loss alone; 1: the soft term alone).
        teacher_task: the task whose model is the teacher's architecture (a task reference, e.g.
            ``mnist1d_mlp[width=4]``); empty: the student's own task.
        pseudo_labels: replace the labels by the teacher's argmax (training on unlabeled data).

    Raises:
        ConfigError: an empty teacher, ``temperature`` not > 0, ``alpha`` outside [0, 1], an unknown
            ``teacher_task``, a non-boolean ``pseudo_labels``; when the run is built: no access to
            stored weights, a teacher run without stored weights, weights that do not fit
            ``teacher_task``'s model; on the first batch: a teacher output of another shape.
    """

    name = "distillation"
    family = "loss"
    source = "Hinton, Vinyals & Dean 2015, sec. 2 (soft targets at temperature T, loss weighted by T^2)"
    description = "Loss (1-alpha)*CE + alpha*T^2*KL(softmax(teacher/T) || softmax(student/T)); teacher = a stored run."

    def __init__(self, *, teacher: str, temperature: float = 4.0, alpha: float = 0.5, teacher_task: str = "",
                 pseudo_labels: bool = False) -> None:
        if not isinstance(teacher, str) or not teacher.strip():
            raise ConfigError("distillation teacher", teacher, "the run id of a stored run (its final weights)")
        self.teacher_id = teacher.strip()
        self.temperature = _validate.number("distillation temperature", temperature, low=0.0, low_open=True,
                                            high_open=True)
        self.alpha = _validate.number("distillation alpha", alpha, low=0.0, high=1.0)
        if not isinstance(teacher_task, str):
            raise ConfigError("distillation teacher_task", teacher_task, "a task reference, e.g. mnist1d_mlp[width=4]")
        self.teacher_task = teacher_task.strip()
        if self.teacher_task:
            from optbench.tasks import get_task  # validated now, before any run; tasks imports no technique

            get_task(self.teacher_task)
        if not isinstance(pseudo_labels, bool):
            raise ConfigError("distillation pseudo_labels", pseudo_labels, "true, false")
        self.pseudo_labels = pseudo_labels
        self.teacher: nn.Module | None = None
        self._checked_shape = False
        self._cache: tuple[Tensor, Tensor] | None = None

    # ---------------------------------------------------------------- build
    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        if context.load_weights is None:
            raise ConfigError("distillation teacher", self.teacher_id,
                              "a stored run id, in a run started with access to stored weights (a store)")
        try:
            weights = context.load_weights(self.teacher_id)  # ConfigError for an unknown run / no stored weights
        except (KeyError, LookupError, FileNotFoundError) as exc:
            raise ConfigError("distillation teacher", self.teacher_id, "the id of a stored run with final weights "
                              f"({type(exc).__name__}: {exc})") from exc
        if self.teacher_task:
            from optbench.tasks import get_task

            task = get_task(self.teacher_task)
        else:
            task = context.task
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # building the teacher draws no number of the student's
            teacher = task.make_model()
        try:
            teacher.load_state_dict(dict(weights))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError("distillation teacher_task", self.teacher_task or task.name,
                              f"the task whose model run {self.teacher_id}'s weights fit ({first})") from exc
        teacher.to(context.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.teacher = teacher
        return model

    # ---------------------------------------------------------------- gradient side
    @torch.no_grad()
    def _teacher_logits(self, x: Tensor) -> Tensor:
        if self._cache is not None and self._cache[0] is x:
            return self._cache[1]
        assert self.teacher is not None, "prepare_model loads the teacher"
        out = self.teacher(x).detach()
        self._cache = (x, out)
        return out

    def transform_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not self.pseudo_labels:
            return x, y
        return x, self._teacher_logits(x).argmax(dim=-1).to(y.dtype)

    def wrap_loss(self, loss_fn: LossFn) -> LossFn:
        if self.alpha == 0.0:
            return loss_fn
        keep = 1.0 - self.alpha

        def hard(output: Tensor, y: Tensor) -> Tensor:
            return keep * loss_fn(output, y)

        return hard

    def loss_term(self, x: Tensor, output: Tensor, y: Tensor) -> Tensor:
        if self.alpha == 0.0:
            self._cache = None
            return output.new_zeros((), dtype=torch.float32)
        teacher = self._teacher_logits(x)
        self._cache = None  # one batch at a time: hold no activations past the step
        if not self._checked_shape:
            if teacher.shape != output.shape:
                raise ConfigError("distillation teacher_task", self.teacher_task or "(the student's task)",
                                  f"a model whose output has the student's shape {tuple(output.shape[1:])} "
                                  f"(the teacher's is {tuple(teacher.shape[1:])})")
            self._checked_shape = True
        return self.alpha * kd_soft_loss(output, teacher, self.temperature)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_id}  # the teacher's weights are the stored run's, loaded again

    def load_state_dict(self, state: Any) -> None:
        if state.get("teacher") != self.teacher_id:
            raise ValueError(f"checkpoint of a distillation from {state.get('teacher')!r}, not {self.teacher_id!r}")


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (Distillation,)

__all__ = ["COMPONENTS", "Distillation", "kd_soft_loss"]
