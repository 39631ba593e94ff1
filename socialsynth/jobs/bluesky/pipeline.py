"""The persona-clustering job behind `cluster_users.py` (seed 002, BluePrint):

    Jetstream files -> events -> users (cached) -> English filter -> embeddings (cached by content) -> user vectors
    -> clusters (constrained k-means, or auto k by silhouette) -> [ignored messages] -> cluster_<id>.jsonl files,
    user_clusters.json, a cluster report, a 2-D map and meta.json; the run record is <output-dir>/cluster.meta.json

The parsed-users cache is JSON (gzip), keyed by the input files (path, size, mtime), the day range and the parser
version, so a changed input or date range is parsed again (the seed reused any cache with 10 users); a damaged
cache is parsed again, with a note. Input files with no usable event at all, or a file that cannot be read whole,
stop the job with one line naming them; every line or event left out is counted by reason (``skipped``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text
from socialsynth.core.provenance import jsonable, versions
from socialsynth.core.run import JobRun
from socialsynth.jobs.bluesky.config import ClusterConfig
from socialsynth.jobs.bluesky.events import EventStats, find_input_files, parse_file

log = logging.getLogger(__name__)
PARSER_VERSION = 1


# ------------------------------------------------------------------------------------------- parsing


def _parse_one(path: str) -> tuple[dict, dict]:
    """One file -> (users, stats) as plain dicts (what a worker process sends back)."""
    from socialsynth.jobs.bluesky.users import UserData

    stats = EventStats()
    data = UserData().add_all(parse_file(path, stats))
    return data.to_dict(), stats.to_dict()


def cache_key(files: list[Path], cfg: ClusterConfig) -> str:
    """Changes when any input file, the day range or the parser changes."""
    parts = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    blob = json.dumps([PARSER_VERSION, cfg.start_date, cfg.end_date, parts])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_users(cfg: ClusterConfig):
    """Parse the inputs (in `n_workers` processes, merged in input order) or reuse the matching cache."""
    from socialsynth.jobs.bluesky.users import UserData

    files = find_input_files(cfg.data_root, cfg.start_date, cfg.end_date)
    cache = cfg.caches / f"users-{cache_key(files, cfg)}.json.gz"
    damaged = False
    if cache.exists() and not cfg.force_parse:
        cached = read_users_cache(cache)
        if cached is not None:
            log.info("reusing parsed users from %s", cache)
            return *cached, files, str(cache)
        damaged = True
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
    check_some_events(stats, cfg)
    if damaged:
        stats.notes["damaged parsed-users cache (parsed again)"] += 1
    cfg.caches.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as handle:
        json.dump({"users": data.to_dict(), "stats": stats.to_dict()}, handle)
    tmp.replace(cache)
    return data, stats, files, str(cache)


def read_users_cache(cache: Path):
    """(users, stats) from a parsed-users cache, or None (with a warning) when it is damaged: it is parsed again."""
    from socialsynth.jobs.bluesky.users import UserData

    try:
        with gzip.open(cache, "rt", encoding="utf-8") as handle:
            blob = json.load(handle)
        return UserData.from_dict(blob["users"]), EventStats.from_dict(blob["stats"])
    except (OSError, EOFError, ValueError, zlib.error, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s: damaged parsed-users cache (%s); parsing the input again", cache, exc)
        return None


def check_some_events(stats: EventStats, cfg: ClusterConfig) -> None:
    """InputError when the input files hold no usable event at all (empty, or every line skipped)."""
    if stats.total_events:
        return
    reasons = ", ".join(f"{reason} {n}" for reason, n in stats.skipped.most_common(5)) or "no lines"
    raise InputError(f"no usable Jetstream events in {stats.files} file(s) ({stats.lines} lines; skipped: {reasons})",
                     path=cfg.data_root)


# ------------------------------------------------------------------------------------------- the job


def english_users(data, cfg: ClusterConfig) -> tuple[list[str], dict]:
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


@dataclass
class Clustering:
    """What the clustering step found: k, one label per clustered user, and the silhouette curve with auto k."""

    k: int
    labels: np.ndarray
    silhouette: dict | None = None


class _Timer:
    """Seconds per step (``timings`` of the meta), rounded as the report shows them."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 2)

    def total(self) -> None:
        self.timings["total"] = round(time.perf_counter() - self.t0, 2)


