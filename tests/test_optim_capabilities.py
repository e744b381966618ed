"""The training loop's optimizer protocol: capabilities, closures, SAM, second-order methods.

The loop dispatches on :func:`optbench.optim.capabilities` only (never on names); these tests
drive the engine's own step (:class:`optbench.engine.step.TrainStep`, through :func:`optbench.train`
where a whole run checks the same thing) for the special optimizers and for every registered name.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from optbench import train
from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import (
    Dataset,
    Direction,
    Metric,
    Recipe,
    RunStatus,
    Split,
    Target,
    Task,
    TaskData,
)
from optbench.engine.metrics import TrainMetrics
from optbench.engine.step import TrainStep
from optbench.optim import (
    SAM,
    Capabilities,
    capabilities,
    create_graph_now,
    create_optimizer,
    describe,
    optimizers,
    parse_optimizer_name,
    resolved_hyperparams,
)
from optbench.optim.catalog import LIBRARY_TRAITS

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

CPU = torch.device("cpu")
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _task(loss: Loss = nn.functional.cross_entropy) -> Task:
    """A task over :func:`_data` and :func:`_model` whose only metric is ``loss`` (a batch mean)."""
    x, y = _data()
    return Task(name="toy", description="8 -> 16 -> 3 tanh MLP on 64 random points",
                make_model=_model, load_data=lambda: Dataset(Split(x, y), Split(x, y)), loss=loss,
                metrics=(Metric("loss", Direction.MINIMIZE, lambda out, t: loss(out, t) * t.shape[0]),),
                target=Target("valid", "loss", 0.0), valid_size=1)


def engine_step(name: str, optimizer: torch.optim.Optimizer, model: nn.Module, *, batch_size: int,
                loss: Loss = nn.functional.cross_entropy) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The engine's step over ``optimizer`` (registry name ``name``) and ``model``, with no technique:
    a function doing one step on a batch of at most ``batch_size`` examples and returning the
    step's training loss. The one place this file builds a :class:`TrainStep`."""
    task = _task(loss)
    step = TrainStep(task=task, model=model, forward=model, optimizer=optimizer, components=(),
                     precision="fp32", device=CPU, caps=capabilities(name), batch_size=batch_size)

    def run(x: torch.Tensor, y: torch.Tensor) -> float:
        metrics = TrainMetrics(task, CPU, group=1)
        step(x, y, metrics)
        return metrics.result()["train_loss"]

    return run


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


# ---------------------------------------------------------------- the loop pattern
SPECIAL = {  # name -> (hyperparameters, steps, expected capabilities)
    "lbfgs": ({}, 3, Capabilities(needs_closure=True, full_batch_only=True)),
    "sam:adam": ({"lr": 0.01}, 40, Capabilities(needs_closure=True, two_pass=True,
                                                supports_fused=True, supports_foreach=True)),
    "sam:sgd": ({"lr": 0.2}, 40, Capabilities(needs_closure=True, two_pass=True,
                                              supports_fused=True, supports_foreach=True)),
    "sophia": ({"lr": 0.5}, 40, Capabilities(create_graph=True, supports_foreach=True)),
    "adahessian": ({}, 40, Capabilities(create_graph=True, supports_foreach=True)),
}


@pytest.mark.parametrize("name", list(SPECIAL))
def test_training_loop_trains_special_optimizers(name: str) -> None:
    """A whole run of :func:`optbench.train`, one full-batch step per epoch: the first epoch's
    training loss is the loss at the initial weights, the last validation loss (the same 64
    points) the loss after the last step."""
    hp, steps, expected = SPECIAL[name]
    assert capabilities(name) == expected
    x, y = _data()
    split = Split(x, y)
    result = train(_task(), TaskData(split, split, split), Recipe(name, hp, batch_size=len(x), epochs=steps), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    assert result.steps == steps and [e.epoch for e in result.epochs] == list(range(1, steps + 1))
    first = result.epochs[0].metrics["train_loss"]
    assert first == pytest.approx(nn.functional.cross_entropy(_model()(x), y).item(), rel=1e-6)
    final = result.epochs[-1].metrics["valid_loss"]
    assert final < 0.8 * first, f"{name}: loss {first:.3f} -> {final:.3f}"


def test_sam_calls_the_closure_twice_and_returns_the_first_loss() -> None:
    model, (x, y) = _model(), _data()
    optimizer = create_optimizer("sam:adam", model.parameters(), lr=0.01, rho=0.5)
    losses: list[float] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss.item())
        return loss

    before = nn.functional.cross_entropy(model(x), y).item()
    returned = optimizer.step(closure)
    assert len(losses) == 2
    assert returned.item() == losses[0] == pytest.approx(before)
    assert losses[1] > losses[0]  # the loss at w + eps (ascent direction) is larger
    with pytest.raises(RuntimeError, match="closure"):
        optimizer.step()


