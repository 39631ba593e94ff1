"""Labelled texts for training and prediction: read a table, pick the text and label columns, split, mix.

Every bad row is either a one-line error naming file, row and column, or (with --skip-bad-rows, and always for
empty texts and missing labels) a counted skip that ends up in the report. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from socialsynth.classify.labels import is_missing, label_key, parse_label_list, truthy
from socialsynth.core.errors import InputError
from socialsynth.core.io import read_records

log = logging.getLogger(__name__)

# A preset turns a whole record into (text, label); see socialsynth.classify.presets.UpvotePreset.
RowAdapter = Callable[[dict], tuple[str, Any]]


@dataclass
class LabelledTexts:
    """Texts with parsed labels (None where a row has no label), stable ids and the file each row came from."""

    texts: list[str]
    labels: list[Any]
    ids: list[str]
    origin: list[str]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int]) -> LabelledTexts:
        return LabelledTexts(
            [self.texts[i] for i in index],
            [self.labels[i] for i in index],
            [self.ids[i] for i in index],
            [self.origin[i] for i in index],
            Counter(),
        )

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) and all(label is not None for label in self.labels)

    @classmethod
    def concat(cls, parts: Sequence[LabelledTexts]) -> LabelledTexts:
        out = cls([], [], [], [], Counter())
        for part in parts:
            out.texts += part.texts
            out.labels += part.labels
            out.ids += part.ids
            out.origin += part.origin
            out.skipped.update(part.skipped)
        return out


def _parse_label(task: str, value: Any, label_sep: str) -> Any:
    if task == "regression":
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        number = float(value)
        if math.isnan(number) or math.isinf(number):
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
    if task == "multilabel":
        return parse_label_list(value, label_sep)
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected one class, got {type(value).__name__}")
    return label_key(value)


@dataclass
class _RowReader:
    """How one file's records become (text, label, id): the columns, the task and what to do with bad rows."""

    path: Path
    task: str
    text_col: str
    label_cols: list[str]
    label_sep: str
    require_labels: bool
    skip_bad_rows: bool
    adapter: RowAdapter | None
    has_label_cols: bool
    id_field: str | None
    skipped: Counter

    def text_and_raw(self, record: dict, line: int) -> tuple[Any, Any] | None:
        """The text and the raw label of a record; None when the row is skipped (counted)."""
        try:
            if self.adapter is not None:
                text, raw = self.adapter(record)
            else:
                text = record[self.text_col]
                raw = _raw_label(record, self.label_cols, self.task) if self.has_label_cols else None
            return text, raw
        except (ValueError, TypeError, KeyError) as exc:
            if not self.skip_bad_rows:
                field_name = self.label_cols[0] if self.adapter is None else None
                raise InputError(str(exc), path=self.path, line=line, field=field_name) from None
            self.skipped["unreadable label"] += 1
            return None

    def label(self, raw: Any, line: int) -> tuple[bool, Any]:
        """(keep the row, its parsed label or None); a skipped row is counted."""
        if not (self.has_label_cols or self.adapter is not None):
            return True, None
        # an empty multi-label cell means "none of the labels"; only a null/NaN is a missing label
        empty_ok = self.task == "multilabel" and isinstance(raw, str)
        if raw is None or (not isinstance(raw, list) and not empty_ok and is_missing(raw)):
            if self.require_labels:
                self.skipped["missing label"] += 1
                return False, None
            return True, None
        try:
            return True, _parse_label(self.task, raw, self.label_sep)
        except (ValueError, TypeError) as exc:
            if not self.skip_bad_rows:
                raise InputError(str(exc), path=self.path, line=line, field=self.label_cols[0]) from None
            self.skipped["unreadable label"] += 1
            return False, None

    def row_id(self, record: dict, line: int) -> str:
        if self.id_field is not None and not is_missing(record.get(self.id_field)):
            return label_key(record[self.id_field])
        return f"{self.path.stem}:{line}"

    def add(self, out: LabelledTexts, record: dict, line: int) -> None:
        """Append one record to ``out`` unless it is skipped."""
        found = self.text_and_raw(record, line)
        if found is None:
            return
        text, raw = found
        if not isinstance(text, str) or not text.strip():
            self.skipped["empty text"] += 1
            return
        keep, label = self.label(raw, line)
        if not keep:
            return
        out.texts.append(text)
        out.labels.append(label)
        out.ids.append(self.row_id(record, line))
        out.origin.append(self.path.name)


def _read_table(path: Path, *, text_col: str, label_cols: list[str], require_labels: bool, skip_bad_rows: bool,
                allow_pickle: bool, adapter: RowAdapter | None, adapter_fields: Sequence[str]):
    """The file's records, with the columns the job needs checked (read_records' bad-row policy applied)."""
    on_bad = "skip" if skip_bad_rows else "error"
    if adapter is not None:
        fields = tuple(f for f in adapter_fields if require_labels or f not in label_cols)
        return read_records(path, allow_pickle=allow_pickle, required=fields, on_bad_row=on_bad)
    required = [text_col] + (label_cols if require_labels else [])
    return read_records(
        path, allow_pickle=allow_pickle, required=tuple(required), nonempty=(text_col,), on_bad_row=on_bad
    )


