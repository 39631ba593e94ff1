"""Per-user data from events: lists per kind, deletes matched by rkey, merge == one pass, chains."""

from __future__ import annotations

import json

import pytest

from socialsynth.jobs.bluesky.events import EventStats, parse_files, to_event
from socialsynth.jobs.bluesky.users import UserData, build_chains
from tests.jobs.bluesky.test_bluesky_events import (
    ALICE,
    ALL_KINDS,
    BOB,
    REAL,
    T0,
    commit,
    post,
    post_uri,
    reply,
    subject_record,
)

CAROL = "did:plc:carol"


def events_of(raw_events):
    stats = EventStats()
    out = [to_event(e, f"t:{n}", stats) for n, e in enumerate(raw_events, start=1)]
    assert stats.total_skipped == 0, stats.format()
    return out


def fold(raw_events) -> UserData:
    return UserData().add_all(events_of(raw_events))


def test_every_kind_lands_in_its_list_and_deletes_match_by_rkey():
    data = fold(ALL_KINDS)
    alice, bob = data.users[ALICE], data.users[BOB]
    assert [p["text"] for p in alice.posts] == ["hello world"]
    assert alice.posts[0]["uri"] == post_uri(ALICE, "p1") and alice.posts[0]["langs"] == ["en"]
    assert set(alice.posts[0]) >= {"text", "created_at", "unix_epoch", "cid", "rkey", "uri", "langs"}
    assert [r["parent_uri"] for r in bob.replies] == [post_uri(ALICE, "p1")]
    assert [q["quoted_uri"] for q in bob.quotes] == [post_uri(ALICE, "p1")] * 2
    assert alice.post_updates[0]["text"] == "hello world (edited)"
    # the delete found the post by its rkey and carries the deleted text
    assert alice.post_deletes[0]["matched"] is True and alice.post_deletes[0]["text"] == "hello world"
    assert bob.likes[0]["subject"] == post_uri(ALICE, "p1")
    assert bob.unlikes[0] == {**bob.unlikes[0], "matched": True, "subject": post_uri(ALICE, "p1"), "subject_cid": "c"}
    assert bob.unreposts[0]["subject"] == post_uri(ALICE, "p1")
    assert bob.follows[0]["subject"] == ALICE and bob.unfollows[0]["subject"] == ALICE
    assert alice.blocks[0]["subject"] == BOB and alice.unblocks[0]["subject"] == BOB
    assert alice.profile["display_name"] == "Alice" and alice.profile["text"] == "I post"
    assert data.unmatched_deletes() == {}
    assert data.post(post_uri(BOB, "q2"))[0] == BOB
    counts = data.counts()
    assert counts["users"] == 2 and counts["quotes"] == 2 and counts["profiles"] == 1


def test_delete_of_something_never_created_is_counted():
    data = fold(
        [
            commit(BOB, "app.bsky.feed.like", "delete", "never"),
            commit(BOB, "app.bsky.graph.follow", "delete", "never"),
            commit(ALICE, "app.bsky.feed.post", "delete", "gone"),
            # same rkey but another collection: must not match the like delete above
            commit(BOB, "app.bsky.feed.repost", "create", "never", subject_record("r", {"uri": post_uri(ALICE, "x")})),
        ]
    )
    assert data.unmatched_deletes() == {"unlikes": 1, "unfollows": 1, "post_deletes": 1}
    assert data.users[BOB].unlikes[0]["matched"] is False and "subject" not in data.users[BOB].unlikes[0]


def test_duplicate_creates_are_dropped():
    data = fold([post(ALICE, "p1", "a"), post(ALICE, "p1", "a")])
    assert len(data.users[ALICE].posts) == 1 and data.duplicates == 1


