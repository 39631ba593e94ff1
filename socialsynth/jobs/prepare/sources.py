"""Reading Reddit comments and submissions from Pushshift dumps and flat tables, for `socialsynth prepare`.

The same facts come under different names: Pushshift dumps are JSON lines, usually zstd-compressed, with fields
such as `body`, `score`, `link_id`; scraper exports are tables (CSV/TSV/Parquet) with columns such as `text`,
`upvotes`, `post_id`. :class:`RowSource` streams the rows of any of these files with their line numbers,
:class:`ColumnMap` says which source names feed each of our fields (detected from what is present, overridable),
and :func:`iter_comments` / :func:`load_submissions` turn rows into the fields the filters need. Nothing here
holds a whole file: only the submissions, a few fields each, are kept in memory.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import urlsplit

from socialsynth.core.errors import InputError
from socialsynth.core.streams import open_binary_stream, stream_read_errors  # noqa: F401  (used below, re-exported)

SUPPORTED = ".jsonl, .json, .ndjson, .zst, .jsonl.zst, .jsonl.gz, .csv, .tsv (also .gz/.zst compressed), .parquet"
_TABLE_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}


# --------------------------------------------------------------------------- rows of one file


class _BadRow(Exception):
    """A row that cannot be used; RowSource.bad_row turns it into an InputError or a counted skip."""

    def __init__(self, reason: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.field = reason, message, field


def detect_format(path: Path) -> tuple[str, str | None]:
    """``(format, compression)`` from the file name: RC_2019-04.zst is zstd JSON lines, posts.csv a CSV table."""
    name = path.name.lower()
    compression = "zst" if name.endswith(".zst") else "gz" if name.endswith(".gz") else None
    if compression:
        name = name[: name.rindex(".")]
    if name.endswith(".parquet") and compression is None:
        return "parquet", None
    suffix = name[name.rindex(".") :] if "." in name else ""
    if suffix in _TABLE_SUFFIXES:
        return _TABLE_SUFFIXES[suffix], compression
    if compression == "zst":  # Pushshift names its dumps RC_YYYY-MM.zst / RS_YYYY-MM.zst
        return "jsonl", compression
    raise InputError(f"unsupported file type (supported: {SUPPORTED})", path=path)


class RowSource:
    """One input file read row by row: ``for line, row in source`` yields dicts keyed by the file's own names.

    ``line`` is the 1-based line where the row starts (the data row number for Parquet), so messages point at
    what a user can open in an editor. A malformed row raises :class:`InputError` (path, line, field) or, with
    ``on_bad_row="skip"``, is counted in ``skipped`` by reason. ``rows_read`` counts every row met, good or
    bad; ``columns_used`` records which source name fed each of our fields (for the report).
    """

    def __init__(self, path: str | Path, *, on_bad_row: str = "error") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("file not found" if not self.path.exists() else "not a regular file", path=self.path)
        self.format, self.compression = detect_format(self.path)
        self.on_bad_row = on_bad_row
        self.rows_read = 0
        self.skipped: Counter[str] = Counter()
        self.columns_used: dict[str, set[str]] = {}

    def bad_row(self, reason: str, message: str, *, line: int | None, field: str | None = None) -> None:
        """Raise for a malformed row, or count it under ``reason`` when skipping bad rows."""
        if self.on_bad_row != "skip":
            raise InputError(message, path=self.path, line=line, field=field)
        self.skipped[reason] += 1

    def columns(self) -> list[str] | None:
        """The header of a table; None for JSON lines, whose records each name their own fields."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return list(self._arrow(lambda: pq.read_schema(self.path)).names)
        if self.format == "jsonl":
            return None
        try:
            with self._open() as handle:
                reader = csv.reader(self._decoded_lines(handle, set()), delimiter=self._delimiter)
                return [name.strip() for name in next(reader, [])]
        except (csv.Error, *self._read_errors()) as exc:
            raise InputError(f"cannot read the header ({exc})", path=self.path, line=1) from exc

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if self.format == "jsonl":
            return self._iter_jsonl()
        if self.format == "parquet":
            return self._iter_parquet()
        return self._iter_table()

    @property
    def _delimiter(self) -> str:
        return "\t" if self.format == "tsv" else ","

    def _open(self) -> IO[bytes]:
        return open_binary_stream(self.path, self.compression)

    def _read_errors(self) -> tuple[type[BaseException], ...]:
        return stream_read_errors(self.compression)

    def _iter_jsonl(self) -> Iterator[tuple[int, dict[str, Any]]]:
        line = 0
        try:
            with self._open() as handle:
                for line, raw in enumerate(handle, start=1):
                    if not raw.strip():
                        continue
                    self.rows_read += 1
                    if line == 1 and raw.startswith(codecs.BOM_UTF8):
                        raw = raw[len(codecs.BOM_UTF8) :]
                    try:
                        row = json.loads(raw.decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        self.bad_row("not UTF-8", f"not valid UTF-8 (byte {exc.start + 1})", line=line)
                        continue
                    except json.JSONDecodeError as exc:
                        self.bad_row("invalid JSON", f"invalid JSON ({exc.msg}, column {exc.colno})", line=line)
                        continue
                    if not isinstance(row, dict):
                        self.bad_row("not an object", f"expected a JSON object, got {type(row).__name__}", line=line)
                        continue
                    yield line, row
        except self._read_errors() as exc:
            where = f" after line {line}" if line else ""
            raise InputError(f"cannot read the file{where} ({exc})", path=self.path) from exc

    def _decoded_lines(self, handle: IO[bytes], bad_lines: set[int]) -> Iterator[str]:
        """Lines as text for the csv module; a non-UTF-8 line raises, or is marked in ``bad_lines`` when skipping."""
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.on_bad_row != "skip":
                    raise InputError(f"not valid UTF-8 (byte {exc.start + 1})", path=self.path, line=number) from exc
                bad_lines.add(number)
                yield raw.decode("utf-8", "replace")

    def _iter_table(self) -> Iterator[tuple[int, dict[str, Any]]]:
        if csv.field_size_limit() < 1 << 30:
            csv.field_size_limit(min(sys.maxsize, 1 << 30))  # long posts exceed the default 128 KiB cell limit
        bad_lines: set[int] = set()
        try:
            with self._open() as handle:
                reader = csv.reader(self._decoded_lines(handle, bad_lines), delimiter=self._delimiter)
                header: list[str] | None = None
                next_start = 1
                try:
                    for cells in reader:
                        line, next_start = next_start, reader.line_num + 1
                        if header is None:
                            header = [name.strip() for name in cells]
                            continue
                        if not cells:
                            continue
                        self.rows_read += 1
                        if bad_lines and any(n in bad_lines for n in range(line, reader.line_num + 1)):
                            self.bad_row("not UTF-8", "not valid UTF-8", line=line)
                        elif len(cells) != len(header):
                            message = f"{len(cells)} cells but the header has {len(header)} columns"
                            self.bad_row("wrong number of cells", message, line=line)
                        else:
                            yield line, dict(zip(header, cells, strict=True))
                except csv.Error as exc:
                    raise InputError(f"cannot parse ({exc})", path=self.path, line=reader.line_num) from exc
        except self._read_errors() as exc:
            raise InputError(f"cannot read the file ({exc})", path=self.path) from exc

    def _arrow(self, fn):
        import pyarrow as pa

        try:
            return fn()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"not a readable Parquet file ({exc})", path=self.path) from exc

    def _iter_parquet(self) -> Iterator[tuple[int, dict[str, Any]]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = self._arrow(lambda: pq.ParquetFile(self.path))
        batches, number = parquet.iter_batches(batch_size=8192), 0
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"cannot read row {number + 1} ({exc})", path=self.path) from exc
            if batch is None:
                return
            for row in batch.to_pylist():
                number += 1
                self.rows_read += 1
                yield number, row


