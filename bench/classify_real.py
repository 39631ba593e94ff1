#!/usr/bin/env python
"""Classifier figures on real data: the embedded MiniLM against the TF-IDF baselines, through run_training.

Data sets (under --data, default /work/shared/data/real; a missing one is skipped):

    davidson  davidson_hate_offensive/labeled_data.csv   multiclass on `class` (0 hate, 1 offensive, 2 neither)
    jigsaw    jigsaw_toxic/jigsaw_natural_5000.csv       binary on `is_bad` (text `comment_text`)
    pii       pii_ner_social/docs.jsonl                  multilabel on `entity_types` (id `doc_id`)
    upvote    reddit_college (comments + posts)          regression, --preset upvote, on the file that
                                                         `python -m socialsynth prepare` writes

Each data set is split once, seeded, the way run_training splits one --input file (80/10/10, stratified for
binary and multiclass; the upvote preset first keeps its seeded training half); then the training part is
subsampled to --max-train-rows and the validation part to --max-val-rows, and all three parts are written as
JSONL under --out so every model trains, validates and is tested on exactly the same rows. Each model is one
`run_training` job (train/val/test files), with default settings except the MiniLM's epochs and max length.
A finished job folder is reused when the bench runs again (--overwrite retrains).

    python bench/classify_real.py                                   # about 45 min on 2 cores
    python bench/classify_real.py --datasets jigsaw --models tfidf-logreg,tfidf-mlp
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socialsynth.classify.data import split_indices  # noqa: E402
from socialsynth.classify.labels import label_key  # noqa: E402
from socialsynth.classify.metrics import RANKING_GAPS  # noqa: E402
from socialsynth.classify.model import TrainSettings  # noqa: E402
from socialsynth.classify.presets import UPVOTE_FIELDS, split_half  # noqa: E402
from socialsynth.classify.train import TrainJob, run_training  # noqa: E402
from socialsynth.core.io import atomic_write_json, atomic_write_text, read_records  # noqa: E402

# name: (file under --data, task, text column, label column, id column, max_length, preset)
_DATASET_FIELDS = ("file", "task", "text", "label", "id", "max_length", "preset")
DATASETS = {
    name: dict(zip(_DATASET_FIELDS, row, strict=True))
    for name, row in {
        "davidson": ("davidson_hate_offensive/labeled_data.csv", "multiclass", "tweet", "class", None, 128, None),
        "jigsaw": ("jigsaw_toxic/jigsaw_natural_5000.csv", "binary", "comment_text", "is_bad", "id", 256, None),
        "pii": ("pii_ner_social/docs.jsonl", "multilabel", "text", "entity_types", "doc_id", 128, None),
        "upvote": (None, "regression", None, "label", "id", 256, "upvote"),
    }.items()
}
MODELS = ("embedded", "tfidf-logreg", "tfidf-mlp")
HEADLINE = {
    "binary": ("f1", "f1_at_0.5", "auroc", "auprc"),
    "multiclass": ("macro_f1", "accuracy"),
    "multilabel": ("micro_f1", "macro_f1", "subset_accuracy", "macro_auprc"),
    "regression": ("mse", "r2", "spearman"),
}


# --------------------------------------------------------------------------------------- upvote data


def prepare_upvote(data: Path, out: Path) -> tuple[Path, str]:
    """The processed reddit_college file: `socialsynth prepare` if it works, else built here."""
    target = out / "reddit_college.jsonl"
    if target.exists():
        return target, "existing file (from an earlier run)"
    src = data / "reddit_college"
    cmd = [
        sys.executable,
        "-m",
        "socialsynth",
        "prepare",
        "--comments",
        str(src / "comments.csv"),
        "--submissions",
        str(src / "posts.csv"),
        "-o",
        str(target),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 0 and target.exists():
        return target, "python -m socialsynth prepare"
    print(f"  socialsynth prepare failed (rc {done.returncode}): {done.stderr.strip()[-400:]}\n  building it here")
    posts = {}
    with (src / "posts.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            posts[row["post_id"]] = row
    rows = []
    with (src / "comments.csv").open(encoding="utf-8", newline="") as handle:
        for c in csv.DictReader(handle):
            post = posts.get(c["post_id"])
            text = (c["text"] or "").strip()
            if post is None or c["depth"] != "0" or text in ("[deleted]", "[removed]", ""):
                continue
            if float(c["created_utc"]) - float(post["created_utc"]) > 24 * 3600:
                continue
            rows.append(
                {
                    "id": c["comment_id"],
                    "submission_title": post["title"],
                    "submission_body": post["selftext"],
                    "comment": text,
                    "created_comment": float(c["created_utc"]),
                    "created_submission": float(post["created_utc"]),
                    "label": int(c["upvotes"]),
                }
            )
    atomic_write_text(target, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return target, "built by the bench (top-level, not deleted/removed, within 24 h of the post)"


# ---------------------------------------------------------------------------------------------- splits


def _clean(record: dict, keep: list[str]) -> dict:
    return {k: record.get(k) for k in keep}


def make_splits(name: str, spec: dict, path: Path, out: Path, args) -> dict:
    """Seeded 80/10/10 split, train and val capped; written as JSONL. Returns the paths and row counts."""
    records = read_records(path).records
    task = spec["task"]
    notes = {"source": str(path), "rows": len(records)}
    if spec.get("preset") == "upvote":
        half, _ = split_half(len(records), args.seed)  # the preset's training half, as run_training keeps it
        records = [records[i] for i in half]
        notes["upvote_half"] = len(records)
        keep = ["id", *UPVOTE_FIELDS]
    else:
        keep = [c for c in (spec["id"], spec["text"], spec["label"]) if c]
    strat = [label_key(r.get(spec["label"])) for r in records] if task in ("binary", "multiclass") else None
    tr, va, te = split_indices(len(records), args.seed, 0.1, 0.1, strat)
    rng = np.random.default_rng(args.seed)
    capped = {}
    for part, idx, cap in (
        ("train", tr, args.max_train_rows),
        ("val", va, args.max_val_rows),
        ("test", te, args.max_test_rows),
    ):
        full = len(idx)
        if cap and len(idx) > cap:
            idx = sorted(rng.choice(idx, size=cap, replace=False).tolist())
        capped[part] = (idx, full)
    folder = out / name / "split"
    folder.mkdir(parents=True, exist_ok=True)
    # run_training reuses a finished folder when the file *paths* match, whatever the files hold: a split made
    # with other caps or seed must not be paired with models trained on the old one.
    signature = {
        "source": str(path),
        "seed": args.seed,
        "caps": [args.max_train_rows, args.max_val_rows, args.max_test_rows],
    }
    sig_path = folder / "bench_split.json"
    if sig_path.exists() and json.loads(sig_path.read_text()) != signature and not args.overwrite:
        raise SystemExit(
            f"{folder} was made with other settings ({json.dumps(json.loads(sig_path.read_text()))}); use "
            "another --out, or --overwrite to resplit and retrain"
        )
    paths = {}
    for part, (idx, full) in capped.items():
        paths[part] = folder / f"{part}.jsonl"
        rows = []
        for i in idx:
            rec = _clean(records[i], keep)
            if spec["id"] is None:
                rec["id"] = f"{name}:{i}"
            rows.append(json.dumps(rec, ensure_ascii=False) + "\n")
        atomic_write_text(paths[part], "".join(rows))
        notes[f"{part}_rows"] = len(idx)
        notes[f"{part}_rows_before_cap"] = full
    atomic_write_json(sig_path, signature)
    notes["reference"] = reference(task, [records[i].get(spec["label"]) for i in capped["test"][0]])
    return {"paths": paths, "notes": notes}


def reference(task: str, labels: list) -> str:
    """What chance looks like on the test rows, to tell a learnt metric from a trivial one."""
    if task == "binary":
        pos = float(np.mean([label_key(v) == "1" for v in labels]))
        return f"test positive rate {pos:.3f} (= the auprc of a random scorer; auroc 0.5)"
    if task == "multiclass":
        counts = Counter(label_key(v) for v in labels)
        top, n = counts.most_common(1)[0]
        return f"test classes {dict(sorted(counts.items()))}; majority class {top} = accuracy {n / len(labels):.3f}"
    if task == "multilabel":
        counts = Counter(t for v in labels for t in (v or []))
        empty = sum(1 for v in labels if not v)
        return f"test labels {dict(counts.most_common())}; rows with no label {empty}/{len(labels)}"
    return "a constant prediction has r2 <= 0 and pairwise accuracy 0.5"


# ---------------------------------------------------------------------------------------------- runs


def run_one(name: str, spec: dict, split: dict, model: str, out: Path, args) -> dict:
    if model == "embedded":
        max_length = args.max_length or spec["max_length"]
        settings = TrainSettings(epochs=args.epochs, max_length=max_length, seed=args.seed)
    else:
        settings = TrainSettings(seed=args.seed)  # defaults; epochs only sets the MLP's iterations (30)
    paths = split["paths"]
    job = TrainJob(
        task=spec["task"],
        output_dir=out / name / model,
        model=model,
        train=[str(paths["train"])],
        val=paths["val"],
        test=paths["test"],
        text_col=spec["text"] or "text",
        label_cols=[spec["label"]],
        id_col="id",
        preset=spec.get("preset"),
        settings=settings,
        overwrite=args.overwrite,
        command="bench/classify_real.py",
    )
    reused = (job.output_dir / "metrics.json").exists() and not args.overwrite
    t0 = time.perf_counter()
    results = run_training(job)
    wall = time.perf_counter() - t0
    test = results.get("test") or {}
    row = {
        "train_rows": results["data"]["train_rows"],
        "val_rows": results["data"]["val_rows"],
        "test_rows": results["data"]["test_rows"],
        "headline": {k: round(v, 4) for k, v in results["headline"].items()},
        "train_seconds": results["seconds"]["train"],
        "total_seconds": results["seconds"]["total"],
        "wall_seconds_this_run": round(wall, 1),
        "reused": reused,  # a finished folder from an earlier run: its figures, including train seconds
        "max_length": settings.max_length if model == "embedded" else None,
        "epochs": settings.epochs if model == "embedded" else None,
        "history": {
            k: results["history"].get(k)
            for k in ("steps", "epochs", "train_seconds", "precision", "best_metric", "features")
            if k in results["history"]
        },
    }
    if spec["task"] == "regression":
        row["pairwise_accuracy"] = test.get("pairwise_accuracy")
        row["pairwise_pairs"] = test.get("pairwise_pairs")
    if spec["task"] in ("multiclass", "multilabel"):
        chosen = test.get("tuned") or test.get("at_0.5") or test  # multilabel: at the tuned thresholds
        row["per_label_f1"] = {
            k: round(v["f1"], 4)
            for k, v in (chosen.get("per_label") or {}).items()
            if isinstance(v, dict) and v.get("f1") is not None
        }
    return row


def print_table(name: str, spec: dict, block: dict) -> None:
    task = spec["task"]
    keys = list(HEADLINE[task])
    gaps = [str(float(g)) for g in RANKING_GAPS] if task == "regression" else []
    head = f"{'model':<13} {'train rows':>10} " + " ".join(f"{k:>11}" for k in keys)
    head += "".join(f" {'pair@' + g:>10}" for g in gaps) + f" {'train s':>8}"
    notes = block["split"]
    print(f"\n== {name}: {task} on {notes['source']} (test set, {notes['test_rows']} rows)")
    print(head)
    print("-" * len(head))
    for model, row in block["models"].items():
        if "error" in row:
            print(f"{model:<13} ERROR {row['error']}")
            continue
        cells = " ".join(f"{row['headline'].get(k, float('nan')):11.4f}" for k in keys)
        pairs = "".join(f" {(row.get('pairwise_accuracy') or {}).get(g) or float('nan'):10.4f}" for g in gaps)
        print(f"{model:<13} {row['train_rows']:>10} {cells}{pairs} {row['train_seconds']:8.1f}")
    for model, row in block["models"].items():
        if row.get("per_label_f1"):
            print(f"  per-label f1, {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in row["per_label_f1"].items()))
    capped = [p for p in ("train", "val", "test") if notes[f"{p}_rows"] < notes[f"{p}_rows_before_cap"]]
    if capped:
        print(
            "subsampled: " + ", ".join(f"{p} {notes[f'{p}_rows']} of {notes[f'{p}_rows_before_cap']}" for p in capped)
        )
    print(f"reference: {notes['reference']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="davidson,jigsaw,pii,upvote")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--data", default="/work/shared/data/real", help="folder of the real data sets")
    ap.add_argument("--out", default="/work/scratch/bench_classify", help="splits, models and predictions")
    ap.add_argument("--epochs", type=float, default=2.0, help="MiniLM epochs")
    ap.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="MiniLM tokens per text (default 128 for the tweet sets, 256 for jigsaw and upvote)",
    )
    ap.add_argument("--max-train-rows", type=int, default=3000, help="subsample training rows (0: all)")
    ap.add_argument("--max-val-rows", type=int, default=800, help="subsample validation rows (0: all)")
    ap.add_argument("--max-test-rows", type=int, default=0, help="subsample test rows (0: all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--overwrite", action="store_true", help="retrain models whose folder is finished")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import transformers

    transformers.logging.set_verbosity_error()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for d in datasets:
        if d not in DATASETS:
            ap.error(f"unknown data set {d!r} (have {', '.join(DATASETS)})")
    import torch

    print(
        f"threads: {torch.get_num_threads()}, seed {args.seed}, MiniLM {args.epochs:g} epochs; caps: train "
        f"{args.max_train_rows or 'all'}, val {args.max_val_rows or 'all'}, test {args.max_test_rows or 'all'}; "
        f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    summary = {"settings": {k: v for k, v in vars(args).items() if k not in ("results", "overwrite")}, "datasets": {}}
    started = time.perf_counter()
    for name in datasets:
        spec = DATASETS[name]
        if name == "upvote":
            if not (data / "reddit_college" / "comments.csv").exists():
                print(f"\n== {name}: skipped (no reddit_college data under {data})")
                continue
            path, how = prepare_upvote(data, out)
            print(f"\n[{name}] processed file {path} ({how})", flush=True)
        else:
            path = data / spec["file"]
            if not path.exists():
                print(f"\n== {name}: skipped ({path} not found)")
                continue
        split = make_splits(name, spec, path, out, args)
        block = {"task": spec["task"], "split": split["notes"], "models": {}}
        if name == "upvote":
            block["split"]["prepared_by"] = how
        summary["datasets"][name] = block
        for model in models:
            t0 = time.perf_counter()
            print(f"[{name}] {model} ... (load {os.getloadavg()[0]:.2f})", flush=True)
            try:
                block["models"][model] = run_one(name, spec, split, model, out, args)
            except Exception as exc:  # one failing run must not lose the others' figures
                import traceback

                traceback.print_exc()
                block["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
            print(
                f"[{name}] {model} done in {time.perf_counter() - t0:.0f} s: "
                f"{block['models'][model].get('headline', block['models'][model].get('error'))}",
                flush=True,
            )
            save(args.results, summary)
        print_table(name, spec, block)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    reused = [f"{d}/{m}" for d, b in summary["datasets"].items() for m, r in b["models"].items() if r.get("reused")]
    summary["reused_runs"] = reused
    summary["model_seconds"] = round(
        sum(r.get("total_seconds", 0) for b in summary["datasets"].values() for r in b["models"].values()), 1
    )  # what the runs took when trained
    save(args.results, summary)
    note = f" ({len(reused)} runs reused from an earlier bench: --overwrite retrains)" if reused else ""
    print(
        f"\ntotal {summary['wall_seconds'] / 60:.1f} min{note}; the runs took {summary['model_seconds'] / 60:.1f} min "
        f"when trained; written: {args.results}"
    )
    return 0


def save(path: str, summary: dict) -> None:
    """Merge under "classify_real", re-reading the file first (another bench may have written its key)."""
    results = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    results["classify_real"] = summary
    atomic_write_json(path, results)


if __name__ == "__main__":
    raise SystemExit(main())
