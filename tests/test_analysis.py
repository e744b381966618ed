"""Tests of optbench.analysis: statistics over seeds, ranking, curves."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats

from optbench.analysis import (
    RecipeSummary,
    curve_bands,
    holm,
    summarize,
    summarize_runs,
    welch_p_value,
)
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id

KEYS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy")
DIRECTIONS = {k: Direction.MAXIMIZE if k.endswith("accuracy") else Direction.MINIMIZE for k in KEYS}


def make_run(label: str, seed: int, accs: list[float], *, status: RunStatus = RunStatus.FINISHED,
             error: str | None = None, task: str = "toy", budget: int = 4,
             train_seconds: float = 2.0, eval_seconds: float = 0.5) -> RunResult:
    """A fake run: accuracy ``a`` at each epoch, losses ``1 - a``, 100 steps an epoch."""
    recipe = Recipe(optimizer=label, hyperparams={"lr": 0.1}, epochs=budget)
    epochs = [
        EpochRecord(epoch=i + 1, step=100 * (i + 1),
                    metrics={"train_loss": 1 - a, "train_accuracy": a, "valid_loss": 1 - a,
                             "valid_accuracy": a, "test_loss": 1 - a, "test_accuracy": a},
                    train_seconds=train_seconds, eval_seconds=eval_seconds,
                    samples_per_second=1000.0 + 10 * seed, lr=0.1)
        for i, a in enumerate(accs)
    ]
    return RunResult(run_id(task, recipe, seed), task, recipe, seed, status, epochs, error,
                     train_seconds=train_seconds * len(accs), eval_seconds=eval_seconds * len(accs))


# ---------------------------------------------------------------- summarize

def test_summary_known_values() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.mean == pytest.approx(2.5, abs=1e-15)
    assert s.std == pytest.approx(math.sqrt(5 / 3), abs=1e-15)
    assert 1.0 <= s.ci_low < s.mean < s.ci_high <= 4.0
    assert s.confidence == 0.95


def test_summary_is_deterministic_per_seed() -> None:
    values = np.random.default_rng(0).uniform(0.8, 0.9, size=30).tolist()
    assert summarize(values, seed=3) == summarize(values, seed=3)
    # with few distinct resample means two seeds may agree; with 30 values and 200 resamples not
    assert summarize(values, n_resamples=200, seed=3) != summarize(values, n_resamples=200, seed=4)


def test_summary_ci_close_to_normal_theory_for_many_values() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(10.0, 2.0, size=200)
    s = summarize(values.tolist(), n_resamples=4000)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert s.ci_low == pytest.approx(s.mean - half, rel=0.02)
    assert s.ci_high == pytest.approx(s.mean + half, rel=0.02)
    narrow = summarize(values.tolist(), confidence=0.5, n_resamples=4000)
    assert s.ci_low < narrow.ci_low < narrow.ci_high < s.ci_high


def test_summary_edge_cases_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = summarize([0.7])
        constant = summarize([0.9, 0.9, 0.9])
        empty = summarize([])
    assert one.n == 1 and one.mean == 0.7
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    assert constant.std == 0.0 and (constant.ci_low, constant.ci_high) == (0.9, 0.9)
    assert constant.mean == 0.9
    assert empty.n == 0 and math.isnan(empty.mean)


@pytest.mark.parametrize("bad", [[1.0, math.nan], [math.inf, 2.0]])
def test_summary_rejects_non_finite(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        summarize(bad)


@pytest.mark.parametrize("kwargs", [{"confidence": 1.0}, {"confidence": 0.0}, {"n_resamples": 0}])
def test_summary_rejects_bad_options(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        summarize([1.0, 2.0], **kwargs)


def test_overlaps() -> None:
    a, b, c = summarize([1.0, 2.0]), summarize([1.5, 3.0]), summarize([5.0, 6.0])
    assert a.overlaps(b) and b.overlaps(a)
    assert not a.overlaps(c)
    assert not a.overlaps(summarize([1.0]))  # undefined interval never overlaps


# ---------------------------------------------------------------- tests

def test_welch_matches_scipy_on_raw_data() -> None:
    a, b = [0.91, 0.92, 0.95, 0.9], [0.85, 0.88, 0.84]
    expected = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(summarize(a), summarize(b)) == pytest.approx(expected, rel=1e-10)
    assert math.isnan(welch_p_value(summarize([1.0]), summarize(b)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(welch_p_value(summarize([0.9] * 3), summarize([0.8] * 3)))
        assert 0.0 < welch_p_value(summarize([0.9] * 3), summarize([0.5, 0.52, 0.51])) < 0.01


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, math.nan, 0.6])
    assert adjusted[0] == pytest.approx(0.4) and math.isnan(adjusted[1]) and adjusted[2] == 0.6
    assert holm([]) == []
    with pytest.raises(ValueError):
        holm([1.5])


# ---------------------------------------------------------------- summarize_runs

def _study() -> list[RunResult]:
    runs = [make_run("adam", s, [0.6, 0.8, 0.9, 0.92 + 0.01 * s]) for s in range(3)]
    runs += [make_run("sgd", s, [0.3, 0.5, 0.6, 0.70 + 0.01 * s]) for s in range(3)]
    runs += [make_run("nadam", s, [0.6, 0.86, 0.9, 0.915 + 0.02 * s]) for s in range(3)]
    return runs


def test_summarize_runs_ranks_maximize() -> None:
    summaries = summarize_runs(_study(), DIRECTIONS)
    assert [s.label for s in summaries] == ["nadam", "adam", "sgd"]
    assert [s.rank for s in summaries] == [1, 2, 3]
    nadam, adam, sgd = summaries
    assert nadam.final_test.mean == pytest.approx(0.935)
    assert adam.final_test.mean == pytest.approx(0.93)
    assert adam.final_test.std == pytest.approx(0.01)
    assert adam.final_values == pytest.approx((0.92, 0.93, 0.94))
    assert set(adam.final_run_ids) == set(adam.run_ids) and len(adam.run_ids) == 3
    assert nadam.tied_with_best and adam.tied_with_best and not sgd.tied_with_best
    assert math.isnan(nadam.p_vs_best)
    assert adam.p_vs_best > 0.05 and sgd.p_vs_best < 0.01
    assert adam.best_valid.mean == pytest.approx(0.93)
    assert adam.samples_per_second.mean == pytest.approx(1010.0)
    assert (adam.n_runs, adam.n_finished, adam.n_diverged, adam.n_failed) == (3, 3, 0, 0)
    assert adam.final_direction is Direction.MAXIMIZE


def test_summarize_runs_ranks_minimize() -> None:
    summaries = summarize_runs(_study(), DIRECTIONS, final_key="test_loss", best_key="valid_loss",
                               target=("valid_loss", 0.12))
    assert [s.label for s in summaries] == ["nadam", "adam", "sgd"]
    assert summaries[0].final_test.mean == pytest.approx(0.065)
    assert summaries[0].best_valid.mean == pytest.approx(0.065)
    # lower is better: nadam reaches loss <= 0.12 at epoch 3 (0.1) in every seed
    assert summaries[0].epochs_to_target.mean == 3.0 and summaries[0].n_reached == 3


def test_directions_are_used_not_guessed() -> None:
    flipped = dict(DIRECTIONS, test_accuracy=Direction.MINIMIZE)
    summaries = summarize_runs(_study(), flipped)
    assert [s.label for s in summaries] == ["sgd", "adam", "nadam"]


def test_equal_means_share_a_rank() -> None:
    runs = [make_run(name, s, [0.5 + 0.1 * s]) for name in ("b", "a") for s in range(2)]
    summaries = summarize_runs(runs, DIRECTIONS, target=("valid_accuracy", 0.9))
    assert [(s.label, s.rank) for s in summaries] == [("a", 1), ("b", 1)]


def test_time_to_target_is_censored_not_dropped() -> None:
    runs = [make_run("adam", 0, [0.5, 0.86, 0.9]), make_run("adam", 1, [0.5, 0.6, 0.87]),
            make_run("adam", 2, [0.5, 0.6, 0.7])]
    (s,) = summarize_runs(runs, DIRECTIONS)
    assert (s.n_reached, s.n_censored) == (2, 1)
    assert s.epochs_to_target.n == 2 and s.epochs_to_target.mean == 2.5
    assert s.steps_to_target.mean == 250.0
    assert s.seconds_to_target.mean == pytest.approx(5.0)  # training seconds only: 2 * 2.5
    assert s.final_test.n == 3


def test_diverged_and_failed_runs() -> None:
    runs = [
        make_run("rmsprop", 0, [0.5, 0.9]),
        make_run("rmsprop", 1, [0.4], status=RunStatus.DIVERGED, error="loss is nan at step 130"),
        make_run("rmsprop", 2, [], status=RunStatus.DIVERGED, error="loss is inf at step 3"),
        make_run("rmsprop", 3, [0.99, 0.99], status=RunStatus.FAILED, error="RuntimeError: boom"),
    ]
    (s,) = summarize_runs(runs, DIRECTIONS)
    assert (s.n_runs, s.n_finished, s.n_diverged, s.n_failed) == (4, 1, 2, 1)
    # the diverged run counts with its last recorded epoch, the failed one not at all
    assert s.final_test.n == 2 and s.final_test.mean == pytest.approx(0.65)
    assert (s.n_reached, s.n_censored) == (1, 2)
    assert [(p.seed, p.status, p.epochs_completed, p.error) for p in s.problems] == [
        (1, RunStatus.DIVERGED, 1, "loss is nan at step 130"),
        (2, RunStatus.DIVERGED, 0, "loss is inf at step 3"),
        (3, RunStatus.FAILED, 2, "RuntimeError: boom"),
    ]


def test_recipe_without_values_ranks_last() -> None:
    runs = [*_study(), make_run("lbfgs", 0, [], status=RunStatus.FAILED, error="x")]
    summaries = summarize_runs(runs, DIRECTIONS)
    last = summaries[-1]
    assert last.label == "lbfgs" and last.rank == 4 and not last.tied_with_best
    assert math.isnan(last.final_test.mean) and math.isnan(last.p_vs_best)
    assert isinstance(last, RecipeSummary)


def test_summarize_runs_bad_input() -> None:
    runs = _study()
    with pytest.raises(ConfigError, match="test_accuracy"):
        summarize_runs(runs, {"valid_accuracy": Direction.MAXIMIZE})
    with pytest.raises(ConfigError, match="single task"):
        summarize_runs([*runs, make_run("adam", 9, [0.5], task="other")], DIRECTIONS)
    with pytest.raises(ValueError, match="twice"):
        summarize_runs(runs + runs[:1], DIRECTIONS)
    with pytest.raises(ConfigError, match="finite"):
        summarize_runs(runs, DIRECTIONS, target=("valid_accuracy", math.nan))
    with pytest.raises(ConfigError, match="test_accuracy"):
        summarize_runs(runs, dict(DIRECTIONS, test_top5=Direction.MAXIMIZE), final_key="test_top5")


def test_recipes_of_one_optimizer_are_labelled_apart_by_what_differs() -> None:
    from optbench.core.spec import Recipe, RunStatus
    from optbench.core.spec import RunResult as Result

    base = Recipe("momentum", {"lr": 0.1}, epochs=1)
    smooth = Recipe("momentum", {"lr": 0.1}, epochs=1, techniques=["label_smoothing:epsilon=0.1"])
    runs = [Result(f"r{i}", "t", recipe, seed=i, status=RunStatus.FINISHED, epochs=_study()[0].epochs)
            for i, recipe in enumerate([base, smooth, base, smooth])]
    labels = sorted(s.label for s in summarize_runs(runs, DIRECTIONS))
    assert labels == ["momentum techniques=-", "momentum techniques=label_smoothing:epsilon=0.1"]


def test_group_by_separates_recipes() -> None:
    runs = [*_study(), make_run("adam", 7, [0.5], budget=9)]
    summaries = summarize_runs(runs, DIRECTIONS,
                               group_by=lambda r: f"{r.recipe.label}/{r.recipe.epochs}")
    assert sorted(s.label for s in summaries) == ["adam/4", "adam/9", "nadam/4", "sgd/4"]


# ---------------------------------------------------------------- curves

def test_curve_bands_values_and_shapes() -> None:
    runs = [make_run("adam", 0, [0.5, 0.7, 0.9]), make_run("adam", 1, [0.3, 0.9, 0.8]),
            make_run("adam", 2, [0.4, 0.5], status=RunStatus.DIVERGED, error="nan"),
            make_run("adam", 3, [0.0, 0.0, 0.0], status=RunStatus.FAILED, error="x"),
            make_run("sgd", 0, [0.1])]
    bands = curve_bands(runs, "test_accuracy")
    assert list(bands) == ["adam", "sgd"]
    adam = bands["adam"]
    for array in (adam.epochs, adam.x, adam.mean, adam.low, adam.high, adam.n):
        assert array.shape == (3,)
    assert adam.epochs.tolist() == [1, 2, 3] and adam.x.tolist() == [1.0, 2.0, 3.0]
    assert adam.n.tolist() == [3, 3, 2]  # the diverged run stops; the failed one never counts
    np.testing.assert_allclose(adam.mean, [0.4, 0.7, 0.85])
    np.testing.assert_allclose(adam.low, [0.3, 0.5, 0.8])
    np.testing.assert_allclose(adam.high, [0.5, 0.9, 0.9])
    assert bands["sgd"].n.tolist() == [1]

    std = curve_bands(runs, "test_accuracy", band="std")["adam"]
    np.testing.assert_allclose(std.high - std.mean, [0.1, 0.2, np.std([0.9, 0.8], ddof=1)])
    one = curve_bands(runs, "test_accuracy", band="std")["sgd"]
    assert one.low.tolist() == one.high.tolist() == [0.1]


def test_curve_bands_versus_seconds_and_steps() -> None:
    runs = [make_run("adam", 0, [0.5, 0.7], train_seconds=2.0, eval_seconds=1.0),
            make_run("adam", 1, [0.6, 0.8], train_seconds=4.0, eval_seconds=1.0)]
    band = curve_bands(runs, "train_loss", x="seconds")["adam"]
    np.testing.assert_allclose(band.x, [4.0, 8.0])  # mean of (3, 6) and (5, 10)
    np.testing.assert_allclose(band.mean, [0.45, 0.25])
    assert band.x_kind == "seconds" and band.key == "train_loss"
    assert curve_bands(runs, "train_loss", x="step")["adam"].x.tolist() == [100.0, 200.0]


def test_curve_bands_bad_input() -> None:
    runs = _study()
    with pytest.raises(ConfigError, match="test_accuracy"):
        curve_bands(runs, "test_top5")
    with pytest.raises(ConfigError, match="epoch"):
        curve_bands(runs, "test_loss", x="minutes")
    with pytest.raises(ConfigError, match="minmax"):
        curve_bands(runs, "test_loss", band="iqr")
    assert curve_bands([], "test_loss") == {}


# ---------------------------------------------------------------- ties, p-values, censored medians

def test_summarize_runs_tie_aware_rank_and_both_tests() -> None:
    nadam, adam, sgd = summarize_runs(_study(), DIRECTIONS)
    assert [s.tie_rank for s in (nadam, adam, sgd)] == ["1=", "1=", "3"]
    assert [s.rank for s in (nadam, adam, sgd)] == [1, 2, 3]  # order by mean is kept
    assert nadam.tie_group == adam.tie_group == 1 and sgd.tie_group == 2
    assert sgd.n_comparisons == 3 and 0.0 <= sgd.p_mann_whitney_vs_best <= 1.0
    raw = scipy_stats.ttest_ind(list(sgd.final_values), list(nadam.final_values), equal_var=False).pvalue
    assert sgd.p_vs_best >= raw  # Holm over the 3 pairs never lowers a p-value


def test_censored_medians_count_runs_that_never_reached() -> None:
    runs = [make_run("adam", 0, [0.5, 0.86, 0.9]), make_run("adam", 1, [0.5, 0.6, 0.87]),
            make_run("adam", 2, [0.5, 0.6, 0.7]),
            make_run("adam", 3, [], status=RunStatus.DIVERGED, error="nan at step 1")]
    (s,) = summarize_runs(runs, DIRECTIONS)
    # reached at epochs 2 and 3; two runs never did: half reached by epoch 3
    assert (s.n_reached, s.n_censored) == (2, 2)
    assert (s.median_epochs_to_target, s.median_steps_to_target) == (3, 300)
    assert s.median_seconds_to_target == pytest.approx(6.0)  # 3 epochs of 2 training seconds
    (worse,) = summarize_runs(runs[1:], DIRECTIONS)
    assert worse.median_epochs_to_target == math.inf  # 1 of 3 reached: "> budget"
