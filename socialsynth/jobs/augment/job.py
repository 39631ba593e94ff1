"""Rare-class augmentation (seed 003, Capstone-Meta): few-shot prompts built from pairs of real examples of the
target label ask an LLM for several new examples each; the answer is parsed as a list, every item is flagged
(length, duplicates of each other and of the real data, optional label fidelity) and written with its provenance.

`augment_labels.py` (see :mod:`socialsynth.jobs.augment.cli`) parses an :class:`AugmentConfig` and calls
:func:`run`: generation (:func:`run_generation`) and then the sparsity ladder (:mod:`.ladder`). Prompts, parsing
and filters are in :mod:`.text`. The run record is ``synthetic_<label>.meta.json`` beside the output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from socialsynth.classify.labels import label_key
from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_text, iter_jsonl, shard_path
from socialsynth.core.run import JobRun, record_path, throughput
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.augment.config import TEMPLATE, AugmentConfig, LadderArgs
from socialsynth.jobs.augment.data import RealData, check_target, read_labelled
from socialsynth.jobs.augment.ladder import format_ladder, read_synthetic, run_ladder
from socialsynth.jobs.augment.text import (
    DuplicateIndex,
    FidelityGate,
    TextFilters,
    build_chat,
    cut_at_next_section,
    item_flags,
    load_definition,
    parse_list,
    parse_quoted,
    pick_examples,
    raw_prompt,
    remove_hashtags,
)
from socialsynth.llm import request_seed
from socialsynth.prompts import Template, load_template

log = logging.getLogger(__name__)
__all__ = [
    "TEMPLATE", "AugmentConfig", "AugmentResult", "Augmenter", "DuplicateIndex", "FidelityGate", "LadderArgs",
    "TextFilters", "build_chat", "load_definition", "output_path", "parse_list", "pick_examples",
    "remove_hashtags", "run", "run_generation", "shard_share",
]  # fmt: skip


def safe_name(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "label"


def output_path(cfg: AugmentConfig) -> Path:
    """``<output_dir>/synthetic_<label>.jsonl``, or its ``.shard-I-of-N`` sibling for a sharded job."""
    return shard_path(Path(cfg.output_dir) / f"synthetic_{safe_name(cfg.target_label)}.jsonl", cfg.parsed_shard())


def shard_share(total: int, shard: tuple[int, int] | None) -> int:
    """Shard I's part of ``total`` split over N shards as evenly as possible (the first total % N get one more)."""
    if shard is None:
        return total
    index, count = shard
    base, extra = divmod(total, count)
    return base + (1 if index < extra else 0)


