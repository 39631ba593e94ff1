"""Which files of a job's outputs hold records, and how they group into the exported subsets and splits.

Runs and their files come from :mod:`socialsynth.core.outputs` (the run records). Of a run's files, those with a
table suffix (``.jsonl``, ``.csv``, ``.tsv``, ``.parquet``) hold records; caches and the files a job writes as a
second view of the same records (rephrase's ``<model>_generated.csv``, augment's ``<name>.csv`` of accepted items,
the normness judges' ``<name>.ratings.<judge>.jsonl`` resume stores)
are left out so no row is exported twice. Every record file is read whole: rows that failed stay in with their
status and reason.

Subsets (the Hugging Face "configs"): one per run and folder, named after the run (``askmen_formality``) with the
subfolder appended (``synthetic_1-ladder``); files of one folder whose keys differ (instruct's cluster files and its
``instruct_llm_answers.jsonl``) go to separate subsets. Splits: a subset made of one file has the split ``train``,
unless every row names its split in a ``split`` field (response cases: ``train``, ``test``); of several files, one
split per file named after it, less a common ``prefix_`` (``cluster_0``, ``train_rate_0.3``, ``val``; train's
``predictions_test.jsonl`` and ``predictions_val.jsonl`` are ``test`` and ``val``). The shards of an
array job that was not merged (``x.shard-0-of-4.meta.json`` ...) are one subset whose files are the shards of
``train``; once merged (``x.meta.json`` beside them), only the merged file is exported.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.outputs import RunOutputs, require_runs

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".jsonl", ".csv", ".tsv", ".parquet")
SKIPPED_FOLDERS = frozenset({"caches", "cache", "__pycache__"})
# job -> patterns ({name}: the run's name) of files that repeat records already exported from another file
SECOND_VIEWS: dict[str, tuple[str, ...]] = {
    "norms": ("{name}.ratings.*.jsonl",),  # a judge's resume store, joined into the records' "ratings"
    "rephrase": ("*_generated.csv",),
    "augment": ("{name}.csv",),
}
# job -> the column that holds a line that is not a JSON object (a cluster's reply chain, an instruct chat)
LINE_COLUMN: dict[str, str] = {"cluster": "chain", "instruct": "messages"}
DEFAULT_LINE_COLUMN = "value"
EXPORT_MARKER = ".socialsynth-export"  # written into every export folder, so a later export never re-reads it
SPLIT_COLUMN = "split"  # rows that name their split are exported as those splits
MAX_SPLITS = 10
_SHARD = re.compile(r"^(?P<base>.+)\.shard-(?P<i>\d+)-of-(?P<n>\d+)$")


@dataclass
class SourceFile:
    """One record file and its rows (as read: nested objects)."""

    path: Path
    rows: list[dict[str, Any]]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k for row in self.rows for k in row)


@dataclass
class Subset:
    """One exported subset (a Hugging Face config): its runs and its splits, each made of one or more files."""

    name: str
    job: str
    runs: list[RunOutputs]
    splits: dict[str, list[SourceFile]] = field(default_factory=dict)

    def rows(self, split: str) -> list[dict[str, Any]]:
        return [row for source in self.splits[split] for row in source.rows]

    def n_rows(self, split: str | None = None) -> int:
        names = [split] if split else list(self.splits)
        return sum(len(s.rows) for name in names for s in self.splits[name])

    def all_rows(self) -> list[dict[str, Any]]:
        return [row for name in self.splits for row in self.rows(name)]


def record_files(run: RunOutputs) -> list[Path]:
    """The run's files that hold records (see the module doc for what is left out)."""
    patterns = [p.format(name=run.name) for p in SECOND_VIEWS.get(run.job, ())]
    found = []
    for path in run.data_files:
        if path.suffix not in TABLE_SUFFIXES or SKIPPED_FOLDERS & set(path.relative_to(run.folder).parts[:-1]):
            continue
        if any(fnmatch.fnmatch(path.name, p) for p in patterns) and path.parent == run.folder:
            continue
        found.append(path)
    return found


def read_rows(path: Path, line_column: str = DEFAULT_LINE_COLUMN) -> list[dict[str, Any]]:
    """Every row of a record file, failed ones included. A JSONL line that is not an object becomes
    ``{line_column: value}``; a broken line is an InputError naming the file and line."""
    if path.suffix == ".jsonl":
        return _read_jsonl(path, line_column)
    from socialsynth.core.io import read_records

    return list(read_records(path).records)


def _read_jsonl(path: Path, line_column: str) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as e:
                    raise InputError(f"not valid JSON ({e.msg})", path=path, line=number) from None
                rows.append(value if isinstance(value, dict) else {line_column: value})
    except UnicodeDecodeError as e:
        raise InputError(f"not valid UTF-8 ({e.reason})", path=path) from None
    return rows


def plan_subsets(folder: str | Path, exclude: Path | None = None) -> list[Subset]:
    """Every subset to export from a job's output folder; InputError when it holds no run record or no record
    file. Files under ``exclude`` (an earlier export written inside the folder) are not records of any run."""
    runs = require_runs(folder)
    for run in runs:
        run.data_files = [p for p in run.data_files if not _in_an_export(p, run.folder, exclude)]
        if not run.meta.get("complete"):
            log.warning("%s: the run is not complete (status %s); exporting the records it has written",
                        run.record_path, run.meta.get("status"))
    merged = {run.name for run in runs if not _SHARD.match(run.name)}
    subsets: list[Subset] = []
    shard_groups: dict[tuple[Path, str], list[RunOutputs]] = {}
    for run in runs:
        shard = _SHARD.match(run.name)
        if shard is None:
            subsets += _subsets_of_run(run)
        elif shard["base"] not in merged:
            shard_groups.setdefault((run.folder, shard["base"]), []).append(run)
    for (_, base), shards in shard_groups.items():
        subsets += _subsets_of_shards(base, shards)
    subsets = [s for s in subsets if s.splits]
    if not subsets:
        raise InputError("the run records name no record files (.jsonl, .csv, .tsv, .parquet) to export",
                         path=folder)
    return _unique_names(subsets)


