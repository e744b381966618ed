"""Tests of optbench.optim: registry and names, validation, and the fast path (parity of the
fused / multi-tensor kernels with the single-tensor loop).

The presets' update rules are checked in ``test_optim_conformance.py``, the loop protocol
(capabilities, closures, SAM, second order) in ``test_optim_capabilities.py``, and descent of
every registered optimizer in ``test_optim_descent.py``.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from torch import nn

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.registry import Registry
from optbench.optim import (
    PRESETS,
    capabilities,
    create_optimizer,
    describe,
    implementation_of,
    optimizers,
    resolved_hyperparams,
)
from optbench.optim.catalog import OptimizerSpec, build_registry

STEPS = 50
RTOL = 1e-6
PRESET_NAMES = ("gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam",
                "adamw", "nadam", "radam", "adabelief", "sam", "lbfgs", "sophia", "lion", "lars",
                "lamb")


# ---------------------------------------------------------------- fast path
def _mlp_run(name: str, implementation: str, dtype: torch.dtype = torch.float32
             ) -> tuple[torch.Tensor, str]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    x, y = torch.randn(64, 10, dtype=dtype), torch.randint(0, 3, (64,))
    caps = capabilities(name)
    opt = create_optimizer(name, model.parameters(), implementation=implementation, lr=0.01)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward(create_graph=caps.create_graph)
        return loss

    torch.manual_seed(1)  # Sophia's Hutchinson probes
    for _ in range(STEPS):
        if caps.needs_closure:
            opt.step(closure)
        else:
            closure()
            opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), implementation_of(opt)


#: Fused vs single-tensor, float32, this MLP, 50 steps (torch 2.13 CPU), max relative difference:
#: sgd 0 (bitwise), momentum 7e-8, nesterov 7e-8, adagrad 3e-7, adamw 7e-7, adam 1.6e-6. The
#: kernels round differently and Adam's g / sqrt(v) amplifies rounding where g and v are tiny;
#: in float64 all agree to 2e-15, which shows the fused kernels compute the same update.
FUSED_TOLERANCE = {torch.float64: RTOL, torch.float32: 1e-5}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", ["sgd", "gd", "momentum", "nesterov", "adam", "adagrad", "adamw",
                                  "sam:adam"])
def test_fused_matches_single_tensor_path(name: str, dtype: torch.dtype) -> None:
    """The fast path ("auto" picks fused for these on CPU) equals the single-tensor for-loop
    after 50 steps: to 1e-6 relative in float64, 1e-5 in float32 (see FUSED_TOLERANCE)."""
    fused, impl_fused = _mlp_run(name, "fused", dtype)
    single, impl_single = _mlp_run(name, "single", dtype)
    auto, impl_auto = _mlp_run(name, "auto", dtype)
    assert (impl_fused, impl_single, impl_auto) == ("fused", "single", "fused")
    rel = ((fused - single).abs().max() / single.abs().max()).item()
    assert rel <= FUSED_TOLERANCE[dtype], f"fused differs from single-tensor by {rel:.3e}"
    assert torch.equal(auto, fused)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
@pytest.mark.parametrize("name", ["rmsprop", "adadelta", "nadam", "radam", "adabelief", "lamb",
                                  "pytorch_optimizer.lamb", "lion", "lars", "sophia", "adan",
                                  "sam:lion"])
def test_multi_tensor_matches_single_tensor_path(name: str) -> None:
    """Multi-tensor (foreach) equals the single-tensor loop to 1e-6 relative in float64.
    In float32 on this MLP most are bitwise equal, but NAdam differs by 8e-4 relative after 50
    steps: adaptive methods divide near-zero gradients (dead ReLU units, pure rounding noise)
    by their own root mean square, so one-ulp differences become lr-sized steps."""
    foreach, impl_foreach = _mlp_run(name, "foreach", torch.float64)
    single, impl_single = _mlp_run(name, "single", torch.float64)
    assert (impl_foreach, impl_single) == ("foreach", "single")
    assert ((foreach - single).abs().max() / single.abs().max()).item() <= RTOL


def test_auto_rule_on_cpu() -> None:
    p = [nn.Parameter(torch.zeros(3))]
    # torch classes without fused: the single-tensor loop (torch's CPU default, made explicit)
    assert create_optimizer("rmsprop", p).defaults["foreach"] is False
    # except RAdam, whose multi-tensor path measured faster on CPU (FOREACH_ON_CPU)
    assert implementation_of(create_optimizer("radam", p)) == "foreach"
    assert implementation_of(create_optimizer("sam:radam", p)) == "foreach"
    # pytorch-optimizer classes keep their multi-tensor default (measured faster on CPU)
    assert implementation_of(create_optimizer("adabelief", p)) == "default"
    assert implementation_of(create_optimizer("adabelief", p, implementation="single")) == "single"
    # no fused/foreach argument: only the single path exists
    assert implementation_of(create_optimizer("lbfgs", p)) == "single"
    # optbench's own Lamb: multi-tensor by default, like the pytorch-optimizer classes
    assert implementation_of(create_optimizer("lamb", p)) == "default"
    # SAM reports (and delegates to) its base's implementation
    assert implementation_of(create_optimizer("sam:adam", p)) == "fused"
    assert implementation_of(create_optimizer("sam:rmsprop", p)) == "single"
    assert implementation_of(create_optimizer("sam:adam", p, implementation="foreach")) == "foreach"


def test_auto_falls_back_when_fused_is_refused() -> None:
    p = [nn.Parameter(torch.zeros(3))]
    opt = create_optimizer("adam", p, differentiable=True)  # fused refuses differentiable
    assert implementation_of(opt) == "single"


def test_implementation_errors() -> None:
    p = [nn.Parameter(torch.zeros(3))]
    with pytest.raises(ConfigError, match="implementation"):
        create_optimizer("adam", p, implementation="turbo")
    with pytest.raises(ConfigError, match="allowed: auto, foreach, single"):
        create_optimizer("rmsprop", p, implementation="fused")
    with pytest.raises(ConfigError, match="implementation"):
        create_optimizer("adam", p, implementation="fused", foreach=True)
    # given directly with "auto", the flags are honoured as they are
    assert implementation_of(create_optimizer("adam", p, foreach=True)) == "foreach"


# ---------------------------------------------------------------- names and validation
def test_unknown_optimizer_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        create_optimizer("adamm", [nn.Parameter(torch.zeros(2))])
    message = str(info.value)
    assert "optimizer 'adamm'" in message
    for known in ("adam", "momentum", "torch.adamw", "adamw", "pytorch_optimizer.lamb", "lamb",
                  "sam", "gd", "adan"):
        assert known in message.split("allowed: ")[1].split(", ")
    assert "\n" not in message


@pytest.mark.parametrize("name", ["adam", "momentum", "torch.rprop", "pytorch_optimizer.adabelief"])
def test_unknown_hyperparameter_lists_allowed_names(name: str) -> None:
    spec = describe(name)
    with pytest.raises(ConfigError) as info:
        create_optimizer(name, [nn.Parameter(torch.zeros(2))], lr=0.1, learning_rate=0.1)
    err = info.value
    assert err.field == f"hyperparameter for {name}" and err.value == "learning_rate"
    allowed = err.allowed.split(", ")
    assert allowed == sorted(spec.hyperparameters()) and "lr" in allowed and "params" not in allowed


def test_kwargs_catch_all_does_not_accept_names() -> None:
    """AdaBelief's __init__ has **kwargs, which would silently swallow a typo."""
    cls = describe("pytorch_optimizer.adabelief").load()
    assert any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())
    with pytest.raises(ConfigError, match="'betass'"):
        create_optimizer("adabelief", [nn.Parameter(torch.zeros(2))], betass=(0.9, 0.99))
    with pytest.raises(ConfigError):
        resolved_hyperparams("adabelief", weight_decouple=False, amsgrad=True)


