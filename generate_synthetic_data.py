#!/usr/bin/env python
"""Normness distillation (ValueScope): rewrite each Reddit comment at five levels of one norm dimension
(formality, politeness, ...) with an LLM, rate the original and every rewrite, and flag bad rewrites.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels
"""

from __future__ import annotations

import sys
from dataclasses import replace
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
from socialsynth.core.errors import InputError
from socialsynth.prompts import known_dimensions


def build_parser():
    p = make_parser(__doc__)
    job = p.add_argument_group("job (the research code's flags)")
    job.add_argument("-r", "--subreddit", help="subreddit to rewrite; reads <data_dir>/<subreddit>.jsonl|.csv|.parquet")
    job.add_argument(
        "-n",
        "--norm_dimension",
        "--norm-dimension",
        dest="norm_dimension",
        help=f"dimension to vary: {', '.join(known_dimensions())}, or a YAML file defining one",
    )
    job.add_argument(
        "-d",
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        type=Path,
        default=default_dir("data"),
        help="folder of processed comment files",
    )
    job.add_argument("-o", "--output_dir", "--output-dir", dest="output_dir", type=Path, default=default_dir("output"))
    job.add_argument(
        "-u",
        "--upvote_dir",
        "--upvote-dir",
        dest="upvote_dir",
        type=Path,
        default=None,
        help="upvote-model folder (train_classifier.py --task regression --preset upvote -o DIR): only the ids in "
        "its inference_sample_ids.txt are rewritten, and every rewrite gets predicted upvotes and the preference "
        "delta (rewrite minus original)",
    )
    job.add_argument(
        "-b",
        "--batch_size",
        "--batch-size",
        dest="batch_size",
        type=int,
        default=16,
        help="comments per chunk: generated together and written together",
    )
    job.add_argument(
        "-sb",
        "--sub_batch_size",
        "--sub-batch-size",
        dest="sub_batch_size",
        type=int,
        default=64,
        help="most sequences in one forward batch",
    )
    job.add_argument("--input", type=Path, default=None, help="read this file instead of <data_dir>/<subreddit>.*")
    job.add_argument(
        "--allow-pickle",
        "--allow_pickle",
        action="store_true",
        help="allow the research code's .pkl input (pickle can run code: only for files you trust)",
    )
    job.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="count and skip malformed input rows instead of stopping at the first",
    )
    job.add_argument(
        "--max-comment-chars",
        type=int,
        default=10_000,
        help="skip (and count) comments longer than this; 10,000 is Reddit's own limit",
    )
    job.add_argument("--levels", default="1,2,3,4,5", help="target levels to rewrite to, e.g. 1,5")
    job.add_argument("--max-batch-tokens", type=int, default=65536, help="token budget of one forward batch")
    add_range_args(p)
    add_model_args(p)
    add_sampling_args(p)
    job.add_argument(
        "--rewrite-template",
        default="norm_rewrite",
        help="rewrite prompt: norm_rewrite (compact, for small models), norm_rewrite_full (the research "
        "code's prompt with all definitions and the post title), or a YAML file",
    )
    rate = p.add_argument_group("rating and quality filters")
    rate.add_argument(
        "--rating-method",
        choices=["likelihood", "logits", "generate"],
        default="likelihood",
        help="likelihood: probability of the comment under each level's description (5 teacher-forced passes; "
        "the embedded model sees style shifts this way); logits: one forward pass, probabilities of the answers "
        "1-5 to a rating question; generate: answer in words and parse (the research code's way)",
    )
    rate.add_argument(
        "--rating-template",
        default=None,
        help="rating prompt (default: the method's own): norm_rating (rubric + examples, answer starts with the "
        "level digit), norm_likelihood, norm_rating_seed (the research code's prompt, for --rating-method "
        "generate), or a YAML file",
    )
    rate.add_argument(
        "--min-similarity",
        type=float,
        default=0.5,
        help="flag rewrites whose embedding cosine to the original is below this (content preservation)",
    )
    rate.add_argument(
        "--max-perplexity",
        type=float,
        default=1000.0,
        help="flag rewrites whose perplexity under the generating model is above this (fluency); 0 = off",
    )
    rate.add_argument(
        "--embedding-model",
        default="embedded",
        help="sentence-transformers model for the content check ('embedded' = all-MiniLM-L6-v2; 'none' = skip)",
    )
    judge = p.add_argument_group("judge agreement")
    judge.add_argument(
        "--judge-agreement",
        type=Path,
        metavar="FILE",
        help="rate both comments of each human-labelled pair and report agreement per dimension",
    )
    judge.add_argument("--judge-topics", default=None, help="only pairs of these topics, e.g. askscience,finance")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise InputError(f"expected comma-separated levels like 1,5, got {text!r}", field="--levels") from None
    return levels


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from socialsynth.core.io import parse_shard

    params = sampling_params(args)
    if args.judge_agreement:
        return run_judge(args, params)
    if not args.subreddit or not args.norm_dimension:
        raise InputError("-r/--subreddit and -n/--norm_dimension are required (unless --judge-agreement)")
    from socialsynth.jobs.norms.job import NormJobConfig, format_summary, run_norm_job
    from socialsynth.jobs.norms.rewrite import FilterSettings

    cfg = NormJobConfig(
        subreddit=args.subreddit,
        dimension=args.norm_dimension,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        input=args.input,
        upvote_dir=args.upvote_dir,
        engine=engine_spec(args),
        batch_size=args.batch_size,
        start_idx=args.start_idx,
        end_idx=args.end_idx,
        shard=parse_shard(args.shard),
        params=params,
        levels=parse_levels(args.levels),
        rating_method=args.rating_method,
        rewrite_template=args.rewrite_template,
        rating_template=args.rating_template,
        allow_pickle=args.allow_pickle,
        skip_bad_rows=args.skip_bad_rows,
        max_comment_chars=args.max_comment_chars,
        filters=FilterSettings(args.min_similarity, args.max_perplexity),
        embedding_model=None if args.embedding_model == "none" else args.embedding_model,
        command="python " + " ".join(sys.argv)
        if argv is None
        else "python generate_synthetic_data.py " + " ".join(argv),
    )
    summary = run_norm_job(cfg)
    print(format_summary(summary))
    return 0


