"""The HTML page of a report: collects figures and tables while sections are built, renders
them escaped (:func:`html.escape`), inlines figures as PNG data URIs and wraps everything in
one self-contained document (inline CSS, no script, no external font, no network request).
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from optbench.core.errors import ConfigError
from optbench.report.export import TableData

#: Inline style sheet: system fonts only, so the page never fetches anything.
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;
max-width:1150px;padding:1rem 1.5rem 3rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:2px solid #ddd;padding-bottom:.2rem}
h3{margin-top:1.6rem}caption{text-align:left;font-size:.85rem;color:#444;padding:.2rem 0}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.9rem}
th,td{padding:.25rem .6rem;border-bottom:1px solid #e2e2e2;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.r,th.r{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{font-weight:600}tr.warn td{background:#fff6dc}
figure{margin:.8rem 0 1.4rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}.legend,.note{font-size:.85rem;color:#444;max-width:60rem}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.4rem;margin:0;font-size:.8rem;max-width:44rem}
nav ul{columns:2;font-size:.9rem}.ok{color:#2a7a2a}.bad{color:#a32020;font-weight:600}
"""

_ID = re.compile(r"[^A-Za-z0-9_-]+")


def slug(text: str) -> str:
    """An HTML id / file stem from ``text`` (runs of other characters become ``-``)."""
    return _ID.sub("-", text).strip("-") or "x"


def esc(value: object) -> str:
    """``str(value)`` escaped for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


@dataclass
class ReportPage:
    """A report being built: HTML fragments in order, and every figure and table shown.

    Attributes:
        title: page title.
        parts: HTML fragments in page order.
        figures: ``{name: Figure}``; png: ``{name: PNG bytes}`` as inlined.
        tables: every :class:`TableData` shown, in order.
        toc: ``(id, heading)`` of the sections, for the table of contents.
        dpi: resolution of the inlined PNGs.
    """

    title: str
    parts: list[str] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    png: dict[str, bytes] = field(default_factory=dict)
    tables: list[TableData] = field(default_factory=list)
    toc: list[tuple[str, str]] = field(default_factory=list)
    dpi: int = 100

    def add(self, fragment: str) -> None:
        """Append raw HTML (the caller escaped any text in it)."""
        self.parts.append(fragment)

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        """Append an escaped heading; level-2 headings go into the table of contents."""
        anchor = anchor or slug(text)
        if level == 2:
            self.toc.append((anchor, text))
        self.add(f'<h{level} id="{esc(anchor)}">{esc(text)}</h{level}>')

    def paragraph(self, text: str, cls: str = "") -> None:
        """Append an escaped paragraph (``**bold**`` Markdown emphasis becomes <strong>)."""
        body = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", esc(text))
        self.add(f'<p{f" class={chr(34)}{esc(cls)}{chr(34)}" if cls else ""}>{body}</p>')

    def figure(self, name: str, fig: Figure, caption: str) -> None:
        """Render ``fig`` to PNG, inline it as a data URI and remember it for the files.

        Raises:
            ConfigError: when ``name`` was used before.
        """
        name = slug(name)
        if name in self.figures:
            raise ConfigError("figure name", name, "a name not used before in this report")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi)
        data = buffer.getvalue()
        self.figures[name], self.png[name] = fig, data
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        self.add(f'<figure id="fig-{esc(name)}"><img src="{uri}" alt="{esc(caption)}" '
                 f'data-figure="{esc(name)}"><figcaption>{esc(caption)} '
                 f'(files: figures/{esc(name)}.png, .svg)</figcaption></figure>')

    def table(self, table: TableData, *, row_classes: list[str] | None = None) -> None:
        """Append ``table`` (escaped; numeric columns right-aligned) with its caption, and
        remember it for the .md/.csv/.tex files."""
        self.tables.append(table)
        head = "".join(f'<th class="{"r" if a == "r" else "l"}">{esc(h)}</th>'
                       for h, a in zip(table.headers, table.align, strict=True))
        rows = []
        for i, row in enumerate(table.rows):
            cls = row_classes[i] if row_classes and i < len(row_classes) else ""
            cells = "".join(self._cell(c, a) for c, a in zip(row, table.align, strict=True))
            rows.append(f'<tr{f" class={chr(34)}{esc(cls)}{chr(34)}" if cls else ""}>{cells}</tr>')
        caption = f"<caption>{esc(table.caption)}</caption>" if table.caption else ""
        self.add(f'<table id="table-{esc(table.name)}" data-table="{esc(table.name)}">{caption}'
                 f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 f'<p class="note">Files: tables/{esc(table.name)}.md, .csv, .tex</p>')

    @staticmethod
    def _cell(text: str, align: str) -> str:
        if "\n" in text:
            return f"<td><pre>{esc(text)}</pre></td>"
        return f'<td class="{"r" if align == "r" else "l"}">{esc(text)}</td>'

    def render(self) -> str:
        """The whole document: one file, inline CSS, images as data URIs, no script."""
        toc = "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in self.toc)
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "img-src data:; style-src 'unsafe-inline'\">"
                f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{esc(self.title)}</h1><nav><ul>{toc}</ul></nav>"
                + "\n".join(self.parts) + "</body></html>\n")