# --------------------------------------------------------------------------- our fields from source names


@dataclass(frozen=True)
class ColumnMap:
    """Which source names feed each of our fields: ``candidates[field]`` lists names, the first with a value wins.

    The defaults cover Pushshift dumps, flat scraper tables (reddit_college) and our own processed format.
    ``required`` fields need a column (checked once for tables, per row for JSON lines); ``nonempty`` ones also
    need a value in every row. :meth:`with_overrides` pins fields to given columns for other layouts.
    """

    kind: str
    candidates: Mapping[str, tuple[str, ...]]
    required: tuple[str, ...]
    nonempty: tuple[str, ...]

    def with_overrides(self, overrides: Mapping[str, str]) -> ColumnMap:
        """A copy where each ``field -> column`` of ``overrides`` replaces that field's candidates."""
        unknown = sorted(set(overrides) - set(self.candidates))
        if unknown:
            raise InputError(
                f"unknown {self.kind} field {unknown[0]!r} (fields: {', '.join(self.candidates)})", field=unknown[0]
            )
        return replace(self, candidates={**self.candidates, **{k: (v,) for k, v in overrides.items()}})

    def check_columns(self, columns: list[str] | None, path: Path) -> None:
        """For a table, raise naming the first required field none of whose candidate columns exists."""
        if columns is None:
            return
        for name in self.required:
            if not any(candidate in columns for candidate in self.candidates[name]):
                raise InputError(
                    f"the {self.kind} file has no column for it (looked for: {', '.join(self.candidates[name])}; "
                    f"columns: {', '.join(columns) or 'none'})",
                    path=path,
                    field=name,
                )

    def extract(self, row: Mapping[str, Any], used: dict[str, set[str]]) -> dict[str, tuple[str, Any]]:
        """``field -> (source name, value)`` for every field, empty cells as None; raises _BadRow when a required
        field is absent or a nonempty one has no value. Adds the source names that gave values to ``used``."""
        out: dict[str, tuple[str, Any]] = {}
        for name, candidates in self.candidates.items():  # the hot loop of `prepare`: kept lean on purpose
            for candidate in candidates:
                value = row.get(candidate)
                if value is not None and value != "":
                    if candidate not in used.get(name, ()):
                        used.setdefault(name, set()).add(candidate)
                    out[name] = (candidate, value)
                    break
            else:
                if name in self.nonempty or (name in self.required and not any(c in row for c in candidates)):
                    raise _BadRow(f"missing {name}", f"no value (looked for: {', '.join(candidates)})", name)
                out[name] = (candidates[0], None)
        return out


