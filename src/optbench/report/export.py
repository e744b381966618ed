"""Tables as files: GitHub Markdown, CSV (RFC 4180) and LaTeX (``booktabs``).

A table is a :class:`TableData`: a name (used as the file stem), a caption, headers and
rows of strings (already formatted, e.g. by :func:`optbench.report.ranking_cells`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from optbench.core.errors import ConfigError
from optbench.core.fileio import atomic_write_text

TABLE_FORMATS = ("md", "csv", "tex")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TableData:
    """A rendered table.

    Args:
        name: file stem, letters/digits/``_.-`` (e.g. ``"ranking_digits_mlp"``).
        caption: one sentence shown above (HTML), as the LaTeX caption and after the Markdown.
        headers: column names; rows: cells, each row as long as ``headers``.
        align: ``"l"`` or ``"r"`` per column (default: first two left, others right).

    Raises:
        ConfigError: a bad name, a row of the wrong length, a bad alignment.
    """

    name: str
    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError("table name", self.name, "letters, digits, '_', '.', '-'")
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ConfigError(f"row of table {self.name}", list(row), f"{len(self.headers)} cells")
        if not self.align:
            object.__setattr__(self, "align", tuple("l" if i < 2 else "r" for i in range(len(self.headers))))
        if len(self.align) != len(self.headers) or set(self.align) - {"l", "r"}:
            raise ConfigError(f"align of table {self.name}", list(self.align), "'l' or 'r' per column")


def make_table(name: str, caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
               align: Sequence[str] = ()) -> TableData:
    """Build a :class:`TableData` from any sequences (cells converted with ``str``)."""
    return TableData(name, caption, tuple(str(h) for h in headers),
                     tuple(tuple(str(c) for c in row) for row in rows), tuple(align))


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(table: TableData) -> str:
    """GitHub Markdown table, then the caption as a paragraph; ends with a newline."""
    align = [":---" if a == "l" else "---:" for a in table.align]
    lines = ["| " + " | ".join(_md_cell(c) for c in cells) + " |"
             for cells in (table.headers, align, *table.rows)]
    return "\n".join(lines) + "\n" + (f"\n{table.caption}\n" if table.caption else "")


def to_csv(table: TableData) -> str:
    """CSV with a header row (RFC 4180 quoting, ``\\r\\n`` line ends as the csv module writes)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.headers)
    writer.writerows(table.rows)
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "≈": r"$\approx$", "≥": r"$\geq$", "≤": r"$\leq$", "—": "---", "<": r"$<$",
                  ">": r"$>$"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and ±, ≈, ≥, ≤ as math symbols)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: TableData) -> str:
    """A ``table`` environment with a ``tabular`` using ``booktabs`` rules
    (``\\toprule``, ``\\midrule``, ``\\bottomrule``; needs ``\\usepackage{booktabs}``)."""
    lines = [r"\begin{table}[t]", r"\centering"]
    if table.caption:
        lines.append(r"\caption{" + latex_escape(table.caption) + "}")
    lines.append(r"\label{tab:" + table.name.replace("_", "-") + "}")
    lines.append(r"\begin{tabular}{" + "".join(table.align) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(latex_escape(h) for h in table.headers) + r" \\")
    lines.append(r"\midrule")
    lines.extend(" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows)
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(table: TableData, folder: Path, formats: Sequence[str] = TABLE_FORMATS) -> dict[str, Path]:
    """Write ``folder/<name>.md|.csv|.tex`` atomically; returns ``{format: path}``.

    Raises:
        ConfigError: an unknown format.
        OSError: when the folder cannot be written.
    """
    render = {"md": to_markdown, "csv": to_csv, "tex": to_latex}
    out: dict[str, Path] = {}
    for fmt in formats:
        if fmt not in render:
            raise ConfigError("table format", fmt, TABLE_FORMATS)
        out[fmt] = atomic_write_text(Path(folder) / f"{table.name}.{fmt}", render[fmt](table))
    return out
