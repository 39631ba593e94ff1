"""The real labelled data the job and the ladder read: :func:`read_labelled` loads a table into
:class:`RealData`, and :func:`check_target` finds the rows of the target label."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from socialsynth.classify.labels import is_missing, label_key
from socialsynth.core.errors import InputError
from socialsynth.core.io import read_records

log = logging.getLogger(__name__)
__all__ = ["RealData", "check_target", "read_labelled"]


@dataclass
class RealData:
    texts: list[str]
    labels: list[str]  # label_key of each row
    raw_labels: list  # the label as the file has it (written back to the CSV)
    ids: list[str]
    path: Path
    skipped: Counter = field(default_factory=Counter)  # rows left out, by reason


def read_labelled(path: Path, text_col: str, label_col: str, skip_bad_rows: bool = False) -> RealData:
    """Rows with a text and a label; missing columns are a one-line error naming the file and column.

    Rows left out (empty text, empty label, malformed rows with ``skip_bad_rows``) are counted in ``skipped``."""
    data = read_records(
        path, required=(text_col, label_col), nonempty=(text_col,), on_bad_row="skip" if skip_bad_rows else "error"
    )
    if not data.records:
        why = f" ({', '.join(f'{k}: {v}' for k, v in sorted(data.skipped.items()))})" if data.skipped else ""
        raise InputError(f"no rows with a text{why}", path=path, field=text_col)
    out = RealData([], [], [], [], Path(path), Counter(data.skipped))
    seen: set[str] = set()
    for rec, line in zip(data.records, data.line_numbers, strict=True):
        raw = rec.get(label_col)
        if is_missing(raw):
            out.skipped["empty label"] += 1
            continue
        row_id = label_key(rec["id"]) if not is_missing(rec.get("id")) else f"{Path(path).stem}:{line}"
        if row_id in seen:  # a row given twice would count twice in the ladder's sets
            if not skip_bad_rows:
                raise InputError(f"duplicate id {row_id!r} (ids must be unique; --skip-bad-rows keeps the first)",
                                 path=path, line=line, field="id")
            out.skipped["duplicate id"] += 1
            continue
        seen.add(row_id)
        out.texts.append(str(rec[text_col]))
        out.labels.append(label_key(raw))
        out.raw_labels.append(raw)
        out.ids.append(row_id)
    if not out.texts:
        raise InputError(f"no rows with a label ({', '.join(f'{k}: {v}' for k, v in sorted(out.skipped.items()))})",
                         path=path, field=label_col)
    if out.skipped:
        log.info("%s: skipped %s", path, ", ".join(f"{n} ({why})" for why, n in sorted(out.skipped.items())))
    return out


def check_target(data: RealData, target: str, col: str) -> list[int]:
    index = [i for i, lab in enumerate(data.labels) if lab == target]
    if not index:
        have = sorted(set(data.labels))
        shown = ", ".join(h if len(h) <= 30 else h[:27] + "..." for h in have[:10])
        more = f", ... {len(have)} distinct values: is this the label column?" if len(have) > 10 else ""
        raise InputError(f"target label {target!r} does not occur (labels: {shown}{more})", path=data.path, field=col)
    return index
