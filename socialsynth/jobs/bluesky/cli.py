"""The Bluesky scripts: `cluster_users.py` (:func:`main_cluster`) and `build_instruct_dataset.py`
(:func:`main_instruct`). Each parses its declared config, runs the job and prints a summary."""

from __future__ import annotations

from collections.abc import Sequence

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.bluesky.config import ClusterConfig, InstructConfig

CLUSTER_EPILOG = """\
    python cluster_users.py --data-root /data/bluesky-2025-03 --start-date 1 --end-date 7 --n-clusters 25
    python cluster_users.py --data-root events.jsonl --auto-cluster --min-cluster-size 5 --n-workers 1
    python cluster_users.py --preset blueprint --data-root /data/bluesky-2025-03 --start-date 1 --end-date 31

--preset blueprint replays BluePrint: e5-large CLS vectors (no prefix, 128 tokens), 25 clusters, --chains seed and
--action-lines seed. The run record is <output-dir>/cluster.meta.json; processed_<k>_clusters/ holds the cluster
files, meta.json and the cluster report."""

INSTRUCT_EPILOG = """\
    python build_instruct_dataset.py -i output/bluesky/processed_10_clusters -o output/bluesky/instruct_10
    python build_instruct_dataset.py -i processed_10_clusters --llm-fraction 0.2 -m Qwen/Qwen2.5-1.5B-Instruct
    python build_instruct_dataset.py --preset blueprint -i processed_25_clusters -o instruct_25 --dolly-path dolly.jsonl

Each output line is a JSON list of messages: system (the instruction), optionally context (a JSON list of
{user_id, text}), and assistant, always a JSON string {"text": ...} (the seed's keyword task wrote raw text).
--dolly-path mixes a local databricks-dolly-15k JSONL in at --dolly-fraction (0.2) of each file; --preset blueprint
replays BluePrint (Dolly at 20 %, files named cluster_<id>.jsonl). LLM answers are written chunk by chunk to
instruct_llm_answers.jsonl: a stopped run (SIGTERM, Ctrl-C) resumes where it stopped when rerun."""


def main_cluster(argv: Sequence[str] | None = None) -> int:
    """`cluster_users.py ...`; bad input raises InputError (run_main prints one line, exit 2)."""
    cfg = parse(ClusterConfig, argv, prog="cluster_users.py", description=ClusterConfig.__doc__,
                epilog=CLUSTER_EPILOG)
    setup_logging(cfg.verbose)
    from socialsynth.jobs.bluesky.pipeline import format_summary, run_cluster_job

    print(format_summary(run_cluster_job(cfg)))
    print(f"run record: {cfg.record_file}")
    return 0


def main_instruct(argv: Sequence[str] | None = None, backend=None) -> int:
    """`build_instruct_dataset.py ...`; ``backend`` replaces the one the model flags describe (tests)."""
    cfg = parse(InstructConfig, argv, prog="build_instruct_dataset.py", description=InstructConfig.__doc__,
                epilog=INSTRUCT_EPILOG)
    setup_logging(cfg.verbose)
    from socialsynth.jobs.bluesky.instruct import format_summary, run_instruct_job

    meta = run_instruct_job(cfg, backend=backend)
    print(format_summary(meta, cfg.output_dir, cfg.record_file))
    return 0
