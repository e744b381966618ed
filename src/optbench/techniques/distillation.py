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

FitNets hints (Romero, Ballas, Kahou, Chassang, Gatta & Bengio 2015, "FitNets: Hints for Thin Deep
Nets", sec. 2.2, eq. 3): with ``hint_layer`` (a Linear/Conv module of the student, by name) and
``guided_layer`` (the teacher's, by name; the same name by default), the output ``v`` of the
student's hint layer is mapped by a regressor ``r`` onto the output ``u`` of the teacher's guided
layer and

    L_HT = 1/2 * mean((u - r(v))^2)                                                          (3)

is added with weight ``hint_weight`` (the paper sums the squares; the mean over the batch and the
feature's elements keeps ``hint_weight`` independent of the layer's size). ``r`` is a 1x1
convolution for convolutional layers (the paper's convolutional regressor, for feature maps of the
same spatial size) or a Linear map, created under the run's seed in ``prepare_model`` and trained by
the run's optimizer as one more parameter group (``Component.extra_parameters``); it is not part of
the student, so evaluation, exported weights and the model cost are the student's alone.
``hint_epochs`` > 0 is the paper's two-stage training: the first ``hint_epochs`` epochs minimize
``hint_weight * L_HT`` alone (stage 1, "hint-based training"), the rest the distillation objective
(1) plus the hint term (stage 2; ``hint_weight=0`` there would be the paper's exact stage 2, but one
weight serves both stages here). Hints run in the single engine only: the regressor sits outside the
DDP wrapper, so its gradients would not be averaged across workers.
"""

from __future__ import annotations

import math
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


_HINT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _kind(module: nn.Module) -> str:
    return type(module).__name__


def _hint_module(field: str, model: nn.Module, name: str) -> nn.Module:
    """The Linear/Conv module ``name`` of ``model``, or a ConfigError listing the allowed names."""
    modules = dict(model.named_modules())
    if not isinstance(modules.get(name), _HINT_LAYERS):
        allowed = [n for n, m in modules.items() if isinstance(m, _HINT_LAYERS)]
        raise ConfigError(f"distillation {field}", name, f"a Linear/Conv module of the model: {', '.join(allowed)}")
    return modules[name]


def regressor(hint: nn.Module, guided: nn.Module) -> nn.Module:
    """FitNets' regressor from the hint layer's output to the guided layer's (Romero et al. 2015, sec.
    2.2): a 1x1 convolution ``(B, C_s, *S) -> (B, C_t, *S)`` between convolutional layers, a Linear
    map ``(B, n_s) -> (B, n_t)`` between Linear ones."""
    if isinstance(hint, nn.Linear):
        return nn.Linear(hint.out_features, guided.out_features)
    return type(hint)(hint.out_channels, guided.out_channels, kernel_size=1)


def hint_loss(mapped: Tensor, guided: Tensor) -> Tensor:
    """``1/2 * mean((guided - mapped)^2)`` over the batch and the features (FitNets' eq. 3 with the
    sum replaced by a mean), in float32."""
    return 0.5 * F.mse_loss(mapped.float(), guided.float())


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
        hint_layer: FitNets: a Linear/Conv module of the student (by name) whose output is regressed
            onto the teacher's ``guided_layer``; empty: no hint.
        guided_layer: the teacher's module (by name); empty: the same name as ``hint_layer``.
        hint_weight: weight >= 0 of the hint loss L_HT.
        hint_epochs: FitNets' stage 1: epochs trained on the hint loss alone first (0: none).

    Raises:
        ConfigError: an empty teacher, ``temperature`` not > 0, ``alpha`` outside [0, 1], an unknown
            ``teacher_task``, a non-boolean ``pseudo_labels``; when the run is built: no access to
            stored weights, a teacher run without stored weights, weights that do not fit
            ``teacher_task``'s model, a hint or guided layer that is not a Linear/Conv module of the
            model, hints in an engine other than single; on the first batch: a teacher output of
            another shape, a guided layer's output of another shape than the regressed hint.
    """

    name = "distillation"
    #: the distributed engines are not given stored weights (docs/architecture.md, "The component contract")
    engines = ("single",)
    family = "loss"
    source = ("Hinton, Vinyals & Dean 2015, sec. 2 (soft targets at temperature T, loss weighted by T^2); "
              "Romero et al. 2015, eq. 3 (FitNets hints)")
    description = ("Loss (1-alpha)*CE + alpha*T^2*KL(softmax(teacher/T) || softmax(student/T)) [+ FitNets hint]; "
                   "teacher = a stored run.")

    def __init__(self, *, teacher: str, temperature: float = 4.0, alpha: float = 0.5, teacher_task: str = "",
                 pseudo_labels: bool = False, hint_layer: str | int = "", guided_layer: str | int = "",
                 hint_weight: float = 1.0,
                 hint_epochs: int = 0) -> None:
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
        names = []
        for field, value in (("hint_layer", hint_layer), ("guided_layer", guided_layer)):
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # a Sequential's module name, parsed as a number on the command line
            if not isinstance(value, str):
                raise ConfigError(f"distillation {field}", value, "a module name of the model, e.g. 3 or features.2")
            names.append(value.strip())
        self.hint_layer = names[0]
        self.guided_layer = names[1] or self.hint_layer
        if self.guided_layer and not self.hint_layer:
            raise ConfigError("distillation hint_layer", "(empty)", "the student's module matched to guided_layer")
        self.hint_weight = _validate.number("distillation hint_weight", hint_weight, low=0.0, high_open=True)
        self.hint_epochs = _validate.integer("distillation hint_epochs", hint_epochs, low=0)
        if self.hint_epochs and not self.hint_layer:
            raise ConfigError("distillation hint_epochs", hint_epochs,
                              "0 without a hint_layer (stage 1 trains the hint)")
        self.teacher: nn.Module | None = None
        self.regressor: nn.Module | None = None
        self.epoch = 0
        self.hint_loss = math.nan
        self._checked_shape = False
        self._cache: tuple[Tensor, Tensor] | None = None
        self._student_feature: Tensor | None = None
        self._teacher_feature: Tensor | None = None

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
        if self.hint_layer:
            self._prepare_hint(model, teacher, context)
        return model

    def _prepare_hint(self, student: nn.Module, teacher: nn.Module, context: ModelContext) -> None:
        """Find the hint and guided layers, build the regressor under the run's seed, hook both layers."""
        if context.engine != "single":
            raise ConfigError(f"distillation hint_layer in engine {context.engine}", self.hint_layer,
                              "engine single (the regressor sits outside the DDP wrapper)")
        hint = _hint_module("hint_layer", student, self.hint_layer)
        guided = _hint_module("guided_layer", teacher, self.guided_layer)
        if _kind(hint) != _kind(guided):
            raise ConfigError("distillation guided_layer", self.guided_layer,
                              f"a {_kind(hint)} layer of the teacher, like the student's hint_layer {self.hint_layer}")
        devices = [context.device.index or 0] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the student's random stream is untouched
            torch.manual_seed(context.seed)
            self.regressor = regressor(hint, guided).to(context.device)
        # plain closures, not bound methods: a deep copy of the student (EMA, SWA) copies its hooks,
        # and a bound method would drag a copy of this component along
        component = self

        def keep_student(module: nn.Module, args: tuple, output: Tensor) -> None:
            if module.training:
                component._student_feature = output

        def keep_teacher(module: nn.Module, args: tuple, output: Tensor) -> None:
            component._teacher_feature = output

        hint.register_forward_hook(keep_student)
        guided.register_forward_hook(keep_teacher)

    def extra_parameters(self) -> list[nn.Parameter]:
        """The FitNets regressor's parameters (none without ``hint_layer``)."""
        return [] if self.regressor is None else list(self.regressor.parameters())

    def before_train_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _hint_stage(self) -> bool:
        """Whether this epoch is FitNets' stage 1 (the hint loss alone)."""
        return self.hint_epochs > 0 and self.epoch <= self.hint_epochs

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
        if self.alpha == 0.0 and not self.hint_epochs:
            return loss_fn
        keep = 1.0 - self.alpha

        def hard(output: Tensor, y: Tensor) -> Tensor:
            return (0.0 if self._hint_stage() else keep) * loss_fn(output, y)

        return hard

    def loss_term(self, x: Tensor, output: Tensor, y: Tensor) -> Tensor:
        total = output.new_zeros((), dtype=torch.float32)
        if self.alpha == 0.0 and not self.hint_layer:
            self._cache = None
            return total
        teacher = self._teacher_logits(x)
        if not self._checked_shape:
            if teacher.shape != output.shape:
                raise ConfigError("distillation teacher_task", self.teacher_task or "(the student's task)",
                                  f"a model whose output has the student's shape {tuple(output.shape[1:])} "
                                  f"(the teacher's is {tuple(teacher.shape[1:])})")
            self._checked_shape = True
        if self.alpha and not self._hint_stage():
            total = total + self.alpha * kd_soft_loss(output, teacher, self.temperature)
        if self.hint_layer:
            total = total + self.hint_weight * self._hint_term()
        # one batch at a time: hold no activations past the step
        self._cache, self._student_feature, self._teacher_feature = None, None, None
        return total

    def _hint_term(self) -> Tensor:
        """FitNets' L_HT (eq. 3 of the module docstring) of this batch's hooked features."""
        assert self.regressor is not None and self._student_feature is not None and self._teacher_feature is not None
        mapped = self.regressor(self._student_feature)
        if mapped.shape != self._teacher_feature.shape:
            raise ConfigError("distillation guided_layer", self.guided_layer,
                              f"a teacher layer whose output has the shape of the regressed hint "
                              f"{tuple(mapped.shape[1:])} (it has {tuple(self._teacher_feature.shape[1:])})")
        loss = hint_loss(mapped, self._teacher_feature)
        self.hint_loss = float(loss.detach())
        return loss

    def metrics(self) -> dict[str, float]:
        """``hint_loss``: the last training batch's L_HT (with ``hint_layer``)."""
        return {"hint_loss": self.hint_loss} if self.hint_layer else {}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"teacher": self.teacher_id}  # its weights are the stored run's, loaded again
        if self.regressor is not None:
            state["regressor"] = {k: v.detach().clone() for k, v in self.regressor.state_dict().items()}
        return state

    def load_state_dict(self, state: Any) -> None:
        if state.get("teacher") != self.teacher_id:
            raise ValueError(f"checkpoint of a distillation from {state.get('teacher')!r}, not {self.teacher_id!r}")
        if self.regressor is not None:
            self.regressor.load_state_dict(state["regressor"])


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (Distillation,)

__all__ = ["COMPONENTS", "Distillation", "kd_soft_loss"]
