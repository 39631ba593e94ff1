#!/usr/bin/env python
"""Rare-class augmentation (Capstone-Meta): generate synthetic examples of a sparse label (e.g. toxic) with an
LLM from few-shot prompts of real examples, flag bad ones, and build training sets at several positive rates
(the sparsity ladder), optionally training a classifier on each.

Examples:
  python augment_labels.py --input data/comments_labelled.csv --label-col toxic --target-label 1 \\
      --label-name toxic --definition-file data/label_definitions.yaml --n 50
  python augment_labels.py --input jigsaw.csv --text-col comment_text --label-col is_bad --target-label 1 \\
      --label-name toxic --definition-file data/label_definitions.yaml --n 200 \\
      --positive-rates 0.0025,0.01,0.03,0.05 --evaluate
  python augment_labels.py --input jigsaw.csv ... --synthetic output/augment/synthetic_1.jsonl --positive-rates 0.05
"""

from __future__ import annotations

import sys
from pathlib import Path

from socialsynth.core.cli import (
    add_model_args,
    add_sampling_args,
    default_dir,
    make_parser,
    run_main,
    sampling_params,
    setup_logging,
)
from socialsynth.core.errors import InputError
from socialsynth.core.provenance import command_line


def build_parser():
    p = make_parser(__doc__.split("\n\n")[0], epilog="\n".join(__doc__.split("\n\n")[1:]))
    data = p.add_argument_group("data")
    data.add_argument("--input", "-i", type=Path, help="labelled file (CSV, TSV, JSONL, Parquet)")
    data.add_argument("--text-col", "--text_col", dest="text_col", default="text")
    data.add_argument("--label-col", "--label_col", dest="label_col", default="label")
    data.add_argument("--target-label", required=True, help="the rare label to generate, e.g. 1 or toxic")
    data.add_argument(
        "-o", "--output-dir", "--output_dir", dest="output_dir", type=Path, default=None, help="default: output/augment"
    )
    data.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows")
    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--n",
        type=int,
        default=None,
        help="passing examples to make (the job stops when this many passed every filter, or after "
        "--max-requests); 0 or left out with --synthetic: no generation",
    )
    gen.add_argument(
        "--label-name",
        default=None,
        help="the label's name in the prompt and definition file (default: --target-label)",
    )
    gen.add_argument("--definition", default=None, help="definition of the label shown in every prompt")
    gen.add_argument(
        "--definition-file",
        type=Path,
        default=None,
        help="YAML name -> definition (picked by --label-name) or a plain-text file",
    )
    gen.add_argument("--examples-per-prompt", type=int, default=2, help="real examples in each prompt (the seed: 2)")
    gen.add_argument("--per-call", type=int, default=5, help="examples asked for in each request (the seed: 5)")
    gen.add_argument(
        "--max-requests",
        type=int,
        default=None,
        help="stop after this many requests in all (default: 10 x the requests --n needs)",
    )
    gen.add_argument(
        "-b",
        "--batch-size",
        "--batch_size",
        dest="batch_size",
        type=int,
        default=8,
        help="requests per chunk, generated and written together",
    )
    gen.add_argument("--template", default="augment_fewshot", help="prompt template name or YAML file")
    gen.add_argument(
        "--shard",
        default=None,
        help="I/N: make the I-th of N parts of --n (and of --max-requests), with request numbers I, I+N, ... so "
        "shards never repeat a request, into synthetic_<label>.shard-I-of-N.jsonl; join them with "
        "`python -m socialsynth merge` (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)",
    )
    add_model_args(p)
    add_sampling_args(p)
    filt = p.add_argument_group("filters (flag, never drop)")
    filt.add_argument(
        "--min-words",
        type=int,
        default=5,
        help="flag shorter items (the seed asked for 20-100 words, too long for tweets)",
    )
    filt.add_argument("--max-words", type=int, default=100, help="flag longer items")
    filt.add_argument(
        "--near-dup",
        type=float,
        default=0.95,
        help="flag items whose embedding cosine to a real row or an earlier item is >= this (0 = off)",
    )
    filt.add_argument("--embedding-model", default="embedded", help="for --near-dup ('none' = skip)")
    filt.add_argument(
        "--fidelity-model",
        type=Path,
        default=None,
        help="classifier folder from train_classifier.py: flag items it gives the target label a "
        "probability below --fidelity-threshold",
    )
    filt.add_argument("--fidelity-threshold", type=float, default=0.5)
    lad = p.add_argument_group("sparsity ladder")
    lad.add_argument(
        "--positive-rates", default=None, help="e.g. 0.0025,0.01,0.03,0.05: build training sets at these positive rates"
    )
    lad.add_argument(
        "--synthetic",
        type=Path,
        default=None,
        help="use this synthetic file (augment JSONL or a table) for the ladder instead of generating",
    )
    lad.add_argument("--train", type=Path, help="real training file (instead of splitting --input 80/10/10)")
    lad.add_argument("--val", type=Path)
    lad.add_argument("--test", type=Path)
    lad.add_argument(
        "--strict-rates",
        action="store_true",
        help="error (instead of capping) when a rate needs more synthetic positives than exist",
    )
    lad.add_argument("--evaluate", action="store_true", help="train and test --classifier on each ladder set")
    lad.add_argument(
        "--classifier",
        default="tfidf-logreg",
        help="any train_classifier.py model: tfidf-logreg, tfidf-mlp, embedded, a HF encoder",
    )
    lad.add_argument("--epochs", type=float, default=3.0, help="epochs for transformer classifiers")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)

    def job() -> int:
        from socialsynth.jobs.augment.job import AugmentConfig, FilterSettings, format_summary, output_path, run_augment_job
        from socialsynth.core.cli import backend_spec
        from socialsynth.core.io import parse_shard
        from socialsynth.jobs.augment.ladder import LadderConfig, format_ladder, parse_rates, read_synthetic, run_ladder

        out_dir = args.output_dir or default_dir("output") / "augment"
        rates = parse_rates(args.positive_rates) if args.positive_rates else None
        generate = args.n is not None and args.n > 0
        if not generate and args.synthetic is None:
            raise InputError("give --n N (examples to generate) or --synthetic FILE with --positive-rates", field="--n")
        if not generate and rates is None:
            raise InputError("--synthetic is used by the ladder: add --positive-rates", field="--synthetic")
        shard = parse_shard(args.shard) if generate else None
        if shard is not None and rates is not None:
            raise InputError(
                "a sharded run only generates: merge the shards, then run the ladder once with --synthetic MERGED",
                field="--positive-rates",
            )
        source = args.input or args.train
        if source is None:
            raise InputError("give --input FILE (or --train/--val/--test for the ladder)", field="--input")
        cfg = AugmentConfig(
            input=source,
            target_label=args.target_label,
            n=args.n or 0,
            output_dir=out_dir,
            text_col=args.text_col,
            label_col=args.label_col,
            label_name=args.label_name,
            definition=args.definition,
            definition_file=args.definition_file,
            examples_per_prompt=args.examples_per_prompt,
            per_call=args.per_call,
            max_requests=args.max_requests,
            batch_size=args.batch_size,
            template=args.template,
            engine=backend_spec(args),
            params=sampling_params(args),
            filters=FilterSettings(args.min_words, args.max_words, args.near_dup, args.fidelity_threshold),
            embedding_model=None if args.embedding_model == "none" else args.embedding_model,
            fidelity_model=args.fidelity_model,
            skip_bad_rows=args.skip_bad_rows,
            command=command_line(),
            shard=shard,
        )
        if generate:
            print(format_summary(run_augment_job(cfg)))
        if rates is not None:
            from socialsynth.classify.labels import label_key

            syn_file = args.synthetic or output_path(cfg)
            synthetic = read_synthetic(syn_file, args.text_col, args.label_col, label_key(args.target_label))
            ladder = LadderConfig(
                output_dir=out_dir,
                target_label=args.target_label,
                rates=rates,
                input=args.input if args.train is None else None,
                train=args.train,
                val=args.val,
                test=args.test,
                text_col=args.text_col,
                label_col=args.label_col,
                seed=args.seed,
                strict=args.strict_rates,
                evaluate=args.evaluate,
                classifier=args.classifier,
                epochs=args.epochs,
            )
            print(format_ladder(run_ladder(ladder, synthetic)))
        return 0

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