def split_events():
    first = [
        post(ALICE, "p1", "root", t=T0),
        commit(BOB, "app.bsky.feed.like", "create", "l1", subject_record("l", {"uri": post_uri(ALICE, "p1")})),
        commit(CAROL, "app.bsky.graph.block", "delete", "b9"),  # deleted before its create (in the next file)
        commit(CAROL, "app.bsky.actor.profile", "create", "self", {"displayName": "C1"}),
    ]
    second = [
        reply(BOB, "r1", "reply", post_uri(ALICE, "p1"), t=T0 + 10),
        commit(BOB, "app.bsky.feed.like", "delete", "l1"),  # its create is in the first file
        post(ALICE, "p1", "root", t=T0),  # a replayed duplicate
        commit(CAROL, "app.bsky.graph.block", "create", "b9", subject_record("b", ALICE)),
        commit(CAROL, "app.bsky.graph.follow", "delete", "f7"),  # deleted before its create, same file
        commit(CAROL, "app.bsky.graph.follow", "create", "f7", subject_record("f", BOB)),
        commit(CAROL, "app.bsky.actor.profile", "update", "self", {"displayName": "C2"}),
    ]
    return first, second


def test_merge_of_partial_userdata_equals_one_pass(tmp_path):
    first, second = split_events()
    one_pass = fold(first + second)
    merged = fold(first).merge(fold(second))
    assert merged.to_dict() == one_pass.to_dict()
    assert merged.unmatched_deletes() == {"unblocks": 1, "unfollows": 1}
    assert merged.users[BOB].unlikes[0]["matched"] is True
    assert merged.users[CAROL].profile["display_name"] == "C2"
    assert merged.duplicates == 1
    # per-file workers: parse_files on each file, then merge in input order
    paths = []
    for n, part in enumerate((first, second)):
        paths.append(tmp_path / f"{n}.jsonl")
        paths[-1].write_text("".join(json.dumps(e) + "\n" for e in part))
    per_file = [UserData().add_all(parse_files([p], EventStats())) for p in paths]
    assert per_file[0].merge(per_file[1]).to_dict() == one_pass.to_dict()


def test_to_dict_roundtrip_keeps_indexes():
    first, second = split_events()
    data = fold(first)
    restored = UserData.from_dict(json.loads(json.dumps(data.to_dict())))
    assert restored.to_dict() == data.to_dict()
    assert restored.post(post_uri(ALICE, "p1"))[0] == ALICE
    # the restored index still matches a later delete
    restored.merge(fold(second))
    assert restored.to_dict() == fold(first + second).to_dict()


def thread(depth: int):
    """ALICE's root post and a straight line of ``depth`` replies alternating BOB / ALICE, 60 s apart."""
    raw = [post(ALICE, "r0", "root", t=T0)]
    for n in range(1, depth + 1):
        raw.append(
            reply(BOB if n % 2 else ALICE, f"r{n}", f"reply {n}", post_uri(ALICE if n % 2 else BOB, f"r{n - 1}"))
        )
        raw[-1]["commit"]["record"]["createdAt"] = f"2025-03-01T02:{n:02d}:00.000Z"
        raw[-1]["commit"]["record"]["reply"]["root"]["uri"] = post_uri(ALICE, "r0")
    return raw


def test_chains_root_first_with_timestamps_and_depth_cap():
    chains, stats = build_chains(fold(thread(7)), max_depth=5)
    assert len(chains) == 1 and stats.truncated == 1 and stats.orphan_replies == 0
    [chain] = chains
    assert [m["text"] for m in chain] == ["root", "reply 1", "reply 2", "reply 3", "reply 4", "reply 5"]
    assert [m["user_id"] for m in chain] == [ALICE, BOB, ALICE, BOB, ALICE, BOB]
    assert [m["unix_epoch"] for m in chain[1:]] == [1740794400 + 60 * n for n in range(1, 6)]
    assert chain[0]["unix_epoch"] == 1740794447 and all(m["unix_epoch"] > 0 for m in chain)
    assert set(chain[0]) == {"user_id", "text", "unix_epoch"}
    short, _ = build_chains(fold(thread(3)), max_depth=5)
    assert [len(c) for c in short] == [4]


