"""The classifier job: train, compare or predict, each under a run record.

    training   <output_dir>/train.meta.json beside classifier.json, metrics.json, report.txt, predictions_*.jsonl
    --compare  <output_dir>/train.meta.json beside comparison.json/.txt and one folder per training mix
    --predict  <FILE>.predictions.meta.json beside <FILE>.predictions.jsonl

A finished training folder is reused by the same command and refused (before anything is written) when it holds a
model trained with other settings; ``--overwrite`` replaces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from socialsynth.classify.train import finished_result, run_compare, run_predict, run_training
from socialsynth.core.config import flat_values
from socialsynth.core.provenance import command_line
from socialsynth.core.run import JobRun, record_path
from socialsynth.core.runner import GracefulStop
from socialsynth.jobs.train.config import TrainConfig

JOB = "train"
RECORD = "train.meta.json"


def train_record(cfg: TrainConfig) -> Path:
    """The run record of a training or --compare run: <output_dir>/train.meta.json."""
    return Path(cfg.out_dir) / RECORD


def run(cfg: TrainConfig, stop: GracefulStop) -> dict[str, Any]:
    """The mode the config asks for; returns what the command prints a summary of."""
    if cfg.predict is not None:
        return run_predict_job(cfg, stop)
    if cfg.compare:
        return run_compare_job(cfg, stop)
    return run_train_job(cfg, stop)


def run_train_job(cfg: TrainConfig, stop: GracefulStop) -> dict[str, Any]:
    """Train (or reuse the finished run), evaluate, write the model folder and the run record."""
    job = cfg.job(command_line())
    reused = finished_result(job) is not None  # raises here, before any write, for a folder of other settings
    with JobRun(JOB, train_record(cfg), cfg) as record:
        results = run_training(job, stop=stop)
        record.meta.update(mode="train", reused=reused, **_training_facts(results))
        record.mark_complete(True)
    return results


def _training_facts(results: dict) -> dict[str, Any]:
    data, history = results.get("data") or {}, results.get("history") or {}
    return {
        "headline": results.get("headline"),
        "headline_split": results.get("headline_split"),
        "rows": {k: data.get(k) for k in ("train_rows", "val_rows", "test_rows")},
        "skipped": data.get("skipped") or {},
        "not_used": data.get("train_excluded") or {},
        "duplicate_ids": data.get("duplicate_ids") or {},
        "truncated_texts": history.get("truncated_texts") or 0,
        "torn_checkpoints_skipped": history.get("torn_checkpoints_skipped") or [],
        "repaired": results.get("repaired"),
        "training_seconds": results.get("seconds"),
    }


def run_compare_job(cfg: TrainConfig, stop: GracefulStop) -> dict[str, Any]:
    """Real, synthetic and both, tested on the same real rows; one record for the three runs."""
    job = cfg.job(command_line())
    with JobRun(JOB, train_record(cfg), cfg) as record:
        summary = run_compare(job, stop)
        record.meta.update(mode="compare", evaluated_on=summary["evaluated_on"], table=summary["table"],
                           runs_dirs=summary["runs"])
        record.mark_complete(True)
    return summary


def run_predict_job(cfg: TrainConfig, stop: GracefulStop) -> dict[str, Any]:
    """Score --predict FILE with --model-dir; the record sits beside the predictions."""
    from socialsynth.classify.metrics import headline

    job = cfg.job(command_line())
    output = cfg.predict_output
    # predictions of another model or file must not join these: only those settings are compared on resume
    compared = {"predict", "model_dir", "text_col", "id_col", "label_col", "label_sep", "positive_label"}
    other = [name for name in flat_values(cfg) if name not in compared]
    with JobRun(JOB, record_path(output), cfg, outputs=[output], resume_safe=other) as record:
        summary = run_predict(cfg.model_dir, cfg.predict, output, job, job.settings.eval_batch_size, stop)
        record.meta.update(mode="predict", summary={k: v for k, v in summary.items() if k != "metrics"})
        if summary.get("metrics"):
            task = predicted_task(cfg, summary)
            record.meta["headline"] = headline(task, summary["metrics"])
        record.note_items(summary["written_this_run"])
        record.mark_complete(True)
    return summary


def predicted_task(cfg: TrainConfig, summary: dict) -> str:
    """The task of the model --predict used (from its card)."""
    from socialsynth.classify.model import read_card

    return summary.get("task") or read_card(cfg.model_dir)["task"]
