"""Predict each test user's response with a trained adapter (PAC-LoRA or LoRA) or zero-shot with any backend.

Reads alpaca/<variant>.jsonl (records of one --split, "test" by default) and writes predictions/<method>.jsonl in
the records.py schema, one line per case, resumable (a rerun skips the ids already written) with provenance on every
line (model, adapter, sampling parameters, seed) and predictions/<method>.meta.json (the run record, with the
tokens read and written per model under stage "infer").

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

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, iter_jsonl
from socialsynth.core.provenance import command_line
from socialsynth.core.run import JobRun, record_path
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.response.config import SEED_SAMPLING, InferConfig  # noqa: F401  (re-exported)
from socialsynth.jobs.response.pac_lora import is_pac_lora_dir, load_pac_lora
from socialsynth.jobs.response.records import chat_for
from socialsynth.jobs.response.spans import EncodedPrompt, encode_prompt, fit_length
from socialsynth.jobs.response.training import TRAINING_FILE
from socialsynth.llm.base import request_seed

log = logging.getLogger(__name__)

END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "</s>", "<|endoftext|>")
QUOTE_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "«": "»"}  # opening -> closing


# ----------------------------------------------------------------------------------------------- answers


def clean_prediction(text: str) -> str:
    """Strip whitespace, a leaked end-of-turn marker (and anything after it) and quotes around the whole answer."""
    for marker in END_MARKERS:
        if marker in text:
            text = text.split(marker, 1)[0]
    text = text.strip()
    while len(text) >= 2 and text[0] in QUOTE_PAIRS and text[-1] == QUOTE_PAIRS[text[0]]:
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
        from socialsynth.llm.loading import eos_ids, load_causal_lm, resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.method = info["method"]
        self.tokenizer, base = load_causal_lm(model_name, self.device, self.dtype, quantization, frozen=True)
        if self.method == "pac-lora":
            self.model = load_pac_lora(base, directory)
        else:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(base, str(directory))
        if not quantization:
            self.model.to(self.device)
        self.model.eval()
        self.eos_ids = eos_ids(base, self.tokenizer)
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


@dataclass
class InferPlan:
    """What infer answers and where: the method's name, the prompt variant, the records, the predictions file."""

    method: str
    variant: str
    info: dict | None  # read_adapter's answer; None for zero-shot
    input_file: Path
    cases: list[tuple[int, dict]]  # (line, Alpaca record) of the chosen split
    target: Path


def plan_inference(cfg: InferConfig) -> InferPlan:
    """Read the adapter's description and the records of --split; name the method and the predictions file."""
    out = Path(cfg.output_dir)
    info = read_adapter(Path(cfg.adapter)) if cfg.adapter else None
    variant = cfg.variant or (info and info.get("variant")) or "full"
    if info and info.get("variant") and cfg.variant and cfg.variant != info["variant"]:
        log.warning(
            "adapter %s was trained on variant %s; answering %s prompts", info["name"], info["variant"], variant
        )
    method = cfg.method_name or (
        info["name"] if info else ("zero-shot" if variant == "full" else f"zero-shot-{variant}")
    )
    if not re.fullmatch(r"[\w.+-]+", method):
        raise InputError("use letters, digits and . _ + - only (it names a file)", field="--method-name")
    input_file = Path(cfg.input_file) if cfg.input_file else out / "alpaca" / f"{variant}.jsonl"
    cases = read_cases(input_file, cfg.split)
    if not cases:
        raise InputError(f"no records with split {cfg.split!r}", path=input_file)
    return InferPlan(method, variant, info, input_file, cases, out / "predictions" / f"{method}.jsonl")


