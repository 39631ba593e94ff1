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
seeds each request from --seed and its id (the hf backend's penalty counts only generated tokens). --rag does the
same with a LaMP-style prompt built from cases.jsonl (BM25-retrieved posts and the news only; rag.py).

Answers are cleaned the same way for every method: whitespace, a leaked end-of-turn marker and wrapping quotes go.

Prompts longer than the model can read are cut (user span first, then news; spans.py): adapters to --max-length or
the model's context minus --max-new-tokens, whichever is less; zero-shot with a model in this process to that
context (a server applies its own limits). A prompt that cannot be cut enough gets an error record (status "error",
its reason), counted in the summary and the run record's "skipped"; evaluate leaves such ids out for every method.
Records are checked before any model loads (types; a repeated id is refused with the ids named), and so are the
files of the adapter folder (a damaged one is named).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, iter_jsonl
from socialsynth.core.provenance import command_line
from socialsynth.core.run import JobRun, record_path
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.response.config import _METHOD_NAME, SEED_SAMPLING, InferConfig  # noqa: F401  (re-exported)
from socialsynth.jobs.response.context import (
    backend_context,
    chat_token_counter,
    model_context,
    prompt_budget,
)
from socialsynth.jobs.response.pac_lora import CONFIG_FILE, WEIGHTS_FILE, is_pac_lora_dir, load_pac_lora
from socialsynth.jobs.response.records import VARIANTS, RepeatedIds, chat_for, check_prompt_record
from socialsynth.jobs.response.spans import EncodedPrompt, encode_prompt, fit_length, shorten_record
from socialsynth.jobs.response.training import TRAINING_FILE, safetensors_problem
from socialsynth.llm.base import request_seed

log = logging.getLogger(__name__)
TOO_LONG = "prompt too long for --max-length or the model's context"
FAILED = "generation failed"

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


DAMAGED = "the adapter folder is damaged: train it again (train --restart)"


def _json_object(path: Path) -> dict:
    """A JSON object file of an adapter folder; InputError naming it when it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise InputError(f"unreadable ({type(e).__name__}); {DAMAGED}", path=path) from None
    if not isinstance(data, dict):
        raise InputError(f"not a JSON object; {DAMAGED}", path=path)
    return data


def _check_pac_config(data: dict, path: Path) -> str | None:
    """The base model a pac_lora_config.json names, after checking the values that rebuild the experts."""
    for name, low in (("experts", 1), ("rank", 1), ("router_hidden", 1)):
        value = data.get(name, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"expected a whole number >= {low}, got {value!r:.40}; {DAMAGED}", path=path, field=name)
    for name, ok in (("alpha", lambda v: v > 0), ("dropout", lambda v: 0 <= v < 1)):
        value = data.get(name, 0.5)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
            raise InputError(f"out of range: {value!r:.40}; {DAMAGED}", path=path, field=name)
    if data.get("routing", "span-mean") not in ("span-mean", "token"):
        raise InputError(f"expected span-mean or token; {DAMAGED}", path=path, field="routing")
    targets = data.get("target_modules", [])
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise InputError(f"expected a list of module names; {DAMAGED}", path=path, field="target_modules")
    return data.get("base_model") if isinstance(data.get("base_model"), str) else None


def read_adapter(directory: Path) -> dict:
    """What the adapter folder says about itself: method, base model, variant, name (each file checked, so that a
    damaged folder stops with its file named before any model loads)."""
    if not directory.is_dir():
        raise InputError("adapter folder not found", path=directory)
    training = directory / TRAINING_FILE
    info = _json_object(training) if training.exists() else {}
    if is_pac_lora_dir(directory):
        method, base = "pac-lora", _check_pac_config(_json_object(directory / CONFIG_FILE), directory / CONFIG_FILE)
        weights = directory / WEIGHTS_FILE
    elif (directory / "adapter_config.json").exists():
        method, base = "lora", _json_object(directory / "adapter_config.json").get("base_model_name_or_path")
        weights = directory / "adapter_model.safetensors"
    else:
        raise InputError("not an adapter folder (no pac_lora_config.json or adapter_config.json)", path=directory)
    if weights.exists() or method == "pac-lora":  # (peft may also have saved adapter_model.bin)
        problem = safetensors_problem(weights)
        if problem:
            raise InputError(f"{problem}; {DAMAGED}", path=weights)
    name = info.get("name") or directory.name
    variant = info.get("variant")
    if variant is not None and variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r:.40} (one of {', '.join(VARIANTS)})", path=training,
                         field="variant")
    base_model = info.get("base_model") or base
    return {"method": method, "base_model": base_model if isinstance(base_model, str) else None,
            "variant": variant, "name": name, "training_file": str(training)}


class AdapterGenerator:
    """Batched sampling with a PAC-LoRA or peft LoRA adapter on its base model (left padding, HF generate)."""

    def __init__(self, directory: Path, info: dict, model_name: str, device: str, dtype: str, quantization=None):
        from socialsynth.llm.loading import eos_ids, load_causal_lm, resolve_device, resolve_dtype

        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.method = info["method"]
        self.tokenizer, base = load_causal_lm(model_name, self.device, self.dtype, quantization, frozen=True)
        self.model = self._load(base, directory, model_name)
        if not quantization:
            self.model.to(self.device)
        self.model.eval()
        self.eos_ids = eos_ids(base, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id

    def _load(self, base, directory: Path, model_name: str):
        """The adapter on its base; one that does not fit that base (other shapes or modules) is an InputError."""
        import torch

        try:
            if self.method == "pac-lora":
                return load_pac_lora(base, directory)
            from peft import PeftModel

            return PeftModel.from_pretrained(base, str(directory))
        except (ValueError, RuntimeError, KeyError) as e:
            if isinstance(e, torch.OutOfMemoryError):
                raise
            raise InputError(f"does not fit the base model {model_name} ({' '.join(str(e).split())[:200]}); give "
                             "the model it was trained on with -m", path=directory) from None

    @property
    def context(self) -> int | None:
        return model_context(self.model, self.tokenizer)

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
    """(line, record) of the Alpaca records of `split`, checked; a repeated id is refused (one answer per id)."""
    if not path.exists():
        raise InputError("file not found (run extract-personas first, or pass --input-file)", path=path)
    rows, ids = [], RepeatedIds(path, "record id")
    for line, record in iter_jsonl(path, required=("id", "instruction")):
        if record.get("split") == split:
            check_prompt_record(record, path, line)
            if not ids.seen(record["id"], line):
                rows.append((line, record))
    ids.check("only one prediction per id is kept; rebuild the file with extract-personas")
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


def plan_rag(cfg: InferConfig) -> InferPlan:
    """--rag: LaMP-style records built from cases.jsonl (rag.py); method 'rag' unless --method-name."""
    from socialsynth.jobs.response.rag import RAG_VARIANT, read_rag_cases

    out = Path(cfg.output_dir)
    cases_file = Path(cfg.cases) if cfg.cases else out / "cases.jsonl"
    cases = read_rag_cases(cases_file, cfg.split, cfg.rag_k)
    if not cases:
        raise InputError(f"no cases with split {cfg.split!r}", path=cases_file)
    method = cfg.method_name or "rag"
    return InferPlan(method, RAG_VARIANT, None, cases_file, cases, out / "predictions" / f"{method}.jsonl")


def plan_inference(cfg: InferConfig) -> InferPlan:
    """Read the adapter's description and the records of --split; name the method and the predictions file."""
    if cfg.rag:
        return plan_rag(cfg)
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
    if not isinstance(method, str) or not _METHOD_NAME.fullmatch(method):  # a name from the adapter's files
        raise InputError(f"the adapter's name {method!r:.60} cannot name a predictions file (letters, digits and "
                         ". _ + - only); pass --method-name", path=info and info["training_file"], field="name")
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

    def prompt_budget(self) -> int:
        """--max-length, or less when the model's context minus --max-new-tokens is shorter."""
        room = prompt_budget(self.engine.context, self.params.max_new_tokens)
        if room is not None and room < self.cfg.max_length:
            log.warning("prompts are cut to %d tokens: the model's context minus --max-new-tokens (below --max-length "
                        "%d)", room, self.cfg.max_length)
            return room
        return self.cfg.max_length

    def prepare(self, todo: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """Encode every prompt up front (bad records fail before any generation); longest first."""
        spans = self.plan.info["method"] == "pac-lora"
        self.budget = self.prompt_budget()
        for line, c in todo:
            full = encode_prompt(self.engine.tokenizer, c, self.plan.input_file, line, need_spans=spans)
            self.prompts[c["id"]] = (fit_length(full, self.budget), len(full))
        return sorted(todo, key=lambda lc: -(len(self.prompts[lc[1]["id"]][0]) if self.prompts[lc[1]["id"]][0] else 0))

    def process(self, chunk) -> list[dict]:
        records, ok = [], []
        for _line, c in chunk:
            enc, n_full = self.prompts[c["id"]]
            if enc is None:
                error = (f"prompt of {n_full} tokens does not fit {self.budget} tokens (--max-length "
                         f"{self.cfg.max_length})")
                records.append(self._record(c, "", "error", status="error", error=error, error_kind=TOO_LONG))
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
        self.too_long: dict[str, str] = {}  # id -> why its prompt cannot fit the context
        self.cut: dict[str, int] = {}  # id -> prompt tokens cut to fit it

    def prepare(self, todo: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        """Cut the prompts longer than the model's context (user span first) when the backend can count tokens;
        one that cannot be cut enough is answered with an error record."""
        count = chat_token_counter(self.backend)
        budget = prompt_budget(backend_context(self.backend), self.params.max_new_tokens)
        tokenizer = getattr(self.backend, "tokenizer", None)
        if count is None or budget is None or tokenizer is None:
            return todo
        fitted = []
        for line, c in todo:
            n = count(chat_for(c))
            short = c if n <= budget else shorten_record(tokenizer, c, budget, lambda r: count(chat_for(r)))
            if short is None:
                self.too_long[str(c["id"])] = f"prompt of {n} tokens does not fit the model's context ({budget} tokens)"
            elif short is not c:
                self.cut[str(c["id"])] = n - count(chat_for(short))
            fitted.append((line, c if short is None else short))
        return fitted

    def process(self, chunk) -> list[dict]:
        records = []
        for _line, c in chunk:
            if str(c["id"]) in self.too_long:
                records.append(_record(c, self.plan.method, self.plan.variant, "", "error", self.prov, status="error",
                                       error=self.too_long[str(c["id"])], error_kind=TOO_LONG))
        chunk = [(line, c) for line, c in chunk if str(c["id"]) not in self.too_long]
        chats = [chat_for(c) for _line, c in chunk]
        outs = self.backend.generate(chats, self.params, keys=[str(c["id"]) for _line, c in chunk])
        for (_line, c), comp in zip(chunk, outs, strict=True):
            extra = {"sampling_seed": comp.seed, "n_new_tokens": comp.n_new_tokens}
            if str(c["id"]) in self.cut:
                extra["prompt_tokens_cut"] = self.cut[str(c["id"])]
            if comp.finish_reason == "error":
                extra.update(status="error", error=getattr(comp, "error", None) or "generation failed",
                             error_kind=FAILED)
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
    with JobRun("response.infer", record_path(plan.target), cfg, outputs=[plan.target]) as run:
        run.meta.update(_record_fields(cfg, plan))
        with JsonlWriter(plan.target) as writer:
            todo = [(line, c) for line, c in plan.cases if str(c["id"]) not in writer.done]
            already = len(plan.cases) - len(todo)
            written = answer(cfg, plan, run, writer, todo) if todo else 0
            total = len(writer.done)
        run.meta["written"] = total
        run.meta["skipped"], run.meta["prompts_cut"] = failure_counts(plan.target)
        run.mark_complete(all(str(c["id"]) in writer.done for _line, c in plan.cases))
    return {"method": plan.method, "split": cfg.split, "target": str(plan.target), "cases": len(plan.cases),
            "written": written, "already": already, "total": total, "skipped": run.meta["skipped"],
            "prompts_cut": run.meta["prompts_cut"]}


def failure_counts(target: Path) -> tuple[dict[str, int], int]:
    """The error records in a predictions file by kind (the run record's "skipped": evaluate leaves them out), and
    how many answered prompts were cut to fit."""
    counts: Counter[str] = Counter()
    cut = 0
    if target.exists():
        for _, rec in iter_jsonl(target):
            if rec.get("status") == "error":
                counts[rec.get("error_kind") or FAILED] += 1
            cut += bool(rec.get("prompt_tokens_cut"))
    return dict(counts), cut


def _record_fields(cfg: InferConfig, plan: InferPlan) -> dict:
    """The job fields of predictions/<method>.meta.json."""
    return {
        "method": plan.method,
        "variant": plan.variant,
        "split": cfg.split,
        "input_file": str(plan.input_file),
        "adapter": str(cfg.adapter) if cfg.adapter else None,
        "adapter_method": plan.info["method"] if plan.info else ("rag" if cfg.rag else "zero-shot"),
        "rag_k": cfg.rag_k if cfg.rag else None,
        "params": cfg.params.to_dict(),
        "seed": cfg.sampling.seed,
        "batch_size": cfg.batch_size,
        "max_length": cfg.max_length,
        "cases": len(plan.cases),
    }


def format_summary(s: dict) -> str:
    if s["already"] == s["cases"] and not s["written"]:
        text = f"{s['method']}: all {s['cases']} {s['split']} cases are already in {s['target']}; nothing to do"
    else:
        text = (f"{s['method']}: {s['written']} predictions written, {s['already']} already there, {s['total']} of "
                f"{s['cases']} {s['split']} cases in {s['target']}")
    if s.get("prompts_cut"):
        text += f"\nprompts cut to fit --max-length or the model's context (user span first): {s['prompts_cut']}"
    for kind, n in (s.get("skipped") or {}).items():
        text += f"\nskipped ({kind}; recorded as errors, left out by evaluate): {n}"
    return text