@pytest.mark.parametrize(("name", "hp", "field"), [
    ("momentum", {"lr": 0.0}, "lr"), ("momentum", {"lr": -1e-3}, "lr"),
    ("momentum", {"lr": float("nan")}, "lr"), ("momentum", {"lr": True}, "lr"),
    ("momentum", {"lr": "0.1"}, "lr"), ("momentum", {"momentum": 1.0}, "momentum"),
    ("momentum", {"momentum": -0.1}, "momentum"), ("adam", {"eps": -1e-8}, "eps"),
    ("adam", {"weight_decay": -0.1}, "weight_decay"), ("lamb", {"lr": -1.0}, "lr"),
    ("momentum", {"weight_decay": float("inf")}, "weight_decay"),
    ("sam:adam", {"rho": 0.0}, "rho"), ("sam", {"rho": -0.05}, "rho"),
    ("sam:adam", {"rho": float("nan")}, "rho"), ("sam:adam", {"lr": -1.0}, "lr"),
    ("sam:adam", {"betas": [0.9, 1.5]}, "betas"), ("adadelta", {"rho": 1.5}, "rho"),
    ("sam:adadelta", {"base_rho": -0.1}, "base_rho"), ("lamb", {"clamp": 0.0}, "clamp"),
    ("sophia", {"p": 0.0}, "p"), ("lars", {"trust_coefficient": -1.0}, "trust_coefficient"),
])
def test_out_of_range_hyperparameters(name: str, hp: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"hyperparameter {field} of {name}"):
        create_optimizer(name, [nn.Parameter(torch.zeros(2))], **hp)