def load_texts(
    path: str | Path,
    *,
    task: str,
    text_col: str = "text",
    label_cols: Sequence[str] = ("label",),
    id_col: str | None = None,
    label_sep: str = ",",
    require_labels: bool = True,
    skip_bad_rows: bool = False,
    allow_pickle: bool = False,
    adapter: RowAdapter | None = None,
    adapter_fields: Sequence[str] = (),
) -> LabelledTexts:
    """Read a CSV/TSV/JSONL/Parquet file into :class:`LabelledTexts`.

    `label_cols` is one column (a class, a score, or a multi-label list) or, for multilabel, several 0/1 columns
    (one per label, named after the column). With `require_labels=False` (prediction) a missing label column is
    fine and rows without a label keep None. `adapter` (a preset) builds text and label from the whole record.
    """
    path = Path(path)
    label_cols = list(label_cols)
    if len(label_cols) > 1 and task != "multilabel":
        raise InputError(f"several label columns ({', '.join(label_cols)}) need --task multilabel", field="--label-col")
    data = _read_table(path, text_col=text_col, label_cols=label_cols, require_labels=require_labels,
                       skip_bad_rows=skip_bad_rows, allow_pickle=allow_pickle, adapter=adapter,
                       adapter_fields=adapter_fields)
    skipped = Counter(data.skipped)
    has_label_cols = bool(data.records) and all(c in data.records[0] for c in label_cols)
    id_field = id_col or ("id" if data.records and "id" in data.records[0] else None)
    reader = _RowReader(path, task, text_col, label_cols, label_sep, require_labels, skip_bad_rows, adapter,
                        has_label_cols, id_field, skipped)
    out = LabelledTexts([], [], [], [], skipped)
    for record, line in zip(data.records, data.line_numbers, strict=True):
        reader.add(out, record, line)
    if require_labels and not has_label_cols and adapter is None and data.records:
        raise InputError(f"label column missing (have: {', '.join(data.records[0])})", path=path, field=label_cols[0])
    if skipped:
        log.info("%s: skipped %s", path, ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    return out


def _raw_label(record: dict, label_cols: list[str], task: str) -> Any:
    if len(label_cols) == 1:
        return record.get(label_cols[0])
    # one 0/1 column per label -> the names of the columns that are set
    names = []
    for col in label_cols:
        value = record.get(col)
        if is_missing(value):
            raise ValueError(f"empty value in label column {col!r}")
        if truthy(value):
            names.append(col)
    return names


# ---------------------------------------------------------------------------------------------- splits


def split_indices(
    n: int, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.1, stratify: Sequence | None = None
) -> tuple[list[int], list[int], list[int]]:
    """Seeded train/val/test split (80/10/10 by default), stratified by class when every class can be split."""
    index = np.arange(n)
    held = val_fraction + test_fraction
    if n < 3 or held <= 0:
        return list(index), [], []
    strat = None
    if stratify is not None:
        counts = Counter(stratify)
        if min(counts.values()) >= 3:
            strat = np.asarray(stratify)
        else:
            log.info("a class has fewer than 3 rows: splitting without stratification")
    train, rest = _split(index, held, seed, strat)
    if stratify is not None and strat is None:
        train, rest = _every_class_in_training(list(train), list(rest), stratify)
    if test_fraction <= 0:
        return sorted(train), sorted(rest), []
    if val_fraction <= 0:
        return sorted(train), [], sorted(rest)
    if len(rest) < 2:  # a handful of rows: the one held out row validates
        return sorted(train), sorted(rest), []
    strat_rest = strat[rest] if strat is not None and min(Counter(strat[rest]).values()) >= 2 else None
    val, test = _split(rest, test_fraction / held, seed + 1, strat_rest)
    return sorted(train), sorted(val), sorted(test)


def _every_class_in_training(train: list, rest: list, labels: Sequence) -> tuple[list, list]:
    """An unstratified split can hold out every row of a rare class: give one of them back to training."""
    seen = {labels[i] for i in train}
    for i in sorted(rest):
        if labels[i] not in seen:
            seen.add(labels[i])
            rest.remove(i)
            train.append(i)
    return train, rest


def _split(index: np.ndarray, share: float, seed: int, strat) -> tuple[list, list]:
    """train_test_split, unstratified when the held-out part is too small to hold every class."""
    from sklearn.model_selection import train_test_split

    if strat is not None:
        try:
            return train_test_split(index, test_size=share, random_state=seed, stratify=strat)
        except ValueError:  # fewer held-out rows than classes
            log.info("too few rows to hold out every class: splitting without stratification")
    return train_test_split(index, test_size=share, random_state=seed)


def parse_weighted_files(specs: Sequence[str]) -> list[tuple[Path, float]]:
    """`real.csv:1.0,synthetic.csv:0.5` (or separate arguments) -> [(path, weight)]. A missing weight is 1."""
    out = []
    for spec in specs:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            name, weight = part, 1.0
            if ":" in part:
                head, tail = part.rsplit(":", 1)
                try:
                    weight = float(tail)
                    name = head
                except ValueError:
                    pass  # a colon that is part of the path
            name = name.strip()
            if weight < 0 or not math.isfinite(weight):
                raise InputError(f"weight must be >= 0, got {weight}", field="--train")
            out.append((Path(name), weight))
    return out


def sample_fraction(data: LabelledTexts, weight: float, seed: int) -> LabelledTexts:
    """Use `weight` x the rows of a file: 0.5 takes a seeded half, 2.0 takes every row twice, 1.5 once plus half."""
    if weight == 1.0:
        return data
    rng = np.random.default_rng(seed)
    n = len(data)
    whole, frac = int(weight), weight - int(weight)
    index = list(np.tile(np.arange(n), whole)) + list(rng.choice(n, size=round(frac * n), replace=False))
    return data.subset(sorted(index))
