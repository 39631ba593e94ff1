"""Reading inputs, writing outputs resumably, sharding and merging shards.

Every socialsynth command reads records (JSONL, CSV, TSV, Parquet, legacy
pickle) through :func:`read_records`, writes results through
:class:`JsonlWriter` so a killed job can be rerun and continue where it
stopped, and splits work over SLURM array tasks with :func:`parse_shard`,
:func:`select_range` and :func:`shard_path`. Joining the shards again is
:mod:`socialsynth.core.merge`.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
import math
import os
import pickle
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from socialsynth.core.errors import InputError

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ReadResult",
    "read_records",
    "iter_jsonl",
    "atomic_write_text",
    "atomic_write_json",
    "JsonlWriter",
    "parse_shard",
    "select_range",
    "shard_path",
    "meta_path",
    "read_text_file",
]

T = TypeVar("T")
log = logging.getLogger(__name__)
Shard = tuple[int, int]
OnBadRow = Literal["error", "skip"]
StrPath = str | os.PathLike[str]

SUPPORTED_EXTENSIONS = (".jsonl", ".json", ".jsonl.gz", ".csv", ".tsv", ".parquet", ".pkl", ".pickle")
_FORMATS = {
    ".jsonl.gz": "jsonl",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


# --------------------------------------------------------------------------- reading


@dataclass
class ReadResult:
    """Records read from one file, plus what was skipped and where rows came from.

    ``line_numbers[k]`` is the source position of ``records[k]``: the 1-based
    line for JSONL, the 1-based data row for CSV/TSV/Parquet/pickle.
    ``skipped`` maps a short reason (``"empty text"``, ``"invalid JSON"``) to a count.
    """

    records: list[dict[str, Any]]
    skipped: Counter[str]
    path: str
    line_numbers: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


class _RowPolicy:
    """Applies the ``required``/``nonempty``/``on_bad_row`` rules to one row at a time.

    Keeping the rules in one place makes every format skip and fail identically.
    """

    def __init__(self, path: Path, required: Sequence[str], nonempty: Sequence[str], on_bad_row: str) -> None:
        if on_bad_row not in ("error", "skip"):
            raise ValueError(f"on_bad_row must be 'error' or 'skip', not {on_bad_row!r}")
        self.path = path
        self.required = tuple(required)
        self.nonempty = tuple(nonempty)
        self.on_bad_row = on_bad_row
        self.skipped: Counter[str] = Counter()

    def bad_row(self, reason: str, message: str, *, line: int | None, field_name: str | None = None) -> None:
        """Raise for a malformed row, or count it under ``reason`` when skipping."""
        if self.on_bad_row == "error":
            raise InputError(message, path=self.path, line=line, field=field_name)
        self.skipped[reason] += 1

    def accept(self, row: Any, line: int) -> bool:
        """Return True if ``row`` should be kept; raise or count it otherwise."""
        if not isinstance(row, dict):
            self.bad_row("not an object", _not_object_message(row), line=line)
            return False
        for name in self.required:
            if name not in row:
                self.bad_row(f"missing {name}", "required field missing", line=line, field_name=name)
                return False
        reason = _text_problem(row, self.nonempty)
        if reason is not None:
            self.skipped[reason] += 1
            return False
        return True


def _text_problem(row: Mapping[str, Any], nonempty: Sequence[str]) -> str | None:
    """Return the skip reason if a ``nonempty`` field is not usable text, else None."""
    for name in nonempty:
        value = row.get(name)
        if value is None:
            return f"empty {name}"
        if not isinstance(value, str):
            return f"{name} is not text"
        if not value.strip():
            return f"empty {name}"
    return None


def _not_object_message(value: Any) -> str:
    """Explain that a line held some JSON value other than an object."""
    kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")
    message = f"expected a JSON object, got {kind}"
    if kind == "array":
        message += " (the file must be JSON lines: one object per line)"
    return message


def _detect_format(path: Path) -> str:
    """Map a file name to one of the reader formats, or raise listing the supported ones."""
    name = path.name.lower()
    for suffix in sorted(_FORMATS, key=len, reverse=True):  # ".jsonl.gz" before ".jsonl"
        if name.endswith(suffix):
            return _FORMATS[suffix]
    raise InputError(f"unsupported file type (supported: {', '.join(SUPPORTED_EXTENSIONS)})", path=path)


def _check_readable(path: Path) -> None:
    """Fail early, with a clear message, for a path that is not a readable file."""
    if not path.exists():
        raise InputError("file not found", path=path)
    if not path.is_file():
        raise InputError("not a regular file", path=path)


def _open_binary(path: Path) -> IO[bytes]:
    """Open a (possibly gzipped) file for reading raw bytes."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decode_json_line(raw: bytes, line_no: int, policy: _RowPolicy) -> tuple[bool, Any]:
    """Decode one JSONL line; return ``(ok, value)``, with ok False for a skipped bad line."""
    if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        policy.bad_row("not UTF-8", f"not valid UTF-8 (byte {exc.start + 1})", line=line_no)
        return False, None
    try:
        return True, json.loads(text)
    except json.JSONDecodeError as exc:
        policy.bad_row("invalid JSON", f"invalid JSON ({exc.msg})", line=line_no)
        return False, None


