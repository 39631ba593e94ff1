"""Ignored messages: seen content and weights, weighted centres, cosine selection, cap, small clusters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialsynth.jobs.bluesky.ignored import (
    candidate_uris,
    cluster_centres,
    ignored_for_cluster,
    seen_content,
    select_ignored,
    weighted_centres,
)
from socialsynth.jobs.bluesky.users import UserData

S, OTHER = "did:plc:star", "did:plc:other"
MEMBERS = [f"did:plc:m{i}" for i in range(5)]


def puri(did, rkey):
    return f"at://{did}/app.bsky.feed.post/{rkey}"


def item(did, rkey, collection="app.bsky.feed.post", **extra):
    return {"text": rkey, "unix_epoch": 1, "rkey": rkey, "uri": f"at://{did}/{collection}/{rkey}", **extra}


def at(degrees):
    return np.array([math.cos(math.radians(degrees)), math.sin(math.radians(degrees))])


def build(members=MEMBERS):
    users = {
        S: {"posts": [item(S, "s1"), item(S, "s2")]},
        OTHER: {"posts": [item(OTHER, "o10"), item(OTHER, "o80"), item(OTHER, "liked"), item(OTHER, "reposted")]},
    }
    for n, did in enumerate(members):
        users[did] = {
            "posts": [item(did, "own")],
            "follows": [item(did, "f", "app.bsky.graph.follow", subject=S)] if n < 2 else [],
        }
    users[members[0]]["likes"] = [item(members[0], "l", "app.bsky.feed.like", subject=puri(OTHER, "liked"))]
    users[members[1]]["reposts"] = [item(members[1], "r", "app.bsky.feed.repost", subject=puri(OTHER, "reposted"))]
    emb = {puri(S, "s1"): at(0), puri(S, "s2"): at(4), puri(OTHER, "o10"): at(10), puri(OTHER, "o80"): at(80)}
    emb.update({puri(OTHER, "liked"): at(2), puri(OTHER, "reposted"): at(-2)})
    emb.update({puri(did, "own"): at(1) for did in members})
    return UserData.from_dict({"users": users}), emb


def test_seen_content_and_weights_by_hand():
    data, _ = build()
    uris, weights = seen_content(MEMBERS, data)
    got = dict(zip(uris, weights.tolist(), strict=True))
    # liked/reposted: 1 + 2; posts by S, followed by two members: 1 + 0.5 * 2
    assert got == {puri(OTHER, "liked"): 3.0, puri(OTHER, "reposted"): 3.0, puri(S, "s1"): 2.0, puri(S, "s2"): 2.0}


def test_weighted_centre_is_weighted_mean():
    centres = weighted_centres(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 3.0]), k=1)
    assert centres == pytest.approx(np.array([[0.25, 0.75]]))
    # k-means separates two far groups; each centre is the weighted mean of its own members
    x = np.array([[1, 0], [0.8, 0.6], [0, 1], [-0.6, 0.8]], dtype=float)
    centres = weighted_centres(x, np.array([3.0, 1.0, 1.0, 1.0]), k=2, seed=0)
    got = sorted(map(tuple, np.round(centres, 6)))
    assert got == sorted([(0.95, 0.15), (-0.3, 0.9)])


def test_weights_follow_the_filtered_items():
    # first seen item has no vector: the others' weights must stay with their own vectors (the seed's mix-up)
    data, emb = build()
    del emb[puri(OTHER, "liked")]
    emb[puri(OTHER, "reposted")] = np.array([0.0, 1.0])  # weight 3
    emb[puri(S, "s1")] = emb[puri(S, "s2")] = np.array([1.0, 0.0])  # weight 2 each
    centres, seen, missing = cluster_centres(MEMBERS, data, emb)
    assert (seen, missing) == (3, 1)
    assert centres == pytest.approx(np.array([[4 / 7, 3 / 7]]))


def test_select_by_cosine_threshold_in_blocks():
    centres = np.array([[2.0, 0.0]])  # not unit length: cosine, not dot product
    cand = np.stack([at(10) * 5, at(80), at(-10) * 0.1, np.zeros(2), at(45), at(46)])
    assert select_ignored(cand, centres, 0.7).tolist() == [0, 2, 4]  # cos 45 = 0.707 > 0.7, cos 46 = 0.695
    assert select_ignored(cand, centres, 0.7, block_rows=1).tolist() == [0, 2, 4]
    assert select_ignored(cand, np.zeros((0, 2)), 0.7).tolist() == []


def test_cap_is_exact_and_seeded():
    cand = np.stack([at(d / 10) for d in range(50)])
    centres = np.array([[1.0, 0.0]])
    a = select_ignored(cand, centres, 0.7, cap=7, seed=1)
    assert len(a) == 7 and len(set(a.tolist())) == 7
    assert a.tolist() == select_ignored(cand, centres, 0.7, cap=7, seed=1).tolist()
    assert a.tolist() != select_ignored(cand, centres, 0.7, cap=7, seed=2).tolist()
    assert len(select_ignored(cand, centres, 0.7, cap=50)) == 50


def test_ignored_for_cluster_known_answer():
    data, emb = build()
    candidates = set(candidate_uris(MEMBERS, data))
    assert puri(OTHER, "liked") not in candidates and puri(OTHER, "reposted") not in candidates
    assert not any(u.startswith("at://did:plc:m") for u in candidates)  # the cluster's own posts
    result = ignored_for_cluster(MEMBERS, data, emb)
    assert sorted(uri for _, uri in result.pairs) == sorted([puri(S, "s1"), puri(S, "s2"), puri(OTHER, "o10")])
    assert all(did in MEMBERS for did, _ in result.pairs)
    assert result.pairs == ignored_for_cluster(MEMBERS, data, emb).pairs
    assert result.matched == 3 and result.seen == 4 and result.centres == 1
    capped = ignored_for_cluster(MEMBERS, data, emb, cap_per_user=0)
    assert capped.pairs == [] and capped.matched == 3


def test_small_clusters_get_none():
    data, emb = build(MEMBERS[:4])
    result = ignored_for_cluster(MEMBERS[:4], data, emb)
    assert result.pairs == [] and result.skipped_small
    assert ignored_for_cluster(MEMBERS[:4], data, emb, min_users=4).pairs


def test_matrix_embeddings_work_too():
    data, emb = build()
    uris = list(emb)
    matrix = np.stack([emb[u] for u in uris])
    by_matrix = ignored_for_cluster(MEMBERS, data, (matrix, {u: i for i, u in enumerate(uris)}))
    assert by_matrix.pairs == ignored_for_cluster(MEMBERS, data, emb).pairs