class Augmenter:
    """Turns request numbers into records: prompt, generate, parse, flag.

    Counts the requests it made and the items that passed; with a JobRun, counts tokens under "generate"."""

    def __init__(self, cfg: AugmentConfig, backend, inputs, dups: DuplicateIndex, fidelity=None, job_run=None):
        self.cfg, self.backend, self.inputs = cfg, backend, inputs
        self.dups, self.fidelity, self.job_run = dups, fidelity, job_run
        self.params = cfg.params
        self.label_name = cfg.label_name or cfg.target_label
        self.prefix = safe_name(cfg.target_label)
        self.refusals = 0
        self.passed = 0
        self.requests = 0
        self.groups = cfg.groups()
        self.raw = cfg.prompt_format == "raw"
        self.cut_words: dict[int, list[int]] = {}  # request -> word limits of its examples, when cut to fit
        self.warned_uncounted = False

    def provenance(self) -> dict:
        template, definition = self.inputs.template, self.inputs.definition
        return {
            "model": self.backend.describe(),
            "template": template.name,
            "template_hash": template.hash,
            "definition": definition,
            "definition_hash": hashlib.sha256(definition.encode()).hexdigest()[:12],
            "params": self.params.to_dict(),
            "fidelity_model": self.fidelity.model_dir if self.fidelity else None,
            "embedding_model": self.cfg.embedding_model if self.dups.embedder is not None else None,
            "prompt_format": self.cfg.prompt_format,
            "max_input_tokens": self.cfg.max_input_tokens,
            "samples_per_prompt": self.cfg.samples_per_prompt,
            "target_groups": self.groups or None,
        }

    def request_key(self, r: int) -> str:
        return f"{self.prefix}-r{r:06d}"

    def slot(self, r: int) -> int:
        """The prompt of request ``r``: --samples-per-prompt consecutive requests share one (each its own seed)."""
        return r // self.cfg.samples_per_prompt

    def example_rows(self, r: int) -> list[int]:
        """Rows (indices into the real data) shown in request ``r``."""
        rows = self.inputs.target_rows
        picked = pick_examples(len(rows), self.cfg.examples_per_prompt, self.params.seed, self.slot(r))
        return [rows[i] for i in picked]

    def group(self, r: int) -> str | None:
        """The identity group request ``r`` targets (--target-groups, in turn), or None."""
        return self.groups[self.slot(r) % len(self.groups)] if self.groups else None

    def render(self, r: int, word_limits: list[int] | None = None):
        """Request ``r``'s prompt: a chat, or with --prompt-format raw the seed's plain text."""
        cfg, inputs = self.cfg, self.inputs
        examples = [inputs.real.texts[i] for i in self.example_rows(r)]
        chat = build_chat(inputs.template, self.label_name, inputs.definition, examples, cfg.per_call,
                          cfg.filters.min_words, cfg.filters.max_words, self.group(r), word_limits)  # fmt: skip
        return raw_prompt(chat) if self.raw else chat

    def chat(self, r: int):
        """Request ``r``'s prompt, its real examples shortened until it fits --max-input-tokens."""
        prompt = self.render(r)
        cap = self.cfg.max_input_tokens
        if not cap:
            return prompt
        n = self.backend.prompt_token_count(prompt)
        if n is None:
            if not self.warned_uncounted:
                log.warning("--max-input-tokens: the %s backend cannot count tokens here; prompts are not cut",
                            self.backend.describe().get("backend"))
                self.warned_uncounted = True
            return prompt
        words = [len(self.inputs.real.texts[i].split()) for i in self.example_rows(r)]
        limits = [min(w, self.cfg.filters.max_words) for w in words]
        for _ in range(64):  # each round removes at least one word, usually it fits after one or two
            if n <= cap or max(limits) <= 1:
                break
            longest = max(range(len(limits)), key=limits.__getitem__)
            limits[longest] = max(1, limits[longest] - (n - cap))
            prompt = self.render(r, limits)
            n = self.backend.prompt_token_count(prompt)
            self.cut_words[r] = list(limits)
        return prompt

    def generate(self, chats: Sequence[list[dict]], keys: list[str]) -> list:
        """The backend's answers, tokens counted under "generate" when there is a run record."""
        if not chats:
            return []
        t0 = time.perf_counter()
        completions = self.backend.generate(list(chats), self.params, keys=keys)
        if self.job_run is not None:
            self.job_run.count_tokens(
                str(self.backend.describe().get("model") or self.backend.name),
                "generate",
                sum(c.n_prompt_tokens for c in completions),
                sum(c.n_new_tokens for c in completions),
                time.perf_counter() - t0,
            )
        return completions

    def too_long(self, chats: Sequence) -> dict[int, str]:
        """Requests (by position) whose prompt and --max-new-tokens do not fit the model's context, or whose prompt
        is over --max-input-tokens even with its examples cut to one word, with why."""
        limit = getattr(self.backend, "context_length", lambda: None)()
        cap = self.cfg.max_input_tokens
        if not limit and not cap:
            return {}
        out = {}
        for i, chat in enumerate(chats):
            n = self.backend.prompt_token_count(chat)
            if n is None:
                continue
            if cap and n > cap:
                out[i] = (f"prompt of {n} tokens is more than --max-input-tokens {cap} even with its real examples "
                          "cut to one word each (the template and definition alone are too long)")
            elif limit and n + self.params.max_new_tokens > limit:
                out[i] = (f"prompt of {n} tokens + --max-new-tokens {self.params.max_new_tokens} is more than the "
                          f"model's context ({limit} tokens)")
        return out

    def process(self, requests: Sequence[int]) -> list[dict]:
        keys = [self.request_key(r) for r in requests]
        chats = [self.chat(r) for r in requests]
        too_long = self.too_long(chats)  # never sent, written with the reason (counted, and not retried)
        sent = [i for i in range(len(requests)) if i not in too_long]
        completions = dict(zip(sent, self.generate([chats[i] for i in sent], [keys[i] for i in sent]), strict=True))
        self.requests += len(requests)
        records, items = [], []
        for i, (r, key) in enumerate(zip(requests, keys, strict=True)):
            if i in too_long:
                records.append(self.too_long_record(r, key, too_long[i]))
                continue
            done = completions[i]
            answer, cut = cut_at_next_section(done.text) if self.raw else (done.text, False)
            parsed = parse_quoted(answer) if self.cfg.item_parser == "quoted" else parse_list(answer)
            if cut:
                parsed.notes.append("next_section")
            generation = self.generation_info(r, key, done, parsed.notes)
            if not parsed.items:  # a failed request is a record too, so a rerun does not repeat it
                self.refusals += parsed.refusal
                records.append(self.failed_record(key, done.text, parsed.refusal, generation))
                continue
            for j, text in enumerate(parsed.items):
                truncated = done.finish_reason == "length" and j == len(parsed.items) - 1
                rec = self.item_record(f"{key}-{j}", text, truncated, generation)
                records.append(rec)
                items.append(rec)
        self.judge(items)
        return records

    def too_long_record(self, r: int, key: str, why: str) -> dict:
        generation = {"request": r, "request_seed": request_seed(self.params.seed, key),
                      "example_ids": [self.inputs.real.ids[i] for i in self.example_rows(r)], "finish_reason": None,
                      "new_tokens": 0, "parse_notes": [], **self.variant_info(r)}
        record = self.failed_record(key, None, False, generation)
        record.update(status="too_long", error=why)
        return record

    def generation_info(self, r: int, key: str, done, notes: list[str]) -> dict:
        return {
            "request": r,
            "request_seed": done.seed if done.seed is not None else request_seed(self.params.seed, key),
            "example_ids": [self.inputs.real.ids[i] for i in self.example_rows(r)],
            "finish_reason": done.finish_reason,
            "new_tokens": done.n_new_tokens,
            "parse_notes": notes,
            **self.variant_info(r),
        }

    def variant_info(self, r: int) -> dict:
        """What request ``r`` did beyond the default: its target group, its examples cut to fit."""
        info = {}
        if self.groups:
            info["target_group"] = self.group(r)
        if r in self.cut_words:  # (asked once per request: when its records are made)
            info["example_word_limits"] = self.cut_words.pop(r)
        return info

    def failed_record(self, key: str, raw: str, refusal: bool, generation: dict) -> dict:
        return {
            "id": f"{key}-none",
            "status": "refusal" if refusal else "no_items",
            "text": None,
            "raw": raw,
            "passed": False,
            "generation": generation,
            "provenance": {"model": self.backend.name, "template": self.inputs.template.name},
        }

    def item_record(self, rec_id: str, text: str, truncated: bool, generation: dict) -> dict:
        flags = item_flags(text, self.cfg.filters)
        flags["truncated"] = truncated
        template = self.inputs.template
        return {
            "id": rec_id,
            "status": "ok",
            "text": text,
            "label": self.cfg.target_label,
            "n_words": len(text.split()),
            "flags": flags,
            "generation": generation,
            "provenance": {
                "model": self.backend.name,
                "template": template.name,
                "template_hash": template.hash,
                "prompt_format": self.cfg.prompt_format,
                "params": self.params.to_dict(),
            },
        }

    def judge(self, items: list[dict]) -> None:
        """Duplicate and fidelity flags of this chunk's items, then whether each passed every filter."""
        texts = [rec["text"] for rec in items]
        for rec, info in zip(items, self.dups.check(texts), strict=True):
            sims = {k: info.pop(k) for k in ("max_sim_generated", "max_sim_real")}
            rec["flags"].update(info)
            rec["similarity"] = sims
        scores = self.fidelity.scores(texts) if self.fidelity else [None] * len(items)
        for rec, score in zip(items, scores, strict=True):
            rec["fidelity"] = score
            rec["flags"]["low_fidelity"] = score is not None and score < self.cfg.filters.fidelity_threshold
            rec["passed"] = self.cfg.keep_flagged or not any(rec["flags"].values())
            self.passed += rec["passed"]