def check_enough_users(users: list[str], cfg: ClusterConfig) -> None:
    """InputError when too few users are left for the clusters asked for."""
    need = cfg.min_cluster_size * (2 if cfg.auto_cluster else cfg.n_clusters)
    if len(users) < max(need, 2):
        raise InputError(
            f"{len(users)} users with at least {cfg.min_english_posts} English posts: too few for "
            f"{'--auto-cluster' if cfg.auto_cluster else f'{cfg.n_clusters} clusters'} of at least "
            f"{cfg.min_cluster_size} users (lower --n-clusters or --min-cluster-size, or widen the date range)",
            path=cfg.data_root,
        )


def make_embedder(cfg: ClusterConfig):
    """The sentence embedder of --embedding-model; a model that cannot be found or loaded is one InputError."""
    from socialsynth.text.embeddings import Embedder

    try:
        return Embedder(
            cfg.embedding_model, device=cfg.device, cache_dir=cfg.caches / "embeddings", devices=cfg.embed_device_list,
            pooling=cfg.embedding_pooling, prefix=cfg.embedding_prefix, max_length=cfg.embedding_max_tokens,
            normalize=cfg.embedding_normalize,
        )
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a full disk or a permission: the environment, reported by run_main
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"cannot load the embedding model {cfg.embedding_model}: {first} (give a sentence-"
                         "transformers folder, or a model id in the local Hugging Face cache when offline)",
                         field="--embedding-model") from None


def cluster_vectors(X: np.ndarray, cfg: ClusterConfig) -> Clustering:
    """Fixed k (--n-clusters), or k picked by silhouette (--auto-cluster)."""
    from socialsynth.jobs.bluesky.cluster import auto_k, cluster_users, seed_k_range

    if cfg.auto_cluster:
        k, silhouette, all_labels = auto_k(
            X, seed_k_range(len(X)), seed=cfg.seed, min_cluster_size=cfg.min_cluster_size, method=cfg.method
        )
        return Clustering(k, all_labels[k], silhouette)
    labels = cluster_users(X, cfg.n_clusters, cfg.min_cluster_size, seed=cfg.seed, method=cfg.method)
    return Clustering(cfg.n_clusters, labels)


def ignored_messages(data, embedder, labels_by_user: dict[str, int], k: int, cfg: ClusterConfig):
    """Per cluster, the (member, post URI) pairs it probably saw but ignored, and the counts per cluster."""
    from socialsynth.jobs.bluesky.ignored import ignored_for_cluster

    post_uris, post_texts = [], []
    for u in data.users.values():
        for item in u.posts + u.replies:
            if item.get("text"):
                post_uris.append(item["uri"])
                post_texts.append(item["text"])
    matrix = embedder.encode(post_texts)
    embeddings = (matrix, {uri: i for i, uri in enumerate(post_uris)})
    ignored, counts = {}, {}
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
        counts[c] = result.to_dict()
    return ignored, counts


def write_outputs(out: Path, data, chains, ignored, clustering: Clustering, users: list[str],
                  labels_by_user: dict[str, int], texts_by_user, X: np.ndarray, seed: int,
                  action_lines: str = "all") -> tuple[dict, object]:
    """The cluster files, user_clusters.json, the cluster report (JSON and text) and the 2-D map; ``chains`` is a
    list (filed by last author) or, for --chains seed, a dict cluster -> chains."""
    from socialsynth.jobs.bluesky.cluster import cluster_report, plot_users
    from socialsynth.jobs.bluesky.output import write_cluster_files

    if isinstance(chains, dict):  # --chains seed: built per cluster already
        written = write_cluster_files(out, labels_by_user, data, [], ignored, chains_by_cluster=chains,
                                      action_lines=action_lines)
    else:
        written = write_cluster_files(out, labels_by_user, data, chains, ignored, action_lines=action_lines)
    report = cluster_report(texts_by_user, labels_by_user, seed=seed)
    atomic_write_json(out / "cluster_report.json", report)
    atomic_write_text(out / "cluster_report.txt", format_report(report))
    title = f"{len(users)} users, {clustering.k} clusters"
    plot = plot_users(X, clustering.labels, out / "cluster_map.png", title=title)
    return written, plot


