"""Tests of optbench.report: ranking tables, summary.md, curve figures."""

from __future__ import annotations

import io
import struct
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from optbench.analysis import curve_bands, summarize_runs
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.report import (
    label_colors,
    plot_curves,
    ranking_markdown,
    ranking_table,
    save_figure,
    summary_markdown,
)

KEYS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy")
DIRECTIONS = {k: Direction.MAXIMIZE if k.endswith("accuracy") else Direction.MINIMIZE for k in KEYS}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(label: str, seed: int, accs: list[float], *, status: RunStatus = RunStatus.FINISHED,
             error: str | None = None) -> RunResult:
    """A fake run: accuracy ``a`` at each epoch, losses ``1 - a``."""
    recipe = Recipe(optimizer=label, hyperparams={"lr": 0.1}, epochs=3)
    epochs = [
        EpochRecord(epoch=i + 1, step=50 * (i + 1),
                    metrics={"train_loss": 1 - a, "train_accuracy": a, "valid_loss": 1 - a,
                             "valid_accuracy": a, "test_loss": 1 - a, "test_accuracy": a},
                    train_seconds=1.0, eval_seconds=0.25, samples_per_second=2000.0, lr=0.1)
        for i, a in enumerate(accs)
    ]
    return RunResult(run_id("toy", recipe, seed), "toy", recipe, seed, status, epochs, error)


@pytest.fixture()
def runs() -> list[RunResult]:
    out = [make_run("adam", s, [0.6, 0.86, 0.89 + 0.01 * s]) for s in range(3)]
    out += [make_run("sgd", s, [0.3, 0.5, 0.70 + 0.02 * s]) for s in range(3)]
    out += [make_run("rms|prop", 0, [0.5, 0.8, 0.96]),
            make_run("rms|prop", 1, [0.8], status=RunStatus.DIVERGED,
                     error="non-finite loss nan at step 61"),
            make_run("rms|prop", 2, [], status=RunStatus.FAILED,
                     error="RuntimeError: ```odd``` message\nsecond line")]
    return out


@pytest.fixture(autouse=True)
def _no_pyplot_figures() -> Iterator[None]:
    yield
    if "matplotlib.pyplot" in sys.modules:  # only if someone imported pyplot at all
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


# ---------------------------------------------------------------- tables

def test_ranking_markdown_has_every_label_and_number(runs: list[RunResult]) -> None:
    summaries = summarize_runs(runs, DIRECTIONS)
    text = ranking_markdown(summaries, legend=False)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3  # header, alignment, one row per recipe
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert len({line.replace("\\|", "").count("|") for line in lines}) == 1  # same column count
    adam, rms, sgd = lines[2], lines[3], lines[4]
    assert adam.startswith("| 1 | adam | 90.00 ± 1.00 |")
    assert "[89.00, 91.00]" in adam and "2.0 ± 0.0 (3/3)" in adam and "| best |" in adam
    assert "2,000 ± 0" in adam
    assert rms.startswith("| 2 | rms\\|prop | 88.00 ± 11.31 |")  # 0.96 and the diverged run's 0.8
    assert "1/3 | 1/3 |" in rms and "| 3.0 (1/2) |" in rms and "≈ p=" in rms
    assert sgd.startswith("| 3 | sgd | 72.00 ± 2.00 |") and "p=" in sgd and "≈" not in sgd
    assert "— (0/3)" in sgd
    assert "epochs to valid_accuracy ≥ 0.85" in lines[0]
    assert "Holm" in ranking_markdown(summaries)


def test_ranking_markdown_raw_units(runs: list[RunResult]) -> None:
    summaries = summarize_runs(runs, DIRECTIONS, final_key="test_loss", best_key="valid_loss",
                               target=("valid_loss", 0.2))
    text = ranking_markdown(summaries, final_label="final test loss", best_label="best valid loss",
                            final_as_percent=False, best_as_percent=False)
    assert "| final test loss |" in text and "(%)" not in text
    assert "| 1 | adam | 0.1 ± 0.01 |" in text
    assert "epochs to valid_loss ≤ 0.2" in text


def test_ranking_table_renders(runs: list[RunResult]) -> None:
    summaries = summarize_runs(runs, DIRECTIONS)
    table = ranking_table(summaries, title="fmnist_cnn3: 3 seeds")
    assert isinstance(table, Table)
    assert table.row_count == 3 and len(table.columns) == 10
    console = Console(file=io.StringIO(), width=220, color_system=None)
    console.print(table)
    out = console.file.getvalue()
    for expected in ("fmnist_cnn3: 3 seeds", "adam", "sgd", "rms|prop", "90.00 ± 1.00",
                     "[89.00, 91.00]", "(3/3)", "samples/s", "Holm"):
        assert expected in out


