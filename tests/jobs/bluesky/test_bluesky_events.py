"""Jetstream events -> typed Event records: every collection/operation, bad input counted, compression, layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.bluesky.events import EventStats, find_input_files, parse_files, quoted_uri

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
REAL = REPO.parent / "shared" / "data" / "real"
ALICE, BOB = "did:plc:alice", "did:plc:bob"
T0 = 1740798047_000000


def commit(did, collection, operation, rkey, record=None, t=T0, cid="bafycid"):
    body = {"rev": "r", "operation": operation, "collection": collection, "rkey": rkey}
    if record is not None:
        body["record"] = record
        body["cid"] = cid
    return {"did": did, "time_us": t, "kind": "commit", "commit": body}


def post_uri(did, rkey):
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def post(did, rkey, text, t=T0, **extra):
    record = {"$type": "app.bsky.feed.post", "createdAt": "2025-03-01T02:00:47.000Z", "text": text, "langs": ["en"]}
    record.update(extra)
    return commit(did, "app.bsky.feed.post", "create", rkey, record, t=t)


def reply(did, rkey, text, parent, root=None, t=T0):
    ref = {"parent": {"cid": "c", "uri": parent}, "root": {"cid": "c", "uri": root or parent}}
    return post(did, rkey, text, t=t, reply=ref)


def subject_record(collection, subject):
    return {"$type": collection, "createdAt": "2025-03-01T02:00:47.000Z", "subject": subject}


ALL_KINDS = [
    post(ALICE, "p1", "hello world"),
    reply(BOB, "r1", "hi alice", post_uri(ALICE, "p1")),
    post(
        BOB,
        "q1",
        "look",
        embed={"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": post_uri(ALICE, "p1")}},
    ),
    post(
        BOB,
        "q2",
        "look with pics",
        embed={
            "$type": "app.bsky.embed.recordWithMedia",
            "media": {"$type": "app.bsky.embed.images", "images": []},
            "record": {"$type": "app.bsky.embed.record", "record": {"cid": "c", "uri": post_uri(ALICE, "p1")}},
        },
    ),
    commit(ALICE, "app.bsky.feed.post", "update", "p1", {"text": "hello world (edited)", "createdAt": "x"}),
    commit(ALICE, "app.bsky.feed.post", "delete", "p1"),
    commit(
        BOB,
        "app.bsky.feed.like",
        "create",
        "l1",
        subject_record("app.bsky.feed.like", {"uri": post_uri(ALICE, "p1"), "cid": "c"}),
    ),
    commit(BOB, "app.bsky.feed.like", "delete", "l1"),
    commit(
        BOB,
        "app.bsky.feed.repost",
        "create",
        "rp1",
        subject_record("app.bsky.feed.repost", {"uri": post_uri(ALICE, "p1")}),
    ),
    commit(BOB, "app.bsky.feed.repost", "delete", "rp1"),
    commit(BOB, "app.bsky.graph.follow", "create", "f1", subject_record("app.bsky.graph.follow", ALICE)),
    commit(BOB, "app.bsky.graph.follow", "delete", "f1"),
    commit(ALICE, "app.bsky.graph.block", "create", "b1", subject_record("app.bsky.graph.block", BOB)),
    commit(ALICE, "app.bsky.graph.block", "delete", "b1"),
    commit(ALICE, "app.bsky.actor.profile", "update", "self", {"displayName": "Alice", "description": "I post"}),
]
EXPECTED_KINDS = [
    "post",
    "reply",
    "quote",
    "quote",
    "post_update",
    "post_delete",
    "like",
    "unlike",
    "repost",
    "unrepost",
    "follow",
    "unfollow",
    "block",
    "unblock",
    "profile_update",
]


def write_jsonl(path: Path, events, opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event) + "\n")
    return path


def parse(path_or_paths):
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    stats = EventStats()
    return list(parse_files(paths, stats)), stats


def test_every_collection_and_operation_becomes_its_kind(tmp_path):
    events, stats = parse(write_jsonl(tmp_path / "e.jsonl", ALL_KINDS))
    assert [e.kind for e in events] == EXPECTED_KINDS
    assert stats.total_skipped == 0 and stats.total_events == len(ALL_KINDS)
    by_kind = {e.kind: e for e in events}
    assert by_kind["post"].text == "hello world" and by_kind["post"].langs == ("en",)
    assert by_kind["post"].uri == post_uri(ALICE, "p1")
    assert by_kind["post"].unix_epoch == 1740794447  # from createdAt, not time_us
    assert by_kind["reply"].parent_uri == post_uri(ALICE, "p1") and by_kind["reply"].root_uri == post_uri(ALICE, "p1")
    assert [e.quoted_uri for e in events if e.kind == "quote"] == [post_uri(ALICE, "p1")] * 2
    assert by_kind["post_update"].text == "hello world (edited)"
    assert by_kind["post_update"].unix_epoch == T0 // 1_000_000  # unreadable createdAt falls back to time_us
    assert by_kind["post_delete"].rkey == "p1" and by_kind["post_delete"].text == ""
    assert by_kind["like"].subject == post_uri(ALICE, "p1") and by_kind["like"].subject_cid == "c"
    assert by_kind["follow"].subject == ALICE and by_kind["block"].subject == BOB
    assert by_kind["profile_update"].display_name == "Alice" and by_kind["profile_update"].text == "I post"
    assert by_kind["like"].source.endswith("e.jsonl:7")


def test_quotes_of_non_posts_are_plain_posts_and_reply_quotes_stay_replies():
    feed = {"$type": "app.bsky.embed.record", "record": {"uri": "at://did:plc:x/app.bsky.feed.generator/hot"}}
    assert quoted_uri(feed) == ""
    assert quoted_uri({"$type": "app.bsky.embed.images", "images": []}) == ""
    events = [
        post(ALICE, "a", "feed", embed=feed),
        reply(ALICE, "b", "reply that quotes", post_uri(BOB, "x")),
    ]
    events[1]["commit"]["record"]["embed"] = {"$type": "app.bsky.embed.record", "record": {"uri": post_uri(BOB, "y")}}
    stats = EventStats()
    from socialsynth.jobs.bluesky.events import to_event

    got = [to_event(e, "t:1", stats) for e in events]
    assert [e.kind for e in got] == ["post", "reply"]
    assert got[1].quoted_uri == post_uri(BOB, "y")


def test_bad_input_is_counted_by_reason_with_locations(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(post(ALICE, "p1", "ok")).encode()
    lines = [
        good,
        b'{"did": "did:plc:x", "kind": "commit", "commit": {',  # broken line
        json.dumps(commit(ALICE, "app.bsky.feed.threadgate", "create", "t", {"allow": []})).encode(),
        b'{"did": "did:plc:x", "time_us": 1, "kind": "commit", "text": "caf\xe9"}',  # latin-1, not UTF-8
        json.dumps({"did": ALICE, "time_us": 1, "kind": "identity", "identity": {}}).encode(),
        json.dumps({"did": ALICE, "time_us": 1, "kind": "account", "account": {}}).encode(),
        json.dumps({"time_us": 1, "kind": "commit", "commit": {}}).encode(),  # no did
        json.dumps(commit(ALICE, "app.bsky.feed.like", "create", "l", {"createdAt": "x"})).encode(),  # no subject
        json.dumps(commit(ALICE, "app.bsky.feed.like", "create", "l", None)).encode(),  # no record
        b"[1, 2]",
        b"",
        good,
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    events, stats = parse(path)
    assert len(events) == 2
    assert stats.skipped == {
        "invalid JSON": 1,
        "unknown collection": 1,
        "not UTF-8": 1,
        "identity event": 1,
        "account event": 1,
        "missing did": 1,
        "missing subject": 1,
        "missing record": 1,
        "not an object": 1,
    }
    assert stats.examples["invalid JSON"][0].startswith(f"{path}:2")
    assert stats.examples["unknown collection"] == [f"{path}:3: app.bsky.feed.threadgate"]
    assert stats.examples["not UTF-8"][0].startswith(f"{path}:4")
    assert stats.lines == 11
    text = stats.format()
    assert "not UTF-8" in text and f"{path}:4" in text and "post" in text


def test_gz_and_zst_inputs_and_magic_bytes_without_suffix(tmp_path):
    zstandard = pytest.importorskip("zstandard")
    gz = write_jsonl(tmp_path / "e.jsonl.gz", ALL_KINDS, opener=gzip.open)
    raw = "".join(json.dumps(e) + "\n" for e in ALL_KINDS).encode()
    zst = tmp_path / "e.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(raw))
    bare = tmp_path / "no_suffix"
    bare.write_bytes(zstandard.ZstdCompressor().compress(raw))
    for path in (gz, zst, bare):
        events, stats = parse(path)
        assert [e.kind for e in events] == EXPECTED_KINDS, path
        assert stats.total_skipped == 0


def _compressed(kind: str, raw: bytes) -> bytes:
    if kind == "gz":
        return gzip.compress(raw)
    return pytest.importorskip("zstandard").ZstdCompressor().compress(raw)


@pytest.mark.parametrize("kind", ["gz", "zst"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "not compressed"])
def test_damaged_compressed_file_is_one_error_naming_it(tmp_path, kind, damage):
    """A truncated or corrupt .gz/.zst is refused naming the file (it was counted and the run went on with what it
    had; on a single damaged file that read as "0 users")."""
    raw = "".join(json.dumps(e) + "\n" for e in ALL_KINDS * 50).encode()
    data = _compressed(kind, raw)
    damaged = {"truncated": data[: len(data) // 2], "garbage": data[:12] + b"\x00garbage" * 50,
               "not compressed": raw}[damage]
    path = tmp_path / f"cut.jsonl.{kind}"
    path.write_bytes(damaged)
    with pytest.raises(InputError) as info:
        parse([write_jsonl(tmp_path / "good.jsonl", ALL_KINDS), path])
    assert info.value.path == str(path) and "cannot read the file" in str(info.value)


def test_unreadable_event_file_is_one_error_naming_it(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = write_jsonl(tmp_path / "locked.jsonl", ALL_KINDS)
    path.chmod(0)
    with pytest.raises(InputError) as info:
        parse(path)
    assert info.value.path == str(path)


# every (collection, operation) the parser knows, plus unknown ones: an event of its kind or a counted skip, never an
# exception (a profile delete, which Jetstream emits, raised KeyError)
_RECORDS = {
    "app.bsky.feed.post": {"text": "hello there", "createdAt": "2025-03-01T02:00:47.000Z", "langs": ["en"]},
    "app.bsky.feed.like": subject_record("app.bsky.feed.like", {"uri": post_uri(BOB, "p"), "cid": "c"}),
    "app.bsky.feed.repost": subject_record("app.bsky.feed.repost", {"uri": post_uri(BOB, "p"), "cid": "c"}),
    "app.bsky.graph.follow": subject_record("app.bsky.graph.follow", BOB),
    "app.bsky.graph.block": subject_record("app.bsky.graph.block", BOB),
    "app.bsky.actor.profile": {"displayName": "Alice", "description": "hi"},
}
_EXPECTED = {
    ("app.bsky.feed.post", "create"): "post",
    ("app.bsky.feed.post", "update"): "post_update",
    ("app.bsky.feed.post", "delete"): "post_delete",
    ("app.bsky.feed.like", "create"): "like",
    ("app.bsky.feed.like", "delete"): "unlike",
    ("app.bsky.feed.repost", "create"): "repost",
    ("app.bsky.feed.repost", "delete"): "unrepost",
    ("app.bsky.graph.follow", "create"): "follow",
    ("app.bsky.graph.follow", "delete"): "unfollow",
    ("app.bsky.graph.block", "create"): "block",
    ("app.bsky.graph.block", "delete"): "unblock",
    ("app.bsky.actor.profile", "create"): "profile_update",
    ("app.bsky.actor.profile", "update"): "profile_update",
}


def _all_changes():
    from socialsynth.jobs.bluesky.events import COLLECTIONS, OPERATIONS

    pairs = [(c, o) for c in COLLECTIONS for o in OPERATIONS]
    pairs += [(c, "resync") for c in COLLECTIONS] + [(c, None) for c in COLLECTIONS]
    pairs += [("app.bsky.feed.threadgate", o) for o in OPERATIONS] + [("", "create"), (None, "delete")]
    return pairs


@pytest.mark.parametrize("collection, operation", _all_changes(), ids=lambda x: str(x))
@pytest.mark.parametrize("with_record", [True, False], ids=["record", "no-record"])
def test_every_collection_and_operation_is_an_event_or_a_counted_skip(collection, operation, with_record):
    from socialsynth.jobs.bluesky.events import COLLECTIONS, UNUSED_CHANGES, to_event
    from socialsynth.jobs.bluesky.users import UserData

    record = _RECORDS.get(collection, {"createdAt": "2025-03-01T02:00:47.000Z"})
    envelope = commit(ALICE, collection, operation, "self", record if with_record else None)
    stats = EventStats()
    event = to_event(envelope, "f:1", stats)
    if event is None:
        assert stats.total_skipped == 1 and stats.total_events == 0, stats.to_dict()
        reason = next(iter(stats.skipped))
        if collection not in COLLECTIONS:
            assert reason in ("unknown collection", "missing collection")
        elif operation not in ("create", "update", "delete"):
            assert reason == "unknown operation"
        elif (collection, operation) in UNUSED_CHANGES:
            assert reason == UNUSED_CHANGES[collection, operation] and "not used" in reason
        else:  # a create or update without its record
            assert not with_record and operation != "delete" and reason == "missing record"
    else:
        assert event.kind == _EXPECTED[collection, operation] and stats.total_events == 1
        UserData().add(event)  # the fold knows every kind the parser makes
    expected_event = (collection, operation) in _EXPECTED and (with_record or operation == "delete")
    assert (event is not None) == expected_event
    assert ("app.bsky.actor.profile", "delete") in UNUSED_CHANGES


def test_a_profile_delete_in_a_file_is_counted_and_the_rest_parsed(tmp_path):
    events = [post(ALICE, "p1", "hello"), commit(ALICE, "app.bsky.actor.profile", "delete", "self"),
              post(ALICE, "p2", "again")]
    got, stats = parse(write_jsonl(tmp_path / "e.jsonl", events))
    assert [e.kind for e in got] == ["post", "post"]
    assert stats.skipped == {"profile delete (not used)": 1}
    assert "profile delete (not used)" in stats.format()


def make_layout(root: Path) -> None:
    for day in ("01", "02", "03", "10"):
        for hour in ("00", "13"):
            folder = root / day / hour
            folder.mkdir(parents=True)
            write_jsonl(folder / f"events_{day}_{hour}", [post(ALICE, f"p{day}{hour}", f"day {day} hour {hour}")])


def test_day_range_filters_the_dd_hh_layout(tmp_path):
    make_layout(tmp_path)
    files = find_input_files(tmp_path, 2, 3)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "02/00/events_02_00",
        "02/13/events_02_13",
        "03/00/events_03_00",
        "03/13/events_03_13",
    ]
    events, _ = parse(files)
    assert [e.text for e in events] == ["day 02 hour 00", "day 02 hour 13", "day 03 hour 00", "day 03 hour 13"]
    assert len(find_input_files(tmp_path)) == 8
    assert len(find_input_files(tmp_path, 10, None)) == 2
    with pytest.raises(InputError):
        find_input_files(tmp_path, 20, 25)
    with pytest.raises(InputError):
        find_input_files(tmp_path, 3, 2)


def test_plain_folder_recursive_and_single_file(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_jsonl(tmp_path / "a" / "one.jsonl", ALL_KINDS[:2])
    write_jsonl(tmp_path / "a" / "b" / "two.ndjson.gz", ALL_KINDS[2:4], opener=gzip.open)
    (tmp_path / "README.md").write_text("not events")
    files = find_input_files(tmp_path)
    assert [f.name for f in files] == ["two.ndjson.gz", "one.jsonl"]  # sorted by path: a/b/... before a/one
    assert find_input_files(tmp_path / "a" / "one.jsonl") == [tmp_path / "a" / "one.jsonl"]
    with pytest.raises(InputError):
        find_input_files(tmp_path, 1, 2)  # no DD/HH layout
    with pytest.raises(InputError):
        find_input_files(tmp_path / "missing")


def test_json_array_and_nested_document(tmp_path):
    array = tmp_path / "array.json"
    array.write_text(json.dumps(ALL_KINDS, indent=2))
    events, stats = parse(array)
    assert [e.kind for e in events] == EXPECTED_KINDS and stats.total_skipped == 0
    one_line = tmp_path / "one_line.json"
    one_line.write_text(json.dumps(ALL_KINDS))
    assert [e.kind for e in parse(one_line)[0]] == EXPECTED_KINDS
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"kinds": {"commit": ALL_KINDS[:1]}, "commits": {"x": {"create": ALL_KINDS[1:3]}}}))
    assert [e.kind for e in parse(nested)[0]] == ["post", "reply", "quote"]


def test_stats_merge_and_roundtrip(tmp_path):
    a = parse(write_jsonl(tmp_path / "a.jsonl", ALL_KINDS[:5]))[1]
    b = parse(write_jsonl(tmp_path / "b.jsonl", ALL_KINDS[5:] + [{"kind": "identity", "did": ALICE}]))[1]
    whole = parse([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])[1]
    merged = EventStats().merge(a).merge(b)
    assert merged.to_dict() == whole.to_dict()
    assert EventStats.from_dict(json.loads(json.dumps(merged.to_dict()))).to_dict() == merged.to_dict()


@pytest.mark.skipif(not (REAL / "bluesky_blueprint_examples").is_dir(), reason="real data folder absent")
def test_real_blueprint_examples_parse():
    events, stats = parse(REAL / "bluesky_blueprint_examples" / "expected_input_format_examples.json")
    assert stats.notes["read as one JSON document"] == 1
    assert stats.skipped["identity event"] >= 3 and stats.skipped["account event"] >= 3
    assert stats.skipped["unknown collection"] > 50  # 57 collections, most are not modelled
    assert set(stats.skipped) <= {"identity event", "account event", "unknown collection"}
    kinds = set(stats.events)
    for kind in ("like", "unlike", "repost", "unrepost", "follow", "unfollow", "block", "unblock", "post_update"):
        assert kind in kinds, kind
    assert "post_delete" in kinds and "profile_update" in kinds
    assert stats.events["reply"] + stats.events["post"] + stats.events["quote"] >= 3
    assert all(e.did.startswith("did:") and e.time_us > 1_700_000_000_000_000 for e in events)


@pytest.mark.skipif(not (REAL / "bluesky_author_feeds").is_dir(), reason="real data folder absent")
def test_real_author_feed_events_parse():
    events, stats = parse(REAL / "bluesky_author_feeds" / "events.jsonl")
    assert stats.total_skipped == 0 and len(events) == 600
    # the README: 193 top-level posts (some are quotes), 299 replies, 108 reposts
    assert stats.events["post"] + stats.events["quote"] == 193
    assert stats.events["reply"] == 299 and stats.events["repost"] == 108
    assert len({e.did for e in events}) == 12
    assert sum(bool(e.text) for e in events if e.kind in ("post", "reply")) > 400


def test_zstd_reader_reads_every_frame_and_long_windows(tmp_path):
    """The frame-by-frame zstd reader (it raises on truncation) still reads concatenated frames whole and the
    --long=31 windows of Pushshift-style dumps."""
    zstandard = pytest.importorskip("zstandard")
    from socialsynth.core.streams import open_binary_stream

    first = "".join(json.dumps(e) + "\n" for e in ALL_KINDS * 300).encode()
    second = b"".join(b"%d\n" % i for i in range(50_000))
    long_window = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, enable_ldm=True)
    path = tmp_path / "frames.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(first)
                     + zstandard.ZstdCompressor(compression_params=long_window).compress(second))
    with open_binary_stream(path, "zst") as handle:
        assert handle.read() == first + second
    with open_binary_stream(path, "zst") as handle:
        assert sum(1 for _ in handle) == len(ALL_KINDS) * 300 + 50_000
