"""Building blocks of the report page: escaped tables, inlined images, item lists for the script, the page itself.

Everything a job's outputs hold reaches the page either escaped (:func:`esc`) or as JSON read by the script and
shown through ``textContent``; images become ``data:`` URIs. So the file opens offline, from any folder, and a
comment that contains ``<script>`` is shown, not run.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.report.assets import CSS, JS

# item lists whose JSON is larger than this are gzipped (+ base64): 10,000 normness records shrink about 3x
COMPRESS_ABOVE = 1_000_000
MAX_IMAGE_BYTES = 5_000_000  # a PNG larger than this is named, not inlined


def esc(value: Any) -> str:
    """Text for HTML (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A cell value as short text: floats rounded, None as a dash, lists joined."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{round(value, digits):g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items())
    return str(value)


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], caption: str = "") -> str:
    """An HTML table; numbers are right-aligned, every value escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(str(h) for h in header) else ""
    body = []
    for row in rows:
        cells = []
        for value in row:
            cls = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            cells.append(f"<td{cls}>{esc(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption class='muted'>{esc(caption)}</caption>" if caption else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f'<table class="t">{cap}{thead}<tbody>{"".join(body)}</tbody></table>'


def mapping_table(mapping: Mapping[str, Any], key: str = "", value: str = "") -> str:
    """Two columns, one row per key."""
    return table([key, value], [(k, v) for k, v in mapping.items()]) if mapping else ""


def dict_rows_table(rows: Mapping[str, Mapping[str, Any]], key: str = "") -> str:
    """One row per key of ``rows``, one column per key of their values (the union, in first-seen order)."""
    columns: list[str] = []
    for values in rows.values():
        for name in values if isinstance(values, Mapping) else ():
            if name not in columns:
                columns.append(name)
    body = [[k, *((v or {}).get(c) if isinstance(v, Mapping) else None for c in columns)] for k, v in rows.items()]
    return table([key, *columns], body) if rows else ""


def image(path: Path, alt: str = "") -> str:
    """An ``<img>`` holding the PNG itself (a data URI); a missing or huge file is named instead."""
    try:
        data = path.read_bytes()
    except OSError:
        return f"<p class='muted'>(missing image {esc(path.name)})</p>"
    if len(data) > MAX_IMAGE_BYTES:
        size = len(data) // 1_000_000
        return f"<p class='muted'>(image {esc(path.name)} is {size} MB: open it beside the report)</p>"
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    if mime == "image/svg+xml":
        return f"<p class='muted'>(SVG {esc(path.name)} not inlined)</p>"
    uri = "data:" + mime + ";base64," + base64.b64encode(data).decode("ascii")
    return f'<img class="plot" alt="{esc(alt or path.name)}" title="{esc(path.name)}" src="{uri}">'


def images(paths: Iterable[Path]) -> str:
    inner = "".join(image(p) for p in paths)
    return f'<div class="plots">{inner}</div>' if inner else ""


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def details(summary: str, body_html: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body_html}</details>"


def badges(flags: Iterable[str], kind: str = "") -> str:
    cls = f"badge {kind}".strip()
    return "".join(f'<span class="{cls}">{esc(f)}</span>' for f in flags)


# ------------------------------------------------------------------------------------------- item lists


@dataclass
class ItemList:
    """What the script shows as a paged list (see socialsynth.report.assets for the item layout)."""

    items: list[dict[str, Any]]
    columns: list[str] = field(default_factory=list)  # cell labels, in order; the first ``fixed`` are always shown
    column_name: str = "column"
    fixed: int = 1
    flags: list[str] = field(default_factory=list)
    sorts: list[dict[str, str]] = field(default_factory=list)  # [{"key": ..., "label": ...}]
    diff: bool = False
    page_size: int = 50

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "columns": self.columns, "column_name": self.column_name, "fixed": self.fixed,
                "flags": self.flags, "sorts": self.sorts, "diff": self.diff, "page_size": self.page_size}


def item_list_html(list_id: str, data: ItemList, compress: bool | None = None) -> str:
    """The list's section and its data; ``compress`` None: gzip when the JSON is large."""
    text = json.dumps(data.to_json(), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    big = len(text.encode("utf-8")) > COMPRESS_ABOVE if compress is None else compress
    if big:
        packed = base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
        script = f'<script type="application/json" id="{list_id}-data" data-encoding="gzip+base64">{packed}</script>'
    else:
        safe = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        script = f'<script type="application/json" id="{list_id}-data">{safe}</script>'
    return f'<section class="browser" id="{list_id}"></section>{script}'


# ------------------------------------------------------------------------------------------- the page


@dataclass
class Section:
    """One run's part of the page."""

    title: str
    anchor: str
    html: str


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "run"


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole report: a title, links to each run, then the runs."""
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(f'<section class="run" id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{s.html}</section>'
                   for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header class=\"top\"><h1>{esc(title)}</h1><div class=\"muted\">{esc(subtitle)}</div>"
        f"<nav class=\"runs\">{nav}</nav></header><main>{body}</main>"
        f"<script>{JS}</script></body></html>\n"
    )