def test_summary_markdown(runs: list[RunResult]) -> None:
    summaries = summarize_runs(runs, DIRECTIONS)
    context = {"task": "fmnist_cnn3", "seeds": "0, 1, 2", "command": "`optbench compare --epochs 150`"}
    text = summary_markdown(summaries, context=context, title="Reference comparison")
    assert text.startswith("# Reference comparison\n")
    assert "- **task:** fmnist_cnn3" in text and "`optbench compare --epochs 150`" in text
    assert "9 runs: 7 finished, 1 diverged, 1 failed." in text
    assert ranking_markdown(summaries).strip() in text
    how = text.split("## How sure")[1].split("##")[0]
    assert "**adam** ranks first" in how and "90.00%" in how
    assert "**rms|prop**" in how and "overlap" in how  # its wide CI overlaps adam's
    assert "every run of **adam** and some runs of **rms|prop**; never by **sgd**." in how
    assert "finds **sgd** different" in how
    problems = text.split("## Diverged and failed runs")[1]
    assert "seed 1" in problems and "diverged after 1 recorded epoch." in problems
    assert "non-finite loss nan at step 61" in problems
    assert "failed after 0 recorded epochs." in problems
    # the fence is longer than any backtick run in the message, so the message shows verbatim
    assert "  ````\n  RuntimeError: ```odd``` message\n  second line\n  ````" in problems


def test_summary_markdown_all_finished() -> None:
    runs = [make_run("adam", s, [0.9]) for s in range(2)]
    text = summary_markdown(summarize_runs(runs, DIRECTIONS), context={})
    assert "None: all 2 runs finished." in text


# ---------------------------------------------------------------- plots

def test_label_colors_stable() -> None:
    a = label_colors(["sgd", "adam", "nadam"])
    assert a == label_colors(["nadam", "sgd", "adam", "adam"])
    assert list(a) == ["adam", "nadam", "sgd"] and len(set(a.values())) == 3


def test_plot_curves_content(runs: list[RunResult]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_curves(runs, log_keys={"train_loss"})
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 4
    labels = ["adam", "rms|prop", "sgd"]
    colors = label_colors(labels)
    for ax, key in zip(fig.axes, ("train_loss", "test_loss", "train_accuracy", "test_accuracy"),
                       strict=True):
        lines = ax.get_lines()
        assert len(lines) == len(labels)
        assert [line.get_label() for line in lines] == labels
        assert [to_hex(line.get_color()) for line in lines] == [colors[x] for x in labels]
        assert ax.get_title() == key.replace("_", " ") and ax.get_xlabel() == "epoch"
        assert len(ax.collections) == len(labels)  # one band per label
        assert ax.get_legend() is None
        bands = curve_bands(runs, key)
        for line in lines:
            np.testing.assert_allclose(line.get_ydata(), bands[line.get_label()].mean)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[1].get_yscale() == "linear"
    assert len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == labels


def test_plot_curves_options(runs: list[RunResult]) -> None:
    fig = plot_curves(runs, keys=("valid_accuracy",), x="seconds")
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "wall-clock time (s)"
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_xdata(), [1.25, 2.5, 3.75])
    three = plot_curves(runs, keys=("train_loss", "test_loss", "valid_loss"))
    assert sum(ax.get_visible() for ax in three.axes) == 3
    custom = {"adam": "#000000", "sgd": "#111111", "rms|prop": "#222222"}
    fig = plot_curves(runs, colors=custom)
    assert to_hex(fig.axes[0].get_lines()[0].get_color()) == "#000000"
    with pytest.raises(ConfigError, match="colors"):
        plot_curves(runs, colors={"adam": "#000000"})
    with pytest.raises(ConfigError, match="keys"):
        plot_curves(runs, keys=())


def test_save_figure_png_and_svg(runs: list[RunResult], tmp_path: Path) -> None:
    fig = plot_curves(runs)
    png = save_figure(fig, tmp_path / "out" / "curves.png", dpi=50)
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])  # IHDR chunk
    w_in, h_in = fig.get_size_inches()
    assert abs(width - w_in * 50) <= 2 and abs(height - h_in * 50) <= 2
    svg = save_figure(fig, tmp_path / "curves.svg")
    assert b"<svg" in svg.read_bytes()[:1000]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["curves.png", "curves.svg", "out"]
    with pytest.raises(ConfigError, match=r"\.png"):
        save_figure(fig, tmp_path / "curves.jpg")
    assert not (tmp_path / "curves.jpg").exists()


def test_save_figure_keeps_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "curves.png"
    target.write_bytes(b"old")

    class Broken(Figure):
        def savefig(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_figure(Broken(), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_no_pyplot_needed(runs: list[RunResult], tmp_path: Path) -> None:
    save_figure(plot_curves(runs), tmp_path / "c.png")
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