def _in_an_export(path: Path, top: Path, exclude: Path | None) -> bool:
    """Whether a file lies in an earlier export (a folder holding :data:`EXPORT_MARKER`, or ``exclude``)."""
    if exclude is not None and exclude.resolve() in path.resolve().parents:
        return True
    return any((parent / EXPORT_MARKER).exists() for parent in path.parents if parent != top and top in parent.parents)


def _subsets_of_run(run: RunOutputs) -> list[Subset]:
    column = LINE_COLUMN.get(run.job.split(".")[0], DEFAULT_LINE_COLUMN)
    by_folder: dict[Path, list[SourceFile]] = {}
    for path in record_files(run):
        by_folder.setdefault(path.parent, []).append(SourceFile(path, read_rows(path, column)))
    subsets = []
    for folder, sources in by_folder.items():
        rel = folder.relative_to(run.folder).parts
        base = "-".join([run.name, *rel])
        groups = _group_by_keys(sources)
        for group in groups:
            stem = group[0].path.stem
            own = len(groups) == 1 or len(group) > 1 or stem == run.name
            name = base if own else f"{base}-{stem.removeprefix(run.name).strip('._-') or stem}"
            subsets.append(Subset(name, run.job, [run], _splits(group)))
    return subsets


def _subsets_of_shards(base: str, shards: list[RunOutputs]) -> list[Subset]:
    """Shards of one output that were not merged: one subset, the shard files being parts of ``train``."""
    column = LINE_COLUMN.get(shards[0].job.split(".")[0], DEFAULT_LINE_COLUMN)
    ordered = sorted(shards, key=lambda r: int(_SHARD.match(r.name)["i"]))
    sources = [SourceFile(p, read_rows(p, column)) for run in ordered for p in record_files(run)
               if p.parent == run.folder]
    return [Subset(base, ordered[0].job, ordered, {"train": sources})] if sources else []


def _group_by_keys(sources: list[SourceFile]) -> list[list[SourceFile]]:
    """Files of one folder that share their keys belong together; an empty file joins the first group."""
    groups: dict[frozenset[str], list[SourceFile]] = {}
    empty = []
    for source in sources:
        if source.rows:
            groups.setdefault(source.keys, []).append(source)
        else:
            empty.append(source)
    ordered = list(groups.values())
    if not ordered:
        return [empty] if empty else []
    ordered[0].extend(empty)
    return ordered


def split_name(stem: str) -> str:
    """A file stem as a split name that the Hugging Face Hub accepts (word characters and dots)."""
    name = re.sub(r"[^\w.]+", "_", stem).strip("._")
    return name or "split"


def _splits(sources: list[SourceFile]) -> dict[str, list[SourceFile]]:
    if len(sources) == 1:
        return _splits_by_column(sources[0]) or {"train": sources}
    ordered = sorted(sources, key=lambda s: s.path.name)
    names = _without_common_prefix([s.path.stem for s in ordered])
    splits: dict[str, list[SourceFile]] = {}
    for name, source in zip(names, ordered, strict=True):
        splits.setdefault(split_name(name), []).append(source)
    return splits


def _without_common_prefix(stems: list[str]) -> list[str]:
    """``predictions_test, predictions_val`` -> ``test, val``; kept when a rest would start with a digit or be
    empty (``cluster_0, cluster_1`` stay)."""
    prefix = os.path.commonprefix(stems)
    prefix = prefix[: prefix.rfind("_") + 1]
    rests = [s[len(prefix) :] for s in stems]
    return rests if prefix and all(r[:1].isalpha() for r in rests) else stems


def _splits_by_column(source: SourceFile) -> dict[str, list[SourceFile]] | None:
    """A file whose every row names its split (``"split": "train"|"test"``, as response cases do) is cut into
    those splits, in the order they first appear; the column stays in the rows."""
    values = [row.get(SPLIT_COLUMN) for row in source.rows]
    if not values or not all(isinstance(v, str) and re.fullmatch(r"[A-Za-z]\w*", v) for v in values):
        return None
    names = list(dict.fromkeys(values))
    if len(names) > MAX_SPLITS:
        return None
    return {name: [SourceFile(source.path, [row for row in source.rows if row[SPLIT_COLUMN] == name])]
            for name in names}


def _unique_names(subsets: list[Subset]) -> list[Subset]:
    seen: dict[str, int] = {}
    for subset in subsets:
        subset.name = re.sub(r"[^\w.-]+", "_", subset.name)
        count = seen.get(subset.name, 0) + 1
        seen[subset.name] = count
        if count > 1:
            subset.name = f"{subset.name}-{count}"
    return subsets


def failure_of(row: Mapping[str, Any]) -> str | None:
    """Why a row failed (its error or reason, else its status), or None for a row that did not fail."""
    status = row.get("status")
    failed = status not in (None, "ok") or row.get("failed") is True
    if not failed:
        return None
    for key in ("error", "reason", "failure"):
        if row.get(key):
            return str(row[key])
    return str(status) if status is not None else "failed"