@pytest.mark.parametrize("betas", [[0.9, 1.0], [-0.1, 0.999], [0.9], [0.9, 0.99, 0.999], "0.9",
                                   [0.9, None]])
def test_betas_out_of_range(betas: Any) -> None:
    with pytest.raises(ConfigError, match=r"betas of adam .*2 numbers each in \[0, 1\)"):
        create_optimizer("adam", [nn.Parameter(torch.zeros(2))], betas=betas)


def test_class_rejections_and_missing_arguments_are_config_errors() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ConfigError, match=r"values SGD accepts .*Nesterov"):
        create_optimizer("nesterov", p, momentum=0.0)
    with pytest.raises(ConfigError, match="num_iterations"):
        create_optimizer("ranger21", p)


def test_json_lists_become_tuples() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    assert create_optimizer("adam", p, betas=[0.8, 0.99]).defaults["betas"] == (0.8, 0.99)
    assert create_optimizer("rprop", p, etas=[0.4, 1.3]).defaults["etas"] == (0.4, 1.3)
    three = create_optimizer("pytorch_optimizer.adan", p, betas=[0.9, 0.9, 0.99])
    assert three.defaults["betas"] == (0.9, 0.9, 0.99)


def test_resolved_hyperparams() -> None:
    hp = resolved_hyperparams("adam", lr=0.01, betas=[0.8, 0.9], implementation="fused",
                              foreach=False)
    assert json.loads(json.dumps(hp)) == hp
    assert list(hp) == sorted(hp)
    assert hp["lr"] == 0.01 and hp["betas"] == [0.8, 0.9]  # user
    assert hp["eps"] == 1e-8 and hp["amsgrad"] is False  # preset
    assert hp["weight_decay"] == 0 and hp["maximize"] is False  # class defaults
    assert not {"fused", "foreach", "implementation"} & set(hp)
    # the optimizer that is built uses exactly these values
    opt = create_optimizer("adam", [nn.Parameter(torch.zeros(2))], lr=0.01, betas=[0.8, 0.9])
    for key, value in hp.items():
        built = opt.defaults[key]
        assert (list(built) if isinstance(built, tuple) else built) == value
    assert resolved_hyperparams("torch.muon")["ns_coefficients"] == list(
        inspect.signature(torch.optim.Muon.__init__).parameters["ns_coefficients"].default)
    for name in ("pytorch_optimizer.kron", "pytorch_optimizer.soap", "lbfgs"):
        json.dumps(resolved_hyperparams(name))
    with pytest.raises(ConfigError):
        resolved_hyperparams("adam", lr=-1.0)


@pytest.mark.parametrize("spec", PRESETS, ids=lambda s: s.name)
def test_preset_documents_its_defaults(spec: OptimizerSpec) -> None:
    assert spec.family == "preset" and spec.source and spec.description
    resolved = resolved_hyperparams(spec.name)
    for key, value in spec.defaults.items():
        assert f"{key}={value!r}" in spec.description
        assert resolved[key] == (list(value) if isinstance(value, tuple) else value)
    with pytest.raises(TypeError):
        spec.defaults["lr"] = 1.0  # type: ignore[index]


