"""The presets of today's optimizer field, each with its paper's defaults and its contract.

The methods that lead current benchmarks (AlgoPerf v0.5: Distributed Shampoo and schedule-free
AdamW; modded-nanogpt: Muon; Semenov et al. 2025: AdEMAMix, MARS; SOAP; ADOPT) and the
learning-rate-free methods (Prodigy, D-Adaptation). Each preset pins the hyperparameters that define
the method (the authors' reference defaults, which pytorch-optimizer 4.1 uses too unless the
description says otherwise) and states its contract in the optimizer's capabilities
(:class:`optbench.optim.Capabilities`):

* *parameter partition* (``muon``): the optimizer gets only part of the model; the rest goes to an
  auxiliary AdamW (:mod:`optbench.optim.partition`);
* *train/eval switching* (``schedulefree_*``): evaluated and saved at the averaged iterate x,
  trained at y (``techniques/optimizer_modes.py``);
* *learning-rate semantics* (``prodigy``, ``dadapt_*``): ``lr`` is a multiplier of the step size the
  method estimates, 1.0 by design; protocols that share one learning rate give these 1.0.

Every preset is checked against its authors' package or a NumPy transcription of the paper's
algorithm (``tests/test_optim_conformance_modern.py``).
"""

from __future__ import annotations

from typing import Any

from optbench.optim.base import OptimizerSpec, check_positive, describe_defaults


def _preset(name: str, cls: str, defaults: dict[str, Any], summary: str, source: str, *,
            traits: frozenset[str] = frozenset(), rules: dict[str, Any] | None = None,
            partition: str | None = None) -> OptimizerSpec:
    return OptimizerSpec(name=name, family="preset", cls=cls, defaults=defaults, source=source,
                         description=f"{summary} Defaults: {describe_defaults(defaults)}.",
                         traits=traits, rules=rules or {}, partition=partition)