def make_chains(data, labels_by_user: dict[str, int], style: str):
    """(chains, stats): --chains paths gives one list over all users; --chains seed a dict cluster -> the seed's
    chains of its members (members in sorted order) and summed stats."""
    from socialsynth.jobs.bluesky.users import ChainStats, build_chains, seed_chains

    if style != "seed":
        return build_chains(data)
    members: dict[int, list[str]] = {}
    for did in sorted(labels_by_user):
        members.setdefault(labels_by_user[did], []).append(did)
    by_cluster, total = {}, ChainStats()
    for label in sorted(members):
        by_cluster[label], stats = seed_chains(data, members[label])
        total.chains += stats.chains
        total.roots += stats.roots
        total.unplaced += stats.unplaced
    return by_cluster, total


def run_cluster_job(cfg: ClusterConfig) -> dict:
    """The whole job (see the module doc); returns the meta, plus ``output`` and the events table."""

    timer = _Timer()
    with JobRun("cluster", cfg.record_file, cfg) as run:
        with timer.step("parse"):
            data, stats, files, cache = load_users(cfg)
        users, language_counts = english_users(data, cfg)
        check_enough_users(users, cfg)
        embedder = make_embedder(cfg)
        with timer.step("embed_users"):
            X, texts_by_user = user_vectors(data, users, embedder)
        with timer.step("cluster"):
            clustering = cluster_vectors(X, cfg)
        labels_by_user = {did: int(label) for did, label in zip(users, clustering.labels, strict=True)}
        chains, chain_stats = make_chains(data, labels_by_user, cfg.chains)
        ignored, ignored_counts = None, {}
        if cfg.add_ignored_messages:
            with timer.step("ignored"):
                ignored, ignored_counts = ignored_messages(data, embedder, labels_by_user, clustering.k, cfg)
        embedder.close()  # stops the embedding worker processes, if any
        out = Path(cfg.output_dir) / f"processed_{clustering.k}_clusters"
        written, plot = write_outputs(out, data, chains, ignored, clustering, users, labels_by_user, texts_by_user,
                                      X, cfg.seed, cfg.action_lines)
        timer.total()
        meta = {
            "command": run.command,
            "config": jsonable(asdict(cfg)),
            "versions": versions(),
            "input_files": len(files),
            "users_cache": cache,
            "events": stats.to_dict(),
            "skipped": skipped_counts(stats, data),
            "users": {"all": len(data.users), "clustered": len(users), "language": language_counts},
            "unmatched_deletes": dict(data.unmatched_deletes()),
            "chains": asdict(chain_stats) if hasattr(chain_stats, "__dataclass_fields__") else str(chain_stats),
            "k": clustering.k,
            "silhouette": {str(key): v for key, v in clustering.silhouette.items()} if clustering.silhouette else None,
            "cluster_sizes": dict(sorted(Counter(labels_by_user.values()).items())),
            "written": written,
            "ignored": ignored_counts or None,
            "embedding": {
                "model": cfg.embedding_model,
                "pooling": cfg.embedding_pooling,
                "prefix": getattr(embedder, "prefix", cfg.embedding_prefix),
                "max_tokens": cfg.embedding_max_tokens,
                "normalize": cfg.embedding_normalize,
                "encoded": getattr(embedder, "encoded", None),
                "encoded_by_pool": getattr(embedder, "pool_encoded", None),
            },
            "timings": timer.timings,
            "plot": plot,
        }
        atomic_write_json(out / "meta.json", jsonable(meta))
        record(run, meta, out)
    meta["output"] = str(out)
    meta["event_report"] = stats.format()
    return meta


def skipped_counts(stats: EventStats, data) -> dict[str, int]:
    """Every input line or event left out, by reason: the parser's skips and the replayed duplicates dropped."""
    skipped = dict(stats.skipped.most_common())
    if data.duplicates:
        skipped["duplicate event (replayed)"] = data.duplicates
    return skipped


def record(run: JobRun, meta: dict, out: Path) -> None:
    """The run record holds the job's results (not its own command, config and versions, which it keeps)."""
    own = {"command", "config", "versions"}
    run.meta.update({key: value for key, value in jsonable(meta).items() if key not in own})
    run.meta["output"] = str(out)
    run.note_items(meta["users"]["clustered"])
    run.mark_complete(True)


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
    duplicates = meta.get("skipped", {}).get("duplicate event (replayed)")
    if duplicates:
        lines.append(f"duplicate event (replayed): {duplicates} dropped")
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
