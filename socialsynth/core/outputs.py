"""Find the runs in an output folder: every run record (``*.meta.json``, see :mod:`socialsynth.core.run`) under it,
with the job kind, the record and the data files that run wrote.

The report (``socialsynth report``) and the export (``socialsynth export``) read any job's outputs through this one
module, so neither has to know where six jobs put their files. Jobs lay their files out in two ways, and a record
claims its data files by the same two rules:

1. **Named after the record.** ``askmen_formality.meta.json`` owns the files of its folder named
   ``askmen_formality.<anything>`` (``.jsonl``, ``.shift.png``, ``.config.yaml``) and, in subfolders without
   run records of their own, files named ``<something>_askmen_formality.<ext>``
   (``upvote_predictions/predictions_askmen_formality.jsonl``). When several records share a prefix (a shard
   ``x.shard-0-of-2.meta.json`` beside the merged ``x.meta.json``), the longest name wins.
2. **Owning a folder.** A record that is the only one in its folder (``rephrased.meta.json``,
   ``train.meta.json``, ``cluster.meta.json``, ``eval/evaluate.meta.json``) also owns every other file of that
   folder and of its subfolders that hold no run record (``ladder/``, ``processed_4_clusters/``, ``plots/``).

Example::

    for run in find_runs("output"):
        print(run.job, run.record_path, [p.name for p in run.data_files])
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.run import read_run_record

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".meta.json"


@dataclass
class RunOutputs:
    """One run: its job kind (the record's ``job``: "norms", "rephrase", "augment", "cluster", "instruct", "train",
    "prepare", "response.evaluate", ...), its record file and content, and the files it wrote (sorted; the record
    and its saved ``.config.yaml`` are not among them)."""

    job: str
    record_path: Path
    meta: dict[str, Any]
    data_files: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The record's name without ``.meta.json`` (``askmen_formality``, ``rephrased``, ``evaluate``)."""
        return self.record_path.name[: -len(RECORD_SUFFIX)]

    @property
    def folder(self) -> Path:
        return self.record_path.parent

    def files(self, suffix: str = "", name: str | None = None) -> list[Path]:
        """The data files whose name ends with ``suffix`` (and equals ``name`` when given)."""
        return [p for p in self.data_files if p.name.endswith(suffix) and (name is None or p.name == name)]

    def file(self, name: str) -> Path | None:
        """The data file called ``name`` (the first one, searching the record's folder first), or None."""
        found = sorted(self.files(name=name), key=lambda p: len(p.parts))
        return found[0] if found else None


def find_runs(folder: str | os.PathLike[str]) -> list[RunOutputs]:
    """Every run under ``folder`` (or the one run of a ``*.meta.json`` file given instead), sorted by record path.

    A ``*.meta.json`` that is not a run record is skipped (with a warning when it looks like a damaged one). Raises
    InputError when ``folder`` does not exist; returns [] when it holds no run record (see :func:`require_runs`)."""
    root = Path(folder)
    if root.is_file() and root.name.endswith(RECORD_SUFFIX):  # its files are assigned as in its whole folder
        return [run for run in find_runs(root.parent) if run.record_path == root]
    if not root.is_dir():
        raise InputError("no such folder" if not root.exists() else "not a folder", path=root)
    tree = _walk(root)
    records = [folder / name for folder, names in tree.items() for name in names if name.endswith(RECORD_SUFFIX)]
    runs = _read_runs(sorted(records))
    _assign_files(runs, tree)
    return runs


def require_runs(folder: str | os.PathLike[str]) -> list[RunOutputs]:
    """:func:`find_runs`, but a folder without any run record is an InputError (one line, exit 2)."""
    runs = find_runs(folder)
    if not runs:
        raise InputError(f"no run records (*{RECORD_SUFFIX}) found: give the output folder of a socialsynth job",
                         path=folder)
    return runs


def _walk(root: Path) -> dict[Path, list[str]]:
    """folder -> its file names, for every folder under root (hidden folders and files left out)."""
    tree: dict[Path, list[str]] = {}
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        tree[Path(here)] = sorted(f for f in files if not f.startswith("."))
    return tree


def _read_runs(records: list[Path]) -> list[RunOutputs]:
    runs = []
    for path in records:
        try:
            meta = read_run_record(path)
        except InputError as e:  # another program's *.meta.json (no "job") is passed over quietly
            (log.debug if "missing job" in str(e) else log.warning)("skipped: %s", e)
            continue
        runs.append(RunOutputs(job=str(meta.get("job") or "unknown"), record_path=path, meta=meta))
    return runs


def _assign_files(runs: list[RunOutputs], tree: dict[Path, list[str]]) -> None:
    """Give each data file to one run: rule 1 (named after the record) before rule 2 (owning the folder)."""
    by_folder: dict[Path, list[RunOutputs]] = {}
    for run in runs:
        by_folder.setdefault(run.folder, []).append(run)
    without_records = [f for f in tree if f not in by_folder]
    claimed: set[Path] = set()
    for run in runs:
        below = [f for f in without_records if _is_below(f, run.folder)]
        mine = _named_after(run, [run.folder], tree) | _suffixed_by(run, below, tree)
        run.data_files = sorted(p for p in mine if _longest_owner(p, by_folder.get(p.parent, [run])) in (None, run))
        claimed.update(run.data_files)
    for folder, owners in by_folder.items():
        if len(owners) != 1:
            continue
        run = owners[0]
        rest = [folder / name for name in tree[folder] if not name.endswith(RECORD_SUFFIX)]
        for sub in without_records:
            if _is_below(sub, folder) and not _under_other_record(sub, folder, by_folder):
                rest += [sub / name for name in tree[sub]]
        extra = [p for p in rest if p not in claimed and p != _config_file(run)]
        run.data_files = sorted({*run.data_files, *extra})


def _named_after(run: RunOutputs, folders: list[Path], tree: dict[Path, list[str]]) -> set[Path]:
    prefix = run.name + "."
    found = set()
    for folder in folders:
        found |= {folder / n for n in tree[folder] if n.startswith(prefix) and not n.endswith(RECORD_SUFFIX)}
    found.discard(_config_file(run))
    return found


def _suffixed_by(run: RunOutputs, folders: list[Path], tree: dict[Path, list[str]]) -> set[Path]:
    """``<something>_<name>.<ext>`` in folders without records (norms' upvote_predictions/)."""
    tail = "_" + run.name + "."
    return {f / n for f in folders for n in tree[f] if tail in n and n.split(tail, 1)[1].count(".") == 0}


def _longest_owner(path: Path, candidates: list[RunOutputs]) -> RunOutputs | None:
    """Among the runs of a folder, the one with the longest name that the file's name starts with."""
    owners = [r for r in candidates if path.name.startswith(r.name + ".")]
    return max(owners, key=lambda r: len(r.name)) if owners else None


def _is_below(path: Path, folder: Path) -> bool:
    return path != folder and folder in path.parents


def _under_other_record(sub: Path, top: Path, by_folder: dict[Path, list[RunOutputs]]) -> bool:
    """Whether a folder between ``top`` and ``sub`` holds run records (then those own ``sub``)."""
    return any(parent in by_folder for parent in sub.parents if _is_below(parent, top))


def _config_file(run: RunOutputs) -> Path:
    return run.folder / (run.name + ".config.yaml")
