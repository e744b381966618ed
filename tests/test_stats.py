"""Tests of the statistics behind the rankings: Mann-Whitney, censored time-to-target, pairwise
comparisons with Holm, the tie-aware ranking, seeds needed (power), the performance-profile score,
and where they appear in the Markdown and HTML reports."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from optbench.analysis import (
    censored_median,
    holm,
    integrated_score,
    mann_whitney_min_p,
    mann_whitney_p_value,
    pairwise_comparisons,
    rank_with_ties,
    seed_advice,
    seeds_needed,
    summarize_runs,
    welch_p_value_samples,
    welch_power,
)
from optbench.analysis.report_data import performance_profiles
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id

MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE


# ---------------------------------------------------------------- Mann-Whitney, Welch

def _exact_tied_p(a: list[float], b: list[float]) -> float:
    """Two-sided exact permutation p of U, enumerating every split of the pooled values: twice the
    smaller one-sided p (scipy's convention)."""
    pooled = np.asarray(a + b)
    ranks = scipy_stats.rankdata(pooled)
    n_a = len(a)
    us = np.asarray([ranks[list(s)].sum() for s in combinations(range(len(pooled)), n_a)])
    observed = ranks[:n_a].sum()
    return min(1.0, 2 * min((us >= observed - 1e-9).mean(), (us <= observed + 1e-9).mean()))


def test_mann_whitney_matches_scipy_exact_and_asymptotic() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 5).tolist(), rng.normal(1, 1, 6).tolist()
    exact = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="exact").pvalue
    assert mann_whitney_p_value(a, b) == pytest.approx(exact, rel=1e-12)
    a, b = rng.normal(0, 1, 30).tolist(), rng.normal(0.5, 1, 40).tolist()
    asym = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic").pvalue
    assert mann_whitney_p_value(a, b) == pytest.approx(asym, rel=1e-12)


def test_mann_whitney_with_ties_is_the_exact_permutation_p() -> None:
    a, b = [1.0, 2.0, 2.0], [2.0, 5.0, 6.0]
    assert mann_whitney_p_value(a, b) == pytest.approx(_exact_tied_p(a, b)) == pytest.approx(0.3)
    a, b = [0.9, 0.9, 0.91, 0.92], [0.9, 0.88, 0.88, 0.87, 0.9]
    assert mann_whitney_p_value(a, b) == pytest.approx(_exact_tied_p(a, b))


def test_mann_whitney_with_a_lone_value_and_ties_is_the_exact_permutation_p() -> None:
    """One value against several with ties (a tuning trial against a recipe's seeds): scipy's
    permutation test refuses samples of one; the exact enumeration of the lone value's rank stands in."""
    for a, b in (([0.9], [0.9, 0.8, 0.95]), ([0.5, 0.5, 0.7], [0.5]), ([1.0], [1.0, 1.0, 2.0, 3.0])):
        assert mann_whitney_p_value(a, b) == pytest.approx(_exact_tied_p(a, b))


