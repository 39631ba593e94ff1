#!/usr/bin/env python
"""Instruction-tuning data from Bluesky persona clusters (BluePrint instruct_dataset): turn each cluster file of
cluster_users.py into needle-in-a-haystack, keyword-post and completion examples (plus LLM-written summarise and
paraphrase examples with --llm-fraction > 0).

    python build_instruct_dataset.py -i output/bluesky/processed_10_clusters -o output/bluesky/instruct_10
    python build_instruct_dataset.py -i processed_10_clusters --llm-fraction 0.2 -m Qwen/Qwen2.5-1.5B-Instruct

Each output line is a JSON list of messages: system (the instruction), optionally context (a JSON list of
{user_id, text}), and assistant, always a JSON string {"text": ...} (the seed's keyword task wrote raw text).
The seed's Dolly-15k mixing is not done (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from socialsynth.core.cli import add_model_args, add_sampling_args, make_parser, run_main, sampling_params, setup_logging


def build_parser():
    p = make_parser(__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    data = p.add_argument_group("data")
    data.add_argument(
        "-i",
        "--input-dir",
        "--input_dir",
        dest="input_dir",
        type=Path,
        required=True,
        help="processed_<k>_clusters/ folder written by cluster_users.py (cluster_<id>.jsonl files)",
    )
    data.add_argument(
        "-o",
        "--output-dir",
        "--output_dir",
        dest="output_dir",
        type=Path,
        default=None,
        help="where instruct_cluster_<id>.jsonl and instruct_meta.json go (default <input-dir>/instruct)",
    )
    data.add_argument(
        "--max-chains",
        "--max_chains",
        dest="max_chains",
        type=int,
        default=10000,
        help="chains sampled per cluster file",
    )
    data.add_argument(
        "--llm-fraction",
        "--llm_fraction",
        dest="llm_fraction",
        type=float,
        default=0.0,
        help="share of chains given an LLM-written summarise/paraphrase task instead (0 = no model is loaded)",
    )
    add_model_args(p)
    add_sampling_args(p)
    p.set_defaults(seed=42)
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None, backend=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from socialsynth.jobs.bluesky.instruct import InstructConfig, run_instruct_job
    from socialsynth.core.cli import backend_spec

    cfg = InstructConfig(
        input_dir=args.input_dir,
        output_dir=args.output_dir or args.input_dir / "instruct",
        max_chains=args.max_chains,
        seed=args.seed,
        llm_fraction=args.llm_fraction,
    )
    spec = backend_spec(args)
    meta = run_instruct_job(cfg, backend=backend, params=sampling_params(args), backend_factory=spec.load)
    print(json.dumps({"output_dir": str(cfg.output_dir), "totals": meta["totals"]}))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(lambda: main()))
