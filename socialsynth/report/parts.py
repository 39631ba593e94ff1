"""What every renderer uses: the :class:`Context` they share, a summary as small tables, a run's plots. Kept apart
from build.py (which imports the renderers) so that renderers and the builder do not import each other."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from socialsynth.core.io import iter_jsonl
from socialsynth.core.outputs import RunOutputs
from socialsynth.report import page
from socialsynth.report.page import esc, fmt

# record fields that every run has (shown in the header) or that are too bulky for the summary view
COMMON_FIELDS = {"job", "command", "config", "config_file", "versions", "complete", "status", "seconds", "tokens",
                 "runs"}


@dataclass
class Context:
    """What renderers share: the report's folder (paths are shown relative to it), unique ids for item lists,
    notes about input the report could not read, and whether to force gzip for item lists (tests)."""

    root: Path
    compress: bool | None = None
    notes: list[str] = field(default_factory=list)
    _ids: count = field(default_factory=count)

    def list_id(self, name: str) -> str:
        return f"{page.slug(name)}-{next(self._ids)}"

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def items(self, name: str, data: page.ItemList) -> str:
        return page.item_list_html(self.list_id(name), data, self.compress)

    def records(self, path: Path) -> list[dict[str, Any]]:
        """The records of a JSONL output; a torn or broken line (a run still writing) is skipped and noted."""
        skipped: Counter = Counter()
        rows = [rec for _, rec in iter_jsonl(path, on_bad_row="skip", skipped=skipped)]
        if skipped:
            self.notes.append(f"{self.rel(path)}: {sum(skipped.values())} unreadable lines left out")
        return rows


def summary_tables(summary: dict[str, Any], skip: set[str] = frozenset()) -> str:
    """Each field of a summary as a small table: dicts of dicts as a grid, dicts as key/value rows, lists of dicts
    as rows, anything else on one line."""
    scalars, parts = [], []
    for key, value in summary.items():
        if key in skip or value is None:
            continue
        title = f"<h3>{esc(key.replace('_', ' '))}</h3>"
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            parts.append(title + page.dict_rows_table(value))
        elif isinstance(value, dict) and value:
            parts.append(title + page.mapping_table(value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            columns = list(dict.fromkeys(k for v in value for k in v))
            parts.append(title + page.table(columns, [[v.get(c) for c in columns] for v in value]))
        elif not isinstance(value, (dict, list)) or value:
            scalars.append((key.replace("_", " "), fmt(value)))
    head = [f"<div><h3>figures</h3>{page.table(['', ''], scalars)}</div>"] if scalars else []
    boxes = "".join(head + [f"<div>{part}</div>" for part in parts])
    return f'<div class="tables">{boxes}</div>' if boxes else ""


def plots(run: RunOutputs) -> str:
    return page.images(p for p in run.data_files if p.suffix.lower() == ".png")
