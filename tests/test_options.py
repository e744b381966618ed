"""The shared key=value parser: one literal rule for task references and technique parameters."""

from __future__ import annotations

import pytest
import torch

from optbench.cli.techniques import parse_augmentation, techniques
from optbench.core.errors import ConfigError
from optbench.core.options import (
    format_literal,
    parse_bracketed,
    parse_literal,
    parse_options,
)
from optbench.schedules import parse_params
from optbench.tasks import get_task, parse_task_ref, task_name

TEXTS = {"30": 30, "-2": -2, "0.1": 0.1, "1e-3": 1e-3, " 5 ": 5, "true": True, "False": False, "TRUE": True,
         "batch": "batch", "exp_range": "exp_range", "nan": "nan", "inf": "inf", "-inf": "-inf", "": "", " x ": "x"}


@pytest.mark.parametrize(("text", "value"), TEXTS.items())
def test_literal_rule(text, value):
    parsed = parse_literal(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("value", [30, -2, 0.1, 1e-3, 0.25, True, False, "batch", [30, 60], [0.5, True]])
def test_format_literal_reads_back(value):
    text = format_literal(value)
    back = parse_options([f"v={text}"])["v"]
    assert back == value and type(back) is type(value)


def test_task_refs_and_schedule_params_share_the_rule():
    items = ["a=3", "b=0.5", "c=true", "d=batch", "e=nan"]
    _, from_task = parse_task_ref("t[" + ",".join(items) + "]")
    assert from_task == parse_params(items) == parse_options(items) == {"a": 3, "b": 0.5, "c": True, "d": "batch",
                                                                        "e": "nan"}
    assert type(from_task["c"]) is bool


def test_lists_only_in_standalone_items():
    assert parse_options(["milestones=30,60,", "gamma=0.1"]) == {"milestones": [30, 60], "gamma": 0.1}
    assert parse_options(["m=30,60"], lists=False) == {"m": "30,60"}
    # in brackets the comma separates the pairs
    assert parse_bracketed("t[m=30,g=0.5]") == ("t", {"m": 30, "g": 0.5})
    with pytest.raises(ConfigError, match="task parameter '60'"):
        parse_task_ref("t[m=30,60]")


def test_bracketed_forms():
    assert parse_bracketed(" fmnist_cnn3 ") == ("fmnist_cnn3", {})
    assert parse_bracketed("fmnist_cnn3[]") == ("fmnist_cnn3", {})
    assert parse_bracketed("f.py:make[ width = 0.5 , ]") == ("f.py:make", {"width": 0.5})
    assert parse_task_ref("fmnist_cnn3[norm=batch,width=0.5]") == ("fmnist_cnn3", {"norm": "batch", "width": 0.5})


@pytest.mark.parametrize(("call", "field"), [
    (lambda: parse_options(["gamma"], field="schedule parameter"), "schedule parameter 'gamma'"),
    (lambda: parse_options(["=3"], field="--penalty-param"), "--penalty-param '=3'"),
    (lambda: parse_options(["1a=3"]), "option '1a=3'"),
    (lambda: parse_options(["a=1", "a=2"], field="x"), "x 'a=2'.*each name once"),
    (lambda: parse_task_ref("digits_mlp[norm]"), "task parameter 'norm'.*key=value pairs"),
    (lambda: parse_task_ref("digits_mlp[width=1,width=2]"), "each name once"),
    (lambda: parse_params(["a=1", "a=2"]), "schedule parameter"),
    (lambda: parse_augmentation(["random_crop:padding"]), "--augment 'padding'"),
    (lambda: parse_augmentation([":padding=4"]), "--augment"),
])
def test_bad_input_is_a_config_error_naming_the_field(call, field):
    with pytest.raises(ConfigError, match=field) as info:
        call()
    assert "\n" not in str(info.value)


def test_cli_syntaxes_still_parse():
    assert parse_augmentation(["random_crop:padding=4", "horizontal_flip", "gaussian_noise:std=0.1"]) == {
        "random_crop": {"padding": 4}, "horizontal_flip": {}, "gaussian_noise": {"std": 0.1}}
    given = techniques(schedule="multistep", schedule_param=["milestones=30,60", "gamma=0.5"], warmup=0,
                       label_smoothing=0.0, penalty="l2", penalty_param=["strength=1e-4"], early_stopping=None,
                       min_delta=0.0, augment=[], averaging="ema", averaging_param=["decay=0.9"], precision="fp32",
                       clip_norm=None, clip_value=None, accumulation=1, batch_rule="none", base_batch_size=128,
                       no_decay_bias_norm=False)
    assert given["schedule_params"] == {"milestones": [30, 60], "gamma": 0.5}
    assert given["penalty_params"] == {"strength": 1e-4} and given["averaging_params"] == {"decay": 0.9}
    with pytest.raises(ConfigError, match="--averaging-param"):
        techniques(schedule="constant", schedule_param=[], warmup=0, label_smoothing=0.0, penalty="none",
                   penalty_param=[], early_stopping=None, min_delta=0.0, augment=[], averaging="ema",
                   averaging_param=["decay"], precision="fp32", clip_norm=None, clip_value=None, accumulation=1,
                   batch_rule="none", base_batch_size=128, no_decay_bias_norm=False)


def test_task_names_are_canonical_and_numeric_options_are_checked():
    assert task_name("brown_word_lstm", {"tied": True, "width": 0.5}) == "brown_word_lstm[tied=true,width=0.5]"
    assert task_name("digits_mlp", {"width": 1}) == "digits_mlp[width=1]"
    assert get_task("digits_mlp[width=0.5,dropout=0.25]").name == "digits_mlp[dropout=0.25,width=0.5]"
    for ref in ("digits_mlp[width=abc]", "digits_mlp[dropout=nan]", "digits_mlp[width=true]"):
        with pytest.raises(ConfigError, match="a finite number"):
            get_task(ref)
    assert get_task("digits_mlp[dropout=0.5]").make_model()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
