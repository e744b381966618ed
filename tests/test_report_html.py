"""The HTML report: its data (overview, lr sensitivity, profiles, schedules, distributed), its
figures' content, its tables' exports, escaping, self-containedness, and the ``report`` command."""

from __future__ import annotations

import csv
import io
import math
import re

import numpy as np
import pytest
import typer
from matplotlib.lines import Line2D
from typer.testing import CliRunner

from optbench.analysis.report_data import (
    applied_schedules,
    distributed_points,
    lr_sensitivity,
    performance_profiles,
    study_overview,
)
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.report import TableData, make_table, render_report, to_csv, to_latex, to_markdown, write_report
from optbench.runs.store import open_store


def _run(task: str, optimizer: str, seed: int, *, lr: float = 0.01, epochs: int = 3, acc0: float = 0.5,
         status: RunStatus = RunStatus.FINISHED, recorded: int | None = None, error: str | None = None,
         env: dict | None = None, schedule: str = "constant") -> RunResult:
    recipe = Recipe(optimizer=optimizer, hyperparams={"lr": lr}, epochs=epochs, schedule=schedule)
    records = []
    for e in range(1, (epochs if recorded is None else recorded) + 1):
        acc = min(0.99, acc0 + 0.1 * e + 0.01 * seed)
        records.append(EpochRecord(e, 10 * e, {f"{s}_accuracy": acc - 0.01 * i for i, s in
                                               enumerate(("train", "valid", "test"))}
                                   | {f"{s}_loss": 1.0 / e + 0.1 * seed for s in ("train", "valid", "test")},
                                   0.5, 0.1, 1000.0, lr))
    return RunResult(run_id(task, recipe, seed), task, recipe, seed, status, records, error, 1.5 * len(records),
                     0.3 * len(records), 1.8 * len(records), 10 * len(records),
                     env if env is not None else {"python": "3.11", "torch": "2.x", "threads": 2, "device": "cpu"})


def _study(task: str = "digits_mlp") -> list[RunResult]:
    return [_run(task, name, seed, acc0=a) for name, a in (("adam", 0.6), ("sgd", 0.3), ("nesterov", 0.4))
            for seed in range(2)]


# ------------------------------------------------------------------------------- data
def test_overview_lists_every_problem_and_counts():
    runs = _study() + [_run("digits_mlp", "rmsprop", 0, status=RunStatus.DIVERGED, recorded=1, error="loss nan"),
                       _run("digits_mlp", "rmsprop", 1, status=RunStatus.FAILED, recorded=0, error="boom")]
    o = study_overview(runs, study="s")
    assert o.n_runs == 8 and o.n_by_status == {"finished": 6, "diverged": 1, "failed": 1}
    assert [(p.status, p.error) for p in o.problems] == [("diverged", "loss nan"), ("failed", "boom")]
    assert o.total_seconds == pytest.approx(sum(r.total_seconds for r in runs))
    assert o.environment["threads"] == ("2",) and list(o.environment)[:2] == ["python", "torch"]


def test_lr_sensitivity_only_when_lr_varies():
    assert lr_sensitivity(_study(), "test_accuracy") == {}
    runs = [_run("t", "sgd", s, lr=lr, acc0=0.2 + lr) for lr in (0.01, 0.1, 0.3) for s in range(2)]
    runs.append(_run("t", "sgd", 0, lr=1.0, status=RunStatus.DIVERGED, recorded=0))
    curve = lr_sensitivity(runs, "test_accuracy")["sgd"]
    assert curve.lr.tolist() == [0.01, 0.1, 0.3, 1.0]
    assert curve.n.tolist() == [2, 2, 2, 0] and curve.n_lost.tolist() == [0, 0, 0, 1]
    assert math.isnan(curve.mean[-1]) and curve.mean[2] > curve.mean[0]


def test_lr_sensitivity_keeps_recipes_that_differ_beyond_lr_apart():
    import dataclasses

    runs = [_run("t", "sgd", 0, lr=lr, acc0=0.2 + lr) for lr in (0.01, 0.1)]
    runs += [dataclasses.replace(r, recipe=dataclasses.replace(r.recipe, schedule="cosine"))
             for r in (_run("t", "sgd", 0, lr=lr, acc0=0.5) for lr in (0.01, 0.1))]
    curves = lr_sensitivity(runs, "test_accuracy")
    assert sorted(curves) == ["sgd schedule=-", "sgd schedule=cosine"]
    assert curves["sgd schedule=-"].mean.tolist() != curves["sgd schedule=cosine"].mean.tolist()


