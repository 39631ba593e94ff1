"""Label spaces: turn the labels people store in tables into the arrays a model trains on, and back.

Tables hold labels in many shapes: 0/1, "toxic"/"clean", a class id, a score, a list of PII categories, a
stringified list ("['Age', 'Gender']" as the socsys PII data has it), a delimited string ("Age|Gender"), or
one 0/1 column per label (Jigsaw). A :class:`LabelSpace` is fitted on the training rows, saved with the model,
and encodes any later row the same way, so a label the model never saw is noticed, not silently mapped.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from socialsynth.core.errors import InputError

log = logging.getLogger(__name__)
TASKS = ("binary", "multiclass", "multilabel", "regression")
TRUE_STRINGS = {"1", "1.0", "true", "yes", "y", "t", "pos", "positive"}
FALSE_STRINGS = {"0", "0.0", "false", "no", "n", "f", "neg", "negative"}
_WHOLE_NUMBER_TEXT = re.compile(r"^[+-]?\d+\.0+$")


class UnseenLabel(ValueError):
    """A label value that the training data never had."""


def is_missing(value: Any) -> bool:
    """None, NaN and blank strings: no label given."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def label_key(value: Any) -> str:
    """The string a class is known by: 1, 1.0, "1" and "1.0" are the same class; strings are stripped."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    # a column read as text in one file and as numbers in another ("1.0" vs 1) must not make two classes
    return str(int(text.split(".")[0])) if _WHOLE_NUMBER_TEXT.match(text) else text


def _span_category(item: Any) -> Any:
    """A doccano span ``[start, end, "Age"]`` (seed 001's annotation files) -> its category; anything else as is."""
    if isinstance(item, (list, tuple)) and len(item) == 3 and isinstance(item[2], str):
        start, end = item[0], item[1]
        if all(isinstance(x, int) and not isinstance(x, bool) for x in (start, end)):
            return item[2]
    return item


def parse_label_list(value: Any, sep: str = ",") -> list[str]:
    """A multi-label cell as a list of label names.

    Accepts a real list, a JSON or Python list literal ("['Age', 'Gender']"), or a string delimited by `sep`
    ("Age,Gender"). An empty list / empty string means "none of the labels", which is a valid answer. A list of
    doccano spans (``[[0, 5, "Age"], [9, 14, "Gender"]]``, seed 001's annotation files) gives the span categories,
    each once.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, dict):
        raise ValueError(f"expected a list of label names, got an object {str(value)[:60]}")
    if isinstance(value, (list, tuple, set)):
        items = list(value)
    else:
        text = str(value).strip()
        if text.startswith("[") or text.endswith("]"):
            if not (text.startswith("[") and text.endswith("]")):
                raise ValueError(f"cannot read the label list {text[:60]!r} (an unclosed list?)")
            try:
                items = json.loads(text)
            except ValueError:
                try:
                    items = ast.literal_eval(text)  # literal_eval only reads literals; it never runs code
                except (ValueError, SyntaxError) as exc:
                    raise ValueError(f"cannot read the label list {text[:60]!r}") from exc
            if not isinstance(items, (list, tuple)):
                raise ValueError(f"cannot read the label list {text[:60]!r}")
        else:
            items = text.split(sep) if text else []
    items = [_span_category(item) for item in items]
    nested = next((item for item in items if isinstance(item, (list, tuple, set, dict))), None)
    if nested is not None:  # str() of it would become one odd label name
        raise ValueError(f"a label list holds names, got {str(nested)[:60]} inside it")
    names = [label_key(item) for item in items if not is_missing(item)]
    return list(dict.fromkeys(n for n in names if n))  # unique, in order


def truthy(value: Any) -> bool:
    """A 0/1-style cell of a one-column-per-label table."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return not math.isnan(value) and value > 0
    text = str(value).strip().lower()
    if text in TRUE_STRINGS:
        return True
    if text in FALSE_STRINGS or not text:
        return False
    try:
        return float(text) > 0
    except ValueError:
        raise ValueError(f"expected 0/1, got {str(value)[:40]!r}") from None


def _sort_names(names) -> list[str]:
    """Numeric class names in numeric order ("2" before "10"), others alphabetically."""
    try:
        return sorted(names, key=float)
    except ValueError:
        return sorted(names)


@dataclass
class LabelSpace:
    """What a model predicts: the task and the label names, in output order.

    binary: names = [negative, positive]; multiclass: one name per class; multilabel: one name per label;
    regression: [target name]. `counts` are the training counts (shown in reports, used for class weights).
    """

    task: str
    names: list[str]
    counts: list[float] = field(default_factory=list)
    label_sep: str = ","
    n_train: int = 0  # training rows (multilabel negatives per label = n_train - count)

    @classmethod
    def fit(
        cls, task: str, labels: Sequence[Any], *, positive: str | None = None, label_sep: str = ",", name: str = "label"
    ) -> LabelSpace:
        """Learn the label names from training labels (already parsed: lists for multilabel, floats for regression)."""
        if task not in TASKS:
            raise InputError(f"unknown task {task!r} (choose from {', '.join(TASKS)})", field="--task")
        if not labels:
            raise InputError("no labelled training rows")
        if task == "regression":
            return cls(task, [name], [float(len(labels))], label_sep, len(labels))
        if task == "multilabel":
            counts = Counter(n for row in labels for n in row)
            if not counts:
                raise InputError("no training row has any label: nothing to learn", field=name)
            names = _sort_names(counts)
            return cls(task, names, [float(counts[n]) for n in names], label_sep, len(labels))
        counts = Counter(label_key(v) for v in labels)
        names = _sort_names(counts)
        if len(names) < 2:
            raise InputError(
                f"the training data has a single class ({names[0]!r}): a classifier needs at least two", field=name
            )
        if task == "binary":
            if len(names) > 2:
                raise InputError(
                    f"binary task but {len(names)} classes in the training data ({', '.join(names[:6])}); "
                    "use --task multiclass",
                    field=name,
                )
            if positive is not None:
                positive = label_key(positive)
                if positive not in names:
                    raise InputError(f"--positive-label {positive!r} is not among the classes {names}")
            elif set(names) == {"0", "1"}:
                positive = "1"
            else:
                lowered = {n: n.lower() for n in names}
                hits = [n for n in names if lowered[n] in TRUE_STRINGS]
                positive = hits[0] if hits else names[1]
            names = [n for n in names if n != positive] + [positive]
            log.info("binary task: positive class %r, negative %r (choose with --positive-label)", positive, names[0])
        return cls(task, names, [float(counts[n]) for n in names], label_sep, len(labels))

    # ------------------------------------------------------------------ encoding

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def num_outputs(self) -> int:
        """Width of the model's output layer: 1 for binary (one logit) and regression."""
        return 1 if self.task in ("binary", "regression") else len(self.names)

    def encode(self, label: Any) -> Any:
        """One row's label as the model's target. Raises UnseenLabel for a class the training data never had;
        for multilabel, unknown names are left out (see :meth:`unknown_names`)."""
        if self.task == "regression":
            return float(label)
        if self.task == "multilabel":
            index = {n: i for i, n in enumerate(self.names)}
            row = np.zeros(len(self.names), dtype=np.float32)
            for n in label:
                if n in index:
                    row[index[n]] = 1.0
            return row
        key = label_key(label)
        try:
            return self.names.index(key)
        except ValueError:
            raise UnseenLabel(key) from None

    def unknown_names(self, label: Sequence[str]) -> list[str]:
        """Multi-label names in this row that the training data never had."""
        known = set(self.names)
        return [n for n in label if n not in known]

    def decode(self, y) -> Any:
        """A target (index, 0/1 row or value) back to the table's form."""
        if self.task == "regression":
            return float(y)
        if self.task == "multilabel":
            return [n for n, v in zip(self.names, y, strict=False) if v]
        return self.names[int(y)]

    def class_weights(self, mode: str) -> np.ndarray | None:
        """Loss weights against label sparsity.

        binary/multilabel: BCE pos_weight per output = negatives / positives ("balanced"), or its square root
        ("sqrt", gentler when positives are 0.25% and the balanced weight would be 400). multiclass: n / (C * n_c)
        (scikit-learn's "balanced"), or its square root. "none": no weights.
        """
        if mode == "none" or self.task == "regression" or not self.counts:
            return None
        counts = np.asarray(self.counts, dtype=np.float64)
        if self.task == "binary":
            neg, pos = counts
            weights = np.array([neg / max(pos, 1.0)])
        elif self.task == "multilabel":
            n = self.n_train or counts.max()
            weights = (n - counts) / np.maximum(counts, 1.0)
        else:
            weights = counts.sum() / (len(counts) * np.maximum(counts, 1.0))
        weights = np.maximum(weights, 1e-3)
        if mode == "sqrt":
            weights = np.sqrt(weights)
        elif mode != "balanced":
            raise InputError(f"unknown class weighting {mode!r} (balanced, sqrt, none)", field="--class-weight")
        return weights.astype(np.float32)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "names": self.names,
            "counts": self.counts,
            "label_sep": self.label_sep,
            "n_train": self.n_train,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LabelSpace:
        return cls(
            data["task"],
            list(data["names"]),
            list(data.get("counts") or []),
            data.get("label_sep", ","),
            int(data.get("n_train") or 0),
        )
