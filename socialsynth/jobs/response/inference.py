"""Predict each test user's response with a trained adapter (PAC-LoRA or LoRA) or zero-shot with any backend.

Reads alpaca/<variant>.jsonl (records of one --split, "test" by default) and writes predictions/<method>.jsonl in
the records.py schema, one line per case, resumable (a rerun skips the ids already written) with provenance on every
line (model, adapter, sampling parameters, seed) and predictions/<method>.meta.json.

Adapters (--adapter adapters/NAME): the base model named in the adapter's training.json (or -m) is loaded in this
process and prompts are generated in batches with left padding through transformers' generate() with the seed's
sampling defaults (T 0.7, top-p 0.9, top-k 20, repetition penalty 1.2, 256 new tokens). For PAC-LoRA the routing of
each row is computed from its prompt's news and user spans before generation and kept for every decoding step. The
sampling seed of a batch is derived from --seed and the batch's first id, so a rerun with the same batches gives the
same answers. transformers' repetition penalty also counts the prompt's tokens, as the seed's generate() did.
Zero-shot (--zero-shot): the chat with the persona prompt (variant full by default) goes through the
socialsynth backend chosen by --backend/-m (embedded SmolLM2, any HF model, or an OpenAI-compatible server), which
seeds each request from --seed and its id (the hf backend's penalty counts only generated tokens).

Answers are cleaned the same way for every method: whitespace, a leaked end-of-turn marker and wrapping quotes go.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

from socialsynth.core.cli import add_model_args, add_sampling_args, default_dir, sampling_params
from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_json, iter_jsonl, meta_path
from socialsynth.llm.base import request_seed
from socialsynth.core.provenance import command_line, previous_meta, versions
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.response.pac_lora import is_pac_lora_dir, load_pac_lora
from socialsynth.jobs.response.records import VARIANTS, chat_for
from socialsynth.jobs.response.spans import EncodedPrompt, encode_prompt, fit_length
from socialsynth.jobs.response.training import TRAINING_FILE, load_base

log = logging.getLogger(__name__)

SEED_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.2, "max_new_tokens": 256}
END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "</s>", "<|endoftext|>")
QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "«": "»"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output-dir", type=Path, default=default_dir("output") / "responses", help="stage folder")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--adapter", type=Path, default=None, help="an adapter folder written by train")
    which.add_argument("--zero-shot", action="store_true", help="no adapter: the base model through --backend")
    p.add_argument(
        "--variant", choices=VARIANTS, default=None, help="prompt variant (default: the adapter's; full for zero-shot)"
    )
    p.add_argument("--input-file", type=Path, default=None, help="Alpaca JSONL (default: OUTPUT/alpaca/VARIANT.jsonl)")
    p.add_argument("--split", default="test", help="which records to answer (their 'split' field)")
    p.add_argument(
        "--method-name",
        default=None,
        help="predictions file name and 'method' field (default: the adapter's name, or zero-shot[-VARIANT])",
    )
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together")
    p.add_argument(
        "--max-length",
        type=int,
        default=1024,
        help="adapters: prompt tokens at most (the user span is cut first); zero-shot: the backend's limits apply",
    )
    add_model_args(p)
    p.set_defaults(model=None)  # adapters: the base model they were trained on; zero-shot: embedded
    add_sampling_args(p)
    p.set_defaults(**SEED_SAMPLING)


# ----------------------------------------------------------------------------------------------- answers


def clean_prediction(text: str) -> str:
    """Strip whitespace, a leaked end-of-turn marker (and anything after it) and quotes around the whole answer."""
    for marker in END_MARKERS:
        if marker in text:
            text = text.split(marker, 1)[0]
    text = text.strip()
    while len(text) >= 2 and text[0] in QUOTES and text[-1] == QUOTES[text[0]]:
        inner = text[1:-1]
        if text[0] in inner:  # "a" and "b": the quotes are not around the whole answer
            break
        text = inner.strip()
    return re.sub(r"\n{3,}", "\n\n", text)


# ----------------------------------------------------------------------------------------------- adapters


def read_adapter(directory: Path) -> dict:
    """What the adapter folder says about itself: method, base model, variant, name."""
    if not directory.is_dir():
        raise InputError("adapter folder not found", path=directory)
    info: dict = {}
    training = directory / TRAINING_FILE
    if training.exists():
        info = json.loads(training.read_text(encoding="utf-8"))
    if is_pac_lora_dir(directory):
        from socialsynth.jobs.response.pac_lora import read_config

        method, base = "pac-lora", read_config(directory).base_model
    elif (directory / "adapter_config.json").exists():
        method = "lora"
        base = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
    else:
        raise InputError("not an adapter folder (no pac_lora_config.json or adapter_config.json)", path=directory)
    return {
        "method": method,
        "base_model": info.get("base_model") or base,
        "variant": info.get("variant"),
        "name": info.get("name") or directory.name,
    }


class AdapterGenerator:
    """Batched sampling with a PAC-LoRA or peft LoRA adapter on its base model (left padding, HF generate)."""

    def __init__(self, directory: Path, info: dict, model_name: str, device: str, dtype: str, quantization=None):
        from socialsynth.llm.hf import _eos_ids, resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.method = info["method"]
        self.tokenizer, base = load_base(model_name, self.device, self.dtype, quantization)
        if self.method == "pac-lora":
            self.model = load_pac_lora(base, directory)
        else:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(base, str(directory))
        if not quantization:
            self.model.to(self.device)
        self.model.eval()
        self.eos_ids = _eos_ids(base, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id

    def _left_pad(self, prompts: list[EncodedPrompt]):
        import torch

        width = max(len(p) for p in prompts)
        n = len(prompts)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        news = torch.zeros((n, width), dtype=torch.bool)
        user = torch.zeros((n, width), dtype=torch.bool)
        for i, p in enumerate(prompts):
            start = width - len(p)
            ids[i, start:] = torch.tensor(p.ids)
            mask[i, start:] = 1
            news[i, start:] = torch.tensor(p.news)
            user[i, start:] = torch.tensor(p.user)
        return [t.to(self.device) for t in (ids, mask, news, user)]

    def generate(self, prompts: list[EncodedPrompt], params, seed: int) -> list[tuple[str, int, str]]:
        """(text, new tokens, finish reason) per prompt, sampled with torch seeded by `seed`."""
        import torch

        ids, mask, news, user = self._left_pad(prompts)
        sample = params.temperature > 0
        gen = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "repetition_penalty": params.repetition_penalty,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids,
        }
        if sample:
            gen.update(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k or None)
        torch.manual_seed(seed)
        with torch.inference_mode():
            if self.method == "pac-lora":
                out = self.model.generate(ids, attention_mask=mask, news_mask=news, user_mask=user, **gen)
            else:
                out = self.model.generate(input_ids=ids, attention_mask=mask, **gen)
        results = []
        eos = set(self.eos_ids)
        for row in out[:, ids.shape[1] :].tolist():
            stop = next((i for i, t in enumerate(row) if t in eos), None)
            new = row if stop is None else row[: stop + 1]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            results.append((text, len(new), "length" if stop is None else "stop"))
        return results


# ----------------------------------------------------------------------------------------------- running


def _backend_spec(args, model: str):
    """The zero-shot backend from the model flags (cli.backend_spec when this checkout has it)."""
    from socialsynth import cli

    if hasattr(cli, "backend_spec"):
        return cli.backend_spec(args, model=model)
    from socialsynth.llm import BackendSpec

    return BackendSpec(
        backend=args.backend,
        model=model,
        quantization=args.quantization,
        device=args.device,
        dtype=args.dtype,
        max_batch_size=args.batch_size,
    )


def read_cases(path: Path, split: str) -> list[tuple[int, dict]]:
    if not path.exists():
        raise InputError("file not found (run extract-personas first, or pass --input-file)", path=path)
    rows = []
    for line, record in iter_jsonl(path, required=("id", "instruction")):
        if record.get("split") == split:
            rows.append((line, record))
    return rows


def _record(case: dict, method: str, variant: str, text: str, reason: str, prov: dict, **extra) -> dict:
    return {
        "id": case["id"],
        "topic_id": case.get("topic_id"),
        "user_id": case.get("user_id"),
        "variant": case.get("variant", variant),
        "method": method,
        "prediction": clean_prediction(text),
        "reference": case.get("output"),
        "finish_reason": reason,
        **prov,
        **extra,
    }


def run(args) -> int:
    if args.batch_size < 1:
        raise InputError("must be >= 1", field="--batch-size")
    out = Path(args.output_dir)
    info = read_adapter(Path(args.adapter)) if args.adapter else None
    if info and args.backend != "hf":
        raise InputError(
            "adapters run in this process (transformers); drop --backend or use --zero-shot", field="backend"
        )
    variant = args.variant or (info and info.get("variant")) or "full"
    if info and info.get("variant") and args.variant and args.variant != info["variant"]:
        log.warning(
            "adapter %s was trained on variant %s; answering %s prompts", info["name"], info["variant"], variant
        )
    method = args.method_name or (
        info["name"] if info else ("zero-shot" if variant == "full" else f"zero-shot-{variant}")
    )
    if not re.fullmatch(r"[\w.+-]+", method):
        raise InputError("use letters, digits and . _ + - only (it names a file)", field="--method-name")
    input_file = Path(args.input_file) if args.input_file else out / "alpaca" / f"{variant}.jsonl"
    cases = read_cases(input_file, args.split)
    if not cases:
        raise InputError(f"no records with split {args.split!r}", path=input_file)
    target = out / "predictions" / f"{method}.jsonl"
    params = sampling_params(args)
    t0 = time.perf_counter()
    with JsonlWriter(target) as writer:
        todo = [(line, c) for line, c in cases if str(c["id"]) not in writer.done]
        already = len(cases) - len(todo)
        if not todo:
            print(f"{method}: all {len(cases)} {args.split} cases are already in {target}; nothing to do")
            return 0
        if info:
            model_name = args.model or info["base_model"] or "embedded"
            engine = AdapterGenerator(Path(args.adapter), info, model_name, args.device, args.dtype, args.quantization)
            prov = {"model": model_name, "adapter": str(args.adapter), "params": params.to_dict(), "seed": args.seed}
            prompts = {}
            for line, c in todo:  # encode up front: bad records fail before any generation
                full = encode_prompt(engine.tokenizer, c, input_file, line, need_spans=info["method"] == "pac-lora")
                prompts[c["id"]] = (fit_length(full, args.max_length), len(full))
            todo.sort(key=lambda lc: -(len(prompts[lc[1]["id"]][0]) if prompts[lc[1]["id"]][0] else 0))

            def process(chunk):
                records, ok = [], []
                for _line, c in chunk:
                    enc, n_full = prompts[c["id"]]
                    if enc is None:
                        error = f"prompt of {n_full} tokens does not fit --max-length {args.max_length}"
                        records.append(_record(c, method, variant, "", "error", prov, status="error", error=error))
                    else:
                        ok.append(c)
                if ok:
                    seed = request_seed(args.seed, str(ok[0]["id"]))
                    outs = engine.generate([prompts[c["id"]][0] for c in ok], params, seed)
                    for c, (text, n_new, reason) in zip(ok, outs):
                        enc, n_full = prompts[c["id"]]
                        records.append(
                            _record(
                                c,
                                method,
                                variant,
                                text,
                                reason,
                                prov,
                                sampling_seed=seed,
                                n_new_tokens=n_new,
                                prompt_tokens_cut=n_full - len(enc),
                            )
                        )
                return records

            describe = {
                "backend": "hf (in process, adapter)",
                "model": model_name,
                "device": engine.device,
                "dtype": str(engine.dtype).replace("torch.", ""),
                "method": info["method"],
            }
        else:
            model_name = args.model or "embedded"
            backend = _backend_spec(args, model_name).load()
            describe = backend.describe()
            prov = {"model": model_name, "adapter": None, "params": params.to_dict(), "seed": args.seed}

            def process(chunk):
                chats = [chat_for(c) for _line, c in chunk]
                outs = backend.generate(chats, params, keys=[str(c["id"]) for _line, c in chunk])
                records = []
                for (_line, c), comp in zip(chunk, outs):
                    extra = {"sampling_seed": comp.seed, "n_new_tokens": comp.n_new_tokens}
                    if comp.finish_reason == "error":
                        extra.update(status="error", error=getattr(comp, "error", None) or "generation failed")
                    records.append(_record(c, method, variant, comp.text, comp.finish_reason, prov, **extra))
                return records

        with GracefulStop() as stop:
            counts = run_chunks(
                todo,
                process,
                writer,
                args.batch_size,
                stop,
                desc="cases",
                resume_hint=f"rerun `{command_line()}` to continue",
            )
        total = len(writer.done)
    meta = previous_meta(meta_path(target))
    runs = meta.get("runs", []) + [
        {"command": command_line(), "written": counts.written, "seconds": round(time.perf_counter() - t0, 2)}
    ]
    atomic_write_json(
        meta_path(target),
        {
            "method": method,
            "variant": variant,
            "split": args.split,
            "input_file": str(input_file),
            "adapter": str(args.adapter) if args.adapter else None,
            "adapter_method": info["method"] if info else "zero-shot",
            "model": describe,
            "params": params.to_dict(),
            "seed": args.seed,
            "batch_size": args.batch_size,
            "max_length": args.max_length,
            "cases": len(cases),
            "written": total,
            "runs": runs,
            "versions": versions(),
        },
    )
    print(
        f"{method}: {counts.written} predictions written, {already} already there, {total} of {len(cases)} "
        f"{args.split} cases in {target}"
    )
    return 0
