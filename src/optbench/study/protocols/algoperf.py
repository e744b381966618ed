"""``algoperf-lite``: external tuning with K quasirandom trials per study and S repeated studies;
a submission's score on a task is the median over studies of its fastest trial's time to the
target, and submissions are compared by performance profiles and their integral over tau in
[1, 4] (Dahl et al. 2023, "Benchmarking Neural Network Training Algorithms", sec. 4).

Options (``[protocol]``): ``studies`` (S, default 3; AlgoPerf uses 5). ``[budget] trials`` is K
(AlgoPerf: 5) and ``[budget] epochs`` / ``seconds`` the per-trial budget. Each recipe is a
submission; study ``j`` samples ``[search.space]`` quasirandomly (sampler ``qmc``, seed
``search.seed + j``) and runs its trials with seed ``j``. Time-to-target counts training seconds
up to the first epoch whose validation metric reached the target (steps are reported as well:
they are reproducible, seconds are not); a submission that never reaches it scores ``inf``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from optbench.analysis.protocols import AlgoperfResult, algoperf_entry, algoperf_result, algoperf_study
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    no_check,
    prepared_tasks,
    recipe_labels,
    take_int,
    unknown_keys,
)

DEFAULT_STUDIES = 3


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``studies`` (>= 1, default :data:`DEFAULT_STUDIES`)."""
    unknown_keys(table, ("studies",), report)
    return {"studies": take_int(table, "studies", DEFAULT_STUDIES, report)}


def planned_runs(config: StudyConfig) -> int:
    """tasks x submissions x studies x trials."""
    return len(config.tasks) * len(config.recipes) * config.options["studies"] * config.budget.trials


def run(config: StudyConfig, context: StudyContext) -> AlgoperfResult:
    """Every (task, submission, study): a quasirandom search; then medians and profiles."""
    assert config.search is not None
    prepared = prepared_tasks(config, context)
    recipes = canonical_recipes(config.recipes)
    labels = recipe_labels(recipes)
    entries = []
    for ref, _, keys in prepared:
        for label, recipe in zip(labels, recipes, strict=True):
            studies = []
            for j in range(config.options["studies"]):
                search = config.search.search_config(n_trials=config.budget.trials, objective=keys.valid_key,
                                                     direction=keys.direction, sampler="qmc", pruner="none",
                                                     seed=config.search.seed + j)
                outcome = context.search(ref, recipe, search, run_seed=j)
                trials = [t.result for t in outcome.trials if t.result is not None]
                studies.append(algoperf_study(keys, j, trials))
            entries.append(algoperf_entry(keys.name, label, studies))
    return algoperf_result({k.name: k for _, _, k in prepared}, entries)


PROTOCOL = ProtocolSpec(
    name="algoperf-lite",
    summary="K quasirandom trials per study, S studies; median fastest time-to-target; performance profiles",
    source="Dahl et al. 2023 (AlgoPerf: Benchmarking Neural Network Training Algorithms), sec. 4",
    parse_options=parse_options, check=no_check, planned_runs=planned_runs, run=run, needs_space=True)