COMMENT_COLUMNS = ColumnMap(
    "comments",
    {
        "id": ("id", "comment_id"),
        "comment": ("body", "text", "comment"),
        "label": ("score", "upvotes", "label", "ups"),
        "submission_id": ("link_id", "post_id", "submission_id"),
        "parent_id": ("parent_id",),
        "depth": ("depth",),
        "created_comment": ("created_utc", "created_comment", "created"),
        "author": ("author", "author_hash"),
        "author_id": ("author_fullname", "author_id", "author_hash"),
        "edited": ("edited",),
        "retrieved_on": ("retrieved_on", "retrieved_utc"),
        "subreddit": ("subreddit",),
    },
    required=("id", "comment", "label", "submission_id", "created_comment"),
    nonempty=("id", "label", "submission_id"),
)
SUBMISSION_COLUMNS = ColumnMap(
    "submissions",
    {
        "submission_id": ("id", "post_id", "submission_id"),
        "submission_title": ("title", "submission_title", "post_title"),
        "submission_body": ("selftext", "submission_body", "body", "text"),
        "created_submission": ("created_utc", "created_submission", "created"),
        "subreddit": ("subreddit",),
        "submission_has_media": ("submission_has_media", "has_media"),
    },
    required=("submission_id", "submission_title", "created_submission"),
    nonempty=("submission_id",),
)