class AdapterJob:
    """Answers chunks of records with an adapter on its base model in this process (tokens counted in `run`)."""

    def __init__(self, cfg: InferConfig, plan: InferPlan, run: JobRun):
        self.cfg, self.plan, self.run = cfg, plan, run
        self.params = cfg.params
        self.model_name = cfg.model.model or plan.info["base_model"] or "embedded"
        self.engine = AdapterGenerator(Path(cfg.adapter), plan.info, self.model_name, cfg.model.device,
                                       cfg.model.dtype, cfg.model.quantization)
        self.prov = {"model": self.model_name, "adapter": str(cfg.adapter), "params": self.params.to_dict(),
                     "seed": self.params.seed}
        self.prompts: dict = {}
        self.describe = {
            "backend": "hf (in process, adapter)",
            "model": self.model_name,
            "device": self.engine.device,
            "dtype": str(self.engine.dtype).replace("torch.", ""),
            "method": plan.info["method"],
        }

    def prepare(self, todo: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """Encode every prompt up front (bad records fail before any generation); longest first."""
        spans = self.plan.info["method"] == "pac-lora"
        for line, c in todo:
            full = encode_prompt(self.engine.tokenizer, c, self.plan.input_file, line, need_spans=spans)
            self.prompts[c["id"]] = (fit_length(full, self.cfg.max_length), len(full))
        return sorted(todo, key=lambda lc: -(len(self.prompts[lc[1]["id"]][0]) if self.prompts[lc[1]["id"]][0] else 0))

    def process(self, chunk) -> list[dict]:
        records, ok = [], []
        for _line, c in chunk:
            enc, n_full = self.prompts[c["id"]]
            if enc is None:
                error = f"prompt of {n_full} tokens does not fit --max-length {self.cfg.max_length}"
                records.append(self._record(c, "", "error", status="error", error=error))
            else:
                ok.append(c)
        if ok:
            records += self._generate(ok)
        return records

    def _generate(self, ok: list[dict]) -> list[dict]:
        seed = request_seed(self.params.seed, str(ok[0]["id"]))
        outs = self.engine.generate([self.prompts[c["id"]][0] for c in ok], self.params, seed)
        records = []
        for c, (text, n_new, reason) in zip(ok, outs, strict=True):
            enc, n_full = self.prompts[c["id"]]
            self.run.count_tokens(self.model_name, "infer", len(enc), n_new)
            records.append(self._record(c, text, reason, sampling_seed=seed, n_new_tokens=n_new,
                                        prompt_tokens_cut=n_full - len(enc)))
        return records

    def _record(self, case: dict, text: str, reason: str, **extra) -> dict:
        return _record(case, self.plan.method, self.plan.variant, text, reason, self.prov, **extra)


class ZeroShotJob:
    """Answers chunks of records through a socialsynth backend (--backend/-m); tokens tracked by the caller."""

    def __init__(self, cfg: InferConfig, plan: InferPlan):
        self.plan = plan
        self.params = cfg.params
        self.model_name = cfg.model.model or "embedded"
        self.backend = cfg.model.spec(self.model_name, seed=self.params.seed).load()
        self.describe = self.backend.describe()
        self.prov = {"model": self.model_name, "adapter": None, "params": self.params.to_dict(),
                     "seed": self.params.seed}

    def prepare(self, todo: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        return todo

    def process(self, chunk) -> list[dict]:
        chats = [chat_for(c) for _line, c in chunk]
        outs = self.backend.generate(chats, self.params, keys=[str(c["id"]) for _line, c in chunk])
        records = []
        for (_line, c), comp in zip(chunk, outs, strict=True):
            extra = {"sampling_seed": comp.seed, "n_new_tokens": comp.n_new_tokens}
            if comp.finish_reason == "error":
                extra.update(status="error", error=getattr(comp, "error", None) or "generation failed")
            records.append(_record(c, self.plan.method, self.plan.variant, comp.text, comp.finish_reason, self.prov,
                                   **extra))
        return records


def answer(cfg: InferConfig, plan: InferPlan, run: JobRun, writer: JsonlWriter, todo: list) -> int:
    """Load the model, answer `todo` in chunks of --batch-size through the resumable writer; return how many
    records this run wrote."""
    job = AdapterJob(cfg, plan, run) if plan.info else ZeroShotJob(cfg, plan)
    todo = job.prepare(todo)
    run.meta["model"] = job.describe
    hint = f"rerun `{command_line()}` to continue"
    with GracefulStop() as stop:
        if isinstance(job, ZeroShotJob):
            with run.track(job.backend, "infer", model=job.model_name):
                counts = run_chunks(todo, job.process, writer, cfg.batch_size, stop, desc="cases", resume_hint=hint)
        else:
            counts = run_chunks(todo, job.process, writer, cfg.batch_size, stop, desc="cases", resume_hint=hint)
    run.note_items(counts.done)
    return counts.written


def run_infer(cfg: InferConfig) -> dict:
    """Write the missing predictions of --split to predictions/<method>.jsonl and its run record; the summary."""
    plan = plan_inference(cfg)
    with JobRun("response.infer", record_path(plan.target), cfg) as run:
        run.meta.update(_record_fields(cfg, plan))
        with JsonlWriter(plan.target) as writer:
            todo = [(line, c) for line, c in plan.cases if str(c["id"]) not in writer.done]
            already = len(plan.cases) - len(todo)
            written = answer(cfg, plan, run, writer, todo) if todo else 0
            total = len(writer.done)
        run.meta["written"] = total
        run.mark_complete(all(str(c["id"]) in writer.done for _line, c in plan.cases))
    return {"method": plan.method, "split": cfg.split, "target": str(plan.target), "cases": len(plan.cases),
            "written": written, "already": already, "total": total}


def _record_fields(cfg: InferConfig, plan: InferPlan) -> dict:
    """The job fields of predictions/<method>.meta.json."""
    return {
        "method": plan.method,
        "variant": plan.variant,
        "split": cfg.split,
        "input_file": str(plan.input_file),
        "adapter": str(cfg.adapter) if cfg.adapter else None,
        "adapter_method": plan.info["method"] if plan.info else "zero-shot",
        "params": cfg.params.to_dict(),
        "seed": cfg.sampling.seed,
        "batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "cases": len(plan.cases),
    }


def format_summary(s: dict) -> str:
    if s["already"] == s["cases"] and not s["written"]:
        return f"{s['method']}: all {s['cases']} {s['split']} cases are already in {s['target']}; nothing to do"
    return (
        f"{s['method']}: {s['written']} predictions written, {s['already']} already there, {s['total']} of "
        f"{s['cases']} {s['split']} cases in {s['target']}"
    )
