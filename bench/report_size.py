"""Size and build time of `socialsynth report` on a large normness run (issue 16: "a few MB at most for 10,000
records"). Writes N synthetic records (default 10,000) shaped like the job's: an original of about the sample
subreddit's length (30 words), five rewrites that change about a third of its words, the seed's rating fields, the
filters block, preference deltas, and optionally a second judge (--judges 2) and best-of-n candidates
(--candidates K). Then builds the report and prints the file size, the time and the size of the records.

    .venv/bin/python bench/report_size.py                   # 10,000 records, one judge
    .venv/bin/python bench/report_size.py --judges 2 --candidates 2
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import update_results  # noqa: E402

WORDS = ("the a you your my i it is was not just know when time people think really good more like get would "
         "about going pressure girlfriend years friends work money question honestly feel weird ask happy "
         "timeline advice guys wife job love never always maybe because though talk sure already thing").split()
LEVELS = [str(lv) for lv in range(1, 6)]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def rewrite(rng: random.Random, original: str) -> str:
    words = original.split()
    out = [rng.choice(WORDS) if rng.random() < 0.33 else w for w in words]
    if rng.random() < 0.5:
        out += sentence(rng, rng.randint(3, 10)).split()
    return " ".join(out)


def record(i: int, rng: random.Random, judges: int, candidates: int) -> dict:
    original = " ".join(sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(1, 4)))
    rec: dict = {"id": f"t1_{i:07d}", "idx": i, "original_comment": original, "original_score": rng.randint(-5, 900),
                 "submission_title": sentence(rng, rng.randint(5, 12)), "status": "ok"}
    expected = {lv: round(min(5.0, max(1.0, int(lv) + rng.gauss(0, 0.8))), 4) for lv in LEVELS}
    for lv in LEVELS:
        rec[lv] = rewrite(rng, original)
    rec["original_rating"] = rng.randint(1, 5)
    rec["original_rating_detail"] = {"rating": rec["original_rating"], "expected": round(rng.uniform(1, 5), 4)}
    rec["rewrite_ratings"] = {lv: round(v) for lv, v in expected.items()}
    rec["rewrite_ratings_expected"] = expected
    rec["filters"] = {lv: {"empty": False, "refusal": rng.random() < 0.02, "unchanged": False, "degenerate": False,
                           "low_similarity": rng.random() < 0.2, "truncated": rng.random() < 0.03, "passed": True,
                           "similarity": round(rng.uniform(0.3, 0.95), 4), "perplexity": round(rng.uniform(5, 60), 2),
                           "cut": []} for lv in LEVELS}
    for flags in rec["filters"].values():
        flags["passed"] = not any(v is True for k, v in flags.items() if k != "passed")
    rec["preference_delta"] = {lv: round(rng.gauss(0, 0.5), 4) for lv in LEVELS}
    if judges > 1:
        names = [f"judge{j}:likelihood" for j in range(judges)]
        rec["judges"] = names
        rec["ratings"] = {name: {"method": "likelihood", "original": rec["original_rating_detail"],
                                 **{lv: {"rating": round(v), "expected": round(v + rng.gauss(0, 0.5), 4)}
                                    for lv, v in expected.items()}} for name in names}
    if candidates > 1:
        rec["candidates"] = {lv: [{"text": rec[lv] if k == 0 else rewrite(rng, original), "kept": k == 0,
                                   "rating": expected[lv], "similarity": 0.7, "selection_score": -0.3}
                                  for k in range(candidates)] for lv in LEVELS}
    return rec


def write_run(folder: Path, n: int, judges: int, candidates: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    data = folder / "bench_formality.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps(record(i, rng, judges, candidates), ensure_ascii=False) + "\n")
    meta = {"job": "norms", "command": f"bench/report_size.py -n {n}", "versions": {}, "complete": True,
            "status": "finished", "seconds": 0.0, "tokens": {}, "runs": [], "config": {"levels": [1, 2, 3, 4, 5]},
            "dimension": "formality", "summary": {"n_records": n}}
    (folder / "bench_formality.meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="records")
    parser.add_argument("--judges", type=int, default=1)
    parser.add_argument("--candidates", type=int, default=1)
    parser.add_argument("--keep", metavar="DIR", default=None, help="write the run and the report here")
    args = parser.parse_args()
    from socialsynth.report.build import build_report

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data = write_run(folder, args.n, args.judges, args.candidates)
        start = time.perf_counter()
        page = build_report(folder, folder / "report.html")
        seconds = time.perf_counter() - start
        figures = {"records": args.n, "judges": args.judges, "candidates": args.candidates,
                   "records_mb": round(data.stat().st_size / 1e6, 2), "report_mb": round(page.stat().st_size / 1e6, 2),
                   "build_seconds": round(seconds, 2)}
    print(f"{args.n} records ({figures['records_mb']} MB of JSONL, judges {args.judges}, candidates "
          f"{args.candidates}): report {figures['report_mb']} MB, built in {figures['build_seconds']} s")
    update_results(Path(__file__).with_name("results.json"), "report_size", figures)


if __name__ == "__main__":
    main()
