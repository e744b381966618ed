"""``continual``: a sequence of tasks learned one after another (split MNIST / split Fashion-MNIST by
class pairs, :mod:`optbench.tasks.split`), scored by average accuracy and forgetting (Chaudhry et al.
2018, eq. 5-6; :mod:`optbench.analysis.continual`) with CIs over seeds.

The study's ``tasks`` are the sequence in order (``split_mnist[pair=0]`` ... ``split_mnist[pair=4]``);
each recipe is the per-stage training (optimizer, hyperparameters, budget). For every method, recipe
and seed the protocol trains a *chain*: stage 0 trains task 0 from the seeded initialization (the
same run for every method), stage ``k`` starts from stage ``k - 1``'s final weights
(``init_from``) and adds the method's technique:

* ``finetune``: nothing (plain fine-tuning, the lower bound);
* ``lwf``: ``lwf:teacher=<stage k-1>`` (Li & Hoiem 2017, temperature ``lwf_temperature``);
* ``ewc``: one ``ewc:run=<stage j>,task=<task j>`` per earlier stage ``j < k`` (Kirkpatrick et al.
  2017: one penalty per earlier task, Fisher on that task's training inputs, ``ewc_strength``).

Every stage of every chain runs at the same budget. After the last stage, each stage's stored weights
are evaluated on the test set of every task seen so far: ``a[l][j]``, the tasks' target metric
(accuracy). The protocol stores every stage's final weights (it needs them to go on), in the study's
weights directory (``[execution] weights_dir``, default ``<store>.weights``).

Options (``[protocol]``): ``methods`` (default all three), ``ewc_strength`` (lambda, default 5000 as
van de Ven & Tolias 2019 for split MNIST), ``ewc_samples`` (training inputs of the Fisher, 1000),
``lwf_temperature`` (2), ``lwf_alpha`` (1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from optbench.analysis.continual import ContinualResult, continual_method
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus, TechniqueSpec
from optbench.runs.plan import RunSpec
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    prepared_tasks,
    recipe_labels,
    unknown_keys,
)

METHODS = ("finetune", "lwf", "ewc")
#: Techniques the protocol adds itself; a recipe naming them is refused.
OWN_TECHNIQUES = ("init_from", "lwf", "ewc")
DEFAULTS: dict[str, Any] = {"methods": list(METHODS), "ewc_strength": 5000.0, "ewc_samples": 1000,
                            "lwf_temperature": 2.0, "lwf_alpha": 1.0}


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``methods``, ``ewc_strength``, ``ewc_samples``, ``lwf_temperature``, ``lwf_alpha``."""
    unknown_keys(table, tuple(DEFAULTS), report)
    out = dict(DEFAULTS)
    methods = table.get("methods", DEFAULTS["methods"])
    if not isinstance(methods, list) or not methods or any(m not in METHODS for m in methods) \
            or len(set(methods)) != len(methods):
        report("methods", f"a non-empty list of distinct methods from {', '.join(METHODS)}, got {methods!r}")
    else:
        out["methods"] = list(methods)
    for key in ("ewc_strength", "lwf_temperature", "lwf_alpha"):
        value = table.get(key, DEFAULTS[key])
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            report(key, f"a number > 0, got {value!r}")
        else:
            out[key] = float(value)
    samples = table.get("ewc_samples", DEFAULTS["ewc_samples"])
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        report("ewc_samples", f"an integer >= 1, got {samples!r}")
    else:
        out["ewc_samples"] = samples
    return out


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """Two or more tasks; recipes without the techniques the protocol adds."""
    problems = []
    if len(config.tasks) < 2:
        problems.append(("study.tasks", "a sequence of two or more tasks (e.g. split_mnist[pair=0] ... [pair=4])"))
    for i, recipe in enumerate(config.recipes):
        for j, spec in enumerate(recipe.techniques):
            if spec.name in OWN_TECHNIQUES:
                problems.append((f"recipes[{i}].techniques[{j}]", f"no {spec.name}: protocol continual adds "
                                                                  f"init_from, lwf and ewc itself"))
    return problems


def planned_runs(config: StudyConfig) -> int:
    """recipes x seeds x (1 + (tasks - 1) x methods): stage 0 is shared by the methods."""
    methods = len(config.options.get("methods", METHODS))
    return len(config.recipes) * len(config.seeds) * (1 + (len(config.tasks) - 1) * methods)


