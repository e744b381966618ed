"""The shared key=value parser: one literal rule for task references and technique parameters; the
command line's technique options (``--technique`` and the shorthand flags)."""

from __future__ import annotations

import pytest
import torch

from optbench.cli.techniques import parse_augmentation, parse_technique, parse_technique_options
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
    given = parse_technique_options(schedule="multistep", schedule_param=["milestones=30,60", "gamma=0.5"],
                                    penalty="l2", penalty_param=["strength=1e-4"], averaging="ema",
                                    averaging_param=["decay=0.9"])
    assert given.schedule == "multistep" and given.schedule_params == {"milestones": [30, 60], "gamma": 0.5}
    assert [(t.name, dict(t.params)) for t in given.techniques] == [("l2", {"strength": 1e-4}), ("ema", {"decay": 0.9})]
    with pytest.raises(ConfigError, match="--averaging-param"):
        parse_technique_options(averaging="ema", averaging_param=["decay"])


def test_technique_option_parses_name_and_parameters_in_order():
    assert (parse_technique("clip_norm:max_norm=1.0,norm_type=2").name,
            dict(parse_technique("clip_norm:max_norm=1.0,norm_type=2").params)) == ("clip_norm",
                                                                                    {"max_norm": 1.0, "norm_type": 2})
    assert parse_technique(" swa ").name == "swa" and not parse_technique("swa").params
    assert dict(parse_technique("ema:decay=0.9, average_buffers=false").params) == {"decay": 0.9,
                                                                                   "average_buffers": False}
    given = parse_technique_options(technique=["clip_norm:max_norm=1", "label_smoothing:epsilon=0.1"], warmup=5,
                                    label_smoothing=0.0, clip_value=0.5)
    # shorthands first (the flat form's order), then --technique items in the order given
    assert [str(t) for t in given.techniques] == ["clip_value:clip_value=0.5", "clip_norm:max_norm=1",
                                                  "label_smoothing:epsilon=0.1"]
    assert given.schedule_params == {"warmup_steps": 5}


@pytest.mark.parametrize(("kwargs", "field", "allowed"), [
    ({"technique": ["clip_norm:max_norm"]}, "--technique 'clip_norm:max_norm'", "NAME:key=value"),
    ({"technique": ["bad name"]}, "--technique 'bad name'", "NAME:key=value"),
    ({"technique": [":x=1"]}, "--technique ':x=1'", "NAME:key=value"),
    ({"technique": ["ema:decay=0.9,decay=0.8"]}, "--technique", "each name once"),
    ({"technique": ["swa", "swa:start=2"]}, "--technique 'swa'", "each technique once"),
    ({"clip_norm": 1.0, "technique": ["clip_norm:max_norm=2"]}, "--technique 'clip_norm'", "each technique once"),
    ({"penalty": "l3"}, "--penalty 'l3'", "elastic_net, l1, l2, none"),
    ({"averaging": "polyak"}, "--averaging 'polyak'", "ema, none, swa"),
    ({"augment": ["rotate"]}, "--augment 'rotate'", "gaussian_noise, horizontal_flip, random_crop"),
    ({"penalty_param": ["strength=1"]}, "--penalty-param", "only together with --penalty"),
    ({"min_delta": 0.1}, "--min-delta", "only together with --early-stopping"),
    ({"base_batch_size": 64}, "--base-batch-size", "only together with --batch-rule"),
    ({"warmup": 3, "schedule_param": ["warmup_steps=2"]}, "--warmup", "not both"),
])
def test_bad_technique_options_name_the_option_and_the_allowed_values(kwargs, field, allowed):
    with pytest.raises(ConfigError) as info:
        parse_technique_options(**kwargs)
    message = str(info.value)
    assert message.startswith(f"invalid {field}") and allowed in message and "\n" not in message


def test_task_names_are_canonical_and_numeric_options_are_checked():
    assert task_name("brown_word_lstm", {"tied": True, "width": 0.5}) == "brown_word_lstm[tied=true,width=0.5]"
    assert task_name("digits_mlp", {"width": 1}) == "digits_mlp[width=1]"
    assert get_task("digits_mlp[width=0.5,dropout=0.25]").name == "digits_mlp[dropout=0.25,width=0.5]"
    for ref in ("digits_mlp[width=abc]", "digits_mlp[dropout=nan]", "digits_mlp[width=true]"):
        with pytest.raises(ConfigError, match="a finite number"):
            get_task(ref)
    assert get_task("digits_mlp[dropout=0.5]").make_model()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
