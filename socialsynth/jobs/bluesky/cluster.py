"""Cluster user embeddings into personas, choose k by silhouette, describe and draw the clusters.

- :func:`cluster_users`: ``method="constrained"`` (default, the seed's) is size-constrained k-means from the
  ``k-means-constrained`` package (``KMeansConstrained(size_min=..., random_state=seed, max_iter=300)``: k-means
  whose assignment step is a min-cost flow, solved by OR-Tools, so every cluster gets at least ``min_cluster_size``
  users exactly). ``method="kmeans"`` is plain scikit-learn k-means (no size guarantee). Same seed, same labels.
- :func:`auto_k`: the seed's ``--auto-cluster``: try k in ``seed_k_range(n)`` = 2..max(2, min(10, n//10)) and
  keep the k with the best silhouette score (the seed's README says "elbow"; the code uses silhouette). Returns
  the whole curve so a report can show it.
- :func:`cluster_report`: per cluster its size, the most distinctive terms (mean TF-IDF of its users' documents
  minus the mean over all users; English stop words removed) and sample posts.
- :func:`plot_users`: a 2-D PCA map of the users coloured by cluster, as PNG (matplotlib, no display needed).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["seed_k_range", "cluster_users", "auto_k", "cluster_report", "plot_users"]

ClusterMethod = Literal["constrained", "kmeans"]


def seed_k_range(n_users: int) -> list[int]:
    """The seed's candidate k values: 2..max(2, min(10, n_users // 10)) inclusive."""
    return list(range(2, max(2, min(10, n_users // 10)) + 1))


def cluster_users(
    X: np.ndarray,
    n_clusters: int,
    min_cluster_size: int = 10,
    seed: int = 42,
    method: ClusterMethod = "constrained",
    max_iter: int = 300,
    n_init: int = 10,
) -> np.ndarray:
    """Cluster label (0..n_clusters-1) per row of ``X``; ``constrained`` guarantees sizes >= ``min_cluster_size``."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    if n_clusters < 1:
        raise ValueError("n_clusters must be at least 1")
    if n < n_clusters:
        raise ValueError(f"{n} users cannot form {n_clusters} clusters")
    if method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=n_clusters, random_state=seed, max_iter=max_iter, n_init=n_init)
        return model.fit_predict(X).astype(np.int64)
    if method != "constrained":
        raise ValueError(f"method must be 'constrained' or 'kmeans', not {method!r}")
    if n_clusters * min_cluster_size > n:
        raise ValueError(
            f"{n} users cannot fill {n_clusters} clusters of at least {min_cluster_size}; "
            f"use at most {n // max(1, min_cluster_size)} clusters or a smaller minimum size"
        )
    from k_means_constrained import KMeansConstrained

    model = KMeansConstrained(
        n_clusters=n_clusters,
        size_min=min_cluster_size if min_cluster_size > 0 else None,
        random_state=seed,
        max_iter=max_iter,
        n_init=n_init,
    )
    return np.asarray(model.fit_predict(X), dtype=np.int64)


def auto_k(
    X: np.ndarray,
    k_range: Sequence[int] | None = None,
    seed: int = 42,
    min_cluster_size: int = 10,
    method: ClusterMethod = "constrained",
    sample_size: int = 10000,
) -> tuple[int, dict[int, float], dict[int, np.ndarray]]:
    """Best k by silhouette score: ``(best_k, {k: silhouette}, {k: labels})``.

    ``k_range`` defaults to :func:`seed_k_range`. k values the data cannot support (more clusters than users, or
    ``k * min_cluster_size`` over the user count with ``constrained``) are skipped. Silhouette is computed on at
    most ``sample_size`` users (a seeded sample) to stay fast; ties go to the smaller k.
    """
    from sklearn.metrics import silhouette_score

    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    ks = list(k_range) if k_range is not None else seed_k_range(n)
    curve: dict[int, float] = {}
    labels_by_k: dict[int, np.ndarray] = {}
    for k in sorted(set(ks)):
        if k < 2 or k >= n or (method == "constrained" and k * min_cluster_size > n):
            continue
        labels = cluster_users(X, k, min_cluster_size=min_cluster_size, seed=seed, method=method)
        if len(np.unique(labels)) < 2:
            continue
        size = min(sample_size, n) if n > sample_size else None
        curve[k] = float(silhouette_score(X, labels, sample_size=size, random_state=seed))
        labels_by_k[k] = labels
    if not curve:
        raise ValueError(f"no k in {ks} is possible for {n} users with min_cluster_size={min_cluster_size}")
    best = max(curve, key=lambda k: (curve[k], -k))
    return best, curve, labels_by_k


def _align(texts_by_user: Mapping[str, Sequence[str]] | Sequence[Sequence[str]], labels: Any):
    if isinstance(texts_by_user, Mapping):
        users = list(texts_by_user)
        texts = [list(texts_by_user[u]) for u in users]
        if isinstance(labels, Mapping):
            labels = [labels[u] for u in users]
    else:
        texts = [list(t) for t in texts_by_user]
        users = list(range(len(texts)))
    labels = np.asarray(labels)
    if len(labels) != len(texts):
        raise ValueError(f"{len(texts)} users but {len(labels)} labels")
    return users, texts, labels


def cluster_report(
    texts_by_user: Mapping[str, Sequence[str]] | Sequence[Sequence[str]],
    labels: Sequence[int] | np.ndarray | Mapping[str, int],
    n_terms: int = 10,
    n_samples: int = 3,
    seed: int = 42,
    max_sample_chars: int = 280,
) -> list[dict[str, Any]]:
    """One dict per cluster (by label): ``cluster, size, n_posts, terms [(term, score)], samples [str]``.

    ``texts_by_user`` is a list of post lists aligned with ``labels``, or a mapping user → posts with ``labels``
    aligned to its order (or a mapping user → label). A term's score is the cluster's mean TF-IDF weight for it
    minus the mean over all users (one document per user); only terms scoring above 0 are listed.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    users, texts, labels = _align(texts_by_user, labels)
    docs = [" ".join(t for t in posts if t) for posts in texts]
    vocab: np.ndarray = np.array([])
    matrix = None
    if any(d.strip() for d in docs):
        vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1, token_pattern=r"(?u)\b\w\w+\b")
        try:
            matrix = vectorizer.fit_transform(docs)
            vocab = vectorizer.get_feature_names_out()
        except ValueError:  # only stop words
            matrix = None
    overall = np.asarray(matrix.mean(axis=0)).ravel() if matrix is not None else None
    rng = random.Random(seed)
    report = []
    for label in sorted(np.unique(labels).tolist()):
        idx = np.flatnonzero(labels == label)
        terms: list[tuple[str, float]] = []
        if matrix is not None:
            diff = np.asarray(matrix[idx].mean(axis=0)).ravel() - overall
            order = np.argsort(-diff, kind="stable")[:n_terms]
            terms = [(str(vocab[j]), round(float(diff[j]), 5)) for j in order if diff[j] > 0]
        posts = [t for i in idx for t in texts[i] if t and t.strip()]
        samples = rng.sample(posts, min(n_samples, len(posts)))
        report.append(
            {
                "cluster": int(label),
                "size": int(len(idx)),
                "n_posts": len(posts),
                "terms": terms,
                "samples": [s[:max_sample_chars] for s in samples],
            }
        )
    return report


def plot_users(
    X: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
    seed: int = 42,
) -> Path:
    """Write a PNG scatter of the users on their first two principal components, coloured by cluster."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA

    X = np.asarray(X, dtype=np.float64)
    labels = np.asarray(labels)
    if len(X) != len(labels):
        raise ValueError(f"{len(X)} rows but {len(labels)} labels")
    if X.ndim != 2:
        raise ValueError("X must be a 2-D array (users x dimensions)")
    if len(X) >= 2 and X.shape[1] >= 2:
        xy = PCA(n_components=2, random_state=seed).fit_transform(X)
    else:  # too few users or dimensions for PCA: plot the raw coordinates
        xy = np.zeros((len(X), 2))
        xy[:, : min(2, X.shape[1])] = X[:, :2]
    fig = Figure(figsize=(7, 6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label in sorted(np.unique(labels).tolist()):
        sel = labels == label
        ax.scatter(xy[sel, 0], xy[sel, 1], s=12, alpha=0.7, label=f"{label} (n={int(sel.sum())})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or f"{len(X)} users, {len(np.unique(labels))} clusters")
    ax.legend(fontsize="small", markerscale=1.5, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