def test_performance_profiles_ratios_score_and_rank():
    values = {"a": {"x": 0.9, "y": 0.45}, "b": {"x": 2.0, "y": 1.0}}
    p = performance_profiles(values, {"a": Direction.MAXIMIZE, "b": Direction.MINIMIZE})
    np.testing.assert_allclose(p.ratios, [[1.0, 2.0], [2.0, 1.0]])
    assert p.rho["x"][0] == 0.5 and p.rho["x"][-1] == 1.0
    # rho = 0.5 on [1, 2), 1 on [2, 4]: area (0.5 * 1 + 1 * 2) / 3
    assert p.score["x"] == pytest.approx(2.5 / 3, abs=0.01) and p.mean_rank == {"x": 1.5, "y": 1.5}
    missing = performance_profiles({"a": {"x": 0.9, "y": math.nan}}, {"a": Direction.MAXIMIZE})
    assert missing.score["y"] == 0.0 and missing.mean_rank["y"] == 2.0
    with pytest.raises(ConfigError, match="tau_max"):
        performance_profiles(values, {"a": Direction.MAXIMIZE, "b": Direction.MINIMIZE}, tau_max=1.0)


def test_distributed_points_and_efficiency():
    runs = [_run("t", "sgd", 0, env={"distributed": {"mode": m, "nproc": n, "samples_per_second": sps}})
            for m, n, sps in (("ddp", 1, 100.0), ("ddp", 2, 180.0), ("ps-sync", 2, 120.0))]
    assert distributed_points(_study()) is None
    d = distributed_points(runs, ("valid_accuracy", 0.7))
    assert d.efficiency[("ddp", 2)] == pytest.approx(0.9) and d.efficiency[("ps-sync", 2)] == pytest.approx(0.6)
    assert d.points[0].time_to_target == pytest.approx(1.5)  # valid acc 0.59, 0.69, 0.79: epoch 3


# ----------------------------------------------------------------------------- figures
def test_report_figures_have_one_line_per_optimizer_and_constant_colours():
    runs = _study() + [_run("mnist1d_mlp", name, s, acc0=a) for name, a in (("adam", 0.5), ("sgd", 0.2))
                       for s in range(2)]
    page = render_report(runs, study="two-tasks")
    names = set(page.figures)
    assert {"curves_digits_mlp_epoch", "curves_digits_mlp_seconds", "curves_mnist1d_mlp_epoch",
            "performance_profiles", "schedule_digits_mlp"} <= names
    colours: dict[str, str] = {}
    for name in ("curves_digits_mlp_epoch", "curves_digits_mlp_seconds", "curves_mnist1d_mlp_epoch"):
        fig = page.figures[name]
        axes = [ax for ax in fig.axes if ax.get_visible()]
        assert len(axes) == 6  # train/valid/test x loss/accuracy
        expected = 3 if "digits" in name else 2
        for ax in axes:
            lines = [ln for ln in ax.get_lines() if isinstance(ln, Line2D)]
            assert len(lines) == expected
            for ln in lines:
                assert colours.setdefault(ln.get_label(), ln.get_color()) == ln.get_color()
        if name.endswith("seconds"):
            assert axes[0].get_xlabel() == "wall-clock time (s)"
            assert axes[0].get_lines()[0].get_xdata()[-1] == pytest.approx(3 * 0.6)
    profile_ax = page.figures["performance_profiles"].axes[0]
    assert len(profile_ax.get_lines()) == 3
    assert [t.name for t in page.tables][-1] == "profiles"


def test_lr_sensitivity_and_schedule_sections():
    runs = [_run("digits_mlp", name, s, lr=lr, acc0=0.3 + lr) for name in ("adam", "sgd")
            for lr in (0.01, 0.1) for s in range(2)]
    page = render_report(runs)
    fig = page.figures["lr_sensitivity_digits_mlp"]
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].get_lines()) == 2
    assert "lr_sensitivity_digits_mlp" in [t.name for t in page.tables]
    ranking = next(t for t in page.tables if t.name == "ranking_digits_mlp")
    assert sorted(row[1] for row in ranking.rows) == ["adam lr=0.01", "adam lr=0.1", "sgd lr=0.01", "sgd lr=0.1"]
    curves = page.figures["curves_digits_mlp_epoch"].axes[0]
    assert sorted(ln.get_label() for ln in curves.get_lines()) == ["adam", "sgd"]  # each one's best lr


