#!/usr/bin/env python
"""The sparsity ladder of seed 003 on real data (not CI): Jigsaw (binary is_bad, 9.8% positive) split 80/10/10;
the training split is made sparse (0.25% positives by default, by dropping real positives), synthetic positives are
generated with the embedded model from the sparse split's own positives (time-boxed: SIGTERM at the end of the box,
the job keeps what it wrote), and tfidf-logreg is trained at each positive rate the synthetic positives can reach.
A second ladder on the full real training split (real positives dropped to each rate) is the reference: what the
same rate of *real* positives gives.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/augment_ladder.py               # ~15 min here
    .venv/bin/python bench/augment_ladder.py --synthetic output/bench_augment/synthetic_1.jsonl   # reuse
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from socialsynth.classify.data import split_indices  # noqa: E402
from socialsynth.jobs.augment.data import RealData, read_labelled  # noqa: E402
from socialsynth.jobs.augment.ladder import LadderConfig, build_ladder, format_ladder, read_synthetic, run_ladder  # noqa: E402

JIGSAW = REPO.parent / "shared" / "data" / "real" / "jigsaw_toxic" / "jigsaw_natural_5000.csv"


def write_table(path: Path, rows, text_col: str, label_col: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", text_col, label_col])
        writer.writerows(rows)
    return path


def subset(data: RealData, index) -> list[tuple]:
    return [(data.ids[i], data.texts[i], data.raw_labels[i]) for i in index]


def generate(args, sparse_train: Path, out: Path) -> tuple[Path, float]:
    """augment_labels.py on the sparse split, stopped by SIGTERM when the time box ends (it resumes if rerun)."""
    cmd = [
        sys.executable, "augment_labels.py", "--input", str(sparse_train), "--text-col", args.text_col,
        "--label-col", args.label_col, "--target-label", args.target_label, "--label-name", args.label_name,
        "--definition-file", "data/label_definitions.yaml", "--n", str(args.n), "-b", "16",
        "--max-new-tokens", "160", "-o", str(out), "--max-requests", str(args.n),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    try:
        proc.wait(timeout=args.gen_minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # finishes the chunk in flight, writes, exits 143
        proc.wait()
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 143):
        sys.exit(f"generation failed with exit code {proc.returncode}")
    return out / f"synthetic_{args.target_label}.jsonl", seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=JIGSAW)
    p.add_argument("--text-col", default="comment_text")
    p.add_argument("--label-col", default="is_bad")
    p.add_argument("--target-label", default="1")
    p.add_argument("--label-name", default="toxic")
    p.add_argument("--base-rate", type=float, default=0.0025, help="positive rate of the sparse real training set")
    p.add_argument("--rates", default="0.0025,0.01,0.03,0.05")
    p.add_argument("--synthetic", type=Path, default=None, help="reuse this synthetic file (no generation)")
    p.add_argument("--n", type=int, default=200, help="synthetic positives to aim for")
    p.add_argument("--gen-minutes", type=float, default=10.0, help="time box of the generation")
    p.add_argument("--classifier", default="tfidf-logreg")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output-dir", type=Path, default=REPO / "output" / "bench_augment")
    args = p.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} not found", file=sys.stderr)
        return 0
    out = args.output_dir
    t0 = time.perf_counter()
    data = read_labelled(args.data, args.text_col, args.label_col)
    tr, va, te = split_indices(len(data.texts), args.seed, 0.1, 0.1, stratify=data.labels)
    train = RealData(*([col[i] for i in tr] for col in (data.texts, data.labels, data.raw_labels, data.ids)), data.path)
    files = {
        "train": write_table(out / "real_train.csv", subset(data, tr), args.text_col, args.label_col),
        "val": write_table(out / "val.csv", subset(data, va), args.text_col, args.label_col),
        "test": write_table(out / "test.csv", subset(data, te), args.text_col, args.label_col),
    }
    (sparse,) = build_ladder(train, args.target_label, [], [args.base_rate], seed=args.seed)
    files["sparse"] = write_table(out / "sparse_train.csv", [r[:3] for r in sparse.rows], args.text_col, args.label_col)
    print(f"sparse real training set: {sparse.positives} positives of {sparse.size} ({sparse.achieved:.4%})")
    gen_seconds = None
    syn_file = args.synthetic
    if syn_file is None:
        syn_file, gen_seconds = generate(args, files["sparse"], out)
    synthetic = read_synthetic(syn_file, args.text_col, args.label_col, args.target_label)
    meta = (
        json.loads((syn_file.with_name(syn_file.stem + ".meta.json")).read_text())
        if syn_file.suffix == ".jsonl"
        else {}
    )
    rates = [float(r) for r in args.rates.split(",")]
    reachable = [r for r in rates if round(r * sparse.size) - sparse.positives <= len(synthetic)]
    capped = [r for r in rates if r not in reachable]
    print(
        f"synthetic positives passing the filters: {len(synthetic)} of {meta.get('n_generated', '?')} generated in "
        f"{meta.get('n_requests', '?')} requests" + (f", {gen_seconds / 60:.1f} min" if gen_seconds else "")
    )
    reports = {}
    for name, train_file in (("synthetic", files["sparse"]), ("real reference", files["train"])):
        cfg = LadderConfig(
            output_dir=out / name.replace(" ", "_"),
            target_label=args.target_label,
            rates=reachable + capped[:1],  # the first unreachable rate shows the cap
            train=train_file,
            val=files["val"],
            test=files["test"],
            text_col=args.text_col,
            label_col=args.label_col,
            seed=args.seed,
            evaluate=True,
            classifier=args.classifier,
        )
        reports[name] = run_ladder(cfg, synthetic if name == "synthetic" else [])
        print(
            f"\n## {name}: " + ("sparse real + synthetic positives" if name == "synthetic" else "real positives only")
        )
        print(format_ladder(reports[name]))
    results = {
        "data": str(args.data),
        "synthetic_file": str(syn_file),
        "synthetic_passing": len(synthetic),
        "generation_seconds": gen_seconds,
        "ladders": reports,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "bench_augment.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal {results['seconds']} s; results in {out / 'bench_augment.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