def test_mann_whitney_small_samples_are_honest() -> None:
    assert math.isnan(mann_whitney_p_value([], [1.0])) and math.isnan(mann_whitney_min_p(0, 3))
    assert mann_whitney_p_value([1.0], [2.0]) == 1.0 == mann_whitney_min_p(1, 1)
    assert mann_whitney_p_value([0.5, 0.5], [0.5, 0.5, 0.5]) == 1.0  # no ranking information
    # 3 vs 3 completely separated: the smallest p there is, 2 / C(6, 3) = 0.1, never below 5%
    assert mann_whitney_p_value([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1) == pytest.approx(mann_whitney_min_p(3, 3))
    assert mann_whitney_min_p(4, 4) == pytest.approx(2 / 70)
    with pytest.raises(ValueError, match="non-finite"):
        mann_whitney_p_value([1.0, math.nan], [2.0])


def test_welch_from_samples_matches_scipy() -> None:
    a, b = [0.91, 0.93, 0.92, 0.95], [0.88, 0.9, 0.86]
    expected = scipy_stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value_samples(a, b) == pytest.approx(expected, rel=1e-12)
    assert math.isnan(welch_p_value_samples([1.0], [1.0, 2.0]))
    assert math.isnan(welch_p_value_samples([1.0, 1.0], [2.0, 2.0]))  # both constant: undefined


# ---------------------------------------------------------------- censored time-to-target

def test_censored_median_definition() -> None:
    assert censored_median([2, 3, None, None]) == 3  # half reached by 3
    assert censored_median([4, 2, 3]) == 3
    assert censored_median([5, None, None]) == math.inf  # fewer than half reached
    assert censored_median([None]) == math.inf and math.isnan(censored_median([]))
    with pytest.raises(ValueError):
        censored_median([-1.0])


def test_censored_median_is_the_kaplan_meier_median() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        n = int(rng.integers(2, 9))
        times = [float(t) if rng.random() < 0.7 else None for t in rng.integers(1, 20, n)]
        reached = [t for t in times if t is not None]
        censored = [50.0] * (n - len(reached))  # censored at the end of the budget
        if not reached:
            continue
        sf = scipy_stats.ecdf(scipy_stats.CensoredData(uncensored=reached, right=censored)).sf
        below = [q for q, p in zip(sf.quantiles, sf.probabilities, strict=True) if p <= 0.5 and q < 50]
        expected = min(below) if below else math.inf
        assert censored_median(times) == expected


# ---------------------------------------------------------------- pairwise comparisons

def test_pairwise_all_pairs_holm_and_order() -> None:
    groups = {"b": [0.80, 0.82, 0.81], "a": [0.90, 0.91, 0.92], "c": [0.85, 0.86, 0.84], "none": []}
    table = pairwise_comparisons(groups, MAX)
    assert table.labels == ("a", "c", "b") and table.excluded == ("none",)
    assert [(r.a, r.b) for r in table.rows] == [("a", "c"), ("a", "b"), ("c", "b")]
    raw = [scipy_stats.ttest_ind(groups[r.a], groups[r.b], equal_var=False).pvalue for r in table.rows]
    assert [r.welch_p for r in table.rows] == pytest.approx(raw)
    assert [r.welch_p_holm for r in table.rows] == pytest.approx(holm(raw))
    assert [r.mann_whitney_p_holm for r in table.rows] == pytest.approx(holm([r.mann_whitney_p for r in table.rows]))
    assert all(r.difference > 0 for r in table.rows)
    assert all(r.welch_significant == (r.welch_p_holm < 0.05) for r in table.rows)
    assert not any(r.mann_whitney_significant for r in table.rows)  # 3 vs 3 can never reach 5%
    assert table.get("b", "a") is table.rows[1]
    with pytest.raises(ConfigError, match="pair"):
        table.get("a", "none")


def test_pairwise_minimize_and_bad_input() -> None:
    table = pairwise_comparisons({"x": [1.0, 1.1], "y": [0.5, 0.6]}, MIN)
    (row,) = table.rows
    assert (row.a, row.b) == ("y", "x") and row.difference == pytest.approx(-0.5)
    assert pairwise_comparisons({"x": [1.0]}, MAX).rows == ()
    with pytest.raises(ConfigError, match="alpha"):
        pairwise_comparisons({"x": [1.0]}, MAX, alpha=1.0)
    with pytest.raises(ConfigError, match="direction"):
        pairwise_comparisons({"x": [1.0]}, "maximize")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        pairwise_comparisons({"x": [1.0, math.nan], "y": [1.0]}, MAX)


# ---------------------------------------------------------------- ranking with ties

def _ranks(groups: dict[str, list[float]], direction: Direction = MAX, **kwargs: object) -> list[tuple[str, str]]:
    return [(t.label, t.rank_label) for t in rank_with_ties(groups, direction, **kwargs)]


def test_clearly_separated_recipes_get_distinct_ranks() -> None:
    groups = {"a": [0.90, 0.91, 0.92, 0.905], "b": [0.80, 0.81, 0.82, 0.805], "c": [0.70, 0.71, 0.72, 0.705]}
    assert _ranks(groups) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert _ranks(groups, MIN) == [("c", "1"), ("b", "2"), ("a", "3")]


def test_identical_distributions_all_tie() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0.9, 0.01, 5)
    groups = {name: (base + 1e-4 * i).tolist() for i, name in enumerate("abcd")}
    ranked = rank_with_ties(groups, MAX)
    assert [t.rank_label for t in ranked] == ["1="] * 4 and {t.group for t in ranked} == {1}
    assert all(t.leader == "d" for t in ranked) and math.isnan(ranked[0].p_vs_leader)
    assert all(t.p_vs_leader > 0.05 for t in ranked[1:])


def test_chain_starts_a_new_group_at_the_leader() -> None:
    groups = {"A": [10.0, 10.1, 9.9, 10.05, 9.95], "B": [8.5, 10.5, 9.0, 10.0, 9.5],
              "C": [9.0, 9.1, 8.9, 9.05, 8.95]}
    table = pairwise_comparisons(groups, MAX)
    assert not table.get("A", "B").welch_significant and not table.get("B", "C").welch_significant
    assert table.get("A", "C").welch_significant
    ranked = rank_with_ties(groups, MAX, comparisons=table)
    assert [(t.label, t.rank_label, t.group, t.leader) for t in ranked] == [
        ("A", "1=", 1, "A"), ("B", "1=", 1, "A"), ("C", "3", 2, "C")]


