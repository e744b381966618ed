"""Study files: loading, defaults, budget, and validation that reports every problem in one pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from optbench.core.errors import ConfigProblems
from optbench.study.config import StudyConfig, load_study, study_from_dict, validate_study

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "studies"


def _write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_files_for_every_protocol_exist():
    names = {p.stem for p in EXAMPLES.glob("*.toml")}
    assert {"seed004", "deepobs", "crowded_valley", "algoperf_lite", "tpe_asha"} <= names


def test_seed004_example_loads_with_defaults_and_budget():
    config = load_study(EXAMPLES / "seed004.toml")
    assert isinstance(config, StudyConfig)
    assert config.protocol == "seed004" and config.name == "digits-seed004"
    assert config.seeds == (0, 1, 2)
    assert [r.optimizer for r in config.recipes] == ["sgd", "momentum", "adam", "rmsprop"]
    assert all(r.hyperparams == {"lr": 1e-2} and r.batch_size == 64 for r in config.recipes)
    assert all(r.epochs == 5 and r.train_size == 1000 for r in config.recipes)
    assert validate_study(config) == []


def test_deepobs_example_options():
    config = load_study(EXAMPLES / "deepobs.toml")
    assert config.options == {"grid": (1e-4, 1.0, 5), "tuning_seeds": 1}


def test_mapping_fields_merge_and_with_budget():
    config = study_from_dict({
        "study": {"protocol": "seed004", "tasks": "digits_mlp", "seeds": [3, 5]},
        "budget": {"epochs": 2, "seconds": 30},
        "defaults": {"hyperparams": {"lr": 0.1}},
        "recipes": [{"optimizer": "momentum", "hyperparams": {"momentum": 0.5}}],
    })
    assert config.seeds == (3, 5) and config.tasks == ("digits_mlp",)
    assert config.recipes[0].hyperparams == {"lr": 0.1, "momentum": 0.5}
    assert config.recipes[0].max_train_seconds == 30.0
    assert config.name.startswith("seed004-")
    small = config.with_budget(epochs=1, train_size=100)
    assert small.recipes[0].epochs == 1 and small.recipes[0].train_size == 100
    assert small.to_dict()["budget"]["train_size"] == 100


def test_deepobs_file_with_many_problems_reports_all(tmp_path):
    path = _write(tmp_path, """
[study]
protocol = "deepobs"
tasks = ["digits_mlp", "no_such_task"]
colour = "blue"
[budget]
epochs = 0
[[recipes]]
optimizer = "adamm"
[[recipes]]
optimizer = "sgd"
epochs = 3
[protocol]
grid = { low = 0.0, high = 1.0, points = 4 }
tuning_seed = 1
""")
    with pytest.raises(ConfigProblems) as info:
        load_study(path)
    problems = {p.path: p for p in info.value.problems}
    assert all(p.source == str(path) for p in info.value.problems)
    assert "study.colour" in problems and "unknown key" in problems["study.colour"].message
    assert "budget.epochs" in problems
    assert "recipes[0].optimizer" in problems and "adam" in problems["recipes[0].optimizer"].message
    assert "study.tasks[1]" in problems and "digits_mlp" in problems["study.tasks[1]"].message
    assert "recipes[1].epochs" in problems and "[budget]" in problems["recipes[1].epochs"].message
    assert "protocol.grid.low" in problems and "> 0" in problems["protocol.grid.low"].message
    assert "protocol.tuning_seed" in problems
    text = str(info.value)
    assert text.splitlines()[0].startswith(f"{len(info.value.problems)} problem(s)")


def test_empty_grid_range(tmp_path):
    path = _write(tmp_path, """
