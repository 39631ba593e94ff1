"""Jetstream events from files: find them, stream them, turn each into a small typed :class:`Event`.

Input is what BluePrint reads: Jetstream envelopes, one JSON object per line,
``{did, time_us, kind: commit|identity|account, commit: {rev, operation, collection, rkey, record, cid}}``.
:func:`find_input_files` accepts the seed's ``<root>/DD/HH/*`` layout (with an inclusive day range), any folder
(searched recursively) or a single file; files may be plain, ``.gz`` or ``.zst`` (also recognised by their magic
bytes, since the seed's ``DD/HH`` files have no suffix). A ``.json`` file that is one JSON document rather than
JSON lines (an array of events, or BluePrint's ``expected_input_format_examples.json`` with events nested in
objects) is read whole and every event-shaped object in it is used.

:func:`parse_files` is a generator: memory stays bounded whatever the input size. No line makes it raise: each
line that cannot be used is counted in :class:`EventStats` under a short reason, with ``file:line`` for the first
few of each reason; so is every change of a known collection that the cluster files do not use (a profile delete,
see :data:`UNUSED_CHANGES`). A file that cannot be read whole (corrupt or truncated .gz/.zst, no permission) raises
InputError naming it. Because it works file by file with no shared state, a caller can run it per
file in a process pool and merge the results (:meth:`EventStats.merge`, ``UserData.merge``).

Event kinds (``Event.kind``): ``post``, ``reply``, ``quote`` (``embed.record`` or ``recordWithMedia`` pointing at a
post; a reply that also quotes stays a ``reply`` with ``quoted_uri`` set), ``post_update``, ``post_delete``,
``like``, ``unlike``, ``repost``, ``unrepost``, ``follow``, ``unfollow``, ``block``, ``unblock``,
``profile_update``.
"""

from __future__ import annotations

import codecs
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.streams import open_binary_stream, stream_read_errors

POST = "app.bsky.feed.post"
LIKE = "app.bsky.feed.like"
REPOST = "app.bsky.feed.repost"
FOLLOW = "app.bsky.graph.follow"
BLOCK = "app.bsky.graph.block"
PROFILE = "app.bsky.actor.profile"
EMBED_RECORD = "app.bsky.embed.record"
EMBED_RECORD_WITH_MEDIA = "app.bsky.embed.recordWithMedia"

# What users do to content: the action vocabulary of the cluster files (their 13 flags are these and "ignore", in
# this order; see output.ACTIONS). Defined here only.
ACTION_KINDS = (
    "like",
    "unlike",
    "repost",
    "unrepost",
    "follow",
    "unfollow",
    "block",
    "unblock",
    "post_update",
    "post_delete",
    "profile_update",
    "quote",
)
# Every Event.kind, in the order the event table lists them: the kinds that carry or change a post first
_POST_SHAPED = ("post", "reply", "quote", "post_update", "post_delete")
KINDS = _POST_SHAPED + tuple(kind for kind in ACTION_KINDS if kind not in _POST_SHAPED)
# (collection, operation) -> kind for everything but post creates, whose kind depends on the record
_SIMPLE_KINDS = {
    (POST, "update"): "post_update",
    (POST, "delete"): "post_delete",
    (LIKE, "create"): "like",
    (LIKE, "delete"): "unlike",
    (REPOST, "create"): "repost",
    (REPOST, "delete"): "unrepost",
    (FOLLOW, "create"): "follow",
    (FOLLOW, "delete"): "unfollow",
    (BLOCK, "create"): "block",
    (BLOCK, "delete"): "unblock",
    (PROFILE, "create"): "profile_update",
    (PROFILE, "update"): "profile_update",
}
COLLECTIONS = (POST, LIKE, REPOST, FOLLOW, BLOCK, PROFILE)  # the collections this parser reads
OPERATIONS = ("create", "update", "delete")  # Jetstream's commit operations
# Changes of a known collection that carry nothing the cluster files use: counted under a reason, never an error
# (Jetstream emits them: a profile can be deleted, and a like or a follow record could be rewritten)
UNUSED_CHANGES = {
    (collection, operation): f"{collection.rsplit('.', 1)[-1]} {operation} (not used)"
    for collection in COLLECTIONS
    for operation in OPERATIONS
    if (collection, operation) not in _SIMPLE_KINDS and (collection, operation) != (POST, "create")
}
_EVENT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".txt")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_DIGITS = re.compile(r"^\d{1,2}$")
MAX_EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Event:
    """One usable Jetstream commit, flattened to what the per-user data needs.

    ``subject`` is the target: a post URI for likes and reposts, a DID for follows and blocks. ``unix_epoch`` is
    the record's ``createdAt`` in whole seconds, or ``time_us`` when ``createdAt`` is missing or unreadable
    (deletes carry no record, so theirs is always ``time_us``). ``source`` is ``file:line`` for messages.
    """

    kind: str
    did: str
    collection: str
    rkey: str
    time_us: int
    unix_epoch: int
    cid: str = ""
    created_at: str = ""
    text: str = ""
    langs: tuple[str, ...] = ()
    subject: str = ""
    subject_cid: str = ""
    parent_uri: str = ""
    root_uri: str = ""
    quoted_uri: str = ""
    display_name: str = ""
    source: str = ""

    @property
    def uri(self) -> str:
        """The AT URI of the record this event creates, changes or deletes (empty without an rkey)."""
        return f"at://{self.did}/{self.collection}/{self.rkey}" if self.rkey else ""