# --------------------------------------------------------------------------- values


def to_number(value: Any) -> int | float | None:
    """A finite number from a number or a numeric string ("1565423010" in old dumps); None for empty."""
    if type(value) is int:  # the common case, first
        return value
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str):
        number = float(value.strip())
    elif isinstance(value, (int, float)):
        number = value
    elif hasattr(value, "timestamp"):  # datetime columns of a Parquet file
        number = value.timestamp()
    else:
        raise ValueError(f"{type(value).__name__} is not a number")
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return int(number) if float(number).is_integer() else number


def to_flag(value: Any) -> bool | None:
    """True/False from booleans, numbers and strings such as "True", "0", "false"; None when unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, (bool, int, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "t", "yes", "1"):
        return True
    if text in ("false", "f", "no", "0", "none", "null"):
        return False
    return None


def to_edited(value: Any) -> Any:
    """Reddit's `edited`: False, True or the edit time. Strings from tables are parsed; None when unknown."""
    if not isinstance(value, str):
        return value
    flag = to_flag(value)
    if flag is not None or not value.strip():
        return flag
    try:
        return to_number(value) or False
    except ValueError:
        return True  # some other non-empty marker: treat as edited


def _number(field: str, column: str, value: Any) -> int | float | None:
    try:
        return to_number(value)
    except (TypeError, ValueError):
        message = f"{str(value)[:40]!r} in column '{column}' is not a number"
        raise _BadRow(f"{field} not a number", message, field) from None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _strip_prefix(value: Any, prefix: str) -> str:
    text = str(value).strip()
    return text[len(prefix) :] if text.startswith(prefix) else text


MEDIA_HINTS = {"image", "hosted:video", "rich:video"}
MEDIA_DOMAINS = {"i.redd.it", "v.redd.it", "i.imgur.com", "youtube.com", "youtu.be"}
MEDIA_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".gifv", ".webp", ".mp4", ".webm", ".mov", ".avi")
MEDIA_FIELDS = ("media", "secure_media", "is_video", "post_hint", "url", "domain")


def _has_media_object(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "{}", "[]", "null", "none", "nan")
    return bool(value)


def _media_domain(domain: Any, url: str) -> str:
    host = str(domain or "").strip().lower() or (urlsplit(url).hostname or "")
    for prefix in ("www.", "m."):
        host = host[len(prefix) :] if host.startswith(prefix) else host
    return host


def submission_has_media(row: Mapping[str, Any]) -> bool | None:
    """Whether a post is an image or a video, whose content the comment model never sees (seed: media posts).

    True for non-empty `media`/`secure_media`, `is_video`, a `post_hint` of image/hosted:video/rich:video, or a
    link post whose url ends in an image/video extension or points at i.redd.it, v.redd.it, i.imgur.com,
    youtube.com or youtu.be. None when the row has none of these fields (a flat table): unknown, not False.
    """
    if not any(name in row for name in MEDIA_FIELDS):
        return None
    if _has_media_object(row.get("media")) or _has_media_object(row.get("secure_media")):
        return True
    if to_flag(row.get("is_video")) or str(row.get("post_hint") or "").strip().lower() in MEDIA_HINTS:
        return True
    if to_flag(row.get("is_self")):
        return False
    url = str(row.get("url") or "").strip()
    path = urlsplit(url).path.lower()
    return path.endswith(MEDIA_EXTENSIONS) or _media_domain(row.get("domain"), url) in MEDIA_DOMAINS


# --------------------------------------------------------------------------- comments and submissions


class Submission(NamedTuple):
    """The few fields of a post that a processed comment record needs; one per post stays in memory."""

    title: str
    body: str
    created: int | float | None
    has_media: bool | None
    subreddit: str | None