def _iter_jsonl(path: Path, policy: _RowPolicy) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_no, record)`` for every accepted line of a JSONL file."""
    try:
        with _open_binary(path) as handle:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                ok, value = _decode_json_line(raw, line_no, policy)
                if ok and policy.accept(value, line_no):
                    yield line_no, value
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read file ({exc})", path=path) from exc


def iter_jsonl(
    path: StrPath,
    *,
    required: Sequence[str] = (),
    nonempty: Sequence[str] = (),
    on_bad_row: OnBadRow = "error",
    skipped: Counter[str] | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Lazily yield ``(line_no, record)`` from a JSONL (or ``.jsonl.gz``) file.

    Same rules as :func:`read_records`, without holding the file in memory.
    Pass a ``Counter`` as ``skipped`` to receive the skip reasons.
    """
    path = Path(path)
    _check_readable(path)
    policy = _RowPolicy(path, required, nonempty, on_bad_row)
    if skipped is not None:
        policy.skipped = skipped
    yield from _iter_jsonl(path, policy)


def _to_native(value: Any) -> Any:
    """Turn numpy/pandas values into plain Python ones; NaN and NA become None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: _to_native(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_native(item) for item in value]
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars
        return _to_native(value.tolist())
    if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
        return value.to_pydatetime()
    import pandas as pd

    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _check_columns(path: Path, columns: Sequence[str], needed: Sequence[str]) -> None:
    """Raise naming the first needed column that a tabular file lacks."""
    for name in needed:
        if name not in columns:
            present = ", ".join(map(str, columns)) or "none"
            raise InputError(f"column missing (columns: {present})", path=path, field=name)


def _read_delimited(path: Path, sep: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Read CSV/TSV keeping numbers numeric and empty cells as empty strings."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[], encoding="utf-8")
    except pd.errors.EmptyDataError:
        return [], []
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 ({exc.reason})", path=path) from exc
    except pd.errors.ParserError as exc:
        raise InputError(f"cannot parse ({exc})", path=path) from exc
    columns = [str(column) for column in frame.columns]
    frame.columns = columns
    return columns, frame.to_dict("records")


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Read a Parquet file into plain dicts via pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file ({exc})", path=path) from exc
    return list(table.column_names), table.to_pylist()


def _read_pickle(path: Path, allow_pickle: bool) -> list[Any]:
    """Load the legacy pickled list of dicts, only when explicitly allowed."""
    if not allow_pickle:
        raise InputError(
            "refusing to load a pickle: unpickling can run arbitrary code; pass --allow-pickle if you trust this file",
            path=path,
        )
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"cannot unpickle ({exc})", path=path) from exc
    if not isinstance(data, (list, tuple)):
        raise InputError(f"expected a pickled list of dicts, got {type(data).__name__}", path=path)
    return list(data)


def _filter_rows(rows: Sequence[Any], policy: _RowPolicy) -> tuple[list[dict[str, Any]], list[int]]:
    """Apply ``policy`` to rows numbered from 1, converting kept rows to native types."""
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number, row in enumerate(rows, start=1):
        if isinstance(row, dict):
            row = _to_native(row)
        if policy.accept(row, number):
            records.append(row)
            numbers.append(number)
    return records, numbers


def read_records(
    path: StrPath,
    *,
    allow_pickle: bool = False,
    required: Sequence[str] = (),
    nonempty: Sequence[str] = (),
    on_bad_row: OnBadRow = "error",
) -> ReadResult:
    """Read every record of a JSONL/CSV/TSV/Parquet/pickle file, chosen by extension.

    ``required`` fields must exist in every row (for CSV/TSV/Parquet they are
    checked once as columns, together with ``nonempty``). ``nonempty`` fields
    must be non-blank strings; rows failing that are dropped and counted in
    ``ReadResult.skipped``, never raised. Malformed rows (bad JSON, bad UTF-8,
    non-objects, missing required fields) raise :class:`InputError` unless
    ``on_bad_row="skip"``, which counts them instead.
    """
    path = Path(path)
    _check_readable(path)
    fmt = _detect_format(path)
    policy = _RowPolicy(path, required, nonempty, on_bad_row)
    if fmt == "jsonl":
        pairs = list(_iter_jsonl(path, policy))
        records, numbers = [rec for _, rec in pairs], [num for num, _ in pairs]
    elif fmt == "pickle":
        records, numbers = _filter_rows(_read_pickle(path, allow_pickle), policy)
    else:
        columns, rows = (
            _read_parquet(path) if fmt == "parquet" else _read_delimited(path, "," if fmt == "csv" else "\t")
        )
        _check_columns(path, columns, [*policy.required, *policy.nonempty])
        records, numbers = _filter_rows(rows, policy)
    return ReadResult(records=records, skipped=policy.skipped, path=str(path), line_numbers=numbers)


# --------------------------------------------------------------------------- writing


def read_text_file(path: StrPath, what: str = "the file", field: str | None = None) -> str:
    """The UTF-8 text of a small input file (a list, a template, a definition); a missing, unreadable or
    mis-encoded file is one InputError naming it (and ``field``, the flag that named it)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start + 1})", path=path, field=field) from None
    except OSError as e:
        raise InputError(f"cannot read {what} ({e.strerror or e})", path=path, field=field) from None


