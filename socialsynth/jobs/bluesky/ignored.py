"""Ignored messages: posts a persona cluster probably saw but did not act on (BluePrint's ``ignore`` action).

The seed's method, vectorised, with its index mix-up fixed (it computed weights on the unfiltered list of seen
items and applied them to the filtered one):

1. **Seen content** (:func:`seen_content`): posts the cluster's members liked or reposted, plus posts and replies
   by accounts they follow. Weight of an item = 1, +2 if a member liked or reposted it, +0.5 per member following
   its author. Follows are counted as created (a later unfollow is not subtracted, as in the seed).
2. **Centres** (:func:`weighted_centres`): k-means (k-means++ init, Lloyd, seeded) on the L2-normalised seen
   vectors with k = min(10, n // 20 + 1); each centre is the *weighted* mean of its members.
3. **Selection** (:func:`select_ignored`): a candidate is ignored if its cosine similarity to any centre is above
   the threshold (0.7); the products are computed in row blocks so memory stays bounded. At most ``cap`` are kept,
   sampled without replacement with the seed.
4. :func:`ignored_for_cluster`: candidates are every post and reply in the data that the cluster did not like or
   repost and (a decision beyond the seed) did not write itself; only clusters with at least ``min_users`` (5)
   users get any; each ignored post is assigned to a seeded random member.

Embeddings come in as a mapping ``uri -> vector`` or a pair ``(matrix, {uri: row})``, so nothing here needs a
model. Items with no vector are left out (counted in :class:`IgnoredResult`); zero vectors never match.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from socialsynth.jobs.bluesky.users import UserData

DEFAULT_THRESHOLD = 0.7
DEFAULT_CAP_PER_USER = 1000
DEFAULT_MIN_USERS = 5
DEFAULT_SEED = 42
MAX_SUBCLUSTERS = 10
BLOCK_ROWS = 8192
INTERACTED_BONUS = 2.0
FOLLOWER_BONUS = 0.5

Embeddings = Mapping[str, Any] | tuple[np.ndarray, Mapping[str, int]]


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def lookup(embeddings: Embeddings, uris: Iterable[str]) -> tuple[np.ndarray, list[int]]:
    """``(matrix of the vectors found, positions in uris that had one)``, float32."""
    uris = list(uris)
    if isinstance(embeddings, tuple):
        matrix, index = embeddings
        found = [(i, index[u]) for i, u in enumerate(uris) if u in index]
        rows = np.asarray(matrix, dtype=np.float32)[[r for _, r in found]] if found else None
        kept = [i for i, _ in found]
        dim = np.asarray(matrix).shape[1] if np.ndim(matrix) == 2 else 0
    else:
        kept = [i for i, u in enumerate(uris) if u in embeddings]
        rows = np.stack([np.asarray(embeddings[uris[i]], dtype=np.float32) for i in kept]) if kept else None
        dim = rows.shape[1] if rows is not None else 0
    if rows is None:
        rows = np.zeros((0, dim), dtype=np.float32)
    return rows, kept


def seen_content(cluster_users: Iterable[str], data: UserData) -> tuple[list[str], np.ndarray]:
    """URIs the cluster saw and their weights (see the module doc), URIs in first-seen order."""
    members = set(cluster_users)
    interacted: dict[str, None] = {}
    followers: Counter[str] = Counter()
    for did in sorted(members):
        user = data.users.get(did)
        if user is None:
            continue
        for item in (*user.likes, *user.reposts):
            if item.get("subject"):
                interacted.setdefault(item["subject"], None)
        for target in {item["subject"] for item in user.follows if item.get("subject")}:
            followers[target] += 1
    weights: dict[str, float] = {uri: 1.0 + INTERACTED_BONUS for uri in interacted}
    for target in sorted(followers):
        followed = data.users.get(target)
        if followed is None:
            continue
        for item in (*followed.posts, *followed.replies):
            uri = item.get("uri")
            if uri:
                weights[uri] = weights.get(uri, 1.0) + FOLLOWER_BONUS * followers[target]
    uris = list(weights)
    return uris, np.asarray([weights[u] for u in uris], dtype=np.float64)


def n_subclusters(n_seen: int) -> int:
    return max(1, min(MAX_SUBCLUSTERS, n_seen // 20 + 1, n_seen))


def _kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 100) -> np.ndarray:
    n = len(x)
    sq = np.einsum("ij,ij->i", x, x)
    # k-means++ initialisation
    centres = [x[rng.integers(n)]]
    dist = np.maximum(sq - 2 * x @ centres[0] + centres[0] @ centres[0], 0)
    for _ in range(1, k):
        total = dist.sum()
        pick = rng.choice(n, p=dist / total) if total > 0 else rng.integers(n)
        centres.append(x[pick])
        dist = np.minimum(dist, np.maximum(sq - 2 * x @ x[pick] + x[pick] @ x[pick], 0))
    c = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(max_iter):
        d = sq[:, None] - 2 * x @ c.T + np.einsum("ij,ij->i", c, c)[None, :]
        new = d.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                c[j] = x[members].mean(axis=0)
    return labels


def weighted_centres(vectors: np.ndarray, weights: np.ndarray, k: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """k-means on the L2-normalised ``vectors``; each centre is the weighted mean of its members (rows, k' <= k)."""
    x = _normalise(np.asarray(vectors, dtype=np.float64))
    w = np.asarray(weights, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(w):
        raise ValueError(f"vectors {x.shape} and weights {w.shape} do not match")
    if len(x) == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0))
    k = max(1, min(int(k), len(x)))
    labels = _kmeans_labels(x, k, np.random.default_rng(seed))
    out = []
    for j in range(k):
        members = labels == j
        if members.any() and w[members].sum() > 0:
            out.append((w[members, None] * x[members]).sum(axis=0) / w[members].sum())
    return np.stack(out) if out else np.zeros((0, x.shape[1]))