def stage_recipe(base: Recipe, method: str, stage: int, earlier: list[str], task_refs: list[str],
                 options: Mapping[str, Any]) -> Recipe:
    """The recipe of stage ``stage`` of a ``method`` chain: ``base`` (stage 0), else ``base`` started
    from the previous stage's weights plus the method's techniques (``earlier``: the run ids of the
    chain's stages so far; ``task_refs``: the sequence)."""
    if stage == 0:
        return base
    added = [TechniqueSpec("init_from", {"run": earlier[-1]})]
    if method == "lwf":
        added.append(TechniqueSpec("lwf", {"teacher": earlier[-1], "alpha": options["lwf_alpha"],
                                           "temperature": options["lwf_temperature"]}))
    elif method == "ewc":
        added += [TechniqueSpec("ewc", {"run": earlier[j], "task": task_refs[j], "strength": options["ewc_strength"],
                                        "samples": options["ewc_samples"]}) for j in range(stage)]
    return dataclasses.replace(base, techniques=(*base.techniques, *added))


def run(config: StudyConfig, context: StudyContext) -> ContinualResult:
    """Train every chain stage by stage (each stage one plan), then evaluate every stage's weights on
    every task seen so far and summarize per method."""
    from optbench.runs.weights import WeightsDir

    if context.weights is None:
        raise ConfigError("execution.weights_dir", None, "a directory for run weights: protocol continual stores "
                                                         "every stage's weights (required unless the store is a "
                                                         "SQLite file)")
    if not context.weights.saving:  # the next stage starts from them
        context = dataclasses.replace(context, weights=WeightsDir(context.weights.path, saving=True))
    options = config.options
    prepared = prepared_tasks(config, context)
    refs = [ref for ref, _, _ in prepared]
    recipes = canonical_recipes(config.recipes)
    labels = recipe_labels(recipes)
    chains = [(method, r, seed) for method in options["methods"] for r in range(len(recipes)) for seed in config.seeds]
    ids: dict[tuple[str, int, int], list[str]] = {c: [] for c in chains}
    alive = set(chains)
    for k, (ref, task, _) in enumerate(prepared):
        specs: dict[str, RunSpec] = {}
        for chain in chains:
            if chain not in alive:
                continue
            method, r, seed = chain
            spec = RunSpec(ref, task.name, stage_recipe(recipes[r], method, k, ids[chain], refs, options), seed)
            ids[chain].append(spec.run_id)
            specs.setdefault(spec.run_id, spec)  # stage 0 is one run for every method
        status = {res.run_id: res.status for res in context.execute(list(specs.values()))}
        alive = {c for c in alive if status.get(ids[c][-1]) is RunStatus.FINISHED}  # a failed stage ends a chain
    metric = prepared[0][1].target.metric
    matrices = _accuracy_matrices(prepared, {c: ids[c] for c in alive}, context, metric)
    methods = []
    for method in options["methods"]:
        for r, label in enumerate(labels):
            done = [(seed, matrices[(method, r, seed)]) for seed in config.seeds if (method, r, seed) in matrices]
            name = method if len(recipes) == 1 else f"{method} {label}"
            methods.append(continual_method(name, [s for s, _ in done], [m for _, m in done]))
    return ContinualResult(tuple(task.name for _, task, _ in prepared), metric, tuple(methods))


def _accuracy_matrices(prepared: list[tuple[str, Any, Any]], chains: Mapping[tuple[str, int, int], list[str]],
                       context: StudyContext, metric: str) -> dict[tuple[str, int, int], list[list[float]]]:
    """``a[l][j]``: the test ``metric`` on task ``j`` of stage ``l``'s stored weights (``j <= l``)."""
    import torch

    from optbench.engine.loop import evaluate

    tests = [task.load_data().test for _, task, _ in prepared]
    t = len(prepared)
    cache: dict[str, list[float]] = {}  # stage 0 is shared: evaluated once
    out = {}
    for chain, run_ids in chains.items():
        matrix = [[math.nan] * t for _ in range(t)]
        for stage, rid in enumerate(run_ids):
            if rid not in cache:
                torch.manual_seed(0)
                model = prepared[stage][1].make_model()
                model.load_state_dict(context.weights.load(rid))
                cache[rid] = [evaluate(model, prepared[j][1], tests[j], "test")[f"test_{metric}"]
                              for j in range(stage + 1)]
            matrix[stage][:stage + 1] = cache[rid]
        out[chain] = matrix
    return out


PROTOCOL = ProtocolSpec(
    name="continual", summary="a sequence of tasks learned one after another; average accuracy and forgetting "
                              "over seeds (plain fine-tuning, LwF, EWC)",
    source="Chaudhry et al. 2018 (metrics); Li & Hoiem 2017 (LwF); Kirkpatrick et al. 2017 (EWC)",
    parse_options=parse_options, check=check, planned_runs=planned_runs, run=run)