@contextmanager
def _atomic_binary(path: StrPath) -> Iterator[IO[bytes]]:
    """Yield a handle to a temp file that replaces ``path`` only if the block succeeds.

    The temp file lives next to ``path`` (same file system, so ``os.replace`` is
    atomic) and is created with mode 0o666 minus the umask, like a normal file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: StrPath, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so readers see the old or new file, never half of one."""
    with _atomic_binary(path) as handle:
        handle.write(text.encode("utf-8"))


def atomic_write_json(path: StrPath, obj: Any) -> None:
    """Atomically write ``obj`` as indented UTF-8 JSON with a trailing newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _parse_complete_line(raw: bytes) -> tuple[bool, Any]:
    """Return ``(True, value)`` if ``raw`` is one valid UTF-8 JSON line, else ``(False, None)``."""
    try:
        return True, json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False, None


class JsonlWriter:
    """Append-only JSONL output that remembers which keys are done, for resuming.

    Reopening an existing file loads its keys into ``done`` so a rerun skips
    finished work. A last line left half-written by a killed process is cut
    off (``repaired_bytes`` says how much); a broken line elsewhere is real
    corruption and raises :class:`InputError` instead of being discarded.
    Each :meth:`write` call ends with one fsync, so a batch is durable once
    the call returns.
    """

    def __init__(self, path: StrPath, key: str = "id") -> None:
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        self.duplicates_found = 0
        self.repaired_bytes = 0
        self.skipped_existing = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._load_existing()
        self._handle: IO[bytes] | None = open(self.path, "ab")

    def _load_existing(self) -> None:
        """Collect keys already written and repair a torn final line."""
        good_end = 0
        pending_error: InputError | None = None
        with open(self.path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if pending_error is not None:
                    raise pending_error  # a bad line that was not the last one
                if not raw.strip():
                    good_end += len(raw)
                    continue
                ok, value = _parse_complete_line(raw)
                if not ok:
                    pending_error = InputError("corrupt line (not valid JSON)", path=self.path, line=line_no)
                    continue
                self._remember_existing(value, line_no)
                good_end += len(raw)
        self._finish_repair(good_end)
        if self.duplicates_found:
            self._drop_duplicates()

    def _drop_duplicates(self) -> None:
        """Rewrite the file (atomically) keeping the first record of each key: an output doubled by two writers
        (before output locks) or a copy-paste is repaired, never trusted."""
        seen: set[str] = set()
        with open(self.path, "rb") as source, _atomic_binary(self.path) as target:
            for raw in source:
                if not raw.strip():
                    continue
                key = str(json.loads(raw.decode("utf-8"))[self.key])
                if key not in seen:
                    seen.add(key)
                    target.write(raw)
        log.warning("%s: %d duplicate records (same %s) removed, the first of each kept", self.path,
                    self.duplicates_found, self.key)

    def _remember_existing(self, value: Any, line_no: int) -> None:
        """Add the key of one existing record to ``done``, counting duplicates."""
        if not isinstance(value, dict) or self.key not in value:
            raise InputError("existing record has no key; cannot resume", path=self.path, line=line_no, field=self.key)
        key = str(value[self.key])
        if key in self.done:
            self.duplicates_found += 1
        self.done.add(key)

    def _finish_repair(self, good_end: int) -> None:
        """Cut the file after its last valid line; add a newline if that line lacks one."""
        size = self.path.stat().st_size
        with open(self.path, "r+b") as handle:
            handle.seek(max(good_end - 1, 0))
            needs_newline = good_end > 0 and handle.read(1) != b"\n"
            if good_end == size and not needs_newline:
                return
            handle.truncate(good_end)
            self.repaired_bytes = size - good_end
            if needs_newline:
                handle.seek(good_end)
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def write(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Append records whose key is not done yet, then fsync once; return how many were written."""
        if self._handle is None:
            raise ValueError(f"JsonlWriter for {self.path} is closed")
        lines: list[str] = []
        for record in records:
            if self.key not in record:
                raise ValueError(f"record has no {self.key!r} field: {record!r:.200}")
            key = str(record[self.key])
            if key in self.done:
                self.skipped_existing += 1
                continue
            self.done.add(key)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        if lines:
            self._handle.write("".join(lines).encode("utf-8"))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        return len(lines)

    def close(self) -> None:
        """Close the file; further writes raise."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __contains__(self, key: object) -> bool:
        return str(key) in self.done

    def __len__(self) -> int:
        return len(self.done)

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --------------------------------------------------------------------------- sharding

_SHARD_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    """Read an integer environment variable, raising InputError if it is malformed."""
    raw = env.get(name)
    if raw is None or raw == "":
        if default is None:
            raise InputError(f"{name} is not set; pass --shard I/N explicitly")
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InputError(f"{name}={raw!r} is not an integer; pass --shard I/N explicitly") from exc


def _shard_from_slurm(env: Mapping[str, str]) -> Shard | None:
    """Derive (I, N) from a SLURM job array, or None outside of one."""
    if "SLURM_ARRAY_TASK_ID" not in env and "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    task_id = _env_int(env, "SLURM_ARRAY_TASK_ID")
    count = _env_int(env, "SLURM_ARRAY_TASK_COUNT")
    offset = task_id - _env_int(env, "SLURM_ARRAY_TASK_MIN", 0)
    step = _env_int(env, "SLURM_ARRAY_TASK_STEP", 1)
    if step < 1 or offset % step:
        raise InputError(f"SLURM array task {task_id} does not fit the array's step {step}; pass --shard I/N")
    index = offset // step
    if not 0 <= index < count:
        raise InputError(f"SLURM array task {task_id} gives shard {index} of {count}, out of range; pass --shard I/N")
    return index, count


def parse_shard(spec: str | None, env: Mapping[str, str] = os.environ) -> Shard | None:
    """Parse ``--shard I/N`` (0 <= I < N); with no spec, fall back to the SLURM array env.

    Under SLURM, I is ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / STEP`` and
    N is ``SLURM_ARRAY_TASK_COUNT``, so ``--array=1-4`` yields shards 0..3 of 4.
    Returns None when neither a spec nor a job array is present.
    """
    if spec is None:
        return _shard_from_slurm(env)
    match = _SHARD_SPEC.match(spec)
    if match:
        index, count = int(match.group(1)), int(match.group(2))
        if 0 <= index < count:
            return index, count
    raise InputError(f"invalid --shard {spec!r}: expected I/N with 0 <= I < N, e.g. 0/4")


def _shard_bounds(length: int, shard: Shard) -> tuple[int, int]:
    """Return ``[lo, hi)`` of block ``i`` when ``length`` items are cut into ``n`` near-equal blocks."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"invalid shard {shard!r}: need 0 <= I < N")
    base, extra = divmod(length, count)
    lo = index * base + min(index, extra)
    return lo, lo + base + (1 if index < extra else 0)