def existing_records(path: Path) -> list[dict]:
    """The records already written; one that this job did not write is refused (file, line and field)."""
    if not Path(path).exists():
        return []
    records = []
    for line, rec in iter_jsonl(path):
        problem = record_problem(rec)
        if problem:
            raise InputError("not a record of augment_labels.py (missing or of the wrong type): move the file away, "
                             "or pass --overwrite to start over", path=path, line=line, field=problem)
        records.append(rec)
    return records


def record_problem(rec: dict) -> str | None:
    """The first field of ``rec`` that a record of this job cannot have as it is, or None."""
    generation = rec.get("generation")
    if not isinstance(generation, dict):
        return "generation"
    request = generation.get("request")
    if not isinstance(request, int) or isinstance(request, bool) or request < 0:
        return "generation.request"
    for name, types in (("id", (str,)), ("status", (str,)), ("passed", (bool,)), ("text", (str, type(None)))):
        if not isinstance(rec.get(name), types):
            return name
    if rec["status"] == "ok" and (not isinstance(rec.get("flags"), dict) or rec["text"] is None):
        return "flags" if not isinstance(rec.get("flags"), dict) else "text"
    return None


def write_csv(path: Path, records: Sequence[dict], text_col: str, label_col: str, label_value) -> int:
    """The passing rows with the input's text and label columns (for train_classifier.py --train)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", text_col, label_col])
    n = 0
    for rec in records:
        if rec.get("passed"):
            writer.writerow([rec["id"], rec["text"], label_value])
            n += 1
    atomic_write_text(path, buffer.getvalue())
    return n


# ------------------------------------------------------------------------------------------- running it


@dataclass
class Inputs:
    """What generation reads: the real rows, the target rows among them, the definition and the template."""

    real: RealData
    target: str  # label_key of --target-label
    target_rows: list[int]
    definition: str
    template: Template

    @property
    def label_value(self):
        """The target label as the input file writes it (for the CSV of passing rows)."""
        return self.real.raw_labels[self.target_rows[0]]


@dataclass
class Plan:
    """This run's (or shard's) output file, its share of --n and --max-requests, and its request numbers."""

    out: Path
    target_n: int  # passing examples this job (or shard) makes
    max_requests: int  # requests this job (or shard) may make in all
    shard: tuple[int, int] | None

    def request_number(self, k: int) -> int:
        """The k-th request of this shard is request number I + N * k (so shards never share one)."""
        index, count = self.shard or (0, 1)
        return index + count * k

    def next_local(self, done: Sequence[dict]) -> int:
        """The first k not yet requested in this shard."""
        index, count = self.shard or (0, 1)
        return max(((rec["generation"]["request"] - index) // count for rec in done), default=-1) + 1

    @property
    def stopping_rule(self) -> str:
        return f"until {self.target_n} passing examples or {self.max_requests} requests"


@dataclass
class AugmentResult:
    """What :func:`run` did: the generation summary and the ladder report (None for a mode not run)."""

    summary: dict | None = None
    ladder: dict | None = None


def run(cfg: AugmentConfig, backend=None, embedder=None) -> AugmentResult:
    """The whole job: generate (with --n), then build the sparsity ladder (with --positive-rates)."""
    summary = run_generation(cfg, backend, embedder) if cfg.generate else None
    ladder = run_ladder_step(cfg) if cfg.ladder.positive_rates is not None else None
    return AugmentResult(summary, ladder)


def format_result(result: AugmentResult) -> str:
    parts = [format_summary(result.summary)] if result.summary is not None else []
    if result.ladder is not None:
        parts.append(format_ladder(result.ladder))
    return "\n".join(parts)


def run_generation(cfg: AugmentConfig, backend=None, embedder=None) -> dict:
    """Generate (or resume) until `cfg.n` examples pass the filters or `max_requests` requests are spent.

    Returns the summary. Raises InputError for bad input and Interrupted on SIGTERM/SIGINT (after writing)."""
    inputs = load_inputs(cfg)
    plan = plan_requests(cfg)
    t0 = time.perf_counter()
    with JobRun("augment", record_path(plan.out), cfg, outputs=[plan.out],
                resume_safe=("n", "max_requests")) as job_run:
        describe_run(job_run, cfg, inputs, plan)
        with GracefulStop() as stop, JsonlWriter(plan.out) as writer:
            try:
                generate_until_done(job_run, cfg, inputs, plan, writer, stop, backend, embedder)
            finally:
                record_outputs(job_run, cfg, inputs, plan)
    return {**final_summary(job_run, plan, time.perf_counter() - t0), "keep_flagged": cfg.keep_flagged}


def load_inputs(cfg: AugmentConfig) -> Inputs:
    """Read the labelled file, find the target rows, load the definition and the template."""
    real = read_labelled(cfg.source, cfg.text_col, cfg.label_col, cfg.skip_bad_rows)
    target = label_key(cfg.target_label)
    target_rows = check_target(real, target, cfg.label_col)
    if len(target_rows) < cfg.examples_per_prompt:
        raise InputError(
            f"only {len(target_rows)} rows with label {target!r}, a prompt needs {cfg.examples_per_prompt} "
            "(--examples-per-prompt)",
            path=cfg.source,
            field=cfg.label_col,
        )
    return Inputs(real, target, target_rows, cfg.definition_text(), load_template(cfg.template))


def plan_requests(cfg: AugmentConfig) -> Plan:
    """The output file and this run's share of --n and --max-requests (default: 10 x the requests --n needs)."""
    shard = cfg.parsed_shard()
    target_n = shard_share(cfg.n or 0, shard)
    if cfg.max_requests is not None:
        max_requests = shard_share(cfg.max_requests, shard)
    else:
        max_requests = 10 * math.ceil(max(target_n, 1) / cfg.per_call)
    return Plan(output_path(cfg), target_n, max_requests, shard)


