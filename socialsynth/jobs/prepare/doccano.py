"""doccano span annotations -> multi-label rows for train_classifier.py (seed 001's PII files).

doccano's sequence-labelling export is one JSON object a line, ``{"id": 7, "text": "...", "label": [[start, end,
"Category"], ...]}`` (newer versions: ``"entities": [{"start_offset", "end_offset", "label"}]``; a text
classification project: ``"label": ["Category", ...]``). A post's labels are the categories of its spans, each once,
in the order they first appear. Two layouts:

- ``list``: ``{"id", "text", "label": ["Age", "Gender"]}`` (the seed's ``*_label.csv``); train with
  ``train_classifier.py --task multilabel --input OUT``;
- ``columns``: ``{"id", "text", "Age": 1, "Gender": 1, "Location": 0, ...}``, one 0/1 column per category; train
  with ``--label-col Age,Gender,...``.

A malformed span (not [start, end, category], start after end, outside the text, a category that is not a name or
not in --categories) stops the conversion with one line naming the file, line and field, or with --skip-bad-rows
drops the post and counts why.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError

LAYOUTS = ("list", "columns")
LIST_COLUMN = "label"  # the seed's *_label.csv column, and train_classifier.py's default --label-col
OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}


class BadSpan(ValueError):
    """One malformed annotation; ``reason`` is the short name it is counted under with --skip-bad-rows."""

    def __init__(self, message: str, reason: str, field: str = "label") -> None:
        super().__init__(message)
        self.reason, self.field = reason, field


@dataclass
class Converted:
    """The converted posts and what happened to the others."""

    rows: list[dict]
    categories: list[str]
    n_read: int
    skipped: Counter = field(default_factory=Counter)
    n_unlabelled: int = 0
    counts: Counter = field(default_factory=Counter)  # posts per category


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _offset(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadSpan(f"the {name} offset must be a whole number, got {value!r}", "offset not a whole number")
    return value


def span_category(span: Any, text: str, known: Sequence[str] | None) -> str:
    """The category of one doccano annotation ([start, end, category], an entity object, or a bare category
    name); BadSpan says what is wrong with it."""
    if isinstance(span, str):  # a text classification project: the label itself
        start = end = None
        category: Any = span
    elif isinstance(span, dict):
        start, end, category = span.get("start_offset"), span.get("end_offset"), span.get("label")
        if start is None or end is None or "label" not in span:
            raise BadSpan(f"an entity needs start_offset, end_offset and label, got {json.dumps(span)[:80]}",
                          "malformed span")
    elif isinstance(span, (list, tuple)) and len(span) == 3:
        start, end, category = span
    else:
        raise BadSpan(f"a span is [start, end, category], got {json.dumps(span)[:80]}", "malformed span")
    if start is not None:
        start, end = _offset(start, "start"), _offset(end, "end")
        if start > end:
            raise BadSpan(f"span [{start}, {end}, ...] starts after it ends", "start after end")
        # doccano's browser counts UTF-16 units: an emoji is 2 there and 1 here, so either length is the text's end
        if start < 0 or end > max(len(text), _utf16_length(text)):
            raise BadSpan(f"span [{start}, {end}, ...] is outside the text ({len(text)} characters)",
                          "span outside the text")
    if not isinstance(category, str) or not category.strip():
        raise BadSpan(f"a span's category must be a name, got {category!r}", "category not a name")
    category = category.strip()
    if known is not None and category not in known:
        raise BadSpan(f"unknown category {category!r} (--categories: {', '.join(known)})", "unknown category")
    return category


def post_labels(row: dict, known: Sequence[str] | None) -> tuple[str, list[str]]:
    """(text, its categories in order of first appearance, each once) of one doccano row."""
    text = row.get("text")
    if not isinstance(text, str):
        raise BadSpan(f"the text must be a string, got {type(text).__name__}", "text not a string", "text")
    key = "label" if "label" in row else "entities" if "entities" in row else None
    if key is None:
        raise BadSpan("no 'label' (or 'entities') field: not a doccano export?", "no label field")
    spans = row[key]
    if spans is None:
        spans = []
    if not isinstance(spans, (list, tuple)):
        raise BadSpan(f"'{key}' must be a list of spans, got {type(spans).__name__}", "malformed span", key)
    labels: list[str] = []
    for span in spans:
        try:
            category = span_category(span, text, known)
        except BadSpan as e:
            e.field = key
            raise
        if category not in labels:
            labels.append(category)
    return text, labels


def convert(records: Sequence[dict], lines: Sequence[int], path: str | Path, *, categories: Sequence[str] | None,
            layout: str, drop_unlabelled: bool, skip_bad_rows: bool) -> Converted:
    """doccano rows -> multi-label rows (see the module). InputError naming file, line and field for a bad row,
    unless ``skip_bad_rows``."""
    parsed, skipped, seen = [], Counter(), set()
    for row, line in zip(records, lines, strict=True):
        try:
            text, labels = post_labels(row, categories)
        except BadSpan as e:
            if not skip_bad_rows:
                raise InputError(str(e), path=path, line=line, field=e.field) from None
            skipped[e.reason] += 1
            continue
        row_id = line if row.get("id") is None else row["id"]
        if isinstance(row_id, (dict, list)) or str(row_id) in seen:
            if not skip_bad_rows:
                why = "a duplicate id" if str(row_id) in seen else "an id must be a string or a number"
                raise InputError(f"{why}: {json.dumps(row_id)[:60]}", path=path, line=line, field="id")
            skipped["bad or duplicate id"] += 1
            continue
        seen.add(str(row_id))
        parsed.append((row_id, text, labels))
    found = list(categories) if categories else sorted({c for _, _, labels in parsed for c in labels})
    out = Converted([], found, len(records), skipped)
    for row_id, text, labels in parsed:
        if not labels:
            out.n_unlabelled += 1
            if drop_unlabelled:
                continue
        out.counts.update(labels)
        if layout == "columns":
            out.rows.append({"id": row_id, "text": text, **{c: int(c in labels) for c in found}})
        else:
            out.rows.append({"id": row_id, "text": text, LIST_COLUMN: labels})
    return out


def render(rows: list[dict], categories: Sequence[str], layout: str, kind: str) -> str:
    """The rows as JSONL, CSV or TSV text (a CSV's label list is a JSON list, which train_classifier.py reads)."""
    if kind == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    import pandas as pd

    columns = ["id", "text", *(categories if layout == "columns" else [LIST_COLUMN])]
    table = pd.DataFrame(rows, columns=columns)
    if layout == "list":
        table[LIST_COLUMN] = [json.dumps(v, ensure_ascii=False) for v in table[LIST_COLUMN]]
    return table.to_csv(index=False, sep="," if kind == "csv" else "\t")


def train_hint(output: Path, categories: Sequence[str], layout: str) -> str:
    """The train_classifier.py command that reads the converted file."""
    label = "" if layout == "list" else " --label-col " + _quoted(",".join(categories))
    return f"train_classifier.py --task multilabel --input {_quoted(str(output))}{label}"


def _quoted(text: str) -> str:
    import shlex

    return shlex.quote(text)