def select_ignored(
    candidate_vectors: np.ndarray,
    centres: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    cap: int | None = None,
    seed: int = DEFAULT_SEED,
    block_rows: int = BLOCK_ROWS,
) -> np.ndarray:
    """Sorted row indices of candidates with cosine similarity > ``threshold`` to some centre, at most ``cap``."""
    cand = np.asarray(candidate_vectors, dtype=np.float32)
    cen = _normalise(np.asarray(centres, dtype=np.float32))
    if len(cand) == 0 or len(cen) == 0:
        return np.zeros(0, dtype=np.int64)
    hits = []
    for start in range(0, len(cand), block_rows):
        block = _normalise(cand[start : start + block_rows])
        best = (block @ cen.T).max(axis=1)
        hits.append(np.flatnonzero(best > threshold) + start)
    chosen = np.concatenate(hits)
    if cap is not None and len(chosen) > cap:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, size=max(0, int(cap)), replace=False))
    return chosen.astype(np.int64)


@dataclass
class IgnoredResult:
    """``pairs``: ``(assigned member did, ignored post uri)``; the rest are counts for the run report."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    users: int = 0
    skipped_small: bool = False
    seen: int = 0
    seen_without_vector: int = 0
    centres: int = 0
    candidates: int = 0
    candidates_without_vector: int = 0
    matched: int = 0
    cap: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "pairs"}
        out["ignored"] = len(self.pairs)
        return out


def cluster_centres(
    cluster_users: Iterable[str], data: UserData, embeddings: Embeddings, seed: int = DEFAULT_SEED
) -> tuple[np.ndarray, int, int]:
    """``(weighted centres, seen items with a vector, seen items without one)`` of a cluster's seen content.

    Weights are taken for the items that have a vector, by position in the same filtered list (the seed's bug).
    """
    seen, weights = seen_content(cluster_users, data)
    vectors, kept = lookup(embeddings, seen)
    if not kept:
        return np.zeros((0, vectors.shape[1])), 0, len(seen)
    return weighted_centres(vectors, weights[kept], n_subclusters(len(kept)), seed), len(kept), len(seen) - len(kept)


def candidate_uris(cluster_users: Iterable[str], data: UserData) -> list[str]:
    """Every post and reply in the data not liked or reposted by the cluster and not written by it."""
    members = set(cluster_users)
    excluded: set[str] = set()
    for did in members:
        user = data.users.get(did)
        if user is not None:
            excluded.update(item["subject"] for item in (*user.likes, *user.reposts) if item.get("subject"))
    out = []
    for did, user in data.users.items():
        if did in members:
            continue
        for item in (*user.posts, *user.replies):
            uri = item.get("uri")
            if uri and uri not in excluded:
                out.append(uri)
    return out


def ignored_for_cluster(
    cluster_users: Iterable[str],
    data: UserData,
    embeddings: Embeddings,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    cap_per_user: int = DEFAULT_CAP_PER_USER,
    min_users: int = DEFAULT_MIN_USERS,
    seed: int = DEFAULT_SEED,
) -> IgnoredResult:
    """The whole method for one cluster (see the module doc); deterministic for a given ``seed``."""
    members = sorted(set(cluster_users))
    result = IgnoredResult(users=len(members), cap=cap_per_user * len(members))
    if len(members) < min_users:
        result.skipped_small = True
        return result
    centres, result.seen, result.seen_without_vector = cluster_centres(members, data, embeddings, seed)
    result.centres = len(centres)
    if not len(centres):
        return result
    candidates = candidate_uris(members, data)
    cand_vectors, cand_kept = lookup(embeddings, candidates)
    result.candidates, result.candidates_without_vector = len(cand_kept), len(candidates) - len(cand_kept)
    matched = select_ignored(cand_vectors, centres, threshold, cap=None)
    result.matched = len(matched)
    chosen = matched
    if len(matched) > result.cap:
        chosen = np.sort(np.random.default_rng(seed).choice(matched, size=result.cap, replace=False))
    owners = np.random.default_rng(seed + 1).integers(len(members), size=len(chosen))
    pairs = zip(owners.tolist(), chosen.tolist(), strict=True)
    result.pairs = [(members[o], candidates[cand_kept[i]]) for o, i in pairs]
    return result
