"""Records (nested JSON objects) <-> flat, typed table columns, and back.

Why flat: a Parquet file with one column per value (``rewrite_ratings.3``, ``filters.3.passed``) can be filtered
and summed in pandas, DuckDB or the Hugging Face viewer without parsing JSON, and each column gets one Arrow type.

The naming rule (also in the data card):

- a nested object becomes one column per key path, joined with ``.``: ``{"rewrite_ratings": {"3": 4}}`` ->
  ``rewrite_ratings.3``; ``ratings.<judge>.original.expected`` for the judges' ratings;
- lists stay list columns (a list of objects is a list of structs, e.g. ``candidates.3``);
- an object whose keys vary too much (more than :data:`MAX_KEYS` distinct keys at one place), an empty object, or
  a place that holds an object in some rows and another kind of value in others, stays one column of JSON text;
  so does a column whose values do not share one Arrow type (numbers in some rows, text in others);
- null and a missing key are the same thing in a table: a row without the key gets null.

Each column's key path and whether it holds JSON text is kept in the Parquet file's metadata (key
``socialsynth``), so :func:`unflatten` rebuilds the records even when a key itself contains a ``.``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SEP = "."
MAX_KEYS = 64  # more distinct keys than this at one place: keep it as JSON text, not hundreds of sparse columns
METADATA_KEY = b"socialsynth"
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError)


@dataclass(frozen=True)
class Column:
    """One table column: its name, the key path it comes from, and whether its values are JSON text."""

    name: str
    path: tuple[str, ...]
    json: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": list(self.path), "json": self.json}


class _Node:
    """What the records hold at one key path: objects (with these children), other values, or both."""

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.objects = 0
        self.empty_objects = 0
        self.values = 0  # non-null values that are not objects

    def add(self, value: Any) -> None:
        if value is None:
            return
        if type(value) is dict and all(type(k) is str for k in value):  # records come from JSON: plain dicts
            self.objects += 1
            self.empty_objects += not value
            for key, item in value.items():
                self.children.setdefault(key, _Node()).add(item)
        else:
            self.values += 1

    def is_json_leaf(self) -> bool:
        """An object place that cannot be spread over columns faithfully."""
        return self.objects > 0 and (self.values > 0 or self.empty_objects > 0 or len(self.children) > MAX_KEYS)


def plan_columns(records: Iterable[Mapping[str, Any]]) -> list[Column]:
    """The columns that hold ``records``, in the order their keys first appear."""
    root = _Node()
    for record in records:
        root.add(record if type(record) is dict else dict(record))
    columns: list[Column] = []
    _collect(root, (), columns)
    return _dedupe_names(columns)


def _collect(node: _Node, path: tuple[str, ...], out: list[Column]) -> None:
    for key, child in node.children.items():
        here = (*path, key)
        if child.is_json_leaf():
            out.append(Column(SEP.join(here), here, json=True))
        elif child.objects:
            _collect(child, here, out)
        else:
            out.append(Column(SEP.join(here), here))


def _dedupe_names(columns: list[Column]) -> list[Column]:
    """Two paths that join to one name (a key holding a ``.``): the later ones get ``#2``, ``#3`` appended."""
    seen: dict[str, int] = {}
    unique = []
    for column in columns:
        count = seen.get(column.name, 0) + 1
        seen[column.name] = count
        unique.append(column if count == 1 else Column(f"{column.name}#{count}", column.path, column.json))
    return unique