[study]
protocol = "deepobs"
tasks = ["digits_mlp"]
[[recipes]]
optimizer = "sgd"
[protocol]
grid = { low = 1e-2, high = 1e-3, points = 4 }
""")
    with pytest.raises(ConfigProblems) as info:
        load_study(path)
    assert [(p.path, "empty range" in p.message) for p in info.value.problems] == [("protocol.grid", True)]


def test_unknown_protocol_and_bad_toml(tmp_path):
    with pytest.raises(ConfigProblems) as info:
        study_from_dict({"study": {"protocol": "deepobz", "tasks": ["digits_mlp"]},
                         "recipes": [{"optimizer": "sgd"}], "extra": 1}, source="x.toml")
    paths = {p.path: p.message for p in info.value.problems}
    assert "deepobs" in paths["study.protocol"] and "seed004" in paths["study.protocol"]
    assert "extra" in paths
    bad = _write(tmp_path, "[study\nprotocol = 1")
    with pytest.raises(ConfigProblems, match="not valid TOML"):
        load_study(bad)


def test_recipe_value_and_technique_names_are_checked():
    with pytest.raises(ConfigProblems) as info:
        study_from_dict({"study": {"protocol": "seed004", "tasks": ["digits_mlp"]},
                         "defaults": {"batch_size": 0},
                         "recipes": [{"optimizer": "adam", "schedule": "cosin"},
                                     {"optimizer": "adam", "hyperparams": {"lrr": 1.0}}]})
    paths = {p.path for p in info.value.problems}
    assert "defaults.batch_size" in paths


def test_recipe_names_checked_after_values():
    with pytest.raises(ConfigProblems) as info:
        study_from_dict({"study": {"protocol": "seed004", "tasks": ["digits_mlp"]},
                         "recipes": [{"optimizer": "adam", "schedule": "cosin"},
                                     {"optimizer": "adam", "hyperparams": {"lrr": 1.0}},
                                     {"optimizer": "adam", "penalty": "l3"}]})
    paths = {p.path: p.message for p in info.value.problems}
    assert "cosine" in paths["recipes[0].schedule"]
    assert "recipes[1].hyperparams" in paths
    assert "recipes[2].penalty" in paths


def test_protocol_needing_a_space_without_search():
    with pytest.raises(ConfigProblems) as info:
        study_from_dict({"study": {"protocol": "crowded-valley", "tasks": ["digits_mlp"]},
                         "recipes": [{"optimizer": "adam"}]})
    assert [p.path for p in info.value.problems] == ["search.space"]


def test_validate_study_on_api_config():
    config = load_study(EXAMPLES / "seed004.toml")
    from dataclasses import replace

    from optbench.core.spec import Recipe

    broken = replace(config, recipes=(Recipe("nope"),), tasks=("digits_mlp", "nope_task"))
    paths = {p.path for p in validate_study(broken)}
    assert {"recipes[0].optimizer", "study.tasks[1]"} <= paths


def test_search_space_problems_reported_with_the_rest(tmp_path):
    path = _write(tmp_path, """
