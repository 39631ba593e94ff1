#!/usr/bin/env python
"""The short table of bench/results.json: one line per figure a reader cares about, ours against the baseline
measured in the same process. Written to bench/results.md and, with --readme, between the README's
`<!-- bench:start -->` and `<!-- bench:end -->` markers.

    python bench/report.py            # print, write bench/results.md
    python bench/report.py --readme   # also refresh the README's table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from socialsynth.core.io import atomic_write_text  # noqa: E402

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


Row = tuple[str, str, str, str, str]

# generation.py's rows: (figure, baseline key, socialsynth key, ratio key)
GENERATION_ROWS = (
    (
        "generation, useful new tokens/s, research code's way vs ours",
        "seed_way_useful_tok_s",
        "ours_useful_tok_s",
        "speedup",
    ),
    (
        "rating, comments/s: generate-and-parse (seed) vs one forward pass",
        "rating_generate_seed_way_per_s",
        "rating_forward_per_s",
        "rating_speedup_vs_seed_generate",
    ),
)


def rows(results: dict) -> list[Row]:
    """(bench script, figure, baseline, socialsynth, ratio) for every section present."""
    out: list[Row] = []

    def add(script: str, figure: str, baseline: str, ours: str, ratio: str = "-") -> None:
        out.append((script, figure, baseline, ours, ratio))

    tp = results.get("throughput")
    if tp:
        runs = tp["runs"]
        static = runs.get("static 64")
        best_name = max(runs, key=lambda k: runs[k]["useful_tok_s"])
        best = runs[best_name]
        add(
            "throughput.py",
            f"batched generation, useful new tokens/s ({tp['prompts']} rewrite prompts, up to "
            f"{tp['max_new_tokens']} tokens)",
            f"{_fmt(static['useful_tok_s'])} (static batches of 64)" if static else "-",
            f"{_fmt(best['useful_tok_s'])} ({best_name} slots)",
            f"{best['vs_static']:.2f}x" if static else "-",
        )
        add(
            "throughput.py",
            "share of the compute bound (matmul work per token at the measured bf16 rate)",
            f"{_fmt(tp['compute_bound_tok_s'])} tok/s bound ({_fmt(tp['matmul_gflop_s'])} GFLOP/s)",
            f"{100 * best['useful_tok_s'] / tp['compute_bound_tok_s']:.0f}%",
        )
    gen = results.get("generation")
    if gen:
        for figure, base, ours, ratio in GENERATION_ROWS:
            add("generation.py", figure, _fmt(gen[base]), _fmt(gen[ours]), f"{gen[ratio]:.1f}x")
    cs = results.get("classify_speed")
    if cs:
        naive, ours = cs["runs"]["naive"], cs["runs"]["ours"]
        add(
            "classify_speed.py",
            f"MiniLM fine-tuning, seconds per epoch ({cs['texts']:,} tweets)",
            f"{naive['epoch_s']:.1f} s (padded to 128, fp32)",
            f"{ours['epoch_s']:.1f} s",
            f"{cs['ratio_naive_over_ours']:.2f}x",
        )
    cr = results.get("classify_real")
    if cr:
        for name, ds in cr["datasets"].items():
            models = ds.get("models", {})
            if "embedded" not in models or "tfidf-logreg" not in models:
                continue
            metric = next(iter(models["embedded"]["headline"]))
            add(
                "classify_real.py",
                f"{name} ({ds['task']}), test {metric}: TF-IDF linear model vs fine-tuned MiniLM",
                f"{models['tfidf-logreg']['headline'][metric]:.3f}",
                f"{models['embedded']['headline'][metric]:.3f}",
            )
    rs = results.get("responses")
    if rs and {"pac-lora", "lora", "zero-shot"} <= set(rs.get("metrics", {})):
        m = rs["metrics"]
        n = m["pac-lora"]["n"]
        for key, label in (
            ("sentiment_acc", "sentiment agreement"),
            ("jsd", "per-topic sentiment JSD (lower is better)"),
        ):
            add(
                "responses_rumoureval.py",
                f"RumourEval replies ({n} test cases): {label}, plain LoRA / zero-shot vs PAC-LoRA",
                f"{m['lora'][key]['mean']:.3f} / {m['zero-shot'][key]['mean']:.3f}",
                f"{m['pac-lora'][key]['mean']:.3f}",
            )
    if results.get("engines"):
        out += engine_rows(results["engines"])
    cl = results.get("cluster")
    if cl and cl.get("sizes"):
        big = cl["sizes"][-1]
        add(
            "cluster.py",
            f"Jetstream parse + fold into users, events/s ({big['events']:,} events)",
            "-",
            _fmt(big["parse_fold_events_per_s"]),
            f"10x events: {cl['time_ratio']:.1f}x time",
        )
    return out


def engine_rows(en: dict) -> list[Row]:
    """engines.py, at the comparable repetition penalty (1.0: every engine samples the same way): ours against the
    best other engine, useful new tokens/s and prompts/s (medians over the repeats)."""
    comparable = [r for r in en["runs"] if r["penalty"] == 1.0] or en["runs"]
    ours = next((r for r in comparable if r["engine"] == "ours"), None)
    others = [r for r in comparable if r["engine"] != "ours"]
    if ours is None or not others:
        return []
    setting = (f"{en['prompts']} rewrite prompts, up to {en['max_new_tokens']} tokens, penalty {ours['penalty']}, "
               f"{en['threads']} thread(s), median of {en['repeat']}")
    out: list[Row] = []
    for key, unit in (("useful_tok_s_median", "useful new tokens/s"), ("prompts_s_median", "prompts/s")):
        best = max(others, key=lambda r: r[key])
        out.append(("engines.py", f"ours vs the best other engine, {unit} ({setting})",
                    f"{_fmt(best[key])} ({best['engine']})", _fmt(ours[key]), f"{ours[key] / best[key]:.2f}x"))
    return out


def table(results: dict) -> str:
    lines = ["| bench | figure | baseline | socialsynth | ratio |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--readme", action="store_true", help="refresh the README's table too")
    args = ap.parse_args()
    path = Path(args.results)
    if not path.exists():
        print(f"{path} does not exist: run the bench scripts first (make bench)", file=sys.stderr)
        return 2
    text = table(json.loads(path.read_text()))
    print(text)
    atomic_write_text(ROOT / "bench" / "results.md", text)
    if args.readme:
        readme = ROOT / "README.md"
        body = readme.read_text()
        if START not in body or END not in body:
            print(f"README.md has no {START} ... {END} block", file=sys.stderr)
            return 2
        head, rest = body.split(START, 1)
        _, tail = rest.split(END, 1)
        atomic_write_text(readme, f"{head}{START}\n{text}{END}{tail}")
        print("README.md table refreshed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