def describe_run(job_run: JobRun, cfg: AugmentConfig, inputs: Inputs, plan: Plan) -> None:
    """The record's fields about the inputs and the plan (written before any request)."""
    job_run.meta.update(
        input=str(cfg.source),
        output=str(plan.out),
        n_real_rows=len(inputs.real.texts),
        n_target_rows=len(inputs.target_rows),
        skipped=dict(sorted(inputs.real.skipped.items())),
        stopping_rule=plan.stopping_rule,
        shard=list(plan.shard) if plan.shard else None,
    )
    job_run.save()


def generate_until_done(job_run, cfg, inputs: Inputs, plan: Plan, writer, stop, backend=None, embedder=None) -> None:
    """Load the models (only when there is work left) and request chunks until enough items passed."""
    done = existing_records(plan.out)
    passed = sum(bool(rec.get("passed")) for rec in done)
    next_local = plan.next_local(done)
    if passed >= plan.target_n or next_local >= plan.max_requests:
        return
    augmenter = load_augmenter(cfg, inputs, done, backend, embedder, job_run)
    job_run.meta["provenance"] = augmenter.provenance()
    job_run.save()
    t0 = time.perf_counter()
    try:
        request_loop(augmenter, cfg, plan, writer, stop, passed, next_local, job_run.command)
    finally:
        job_run.note_items(augmenter.requests)
        job_run.meta["throughput"] = throughput(
            augmenter.backend.stats, augmenter.requests, time.perf_counter() - t0, "requests"
        )


