#!/usr/bin/env python
"""Side by side: the same prompts and sampling through our decoder and the other CPU engines (issue 17).

Workload: the normness rewrite prompts of the demo (data/askmen.jsonl x 5 levels, built by the job's own prompt
builder; asked again with other seeds when --prompts wants more), T 0.7, top-p 0.9, up to 256 new tokens, the
embedded model (SmolLM2-135M-Instruct). Engines, one after another in one process, each kept loaded:

  * ours: socialsynth's hf backend (`load_backend("hf", "embedded")`), bf16, continuous batching over --slots rows;
  * generate: plain `transformers.generate` on the same bf16 model, static length-sorted batches of --slots;
  * llamacpp-<weights>: llama.cpp's `llama-server` (--slots parallel slots, continuous batching) driven by
    `--backend llamacpp` (or `--llama-client openai`: our OpenAI backend against the same server); weights bf16
    (the embedded checkpoint converted to GGUF: the very weights ours runs), q8_0, or q4_1 (the shipped GGUF);
  * ct2: CTranslate2 int8 (`generate_batch`, batches of --slots), when the package is installed.

Useful tokens are new tokens up to and including the end of turn. The repetition penalty means different things
in each engine (ours: tokens generated so far; transformers: the prompt too; llama.cpp: the last 64 tokens,
prompt tail included; CTranslate2: the prompt too), which changes answer lengths and so tok/s. So every engine runs
at penalty 1.0 (the comparable rows: the same sampling everywhere) and at the suite's default 1.1 (each engine's
own definition); the answer-length columns show how far the penalties moved the lengths.

The compute bound is bench/throughput.py's: the bf16 matmul rate measured here, in this run, on the model's own
layer shapes, divided by the matmul work of one token at the workload's mean context.

    python bench/engines.py                          # 400 prompts, all engines, --repeat 2; updates results.json
    python bench/engines.py --prompts 64 --engines ours,llamacpp --repeat 1
    python bench/engines.py --build-llama-server      # build llama-server first (~10 min on 2 cores, cached)
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results import update_results  # noqa: E402
from throughput import flops_per_token, matmul_peak  # noqa: E402

from socialsynth.core.io import read_records  # noqa: E402
from socialsynth.jobs.norms.rewrite import rewrite_chat  # noqa: E402
from socialsynth.llm import GenerationParams, load_backend  # noqa: E402
from socialsynth.llm import llamacpp as lc  # noqa: E402
from socialsynth.llm.base import request_seed  # noqa: E402
from socialsynth.prompts import load_dimension, load_template  # noqa: E402

ENGINES = ("ours", "generate", "llamacpp", "ct2")
PENALTIES = (1.0, 1.1)


@dataclass
class Run:
    """One engine at one penalty: seconds and answer lengths of each repeat."""

    engine: str
    penalty: float
    seconds: list[float] = field(default_factory=list)
    lengths: list[list[int]] = field(default_factory=list)
    note: str = ""

    def useful(self, i: int) -> int:
        return sum(self.lengths[i])

    def rates(self) -> list[float]:
        return [self.useful(i) / s for i, s in enumerate(self.seconds)]

    def prompt_rates(self) -> list[float]:
        return [len(self.lengths[i]) / s for i, s in enumerate(self.seconds)]


def workload(n: int, data: Path, dimension: str) -> tuple[list, list[str]]:
    """n rewrite prompts (comment x level, the comments again with other keys when n needs more) and their keys."""
    rows = read_records(data, required=("id", "comment")).records
    dim, template = load_dimension(dimension), load_template("norm_rewrite")
    chats, keys = [], []
    for i in range(n):
        row, level, round_ = rows[(i // 5) % len(rows)], i % 5 + 1, i // (5 * len(rows))
        chats.append(rewrite_chat(dim, template, row.get("submission_title", ""), row["comment"], level))
        keys.append(f"{row['id']}:{level}:{round_}")
    return chats, keys


# -- engines: each takes (chats, keys, params) and returns the useful new tokens of every answer ------------------
def run_ours(backend):
    def generate(chats, keys, params):
        return [c.n_new_tokens for c in backend.generate(chats, params, keys=keys)]

    return generate


def run_transformers_generate(backend, slots: int):
    """Static batches: length-sorted, left padded, each `model.generate` call runs until its longest answer ends."""
    model, eos = backend.model, backend.eos_ids

    @torch.inference_mode()
    def generate(chats, keys, params):
        prompts = [backend.encode_chat(c) for c in chats]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        lengths = [0] * len(prompts)
        for start in range(0, len(order), slots):
            batch = order[start : start + slots]
            width = max(len(prompts[i]) for i in batch)
            ids = torch.full((len(batch), width), backend.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                mask[r, width - len(prompts[i]) :] = 1
            torch.manual_seed(request_seed(params.seed, keys[batch[0]]))
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=params.temperature,
                                 top_p=params.top_p, repetition_penalty=params.repetition_penalty,
                                 max_new_tokens=params.max_new_tokens, pad_token_id=backend.pad_id, eos_token_id=eos)
            for r, i in enumerate(batch):
                row = out[r, width:].tolist()
                lengths[i] = next((k + 1 for k, t in enumerate(row) if t in eos), len(row))
        return lengths

    return generate


def start_llama(weights: str, slots: int, client: str, threads: int, context: int):
    """A llama-server with the embedded model's weights as bf16 / q8_0 (converted from the checkpoint ours loads)
    or q4_1 (the shipped GGUF), driven by --backend llamacpp or by --backend openai. Returns (backend, closer)."""
    from socialsynth.llm.embedded import embedded_checkpoint
    from socialsynth.llm.openai_api import OpenAIBackend

    gguf = lc.gguf_path() if weights == "q4_1" else lc.convert_to_gguf(embedded_checkpoint(), weights)
    if client == "llamacpp":
        backend = lc.LlamaCppBackend(str(gguf), max_batch_size=slots, max_batch_tokens=context, threads=threads)
        return backend, backend.close
    server = lc.LlamaServer(lc.find_server(), gguf, parallel=slots, context=context, threads=threads).start()
    return OpenAIBackend(lc.ALIAS, api_base=server.url + "/v1", concurrency=slots, max_retries=1), server.stop


def run_server(backend):
    def generate(chats, keys, params):
        out = backend.generate(chats, params, keys=keys)
        errors = [c.error for c in out if c.finish_reason == "error"]
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, e.g. {errors[0]}")
        return [c.n_new_tokens for c in out]

    return generate


def start_ct2(backend, slots: int, threads: int, cache: Path):
    """CTranslate2 int8 of the same checkpoint (converted once into `cache`), generate_batch in batches of --slots."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from socialsynth.llm.embedded import embedded_checkpoint

    target = cache / "ct2-smollm2-int8"
    if not (target / "model.bin").exists():
        TransformersConverter(str(embedded_checkpoint())).convert(str(target), quantization="int8", force=True)
    generator = ctranslate2.Generator(str(target), device="cpu", compute_type="int8", intra_threads=threads)
    tokenizer, eos = backend.tokenizer, backend.eos_ids

    def generate(chats, keys, params):
        prompts = [tokenizer.convert_ids_to_tokens(backend.encode_chat(c)) for c in chats]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        lengths = [0] * len(prompts)
        for start in range(0, len(order), slots):
            batch = order[start : start + slots]
            results = generator.generate_batch(
                [prompts[i] for i in batch], max_length=params.max_new_tokens, sampling_temperature=params.temperature,
                sampling_topp=params.top_p, sampling_topk=0, repetition_penalty=params.repetition_penalty,
                include_prompt_in_result=False, end_token=[tokenizer.convert_ids_to_tokens(e) for e in eos],
                return_end_token=True, max_batch_size=slots)
            for i, result in zip(batch, results, strict=True):
                lengths[i] = len(result.sequences_ids[0])
        return lengths

    return generate