def test_chains_branch_per_leaf_and_single_posts():
    raw = [
        post(ALICE, "a", "root"),
        reply(BOB, "b1", "first", post_uri(ALICE, "a"), t=T0 + 1),
        reply(CAROL, "b2", "second", post_uri(ALICE, "a"), t=T0 + 2),
        post(CAROL, "solo", "alone"),
    ]
    raw[1]["commit"]["record"]["createdAt"] = "2025-03-01T03:00:00Z"
    raw[2]["commit"]["record"]["createdAt"] = "2025-03-01T04:00:00Z"
    chains, stats = build_chains(fold(raw))
    texts = sorted(tuple(m["text"] for m in c) for c in chains)
    assert texts == [("alone",), ("root", "first"), ("root", "second")]
    assert stats.roots == 2 and stats.chains == 3


def test_reply_to_missing_parent_is_counted_and_starts_its_own_chain():
    raw = [
        reply(BOB, "o1", "orphan", post_uri(CAROL, "not-in-data")),
        reply(ALICE, "o2", "answer to orphan", post_uri(BOB, "o1"), t=T0 + 5),
    ]
    raw[1]["commit"]["record"]["createdAt"] = "2025-03-01T05:00:00Z"
    data = fold(raw)
    chains, stats = build_chains(data)
    assert stats.orphan_replies == 1 and stats.orphan_examples == [post_uri(BOB, "o1")]
    assert [[m["text"] for m in c] for c in chains] == [["orphan", "answer to orphan"]]
    dropped, stats = build_chains(data, orphans="drop")
    assert dropped == [] and stats.orphan_replies == 1
    with pytest.raises(ValueError):
        build_chains(data, orphans="keep")


@pytest.mark.skipif(not (REAL / "bluesky_author_feeds").is_dir(), reason="real data folder absent")
def test_real_author_feeds_fold_into_twelve_users():
    data = UserData().add_all(parse_files([REAL / "bluesky_author_feeds" / "events.jsonl"], EventStats()))
    counts = data.counts()
    assert counts["users"] == 12 and counts["replies"] == 299 and counts["reposts"] == 108
    assert counts["posts"] + counts["quotes"] == 193 and data.duplicates == 0
    chains, stats = build_chains(data)
    assert stats.orphan_replies > 100  # most replies answer accounts outside the 12
    assert len(chains) >= 193 and max(len(c) for c in chains) >= 3
    assert all(m["unix_epoch"] > 1_600_000_000 for c in chains for m in c)
    assert UserData.from_dict(json.loads(json.dumps(data.to_dict()))).to_dict() == data.to_dict()


def test_replayed_deletes_and_updates_are_dropped_once_counted():
    """Jetstream replays events after a reconnect: a second copy of a delete or an update would become a second
    unlike / post_update action in the cluster files."""
    like = commit(BOB, "app.bsky.feed.like", "create", "l1", subject_record("l", {"uri": post_uri(ALICE, "p1")}))
    unlike = commit(BOB, "app.bsky.feed.like", "delete", "l1")
    edit = commit(ALICE, "app.bsky.feed.post", "update", "p1", {"text": "edited", "createdAt": "x"}, cid="c2")
    second_edit = commit(ALICE, "app.bsky.feed.post", "update", "p1", {"text": "edited again"}, cid="c3")
    events = [post(ALICE, "p1", "a"), like, unlike, unlike, edit, edit, second_edit, like]
    data = fold(events)
    assert len(data.users[BOB].unlikes) == 1 and len(data.users[BOB].likes) == 1
    assert [u["text"] for u in data.users[ALICE].post_updates] == ["edited", "edited again"]
    assert data.duplicates == 3
    # the same in two files merged in order, and after a round trip through the cache format
    merged = fold(events[:3]).merge(fold(events[3:]))
    assert merged.to_dict() == data.to_dict()
    restored = UserData.from_dict(json.loads(json.dumps(fold(events[:5]).to_dict())))
    assert restored.merge(fold(events[5:])).to_dict() == data.to_dict()
