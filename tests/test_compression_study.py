"""The compression example study end to end (at 1 seed and 6 epochs: structured pruning acts at
epoch 5): every method finishes, every run carries its model cost, and the report draws the
accuracy-size planes with the Pareto front; the report's plane labels drop the words all recipes
share."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.report.costs import common_prefix
from optbench.runs.store import open_store
from optbench.study.config import load_study, validate_study

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "studies"


def test_every_example_study_validates():
    for path in sorted(EXAMPLES.glob("*.toml")):
        assert validate_study(load_study(path)) == [], path.name


def test_compression_study_runs_and_draws_the_pareto_planes(tmp_path):
    text = (EXAMPLES / "compression.toml").read_text()
    text = re.sub(r"^seeds = \d+$", "seeds = 1", text, flags=re.M)
    text = re.sub(r"^epochs = \d+$", "epochs = 6", text, flags=re.M)
    study = tmp_path / "compression.toml"
    study.write_text(text)
    out, store = tmp_path / "out", tmp_path / "c.db"
    result = CliRunner().invoke(app, ["study", "run", str(study), "--out", str(out), "--store", str(store)])
    assert result.exit_code == 0, result.output
    handle = open_store(str(store))
    try:
        runs = handle.load_runs()
    finally:
        handle.close()
    assert len(runs) == 19 and all(r.status.value == "finished" for r in runs), [r.error for r in runs if r.error]
    costs = {r.recipe.techniques[0].name + str(r.recipe.techniques[0].params): r.environment["model_cost"]
             for r in runs}
    dense = costs["model_cost{}"]
    assert dense["parameters"] == dense["nonzero_parameters"] == 15210
    assert costs["magnitude_pruning{'sparsity': 0.9}"]["nonzero_parameters"] < 0.2 * dense["parameters"]
    assert costs["structured_pruning{'epoch': 5, 'sparsity': 0.5}"]["parameters"] < dense["parameters"] / 2
    assert costs["qat{}"]["model_bytes"] < dense["model_bytes"] / 2
    figures = {p.name for p in (out / "figures").glob("*.png")}
    for plane in ("nonzero_parameters", "model_bytes", "latency_ms_batch_1"):
        assert f"cost_mnist1d_mlp_model_cost-{plane}.png" in figures
    assert "Pareto" in (out / "index.html").read_text()


def test_common_prefix_stops_at_a_word():
    assert common_prefix(["adam techniques=qat", "adam techniques=sparse_2_4"]) == "adam techniques="
    assert common_prefix(["adam", "adamw"]) == "" and common_prefix(["sgd"]) == ""