def engine_spec(args):
    from socialsynth.core.cli import backend_spec

    return backend_spec(args)  # -sb/--sub_batch_size and --max-batch-tokens bound the hf backend's batches


def run_judge(args, params) -> int:
    from socialsynth.core.io import atomic_write_json
    from socialsynth.jobs.norms.judge import format_report, judge_agreement, load_pairs
    from socialsynth.jobs.norms.rewrite import Rater
    from socialsynth.prompts import load_template

    topics = [t.strip() for t in args.judge_topics.split(",")] if args.judge_topics else None
    rows, dims = load_pairs(args.judge_agreement, topics)
    backend = engine_spec(args).load()
    rating_params = replace(params, temperature=0.0, max_new_tokens=12)  # answers, not prose: greedy and brief
    template = load_template(args.rating_template) if args.rating_template else None
    report = judge_agreement(lambda dim: Rater(backend, dim, args.rating_method, template, rating_params), rows, dims)
    print(f"{len(rows)} pairs from {args.judge_agreement}; model {args.model}; rating method {args.rating_method}")
    print(format_report(report))
    out = Path(args.output_dir) / f"judge_agreement_{Path(args.judge_agreement).stem}_{args.rating_method}.json"
    atomic_write_json(
        out,
        {
            "input": str(args.judge_agreement),
            "topics": topics,
            "model": backend.describe(),
            "rating_method": args.rating_method,
            "report": report.to_dict(),
        },
    )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
