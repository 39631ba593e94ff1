"""Reddit comment preparation as in seed 000: keep top-level comments whose score means something.

`prepare_comments` filters rows already in the processed form; `prepare_sources` builds them from a comments
file and a submissions file (Pushshift dumps or flat tables, read by `socialsynth.jobs.prepare.sources`), joining
each comment to its post, filtering, and writing one file or one file per subreddit.

A processed record has the seed's fields: id, submission_title, submission_body, comment, created_comment,
created_submission, label (the comment score), author, author_id, submission_has_media, edited, retrieved_on.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.jobs.prepare.sources import (
    COMMENT_COLUMNS,
    SUBMISSION_COLUMNS,
    ColumnMap,
    RowSource,
    Submission,
    iter_comments,
    load_submissions,
)

DAY = 24 * 3600
URL_ONLY = re.compile(r"^\s*<?(?:https?://|www\.)\S+>?\s*$", re.IGNORECASE)
FILTER_REASONS = (
    "not_top_level",  # replies see a different audience than top-level comments
    "removed_or_deleted",
    "edited",  # the score may belong to another text
    "single_link",  # nothing to rewrite
    "media_post",  # the post's content is not in the text the model sees
    "late_comment",  # posted more than 24 h after the post: few voters saw it
    "retrieved_too_soon",  # crawled less than 24 h after posting: the score had not settled
)


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def filter_reason(row: dict) -> str | None:
    """The first of the seed's filters that drops this comment, or None if it is kept.

    A filter whose input is unknown (None: a column the source lacks) keeps the comment.
    """
    parent, link = row.get("parent_id"), row.get("link_id")
    if parent and link and parent != link:
        return "not_top_level"
    if parent and str(parent).startswith("t1_"):
        return "not_top_level"
    depth = _num(row.get("depth"))  # flat tables give the depth in the thread: 0 is top-level
    if depth is not None and depth > 0:
        return "not_top_level"
    text = str(row.get("comment") or "").strip()
    if text in ("[removed]", "[deleted]", ""):
        return "removed_or_deleted"
    if row.get("edited") not in (None, False, 0, "false", "False", ""):
        return "edited"
    if URL_ONLY.match(text):
        return "single_link"
    if row.get("submission_has_media") in (True, "true", "True", 1):
        return "media_post"
    created_c, created_s, retrieved = (
        _num(row.get(k)) for k in ("created_comment", "created_submission", "retrieved_on")
    )
    if created_c is not None and created_s is not None and created_c - created_s > DAY:
        return "late_comment"
    if retrieved is not None and created_c is not None and retrieved - created_c < DAY:
        return "retrieved_too_soon"
    return None


def prepare_comments(rows: Iterable[dict]) -> tuple[list[dict], Counter]:
    """Apply the filters, then keep each id once; return the kept records (fields starting with "_" removed) and
    counts per reason (``duplicate_id`` for later copies of a kept id)."""
    kept, dropped = [], Counter()
    for row in rows:
        reason = filter_reason(row)
        if reason:
            dropped[reason] += 1
        else:
            kept.append({k: v for k, v in row.items() if not k.startswith("_")})
    return list(drop_duplicates(kept, dropped)), dropped


# --------------------------------------------------------------------------- comments + submissions -> records

PROCESSED_FIELDS = (  # the seed's record (what generate_synthetic_data.py and the upvote model read) + ours
    "id",
    "subreddit",
    "submission_id",
    "submission_title",
    "submission_body",
    "comment",
    "created_comment",
    "created_submission",
    "label",
    "author",
    "author_id",
    "submission_has_media",
    "edited",
    "retrieved_on",
)
JOIN_REASONS = ("no_submission", "other_subreddit")
DUPLICATE = "duplicate_id"  # a later copy of a kept comment's id (dumps repeat some comments): the first is kept


def usable_id(value) -> bool:
    """An id a record can be found by (on resume, in a merge): a non-blank string or a number, not null, a list,
    a boolean or NaN."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return False
    return bool(str(value).strip()) and value == value  # NaN is not equal to itself


def drop_duplicates(records: Iterable[dict], dropped: Counter) -> Iterator[dict]:
    """Each id once: later records with an id already yielded are counted as ``duplicate_id`` in ``dropped``."""
    seen: set[str] = set()
    for record in records:
        key = str(record["id"])
        if key in seen:
            dropped[DUPLICATE] += 1
            continue
        seen.add(key)
        yield record


