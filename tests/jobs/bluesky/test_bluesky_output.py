"""Cluster output files: action pairs for all 13 types, line order, chains by last author, user_clusters.json."""

from __future__ import annotations

import json
from collections import Counter

from socialsynth.jobs.bluesky.output import ACTIONS, action_pairs, cluster_lines, make_action, write_cluster_files
from socialsynth.jobs.bluesky.users import UserData, build_chains

A, B, C = "did:plc:a", "did:plc:b", "did:plc:c"
UNKNOWN = "at://did:plc:zz/app.bsky.feed.post/x"


def puri(did, rkey):
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def item(did, rkey, epoch, text="", collection="app.bsky.feed.post", **extra):
    return {"text": text, "created_at": "", "unix_epoch": epoch, "cid": "c", "rkey": rkey,
            "uri": f"at://{did}/{collection}/{rkey}", "langs": ["en"], **extra}  # fmt: skip


def build() -> UserData:
    a1 = item(A, "a1", 200, "a first")
    a_reply = item(A, "ar", 260, "a answers b", parent_uri=puri(B, "b1"), root_uri=puri(B, "b1"))
    b_reply = item(B, "br", 250, "b answers a", parent_uri=puri(A, "a1"), root_uri=puri(A, "a1"))
    like = "app.bsky.feed.like"
    repost = "app.bsky.feed.repost"
    follow = "app.bsky.graph.follow"
    block = "app.bsky.graph.block"
    users = {
        A: {
            "posts": [a1],
            "replies": [a_reply],
            "quotes": [item(A, "q1", 496, "my take", quoted_uri=puri(B, "b1"))],
            "likes": [
                item(A, "l1", 410, collection=like, subject=puri(B, "b1")),
                item(A, "l2", 411, collection=like, subject=UNKNOWN),
            ],
            "unlikes": [
                item(A, "l1", 420, collection=like, subject=puri(B, "b1"), matched=True),
                item(A, "l9", 421, collection=like, matched=False),  # its like is not in the data: dropped
            ],
            "reposts": [item(A, "r1", 430, collection=repost, subject=puri(B, "b1"))],
            "unreposts": [item(A, "r1", 440, collection=repost, subject=puri(B, "b1"), matched=True)],
            "follows": [item(A, "f1", 400, collection=follow, subject=B)],
            "unfollows": [item(A, "f1", 450, collection=follow, subject=B, matched=True)],
            "blocks": [item(A, "k1", 460, collection=block, subject=C)],
            "unblocks": [item(A, "k1", 470, collection=block, subject=C, matched=True)],
            "post_updates": [item(A, "a1", 480, "a edited")],
            "post_deletes": [item(A, "a1", 490, "a first", matched=True)],
            "profile": {"text": "bio", "unix_epoch": 495, "display_name": "A"},
        },
        B: {
            "posts": [item(B, "b1", 100, "b early"), item(B, "b2", 300, "b late"), item(B, "b3", 500, "b after")],
            "replies": [b_reply],
        },
        C: {"follows": [item(C, "f2", 600, collection=follow, subject=A)]},
    }
    return UserData.from_dict({"users": users})


def kind_of(line):
    assert isinstance(line, list) and len(line) == 2 and set(line[1]) >= {"user_id", "actions", "unix_epoch"}
    flags = line[1]["actions"]
    assert list(flags) == list(ACTIONS)
    true = [k for k, v in flags.items() if v is True]
    assert len(true) == 1 and all(v is False for k, v in flags.items() if k != true[0])
    return true[0]


def test_make_action_has_exactly_one_flag():
    for kind in ACTIONS:
        action = make_action(kind, A, 1, "t")
        assert [k for k, v in action["actions"].items() if v] == [kind]
    assert "text" not in make_action("like", A, 1)