def test_schedule_reconstructed_matches_recorded_lr(tmp_path):
    from optbench.study.compare import CompareConfig, run_compare

    config = CompareConfig(task="digits_mlp", optimizers=("sgd",), seeds=1, epochs=3, lr=0.1, train_size=None,
                           techniques={"schedule": "cosine"})
    outcome = run_compare(config, tmp_path / "s.db")
    s = applied_schedules(outcome.results)["sgd"]
    assert s.schedule == "cosine" and s.steps.size == 3 * s.epoch_steps[0]
    assert s.lr[0] == pytest.approx(0.1) and s.lr[-1] < 0.01
    # the lr recorded at the end of an epoch is the schedule's value at the epoch's last step
    np.testing.assert_allclose(s.epoch_lr, s.lr[s.epoch_steps - 1], rtol=1e-6)
    fig = render_report(outcome.results).figures["schedule_digits_mlp"]
    assert len(fig.axes[0].get_lines()) == 2  # the schedule line and the recorded dots


# ------------------------------------------------------------------------------ HTML
def test_html_is_escaped_self_contained_and_lists_failures(tmp_path):
    evil = "<script>alert(1)</script>"
    runs = _study() + [_run("digits_mlp", "rmsprop", 0, status=RunStatus.FAILED, recorded=0, error=evil)]
    files = write_report(runs, tmp_path, study="a&b", context={"note": '"quoted" <b>'})
    text = files.html.read_text()
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a&amp;b" in text and "&quot;quoted&quot; &lt;b&gt;" in text
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text)  # only data URIs and anchors
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert text.count("<img ") == len(files.figures) >= 3
    for table in ("summary", "environment", "failures", "ranking_digits_mlp"):
        assert f'id="table-{table}"' in text
        assert all(files.tables[table][fmt].is_file() for fmt in ("md", "csv", "tex"))
    assert "1 of 7 runs did not finish" in text
    for paths in files.figures.values():
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths["svg"].read_bytes()[:400]
    with pytest.raises(ConfigError, match="results"):
        render_report([])


def test_table_exports():
    t = make_table("ranking_x", "Mean ± std; 5% & more", ["#", "optimizer", "acc (%)"],
                   [("1", "a_b|c", "91.2 ± 0.3"), ("2", "x,y", "—")])
    md = to_markdown(t)
    assert md.splitlines()[1] == "| :--- | :--- | ---: |" and r"a_b\|c" in md
    assert list(csv.reader(io.StringIO(to_csv(t)))) == [["#", "optimizer", "acc (%)"], ["1", "a_b|c", "91.2 ± 0.3"],
                                                        ["2", "x,y", "—"]]
    tex = to_latex(t)
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{llr}"))
    assert r"a\_b|c & 91.2 $\pm$ 0.3 \\" in tex and r"5\% \& more" in tex
    with pytest.raises(ConfigError, match="row of table"):
        TableData("x", "", ("a",), (("1", "2"),))
    with pytest.raises(ConfigError, match="table name"):
        make_table("../x", "", ["a"], [])


def test_report_command_from_store(tmp_path):
    from optbench.cli.main import handle_errors
    from optbench.cli.report import register

    app = typer.Typer()
    register(app, handle_errors)
    app.command("noop")(lambda: None)  # a second command, so "report" is a subcommand
    db = tmp_path / "r.db"
    with open_store(db) as store:
        store.ensure_study("s1", {"protocol": "seed004"})
        for r in _study():
            store.save_run(r, study="s1")
    result = CliRunner().invoke(app, ["report", str(db), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (tmp_path / "rep" / "index.html").is_file()
    assert "seed004" in (tmp_path / "rep" / "index.html").read_text()
    bad = CliRunner().invoke(app, ["report", str(db), "--study", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "s1" in bad.output
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "none.db")])
    assert missing.exit_code == 2