MODERN_PRESETS: tuple[OptimizerSpec, ...] = (
    _preset(
        "muon", "pytorch_optimizer:Muon",
        {"lr": 0.02, "momentum": 0.95, "nesterov": True, "ns_steps": 5, "weight_decay": 0.0,
         "use_adjusted_lr": False, "adamw_lr": 3e-4, "adamw_betas": (0.9, 0.95), "adamw_wd": 0.0,
         "adamw_eps": 1e-10},
        "Muon for the hidden weight matrices (conv filters flattened to out x in*k*k): Nesterov "
        "momentum B = mu*B + G, update O = NS5(G + mu*B) (five quintic Newton-Schulz iterations "
        "X = a*X + (b*A + c*A^2)*X, A = X*X^T, (a, b, c) = (3.4445, -4.7750, 2.0315), from "
        "X0 = U/||U||_F), W -= lr*sqrt(max(1, out/in))*O. Everything else (first and last layer, "
        "embeddings, biases, normalization gains) is trained by an auxiliary AdamW with "
        "adamw_lr, adamw_betas, adamw_eps, adamw_wd (partition 'hidden_matrices', recorded with "
        "the run). Newton-Schulz runs in bfloat16 whatever the parameters' dtype, as in the authors' code; "
        "the library normalizes X0 by max(||U||, 1e-7) where the authors use ||U|| + 1e-7.",
        "Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein 2024, 'Muon: An optimizer for "
        "hidden layers in neural networks' (blog and the authors' muon package, "
        "SingleDeviceMuonWithAuxAdam); pytorch_optimizer.Muon.",
        rules={"adamw_lr": (check_positive, "a number > 0"),
               "ns_steps": (check_positive, "an integer > 0")},
        partition="hidden_matrices"),
    _preset(
        "schedulefree_adamw", "pytorch_optimizer:ScheduleFreeAdamW",
        {"lr": 2.5e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "warmup_steps": 0,
         "r": 0.0, "weight_lr_power": 2.0},
        "Schedule-free AdamW: gradients at y = (1-b1)*z + b1*x, z -= lr_t*g/(sqrt(v_hat)+eps), "
        "x = (1-c)*x + c*z with c = lr_t^2/sum lr_i^2 (weight_lr_power 2); evaluated and saved "
        "at x (optimizer.eval()), trained at y (optimizer.train()): contract train_eval_modes.",
        "Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky 2024 (NeurIPS), 'The Road Less "
        "Scheduled', Algorithm 1 (AdamW form, sec. 6) and the authors' schedulefree package "
        "(AdamWScheduleFree); pytorch_optimizer.ScheduleFreeAdamW."),
    _preset(
        "schedulefree_sgd", "pytorch_optimizer:ScheduleFreeSGD",
        {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0,
         "weight_lr_power": 2.0},
        "Schedule-free SGD: gradients at y = (1-beta)*z + beta*x, z -= lr*g, "
        "x = (1-c)*x + c*z with c = lr^2/sum lr_i^2; evaluated and saved at x, trained at y "
        "(contract train_eval_modes). lr=1.0 is the authors' package default.",
        "Defazio et al. 2024 (NeurIPS), 'The Road Less Scheduled', Algorithm 1 and the "
        "schedulefree package (SGDScheduleFree); pytorch_optimizer.ScheduleFreeSGD."),
    _preset(
        "soap", "pytorch_optimizer:SOAP",
        {"lr": 3e-3, "betas": (0.95, 0.95), "eps": 1e-8, "weight_decay": 0.01,
         "precondition_frequency": 10, "max_precondition_dim": 10000, "merge_dims": False,
         "precondition_1d": False, "normalize_gradient": False, "correct_bias": True},
        "SOAP: Adam run in the eigenbasis of Shampoo's preconditioner: L = b2*L + (1-b2)*G*G^T, "
        "R = b2*R + (1-b2)*G^T*G, eigenbases Q_L, Q_R refreshed every precondition_frequency steps "
        "(eigh first, then one power iteration + QR); G' = Q_L^T*G*Q_R, Adam moments on G', "
        "update Q_L*N'*Q_R^T; 1-d tensors take plain Adam steps. The first step only initializes the "
        "preconditioner; the QR iteration runs in float32 (as the authors' code does).",
        "Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade 2025 (ICLR), "
        "'SOAP: Improving and Stabilizing Shampoo using Adam', Algorithm 3 and the authors' "
        "reference code defaults; pytorch_optimizer.SOAP.",
        rules={"precondition_frequency": (check_positive, "an integer > 0")}),
    _preset(
        "shampoo", "pytorch_optimizer:ScalableShampoo",
        {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0, "start_preconditioning_step": 25,
         "preconditioning_compute_steps": 10, "statistics_compute_steps": 1, "block_size": 512,
         "nesterov": True, "matrix_eps": 1e-6, "diagonal_eps": 1e-10},
        "Shampoo with blocked Kronecker preconditioners and layer-wise grafting: per block "
        "L = b2*L + (1-b2)*G*G^T, R = b2*R + (1-b2)*G^T*G, update L^(-1/4)*G*R^(-1/4) (inverse "
        "roots by coupled Newton iterations every preconditioning_compute_steps), rescaled to the "
        "norm of the grafted SGD step. The AlgoPerf-winning Distributed Shampoo (Shi et al. 2023) "
        "has no maintained package on PyPI; this is the closest maintained one (Anil et al.'s "
        "scalable variant). preconditioning_compute_steps=10 instead of the library's 1000 so "
        "that short runs are preconditioned at all. Tensors with at most block_size entries (biases, "
        "small layers) are never preconditioned in this library (its merge_small_dims): they take the "
        "grafted SGD-Nesterov step.",
        "Gupta, Koren & Singer 2018 (ICML), 'Shampoo', Algorithm 2; Anil, Gupta, Koren, Regan & "
        "Singer 2020, 'Scalable Second Order Optimization for Deep Learning', Algorithm 2; "
        "pytorch_optimizer.ScalableShampoo.",
        rules={"preconditioning_compute_steps": (check_positive, "an integer > 0"),
               "block_size": (check_positive, "an integer > 0")}),
    _preset(
        "prodigy", "pytorch_optimizer:Prodigy",
        {"lr": 1.0, "betas": (0.9, 0.999), "beta3": None, "eps": 1e-8, "weight_decay": 0.0,
         "weight_decouple": True, "bias_correction": False, "safeguard_warmup": False,
         "d0": 1e-6, "d_coef": 1.0, "growth_rate": float("inf")},
        "Prodigy: Adam whose step size d is estimated online, d = max(d, d_coef * "
        "sum <g, x0 - x> / ||s||_1) with s = sqrt(b2)*s + (1-sqrt(b2))*d*lr*g; lr multiplies d "
        "and is 1.0 by design (contract learning_rate_free: protocols that share a learning rate "
        "give it lr=1.0). Weight decay is decoupled; the library ignores weight_decouple=False (coupled "
        "decay is added after the gradient was used). The step-size statistics are kept in float32.",
        "Mishchenko & Defazio 2024 (ICML), 'Prodigy: An Expeditiously Adaptive Parameter-Free "
        "Learner', Algorithm 4 (Adam form) and the authors' prodigyopt package; "
        "pytorch_optimizer.Prodigy.",
        traits=frozenset({"learning_rate_free"})),
    _preset(
        "dadapt_adam", "pytorch_optimizer:DAdaptAdam",
        {"lr": 1.0, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
         "weight_decouple": False, "bias_correction": False, "d0": 1e-6,
         "growth_rate": float("inf")},
        "D-Adaptation Adam: the step size d is a lower bound on the distance to the solution "
        "estimated from the gradients, d = max(d, ||s||_1-based estimate); lr multiplies d and is "
        "1.0 by design (contract learning_rate_free).",
        "Defazio & Mishchenko 2023 (ICML), 'Learning-Rate-Free Learning by D-Adaptation', "
        "Algorithm 5 (Adam) and the authors' dadaptation package; pytorch_optimizer.DAdaptAdam.",
        traits=frozenset({"learning_rate_free"})),
    _preset(
        "dadapt_sgd", "pytorch_optimizer:DAdaptSGD",
        {"lr": 1.0, "momentum": 0.9, "weight_decay": 0.0, "d0": 1e-6, "growth_rate": float("inf")},
        "D-Adaptation SGD with momentum: d estimated online from sum lr_k*d_k*<g_k, s_k>; lr "
        "multiplies d and is 1.0 by design (contract learning_rate_free). momentum=0.9 is "
        "pytorch-optimizer's default and the paper's experiments'; the authors' package defaults to 0.",
        "Defazio & Mishchenko 2023 (ICML), Algorithm 1 with momentum (the dadaptation package's "
        "DAdaptSGD); pytorch_optimizer.DAdaptSGD.",
        traits=frozenset({"learning_rate_free"})),
    _preset(
        "ademamix", "pytorch_optimizer:AdEMAMix",
        {"lr": 1e-3, "betas": (0.9, 0.999, 0.9999), "alpha": 5.0, "t_alpha_beta3": None,
         "eps": 1e-8, "weight_decay": 0.0, "weight_decouple": True},
        "AdEMAMix: Adam with a second, slow momentum m2 = b3*m2 + (1-b3)*g mixed in: "
        "p -= lr*((m1_hat + alpha*m2)/(sqrt(v_hat) + eps) + wd*p); t_alpha_beta3 (None: off) "
        "warms alpha and b3 up over that many steps as the paper recommends for long runs. Weight "
        "decay is decoupled as in Algorithm 1 (weight_decouple=True; the library's default is coupled).",
        "Pagliardini, Ablin & Grangier 2025 (ICLR), 'The AdEMAMix Optimizer: Better, Faster, "
        "Older', Algorithm 1; pytorch_optimizer.AdEMAMix.",
        rules={"alpha": (check_positive, "a number > 0")}),
    _preset(
        "adopt", "pytorch_optimizer:ADOPT",
        {"lr": 1e-3, "betas": (0.9, 0.9999), "eps": 1e-6, "weight_decay": 0.0},
        "ADOPT: the second moment of the previous step normalizes the current gradient before "
        "momentum: v_0 = g_0^2; m = b1*m + (1-b1)*clip(g/max(sqrt(v), eps), t^(1/4)); p -= lr*m; "
        "v = b2*v + (1-b2)*g^2 (the clipped form of the authors' code). The library clips update t at "
        "(t+1)^(1/4), one step later than the authors' t^(1/4).",
        "Taniguchi, Harada, Minegishi, Oshima, Jeong, Nagahara, Iiyama, Suzuki, Iwasawa & Matsuo "
        "2024 (NeurIPS), 'ADOPT: Modified Adam Can Converge with Any b2 with the Optimal Rate', "
        "Algorithm 2 with clipping (sec. 4); pytorch_optimizer.ADOPT."),
    _preset(
        "mars", "pytorch_optimizer:MARS",
        {"lr": 3e-3, "betas": (0.95, 0.99), "gamma": 0.025, "mars_type": "adamw", "eps": 1e-8,
         "weight_decay": 0.0, "optimize_1d": False, "lr_1d": 3e-3, "betas_1d": (0.9, 0.95),
         "weight_decay_1d": 0.1},
        "MARS-AdamW: variance-reduced gradient c = g + gamma*b1/(1-b1)*(g - g_prev), clipped to "
        "norm 1, then AdamW moments on c. Tensors of 1 dimension take a plain AdamW step with "
        "lr_1d, betas_1d, weight_decay_1d (optimize_1d=False, the authors' default): they keep "
        "lr_1d=3e-3 when lr is given (schedules scale both) and decay by weight_decay_1d=0.1 whatever "
        "weight_decay is.",
        "Yuan, Liu, Wu, Zhou, Gu & Chen 2025 (ICML), 'MARS: Unleashing the Power of Variance "
        "Reduction for Training Large Models', Algorithm 2 (MARS-AdamW, approximate form); "
        "pytorch_optimizer.MARS."),
)
