"""Language-modelling tasks: next-token prediction on Shakespeare (characters) and Brown (words).

Data layout (the harness's :class:`~optbench.core.spec.Dataset` has a training pool and a test set):
each split's token stream is cut into non-overlapping windows of ``T`` inputs, ``x[i] = s[iT : iT+T]``
and targets ``y[i] = s[iT+1 : iT+T+1]`` (both ``(N, T)`` int64). The training pool is the corpus's
training split, the test set its test split; the harness carves ``valid_size`` random windows from
the training pool for validation, so the corpus's own validation split is not used (its documents
or plays stay unseen). To keep a CPU epoch's evaluation cheap, the test set is the first 2,000
windows of the test split (char tasks; 1,000 for Brown), and the working recipes train on a
seeded subset of the training windows (``train_size`` in the recipe). Windows start from a zero
recurrent state (no state carried between windows, unlike DeepOBS's ``tolstoi_char_rnn``, because
the harness shuffles windows).

Loss: mean cross-entropy per token (nats) of logits ``(B, T, V)``; metrics are sums over tokens
(``count = y.numel()``): loss (minimize), next-token accuracy (maximize); derived: perplexity =
``exp(loss)`` (minimize). No augmentation applies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optbench.core.errors import ConfigError, require_positive
from optbench.core.spec import PERPLEXITY, Dataset, Direction, Metric, Split, Target, Task


def token_windows(ids: np.ndarray, length: int) -> Split:
    """Non-overlapping windows of a 1-d token stream: ``x`` ``(N, length)``, ``y`` = ``x`` shifted
    by one token, ``N = (len(ids) - 1) // length`` (the tail shorter than a window is dropped).

    Raises:
        ConfigError: when the stream holds less than one window (``length + 1`` tokens).
    """
    n = (len(ids) - 1) // length
    if n < 1:
        raise ConfigError("token stream length", len(ids), f"at least {length + 1} tokens (one window)")
    stream = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
    return Split(stream[: n * length].reshape(n, length).clone(), stream[1: n * length + 1].reshape(n, length).clone())


def text_loader(corpus: str, length: int, vocab_size: int, test_windows: int | None = None) -> Callable[[], Dataset]:
    """A ``load_data`` for text corpus ``corpus`` (see :func:`optbench.data.load_text`) cut into
    windows of ``length`` tokens, for a model with ``vocab_size`` logits: token ids from
    ``vocab_size`` on (the corpus orders words by frequency) map to the corpus's ``<unk>`` id.
    ``test_windows`` keeps only the first that many test windows (evaluation cost on a CPU).

    Raises:
        ConfigError: when the corpus has more tokens than ``vocab_size`` and no ``<unk>`` below it.
    """

    def load() -> Dataset:
        from optbench.data import load_text

        text = load_text(corpus)
        train, test = text.train, text.test
        if text.vocab_size > vocab_size:
            if text.unk is None or text.unk >= vocab_size:
                raise ConfigError(f"vocabulary of {corpus}", text.vocab_size,
                                  f"at most {vocab_size} tokens (the model's output size) or an <unk> id below it")
            train, test = (np.where(s < vocab_size, s, text.unk) for s in (train, test))
        test_split = token_windows(test, length)
        if test_windows is not None and test_windows < len(test_split):
            test_split = Split(test_split.x[:test_windows].clone(), test_split.y[:test_windows].clone())
        return Dataset(token_windows(train, length), test_split)

    return load


def lm_loss(output: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy per token (nats) of logits ``(B, T, V)`` against next tokens ``(B, T)``."""
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1))


def _lm_loss_sum(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1), reduction="sum")


def _lm_correct(output: Tensor, y: Tensor) -> Tensor:
    return (output.argmax(dim=-1) == y).sum()


def count_tokens(y: Tensor) -> int:
    """Number of predicted tokens in a batch of targets ``(B, T)``."""
    return int(y.numel())


#: Metrics of every language-modelling task (sums over tokens).
LM_METRICS = (Metric("loss", Direction.MINIMIZE, _lm_loss_sum), Metric("accuracy", Direction.MAXIMIZE, _lm_correct))