def _column_values(records: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> list[list[Any]]:
    """Each column's values, walking every record once along the columns' key paths."""
    tree: dict = {}
    for index, column in enumerate(columns):
        node = tree
        for key in column.path[:-1]:
            node = node.setdefault(key, {})
            if isinstance(node, int):  # a JSON column above this path cannot happen: plan_columns stops there
                raise ValueError(f"column path {column.path} crosses a leaf")
        node[column.path[-1]] = index
    values: list[list[Any]] = [[] for _ in columns]
    leaves = _leaf_indices(tree)
    for record in records:
        _fill(record, tree, values, leaves)
    return values


def _leaf_indices(tree: dict) -> dict[int, list[int]]:
    """id(subtree) -> the column indices under it (to fill them with nulls when a record lacks the object)."""
    found: dict[int, list[int]] = {}

    def walk(node: dict) -> list[int]:
        below = [i for child in node.values() for i in ([child] if isinstance(child, int) else walk(child))]
        found[id(node)] = below
        return below

    walk(tree)
    return found


def _fill(obj: Any, tree: dict, values: list[list[Any]], leaves: dict[int, list[int]]) -> None:
    get = obj.get if isinstance(obj, dict) else None
    for key, child in tree.items():
        value = get(key) if get is not None else None
        if isinstance(child, int):
            values[child].append(value)
        elif isinstance(value, dict):
            _fill(value, child, values, leaves)
        else:
            for index in leaves[id(child)]:
                values[index].append(None)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=False)


def _arrow_array(values: list[Any]) -> pa.Array | None:
    """One typed Arrow array for the values, or None when they share no type."""
    try:
        return pa.array(values)
    except _ARROW_ERRORS:
        pass
    ints = [v for v in values if v is not None]
    if ints and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints):
        try:  # 64-bit request seeds above 2**63
            return pa.array(values, type=pa.uint64())
        except _ARROW_ERRORS:
            return None
    return None


def to_table(records: Sequence[Mapping[str, Any]], columns: Sequence[Column] | None = None,
             extra_metadata: Mapping[str, Any] | None = None) -> pa.Table:
    """The flat Arrow table of ``records`` (one row each, in order), with the column plan in its metadata."""
    planned = list(columns) if columns is not None else plan_columns(records)
    arrays, final = [], []
    for column, values in zip(planned, _column_values(records, planned), strict=True):
        array = None if column.json else _arrow_array(values)
        if array is None:
            column = Column(column.name, column.path, json=True)
            array = pa.array([_json_text(v) for v in values], type=pa.string())
        arrays.append(array)
        final.append(column)
    schema_meta = {"columns": [c.to_dict() for c in final], **dict(extra_metadata or {})}
    table = pa.Table.from_arrays(arrays, names=[c.name for c in final]) if final else pa.table({})
    if not final:  # rows without any key still count
        table = pa.table({"_empty": pa.nulls(len(records))})
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(schema_meta, ensure_ascii=False).encode()})


def columns_from_metadata(schema: pa.Schema) -> list[Column] | None:
    """The column plan stored by :func:`to_table` (None for a table we did not write)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    return [Column(c["name"], tuple(c["path"]), bool(c["json"])) for c in json.loads(raw)["columns"]]


def unflatten(rows: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> list[dict[str, Any]]:
    """Flat rows (e.g. ``pandas.read_parquet(path, dtype_backend="pyarrow").to_dict("records")``; pandas' default
    numpy types turn integer columns with nulls into floats) -> nested records.

    A null column leaves its key out, and an object whose every value is null is left out too (see the naming
    rule: null and missing are one thing in a table)."""
    out = []
    for row in rows:
        record: dict[str, Any] = {}
        for column in columns:
            value = _plain(row.get(column.name))
            if column.json and isinstance(value, str):
                value = json.loads(value)
            if value is None:
                continue
            target = record
            for key in column.path[:-1]:
                target = target.setdefault(key, {})
            target[column.path[-1]] = value
        out.append(record)
    return out


def _plain(value: Any) -> Any:
    """numpy / pandas values -> plain Python ones (NaN, NA -> None; arrays -> lists)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return value


def without_nulls(value: Any) -> Any:
    """``value`` with null entries of objects dropped (recursively) and objects left empty by that dropped too:
    the form in which a record and its table round trip compare equal."""
    if isinstance(value, Mapping):
        kept = {k: without_nulls(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {}}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value
