"""Knowledge distillation (Hinton et al. 2015): the objective equals a hand computation, the soft
term's gradient is ``T * (softmax(z_s/T) - softmax(z_t/T))`` per example, ``alpha=0`` trains
bitwise like plain cross-entropy, a missing or unfit teacher is a one-line ConfigError before
anything trains, and a student learns from a teacher run end to end (teacher by stored weights)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optbench.core.component import ModelContext
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, TechniqueSpec
from optbench.engine import split_data
from optbench.engine.build import build_run, optimizer_params
from optbench.engine.data import shuffled_batches
from optbench.engine.loop import evaluate
from optbench.engine.metrics import TrainMetrics
from optbench.tasks import get_task
from optbench.techniques.distillation import hint_loss, kd_soft_loss, regressor
from optbench.techniques.registry import make_component

CPU = torch.device("cpu")
Z_S = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]  # student logits, 2 examples x 3 classes
Z_T = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]  # teacher logits
Y = [1, 2]


def _softmax(z: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _lookup_task(logits: list[list[float]]):
    """A task whose model maps the one-hot row ``i`` to ``logits[i]`` (a bias-free linear layer), and
    the weights making it so: a teacher with fixed, known logits."""
    classes = len(logits[0])
    weights = {"weight": torch.tensor(logits).T.contiguous()}
    task = SimpleNamespace(name="lookup", make_model=lambda: nn.Linear(len(logits), classes, bias=False),
                           loss=F.cross_entropy)
    return task, weights


def _component(spec: str, task, weights, **context):
    kd = make_component(TechniqueSpec.parse(spec))
    kd.prepare_model(nn.Identity(), ModelContext(task=task, device=CPU, load_weights=lambda run_id: weights,
                                                 **context))
    return kd


def test_objective_equals_the_hand_computation():
    t, alpha = 2.0, 0.3
    task, weights = _lookup_task(Z_T)
    kd = _component(f"distillation:teacher=run1,temperature={t},alpha={alpha}", task, weights)
    x, z_s, y = torch.eye(2), torch.tensor(Z_S), torch.tensor(Y)
    objective = kd.wrap_loss(F.cross_entropy)(z_s, y) + kd.loss_term(x, z_s, y)
    hard = [-math.log(_softmax(z, 1.0)[c]) for z, c in zip(Z_S, Y, strict=True)]
    soft = []
    for zs, zt in zip(Z_S, Z_T, strict=True):
        ps, pt = _softmax(zs, t), _softmax(zt, t)
        soft.append(sum(q * math.log(q / p) for p, q in zip(ps, pt, strict=True)))
    expected = (1 - alpha) * sum(hard) / 2 + alpha * t * t * sum(soft) / 2
    assert objective.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("t", [1.0, 2.0, 5.0])
def test_soft_gradient_is_t_times_the_probability_difference(t):
    z_s = torch.tensor(Z_S, dtype=torch.float64, requires_grad=True)
    z_t = torch.tensor(Z_T, dtype=torch.float64)
    kd_soft_loss(z_s, z_t, t).backward()
    expected = t * (torch.softmax(z_s.detach() / t, -1) - torch.softmax(z_t / t, -1)) / len(Z_S)  # batch mean
    torch.testing.assert_close(z_s.grad.double(), expected, rtol=1e-6, atol=1e-7)

def test_the_t_squared_factor_keeps_the_soft_gradient_at_the_logits_scale():
    """Hinton et al. 2015, sec. 2.1: for large T, T * (softmax(z_s/T) - softmax(z_t/T)) tends to the
    centred logit difference / K (logit matching), independent of T; without the T^2 factor the soft
    gradient would shrink as 1/T."""
    z_s, z_t = torch.tensor(Z_S, dtype=torch.float64), torch.tensor(Z_T, dtype=torch.float64)
    centred = (z_s - z_s.mean(-1, keepdim=True)) - (z_t - z_t.mean(-1, keepdim=True))
    limit = centred / 3 / len(Z_S)
    grads = []
    for t in (10.0, 100.0, 1000.0):
        z = z_s.clone().requires_grad_(True)
        kd_soft_loss(z, z_t, t).backward()
        grads.append(z.grad)
    errors = [(g - limit).abs().max().item() for g in grads]
    assert errors[2] < errors[1] < errors[0] < 0.1 * limit.abs().max().item()
    assert errors[2] < 1e-3 * limit.abs().max().item()


def _train(task, data, recipe: Recipe, seed: int = 0, load_weights=None) -> tuple[nn.Module, dict[str, float]]:
    """Train through the engine's build_run and TrainStep (the single-process loop's order), with
    ``load_weights`` given: returns the trained model and its test metrics."""
    torch.manual_seed(seed)
    model = task.make_model()
    steps = math.ceil(len(data.train) / recipe.batch_size)
    setup = build_run(task, recipe, model, device=CPU, generator=torch.Generator().manual_seed(seed + 1),
                      engine="single", batch_size=recipe.batch_size, steps_per_epoch=steps, seed=seed,
                      load_weights=load_weights)
    order = torch.Generator().manual_seed(seed)
    for _ in range(recipe.epochs):
        setup.model.train()
        metrics = TrainMetrics(task, CPU, group=32, loss_is_task_loss=setup.step.loss_is_task_loss)
        for x, y in shuffled_batches(data.train, recipe.batch_size, order):
            setup.step(x, y, metrics)
        metrics.result()
    return setup.model, evaluate(setup.model, task, data.test, "test")


@pytest.fixture(scope="module")
def mnist1d():
    task = get_task("mnist1d_mlp")
    return task, split_data(task.load_data(), task.valid_size, 0, 1000)


def _recipe(*techniques: str, epochs: int = 3) -> Recipe:
    return Recipe("adam", {"lr": 1e-2}, batch_size=100, epochs=epochs, train_size=1000, techniques=techniques)


def test_alpha_zero_trains_bitwise_like_plain_cross_entropy(mnist1d):
    task, data = mnist1d
    teacher = task.make_model().state_dict()
    plain, plain_metrics = _train(task, data, _recipe(epochs=2))
    kd, kd_metrics = _train(task, data, _recipe("distillation:teacher=t0,alpha=0,temperature=3", epochs=2),
                            load_weights=lambda run_id: teacher)
    assert kd_metrics == plain_metrics
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), kd.state_dict().values(), strict=True))


def test_student_learns_from_a_teacher_run_end_to_end(mnist1d):
    task, data = mnist1d
    stored: dict[str, dict] = {}
    teacher, teacher_metrics = _train(task, data, _recipe(epochs=6))
    stored["teacher-run"] = {k: v.clone() for k, v in teacher.state_dict().items()}

    def load_weights(run_id: str):
        if run_id not in stored:
            raise ConfigError("run", run_id, "a run with stored final weights")
        return stored[run_id]

    plain, _ = _train(task, data, _recipe(epochs=2), seed=1)
    student, metrics = _train(task, data, _recipe("distillation:teacher=teacher-run,temperature=4,alpha=0.7",
                                                  epochs=2), seed=1, load_weights=load_weights)
    assert math.isfinite(metrics["test_loss"]) and metrics["test_accuracy"] > 0.2  # 10 classes
    assert not torch.equal(plain[1].weight, student[1].weight)  # the teacher changed the training
    # trained on the teacher's soft targets alone, from labels it never sees, the student agrees with it
    mimic, _ = _train(task, data, _recipe("distillation:teacher=teacher-run,temperature=1,alpha=1,"
                                          "pseudo_labels=true", epochs=6), seed=2, load_weights=load_weights)
    with torch.no_grad():
        x = data.test.x
        agree = (mimic(x).argmax(-1) == teacher(x).argmax(-1)).float().mean().item()
        start = (task.make_model()(x).argmax(-1) == teacher(x).argmax(-1)).float().mean().item()
    assert agree > max(0.6, start + 0.4), (agree, start, teacher_metrics)
    with pytest.raises(ConfigError, match="no-such-run"):  # raised by build_run, before any step
        _train(task, data, _recipe("distillation:teacher=no-such-run"), load_weights=load_weights)


def test_pseudo_labels_replace_the_labels_by_the_teachers_argmax():
    task, weights = _lookup_task(Z_T)
    kd = _component("distillation:teacher=run1,pseudo_labels=true", task, weights)
    x, y = torch.eye(2), torch.tensor([0, 0])
    assert kd.transform_batch(x, y)[1].tolist() == [0, 2]
    same = _component("distillation:teacher=run1", task, weights)
    assert same.transform_batch(x, y)[1] is y


def test_a_missing_or_unfit_teacher_is_a_config_error():
    task, weights = _lookup_task(Z_T)
    kd = make_component(TechniqueSpec.parse("distillation:teacher=abc"))
    with pytest.raises(ConfigError, match="distillation teacher 'abc'.*stored weights"):
        kd.prepare_model(nn.Identity(), ModelContext(task=task, device=CPU))  # no access to stored weights

    def missing(run_id: str):
        raise ConfigError("run", run_id, "a run with stored final weights")

    with pytest.raises(ConfigError, match="run 'abc'"):
        kd.prepare_model(nn.Identity(), ModelContext(task=task, device=CPU, load_weights=missing))

    def absent(run_id: str):
        raise FileNotFoundError(f"no weights for {run_id}")

    with pytest.raises(ConfigError, match="distillation teacher 'abc'"):
        kd.prepare_model(nn.Identity(), ModelContext(task=task, device=CPU, load_weights=absent))
    with pytest.raises(ConfigError, match="distillation teacher_task"):  # weights of another architecture
        kd.prepare_model(nn.Identity(), ModelContext(task=task, device=CPU,
                                                     load_weights=lambda run_id: {"weight": torch.zeros(4, 4)}))
    five, five_weights = _lookup_task([[0.0] * 5, [1.0] * 5])  # 5 classes against the student's 3
    wrong = _component("distillation:teacher=abc", five, five_weights)
    with pytest.raises(ConfigError, match="distillation teacher_task.*student's shape"):
        wrong.loss_term(torch.eye(2), torch.zeros(2, 3), torch.tensor(Y))


@pytest.mark.parametrize("spec", ["distillation:teacher=", "distillation:teacher=a,temperature=0",
                                  "distillation:teacher=a,temperature=-1", "distillation:teacher=a,alpha=1.5",
                                  "distillation:teacher=a,alpha=-0.1", "distillation:teacher=a,pseudo_labels=yes",
                                  "distillation:teacher=a,teacher_task=no_such_task", "distillation"])
def test_bad_parameters_are_refused_in_one_line(spec):
    with pytest.raises(ConfigError) as err:
        make_component(TechniqueSpec.parse(spec))
    assert "\n" not in str(err.value)


def test_teacher_task_names_another_architecture(mnist1d):
    task, _ = mnist1d
    wide = get_task("mnist1d_mlp[width=2]")
    torch.manual_seed(0)
    weights = wide.make_model().state_dict()
    kd = make_component(TechniqueSpec("distillation", {"teacher": "w", "teacher_task": "mnist1d_mlp[width=2]"}))
    student = task.make_model()
    state = torch.random.get_rng_state()
    kd.prepare_model(student, ModelContext(task=task, device=CPU, load_weights=lambda run_id: weights))
    assert torch.equal(state, torch.random.get_rng_state())  # building the teacher drew nothing of the student's
    assert kd.teacher[1].out_features == 200 and not kd.teacher.training
    assert all(not p.requires_grad for p in kd.teacher.parameters())
    x = torch.randn(4, 40)
    assert kd.loss_term(x, torch.zeros(4, 10, requires_grad=True), torch.zeros(4, dtype=torch.long)).item() > 0


# ---------------------------------------------------------------- FitNets hints (Romero et al. 2015)
def test_hint_loss_and_regressor_shapes():
    mapped, guided = torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert hint_loss(mapped, guided).item() == pytest.approx(0.5 * (1 + 0 + 1 + 4) / 4)
    linear = regressor(nn.Linear(5, 3), nn.Linear(7, 9))
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (3, 9)
    conv = regressor(nn.Conv2d(1, 4, 3), nn.Conv2d(2, 16, 5))
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (16, 4, 1, 1)


def test_hints_train_a_regressor_beside_the_student(mnist1d):
    """The hint term is the regressed student feature against the teacher's; the regressor is trained
    by the run's optimizer but is no part of the student; stage 1 (hint_epochs) trains only the layers
    up to the hint layer (Adam leaves a weight with zero gradient where it is)."""
    task, data = mnist1d
    torch.manual_seed(5)
    teacher_weights = get_task("mnist1d_mlp[width=2]").make_model().state_dict()
    spec = "distillation:teacher=t,teacher_task=mnist1d_mlp[width=2],hint_layer=3,hint_weight=2,alpha=0.5"
    kd = make_component(TechniqueSpec.parse(spec))
    torch.manual_seed(0)
    student = task.make_model()
    kd.prepare_model(student, ModelContext(task=task, device=CPU, seed=3, load_weights=lambda run_id: teacher_weights))
    assert kd.regressor.weight.shape == (200, 100) and [p for p in kd.extra_parameters()] == \
        list(kd.regressor.parameters())
    x, y = data.train.x[:8], data.train.y[:8]
    student.train()
    output = student(x)
    term = kd.loss_term(x, output, y)
    with torch.no_grad():
        hidden = student[2](student[1](student[0](x)))  # the student's hint layer's input
        feature = student[3](hidden)
        t = kd.teacher
        guided = t[3](t[2](t[1](t[0](x))))
    expected = 0.5 * kd_soft_loss(output, t(x), 4.0) + 2 * 0.5 * ((kd.regressor(feature) - guided) ** 2).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)

    load = {"t": teacher_weights}.__getitem__
    before, _ = _train(task, data, _recipe(epochs=1), seed=1)
    trained, metrics = _train(task, data, _recipe(spec.replace("t,", "t,hint_epochs=1,", 1), epochs=1), seed=1,
                              load_weights=load)
    assert torch.equal(trained[5].weight, before[5].weight) is False  # plain training moved the last layer...
    torch.manual_seed(1)
    fresh = task.make_model()
    assert torch.equal(trained[5].weight, fresh[5].weight)  # ...stage 1 of the hints did not
    assert not torch.equal(trained[1].weight, fresh[1].weight)
    assert all("regressor" not in k for k in trained.state_dict()) and math.isfinite(metrics["test_loss"])


def test_hint_errors_and_regressor_checkpoint():
    task = get_task("mnist1d_mlp")
    weights = task.make_model().state_dict()

    def prepare(spec: str, engine: str = "single"):
        kd = make_component(TechniqueSpec.parse(spec))
        kd.prepare_model(task.make_model(), ModelContext(task=task, device=CPU, engine=engine,
                                                         load_weights=lambda run_id: weights))
        return kd

    with pytest.raises(ConfigError, match="hint_layer 'nope'.*1, 3, 5"):
        prepare("distillation:teacher=t,hint_layer=nope")
    with pytest.raises(ConfigError, match="hint_layer in engine ddp"):
        prepare("distillation:teacher=t,hint_layer=3", engine="ddp")
    with pytest.raises(ConfigError, match="hint_epochs"):
        make_component(TechniqueSpec.parse("distillation:teacher=t,hint_epochs=2"))
    kd = prepare("distillation:teacher=t,hint_layer=3,guided_layer=5")
    with pytest.raises(ConfigError, match="guided_layer '5'.*shape"):  # 100 hidden units against 10 logits
        kd.regressor = nn.Linear(100, 7)
        student = task.make_model().train()
        student[3].register_forward_hook(lambda m, a, out: setattr(kd, "_student_feature", out))
        x = torch.randn(2, 40)
        kd.loss_term(x, student(x), torch.zeros(2, dtype=torch.long))
    good = prepare("distillation:teacher=t,hint_layer=3")
    other = prepare("distillation:teacher=t,hint_layer=3")
    with torch.no_grad():
        good.regressor.weight.add_(1.0)
    other.load_state_dict(good.state_dict())
    assert torch.equal(other.regressor.weight, good.regressor.weight)
    with pytest.raises(ConfigError, match="parameter-partition"):  # Muon's partition sets the groups itself
        optimizer_params(Recipe("muon", {}), [good], task.make_model(), {})