class LSTMLanguageModel(nn.Module):
    """Embedding -> multi-layer LSTM -> linear: tokens ``(B, T)`` int64 -> logits ``(B, T, V)``.

    Parameters: ``V*E`` (embedding) + per layer ``4H(in + H) + 8H`` (PyTorch keeps two bias
    vectors) + ``H*V + V`` (output; only ``V`` when ``tied``, which needs ``E == H``).
    Dropout between LSTM layers and before the output layer. PyTorch's default initialization.
    """

    def __init__(self, vocab: int, embed: int = 128, hidden: int = 128, layers: int = 2, dropout: float = 0.2,
                 tied: bool = False) -> None:
        super().__init__()
        if tied and embed != hidden:
            raise ConfigError("tied", tied, f"False unless embedding size {embed} equals hidden size {hidden}")
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                            batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)
        if tied:  # Press & Wolf 2017, "Using the output embedding to improve language models"
            self.head.weight = self.embedding.weight

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.lstm(self.embedding(x))
        return self.head(self.drop(h))


class TransformerLanguageModel(nn.Module):
    """A small causal (decoder-only) Transformer: token + learned position embeddings, ``layers``
    pre-norm :class:`torch.nn.TransformerEncoderLayer` blocks under a causal mask, final LayerNorm,
    linear output. Tokens ``(B, T)`` with ``T <= context`` -> logits ``(B, T, V)``.

    Parameters: ``V*d + context*d`` + per layer ``4d^2 + 4d`` (attention) ``+ 2*d*ff + ff + d``
    (feed-forward) ``+ 4d`` (two LayerNorms) + ``2d`` (final LayerNorm) + ``d*V + V``.
    """

    def __init__(self, vocab: int, context: int, d_model: int = 128, heads: int = 4, layers: int = 2,
                 ff: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        self.context = context
        self.token = nn.Embedding(vocab, d_model)
        self.position = nn.Embedding(context, d_model)
        block = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        positions = torch.arange(t, device=x.device)
        h = self.drop(self.token(x) + self.position(positions))
        mask = nn.Transformer.generate_square_subsequent_mask(t, device=x.device, dtype=h.dtype)
        h = self.blocks(h, mask=mask, is_causal=True)
        return self.head(self.norm(h))


def lm_task(name: str, description: str, make_model: Callable[[], nn.Module], load_data: Callable[[], Dataset],
            *, target_perplexity: float, valid_size: int, recipe: dict[str, Any]) -> Task:
    """A language-modelling Task: mean token cross-entropy, loss/accuracy metrics over tokens,
    perplexity derived, target validation perplexity (minimize), no augmentations."""
    return Task(name=name, description=description, make_model=make_model, load_data=load_data, loss=lm_loss,
                metrics=LM_METRICS, derived=(PERPLEXITY,), target=Target("valid", "perplexity", target_perplexity),
                valid_size=valid_size, count=count_tokens, recipe=recipe, augmentations=())


SHAKESPEARE_VOCAB = 76  # measured characters of the corpus (optbench.data.shakespeare)
BROWN_VOCAB = 10_000  # words kept by brown_word_lstm (PTB's size; the corpus has 24,419)


def _flag(name: str, value: object) -> bool:
    if value in (True, 1, "true", "True"):
        return True
    if value in (False, 0, "false", "False"):
        return False
    raise ConfigError(name, value, "true or false (or 1/0)")


def shakespeare_char_lstm(width: float = 1.0) -> Task:
    """Shakespeare characters, a DeepOBS tolstoi_char_rnn-like LSTM: embedding 128, 2 x LSTM 128, linear.

    Windows of 50 characters. Parameters ``V*128 + 2*132,096 + 129*V`` = 283,724 for the corpus's
    V = 76 characters (DeepOBS ``net_char_rnn``: dropout 0.2 between layers; we also drop before
    the output layer). Option: ``width`` x the embedding and hidden sizes. Data: 4.11M training
    characters (82,254 windows; 1,000 carved for validation), test: the first 2,000 of the test
    split's 6,678 windows. Loss: token cross-entropy (nats); metrics: loss, accuracy, perplexity.
    Target: validation perplexity 8.0 (2.08 nats/char). Working recipe: adam, lr 3e-3, batch 64,
    4 epochs of 4,000 windows (200k characters; ``train_size``): seed 0 reached 11.6 / 9.1 / 8.06 /
    7.48 after epochs 1-4 (``bench/tasks.py``). Cost: ~3 s training per 4,000-window epoch on 2
    quiet CPU threads (~65,000 characters/s); 56-132 s when other processes loaded the machine.
    """
    require_positive("width", width)
    size = max(1, round(128 * width))
    return lm_task(
        "shakespeare_char_lstm", shakespeare_char_lstm.__doc__.splitlines()[0],
        lambda: LSTMLanguageModel(SHAKESPEARE_VOCAB, size, size, 2, 0.2),
        text_loader("shakespeare", 50, SHAKESPEARE_VOCAB, 2000),
        target_perplexity=8.0, valid_size=1000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 3e-3}, "batch_size": 64, "epochs": 4, "train_size": 4000})