def load_augmenter(cfg: AugmentConfig, inputs: Inputs, done: Sequence[dict], backend, embedder, job_run=None):
    """The backend, the duplicate index (real rows and items already written) and the optional fidelity gate."""
    backend = backend or cfg.engine.load()
    if embedder is None and cfg.embedding_model and cfg.filters.near_dup > 0:
        from socialsynth.text.embeddings import Embedder

        embedder = Embedder(cfg.embedding_model, device=cfg.model.device)
    dups = DuplicateIndex(inputs.real.texts, embedder, cfg.filters.near_dup)
    dups.add([rec["text"] for rec in done if rec.get("text")])
    fidelity = None
    if cfg.fidelity_model is not None:
        fidelity = FidelityGate(cfg.fidelity_model, inputs.target, cfg.filters.fidelity_threshold, cfg.model.device)
    return Augmenter(cfg, backend, inputs, dups, fidelity, job_run)


def request_loop(augmenter, cfg, plan: Plan, writer, stop, passed: int, next_local: int, command: str) -> None:
    """Rounds of requests sized by the pass rate so far, until the target or the request budget is reached."""
    while passed + augmenter.passed < plan.target_n and next_local < plan.max_requests:
        made = augmenter.requests
        # expected passing items per request, from this run so far (at least 1/5 of what is asked)
        per_request = cfg.per_call * max(augmenter.passed / (made * cfg.per_call), 0.2) if made else cfg.per_call
        need = max(1, math.ceil((plan.target_n - passed - augmenter.passed) / per_request))
        local = range(next_local, min(next_local + need, plan.max_requests))
        todo = [plan.request_number(k) for k in local]
        run_chunks(
            todo,
            augmenter.process,
            writer,
            cfg.batch_size,
            stop,
            desc="requests",
            resume_hint=f"rerun the same command to resume: {command}",
        )
        next_local = local[-1] + 1


