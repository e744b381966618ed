"""Trajectory pictures: contour plots and GIFs checked for content, lr tuning, the built-in demos, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.report.trajectories import PATH_GID, animate_trajectories, frame_indices, plot_trajectories
from optbench.testfns import get_function, trajectory
from optbench.testfns.demos import demos, escape_step, run_demo
from optbench.testfns.tuning import lr_grid, tune_lr


def _paths(function, names, steps=60, lr=0.02):
    return [trajectory(function, name, steps=steps, lr=lr) for name in names]


def _path_lines(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_gid() == PATH_GID]


def test_contour_plot_has_one_path_line_per_optimizer():
    f = get_function("rosenbrock")
    names = ["sgd", "momentum", "adam", "rmsprop"]
    paths = _paths(f, names, lr=1e-3)
    paths[2].notes["tuned"] = True
    fig = plot_trajectories(f, paths)
    lines = _path_lines(fig)
    assert len(lines) == len(names) == len(fig.axes[0].get_lines())
    assert [line.get_label() for line in lines] == ["sgd lr=0.001", "momentum lr=0.001", "adam lr=0.001 (tuned)",
                                                    "rmsprop lr=0.001"]
    for line, path in zip(lines, paths, strict=True):  # each line is the whole path
        assert np.array_equal(np.column_stack(line.get_data()), path.points)
    legend_texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "adam lr=0.001 (tuned)" in legend_texts and "minimum" in legend_texts
    with pytest.raises(ConfigError):
        plot_trajectories(f, paths + paths[:1])
    with pytest.raises(ConfigError):
        plot_trajectories(f, [])


def test_gif_has_growing_frames_and_is_written_atomically(tmp_path):
    f = get_function("ill_conditioned_quadratic", condition=20.0)
    paths = _paths(f, ["sgd", "momentum"], steps=40, lr=0.05)
    out = animate_trajectories(f, paths, tmp_path / "sub" / "q.gif", frames=8, hold=3, dpi=40)
    assert sorted(p.name for p in out.parent.iterdir()) == ["q.gif"]  # no temporary file left
    with Image.open(out) as gif:
        assert gif.n_frames > 1
        gif.seek(0)
        first = np.asarray(gif.convert("RGB")).copy()
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB"))
        assert gif.size == (280, 224)  # 7 x 5.6 inches at 40 dpi
    assert (first != last).any()  # the paths grew
    shown = frame_indices(40, 8)
    assert shown[0] == 1 and shown[-1] == 41 and len(shown) == 8 and (np.diff(shown) > 0).all()
    with pytest.raises(ConfigError):
        animate_trajectories(f, paths, tmp_path / "q.png")


def test_tuning_picks_the_best_stable_lr_on_a_log_grid():
    assert lr_grid() == pytest.approx(np.geomspace(1e-4, 1, 13))
    q = get_function("ill_conditioned_quadratic", condition=20.0)
    grid = (0.001, 0.01, 0.05, 0.09, 0.2, 1.0)  # sgd diverges for lr > 2/20 = 0.1
    result = tune_lr(q, "sgd", steps=50, grid=grid)
    assert result.grid == grid and result.stable == (0.001, 0.01, 0.05, 0.09)
    assert result.scores[-2:] == (math.inf, math.inf)
    assert result.lr == 0.09 and result.score == min(result.scores)  # 1 - 0.09 is the fastest rate along x
    # leaving the plot window counts as divergence unless in_bounds=False
    rosen = get_function("rosenbrock")
    wild = tune_lr(rosen, "adam", steps=200, grid=(0.3, 1.0, 3.0), in_bounds=False)
    kept = tune_lr(rosen, "adam", steps=200, grid=(0.3, 1.0, 3.0))
    assert math.isfinite(wild.scores[-1]) and kept.scores[-1] == math.inf and kept.lr == 1.0
    with pytest.raises(ConfigError, match="lr grid of sgd"):
        tune_lr(q, "sgd", steps=50, grid=(0.5, 1.0))
    with pytest.raises(ConfigError):
        tune_lr(q, "sgd", steps=50, lr=0.1)


def test_saddle_demo_adaptive_methods_escape_sooner():
    result = run_demo("saddle")
    escape = {name: m["escape_step"] for name, m in result.metrics.items()}
    # plain SGD from (1, 1e-3) with lr 0.05: x_k = 0.9^k, y_k = 1e-3 * 1.1^k, escape when f < -0.01
    expected = next(k for k in range(1000) if 0.81**k - 1e-6 * 1.21**k < -0.01)
    assert escape["sgd"] == expected == 49
    assert escape["momentum"] == 22
    for adaptive in ("rmsprop", "adam", "adabelief"):
        assert escape[adaptive] < escape["momentum"] < escape["sgd"]
    assert escape["adagrad"] < escape["sgd"]
    assert escape_step(result.paths[0], below=1e9) != escape_step(result.paths[0], below=1e9)  # never: NaN


def test_quadratic_and_rastrigin_demos_show_their_point():
    q = run_demo("ill_conditioned_quadratic")
    final = {name: m["final_value"] for name, m in q.metrics.items()}
    assert final["momentum"] < 0.1 * final["sgd"] and final["nesterov"] < 0.1 * final["sgd"]
    r = run_demo("rastrigin", steps=300)
    best = {name: m["best_value"] for name, m in r.metrics.items()}
    local = float(get_function("rastrigin")(torch.tensor([2.98, 2.98], dtype=torch.float64)))
    assert best["sgd"] < local - 5 and best["adam"] > local - 1  # noise lets SGD hop; Adam stays in the basin
    with pytest.raises(UnknownNameError):
        run_demo("valley")


def test_rosenbrock_demo_tunes_every_lr():
    result = run_demo("rosenbrock", steps=80, grid=(1e-3, 1e-2, 1e-1))
    assert set(result.tuning) == set(demos.get("rosenbrock").optimizers)
    assert all(p.notes["tuned"] and p.hyperparams["lr"] == result.tuning[p.optimizer].lr for p in result.paths)
    assert all("(tuned)" in line.get_label() for line in _path_lines(plot_trajectories(result.function,
                                                                                         result.paths)))


def test_trajectory_command_writes_png_gif_and_demo_files(tmp_path, capsys):
    from optbench.cli.main import main

    png, gif, out = tmp_path / "r.png", tmp_path / "r.gif", tmp_path / "r.json"
    assert main(["trajectory", "--function", "rosenbrock", "--optimizers", "sgd,adam", "--steps", "30", "--tune",
                 "--frames", "6", "--png", str(png), "--gif", str(gif), "--out", str(out)]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 300
    with Image.open(gif) as image:
        assert image.n_frames > 1
    data = json.loads(out.read_text())
    assert [t["tuned"] for t in data["trajectories"]] == [True, True]
    assert "(tuned)" in capsys.readouterr().out
    demo_dir = tmp_path / "demos"
    assert main(["trajectory", "--demo", "saddle,ill_conditioned_quadratic", "--frames", "5",
                 "--out-dir", str(demo_dir)]) == 0
    assert sorted(p.name for p in demo_dir.iterdir()) == sorted(
        f"{d}.{ext}" for d in ("saddle", "ill_conditioned_quadratic") for ext in ("png", "gif", "json"))
    saddle = json.loads((demo_dir / "saddle.json").read_text())
    assert saddle["metrics"]["sgd"]["escape_step"] == 49
    assert "escape_step=49" in capsys.readouterr().out
    assert main(["trajectory", "--demo", "saddle", "--lr", "0.1", "--out-dir", str(demo_dir)]) == 2
    assert main(["trajectory", "--png", str(tmp_path / "x.jpg")]) == 2
    assert main(["trajectory", "--tune", "--lr", "0.1"]) == 2
    assert main(["trajectory", "--demo", "valley", "--out-dir", str(demo_dir)]) == 2
    err = capsys.readouterr().err
    assert "--png" in err and "saddle" in err
