"""BluePrint's cluster files as the seed writes them: --chains seed and --action-lines seed.

Chains are built per cluster from the members' posts and replies only, one chain per root with the reply tree
flattened depth-first; action lines are only those whose content the seed can find among the clustered users'
posts and replies, and there are no profile updates.
"""

from __future__ import annotations

import json
from collections import Counter

from socialsynth.jobs.bluesky.output import cluster_lines, seed_post_index, write_cluster_files
from socialsynth.jobs.bluesky.users import UserData, build_chains, seed_chains
from tests.jobs.bluesky.test_bluesky_output import A, B, C, build, item, kind_of, puri

D = "did:plc:d"


def reply(did, rkey, epoch, text, parent, root):
    return item(did, rkey, epoch, text, parent_uri=parent, root_uri=root)


def thread() -> UserData:
    """A posts a1; B replies (b_r1), A answers B (a_r2), C (not a member) replies to a1 too; B's own post b1 has
    a seven-deep reply ladder by A and B; D's post is replied to by A (D is not a member)."""
    a1, b1, d1 = puri(A, "a1"), puri(B, "b1"), puri(D, "d1")
    ladder = []
    parent = b1
    for depth in range(1, 9):
        who = A if depth % 2 else B
        ladder.append((who, reply(who, f"l{depth}", 300 + depth, f"ladder {depth}", parent, b1)))
        parent = ladder[-1][1]["uri"]
    users = {
        A: {"posts": [item(A, "a1", 100, "a post")],
            "replies": [reply(A, "a_r2", 120, "a answers b", puri(B, "b_r1"), a1),
                        reply(A, "a_d", 130, "a answers d", d1, d1)]
            + [r for who, r in ladder if who == A]},
        B: {"posts": [item(B, "b1", 300, "b post")],
            "replies": [reply(B, "b_r1", 110, "b answers a", a1, a1)] + [r for who, r in ladder if who == B]},
        C: {"replies": [reply(C, "c_r", 115, "c answers a", a1, a1)]},
        D: {"posts": [item(D, "d1", 90, "d post")]},
    }  # fmt: skip
    return UserData.from_dict({"users": users})


def texts(chain):
    return [m.get("text") for m in chain]


def test_seed_chains_members_only_one_per_root_depth_first():
    data = thread()
    chains, stats = seed_chains(data, [A, B])
    assert [texts(c)[:3] for c in chains][:2] == [["a post", "b answers a", "a answers b"],
                                                  ["a answers d"]]  # fmt: skip
    # C's and D's messages never appear: only the members' posts and replies are used
    assert all(m["user_id"] in (A, B) for c in chains for m in c)
    # b1's ladder is one chain, root first. A is visited first, so A's reply l1 starts it as the seed does: its
    # parent b1, l1, then l1's replies depth-first until the recursion depth passes 5 (six more levels)
    ladder = next(c for c in chains if c[0].get("text") == "b post")
    assert texts(ladder) == ["b post"] + [f"ladder {d}" for d in range(1, 8)]
    assert len(chains) == 3 and stats.chains == 3
    # the cut reply starts no chain of its own (as in the seed)
    assert stats.unplaced == 1
    assert all("unix_epoch" in m and m["unix_epoch"] for c in chains for m in c)  # epochs kept (the seed lost them)


def test_default_paths_differ_from_the_seed():
    """Our default repeats the root on every branch and mixes in non-members; the seed's chains do not."""
    data = thread()
    paths, _ = build_chains(data)
    assert any(m["user_id"] == C for c in paths for m in c)
    assert sum(1 for c in paths if c[0]["text"] == "a post") == 2  # two branches under a1: the root twice


def test_seed_chain_text_key_only_with_text():
    data = UserData.from_dict({"users": {A: {"posts": [item(A, "e", 5, ""), item(A, "f", 6, "x")]}}})
    chains, _ = seed_chains(data, [A])
    assert chains == [[{"user_id": A, "unix_epoch": 5}], [{"user_id": A, "text": "x", "unix_epoch": 6}]]


def _kinds(lines):
    return Counter(kind_of(line) for line in lines if isinstance(line[0], dict) and "actions" in line[-1])


def test_seed_action_lines_drop_what_the_seed_drops():
    data = build()  # A likes b1 and an unknown post, blocks C (no posts), has a profile, quotes b1 ...
    clustered = [A, B]
    full_counts, seed_counts = Counter(), Counter()
    full = list(cluster_lines([A], data, [], counts=full_counts))
    seed = list(cluster_lines([A], data, [], counts=seed_counts, seed_index=seed_post_index(data, clustered)))
    full_kinds, seed_kinds = _kinds(full), _kinds(seed)
    assert full_kinds["profile_update"] == 1 and seed_kinds["profile_update"] == 0
    assert full_kinds["like"] == 2 and seed_kinds["like"] == 1  # the like of a post not in the data is dropped
    assert full_kinds["block"] == 1 and seed_kinds["block"] == 0  # C is not clustered and has no post
    assert full_kinds["unblock"] == 1 and seed_kinds["unblock"] == 0
    assert seed_kinds["quote"] == 1 and seed_kinds["follow"] == 1
    assert seed_counts["like_not_in_data"] == 1 and seed_counts["block_not_in_data"] == 1
    # every content of a seed line is a clustered user's post with its text
    index = seed_post_index(data, clustered)
    texts_in_data = {(did, it["text"]) for did, it in index.values()}
    for content, action in seed:
        assert (content["user_id"], content.get("text", "")) in texts_in_data, (content, action)


def test_seed_follow_takes_a_post_at_the_same_time():
    """The seed's follow content is the target's latest post or reply at or before the follow (<=)."""
    follow = item(A, "f", 200, collection="app.bsky.graph.follow", subject=B)
    data = UserData.from_dict({"users": {A: {"follows": [follow]}, B: {"posts": [item(B, "b", 200, "same time")]}}})
    seed = list(cluster_lines([A], data, [], seed_index=seed_post_index(data, [A, B])))
    assert [(line[0].get("text"), kind_of(line)) for line in seed] == [("same time", "follow")]
    full = list(cluster_lines([A], data, []))
    assert "text" not in full[0][0]  # ours: strictly before, so no post, and the line is written without text


def test_write_cluster_files_seed_mode(tmp_path):
    data = thread()
    labels = {A: 0, B: 0, D: 1}
    by_cluster = {0: seed_chains(data, [A, B])[0], 1: seed_chains(data, [D])[0]}
    report = write_cluster_files(tmp_path, labels, data, [], chains_by_cluster=by_cluster, action_lines="seed")
    rows = [json.loads(x) for x in (tmp_path / "cluster_1.jsonl").read_text().splitlines()]
    assert rows == [[{"user_id": D, "text": "d post", "unix_epoch": 90}]]
    assert report["clusters"][0]["chains"] == 3 and report["chains_unassigned"] == 0
