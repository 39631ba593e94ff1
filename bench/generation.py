#!/usr/bin/env python
"""Generation and rating throughput of the embedded model: the research code's way against ours, same process.

The research code (seed 000) generates one comment's six prompts (five rewrites + one rating) per
`model.generate` call, right-padded, in fp32, sampling at T=1 up to 256 tokens. Ours batches all prompts of
a chunk with left padding after a cached shared head, bf16, refills finished rows' slots, and rates with one forward
pass. Both sides get the same prompts and sampling parameters; we count useful new tokens (up to and
including end of turn), not padding.

    python bench/generation.py                 # prints a table, updates bench/results.json
    python bench/generation.py --seed-comments 4 --comments 40
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
from socialsynth.jobs.norms.rewrite import Rater, rating_chat, rewrite_chat  # noqa: E402
from socialsynth.llm import GenerationParams  # noqa: E402
from socialsynth.llm.hf import HFBackend  # noqa: E402
from socialsynth.prompts import load_dimension, load_template  # noqa: E402


def six_prompts(dim, row):
    rw, rt = load_template("norm_rewrite"), load_template("norm_rating")
    chats = [rewrite_chat(dim, rw, row.get("submission_title", ""), row["comment"], lv) for lv in range(1, 6)]
    return chats + [rating_chat(dim, rt, row.get("submission_title", ""), row["comment"])]


@torch.inference_mode()
def seed_way(model, tokenizer, chats, params: GenerationParams, eos_ids) -> tuple[int, int]:
    """One comment's prompts in one generate call: right padding, like the research code. Returns
    (useful new tokens, padded new tokens)."""
    tokenizer.padding_side = "right"
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(params.seed)
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
    )
    new = out[:, enc["input_ids"].shape[1] :]
    useful = 0
    for row in new.tolist():
        n = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
        useful += n
    return useful, new.numel()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "data" / "askmen.jsonl"))
    ap.add_argument("--dimension", default="formality")
    ap.add_argument("--seed-comments", type=int, default=4, help="comments run the research code's way (slow)")
    ap.add_argument("--comments", type=int, default=40, help="comments run our way")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args()

    rows = read_records(args.data, required=("id", "comment")).records
    dim = load_dimension(args.dimension)
    params = GenerationParams(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=args.max_new_tokens)
    ours = HFBackend(max_batch_size=args.batch_size)  # bf16
    fp32 = HFBackend(dtype="fp32")
    print(
        f"threads: {torch.get_num_threads()}, model: embedded SmolLM2-135M-Instruct, sampling T=1 top-p=1, "
        f"max {args.max_new_tokens} new tokens"
    )

    # -- the research code's way -------------------------------------------------------------------------
    useful = padded = 0
    t0 = time.perf_counter()
    for row in rows[: args.seed_comments]:
        u, p = seed_way(fp32.model, fp32.tokenizer, six_prompts(dim, row), params, fp32.eos_ids)
        useful, padded = useful + u, padded + p
    seed_s = time.perf_counter() - t0
    seed_tps = useful / seed_s
    print(
        f"seed way : {args.seed_comments} comments, {useful} useful / {padded} computed new tokens in "
        f"{seed_s:.1f} s = {seed_tps:.1f} useful tok/s"
    )

    # -- ours --------------------------------------------------------------------------------------------
    chats = [c for row in rows[: args.comments] for c in six_prompts(dim, row)]
    keys = [str(i) for i in range(len(chats))]
    ours.generate(chats[:2], GenerationParams(max_new_tokens=2))  # warm-up
    before = ours.stats.new_tokens
    t0 = time.perf_counter()
    comps = ours.generate(chats, params, keys=keys)
    ours_s = time.perf_counter() - t0
    ours_useful = sum(c.n_new_tokens for c in comps)
    assert ours_useful == ours.stats.new_tokens - before
    ours_tps = ours_useful / ours_s
    print(
        f"ours     : {args.comments} comments, {ours_useful} useful new tokens in {ours_s:.1f} s = "
        f"{ours_tps:.1f} useful tok/s"
    )
    print(f"speed-up : {ours_tps / seed_tps:.1f}x")

    # -- rating: forward passes vs generate-and-parse --------------------------------------------------
    items = [(r.get("submission_title", ""), r["comment"]) for r in rows[: args.comments]]
    t0 = time.perf_counter()
    Rater(ours, dim, "logits").rate(items)
    fwd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Rater(ours, dim, "likelihood").rate(items)
    lik_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Rater(ours, dim, "generate").rate(items)
    gen_s = time.perf_counter() - t0
    # The research code's way: its rating prompt, sampled at T=1 up to 256 tokens, fp32, one comment a call.
    seed_tpl = load_template("norm_rating_seed")
    n_seed = max(1, args.seed_comments)
    t0 = time.perf_counter()
    for title, comment in items[:n_seed]:
        seed_way(fp32.model, fp32.tokenizer, [rating_chat(dim, seed_tpl, title, comment)], params, fp32.eos_ids)
    seed_gen_s = (time.perf_counter() - t0) / n_seed * len(items)
    print(
        f"rating   : forward pass {len(items) / fwd_s:.1f} comments/s; research code's generate-and-parse "
        f"{len(items) / seed_gen_s:.2f}/s ({seed_gen_s / fwd_s:.1f}x slower); our batched generate-and-parse "
        f"(same prompt as the forward pass, greedy, 12 tokens) {len(items) / gen_s:.1f}/s ({gen_s / fwd_s:.1f}x slower)"
    )
    print(
        f"rating   : likelihood (5 teacher-forced passes) {len(items) / lik_s:.1f} comments/s, "
        f"{seed_gen_s / lik_s:.1f}x faster than the research code's generate-and-parse"
    )

    update_results(
        args.results,
        "generation",
        {
            "seed_way_useful_tok_s": round(seed_tps, 1),
            "ours_useful_tok_s": round(ours_tps, 1),
            "speedup": round(ours_tps / seed_tps, 2),
            "seed_comments": args.seed_comments,
            "comments": args.comments,
            "rating_forward_per_s": round(len(items) / fwd_s, 2),
            "rating_generate_batched_per_s": round(len(items) / gen_s, 2),
            "rating_generate_seed_way_per_s": round(len(items) / seed_gen_s, 3),
            "rating_speedup_vs_batched_generate": round(gen_s / fwd_s, 2),
            "rating_speedup_vs_seed_generate": round(seed_gen_s / fwd_s, 2),
            "rating_likelihood_per_s": round(len(items) / lik_s, 2),
            "rating_likelihood_speedup_vs_seed_generate": round(seed_gen_s / lik_s, 2),
            "threads": torch.get_num_threads(),
        },
    )
    print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