# ---------------------------------------------------------------- registry
def test_registry_names_and_alias_rule() -> None:
    torch_classes = {n for n in torch.optim.__all__
                     if inspect.isclass(getattr(torch.optim, n))
                     and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
                     and n != "Optimizer"}
    names = optimizers.names()
    assert {f"torch.{c.lower()}" for c in torch_classes} <= set(names)
    assert {"torch.adamw", "torch.lbfgs", "torch.muon", "torch.sparseadam"} <= set(names)
    import pytorch_optimizer

    supported = pytorch_optimizer.get_supported_optimizers()
    assert {f"pytorch_optimizer.{n}" for n in supported} <= set(names)
    assert set(PRESET_NAMES) <= set(names)
    # presets win, then torch, then pytorch_optimizer
    assert describe("adam").family == "preset" and describe("adam").cls is torch.optim.Adam
    assert all(optimizers.canonical(n) == n and describe(n).family == "preset"
               for n in PRESET_NAMES)
    assert optimizers.canonical("asgd") == "torch.asgd"
    assert optimizers.canonical("rprop") == "torch.rprop"
    assert optimizers.canonical("adan") == "pytorch_optimizer.adan"
    assert optimizers.canonical("sophiah") == "pytorch_optimizer.sophiah"
    assert "lion" in optimizers and "nope" not in optimizers and 3 not in optimizers
    assert "sam:adam" in optimizers and "sam:nope" not in optimizers
    assert "sam:lbfgs" not in optimizers and "swa:adam" not in optimizers
    assert not any(":" in n for n in names)  # sam:<base> is resolved, not listed
    assert describe("torch.adamw").family == "torch" and describe("torch.adamw").description
    assert describe("pytorch_optimizer.lamb").source.startswith("pytorch-optimizer")
    assert "optbench.optim.lamb.Lamb" in describe("lamb").source
    assert describe("torch.lbfgs").capabilities().needs_closure
    caps = describe("adam").capabilities()
    assert caps.supports_fused and caps.supports_foreach and not caps.needs_closure


def test_user_registration_is_strict() -> None:
    registry = build_registry()
    spec = OptimizerSpec(name="mysgd", family="torch", cls="torch.optim:SGD", defaults={"lr": 0.1})
    registry.register("mysgd", spec)
    assert registry.get("mysgd").load() is torch.optim.SGD
    with pytest.raises(ValueError, match="already registered"):
        registry.register("adan", spec)  # an alias of pytorch_optimizer.adan
    registry.register("adan", spec, replace=True)
    assert registry.get("adan") is spec
    with pytest.raises(ValueError, match="may not contain ':'"):
        registry.register("sam:mine", spec)


def test_concurrent_lookups_load_stages_once() -> None:
    registry = build_registry()
    names = ["adan", "asgd", "adam", "sam:tiger", "torch.rprop", "pytorch_optimizer.adan"] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(registry.canonical, names))
    assert found[:6] == ["pytorch_optimizer.adan", "torch.asgd", "adam", "sam:pytorch_optimizer.tiger",
                         "torch.rprop", "pytorch_optimizer.adan"]
    assert found == found[:6] * 4
    assert isinstance(registry, Registry) and len(registry) == len(optimizers)


def test_import_is_lazy() -> None:
    """Importing optbench.optim and using presets and torch names never imports
    pytorch-optimizer; a pytorch-optimizer name does."""
    code = (
        "import sys, torch\n"
        "import optbench.optim as o\n"
        "p = [torch.nn.Parameter(torch.zeros(2))]\n"
        "o.create_optimizer('nesterov', p); o.create_optimizer('adamw', p)\n"
        "o.create_optimizer('sam:adam', p); o.create_optimizer('lamb', p)\n"
        "o.resolved_hyperparams('torch.rprop'); assert 'radam' in o.optimizers\n"
        "assert o.capabilities('lbfgs').needs_closure and 'adabelief' in o.optimizers\n"
        "assert 'pytorch_optimizer' not in sys.modules, 'imported too early'\n"
        "o.create_optimizer('adabelief', p)\n"
        "assert 'pytorch_optimizer' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