[study]
protocol = "crowded-valey"
tasks = ["digits_mlp"]
[[recipes]]
optimizer = "adamm"
colour = 1
[search]
sampler = "random"
[search.space]
"hyperparams.lr" = { low = 0.0, high = 1.0, log = true }
"hyperparams.momentum" = { low = 0.9, high = 0.1 }
""")
    with pytest.raises(ConfigProblems) as info:
        load_study(path)
    paths = [p.path for p in info.value.problems]
    assert "study.protocol" in paths and "recipes[0].colour" in paths
    assert any(p.startswith("search.space") and "lr" in p for p in paths)
    assert any(p.startswith("search.space") and "momentum" in p for p in paths)


@pytest.mark.parametrize("name", ["crowded_valley", "algoperf_lite", "tpe_asha"])
def test_search_examples_load(name):
    config = load_study(EXAMPLES / f"{name}.toml")
    assert config.search is not None and config.search.space is not None



def test_deepobs_reruns_the_best_setting_on_ten_seeds_by_default():
    from optbench.study.config import study_from_dict

    base = {"study": {"protocol": "deepobs", "tasks": ["digits_mlp"]}, "budget": {"epochs": 1},
            "recipes": [{"optimizer": "sgd"}]}
    assert study_from_dict(base).seeds == tuple(range(10))
    base["study"]["protocol"] = "seed004"
    assert study_from_dict(base).seeds == (0, 1, 2)


def test_techniques_as_strings_tables_and_the_older_flat_keys():
    from optbench.core.spec import Recipe, run_id

    config = study_from_dict({
        "study": {"protocol": "seed004", "tasks": ["digits_mlp"]},
        "defaults": {"hyperparams": {"lr": 0.1}, "techniques": ["gaussian_noise:std=0.1"]},
        "recipes": [
            {"optimizer": "sgd"},
            {"optimizer": "adam", "schedule_params": {"warmup_steps": 2},
             "techniques": ["label_smoothing:epsilon=0.1", {"name": "clip_norm", "params": {"max_norm": 1.0}}]},
            {"optimizer": "momentum", "label_smoothing": 0.1, "clip_norm": 1.0, "warmup_steps": 2, "techniques": []},
            {"optimizer": "nesterov", "label_smoothing": 0.1},
        ]})
    sgd, adam, momentum, nesterov = config.recipes
    assert [str(t) for t in sgd.techniques] == ["gaussian_noise:std=0.1"]  # from [defaults]
    assert [str(t) for t in adam.techniques] == ["label_smoothing:epsilon=0.1", "clip_norm:max_norm=1.0"]
    assert adam.schedule_params == {"warmup_steps": 2}
    # the flat keys give the techniques and the run id of the flat recipe (a recipe's list, empty here,
    # replaces the one of [defaults]; flat keys come before the list's items)
    assert [str(t) for t in momentum.techniques] == ["label_smoothing:epsilon=0.1", "clip_norm:max_norm=1.0"]
    flat = Recipe.from_dict({"optimizer": "momentum", "hyperparams": {"lr": 0.1}, "label_smoothing": 0.1,
                             "clip_norm": 1.0, "warmup_steps": 2})
    assert run_id("digits_mlp", momentum, 0) == run_id("digits_mlp", flat, 0)
    assert [str(t) for t in nesterov.techniques] == ["label_smoothing:epsilon=0.1", "gaussian_noise:std=0.1"]
    assert validate_study(config) == []


def test_techniques_example_loads():
    config = load_study(EXAMPLES / "techniques.toml")
    assert [[str(t) for t in r.techniques] for r in config.recipes] == [
        [], ["label_smoothing:epsilon=0.1"],
        ["label_smoothing:epsilon=0.1", "clip_norm:max_norm=1.0", "ema:decay=0.99"]]
    assert all(r.schedule == "cosine" and r.schedule_params == {"warmup_steps": 20} for r in config.recipes)
    assert validate_study(config) == []


def test_technique_problems_are_reported_at_the_key_they_came_from():
    with pytest.raises(ConfigProblems) as info:
        study_from_dict({
            "study": {"protocol": "seed004", "tasks": ["digits_mlp"]},
            "defaults": {"techniques": ["nosuch"]},
            "recipes": [{"optimizer": "sgd"},
                        {"optimizer": "adam", "techniques": ["clip_norm:max_norm", {"name": "ema", "parms": {}}, 3]},
                        {"optimizer": "adam", "techniques": ["clip_norm:maxnorm=1", "random_crop:padding=2"]},
                        {"optimizer": "adam", "averaging": "polyak", "augmentation": {"random_crop": {"padding": 2}}},
                        {"optimizer": "adam", "techniques": "clip_norm:max_norm=1"}]})
    problems = {p.path: p.message for p in info.value.problems}
    assert "nosuch" in problems["defaults.techniques[0]"] and "clip_norm" in problems["defaults.techniques[0]"]
    assert {"recipes[1].techniques[0]", "recipes[1].techniques[1]", "recipes[1].techniques[2]"} <= set(problems)
    assert "NAME:key=value" in problems["recipes[1].techniques[0]"]
    assert "max_norm, norm_type" in problems["recipes[2].techniques[0]"]
    assert "augmentation for task digits_mlp" in problems["recipes[2].techniques[1]"]
    assert "polyak" in problems["recipes[3].averaging"]
    assert "a list of techniques" in problems["recipes[4].techniques"]


def test_validate_study_reports_technique_items_of_api_recipes():
    from dataclasses import replace

    from optbench.core.spec import Recipe

    config = load_study(EXAMPLES / "seed004.toml")
    broken = replace(config, recipes=(Recipe("sgd", techniques=["swa", "clip_value:clip_value=-1"]),))
    paths = {p.path for p in validate_study(broken)}
    assert paths == {"recipes[0].techniques[1]"}
