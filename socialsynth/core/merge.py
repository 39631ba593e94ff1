"""Joining the shards of an array job: ``socialsynth merge OUTPUT.jsonl``.

:func:`merge_shards` refuses while anything is missing (a shard file, a shard's run record), half-written, incomplete
or doubled; ``--allow-duplicates`` keeps the first copy of a doubled key. Run ``python -m socialsynth.core.merge
merge OUTPUT.jsonl`` (or ``socialsynth merge``) from the shell.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.config import OneLineParser
from socialsynth.core.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from socialsynth.core.io import (
    StrPath,
    _atomic_binary,
    _parse_complete_line,
    _split_name,
    atomic_write_json,
    meta_path,
    shard_path,
)


@dataclass
class ShardInfo:
    """What one shard contributed: its file, record count and meta (if any)."""

    index: int
    path: Path
    n_records: int
    meta: dict[str, Any] | None = None
    keys: list[str] = field(default_factory=list, repr=False)


@dataclass
class MergeReport:
    """Outcome of :func:`merge_shards`."""

    n_records: int
    per_shard: list[ShardInfo]
    duplicates: list[str]
    output: Path


def _find_shards(output: Path) -> list[Path]:
    """Return the shard files of ``output`` in shard order, raising if any is missing."""
    stem, suffix = _split_name(output.name)
    pattern = re.compile(rf"^{re.escape(stem)}\.shard-(\d+)-of-(\d+){re.escape(suffix)}$")
    found: dict[int, dict[int, Path]] = {}
    for candidate in output.parent.glob(f"{stem}.shard-*-of-*{suffix}"):
        match = pattern.match(candidate.name)
        if match:
            found.setdefault(int(match.group(2)), {})[int(match.group(1))] = candidate
    if not found:
        raise InputError(f"no shard files found (expected {stem}.shard-I-of-N{suffix} next to it)", path=output)
    if len(found) > 1:
        counts = ", ".join(f"of-{n}" for n in sorted(found))
        raise InputError(f"shard files from different shard counts ({counts}); remove the stale ones", path=output)
    count, by_index = next(iter(found.items()))
    missing = [shard_path(output, (i, count)).name for i in range(count) if i not in by_index]
    if missing:
        raise InputError(f"missing {len(missing)} of {count} shards: {', '.join(missing)}", path=output)
    return [by_index[i] for i in range(count)]


def _scan_shard(index: int, path: Path, key: str) -> ShardInfo:
    """Read one shard strictly: every line must be a complete JSON object with ``key``."""
    rerun = "rerun this shard to repair it"
    keys: list[str] = []
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            ok, value = _parse_complete_line(raw)
            if not ok:
                problem = "half-written line" if not raw.endswith(b"\n") else "invalid JSON line"
                raise InputError(f"{problem}; {rerun}", path=path, line=line_no)
            if not isinstance(value, dict) or key not in value:
                raise InputError("record has no key", path=path, line=line_no, field=key)
            keys.append(str(value[key]))
    return ShardInfo(index=index, path=path, n_records=len(keys), meta=_load_meta(path), keys=keys)


def _load_meta(shard: Path) -> dict[str, Any] | None:
    """Load a shard's ``.meta.json`` if it exists."""
    path = meta_path(shard)
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable metadata ({exc})", path=path) from exc
    if not isinstance(meta, dict):
        raise InputError("metadata is not a JSON object", path=path)
    return meta


def _check_metas(shards: Sequence[ShardInfo]) -> None:
    """Refuse to merge unless every shard has a run record that says it is complete and agrees with its file.

    A shard without a record was killed before it started writing it, or is not a job's output: its file may
    hold part of its items while nothing says so."""
    unrecorded = [meta_path(s.path).name for s in shards if s.meta is None]
    if unrecorded:
        raise InputError(f"shards without a run record (killed before their first save, or not written by a job): "
                         f"{', '.join(unrecorded)} missing; rerun those shards")
    incomplete = [s.path.name for s in shards if s.meta.get("complete") is not True]
    if incomplete:
        raise InputError(f"incomplete shards must be resumed first: {', '.join(incomplete)}")
    for shard in shards:
        written = shard.meta.get("n_written")
        unique = len(set(shard.keys))
        if written is not None and written != unique:
            raise InputError(
                f"meta says n_written={written} but the file has {unique} distinct records; rerun this shard",
                path=shard.path,
            )


