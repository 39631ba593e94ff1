#!/usr/bin/env python
"""Privacy-preserving rephrasing (socsys/synthetic): rewrite each post with one or more LLMs so that names,
ages, places, jobs and other personal details are replaced by plausible alternatives, then (optionally) audit
how linkable the synthetic posts still are to their originals.

    python rephrase_posts.py --input data/posts_sample.csv --audit
    python rephrase_posts.py --input posts.csv -q 4 --audit --search-temperatures 0.5:1.0:0.1 --search-sample 50 \\
        -m meta-llama/Llama-2-7b-chat-hf -m meta-llama/Meta-Llama-3-8B-Instruct -m HuggingFaceH4/zephyr-7b-beta
"""

from __future__ import annotations

import sys
from pathlib import Path

from socialsynth.core.cli import (
    add_model_args,
    add_range_args,
    add_sampling_args,
    default_dir,
    make_parser,
    run_main,
    sampling_params,
    setup_logging,
)


def build_parser():
    p = make_parser(__doc__)
    job = p.add_argument_group("job")
    job.add_argument("--input", type=Path, required=True, help="posts file (.csv, .jsonl, .parquet, ...)")
    job.add_argument(
        "-o",
        "--output-dir",
        "--output_dir",
        dest="output_dir",
        type=Path,
        default=None,
        help="where outputs go (default: output/rephrase_<input name>)",
    )
    job.add_argument("--text-col", "--text_col", dest="text_col", default="original_post", help="column to rephrase")
    job.add_argument(
        "--id-col",
        "--id_col",
        dest="id_col",
        default=None,
        help="id column (default: 'id' if present, else row number)",
    )
    job.add_argument(
        "--samples-per-model", type=int, default=1, help="rephrasings per post and model (the seed: 1 each of 3 models)"
    )
    job.add_argument(
        "-b", "--batch-size", "--batch_size", dest="batch_size", type=int, default=8, help="posts per chunk"
    )
    job.add_argument("--max-batch-tokens", type=int, default=65536, help="token budget of one forward batch")
    job.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of stopping")
    job.add_argument("--max-post-chars", type=int, default=10_000, help="skip (and count) longer posts")
    job.add_argument("--template", default="privacy_rephrase", help="prompt template name or YAML file")
    add_range_args(p)
    add_model_args(p, multiple=True)
    add_sampling_args(p)
    priv = p.add_argument_group("temperature search and linkability audit")
    priv.add_argument(
        "--search-temperatures",
        default=None,
        metavar="START:STOP:STEP",
        help="before generating, try these temperatures (e.g. 0.5:1.0:0.1 or 0.6,0.8) on a sample of posts and use, "
        "per model, the one with the lowest mean cosine similarity to the originals (overrides --temperature)",
    )
    priv.add_argument("--search-sample", type=int, default=50, help="posts sampled (with --seed) for the search")
    priv.add_argument(
        "--embedding-model",
        default="embedded",
        help="sentence-transformers model for the search and audit ('embedded' = all-MiniLM-L6-v2)",
    )
    priv.add_argument(
        "--audit",
        action="store_true",
        help="rank all originals by embedding similarity to each synthetic post (top-1/top-5 re-identification) and "
        "count replayed names, numbers and rare 3-grams; writes audit.json and audit.txt",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from socialsynth.core.cli import backend_spec
    from socialsynth.core.io import parse_shard
    from socialsynth.jobs.rephrase.job import RephraseConfig, format_summary, parse_temperatures, run_rephrase_job

    params = sampling_params(args)
    models = tuple(backend_spec(args, m) for m in (args.model or ["embedded"]))
    cfg = RephraseConfig(
        input=args.input,
        output_dir=args.output_dir or default_dir("output") / f"rephrase_{args.input.name.split('.')[0]}",
        models=models,
        text_col=args.text_col,
        id_col=args.id_col,
        samples_per_model=args.samples_per_model,
        params=params,
        template=args.template,
        batch_size=args.batch_size,
        start_idx=args.start_idx,
        end_idx=args.end_idx,
        shard=parse_shard(args.shard),
        skip_bad_rows=args.skip_bad_rows,
        max_post_chars=args.max_post_chars,
        search_temperatures=parse_temperatures(args.search_temperatures) if args.search_temperatures else None,
        search_sample=args.search_sample,
        embedding_model=None if args.embedding_model == "none" else args.embedding_model,
        audit=args.audit,
        device=args.device,
        command="python " + " ".join(sys.argv) if argv is None else "python rephrase_posts.py " + " ".join(argv),
    )
    print(format_summary(run_rephrase_job(cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