def _submission(row: Mapping[str, Any], columns: ColumnMap, used: dict[str, set[str]]) -> tuple[str, Submission]:
    fields = columns.extract(row, used)
    flag = fields["submission_has_media"][1]
    has_media = to_flag(flag) if flag is not None else submission_has_media(row)
    if flag is None and has_media is not None:
        used.setdefault("submission_has_media", set()).add("media fields")
    subreddit = fields["subreddit"][1]
    submission = Submission(
        title=_text(fields["submission_title"][1]),
        body=_text(fields["submission_body"][1]),
        created=_number("created_submission", *fields["created_submission"]),
        has_media=has_media,
        subreddit=None if subreddit is None else str(subreddit),
    )
    return _strip_prefix(fields["submission_id"][1], "t3_"), submission


def load_submissions(
    source: RowSource, columns: ColumnMap = SUBMISSION_COLUMNS, *, subreddits: set[str] | None = None
) -> tuple[dict[str, Submission], Counter[str]]:
    """Read every submission into ``{post id: Submission}``, the only data `prepare` holds in memory.

    With ``subreddits`` (lowercase names), posts known to be elsewhere are not kept. Returns the dict and counts
    of ``other_subreddit`` (not kept) and ``duplicate_id`` (later copies of an id; the first one wins).
    """
    columns.check_columns(source.columns(), source.path)
    submissions: dict[str, Submission] = {}
    counts: Counter[str] = Counter()
    for line, row in source:
        try:
            post_id, submission = _submission(row, columns, source.columns_used)
        except _BadRow as bad:
            source.bad_row(bad.reason, bad.message, line=line, field=bad.field)
            continue
        if subreddits is not None and submission.subreddit and submission.subreddit.lower() not in subreddits:
            counts["other_subreddit"] += 1
        elif post_id in submissions:
            counts["duplicate_id"] += 1
        else:
            submissions[post_id] = submission
    return submissions, counts


def _comment(row: Mapping[str, Any], columns: ColumnMap, used: dict[str, set[str]]) -> dict[str, Any]:
    fields = columns.extract(row, used)
    post_id = _strip_prefix(fields["submission_id"][1], "t3_")
    parent, subreddit = fields["parent_id"][1], fields["subreddit"][1]
    comment_id, text = fields["id"][1], fields["comment"][1]
    if isinstance(comment_id, (dict, list, bool)) or not str(comment_id).strip():
        raise _BadRow("missing id", f"not a usable id: {comment_id!r}", "id")
    if isinstance(text, (dict, list)):  # str() of it would be kept as the comment's text
        raise _BadRow("comment not text", f"a {type(text).__name__} is not a comment's text", "comment")
    return {
        "id": str(comment_id).strip(),
        "submission_id": post_id,
        "link_id": f"t3_{post_id}",
        "parent_id": None if parent is None else str(parent).strip(),
        "depth": _number("depth", *fields["depth"]),
        "comment": _text(fields["comment"][1]),
        "label": _number("label", *fields["label"]),
        "created_comment": _number("created_comment", *fields["created_comment"]),
        "retrieved_on": _number("retrieved_on", *fields["retrieved_on"]),
        "edited": to_edited(fields["edited"][1]),
        "author": fields["author"][1],
        "author_id": fields["author_id"][1],
        "subreddit": None if subreddit is None else str(subreddit),
    }


def iter_comments(source: RowSource, columns: ColumnMap = COMMENT_COLUMNS) -> Iterator[dict[str, Any]]:
    """Stream comments as dicts of our field names with numbers parsed, one row at a time.

    `submission_id` loses its `t3_` prefix and `link_id` is rebuilt from it, so the seed's top-level rule
    (parent_id == link_id) works for tables too. Bad rows raise or are counted in ``source.skipped``.
    """
    columns.check_columns(source.columns(), source.path)
    for line, row in source:
        try:
            yield _comment(row, columns, source.columns_used)
        except _BadRow as bad:
            source.bad_row(bad.reason, bad.message, line=line, field=bad.field)