def _find_duplicates(shards: Sequence[ShardInfo]) -> list[str]:
    """Return keys occurring more than once across all shards, in first-seen order."""
    counts = Counter(key for shard in shards for key in shard.keys)
    return [key for key, count in counts.items() if count > 1]


def _write_merged(output: Path, shards: Sequence[ShardInfo]) -> int:
    """Atomically concatenate shards into ``output``, keeping each key's first line only."""
    seen: set[str] = set()
    with _atomic_binary(output) as out:
        for shard in shards:
            keys = iter(shard.keys)
            with open(shard.path, "rb") as handle:
                for raw in handle:
                    if not raw.strip():
                        continue
                    record_key = next(keys)
                    if record_key in seen:
                        continue
                    seen.add(record_key)
                    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return len(seen)


def merge_shards(
    output: StrPath, key: str = "id", expected: int | None = None, allow_duplicates: bool = False
) -> MergeReport:
    """Merge ``<stem>.shard-I-of-N.jsonl`` files next to ``output`` into ``output``.

    Checks first, writes after: all N shards must exist, every line must be
    complete, metas (if present) must say complete and match the record count,
    keys must be unique (unless ``allow_duplicates``, which keeps the first), and
    the total must equal ``expected`` if given. Also writes the merged meta.
    """
    output = Path(output)
    shards = [_scan_shard(i, path, key) for i, path in enumerate(_find_shards(output))]
    _check_metas(shards)
    duplicates = _find_duplicates(shards)
    if duplicates and not allow_duplicates:
        shown = ", ".join(duplicates[:10]) + (", ..." if len(duplicates) > 10 else "")
        raise InputError(
            f"{len(duplicates)} duplicated {key} values across shards: {shown} "
            "(use --allow-duplicates to keep the first)",
            path=output,
        )
    total = len({k for s in shards for k in s.keys})  # first copy of each key is kept
    if expected is not None and total != expected:
        raise InputError(f"merged {total} records but expected {expected}", path=output)
    n_written = _write_merged(output, shards)
    atomic_write_json(
        meta_path(output),
        {"merged_from": [s.path.name for s in shards], "n_records": n_written, "shards": [s.meta for s in shards]},
    )
    return MergeReport(n_records=n_written, per_shard=shards, duplicates=duplicates, output=output)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _merge_parser() -> argparse.ArgumentParser:
    """Build the ``socialsynth merge`` argument parser (a bad flag is one line, exit 2)."""
    parser = OneLineParser(prog="socialsynth", description="Merge sharded JSONL outputs.")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="merge OUTPUT.shard-I-of-N.jsonl files into OUTPUT")
    merge.add_argument("output", type=Path, help="the merged file to write, e.g. out/comments.jsonl")
    merge.add_argument("--key", default="id", help="field that identifies a record (default: id)")
    merge.add_argument("--expected", type=_count, default=None, help="fail unless the merged total is exactly N")
    merge.add_argument("--allow-duplicates", action="store_true", help="keep the first of duplicated keys")
    return parser


def main_merge(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: merge shards, print one line per shard and a total; exit 2 on bad input."""
    args = _merge_parser().parse_args(argv)
    try:
        report = merge_shards(args.output, key=args.key, expected=args.expected, allow_duplicates=args.allow_duplicates)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for shard in report.per_shard:
        selected = None if shard.meta is None else shard.meta.get("n_selected")
        note = f" (of {selected} selected)" if selected is not None else ""
        print(f"shard {shard.index}/{len(report.per_shard)}: {shard.path.name}: {shard.n_records} records{note}")
    if report.duplicates:
        print(f"dropped later copies of {len(report.duplicates)} duplicated {args.key} values")
    print(f"total: {report.n_records} records -> {report.output}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main_merge())
