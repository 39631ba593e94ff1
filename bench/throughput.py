#!/usr/bin/env python
"""Batched generation throughput of the embedded model against its compute bound (issue 6's target).

Workload: the normness rewrite prompts (five levels per comment) of the sample subreddit, sampled with the
suite's defaults (T 0.7, top-p 0.9, repetition penalty 1.1) up to 256 new tokens, bf16. Useful tokens are new
tokens up to and including the end of turn; "computed" counts every row-step the model ran, idle slots
included. Runs, in one process on the same prompts:

  * static batches: the previous decoder (batches of 64 cut by length, finished rows dropped, a batch
    runs until its longest answer ends), as the baseline;
  * continuous batching at 64, 128 and 256 slots: a finished row's slot goes to the next waiting prompt
    (its keys/values are written right-aligned into the live cache).

The compute bound is the model's matmul work per token (2 x parameters touched, plus attention over the
average context) at the bf16 matmul rate measured here on the decoder's own layer shapes at a large batch.

    python bench/throughput.py                  # ~7 min on 2 cores; updates bench/results.json
    python bench/throughput.py --comments 12 --slots 64   # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import update_results  # noqa: E402

from socialsynth.core.io import read_records  # noqa: E402
from socialsynth.jobs.norms.rewrite import rewrite_chat  # noqa: E402
from socialsynth.llm import GenerationParams  # noqa: E402
from socialsynth.llm import decode as decode_module  # noqa: E402
from socialsynth.llm.decode import decode  # noqa: E402
from socialsynth.llm.hf import HFBackend  # noqa: E402
from socialsynth.prompts import load_dimension, load_template  # noqa: E402


def matmul_peak(model, rows: int = 2048, repeats: int = 5) -> float:
    """bf16 GFLOP/s of the decoder's own linear layers (one of each shape) at `rows` tokens per call."""
    shapes = {(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    flops = seconds = 0.0
    for k, n in sorted(shapes):
        x = torch.randn(rows, k, dtype=torch.bfloat16)
        w = torch.randn(n, k, dtype=torch.bfloat16)
        torch.nn.functional.linear(x, w)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.nn.functional.linear(x, w)
            best = min(best, time.perf_counter() - t0)
        flops += 2 * rows * k * n
        seconds += best
    return flops / seconds / 1e9


def flops_per_token(model, context: float) -> float:
    """Matmul FLOPs of one decoded token: every linear weight once (the tied output head included), plus
    attention scores and values over `context` positions."""
    cfg = model.config
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attention = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * context
    return 2 * linear + attention


class ForwardClock:
    """Time spent inside the model's forward (the rest of decoding is sampling and bookkeeping)."""

    def __init__(self, model):
        self.model, self.seconds, self.calls = model, 0.0, 0
        self._forward = model.forward

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return self._forward(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        model.forward = timed

    def reset(self):
        self.seconds, self.calls = 0.0, 0


class WindowFill:
    """Attention cells of decode steps: all (rows x window columns) and those a live prompt uses (mask ones);
    their ratio is how much of attention's work is real: the window is as wide as the oldest live row."""

    def __init__(self):
        self.window = self.used = 0
        run = decode_module.ContinuousBatcher.run

        def counted(batcher, *a, **k):
            try:
                return run(batcher, *a, **k)
            finally:
                self.window += batcher.window_cells
                self.used += batcher.used_cells

        decode_module.ContinuousBatcher.run = counted

    def reset(self):
        self.window = self.used = 0

    def share(self) -> float:
        return self.used / self.window if self.window else float("nan")


def static_batches(backend: HFBackend, chats, params, keys) -> tuple[int, int]:
    """The previous decoder: length-sorted batches under the budget, each decoded to its end on its own."""
    from socialsynth.llm.base import request_seed

    prompts = [backend.encode_chat(c) for c in chats]
    seeds = [request_seed(params.seed, k) for k in keys]
    useful = computed = 0
    for prefix, batch, suffixes in backend._plan(prompts, params.max_new_tokens, max_padding=None):
        outs, steps = decode(
            backend.model, suffixes, prefix, params, [seeds[i] for i in batch], backend.eos_ids, backend.pad_id
        )
        useful += sum(len(ids) for ids, _ in outs)
        computed += steps
    return useful, computed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "askmen.jsonl"))
    ap.add_argument("--dimension", default="formality")
    ap.add_argument("--comments", type=int, default=40, help="comments (x5 rewrite prompts)")
    ap.add_argument(
        "--repeat", type=int, default=2, help="ask for each prompt this many times (other seeds): a bigger job"
    )
    ap.add_argument("--slots", default="64,128,256", help="continuous-batching sizes to run")
    ap.add_argument("--no-static", action="store_true", help="skip the static-batch baseline")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args()

    rows = read_records(args.data, required=("id", "comment")).records[: args.comments]
    dim, template = load_dimension(args.dimension), load_template("norm_rewrite")
    chats = [
        rewrite_chat(dim, template, r.get("submission_title", ""), r["comment"], lv) for r in rows for lv in range(1, 6)
    ]
    keys = [f"{r['id']}:{lv}" for r in rows for lv in range(1, 6)]
    chats = chats * args.repeat
    keys = [f"{k}:{rep}" for rep in range(args.repeat) for k in keys]
    params = GenerationParams(max_new_tokens=args.max_new_tokens)  # the suite's sampling defaults
    backend = HFBackend(max_batch_tokens=1 << 30)
    model = backend.model
    clock = ForwardClock(model)
    fill = WindowFill()
    prompt_tokens = sum(len(backend.encode_chat(c)) for c in chats)
    print(
        f"threads {torch.get_num_threads()}, {len(chats)} prompts ({prompt_tokens / len(chats):.0f} tokens on "
        f"average), up to {params.max_new_tokens} new tokens, T {params.temperature} top-p {params.top_p}"
    )
    backend.generate(chats[:4], GenerationParams(max_new_tokens=4))  # warm-up
    peak = matmul_peak(model)
    print(f"bf16 matmul rate on the model's layer shapes (2048 rows): {peak:.0f} GFLOP/s")

    runs = {}
    if not args.no_static:
        clock.reset()
        t0 = time.perf_counter()
        useful, computed = static_batches(backend, chats, params, keys)
        print(f"  static 64: {time.perf_counter() - t0:.1f} s", flush=True)
        runs["static 64"] = (useful, computed, time.perf_counter() - t0, clock.seconds)
    fills = {}
    for slots in [int(s) for s in args.slots.split(",") if s]:
        backend.max_batch_size = slots
        clock.reset()
        fill.reset()
        before_new, before_pad = backend.stats.new_tokens, backend.stats.padded_tokens
        t0 = time.perf_counter()
        backend.generate(chats, params, keys=keys)
        seconds = time.perf_counter() - t0
        fills[f"continuous {slots}"] = round(fill.share(), 3)
        print(f"  continuous {slots}: {seconds:.1f} s; live share of attention cells {fill.share():.2f}", flush=True)
        runs[f"continuous {slots}"] = (
            backend.stats.new_tokens - before_new,
            backend.stats.padded_tokens - before_pad,
            seconds,
            clock.seconds,
        )

    base = runs.get("static 64")
    avg_new = None
    print(
        f"\n{'run':24} {'useful tok':>10} {'computed':>9} {'s':>7} {'useful/s':>9} {'prompts/s':>9} {'vs static':>9} "
        f"{'in model %':>10} {'GFLOP/s':>8} {'of peak':>8}"
    )
    table = {}
    for name, (useful, computed, seconds, in_model) in runs.items():
        avg_new = useful / len(chats)
        context = prompt_tokens / len(chats) + avg_new / 2
        gflops = computed * flops_per_token(model, context) / seconds / 1e9
        ratio = (useful / seconds) / (base[0] / base[2]) if base else float("nan")
        print(
            f"{name:24} {useful:>10,} {computed:>9,} {seconds:>7.1f} {useful / seconds:>9.0f} "
            f"{len(chats) / seconds:>9.2f} {ratio:>8.2f}x "
            f"{100 * in_model / seconds:>9.0f}% {gflops:>8.0f} {100 * gflops / peak:>7.0f}%"
        )
        table[name] = {
            "useful_tokens": useful,
            "computed_row_steps": computed,
            "seconds": round(seconds, 2),
            "useful_tok_s": round(useful / seconds, 1),
            "prompts_s": round(len(chats) / seconds, 3),
            "vs_static": round(ratio, 2),
            "in_model_share": round(in_model / seconds, 3),
            "gflop_s": round(gflops, 1),
        }
        if name in fills:
            table[name]["attention_live_share"] = fills[name]
    bound = peak * 1e9 / flops_per_token(model, prompt_tokens / len(chats) + (avg_new or 0) / 2)
    best = max(v["useful_tok_s"] for v in table.values())
    print(
        f"\ncompute bound at the measured matmul rate: {bound:.0f} tok/s; best run {best:.0f} useful tok/s "
        f"= {100 * best / bound:.0f}% of it"
    )
    update_results(
        args.results,
        "throughput",
        {
            "prompts": len(chats),
            "avg_prompt_tokens": round(prompt_tokens / len(chats), 1),
            "max_new_tokens": params.max_new_tokens,
            "threads": torch.get_num_threads(),
            "matmul_gflop_s": round(peak, 1),
            "compute_bound_tok_s": round(bound, 1),
            "best_useful_tok_s": best,
            "runs": table,
        },
    )
    print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