def test_rank_with_ties_tests_and_missing_values() -> None:
    groups = {"a": [0.90, 0.91, 0.92], "b": [0.70, 0.71, 0.72], "empty": [], "one": [0.5]}
    # one value: no Welch test is possible, which is no evidence of a difference, so it ties with b
    assert _ranks(groups) == [("a", "1"), ("b", "2="), ("one", "2="), ("empty", "4")]
    # Mann-Whitney with 3 seeds cannot reject: all tie
    assert _ranks(groups, test="mann_whitney") == [("a", "1="), ("b", "1="), ("one", "1="), ("empty", "4")]
    with pytest.raises(ConfigError, match="test"):
        rank_with_ties(groups, MAX, test="t")


# ---------------------------------------------------------------- seeds needed

@pytest.mark.parametrize(("d", "n"), [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_needed_reproduces_cohens_table(d: float, n: int) -> None:
    assert seeds_needed(1.0, 1.0, d) == n  # Cohen (1988), Table 2.4.1: alpha .05 two-sided, power .8
    assert seeds_needed(0.01, 0.01, d * 0.01) == n  # units do not matter
    assert welch_power(n, 1.0, 1.0, d) >= 0.8 > welch_power(n - 1, 1.0, 1.0, d)


def test_welch_power_matches_simulation() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(0.0, 1.0, (20000, 8))
    b = rng.normal(1.2, 2.0, (20000, 8))
    rejected = scipy_stats.ttest_ind(a, b, equal_var=False, axis=1).pvalue < 0.05
    assert welch_power(8, 1.0, 2.0, 1.2) == pytest.approx(rejected.mean(), abs=0.015)


def test_seeds_needed_edges_and_errors() -> None:
    assert seeds_needed(0.0, 0.0, 0.1) == 2 and welch_power(2, 0.0, 0.0, 0.1) == 1.0
    assert seeds_needed(1.0, 2.0, 1.0) == seeds_needed(2.0, 1.0, -1.0)
    assert seeds_needed(1.0, 1.0, 0.5, power=0.9) > 64 and seeds_needed(1.0, 1.0, 0.5, alpha=0.01) > 64
    for kwargs in ({"difference": 0.0}, {"std_a": -1.0}, {"alpha": 1.0}, {"power": 0.0}):
        args = {"std_a": 1.0, "std_b": 1.0, "difference": 0.5} | kwargs
        with pytest.raises(ConfigError):
            seeds_needed(args.pop("std_a"), args.pop("std_b"), args.pop("difference"), **args)
    with pytest.raises(ConfigError, match="n"):
        welch_power(1, 1.0, 1.0, 1.0)


def test_seed_advice_on_the_two_best() -> None:
    groups = {"a": [0.90, 0.92, 0.91], "b": [0.89, 0.91, 0.90], "c": [0.5, 0.6], "d": [0.99]}
    advice = seed_advice(groups, MAX, difference=0.005)
    assert (advice.first, advice.second) == ("a", "b")  # "d" has no std
    assert advice.observed_difference == pytest.approx(0.01)
    assert advice.seeds_for_observed == seeds_needed(0.01, 0.01, 0.01) == 17
    assert advice.seeds_for_difference == seeds_needed(0.01, 0.01, 0.005) == 64
    same = seed_advice({"a": [1.0, 2.0], "b": [2.0, 1.0]}, MAX)
    assert same.seeds_for_observed is None and same.seeds_for_difference is None
    assert seed_advice({"a": [1.0, 2.0], "b": [1.0]}, MAX) is None


# ---------------------------------------------------------------- performance-profile score

def test_integrated_score_hand_computed() -> None:
    # rho steps: ratio 1 counts on [1, 4] (3), ratio 2 on [2, 4] (2), inf never: (3 + 2 + 0) / 3 tasks / 3
    assert integrated_score([1.0, 2.0, math.inf]) == pytest.approx(5 / 9)
    assert integrated_score([1.0, 1.0]) == 1.0 and integrated_score([5.0]) == 0.0
    assert integrated_score([1.5], tau_max=2.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="ratios"):
        integrated_score([0.5])
    with pytest.raises(ConfigError, match="tau_max"):
        integrated_score([1.0], tau_max=1.0)


def test_profiles_score_is_the_exact_area() -> None:
    values = {"t1": {"x": 0.9, "y": 0.6}, "t2": {"x": 1.0, "y": 2.5}, "t3": {"x": 0.5, "y": math.nan}}
    p = performance_profiles(values, {"t1": MAX, "t2": MIN, "t3": MAX})
    # y: ratios 1.5, 2.5, inf -> (2.5 + 1.5 + 0) / 3 / 3
    assert p.score["y"] == pytest.approx(4 / 9) and p.score["x"] == 1.0
    fine = np.linspace(1, 4, 30001)
    rho = (p.ratios[:, 1][None, :] <= fine[:, None]).mean(axis=1)
    assert p.score["y"] == pytest.approx(np.trapezoid(rho, fine) / 3, abs=1e-3)


# ---------------------------------------------------------------- in summaries and reports

KEYS = ("valid_accuracy", "test_accuracy", "valid_loss", "test_loss")
DIRECTIONS = {k: MAX if k.endswith("accuracy") else MIN for k in KEYS}


def _run(label: str, seed: int, accs: list[float], status: RunStatus = RunStatus.FINISHED) -> RunResult:
    recipe = Recipe(optimizer=label, hyperparams={"lr": 0.1}, epochs=4)
    epochs = [EpochRecord(i + 1, 10 * (i + 1), {"valid_accuracy": a, "test_accuracy": a, "valid_loss": 1 - a,
                                                 "test_loss": 1 - a}, 1.5, 0.5, 100.0, 0.1)
              for i, a in enumerate(accs)]
    return RunResult(run_id("toy", recipe, seed), "toy", recipe, seed, status, epochs, None)


def _study() -> list[RunResult]:
    runs = [_run("adam", s, [0.7, 0.86, 0.90 + 0.01 * s]) for s in range(5)]
    runs += [_run("nadam", s, [0.5, 0.7, 0.90 + 0.012 * s]) for s in range(5)]
    runs += [_run("sgd", s, [0.3, 0.5, 0.70 + 0.01 * s]) for s in range(5)]
    return runs


def test_summaries_carry_tie_rank_both_p_values_and_medians() -> None:
    rows = summarize_runs(_study(), DIRECTIONS)
    nadam, adam, sgd = rows
    assert [(r.label, r.tie_rank, r.tie_group) for r in rows] == [("nadam", "1=", 1), ("adam", "1=", 1),
                                                                 ("sgd", "3", 2)]
    table = pairwise_comparisons({r.label: r.final_values for r in rows}, MAX)
    assert adam.p_vs_best == table.get("nadam", "adam").welch_p_holm
    assert sgd.p_mann_whitney_vs_best == table.get("nadam", "sgd").mann_whitney_p_holm
    assert adam.n_comparisons == 3 and math.isnan(nadam.p_mann_whitney_vs_best)
    # adam reaches 0.85 at epoch 2 in every seed, nadam at epoch 3, sgd never
    assert (adam.median_epochs_to_target, adam.median_steps_to_target) == (2, 20)
    assert adam.median_seconds_to_target == pytest.approx(3.0)
    assert nadam.median_epochs_to_target == 3 and sgd.median_epochs_to_target == math.inf
    mw = summarize_runs(_study(), DIRECTIONS, tie_test="mann_whitney")  # 5 vs 5 separated: 3 * 2/252 < 5%
    assert [r.tie_rank for r in mw] == ["1=", "1=", "3"] and mw[0].tie_test == "mann_whitney"
    with pytest.raises(ConfigError, match="tie_test"):
        summarize_runs(_study(), DIRECTIONS, tie_test="z")


def test_markdown_and_html_reports_show_the_statistics() -> None:
    from optbench.report import ranking_table, render_report, summary_markdown

    rows = summarize_runs(_study(), DIRECTIONS)
    text = summary_markdown(rows, context={})
    ranking = text.split("## Ranking")[1].split("###")[0]
    assert "| 1 | nadam |" in ranking and "| 1= ≈ p=" in ranking and "| 3 p<0.001 · MW p=" in ranking
    trace = text.split("### Runs behind each row")[1].split("##")[0]
    assert all(f"{r.run_id} = " in trace for r in _study())
    assert "> budget" in text.split("## Time to target")[1].split("##")[0]
    pairwise = text.split("## Pairwise comparisons")[1].split("##")[0]
    lines = {line.split(" | ")[0]: line for line in pairwise.splitlines() if line.startswith("| nadam vs")}
    assert lines["| nadam vs adam"].endswith("| no / no |") and lines["| nadam vs sgd"].endswith("| yes / yes |")
    assert "Seeds needed: to tell **nadam** from **adam**" in text and "0.50 pp" in text
    console_text = str(ranking_table(rows, title="t").columns[7].header)
    assert "tie rank" in console_text

    page = render_report(_study())
    names = [t.name for t in page.tables]
    assert {"ranking_toy", "runs_toy", "time_to_target_toy", "pairwise_toy"} <= set(names)
    html = page.render()
    assert "<details" in html and "Seeds needed" in html and _study()[0].run_id in html


def test_pruned_runs_are_listed_not_counted() -> None:
    runs = [*_study(), _run("adam", 9, [0.99], status=RunStatus.PRUNED)]
    adam = next(r for r in summarize_runs(runs, DIRECTIONS) if r.label == "adam")
    assert (adam.n_runs, adam.n_pruned, adam.final_test.n, adam.n_reached + adam.n_censored) == (6, 1, 5, 5)
    assert [p.status for p in adam.problems] == [RunStatus.PRUNED]
