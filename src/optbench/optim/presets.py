"""The reference presets: the field's optimizer names with fixed, documented defaults.

Each preset pins the hyperparameters that define the method (the library defaults of torch 2.13
and pytorch-optimizer 4.1, stated here so that they cannot drift with a release; where the
paper's constants differ, the description says so); any other argument of the class may be
given by the user, and any of these overridden. Every preset is checked against a NumPy
reference of its published update rule in ``tests/test_optim_conformance.py``.
pytorch-optimizer classes are lazy import targets, so using a torch preset never imports it.
"""

from __future__ import annotations

from typing import Any

import torch

from optbench.optim.base import OptimizerSpec, check_closed_unit, check_positive, describe_defaults


def _preset(name: str, cls: type[torch.optim.Optimizer] | str, defaults: dict[str, Any],
            summary: str, source: str, traits: frozenset[str] = frozenset(),
            rules: dict[str, Any] | None = None) -> OptimizerSpec:
    return OptimizerSpec(name=name, family="preset", cls=cls, defaults=defaults, source=source,
                         description=f"{summary} Defaults: {describe_defaults(defaults)}.",
                         traits=traits, rules=rules or {})


ADAM_BETAS = (0.9, 0.999)

#: The presets other than ``sam`` (built over ``momentum`` in :mod:`optbench.optim.catalog`).
PRESETS: tuple[OptimizerSpec, ...] = (
    _preset(
        "gd", torch.optim.SGD, {"lr": 1e-3, "momentum": 0.0},
        "Full-batch gradient descent: p -= lr * grad of the loss over the whole training set "
        "(capability full_batch_only; the same update as sgd).",
        "Cauchy 1847; torch.optim.SGD with momentum=0 on the full batch.",
        traits=frozenset({"full_batch_only"})),
    _preset(
        "sgd", torch.optim.SGD, {"lr": 1e-3, "momentum": 0.0},
        "Plain stochastic gradient descent: p -= lr * g.",
        "Robbins & Monro 1951; torch.optim.SGD with momentum=0."),
    _preset(
        "momentum", torch.optim.SGD,
        {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "nesterov": False},
        "SGD with heavy-ball momentum in PyTorch's form v = mu*v + g, p -= lr*v; for a constant "
        "lr this equals Polyak's u = mu*u + lr*g, p -= u (u = lr*v).",
        "Polyak 1964, heavy-ball method; Sutskever et al. 2013, eqs. (1)-(2); torch.optim.SGD."),
    _preset(
        "nesterov", torch.optim.SGD,
        {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "nesterov": True},
        "SGD with Nesterov momentum in PyTorch's reformulation v = mu*v + g, p -= lr*(g + mu*v); "
        "its parameters are the look-ahead points theta + mu*u of Sutskever's form "
        "u = mu*u - lr*grad(theta + mu*u), theta += u.",
        "Nesterov 1983; Sutskever et al. 2013, eqs. (3)-(4); torch.optim.SGD(nesterov=True)."),
    _preset(
        "adagrad", torch.optim.Adagrad,
        {"lr": 1e-2, "eps": 1e-10, "initial_accumulator_value": 0.0, "lr_decay": 0.0},
        "Diagonal AdaGrad: G += g^2, p -= lr*g/(sqrt(G) + eps). torch adds eps outside the square "
        "root (the paper's form is sqrt(G + eps) or delta*I + diag(G)^(1/2)).",
        "Duchi, Hazan & Singer 2011 (JMLR), diagonal update; torch.optim.Adagrad."),
    _preset(
        "rmsprop", torch.optim.RMSprop,
        {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False},
        "RMSProp: v = alpha*v + (1-alpha)*g^2, p -= lr*g/(sqrt(v) + eps). torch adds eps outside "
        "the square root; Hinton's lecture used a decay of 0.9, torch's default alpha is 0.99.",
        "Tieleman & Hinton 2012, Coursera 'Neural Networks for Machine Learning' lecture 6e; "
        "torch.optim.RMSprop."),
    _preset(
        "adadelta", torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
        "Adadelta: E[g^2] = rho*E[g^2] + (1-rho)*g^2, dx = -sqrt(E[dx^2] + eps)/sqrt(E[g^2] + eps)*g, "
        "E[dx^2] = rho*E[dx^2] + (1-rho)*dx^2, p += lr*dx. torch adds the multiplier lr "
        "(lr=1 is Zeiler's rule); Zeiler's experiments used rho=0.95, eps=1e-6, torch's default "
        "rho is 0.9.",
        "Zeiler 2012, 'ADADELTA: An Adaptive Learning Rate Method', Algorithm 1; "
        "torch.optim.Adadelta.",
        rules={"rho": (check_closed_unit, "a number in [0, 1]")}),
    _preset(
        "adam", torch.optim.Adam,
        {"lr": 1e-3, "betas": ADAM_BETAS, "eps": 1e-8, "amsgrad": False},
        "Adam with bias correction: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2, "
        "p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).",
        "Kingma & Ba 2015 (ICLR), Algorithm 1, with the paper's defaults; torch.optim.Adam."),
    _preset(
        "adamw", torch.optim.AdamW,
        {"lr": 1e-3, "betas": ADAM_BETAS, "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False},
        "Adam with decoupled weight decay: p -= lr*(m_hat/(sqrt(v_hat) + eps) + wd*p). The paper "
        "writes p -= eta_t*(alpha*m_hat/(sqrt(v_hat)+eps) + lambda*p) with a schedule multiplier "
        "eta_t; torch multiplies the decay by lr, so lambda_paper = lr * weight_decay at eta_t=1.",
        "Loshchilov & Hutter 2019 (ICLR), 'Decoupled Weight Decay Regularization', Algorithm 2; "
        "torch.optim.AdamW."),
    _preset(
        "nadam", torch.optim.NAdam,
        {"lr": 2e-3, "betas": ADAM_BETAS, "eps": 1e-8, "momentum_decay": 4e-3},
        "Nesterov-accelerated Adam in torch's (Keras's) form: momentum schedule "
        "mu_t = b1*(1 - 0.5*0.96^(t*psi)) with psi = momentum_decay, m = b1*m + (1-b1)*g, "
        "v = b2*v + (1-b2)*g^2, v_hat = v/(1-b2^t), "
        "p -= lr*(1-mu_t)/(1-prod_{i<=t} mu_i) * g/(sqrt(v_hat)+eps) "
        "+ lr*mu_{t+1}/(1-prod_{i<=t+1} mu_i) * m/(sqrt(v_hat)+eps). Dozat's Algorithm 2 "
        "averages m with the scheduled mu_t instead of the constant b1.",
        "Dozat 2016, 'Incorporating Nesterov Momentum into Adam' (ICLR workshop); "
        "torch.optim.NAdam."),
    _preset(
        "radam", torch.optim.RAdam,
        {"lr": 1e-3, "betas": ADAM_BETAS, "eps": 1e-8, "decoupled_weight_decay": False},
        "Rectified Adam: rho_inf = 2/(1-b2) - 1, rho_t = rho_inf - 2t*b2^t/(1-b2^t); when "
        "rho_t > 5, p -= lr*r_t*m_hat/(sqrt(v_hat) + eps) with "
        "r_t = sqrt((rho_t-4)(rho_t-2)rho_inf/((rho_inf-4)(rho_inf-2)rho_t)), else "
        "p -= lr*m_hat. The paper's Algorithm 2 switches at rho_t > 4 and has no eps; torch "
        "(like the authors' code) switches at 5, so step 5 (rho_5 = 4.996) is an SGD step.",
        "Liu, Jiang, He, Chen, Liu, Gao & Han 2020 (ICLR), 'On the Variance of the Adaptive "
        "Learning Rate and Beyond', Algorithm 2; torch.optim.RAdam."),
    _preset(
        "adabelief", "pytorch_optimizer:AdaBelief",
        {"lr": 1e-3, "betas": ADAM_BETAS, "eps": 1e-16, "weight_decouple": True,
         "rectify": False, "ams_bound": False},
        "AdaBelief: m = b1*m + (1-b1)*g, s = b2*s + (1-b2)*(g-m)^2 + eps (eps also inside s), "
        "p -= lr*(m/(1-b1^t))/(sqrt(s/(1-b2^t)) + eps).",
        "Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris & Duncan 2020 (NeurIPS), "
        "Algorithm 2; pytorch_optimizer.AdaBelief."),
    _preset(
        "lbfgs", torch.optim.LBFGS,
        {"lr": 1.0, "max_iter": 20, "history_size": 100, "tolerance_grad": 1e-7,
         "tolerance_change": 1e-9, "line_search_fn": "strong_wolfe"},
        "Limited-memory BFGS with a strong-Wolfe line search, full batch (capability "
        "full_batch_only: its curvature pairs and line search assume a deterministic loss; "
        "torch.lbfgs without the preset runs on mini-batches). One step is up to max_iter=20 "
        "iterations and about 25 closure evaluations.",
        "Liu & Nocedal 1989; Nocedal & Wright 2006, Algorithm 7.5 with a strong-Wolfe line "
        "search (Algorithm 3.5); torch.optim.LBFGS.",
        traits=frozenset({"full_batch_only"})),
    _preset(
        "sophia", "pytorch_optimizer:SophiaH",
        {"lr": 6e-2, "betas": (0.96, 0.99), "p": 1e-2, "update_period": 10, "num_samples": 1,
         "hessian_distribution": "gaussian", "eps": 1e-12, "weight_decay": 0.0},
        "Sophia with Hutchinson's Hessian-diagonal estimate (needs backward(create_graph=True)): "
        "m = b1*m + (1-b1)*g; every update_period steps h = b2*h + (1-b2)*z*(Hz); "
        "p -= lr*clip(m/max(h, eps), p). The paper's eta*clip(m/max(gamma*h, eps), 1) is the "
        "same rule with lr = eta/gamma, p = gamma, eps_lib = eps/gamma (lr 0.06 = 6e-4/0.01).",
        "Liu, Li, Hall, Liang & Ma 2024 (ICLR), 'Sophia: A Scalable Stochastic Second-order "
        "Optimizer', Algorithm 3 with the Hutchinson estimator (Sophia-H); "
        "pytorch_optimizer.SophiaH.",
        traits=frozenset({"create_graph"}),
        rules={"p": (check_positive, "a number > 0 (the clipping threshold)")}),
    _preset(
        "lion", "pytorch_optimizer:Lion",
        {"lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "weight_decouple": True},
        "Lion: c = b1*m + (1-b1)*g, p -= lr*(sign(c) + wd*p), m = b2*m + (1-b2)*g.",
        "Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu & Le 2023 (NeurIPS), "
        "'Symbolic Discovery of Optimization Algorithms', Algorithm 2; pytorch_optimizer.Lion."),
    _preset(
        "lars", "pytorch_optimizer:LARS",
        {"lr": 1.0, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0,
         "trust_coefficient": 1e-3, "nesterov": False},
        "LARS: for every tensor with 2+ dimensions, local_lr = eta*||w||/(||g|| + wd*||w||), "
        "v = m*v + local_lr*(g + wd*w), w -= lr*v (PyTorch's momentum form; the paper's "
        "v = m*v + lr*local_lr*(g + wd*w), w -= v is the same for a constant lr). Biases and "
        "other 0/1-d tensors take plain SGD-momentum steps without decay, as is common practice.",
        "You, Gitman & Ginsburg 2017, 'Large Batch Training of Convolutional Networks', "
        "Algorithm 1 and eq. (6); pytorch_optimizer.LARS.",
        rules={"trust_coefficient": (check_positive, "a number > 0")}),
    _preset(
        "lamb", "optbench.optim.lamb:Lamb",
        {"lr": 1e-3, "betas": ADAM_BETAS, "eps": 1e-6, "weight_decay": 0.0, "clamp": 10.0},
        "LAMB: Adam's r = m_hat/(sqrt(v_hat) + eps) + wd*x per tensor, "
        "x -= lr*min(||x||, clamp)/||r|| * r. optbench's own implementation: "
        "pytorch_optimizer.Lamb scales the step by an extra 1/(1-b1^t) (10x at t=1).",
        "You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh 2020 (ICLR), "
        "'Large Batch Optimization for Deep Learning', Algorithm 2; optbench.optim.lamb.Lamb.",
        rules={"clamp": (check_positive, "a number > 0")}),
)