def shakespeare_char_transformer(width: float = 1.0) -> Task:
    """Shakespeare characters, a causal Transformer: 2 pre-norm layers, 4 heads, d=128, ff 512, learned positions.

    Windows of 64 characters. Parameters ``V*128 + 64*128 + 2*198,272 + 256 + 129*V`` = 424,524 for
    V = 76 (dropout 0.1). Option: ``width`` x d_model and ff (heads stay 4). Data as
    ``shakespeare_char_lstm`` (64,261 training windows, 1,000 carved for validation; test: the first
    2,000 test windows). Loss: token cross-entropy; metrics: loss, accuracy, perplexity. Target:
    validation perplexity 8.0. Working recipe: adam, lr 2e-3, batch 64, 8 epochs of 4,000 windows
    (256k characters; ``train_size``): seed 0 reached 12.3 / 10.3 / 9.07 / 8.42 / 7.90 after epochs
    1-5 (``bench/tasks.py``; at lr 1e-3 only 9.5 after 4 epochs). Cost: ~11-13 s training per
    epoch on 2 quiet CPU threads, up to 48 s under load from other processes.
    """
    require_positive("width", width)
    d = max(4, 4 * round(32 * width))
    return lm_task(
        "shakespeare_char_transformer", shakespeare_char_transformer.__doc__.splitlines()[0],
        lambda: TransformerLanguageModel(SHAKESPEARE_VOCAB, 64, d, 4, 2, 4 * d, 0.1),
        text_loader("shakespeare", 64, SHAKESPEARE_VOCAB, 2000),
        target_perplexity=8.0, valid_size=1000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 2e-3}, "batch_size": 64, "epochs": 8, "train_size": 4000})


def brown_word_lstm(width: float = 1.0, tied: bool = False) -> Task:
    """Brown corpus words, a Zaremba-small-like LSTM: embedding 128, 2 x LSTM 128, linear; 10,000-word vocabulary.

    Windows of 35 words; words outside the 10,000 most frequent training words (of 24,419) map to
    ``<unk>``. Parameters ``V*128 + 2*132,096 + 129*V`` = 2,834,192 for V = 10,000; with ``tied``
    (output weights = embedding, Press & Wolf 2017) ``V*128 + 264,192 + V`` = 1,554,192. Options:
    ``width`` x embedding/hidden sizes, ``tied``. Data: 975,903 training tokens (27,882 windows;
    1,000 carved for validation), test: the first 1,000 of the test split's 3,469 windows. Loss:
    token cross-entropy; metrics: loss, accuracy, perplexity. Target: validation perplexity 550.
    Working recipe: adam, lr 3e-3, batch 32, 3 epochs of 2,000 windows (70k tokens; ``train_size``):
    seed 0 reached 592 / 531 / 501 after epochs 1 / 2 / 3 (``bench/tasks.py``), 10-23 s training
    per epoch on 2 CPU threads.
    """
    require_positive("width", width)
    tie = _flag("tied", tied)
    size = max(1, round(128 * width))
    return lm_task(
        "brown_word_lstm", brown_word_lstm.__doc__.splitlines()[0],
        lambda: LSTMLanguageModel(BROWN_VOCAB, size, size, 2, 0.2, tied=tie),
        text_loader("brown", 35, BROWN_VOCAB, 1000),
        target_perplexity=550.0, valid_size=1000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 3e-3}, "batch_size": 32, "epochs": 3, "train_size": 2000})