def join_comments(
    comments: Iterable[dict], submissions: Mapping[str, Submission], dropped: Counter, subreddits: set | None = None
) -> Iterator[dict]:
    """Give each comment its post's title, body, time and media flag, counting what cannot be joined.

    A comment whose post is not in ``submissions`` counts as ``no_submission``; with ``subreddits`` (lowercase
    names), one from another subreddit as ``other_subreddit``. The comment's own subreddit is checked first,
    because posts of other subreddits were never loaded and would otherwise look missing.
    """
    for comment in comments:
        own = comment.get("subreddit")
        if subreddits is not None and own and own.lower() not in subreddits:
            dropped["other_subreddit"] += 1
            continue
        post = submissions.get(comment["submission_id"])
        if post is None:
            dropped["no_submission"] += 1
            continue
        subreddit = own or post.subreddit
        if subreddits is not None and (subreddit or "").lower() not in subreddits:
            dropped["other_subreddit"] += 1
            continue
        yield {
            **comment,
            "subreddit": subreddit,
            "submission_title": post.title,
            "submission_body": post.body,
            "created_submission": post.created,
            "submission_has_media": post.has_media,
        }


def unknown_filters(row: dict) -> list[str]:
    """The filters that cannot judge this row because an input is unknown (such filters keep the row)."""
    get, out = row.get, []
    if get("parent_id") is None and get("depth") is None:
        out.append("not_top_level")
    if get("edited") is None:
        out.append("edited")
    if get("submission_has_media") is None:
        out.append("media_post")
    no_created = get("created_comment") is None
    if no_created or get("created_submission") is None:
        out.append("late_comment")
    if no_created or get("retrieved_on") is None:
        out.append("retrieved_too_soon")
    return out


def apply_filters(rows: Iterable[dict], dropped: Counter, unknown: Counter) -> Iterator[dict]:
    """Yield the kept rows as processed records (PROCESSED_FIELDS only); count drops and unjudgeable filters."""
    for row in rows:
        missing = unknown_filters(row)
        if missing:
            unknown.update(missing)
        reason = filter_reason(row)
        if reason:
            dropped[reason] += 1
        else:
            yield {name: row.get(name) for name in PROCESSED_FIELDS}


