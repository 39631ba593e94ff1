"""Write the planned subsets as Parquet, JSONL or a ``datasets`` folder, in the Hugging Face Hub's layout.

Parquet and JSONL: ``<subset>/<split>-00000-of-00002.parquet``, one file per source file (a shard of an array job
stays a shard) and more when a file holds over ``max_rows`` rows; Parquet columns are flat and typed
(:mod:`socialsynth.export.flatten`), compressed with snappy. JSONL keeps each record as it is. ``hf``: each subset
saved with ``datasets`` ``save_to_disk`` (a ``DatasetDict`` when it has several splits), into the export folder
itself when there is one subset, else into ``<subset>/``. Every format writes the same rows in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from socialsynth.export.flatten import Column, columns_from_metadata, to_table
from socialsynth.export.tables import Subset

FORMATS = ("parquet", "jsonl", "hf")


@dataclass
class Written:
    """What was written for one subset: files per split (relative to the export folder), their glob patterns for
    the card's ``configs``, row counts and the flat columns (Parquet and hf)."""

    subset: Subset
    files: dict[str, list[str]] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    columns: list[Column] = field(default_factory=list)
    arrow_types: dict[str, str] = field(default_factory=dict)
    load_path: str = ""  # hf: the folder (relative to the export's) that datasets.load_from_disk reads


def subset_table(subset: Subset) -> pa.Table:
    """One flat table over all the subset's rows (every split shares its columns and types)."""
    meta = {"subset": subset.name, "job": subset.job, "splits": {s: subset.n_rows(s) for s in subset.splits}}
    return to_table(subset.all_rows(), extra_metadata=meta)


def _chunks(subset: Subset, split: str, max_rows: int) -> list[tuple[int, int]]:
    """(offset within the split, length) of each output file: one per source file, cut every ``max_rows``."""
    chunks, offset = [], 0
    for source in subset.splits[split]:
        n = len(source.rows)
        starts = range(0, n, max_rows) if n else [0]
        chunks += [(offset + start, min(max_rows, n - start)) for start in starts]
        offset += n
    return chunks


def _file_names(split: str, n: int, suffix: str) -> list[str]:
    return [f"{split}-{i:05d}-of-{n:05d}{suffix}" for i in range(n)]


def write_parquet(subset: Subset, out: Path, max_rows: int) -> Written:
    table = subset_table(subset)
    written = _written(subset, table)
    split_start = 0
    for split in subset.splits:
        chunks = _chunks(subset, split, max_rows)
        names = _file_names(split, len(chunks), ".parquet")
        (out / subset.name).mkdir(parents=True, exist_ok=True)
        for name, (offset, length) in zip(names, chunks, strict=True):
            pq.write_table(table.slice(split_start + offset, length), out / subset.name / name, compression="snappy")
        split_start += subset.n_rows(split)
        written.files[split] = [f"{subset.name}/{n}" for n in names]
        written.patterns[split] = f"{subset.name}/{split}-*.parquet"
    return written


def write_jsonl(subset: Subset, out: Path, max_rows: int) -> Written:
    written = Written(subset, rows={s: subset.n_rows(s) for s in subset.splits})
    for split in subset.splits:
        rows = subset.rows(split)
        chunks = _chunks(subset, split, max_rows)
        names = _file_names(split, len(chunks), ".jsonl")
        (out / subset.name).mkdir(parents=True, exist_ok=True)
        for name, (offset, length) in zip(names, chunks, strict=True):
            with open(out / subset.name / name, "w", encoding="utf-8") as handle:
                for row in rows[offset : offset + length]:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        written.files[split] = [f"{subset.name}/{n}" for n in names]
        written.patterns[split] = f"{subset.name}/{split}-*.jsonl"
    return written


def write_hf(subset: Subset, out: Path, max_rows: int, *, alone: bool) -> Written:
    """``save_to_disk`` of the subset: a Dataset for one split, a DatasetDict for several."""
    import datasets
    from datasets.table import InMemoryTable

    table = subset_table(subset)
    written = _written(subset, table)
    parts, start = {}, 0
    for split in subset.splits:
        n = subset.n_rows(split)
        parts[split] = datasets.Dataset(InMemoryTable(table.slice(start, n)), split=split)
        start += n
    target = out if alone else out / subset.name
    data = parts["train"] if list(parts) == ["train"] else datasets.DatasetDict(parts)
    data.save_to_disk(str(target), num_shards=_num_shards(parts, max_rows))
    prefix = "" if alone else f"{subset.name}/"
    for split in subset.splits:
        inner = "" if isinstance(data, datasets.Dataset) else f"{split}/"
        written.files[split] = sorted(str(p.relative_to(out)) for p in (target / inner.rstrip("/")).glob("*.arrow"))
        written.patterns[split] = f"{prefix}{inner}data-*.arrow"
    written.load_path = "" if alone else subset.name
    return written


def _num_shards(parts: dict[str, Any], max_rows: int) -> Any:
    """save_to_disk's num_shards: an int for a Dataset, a dict per split for a DatasetDict."""
    per_split = {split: max(1, -(-len(ds) // max_rows)) for split, ds in parts.items()}
    return per_split["train"] if list(parts) == ["train"] else per_split


def _written(subset: Subset, table: pa.Table) -> Written:
    columns = columns_from_metadata(table.schema) or []
    return Written(subset, rows={s: subset.n_rows(s) for s in subset.splits}, columns=columns,
                   arrow_types={f.name: str(f.type) for f in table.schema})


def writer(fmt: str) -> Callable[..., Written]:
    return {"parquet": write_parquet, "jsonl": write_jsonl, "hf": write_hf}[fmt]
