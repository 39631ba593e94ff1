"""`train_classifier.py` / the train job's command line: flags -> TrainConfig -> run -> what is printed."""

from __future__ import annotations

import json
from collections.abc import Sequence

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.train.config import TrainConfig

PROG = "train_classifier.py"
DESCRIPTION = """Train and evaluate text classifiers: multi-label (PII categories), binary and multi-class (toxicity),
regression (upvotes). Fine-tunes any Hugging Face encoder (the embedded all-MiniLM-L6-v2 by default) or fits
TF-IDF baselines, on one file split 80/10/10 or on separate train/val/test files; compares real and synthetic
training data; scores new files with a saved model."""
EPILOG = """Examples:
  python train_classifier.py --task binary --input data/toxic_sample.csv --text-col text --label-col toxic
  python train_classifier.py --task multilabel --input pii.jsonl --label-col labels --model tfidf-logreg
  python train_classifier.py --preset valuescope --input askmen.pkl --allow-pickle -o output/upvote_askmen
  python train_classifier.py --preset valuescope -m embedded --input data/askmen.jsonl -o output/upvote_offline
  python train_classifier.py --preset socsys --input dataset/Llama3_label.csv -o output/pii_llama3
  python train_classifier.py --preset capstone --train train.csv --val val.csv --test test.csv --text-col message
  python train_classifier.py --task binary --compare --input real.csv --synthetic synthetic.csv:1.0
  python train_classifier.py --predict new.csv --model-dir output/classifier -o output/new_predictions.jsonl"""


def parse_config(argv: Sequence[str] | None = None) -> TrainConfig:
    """Flags (and --config JOB.yaml) -> a validated TrainConfig; --print-config prints it and exits 0."""
    return parse(TrainConfig, argv, prog=PROG, description=DESCRIPTION, epilog=EPILOG)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    setup_logging(cfg.verbose)
    from socialsynth.core.runner import GracefulStop
    from socialsynth.jobs.train.job import run

    with GracefulStop() as stop:
        result = run(cfg, stop)
    if cfg.predict is not None:
        print_predict(cfg, result)
    elif cfg.compare:
        print(result["text"])
        print(f"\nevaluated on the real {result['evaluated_on']} set; runs in {cfg.out_dir}")
    else:
        print_training(cfg, result)
    return 0


def print_predict(cfg: TrainConfig, summary: dict) -> None:
    from socialsynth.classify.report import format_report
    from socialsynth.jobs.train.job import predicted_task

    print(json.dumps({k: v for k, v in summary.items() if k != "metrics"}, indent=1))
    if summary.get("metrics"):
        print(format_report(predicted_task(cfg, summary), summary["metrics"], "labelled rows"))


def print_training(cfg: TrainConfig, results: dict) -> None:
    from socialsynth.classify.report import format_report

    task = cfg.task or "binary"
    for split in ("val", "test"):
        if split in results:
            print(format_report(task, results[split], title=f"{split} ({results[split].get('n')} rows)"))
            print()
    for line in training_notes(results):
        print(line)
    print(f"model, metrics.json, report.txt and predictions in {cfg.out_dir}")


def training_notes(results: dict) -> list[str]:
    """What a user must hear about the run besides the metrics: rows skipped or not used, repeated ids, texts cut,
    torn checkpoints skipped, an evaluation redone."""
    data, history = results.get("data") or {}, results.get("history") or {}
    lines = []
    for title, counts in (
        ("skipped rows", data.get("skipped")),
        ("training rows not used", data.get("train_excluded")),
        ("duplicate ids (rows kept)", data.get("duplicate_ids")),
    ):
        if counts:
            lines.append(f"{title}: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    if history.get("truncated_texts"):
        lines.append(f"texts cut at --max-length: {history['truncated_texts']}")
    if history.get("torn_checkpoints_skipped"):
        lines.append(f"torn checkpoints skipped: {', '.join(history['torn_checkpoints_skipped'])}")
    if history.get("resumed_from"):
        lines.append(f"resumed from {history['resumed_from']}")
    if results.get("repaired"):
        lines.append(results["repaired"])
    return lines