def select_range(
    items: Sequence[T], start_idx: int = 0, end_idx: int | None = None, shard: Shard | None = None
) -> list[tuple[int, T]]:
    """Pick ``items[start_idx:end_idx]``, then this shard's contiguous block of it.

    Returns ``(original_index, item)`` pairs so outputs can refer back to the
    full input. Blocks differ in size by at most one and together cover the slice.
    """
    indexed = list(enumerate(items))[start_idx:end_idx]
    if shard is None:
        return indexed
    lo, hi = _shard_bounds(len(indexed), shard)
    return indexed[lo:hi]


def _split_name(name: str) -> tuple[str, str]:
    """Split a file name into stem and suffix, keeping ``.jsonl.gz``/``.meta.json`` whole."""
    for suffix in (".meta.json", ".jsonl.gz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if stem else (name, "")


def shard_path(path: StrPath, shard: Shard | None) -> Path:
    """``out/x.jsonl`` with shard (1, 4) -> ``out/x.shard-1-of-4.jsonl``; None -> unchanged."""
    path = Path(path)
    if shard is None:
        return path
    stem, suffix = _split_name(path.name)
    return path.with_name(f"{stem}.shard-{shard[0]}-of-{shard[1]}{suffix}")


def meta_path(jsonl_path: StrPath) -> Path:
    """The metadata sibling of an output: ``x.jsonl`` -> ``x.meta.json``."""
    path = Path(jsonl_path)
    stem, _ = _split_name(path.name)
    return path.with_name(f"{stem}.meta.json")
