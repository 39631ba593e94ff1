"""The persona-clustering job behind `cluster_users.py` (seed 002, BluePrint):

    Jetstream files -> events -> users (cached) -> English filter -> embeddings (cached by content) -> user vectors
    -> clusters (constrained k-means, or auto k by silhouette) -> [ignored messages] -> cluster_<id>.jsonl files,
    user_clusters.json, a cluster report, a 2-D map and meta.json

The parsed-users cache is JSON (gzip), keyed by the input files (path, size, mtime), the day range and the parser
version, so a changed input or date range is parsed again (the seed reused any cache with 10 users).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text
from socialsynth.core.provenance import jsonable, versions
from socialsynth.jobs.bluesky.events import EventStats, find_input_files, parse_file

log = logging.getLogger(__name__)
PARSER_VERSION = 1


@dataclass
class ClusterJobConfig:
    data_root: Path
    output_dir: Path
    cache_dir: Path
    start_day: int | None = None
    end_day: int | None = None
    n_clusters: int = 10
    auto_cluster: bool = False
    min_cluster_size: int = 10
    method: str = "constrained"
    similarity_threshold: float = 0.7
    add_ignored_messages: bool = False
    cap_ignored_messages: int = 1000
    embedding_model: str = "embedded"
    min_english_posts: int = 2
    language_detector: str = "seed"
    n_workers: int = 5
    force_parse: bool = False
    seed: int = 42
    device: str = "auto"
    embed_devices: list[str] | None = None  # several devices: a multi-process embedding pool (--embed-devices)
    command: str = ""


# ------------------------------------------------------------------------------------------- parsing


def _parse_one(path: str) -> tuple[dict, dict]:
    """One file -> (users, stats) as plain dicts (what a worker process sends back)."""
    from socialsynth.jobs.bluesky.users import UserData

    stats = EventStats()
    data = UserData().add_all(parse_file(path, stats))
    return data.to_dict(), stats.to_dict()


def cache_key(files: list[Path], cfg: ClusterJobConfig) -> str:
    """Changes when any input file, the day range or the parser changes."""
    parts = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    blob = json.dumps([PARSER_VERSION, cfg.start_day, cfg.end_day, parts])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_users(cfg: ClusterJobConfig):
    """Parse the inputs (in `n_workers` processes, merged in input order) or reuse the matching cache."""
    from socialsynth.jobs.bluesky.users import UserData

    files = find_input_files(cfg.data_root, cfg.start_day, cfg.end_day)
    cache = Path(cfg.cache_dir) / f"users-{cache_key(files, cfg)}.json.gz"
    if cache.exists() and not cfg.force_parse:
        log.info("reusing parsed users from %s", cache)
        with gzip.open(cache, "rt", encoding="utf-8") as handle:
            blob = json.load(handle)
        return UserData.from_dict(blob["users"]), EventStats.from_dict(blob["stats"]), files, str(cache)
    data, stats = UserData(), EventStats()
    paths = [str(p) for p in files]
    if cfg.n_workers > 1 and len(paths) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(cfg.n_workers, len(paths))) as pool:
            parts = pool.map(_parse_one, paths)  # results come back in input order: merge equals one pass
            for users, part_stats in parts:
                data.merge(UserData.from_dict(users))
                stats.merge(EventStats.from_dict(part_stats))
    else:
        for path in paths:
            data.add_all(parse_file(path, stats))
    Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        json.dump({"users": data.to_dict(), "stats": stats.to_dict()}, handle)
    tmp.replace(cache)
    return data, stats, files, str(cache)


# ------------------------------------------------------------------------------------------- the job


def english_users(data, cfg: ClusterJobConfig) -> tuple[list[str], dict]:
    """Users with enough English posts+replies; their other posts and replies are dropped (the seed's rule)."""
    from socialsynth.jobs.bluesky.language import filter_english_users

    by_user = {did: list(u.posts) + list(u.replies) for did, u in data.users.items()}
    result = filter_english_users(by_user, cfg.min_english_posts, method=cfg.language_detector)
    for did, kept in result.kept.items():
        keep = {id(item) for item in kept}
        user = data.users[did]
        user.posts = [p for p in user.posts if id(p) in keep]
        user.replies = [r for r in user.replies if id(r) in keep]
    return sorted(result.kept), dict(result.counts)


def user_vectors(data, users: list[str], embedder) -> tuple[np.ndarray, dict[str, list[str]]]:
    """A user's vector is the mean of their posts' and replies' embeddings (as the seed)."""
    texts_by_user = {did: [i["text"] for i in data.users[did].posts + data.users[did].replies] for did in users}
    unique = sorted({t for texts in texts_by_user.values() for t in texts})
    vectors = embedder.encode(unique)
    row = {t: i for i, t in enumerate(unique)}
    X = np.stack([vectors[[row[t] for t in texts_by_user[did]]].mean(axis=0) for did in users])
    return X, texts_by_user


def run_cluster_job(cfg: ClusterJobConfig) -> dict:
    from socialsynth.text.embeddings import Embedder
    from socialsynth.jobs.bluesky.cluster import auto_k, cluster_report, cluster_users, plot_users, seed_k_range
    from socialsynth.jobs.bluesky.output import write_cluster_files
    from socialsynth.jobs.bluesky.users import build_chains

    t0 = time.perf_counter()
    timings = {}
    data, stats, files, cache = load_users(cfg)
    timings["parse"] = round(time.perf_counter() - t0, 2)
    users, language_counts = english_users(data, cfg)
    need = cfg.min_cluster_size * (2 if cfg.auto_cluster else cfg.n_clusters)
    if len(users) < max(need, 2):
        raise InputError(
            f"{len(users)} users with at least {cfg.min_english_posts} English posts: too few for "
            f"{'--auto-cluster' if cfg.auto_cluster else f'{cfg.n_clusters} clusters'} of at least "
            f"{cfg.min_cluster_size} users (lower --n-clusters or --min-cluster-size, or widen the date range)",
            path=cfg.data_root,
        )
    t1 = time.perf_counter()
    embedder = Embedder(
        cfg.embedding_model, device=cfg.device, cache_dir=Path(cfg.cache_dir) / "embeddings", devices=cfg.embed_devices
    )
    X, texts_by_user = user_vectors(data, users, embedder)
    timings["embed_users"] = round(time.perf_counter() - t1, 2)
    t2 = time.perf_counter()
    silhouette = None
    if cfg.auto_cluster:
        k, silhouette, all_labels = auto_k(
            X, seed_k_range(len(users)), seed=cfg.seed, min_cluster_size=cfg.min_cluster_size, method=cfg.method
        )
        labels = all_labels[k]
    else:
        k = cfg.n_clusters
        labels = cluster_users(X, k, cfg.min_cluster_size, seed=cfg.seed, method=cfg.method)
    timings["cluster"] = round(time.perf_counter() - t2, 2)
    labels_by_user = {did: int(label) for did, label in zip(users, labels)}
    chains, chain_stats = build_chains(data)

    ignored, ignored_counts = None, {}
    if cfg.add_ignored_messages:
        from socialsynth.jobs.bluesky.ignored import ignored_for_cluster

        t3 = time.perf_counter()
        post_uris, post_texts = [], []
        for u in data.users.values():
            for item in u.posts + u.replies:
                if item.get("text"):
                    post_uris.append(item["uri"])
                    post_texts.append(item["text"])
        matrix = embedder.encode(post_texts)
        embeddings = (matrix, {uri: i for i, uri in enumerate(post_uris)})
        ignored = {}
        for c in range(k):
            members = [did for did, lab in labels_by_user.items() if lab == c]
            result = ignored_for_cluster(
                members,
                data,
                embeddings,
                threshold=cfg.similarity_threshold,
                cap_per_user=cfg.cap_ignored_messages,
                seed=cfg.seed + c,
            )
            ignored[c] = result.pairs
            ignored_counts[c] = result.to_dict()
        timings["ignored"] = round(time.perf_counter() - t3, 2)
    embedder.close()  # stops the embedding worker processes, if any

    out = Path(cfg.output_dir) / f"processed_{k}_clusters"
    written = write_cluster_files(out, labels_by_user, data, chains, ignored)
    report = cluster_report(texts_by_user, labels_by_user, seed=cfg.seed)
    atomic_write_json(out / "cluster_report.json", report)
    atomic_write_text(out / "cluster_report.txt", format_report(report))
    plot = plot_users(X, labels, out / "cluster_map.png", title=f"{len(users)} users, {k} clusters")
    timings["total"] = round(time.perf_counter() - t0, 2)
    meta = {
        "command": cfg.command,
        "config": jsonable(asdict(cfg)),
        "versions": versions(),
        "input_files": len(files),
        "users_cache": cache,
        "events": stats.to_dict(),
        "users": {"all": len(data.users), "clustered": len(users), "language": language_counts},
        "unmatched_deletes": dict(data.unmatched_deletes()),
        "chains": asdict(chain_stats) if hasattr(chain_stats, "__dataclass_fields__") else str(chain_stats),
        "k": k,
        "silhouette": {str(key): v for key, v in silhouette.items()} if silhouette else None,
        "cluster_sizes": dict(sorted(Counter(labels_by_user.values()).items())),
        "written": written,
        "ignored": ignored_counts or None,
        "embedding": {
            "model": cfg.embedding_model,
            "encoded": getattr(embedder, "encoded", None),
            "encoded_by_pool": getattr(embedder, "pool_encoded", None),
        },
        "timings": timings,
        "plot": plot,
    }
    atomic_write_json(out / "meta.json", jsonable(meta))
    meta["output"] = str(out)
    meta["event_report"] = stats.format()
    return meta


def format_report(report: list[dict]) -> str:
    lines = []
    for c in report:
        terms = ", ".join(t for t, _ in c.get("terms", [])[:10])
        lines.append(f"cluster {c['cluster']}: {c['size']} users, {c.get('n_posts')} posts")
        lines.append(f"  terms: {terms}")
        for sample in c.get("samples", []):
            lines.append(f"  - {sample}")
    return "\n".join(lines) + "\n"


def format_summary(meta: dict) -> str:
    lines = [meta["event_report"], ""]
    users = meta["users"]
    lines.append(f"users: {users['all']} in the data, {users['clustered']} clustered (English rule)")
    if meta.get("silhouette"):
        curve = ", ".join(f"k={k}: {v:.3f}" for k, v in meta["silhouette"].items())
        lines.append(f"silhouette: {curve} -> k={meta['k']}")
    lines.append("cluster sizes: " + ", ".join(f"{c}: {n}" for c, n in meta["cluster_sizes"].items()))
    totals = meta["written"].get("actions", {})
    if totals:
        lines.append("actions written: " + ", ".join(f"{a} {n}" for a, n in totals.items() if n))
    lines.append("timings (s): " + ", ".join(f"{k} {v}" for k, v in meta["timings"].items()))
    lines.append(f"output: {meta['output']}")
    return "\n".join(lines)
