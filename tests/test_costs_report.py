"""Costs besides accuracy in the analysis and the report: flattening, summaries over seeds, the Pareto
front, the ranking table's cost columns and the report's accuracy-cost planes."""

from __future__ import annotations

import math

from optbench.analysis.costs import cost_points, pareto_front, partitions, run_costs
from optbench.analysis.summary import summarize_runs
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus
from optbench.report.costs import plot_cost_plane
from optbench.report.html import render_report
from optbench.report.tables import ranking_cells

DIRS = {"test_accuracy": Direction.MAXIMIZE, "valid_accuracy": Direction.MAXIMIZE}


def _run(opt: str, seed: int, acc: float, step_us: float | None, state: float = 8.0) -> RunResult:
    env = {} if step_us is None else {"optimizer_cost": {"step_us_median": step_us, "state_bytes_per_param": state,
                                                          "includes_closure": False, "peak_memory_bytes": None}}
    if opt == "muon":
        env["param_partition"] = {"rule": "hidden_matrices", "parts": {
            "muon": {"tensors": 2, "parameters": 3750, "names": ["a.weight", "b.weight"]},
            "adamw": {"tensors": 3, "parameters": 100, "names": ["c.weight", "a.bias", "b.bias"]}}}
    record = EpochRecord(epoch=1, step=10, metrics={"test_accuracy": acc, "valid_accuracy": acc}, train_seconds=1.0,
                         eval_seconds=0.1, samples_per_second=100.0, lr=0.01)
    return RunResult(run_id=f"{opt}{seed}", task="t", recipe=Recipe(opt, {"lr": 0.01}), seed=seed,
                     status=RunStatus.FINISHED, epochs=[record], environment=env)


RUNS = [_run("adam", 0, 0.80, 100.0), _run("adam", 1, 0.82, 110.0),
        _run("sgd", 0, 0.70, 50.0, 0.0), _run("sgd", 1, 0.72, 52.0, 0.0),
        _run("muon", 0, 0.75, 400.0, 4.0), _run("muon", 1, 0.77, 420.0, 4.0)]


def test_run_costs_flattens_numbers_only():
    assert run_costs(RUNS[0]) == {"optimizer_cost.step_us_median": 100.0, "optimizer_cost.state_bytes_per_param": 8.0}
    assert run_costs(_run("adam", 0, 0.8, None)) == {}


def test_pareto_front_by_hand():
    # (cost, value): a=(1, 0.5) b=(2, 0.9) c=(3, 0.8) dominated by b, d=(2, 0.9) ties b: both stay
    assert pareto_front([1, 2, 3, 2], [0.5, 0.9, 0.8, 0.9], Direction.MAXIMIZE) == [True, True, False, True]
    assert pareto_front([1, 2, 3], [0.5, 0.6, 0.1], Direction.MINIMIZE) == [True, False, True]


def test_summaries_carry_costs_and_the_table_shows_them():
    rows = summarize_runs(RUNS, DIRS, final_key="test_accuracy", best_key="valid_accuracy",
                          target=("valid_accuracy", 0.9))
    adam = next(r for r in rows if r.label == "adam")
    assert math.isclose(adam.costs["optimizer_cost.step_us_median"].mean, 105.0)
    headers, cells = ranking_cells(rows)
    assert "state B/param" in headers and "step µs" in headers and "params" not in headers
    row = next(c for c in cells if c[1] == "adam")
    assert row[headers.index("step µs")] == "105" and row[headers.index("state B/param")] == "8"
    points = {p.label: p for p in cost_points(rows, "optimizer_cost.step_us_median")}
    assert points["adam"].on_front and points["sgd"].on_front and not points["muon"].on_front
    assert len(plot_cost_plane(list(points.values()), xlabel="x", ylabel="y").axes[0].lines) >= 1


def test_old_runs_without_costs_keep_the_old_columns():
    old = [_run("adam", 0, 0.8, None), _run("sgd", 0, 0.7, None)]
    rows = summarize_runs(old, DIRS, final_key="test_accuracy", best_key="valid_accuracy",
                          target=("valid_accuracy", 0.9))
    headers, _ = ranking_cells(rows)
    assert "step µs" not in headers and "state B/param" not in headers


def test_report_draws_the_cost_planes_and_the_partition():
    page = render_report(RUNS, study="s")
    assert any(name.startswith("cost_t_optimizer_cost") for name in page.figures)
    table = next(t for t in page.tables if t.name == "partition_t")
    assert [row[2] for row in table.rows] == ["muon", "adamw"] and table.rows[0][4] == "3,750"
    assert partitions(RUNS)["muon"]["rule"] == "hidden_matrices"