@dataclass
class EventStats:
    """What :func:`parse_files` met: events by kind, skipped lines by reason, and where the first few were."""

    files: int = 0
    lines: int = 0
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        """Count one skipped line under ``reason``; keep ``where`` (``file:line``) for the first few."""
        self.skipped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < MAX_EXAMPLES:
            seen.append(f"{where}: {detail}" if detail else where)

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def total_skipped(self) -> int:
        return sum(self.skipped.values())

    def merge(self, other: EventStats) -> EventStats:
        """Add ``other`` into this one (for per-file workers) and return self."""
        self.files += other.files
        self.lines += other.lines
        self.events.update(other.events)
        self.skipped.update(other.skipped)
        self.notes.update(other.notes)
        for reason, where in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(where[: max(0, MAX_EXAMPLES - len(mine))])
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "events": dict(self.events),
            "skipped": dict(self.skipped),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "notes": dict(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventStats:
        return cls(
            files=int(data.get("files", 0)),
            lines=int(data.get("lines", 0)),
            events=Counter(data.get("events", {})),
            skipped=Counter(data.get("skipped", {})),
            examples={k: list(v) for k, v in data.get("examples", {}).items()},
            notes=Counter(data.get("notes", {})),
        )

    def format(self) -> str:
        """A small plain-text table: events by kind, then skips by reason with their first locations."""
        out = [
            f"files: {self.files}   lines: {self.lines}   events: {self.total_events}   skipped: {self.total_skipped}"
        ]
        if self.events:
            out.append("events by kind:")
            order = [k for k in KINDS if k in self.events] + sorted(set(self.events) - set(KINDS))
            out += [f"  {kind:<16} {self.events[kind]:>10}" for kind in order]
        if self.skipped:
            out.append("skipped by reason:")
            for reason, count in self.skipped.most_common():
                out.append(f"  {reason:<32} {count:>10}")
                out += [f"      e.g. {where}" for where in self.examples.get(reason, [])]
        if self.notes:
            out.append("notes:")
            out += [f"  {note:<32} {count:>10}" for note, count in self.notes.most_common()]
        return "\n".join(out)


# --------------------------------------------------------------------------- finding files


def _looks_like_event_file(path: Path) -> bool:
    """Files a folder search takes: JSON-ish suffixes (maybe compressed), or no suffix (the seed's DD/HH files)."""
    name = path.name.lower()
    if name.startswith("."):
        return False
    for comp in (".gz", ".zst"):
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return name.endswith(_EVENT_SUFFIXES) or "." not in name


def _numbered_dirs(folder: Path) -> list[tuple[int, Path]]:
    return sorted((int(p.name), p) for p in folder.iterdir() if p.is_dir() and _DIGITS.match(p.name))


def find_input_files(data_root: str | Path, start_day: int | None = None, end_day: int | None = None) -> list[Path]:
    """The event files under ``data_root``, in a stable order.

    - a file: just that file (the day range must not be given);
    - a folder with day sub-folders ``DD/HH/*`` (the seed's layout): files of days ``start_day..end_day``
      inclusive (either bound may be None = open), hours in order;
    - any other folder: every event-looking file below it, recursively, sorted by path.
    Raises :class:`InputError` when nothing is found or the range cannot apply.
    """
    root = Path(data_root)
    if start_day is not None and end_day is not None and start_day > end_day:
        raise InputError(f"start day {start_day} is after end day {end_day}")
    if root.is_file():
        if start_day is not None or end_day is not None:
            raise InputError("a day range needs a folder in the DD/HH layout, not a single file", path=root)
        return [root]
    if not root.is_dir():
        raise InputError("not found", path=root)
    days = _numbered_dirs(root)
    if days:
        lo = start_day if start_day is not None else -1
        hi = end_day if end_day is not None else 10**6
        files: list[Path] = []
        for day, day_dir in days:
            if not lo <= day <= hi:
                continue
            hours = _numbered_dirs(day_dir) or [(0, day_dir)]
            for _, hour_dir in hours:
                files += sorted(p for p in hour_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"no event files for days {start_day}..{end_day} in the DD/HH layout", path=root)
        return files
    if start_day is not None or end_day is not None:
        raise InputError("a day range needs the DD/HH layout (day folders 01..31), found none", path=root)
    files = sorted(p for p in root.rglob("*") if p.is_file() and _looks_like_event_file(p))
    if not files:
        raise InputError("no event files (.jsonl/.json/.ndjson, maybe .gz/.zst) found", path=root)
    return files


# --------------------------------------------------------------------------- reading lines


def _compression(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        return "gz"
    if name.endswith(".zst"):
        return "zst"
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return None
    if head.startswith(_GZIP_MAGIC):
        return "gz"
    if head.startswith(_ZSTD_MAGIC):
        return "zst"
    return None


def unreadable(path: Path, exc: BaseException, line: int = 0) -> InputError:
    """The one-line error for an event file that cannot be read or decompressed (corrupt, truncated, no access)."""
    where = f" after line {line}" if line else ""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return InputError(f"cannot read the file{where}: {reason} (a damaged or incomplete file? re-download it or move "
                      "it out of --data-root)", path=path)


_DOCUMENT = object()  # _decode_line: the first line opens a pretty-printed JSON document
_SKIPPED = object()  # _decode_line: the line was counted as skipped (a line "null" is a value: None)


def _decode_line(raw: bytes, line_no: int, where: str, stats: EventStats) -> Any:
    """The JSON value of one line; _SKIPPED when the line is counted as skipped, or _DOCUMENT."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        stats.skip("not UTF-8", where, f"byte {exc.start + 1}")
        return _SKIPPED
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if line_no == 1 and text.lstrip().startswith(("[", "{")):
            return _DOCUMENT
        stats.skip("invalid JSON", where, exc.msg)
    except RecursionError:  # thousands of nested brackets: not an event, and json gives up on it
        stats.skip("invalid JSON", where, "nested too deeply")
    return _SKIPPED


def _line_values(value: Any, where: str, stats: EventStats) -> list[tuple[str, Any]]:
    """The events one decoded line holds: itself, or those of a one-line array or wrapper object."""
    if isinstance(value, list) or (isinstance(value, dict) and "kind" not in value and "did" not in value):
        try:
            nested = list(_event_objects(value))
        except RecursionError:
            stats.skip("invalid JSON", where, "nested too deeply")
            return []
        if any(isinstance(item, dict) for item in nested):
            return [(f"{where}#{n}", item) for n, item in enumerate(nested, start=1)]
    return [(where, value)]


def _iter_values(path: Path, stats: EventStats) -> Iterator[tuple[str, Any]]:
    """``(where, decoded JSON value)`` for each line of a JSON-lines file, or each event of a JSON document.

    A file that cannot be opened, decompressed or read to its end raises InputError naming it (its events would
    otherwise be missing without a word: a run on one damaged .zst reported "0 users").
    """
    compression = _compression(path)
    line_no = 0
    as_document = False
    try:
        with open_binary_stream(path, compression) as handle:
            for line_no, raw in enumerate(handle, start=1):
                if line_no == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                if not raw.strip():
                    continue
                stats.lines += 1
                where = f"{path}:{line_no}"
                value = _decode_line(raw, line_no, where, stats)
                if value is _DOCUMENT:
                    as_document = True
                    break
                if value is not _SKIPPED:
                    yield from _line_values(value, where, stats)
    except stream_read_errors(compression) as exc:
        raise unreadable(path, exc, line_no) from None
    if as_document:
        yield from _iter_document(path, compression, stats)


def _iter_document(path: Path, compression: str | None, stats: EventStats) -> Iterator[tuple[str, Any]]:
    """A file that is one JSON document: read it whole and yield every event-shaped object in document order."""
    stats.notes["read as one JSON document"] += 1
    stats.lines = stats.lines - 1  # the opening line was counted as a line; count events instead
    try:
        with open_binary_stream(path, compression) as handle:
            data = json.loads(handle.read().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        stats.skip("not UTF-8", str(path), f"byte {exc.start + 1}")
        return
    except json.JSONDecodeError as exc:
        stats.skip("invalid JSON", f"{path}:{exc.lineno}", exc.msg)
        return
    except RecursionError:
        stats.skip("invalid JSON", str(path), "nested too deeply")
        return
    except stream_read_errors(compression) as exc:
        raise unreadable(path, exc) from None
    for number, value in enumerate(_event_objects(data), start=1):
        stats.lines += 1
        yield f"{path}#{number}", value


def _event_objects(data: Any) -> Iterator[Any]:
    """Objects that look like Jetstream envelopes (have ``did`` and ``kind``), searched depth first."""
    if isinstance(data, dict):
        if "did" in data and "kind" in data:
            yield data
            return
        for value in data.values():
            yield from _event_objects(value)
    elif isinstance(data, list):
        for value in data:
            if isinstance(value, (dict, list)):
                yield from _event_objects(value)
            else:
                yield value  # not an object: counted by the caller


# --------------------------------------------------------------------------- envelopes -> events


def _epoch(created_at: Any, time_us: int) -> int:
    if isinstance(created_at, str) and created_at:
        try:
            return int(datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    return time_us // 1_000_000


def _uri_of(ref: Any) -> str:
    if isinstance(ref, dict):
        uri = ref.get("uri")
        return uri if isinstance(uri, str) else ""
    return ""


def quoted_uri(embed: Any) -> str:
    """The URI of the post a post's embed quotes, or "".

    ``app.bsky.embed.record`` has it at ``embed.record.uri``; ``app.bsky.embed.recordWithMedia`` (a quote with
    images or video) at ``embed.record.record.uri``. Embedded lists, feeds and starter packs are not quotes.
    """
    if not isinstance(embed, dict):
        return ""
    inner = embed.get("record")
    kind = embed.get("$type")
    if kind == EMBED_RECORD_WITH_MEDIA or (kind is None and isinstance(inner, dict) and "record" in inner):
        uri = _uri_of(inner.get("record") if isinstance(inner, dict) else None)
    elif kind in (EMBED_RECORD, None):
        uri = _uri_of(inner)
    else:
        uri = ""
    return uri if f"/{POST}/" in uri else ""


def _langs(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(x for x in value if isinstance(x, str))
    return ()


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _envelope_commit(obj: Any, where: str, stats: EventStats) -> dict[str, Any] | None:
    """The commit of a commit envelope with a DID and a time, or None (counted under why not)."""
    if not isinstance(obj, dict):
        stats.skip("not an object", where, type(obj).__name__)
        return None
    kind = obj.get("kind")
    if kind in ("identity", "account"):
        stats.skip(f"{kind} event", where)
        return None
    if kind != "commit":
        stats.skip("unknown kind", where, repr(kind)[:40])
        return None
    did, time_us, commit = obj.get("did"), obj.get("time_us"), obj.get("commit")
    if not isinstance(did, str) or not did:
        stats.skip("missing did", where)
        return None
    if not isinstance(time_us, int) or isinstance(time_us, bool):
        stats.skip("missing time_us", where)
        return None
    if not isinstance(commit, dict):
        stats.skip("missing commit", where)
        return None
    return commit


def _used_change(commit: dict[str, Any], where: str, stats: EventStats) -> tuple[str, str] | None:
    """(collection, operation) of a commit this parser uses, or None (counted under why not)."""
    collection, operation = commit.get("collection"), commit.get("operation")
    if not isinstance(collection, str) or not collection:
        stats.skip("missing collection", where)
        return None
    if collection not in COLLECTIONS:
        stats.skip("unknown collection", where, collection[:80])
        return None
    if operation not in OPERATIONS:
        stats.skip("unknown operation", where, repr(operation)[:40])
        return None
    if (collection, operation) in UNUSED_CHANGES:
        stats.skip(UNUSED_CHANGES[collection, operation], where)
        return None
    return collection, operation


def to_event(obj: Any, where: str, stats: EventStats) -> Event | None:
    """Turn one decoded envelope into an :class:`Event`, or count why not and return None."""
    commit = _envelope_commit(obj, where, stats)
    if commit is None:
        return None
    change = _used_change(commit, where, stats)
    if change is None:
        return None
    collection, operation = change
    time_us = obj["time_us"]
    base = {"did": obj["did"], "collection": collection, "rkey": _str(commit.get("rkey")), "time_us": time_us,
            "cid": _str(commit.get("cid")), "source": where}
    if operation == "delete":
        event = _delete_event(base, where, stats)
    else:
        event = _record_event(commit.get("record"), operation, base, where, stats)
    if event is not None:
        stats.events[event.kind] += 1
    return event


def _delete_event(base: dict[str, Any], where: str, stats: EventStats) -> Event | None:
    """A delete carries no record: it is known by its record key, and dated by ``time_us``."""
    if not base["rkey"]:
        stats.skip("missing rkey", where, f"{base['collection']} delete")
        return None
    kind = _SIMPLE_KINDS[(base["collection"], "delete")]
    return Event(kind=kind, unix_epoch=base["time_us"] // 1_000_000, **base)


def _record_event(record: Any, operation: str, base: dict[str, Any], where: str, stats: EventStats) -> Event | None:
    """A create or an update: the record decides the event (post, profile, or an action on a subject)."""
    collection = base["collection"]
    if not isinstance(record, dict):
        stats.skip("missing record", where, f"{collection} {operation}")
        return None
    if not base["rkey"]:
        if operation == "update":
            stats.skip("missing rkey", where, f"{collection} update")
            return None
        stats.notes["create without rkey (cannot be matched by a delete)"] += 1
    created_at = _str(record.get("createdAt"))
    base = {**base, "created_at": created_at, "unix_epoch": _epoch(created_at, base["time_us"])}
    if collection == POST:
        return _post_event(record, operation, base, where, stats)
    if collection == PROFILE:
        return Event(kind="profile_update", text=_str(record.get("description")),
                     display_name=_str(record.get("displayName")), **base)
    return _subject_event(record.get("subject"), base, where, stats)


def _subject_event(subject: Any, base: dict[str, Any], where: str, stats: EventStats) -> Event | None:
    """A like, repost (subject: a post reference), follow or block (subject: a DID)."""
    collection = base["collection"]
    kind = _SIMPLE_KINDS[(collection, "create")]
    if collection in (FOLLOW, BLOCK):
        if not isinstance(subject, str) or not subject:
            stats.skip("missing subject", where, collection)
            return None
        return Event(kind=kind, subject=subject, **base)
    uri = _uri_of(subject)
    if not uri:
        stats.skip("missing subject", where, collection)
        return None
    return Event(kind=kind, subject=uri, subject_cid=_str(subject.get("cid")), **base)


def _post_event(record: dict[str, Any], operation: str, base: dict[str, Any], where: str, stats: EventStats):
    text = record.get("text", "")
    if not isinstance(text, str):
        stats.skip("bad text", where, type(text).__name__)
        return None
    fields: dict[str, Any] = {"text": text, "langs": _langs(record.get("langs")), **base}
    fields["quoted_uri"] = quoted_uri(record.get("embed"))
    reply = record.get("reply")
    if reply is not None:
        parent = _uri_of(reply.get("parent")) if isinstance(reply, dict) else ""
        if not parent:
            stats.skip("missing reply parent", where)
            return None
        fields["parent_uri"] = parent
        fields["root_uri"] = _uri_of(reply.get("root")) or parent
    if operation == "update":
        kind = "post_update"
    elif reply is not None:
        kind = "reply"
    elif fields["quoted_uri"]:
        kind = "quote"
    else:
        kind = "post"
    return Event(kind=kind, **fields)


# --------------------------------------------------------------------------- public entry points


def parse_file(path: str | Path, stats: EventStats) -> Iterator[Event]:
    """Stream the usable events of one file, counting the rest in ``stats``."""
    path = Path(path)
    stats.files += 1
    for where, value in _iter_values(path, stats):
        event = to_event(value, where, stats)
        if event is not None:
            yield event


def parse_files(paths: Iterable[str | Path], counters: EventStats) -> Iterator[Event]:
    """Stream the usable events of ``paths`` in order; ``counters`` receives counts and skip reasons.

    Bad lines are counted, never raised; a file that cannot be opened, decompressed or read to its end raises
    InputError naming it.
    """
    for path in paths:
        yield from parse_file(path, counters)