# -- the run -----------------------------------------------------------------------------------------------------
def setup_engines(args, backend) -> tuple[dict, dict, list]:
    """The engines asked for that can run here: {name: generate fn}, {name: why skipped}, closers."""
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    engines, skipped, closers = {}, {}, []
    for name in wanted:
        if name == "ours":
            engines["ours"] = run_ours(backend)
        elif name == "generate":
            engines["generate"] = run_transformers_generate(backend, args.slots)
        elif name == "llamacpp":
            if lc.find_server() is None:
                skipped["llamacpp"] = lc.missing_server_reason() + "; or pass --build-llama-server"
                continue
            for weights in args.llama_weights.split(","):
                t0 = time.perf_counter()
                server_backend, closer = start_llama(weights, args.slots, args.llama_client, args.threads,
                                                     args.llama_context)
                closers.append(closer)
                engines[f"llamacpp-{weights}"] = run_server(server_backend)
                print(f"llama-server {weights} up in {time.perf_counter() - t0:.1f} s", flush=True)
        elif name == "ct2":
            if importlib.util.find_spec("ctranslate2") is None:
                skipped["ct2"] = "CTranslate2 is not installed (pip install ctranslate2)"
                continue
            engines["ct2"] = start_ct2(backend, args.slots, args.threads, lc.cache_root())
        else:
            raise SystemExit(f"--engines: unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return engines, skipped, closers


def measure(engines: dict, chats, keys, args) -> list[Run]:
    """Every engine at every penalty, --repeat rounds; a round runs the engines one after another."""
    runs = {(name, pen): Run(name, pen) for pen in args.penalties for name in engines}
    for round_ in range(args.repeat):
        for pen in args.penalties:
            params = GenerationParams(temperature=0.7, top_p=0.9, repetition_penalty=pen,
                                      max_new_tokens=args.max_new_tokens, seed=round_)
            for name, generate in engines.items():
                t0 = time.perf_counter()
                lengths = generate(chats, keys, params)
                seconds = time.perf_counter() - t0
                run = runs[(name, pen)]
                run.seconds.append(seconds)
                run.lengths.append(lengths)
                print(f"  round {round_ + 1} penalty {pen} {name}: {seconds:.1f} s, {sum(lengths) / seconds:.0f} "
                      "useful tok/s", flush=True)
    return list(runs.values())


def summarise(runs: list[Run], bound: float, max_new: int) -> list[dict]:
    """Per run: median and best useful tok/s, median prompts/s, ratios to ours at the same penalty, lengths."""
    ours = {r.penalty: statistics.median(r.rates()) for r in runs if r.engine == "ours"}
    ours_p = {r.penalty: statistics.median(r.prompt_rates()) for r in runs if r.engine == "ours"}
    table = []
    for r in runs:
        lengths = sorted(x for rep in r.lengths for x in rep)
        rate, prate = statistics.median(r.rates()), statistics.median(r.prompt_rates())
        table.append({
            "engine": r.engine, "penalty": r.penalty, "useful_tok_s_median": round(rate, 1),
            "useful_tok_s_best": round(max(r.rates()), 1), "prompts_s_median": round(prate, 2),
            "vs_ours_tok": round(rate / ours[r.penalty], 2) if r.penalty in ours else None,
            "vs_ours_prompts": round(prate / ours_p[r.penalty], 2) if r.penalty in ours_p else None,
            "of_bound": round(rate / bound, 3), "seconds": [round(s, 2) for s in r.seconds],
            "mean_new": round(statistics.fmean(lengths), 1), "p50_new": lengths[len(lengths) // 2],
            "p90_new": lengths[int(0.9 * (len(lengths) - 1))],
            "hit_max": round(sum(x >= max_new for x in lengths) / len(lengths), 3),
        })
    return table


def print_table(table: list[dict], bound: float) -> None:
    print(f"\n{'engine':16} {'pen':>4} {'tok/s med':>9} {'best':>6} {'x ours':>6} {'prm/s':>6} {'x ours':>6} "
          f"{'of bound':>8} {'mean new':>8} {'p50':>4} {'p90':>4} {'at max':>6}")
    for row in sorted(table, key=lambda r: (r["penalty"], -r["useful_tok_s_median"])):
        vs = f"{row['vs_ours_tok']:.2f}" if row["vs_ours_tok"] is not None else "-"
        vp = f"{row['vs_ours_prompts']:.2f}" if row["vs_ours_prompts"] is not None else "-"
        print(f"{row['engine']:16} {row['penalty']:>4} {row['useful_tok_s_median']:>9.0f} "
              f"{row['useful_tok_s_best']:>6.0f} {vs:>6} {row['prompts_s_median']:>6.2f} {vp:>6} "
              f"{100 * row['of_bound']:>7.1f}% {row['mean_new']:>8.1f} {row['p50_new']:>4} {row['p90_new']:>4} "
              f"{100 * row['hit_max']:>5.0f}%")
    print(f"compute bound (bf16 matmul rate measured in this run / work per token): {bound:.0f} tok/s")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=400, help="rewrite prompts (comments x 5 levels, repeated)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; the table gives the median and the best")
    ap.add_argument("--penalties", default="1.0,1.1", help="repetition penalties to run (1.0: the comparable row)")
    ap.add_argument("--slots", type=int, default=64, help="rows / server slots / static batch size")
    ap.add_argument("--threads", type=int, default=lc.default_threads(), help="threads of every engine")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--llama-weights", default="bf16", help="comma list of bf16, q8_0, q4_1 (the shipped GGUF)")
    ap.add_argument("--llama-client", choices=("llamacpp", "openai"), default="llamacpp",
                    help="drive llama-server through --backend llamacpp or --backend openai")
    ap.add_argument("--llama-context", type=int, default=32768, help="llama-server's KV cache in tokens (all slots)")
    ap.add_argument("--build-llama-server", action="store_true", help="build llama-server first if it is absent")
    ap.add_argument("--data", default=str(ROOT / "data" / "askmen.jsonl"))
    ap.add_argument("--dimension", default="formality")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    args = ap.parse_args(argv)
    args.penalties = [float(p) for p in args.penalties.split(",") if p]
    if args.prompts < 1 or args.repeat < 1 or args.slots < 1:
        ap.error("--prompts, --repeat and --slots must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.build_llama_server:
        lc.build_llama_server()
    torch.set_num_threads(args.threads)
    chats, keys = workload(args.prompts, Path(args.data), args.dimension)
    backend = load_backend("hf", "embedded", max_batch_size=args.slots, dtype="bf16")
    prompt_tokens = sum(len(backend.encode_chat(c)) for c in chats) / len(chats)
    print(f"{len(chats)} prompts ({prompt_tokens:.0f} tokens on average), T 0.7 top-p 0.9, up to "
          f"{args.max_new_tokens} new tokens, {args.slots} slots, {args.threads} threads", flush=True)
    engines, skipped, closers = setup_engines(args, backend)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    try:
        warm = GenerationParams(max_new_tokens=4)
        for generate in engines.values():
            generate(chats[:4], keys[:4], warm)
        peak = matmul_peak(backend.model)
        print(f"bf16 matmul rate on the model's layer shapes: {peak:.0f} GFLOP/s", flush=True)
        runs = measure(engines, chats, keys, args)
    finally:
        for close in closers:
            close()
    mean_new = statistics.fmean(x for r in runs if r.engine == "ours" for rep in r.lengths for x in rep) \
        if any(r.engine == "ours" for r in runs) else args.max_new_tokens / 2
    bound = peak * 1e9 / flops_per_token(backend.model, prompt_tokens + mean_new / 2)
    table = summarise(runs, bound, args.max_new_tokens)
    print_table(table, bound)
    update_results(args.results, "engines", {
        "prompts": len(chats), "avg_prompt_tokens": round(prompt_tokens, 1), "max_new_tokens": args.max_new_tokens,
        "slots": args.slots, "threads": args.threads, "repeat": args.repeat, "matmul_gflop_s": round(peak, 1),
        "compute_bound_tok_s": round(bound, 1), "llama_client": args.llama_client, "skipped": skipped,
        "runs": table,
    })
    print(f"written: {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
