"""Language-modelling tasks on small fake corpora (the real ones are measured by bench/tasks.py)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import optbench.data
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.data.text import corpus_from_text
from optbench.engine import split_data, train
from optbench.tasks import check_task, get_task
from optbench.tasks.language import (
    LSTMLanguageModel,
    TransformerLanguageModel,
    text_loader,
    token_windows,
)

LM_TASKS = ("shakespeare_char_lstm", "shakespeare_char_transformer", "brown_word_lstm")


def lstm_params(vocab: int, e: int = 128, h: int = 128, layers: int = 2, tied: bool = False) -> int:
    per_layer = [4 * h * (e + h) + 8 * h] + [4 * h * (h + h) + 8 * h] * (layers - 1)
    return vocab * e + sum(per_layer) + (0 if tied else h * vocab) + vocab


def transformer_params(vocab: int, context: int, d: int = 128, ff: int = 512, layers: int = 2) -> int:
    block = (4 * d * d + 4 * d) + (2 * d * ff + ff + d) + 4 * d
    return vocab * d + context * d + layers * block + 2 * d + d * vocab + vocab


@pytest.fixture
def fake_corpora(monkeypatch):
    """``load_text`` replaced by small corpora built from strings (char: 20 letters; word: 40 words)."""
    rng = np.random.RandomState(0)
    letters = "abcdefghijklmnopqrst"
    pattern = "".join(letters[i % 7] for i in range(1500))  # a periodic text a model can learn
    words = [f"w{i}" for i in range(40)]

    def word_text(n: int) -> str:
        return "\n".join(" ".join(rng.choice(words, 8)) for _ in range(n))

    corpora = {
        "shakespeare": corpus_from_text("shakespeare", pattern * 2 + letters, pattern, pattern),
        "brown": corpus_from_text("brown", word_text(200), word_text(40), word_text(40), level="word"),
    }
    monkeypatch.setattr(optbench.data, "load_text", lambda name, *a, **k: corpora[name])
    return corpora


def test_token_windows_are_non_overlapping_and_shifted():
    split = token_windows(np.arange(23), 5)
    assert split.x.shape == (4, 5) and split.y.shape == (4, 5) and split.x.dtype == torch.int64
    assert split.x[1].tolist() == [5, 6, 7, 8, 9] and split.y[1].tolist() == [6, 7, 8, 9, 10]
    assert torch.equal(split.y[:, :-1], split.x[:, 1:])
    with pytest.raises(ConfigError):
        token_windows(np.arange(5), 5)


def test_parameter_counts_follow_the_formulas():
    assert sum(p.numel() for p in LSTMLanguageModel(76).parameters()) == lstm_params(76) == 283_724
    params = sum(p.numel() for p in TransformerLanguageModel(76, 64).parameters())
    assert params == transformer_params(76, 64) == 424_524
    assert sum(p.numel() for p in LSTMLanguageModel(10_000).parameters()) == lstm_params(10_000) == 2_834_192
    tied = LSTMLanguageModel(10_000, tied=True)
    assert sum(p.numel() for p in tied.parameters()) == lstm_params(10_000, tied=True) == 1_554_192
    assert tied.head.weight is tied.embedding.weight
    for name, expected in zip(LM_TASKS, (283_724, 424_524, 2_834_192), strict=True):
        assert sum(p.numel() for p in get_task(name).make_model().parameters()) == expected
    assert sum(p.numel() for p in get_task("brown_word_lstm[tied=1]").make_model().parameters()) == 1_554_192


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = TransformerLanguageModel(20, 16, d_model=32, heads=4, ff=64).eval()
    x = torch.randint(0, 20, (2, 16))
    y = x.clone()
    y[:, 10:] = (y[:, 10:] + 1) % 20  # change the future
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5) and not torch.allclose(a[:, 10:], b[:, 10:])


def test_vocabulary_cap_maps_rare_words_to_unk(fake_corpora):
    corpus = fake_corpora["brown"]
    ds = text_loader("brown", 7, 10)()
    assert int(ds.train.x.max()) < 10 and corpus.unk == 0
    assert (ds.train.x == 0).any()  # rarer words became <unk>
    full = text_loader("brown", 7, corpus.vocab_size)()
    kept = full.train.x < 10
    assert torch.equal(ds.train.x[kept], full.train.x[kept])
    with pytest.raises(ConfigError):  # a char corpus without <unk> cannot be cut
        text_loader("shakespeare", 7, 5)()


@pytest.mark.parametrize("name", LM_TASKS)
def test_lm_task_checks_and_trains_on_a_fake_corpus(fake_corpora, name):
    task = dataclasses.replace(get_task(name), valid_size=4)
    dataset = task.load_data()
    length = dataset.train.x.shape[1]
    assert dataset.train.y.shape == dataset.train.x.shape
    assert torch.equal(dataset.train.y[0, :-1], dataset.train.x[0, 1:])
    assert task.augmentations == () and task.target.key == "valid_perplexity"
    check_task(task, dataset)
    data = split_data(dataset, 4, 0, 16)
    result = train(task, data, Recipe("adam", {"lr": 3e-3}, batch_size=8, epochs=1), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    m = result.epochs[0].metrics
    for split in ("train", "valid", "test"):
        assert m[f"{split}_perplexity"] == pytest.approx(math.exp(m[f"{split}_loss"]))
        assert 0 <= m[f"{split}_accuracy"] <= 1
    assert task.count(data.valid.y) == 4 * length


def test_char_lstm_learns_a_periodic_text(fake_corpora):
    task = dataclasses.replace(get_task("shakespeare_char_lstm[width=0.25]"), valid_size=10)
    data = split_data(task.load_data(), task.valid_size, 0)
    result = train(task, data, Recipe("adam", {"lr": 3e-2}, batch_size=8, epochs=5), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    first, last = result.epochs[0].metrics, result.epochs[-1].metrics
    assert last["valid_perplexity"] < min(3.0, first["valid_perplexity"] / 2), (first, last)