class KeptWriter:
    """Writes kept records to one JSONL file, or with ``split`` to ``<folder>/<subreddit>.jsonl`` each.

    Records stream to temp files next to the targets, renamed over them only when the ``with`` block succeeds:
    a crash leaves the old outputs, never half a file. At most ``max_open`` files are open at once (a whole
    dump has thousands of subreddits). ``kept`` counts records per subreddit (first-seen spelling).
    """

    def __init__(self, target: Path, *, split: bool = False, max_open: int = 64) -> None:
        target = Path(target)
        if split and target.exists() and not target.is_dir():
            raise InputError("with --split-by-subreddit, -o must be a folder, not a file", path=target)
        if not split and target.is_dir():
            raise InputError("is a folder: give a file name, or use --split-by-subreddit", path=target)
        self.target, self.split, self.max_open = target, split, max_open
        self.kept: Counter = Counter()
        self._spelling: dict[str, str] = {}
        self._files: dict[str, tuple[Path, Path]] = {}  # file key -> (temp, final)
        self._handles: OrderedDict = OrderedDict()

    def path_for(self, subreddit: str | None) -> Path:
        if not self.split:
            return self.target
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", subreddit or "").lstrip(".") or "no_subreddit"
        return self.target / f"{name}.jsonl"

    def _handle(self, key: str, subreddit: str | None):
        if key in self._handles:
            self._handles.move_to_end(key)
            return self._handles[key]
        if key not in self._files:
            final = self.path_for(subreddit)
            if any(final == taken for _, taken in self._files.values()):
                raise InputError(f"two subreddits would share the output file {final.name}", path=self.target)
            final.parent.mkdir(parents=True, exist_ok=True)
            self._files[key] = (final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"), final)
        if len(self._handles) >= self.max_open:
            self._close(*self._handles.popitem(last=False))
        handle = open(self._files[key][0], "ab")
        self._handles[key] = handle
        return handle

    @staticmethod
    def _close(key: str, handle) -> None:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()

    def write(self, record: dict) -> None:
        subreddit = record.get("subreddit")
        name = self._spelling.setdefault((subreddit or "").lower(), subreddit or "")
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        self._handle(name.lower() if self.split else "", name or None).write(line.encode("utf-8"))
        self.kept[name] += 1

    def __enter__(self) -> KeptWriter:
        if not self.split:
            self._handle("", None)  # the single output exists even when nothing is kept
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            while self._handles:
                key, handle = self._handles.popitem()
                if exc_type is None:
                    self._close(key, handle)
                else:
                    handle.close()
            if exc_type is None:
                for temp, final in self._files.values():
                    os.replace(temp, final)
        finally:  # after a failure: no temp file left behind, and no target touched
            for handle in self._handles.values():
                handle.close()
            for temp, _ in self._files.values():
                temp.unlink(missing_ok=True)

    @property
    def outputs(self) -> dict[str, str]:
        """Subreddit (or "all") -> written path."""
        if not self.split:
            return {"all": str(self.target)}
        return {self._spelling.get(key, key): str(final) for key, (_, final) in self._files.items()}


@dataclass
class PrepareReport:
    """What `prepare` read, dropped and kept from a comments + submissions pair (printed and saved as meta)."""

    comments: RowSource
    submissions: RowSource
    submissions_held: int
    submissions_not_held: Counter
    dropped: Counter
    unknown: Counter
    kept: Counter
    outputs: dict[str, str]
    subreddits: list[str] = field(default_factory=list)

    @property
    def n_comments(self) -> int:
        return self.comments.rows_read - sum(self.comments.skipped.values())

    @property
    def n_judged(self) -> int:
        """Comments that reached the filters (joined to a post of a wanted subreddit)."""
        return self.n_comments - sum(self.dropped[r] for r in JOIN_REASONS)

    def not_checked(self) -> list[str]:
        """Filters that could judge none of the comments (their inputs are absent from the sources)."""
        return [r for r in FILTER_REASONS if self.n_judged and self.unknown[r] == self.n_judged]

    def to_json(self) -> dict:
        def source(src: RowSource) -> dict:
            return {
                "path": str(src.path),
                "format": src.format + (f"+{src.compression}" if src.compression else ""),
                "rows_read": src.rows_read,
                "skipped": dict(src.skipped),
                "columns": {name: sorted(cols) for name, cols in sorted(src.columns_used.items())},
            }

        return {
            "inputs": {"comments": source(self.comments), "submissions": source(self.submissions)},
            "subreddits": self.subreddits or None,
            "submissions_held": self.submissions_held,
            "submissions_not_held": dict(self.submissions_not_held),
            "n_comments": self.n_comments,
            "dropped": {r: self.dropped[r] for r in (*FILTER_REASONS, *JOIN_REASONS, DUPLICATE)},
            "unknown_inputs": {r: self.unknown[r] for r in FILTER_REASONS if self.unknown[r]},
            "not_checked": self.not_checked(),
            "kept": dict(self.kept),
            "n_kept": sum(self.kept.values()),
            "outputs": self.outputs,
        }


def prepare_sources(
    comments: RowSource,
    submissions: RowSource,
    writer: KeptWriter,
    *,
    subreddits: Iterable[str] = (),
    comment_columns: ColumnMap = COMMENT_COLUMNS,
    submission_columns: ColumnMap = SUBMISSION_COLUMNS,
) -> PrepareReport:
    """Load the posts, stream the comments through join and filters into ``writer``; return the report."""
    wanted = {s.lower() for s in subreddits} or None
    posts, not_held = load_submissions(submissions, submission_columns, subreddits=wanted)
    if not submissions.rows_read:
        raise InputError("the file has no rows: no comment could be joined to its post", path=submissions.path)
    dropped: Counter = Counter()
    unknown: Counter = Counter()
    with writer:
        joined = join_comments(iter_comments(comments, comment_columns), posts, dropped, wanted)
        for record in drop_duplicates(apply_filters(joined, dropped, unknown), dropped):
            writer.write(record)
        if not comments.rows_read:  # raised inside the writer: no empty output replaces an old one
            raise InputError("the file has no rows", path=comments.path)
    return PrepareReport(
        comments, submissions, len(posts), not_held, dropped, unknown, writer.kept, writer.outputs, list(subreddits)
    )