def test_sam_restores_w_before_the_base_step() -> None:
    """With lr -> tiny, one SAM step leaves w (almost) unchanged: the base update starts from
    w, not from w + eps (which is rho = 1 away)."""
    p = nn.Parameter(torch.tensor([3.0, -4.0]))
    optimizer = create_optimizer("sam:sgd", [p], lr=1e-9, rho=1.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    # the base step used the gradient at w + eps = (3, -4) * 1.2: 2 * 1.2 * w
    assert torch.allclose(p.detach(), torch.tensor([3.0, -4.0]) * (1 - 2.4e-9), atol=1e-6)


def test_sam_shares_groups_and_state_with_its_base() -> None:
    model = _model()
    optimizer = create_optimizer("sam:momentum", model.parameters(), lr=0.1)
    assert isinstance(optimizer, SAM)
    base = optimizer.base_optimizer
    assert optimizer.param_groups is base.param_groups
    optimizer.param_groups[0]["lr"] = 0.5  # what a schedule does
    assert base.param_groups[0]["lr"] == 0.5 and base.param_groups[0]["sam_rho"] == 0.05
    x, y = _data()
    engine_step("sam:momentum", optimizer, model, batch_size=len(x))(x, y)
    state = optimizer.state_dict()
    assert state == base.state_dict() and len(state["state"]) == 4
    fresh = create_optimizer("sam:momentum", _model().parameters(), lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.5
    assert fresh.param_groups is fresh.base_optimizer.param_groups
    assert fresh.state is fresh.base_optimizer.state


# ---------------------------------------------------------------- SAM names
def test_sam_names() -> None:
    assert parse_optimizer_name("sam:adam") == ("sam", "adam")
    assert parse_optimizer_name("sam") == ("sam", "momentum")
    assert parse_optimizer_name("adam") == ("adam", None)
    assert optimizers.canonical("sam:adam") == "sam:adam"
    assert optimizers.canonical("sam:asgd") == "sam:torch.asgd"
    assert optimizers.canonical("sam") == "sam"
    assert describe("sam").base_key == "momentum"  # type: ignore[attr-defined]
    with pytest.raises(UnknownNameError, match="optimizer 'nope'"):
        optimizers.canonical("sam:nope")
    for bad in ("swa:adam", "sam:", ":adam"):
        with pytest.raises(ConfigError, match="sam:<a registered name>"):
            optimizers.canonical(bad)
    for unwrappable in ("sam:lbfgs", "sam:sophia", "sam:sam", "sam:sam:adam", "sam:alig"):
        with pytest.raises(ConfigError, match="base optimizer of sam"):
            create_optimizer(unwrappable, [nn.Parameter(torch.zeros(2))])


def test_sam_hyperparameters() -> None:
    hp = resolved_hyperparams("sam:adam", rho=0.1, lr=0.01)
    assert hp["rho"] == 0.1 and hp["adaptive"] is False and hp["lr"] == 0.01
    assert hp["betas"] == [0.9, 0.999] and hp == dict(sorted(hp.items()))
    assert resolved_hyperparams("sam")["momentum"] == 0.9
    # a base hyperparameter that clashes with the wrapper's is renamed base_<name>
    hp = resolved_hyperparams("sam:adadelta", base_rho=0.5)
    assert hp["rho"] == 0.05 and hp["base_rho"] == 0.5
    optimizer = create_optimizer("sam:adadelta", [nn.Parameter(torch.zeros(2))], base_rho=0.5)
    assert optimizer.base_optimizer.defaults["rho"] == 0.5
    # the shared groups keep both: the base's rho and the wrapper's sam_rho
    assert optimizer.param_groups[0]["rho"] == 0.5 and optimizer.param_groups[0]["sam_rho"] == 0.05
    with pytest.raises(ConfigError, match="hyperparameter for sam:adam"):
        create_optimizer("sam:adam", [nn.Parameter(torch.zeros(2))], momentum=0.9)


# ---------------------------------------------------------------- second order
def test_create_graph_now_follows_the_hessian_period() -> None:
    """Sophia estimates the Hessian on steps 1, 11, 21, ... (update_period=10); the graph is
    needed only then. Without it on such a step the Hessian-vector product fails; the engine's
    step, which builds it only then, trains exactly as building it on every step does."""
    x, y = _data()
    model = _model()
    optimizer = create_optimizer("sophia", model.parameters(), lr=0.5)
    torch.manual_seed(3)
    for _ in range(21):  # the reference: the graph on every step
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward(create_graph=True)
        optimizer.step()
    reference = _flat(model)
    model = _model()
    optimizer = create_optimizer("sophia", model.parameters(), lr=0.5)
    step = engine_step("sophia", optimizer, model, batch_size=len(x))
    used = []
    torch.manual_seed(3)
    for _ in range(21):
        used.append(create_graph_now(optimizer))
        step(x, y)
    assert [i for i, u in enumerate(used) if u] == [0, 10, 20]
    assert torch.equal(_flat(model), reference)
    model = _model()
    optimizer = create_optimizer("sophia", model.parameters())
    nn.functional.cross_entropy(model(x), y).backward()  # no graph
    with pytest.raises(RuntimeError):
        optimizer.step()
    assert create_graph_now(create_optimizer("adam", [nn.Parameter(torch.zeros(1))]))


# ---------------------------------------------------------------- capability metadata
def test_capabilities_of_presets() -> None:
    assert capabilities("gd").full_batch_only and not capabilities("sgd").full_batch_only
    assert capabilities("lbfgs").full_batch_only and capabilities("lbfgs").needs_closure
    assert not capabilities("torch.lbfgs").full_batch_only  # mini-batch L-BFGS is allowed
    assert capabilities("sam").two_pass and capabilities("sam").supports_fused
    assert capabilities("sam:rmsprop") == Capabilities(needs_closure=True, two_pass=True,
                                                       supports_foreach=True)
    assert capabilities("pytorch_optimizer.sophiah").create_graph
    assert capabilities("alig").needs_closure and capabilities("bsam").two_pass
    plain = capabilities("adam")
    assert not (plain.needs_closure or plain.create_graph or plain.two_pass
                or plain.full_batch_only)
    with pytest.raises(AttributeError):
        plain.needs_closure = True  # type: ignore[misc]
    with pytest.raises(UnknownNameError):
        capabilities("adamm")


def test_library_traits_table_is_complete() -> None:
    """Scan pytorch-optimizer's step sources: a class whose step raises NoClosureError needs a
    closure, one that computes a Hutchinson estimate needs create_graph. LIBRARY_TRAITS must
    list exactly those (the library's SAM-like classes outside the registry are not scanned)."""
    found: dict[str, set[str]] = {}
    for name in optimizers.names():
        if not name.startswith("pytorch_optimizer."):
            continue
        cls = describe(name).load()
        source = inspect.getsource(cls.step)
        short = name.split(".", 1)[1]
        if "NoClosureError" in source:
            found.setdefault(short, set()).add("needs_closure")
        if "compute_hutchinson_hessian" in source:
            found.setdefault(short, set()).add("create_graph")
    expected = {k: {t for t in v if t in ("needs_closure", "create_graph")}
                for k, v in LIBRARY_TRAITS.items()}
    assert found == expected


# ---------------------------------------------------------------- every registered name
#: Names that cannot be built in a plain single-process test, and why.
CANNOT_BUILD = {
    "pytorch_optimizer.demo": "needs the optional package einops (not an optbench dependency)",
    "pytorch_optimizer.distributedmuon": "needs an initialized torch.distributed process group",
}
#: Names that build but whose step() is not the usual one, and why.
LOMO_REASON = "updates inside fused_backward(loss, lr); step() is not implemented"
CANNOT_STEP = {
    "pytorch_optimizer.lomo": LOMO_REASON,
    "pytorch_optimizer.adalomo": LOMO_REASON,
    # Bayesian SAM creates its state from p.grad at the start of step(), before calling the
    # closure: it needs gradients left over from a previous backward, which the loop's
    # zero_grad(set_to_none=True) protocol does not leave (the first step fails).
    "pytorch_optimizer.bsam": "needs stale gradients before step(closure)",
}
#: How to hand parameters to classes with special needs (reason in the comment).
MATRICES_ONLY = {"torch.muon", "pytorch_optimizer.spectralsphere"}  # 2-D parameters only
MUON_GROUPS = {f"pytorch_optimizer.{n}"  # groups flagged use_muon (matrices) / AdamW (rest)
               for n in ("muon", "muonclip", "normuon", "adamuon", "adago")}
TAKES_MODULE = {"pytorch_optimizer.adammini", "pytorch_optimizer.lomo",
                "pytorch_optimizer.adalomo"}  # their first argument is the nn.Module
SPARSE = {"torch.sparseadam"}  # sparse gradients only: nn.Embedding(sparse=True)
EXTRA_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "pytorch_optimizer.bsam": {"num_data": 16},  # required: no default
    "pytorch_optimizer.ranger21": {"num_iterations": 10},  # required: no default
    # trains only weights with initial |w| < threshold (default 1e-3 selects none here), and
    # its default lr is 1e-3 * exp(-350 * threshold)
    "pytorch_optimizer.sara": {"threshold": 1.0, "lr": 1e-3},
}
#: AdaShift waits for keep_num=10 gradients before its first update.
MAX_STEPS_TO_MOVE = 12


def params_for(name: str, model: nn.Module) -> Any:
    """What ``create_optimizer(name, ...)`` should be given for ``model``."""
    matrices = [p for p in model.parameters() if p.ndim == 2]
    if name in MATRICES_ONLY:
        return matrices
    if name in MUON_GROUPS or optimizers.get(name).capabilities().partition == "hidden_matrices":
        return [{"params": matrices, "use_muon": True},
                {"params": [p for p in model.parameters() if p.ndim != 2], "use_muon": False}]
    if name in TAKES_MODULE:
        return model
    return model.parameters()


def test_every_registered_name_builds_and_steps_through_the_engine_step() -> None:
    """Every name, built over the parameters it needs and stepped by the engine's step, which
    dispatches on its capabilities (and runs closures under enable_grad: AliG calls the closure
    under no_grad)."""
    names = optimizers.names()
    special = (set(CANNOT_BUILD) | set(CANNOT_STEP) | MATRICES_ONLY | MUON_GROUPS | TAKES_MODULE
               | SPARSE | set(EXTRA_HYPERPARAMS))
    assert special <= set(names), f"stale entries: {special - set(names)}"
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    built = stepped = 0
    for name in names:
        if name in CANNOT_BUILD:
            continue
        if name in SPARSE:
            model: nn.Module = nn.Embedding(5, 3, sparse=True)
            inputs, targets = torch.tensor([0, 2, 2]), torch.zeros(3, dtype=torch.int64)

            def loss(out: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
                return out.pow(2).sum()
        else:
            model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
            inputs, targets, loss = x, y, nn.functional.cross_entropy
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = create_optimizer(name, params_for(name, model), **EXTRA_HYPERPARAMS.get(name, {}))
        assert isinstance(opt, torch.optim.Optimizer), name
        built += 1
        if name in CANNOT_STEP:
            continue
        step = engine_step(name, opt, model, batch_size=len(inputs), loss=loss)
        before = [p.detach().clone() for p in model.parameters()]
        moved = False
        for _ in range(MAX_STEPS_TO_MOVE):  # some skip early steps (ADOPT, RAdam, SOAP, AdaShift)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step(inputs, targets)
            moved = any(not torch.equal(a, b)
                        for a, b in zip(before, model.parameters(), strict=True))
            if moved:
                break
        assert moved, f"{name} did not change the parameters in {MAX_STEPS_TO_MOVE} steps"
        assert all(torch.isfinite(p).all() for p in model.parameters()), name
        stepped += 1
    assert built == len(names) - len(CANNOT_BUILD)
    assert stepped == built - len(CANNOT_STEP)
