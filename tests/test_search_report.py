"""An architecture search in the report: each trial's metric against its size with a non-dominated Pareto
front, the best so far against trials and seconds, and the trial-only architectures kept out of the
per-task sections."""

from __future__ import annotations

import math
from dataclasses import replace

from optbench.analysis.search_trials import architecture_searches
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.report.html import render_report

TRIALS = [  # (block, channels, trainable parameters, valid accuracy or None for an unrealizable point)
    ("plain", "8-16", 4_962, 0.61), ("residual", "8-16", 5_122, 0.89), ("inverted", "16-32", 7_386, 0.91),
    ("plain", "16-32", 7_514, 0.90), ("residual", "16-32", 30_000, 0.93), ("plain", "8-8-8-8-8", None, None),
    ("plain", "16-32-64", 26_394, 0.985),
]


def _trial(number: int, block: str, channels: str, parameters: int | None, accuracy: float | None) -> RunResult:
    task = f"nas_cnn[block={block},channels={channels}]"
    recipe = Recipe("adam", {"lr": 0.01}, epochs=1)
    if accuracy is None:
        return RunResult(run_id(task, recipe, 0), task, recipe, 0, RunStatus.FAILED, [],
                         "unrealizable architecture: invalid channels", environment={"trial": number},
                         total_seconds=0.0)
    metrics = {f"{s}_{m}": (accuracy if m == "accuracy" else 1 - accuracy)
               for s in ("train", "valid", "test") for m in ("loss", "accuracy")}
    epochs = [EpochRecord(1, 10, metrics, 1.0, 0.1, 100.0, 0.01)]
    return RunResult(run_id(task, recipe, 0), task, recipe, 0, RunStatus.FINISHED, epochs,
                     environment={"trial": number, "optimizer_cost": {"trained_parameters": parameters}},
                     total_seconds=1.5)


def _runs() -> list[RunResult]:
    return [_trial(i, *t) for i, t in enumerate(TRIALS)]


def test_the_front_is_non_dominated_and_the_best_so_far_never_worsens() -> None:
    (search,) = architecture_searches(_runs(), "valid_accuracy", Direction.MAXIMIZE)
    assert search.base == "nas_cnn" and search.failed == 1 and len(search.points) == len(TRIALS)
    done = [p for p in search.points if math.isfinite(p.value)]
    front = [p for p, f in zip(search.points, search.front, strict=True) if f]
    for p in front:  # nothing is at least as small and as good, and better in one
        assert not any(q.parameters <= p.parameters and q.value >= p.value
                       and (q.parameters < p.parameters or q.value > p.value) for q in done)
    for p in done:  # everything off the front is dominated by a point on it
        if p not in front:
            assert any(q.parameters <= p.parameters and q.value >= p.value for q in front)
    assert {p.task for p in front} == {"nas_cnn[block=plain,channels=8-16]", "nas_cnn[block=residual,channels=8-16]",
                                       "nas_cnn[block=inverted,channels=16-32]",
                                       "nas_cnn[block=plain,channels=16-32-64]"}
    assert list(search.best_so_far) == [0.61, 0.89, 0.91, 0.91, 0.93, 0.93, 0.985]
    assert search.cumulative_seconds[-1] == 1.5 * 6


def test_the_report_shows_the_search_and_only_the_retrained_architecture_as_a_task() -> None:
    runs = _runs()
    best = runs[-1]
    retrained = replace(best, run_id="retrained", seed=1, environment={})  # the best, trained again on a seed
    page = render_report([*runs, retrained], study="nas")
    assert "nas_nas_cnn" in page.figures
    html = page.render()
    assert "Architecture search: nas_cnn" in html
    assert [t.name for t in page.tables if t.name.startswith("nas_front")] == ["nas_front_nas_cnn"]
    sections = {name for name in page.figures if name.startswith("curves_")}
    assert sections and all("16-32-64" in name for name in sections)  # no section per searched trial


def test_hand_designed_baselines_are_compared_with_the_best_retrained_architecture() -> None:
    runs = _runs()
    best = runs[-1]
    retrained = [replace(best, run_id=f"re{s}", seed=s, environment={},
                         epochs=[replace(best.epochs[0], metrics={**best.epochs[0].metrics, "test_accuracy": acc})])
                 for s, acc in ((1, 0.97), (2, 0.98))]

    def baseline(task: str, seed: int, acc: float, recipe: Recipe = best.recipe) -> RunResult:
        metrics = {**best.epochs[0].metrics, "test_accuracy": acc}
        return RunResult(run_id(task, recipe, seed), task, recipe, seed, RunStatus.FINISHED,
                         [replace(best.epochs[0], metrics=metrics)], total_seconds=1.0)

    others = [baseline("digits_mlp", 1, 0.90), baseline("digits_mlp", 2, 0.91),
              baseline("digits_mlp", 3, 0.50),  # another seed: not compared
              baseline("digits_mlp", 1, 0.10, Recipe("sgd", {"lr": 0.1}, epochs=1))]  # another recipe: not compared
    (search,) = architecture_searches([*runs, *retrained, *others], "valid_accuracy", Direction.MAXIMIZE)
    (b,) = search.baselines
    assert b.task == "digits_mlp" and b.test.n == 2 and math.isclose(b.test.mean, 0.905)
    assert 0 < b.p_value < 0.05  # 0.975 vs 0.905 with small spreads
    page = render_report([*runs, *retrained, *others], study="nas")
    (table,) = [t for t in page.tables if t.name == "nas_baselines_nas_cnn"]
    assert "digits_mlp" in page.render() and "Welch" in page.render()
