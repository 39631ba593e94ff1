#!/usr/bin/env python
"""Where `make demo`'s time goes: the demo job (data/askmen.jsonl, formality, embedded model) split by stage.

The run record (<output>.meta.json) already counts tokens and seconds per stage of the generating model:
rewrite (generation), rate (likelihood rating), fluency (perplexity). This script runs the same job in this
process, adds what the record does not time (loading the models, MiniLM embeddings for the content check),
and prints one table: seconds per stage, share of the run's wall time, tokens in/out and tokens/s.

    python bench/demo_profile.py                     # the whole demo (40 comments): several minutes on 2 cores
    python bench/demo_profile.py --comments 8        # a slice
    python bench/demo_profile.py --comments 8 --ab   # the slice twice: rating prompts shared, then not shared

`--ab` measures the rating change of issue 17 (each level prompt's cache shared by every rated text) against
the old way, in one process, with the same prompts and seeds.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import update_results  # noqa: E402

STAGE_NAMES = {"rewrite": "generation", "rate": "rating", "fluency": "fluency (perplexity)"}


class Timers:
    """Seconds spent in functions the run record does not time (model loading, embeddings)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, owner, attribute: str, stage: str) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

        setattr(owner, attribute, timed)
        self._undo.append((owner, attribute, original))

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._undo):
            setattr(owner, attribute, original)
        self._undo.clear()


def run_demo(comments: int, output: Path, extra: list[str]) -> dict:
    """Run the demo job on the first `comments` comments; return {"wall", "stages": {name: {...}}}."""
    from socialsynth.jobs.norms.cli import main
    from socialsynth.llm.hf import HFBackend
    from socialsynth.text.embeddings import Embedder

    timers = Timers()
    timers.wrap(HFBackend, "__init__", "load (generator)")
    timers.wrap(Embedder, "encode", "embeddings")
    argv = ["-r", "askmen", "-n", "formality", "-d", str(ROOT / "data"), "-o", str(output), "-e", str(comments),
            "--overwrite", *extra]
    t0 = time.perf_counter()
    try:
        code = main(argv)
    finally:
        timers.restore()
    wall = time.perf_counter() - t0
    if code:
        raise SystemExit(f"the demo job failed (exit {code})")
    meta = json.loads(next(output.glob("*.meta.json")).read_text())
    stages = {}
    for model, table in meta.get("tokens", {}).items():
        for stage, entry in table.items():
            name = STAGE_NAMES.get(stage, stage) + ("" if model == "embedded" else f" ({model})")
            stages[name] = {"seconds": entry["seconds"], "in": entry["in"], "out": entry["out"]}
    for name, seconds in timers.seconds.items():
        stages[name] = {"seconds": round(seconds, 3), "in": 0, "out": 0}
    stages["other (reading, cleaning, writing)"] = {
        "seconds": round(max(0.0, wall - sum(s["seconds"] for s in stages.values())), 3), "in": 0, "out": 0}
    return {"wall": round(wall, 2), "stages": stages}


def print_profile(title: str, profile: dict) -> None:
    wall = profile["wall"]
    print(f"\n{title}: {wall:.1f} s wall")
    print(f"{'stage':38} {'seconds':>8} {'share':>6} {'tokens in':>10} {'tokens out':>10} {'tok/s':>8}")
    for name, s in sorted(profile["stages"].items(), key=lambda kv: -kv[1]["seconds"]):
        tokens = s["in"] + s["out"]
        rate = f"{tokens / s['seconds']:.0f}" if tokens and s["seconds"] else ""
        print(f"{name:38} {s['seconds']:>8.1f} {100 * s['seconds'] / wall:>5.0f}% {s['in']:>10,} {s['out']:>10,} "
              f"{rate:>8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--comments", type=int, default=40, help="first N comments of data/askmen.jsonl (the demo: 40)")
    ap.add_argument("--ab", action="store_true",
                    help="run twice: rating prompts shared (new), then SOCIALSYNTH_SHARE_PROMPTS=0 (old)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("job_flags", nargs="*", help="extra flags for the job, after --")
    args = ap.parse_args()

    from socialsynth.llm import hf

    profiles = {}
    with tempfile.TemporaryDirectory(prefix="demo_profile_") as tmp:
        variants = [("rating prompts shared", True), ("rating prompts not shared", False)] if args.ab else [
            ("this checkout", hf.SHARE_PROMPTS)]
        for label, share in variants:
            hf.SHARE_PROMPTS = share
            profiles[label] = run_demo(args.comments, Path(tmp) / label.replace(" ", "_"), args.job_flags)
            print_profile(f"{args.comments} comments, {label}", profiles[label])
    hf.SHARE_PROMPTS = True
    if args.ab:
        new, old = profiles["rating prompts shared"], profiles["rating prompts not shared"]
        rating = "rating"
        print(f"\nrating: {old['stages'][rating]['seconds']:.1f} s -> {new['stages'][rating]['seconds']:.1f} s; "
              f"whole run {old['wall']:.1f} s -> {new['wall']:.1f} s (same process, same prompts and seeds)")
    update_results(args.results, "demo_profile", {"comments": args.comments, "profiles": profiles})
    print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