def test_cluster_lines_order_schema_and_contents():
    data = build()
    chains, _ = build_chains(data)
    ignored = [(A, puri(B, "b3"))]
    counts = Counter()
    lines = list(cluster_lines([A], data, chains, ignored, counts))
    chain_lines = [line for line in lines if isinstance(line[0], dict) and "actions" not in line[-1]]
    action_lines = lines[len(chain_lines) :]
    # chains come first; only chains whose last message is by A; root first, timestamps kept
    assert all("actions" not in el for chain in chain_lines for el in chain)
    assert [[el["user_id"] for el in ch] for ch in chain_lines] == [[B, A], [A]]
    assert chain_lines[0] == [
        {"user_id": B, "text": "b early", "unix_epoch": 100},
        {"user_id": A, "text": "a answers b", "unix_epoch": 260},
    ]
    kinds = [kind_of(line) for line in action_lines]
    assert kinds == [
        "like", "like", "unlike", "repost", "unrepost", "follow", "unfollow", "block", "unblock",
        "post_update", "profile_update", "post_delete", "quote", "ignore",
    ]  # fmt: skip
    assert set(kinds) == set(ACTIONS)
    by = {}
    for kind, line in zip(kinds, action_lines, strict=True):
        by.setdefault(kind, []).append(line)
    b1 = {"user_id": B, "text": "b early", "unix_epoch": 100}
    assert by["like"][0] == [b1, make_action("like", A, 410)]
    # subject not in the data: author from the URI, no text, the action's epoch
    assert by["like"][1][0] == {"user_id": "did:plc:zz", "unix_epoch": 411}
    assert by["unlike"] == [[b1, make_action("unlike", A, 420)]]
    assert by["repost"][0][0] == b1 and by["unrepost"][0][0] == b1
    # follow at 400: B's most recent post before it is b2 (300), not the first (b1) nor the later b3 (500)
    assert by["follow"] == [[{"user_id": B, "text": "b late", "unix_epoch": 300}, make_action("follow", A, 400)]]
    assert by["unfollow"][0][0] == {"user_id": B, "text": "b late", "unix_epoch": 300}
    assert by["block"] == [[{"user_id": C, "unix_epoch": 460}, make_action("block", A, 460)]]
    assert by["post_update"] == [
        [{"user_id": A, "text": "a first", "unix_epoch": 200}, make_action("post_update", A, 480, "a edited")]
    ]
    assert by["post_delete"][0] == [
        {"user_id": A, "text": "a first", "unix_epoch": 200},
        make_action("post_delete", A, 490),
    ]
    assert by["profile_update"] == [
        [{"user_id": A, "text": "bio", "unix_epoch": 495}, make_action("profile_update", A, 495)]
    ]
    assert by["quote"] == [[b1, make_action("quote", A, 496, "my take")]]
    assert by["ignore"] == [[{"user_id": B, "text": "b after", "unix_epoch": 500}, make_action("ignore", A, 500)]]
    assert counts["unlike_dropped"] == 1 and counts["like_no_content"] == 1 and counts["block_no_content"] == 1
    assert counts["chains"] == 2 and counts["like"] == 2 and counts["ignore"] == 1
    # action_pairs gives the same action lines for a one-user cluster
    assert action_pairs(data.users[A], data, ignored=ignored) == action_lines


def test_write_cluster_files(tmp_path):
    data = build()
    chains, _ = build_chains(data)
    labels = {B: 1, A: 0, C: 1}
    report = write_cluster_files(tmp_path, labels, data, chains, {0: [(A, puri(B, "b3"))]})
    assert json.loads((tmp_path / "user_clusters.json").read_text()) == {A: 0, B: 1, C: 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster_0.jsonl", "cluster_1.jsonl", "user_clusters.json"]
    lines0 = [json.loads(x) for x in (tmp_path / "cluster_0.jsonl").read_text().splitlines()]
    lines1 = [json.loads(x) for x in (tmp_path / "cluster_1.jsonl").read_text().splitlines()]
    assert lines0 == list(cluster_lines([A], data, chains, [(A, puri(B, "b3"))]))
    # cluster 1: chains by B (a1->br, b2, b3), then C's follow of A (A's latest post before 600 is the quote)
    assert [[el["user_id"] for el in ch] for ch in lines1[:3]] == [[A, B], [B], [B]]
    assert lines1[3] == [{"user_id": A, "text": "my take", "unix_epoch": 496}, make_action("follow", C, 600)]
    assert len(lines1) == 4
    assert report["clusters"][0]["lines"] == len(lines0) and report["clusters"][1]["lines"] == 4
    assert report["clusters"][1]["users"] == 2 and report["clusters"][1]["chains"] == 3
    assert report["actions"]["follow"] == 2 and report["actions"]["like"] == 2 and report["actions"]["ignore"] == 1
    assert report["chains_unassigned"] == 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