def record_outputs(job_run: JobRun, cfg: AugmentConfig, inputs: Inputs, plan: Plan) -> None:
    """Counts, the CSV of passing rows and the summary, from every record written so far (however the run ended)."""
    records = existing_records(plan.out)
    n_passed = sum(bool(rec.get("passed")) for rec in records)
    job_run.meta.update(
        n_requests=len({rec["generation"]["request"] for rec in records}),
        n_generated=sum(rec.get("status") == "ok" for rec in records),
        n_passed=n_passed,
        n_csv_rows=write_csv(csv_path(plan.out), records, cfg.text_col, cfg.label_col, inputs.label_value),
        summary=summarise(records),
    )
    job_run.mark_complete(n_passed >= plan.target_n)


def final_summary(job_run: JobRun, plan: Plan, seconds: float) -> dict:
    summary = dict(job_run.meta["summary"])
    summary.update(
        skipped=dict(job_run.meta.get("skipped") or {}),
        output=str(plan.out),
        csv=str(csv_path(plan.out)),
        meta=str(job_run.path),
        target=plan.target_n,
        max_requests=plan.max_requests,
        complete=job_run.meta["complete"],
        seconds=round(seconds, 2),
    )
    return summary


def csv_path(out: Path) -> Path:
    return Path(out).with_suffix(".csv")


def run_ladder_step(cfg: AugmentConfig) -> dict:
    """The sparsity ladder on --synthetic, or on what generation wrote."""
    syn_file = cfg.ladder.synthetic or output_path(cfg)
    synthetic = read_synthetic(syn_file, cfg.text_col, cfg.label_col, label_key(cfg.target_label))
    return run_ladder(cfg.ladder_config(), synthetic)


def summarise(records: Sequence[dict]) -> dict:
    from collections import Counter

    flags: Counter = Counter()
    items = [rec for rec in records if rec.get("status") == "ok"]
    for rec in items:
        flags.update(k for k, v in rec["flags"].items() if v)
    statuses = Counter(rec.get("status") for rec in records)
    return {
        "requests": len({rec["generation"]["request"] for rec in records}),
        "generated": len(items),
        "passed": sum(bool(rec.get("passed")) for rec in items),
        "refusals": statuses.get("refusal", 0),
        "requests_without_items": statuses.get("no_items", 0),
        "requests_too_long": statuses.get("too_long", 0),
        "flag_counts": dict(sorted(flags.items())),
    }


def format_summary(s: dict) -> str:
    lines = [
        f"requests: {s['requests']} (refusals {s['refusals']}, no list items {s['requests_without_items']})",
        f"generated: {s['generated']}, {'kept (--keep-flagged)' if s.get('keep_flagged') else 'passed all filters'}: "
        f"{s['passed']} (target {s['target']})",
    ]
    if s.get("requests_too_long"):
        lines.append(f"not sent: {s['requests_too_long']} requests too long for the model's context (their real "
                     "examples are too long: lower --max-words)")
    if s.get("skipped"):
        lines.append("skipped input rows: " + ", ".join(f"{k}: {v}" for k, v in s["skipped"].items()))
    if s["flag_counts"]:
        lines.append("flags: " + ", ".join(f"{k} {v}" for k, v in s["flag_counts"].items()))
    if not s["complete"]:
        lines.append(
            f"warning: fewer than {s['target']} passing examples after {s['requests']} requests "
            f"(--max-requests {s['max_requests']}); rerun with a higher --max-requests to continue"
        )
    lines += [f"output: {s['output']}", f"csv:    {s['csv']} (passing rows only)", f"meta:   {s['meta']}"]
    return "\n".join(lines)
