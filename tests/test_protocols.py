"""Protocols: pure analysis on synthetic runs, and each protocol end to end from its example file."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from optbench.analysis.protocols import (
    AlgoperfResult,
    DeepobsResult,
    Seed004Result,
    TaskKeys,
    algoperf_entry,
    algoperf_result,
    algoperf_study,
    best_grid_point,
    grid_points,
    setting,
    valley_comparisons,
)
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus
from optbench.report.protocols import protocol_markdown, protocol_tables
from optbench.runs import executor
from optbench.runs.store import open_store
from optbench.study.config import load_study
from optbench.study.protocols import StudyContext, log_grid
from optbench.study.runner import run_study, write_study_outputs

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "studies"
KEYS = TaskKeys("t", {"valid_accuracy": Direction.MAXIMIZE, "test_accuracy": Direction.MAXIMIZE},
                "valid_accuracy", "test_accuracy", ("valid_accuracy", 0.5))


def _run(lr: float, valid: list[float], test: float, seed: int = 0, status=RunStatus.FINISHED,
         seconds: float = 1.0, optimizer: str = "sgd") -> RunResult:
    epochs = [EpochRecord(i + 1, 10 * (i + 1), {"valid_accuracy": v, "test_accuracy": test}, seconds, 0.1, 100.0, lr)
              for i, v in enumerate(valid)]
    recipe = Recipe(optimizer, {"lr": lr}, epochs=len(valid) or 1)
    return RunResult(f"{optimizer}{lr}{seed}{len(valid)}{seconds}", "t", recipe, seed, status, epochs)


def test_log_grid_matches_deepobs_default():
    grid = log_grid(1e-5, 1e2, 36)
    assert len(grid) == 36 and grid[0] == 1e-5 and grid[-1] == 100.0
    assert all(b / a == pytest.approx(10 ** (7 / 35), rel=1e-5) for a, b in itertools.pairwise(grid))


def test_grid_points_and_best():
    runs = [_run(0.1, [0.6], 0.6), _run(0.1, [0.8], 0.7, seed=1), _run(1.0, [0.9], 0.9),
            _run(1.0, [], 0.0, seed=1, status=RunStatus.DIVERGED), _run(10.0, [], 0, status=RunStatus.FAILED)]
    points = grid_points(runs, "valid_accuracy")
    assert [p.lr for p in points] == [0.1, 1.0, 10.0]
    assert points[0].valid == pytest.approx(0.7) and points[1].valid == 0.9 and points[1].n_lost == 1
    assert math.isnan(points[2].valid)
    assert best_grid_point(points, Direction.MAXIMIZE).lr == 1.0
    assert best_grid_point(points, Direction.MINIMIZE).lr == 0.1


def test_crowded_valley_comparison_selects_default_on_validation():
    a = setting(KEYS, "a/constant", "a", "constant", False, [_run(0.1, [0.9], 0.5), _run(0.1, [0.9], 0.52, 1)])
    b = setting(KEYS, "b/constant", "b", "constant", False, [_run(0.2, [0.8], 0.9), _run(0.2, [0.8], 0.92, 1)])
    t = setting(KEYS, "b/constant", "b", "constant", True, [_run(0.3, [0.85], 0.7), _run(0.3, [0.85], 0.72, 1)])
    (c,) = valley_comparisons(KEYS, [a, b], [t])
    assert c.best_default.label == "a/constant"  # best validation, not best test
    assert c.gain == pytest.approx(0.2) and 0 <= c.p_value <= 1


def test_algoperf_median_of_fastest_and_profiles():
    fast = [_run(0.1, [0.4, 0.6], 0.6, seconds=1.0), _run(0.2, [0.7], 0.7, seconds=3.0)]
    study0 = algoperf_study(KEYS, 0, fast)
    assert study0.seconds == 2.0 and study0.steps == 20 and study0.n_reached == 2
    never = algoperf_study(KEYS, 1, [_run(0.1, [0.1, 0.2], 0.2)])
    assert math.isinf(never.seconds)
    a = algoperf_entry("t", "a", [study0, study0, never])
    b = algoperf_entry("t", "b", [never, never, study0])
    assert a.seconds == 2.0 and math.isinf(b.seconds)
    result = algoperf_result({"t": KEYS}, [a, b])
    assert result.profiles.score["a"] == pytest.approx(1.0) and result.profiles.score["b"] == 0.0
    assert "never" in protocol_markdown(result)


def _context(store: str, study: str, events: list[executor.RunDone]) -> StudyContext:
    """A CPU context on ``store`` that records every run stored or found stored."""
    import torch

    def record(event: object) -> None:
        if isinstance(event, executor.RunDone):
            events.append(event)

    return StudyContext(store, study, device=torch.device("cpu"), on_event=record)


def _count_executed(store: str) -> int:
    with open_store(store) as db:
        return sum(1 for _ in db.load_runs())


@pytest.mark.parametrize("name", ["seed004", "deepobs"])
def test_fixed_protocols_end_to_end_and_resume(tmp_path, name):
    config = load_study(EXAMPLES / f"{name}.toml").with_budget(epochs=1, train_size=300)
    store = str(tmp_path / "s.db")
    events: list[executor.RunDone] = []
    outcome = run_study(config, store, context=_context(store, config.name, events))
    n = _count_executed(store)
    assert n == len(outcome.results) > 0
    assert sum(not e.skipped for e in events) == n  # each run executed once
    if name == "seed004":
        assert isinstance(outcome.result, Seed004Result)
        (summaries,) = outcome.result.summaries.values()
        assert {s.label for s in summaries} == {"sgd", "momentum", "adam", "rmsprop"}
        assert all(s.n_runs == 3 for s in summaries)
        assert n == 12
    else:
        assert isinstance(outcome.result, DeepobsResult)
        rows = outcome.result.rows
        assert [r.label for r in rows] == ["sgd", "adam"]
        assert all(r.best_lr in log_grid(1e-4, 1.0, 5) and r.test.n == 3 for r in rows)
        assert n == 2 * 5 + 2 * 2  # grid on seed 0; best re-run reuses seed 0
    files = write_study_outputs(outcome, store, tmp_path / "out")
    assert files["report"].is_file() and files["protocol"].read_text().count("|") > 10
    assert protocol_tables(outcome.result)
    # resume: the same study again executes nothing new
    again = run_study(config, store, context=_context(store, config.name, events2 := []))
    assert _count_executed(store) == n and events2 and all(e.skipped for e in events2)
    assert protocol_markdown(again.result) == protocol_markdown(outcome.result)


@pytest.mark.parametrize("name", ["crowded_valley", "algoperf_lite", "tpe_asha"])
def test_search_protocols_end_to_end(tmp_path, name):
    config = load_study(EXAMPLES / f"{name}.toml").with_budget(epochs=2, train_size=300, trials=2)
    store = str(tmp_path / "s.db")
    outcome = run_study(config, store)
    assert outcome.results and protocol_tables(outcome.result)
    if name == "algoperf_lite":
        assert isinstance(outcome.result, AlgoperfResult)
        assert set(outcome.result.profiles.labels) == {"adam", "nesterov"}
    n = _count_executed(store)
    run_study(config, store)
    assert _count_executed(store) == n
