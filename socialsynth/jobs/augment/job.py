"""Rare-class augmentation (seed 003, Capstone-Meta): few-shot prompts built from pairs of real examples of the
target label ask an LLM for several new examples each; the answer is parsed as a list, every item is flagged
(length, duplicates of each other and of the real data, optional label fidelity) and written with its provenance.
`augment_labels.py` is a thin front end to `run_augment_job`; prompts, parsing and filters are in
`augment_text.py`, the sparsity ladder in `ladder.py`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from socialsynth.jobs.augment.text import DuplicateIndex, FidelityGate, FilterSettings, ParsedList, build_chat, item_flags, load_definition, normalise, parse_list, pick_examples, remove_hashtags
from socialsynth.classify.labels import is_missing, label_key
from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_json, atomic_write_text, iter_jsonl, meta_path, read_records, shard_path
from socialsynth.llm import BackendSpec, GenerationParams, request_seed
from socialsynth.prompts import load_template
from socialsynth.core.provenance import jsonable, previous_meta, versions
from socialsynth.core.runner import GracefulStop, run_chunks

log = logging.getLogger(__name__)
TEMPLATE = "augment_fewshot"


# ------------------------------------------------------------------------------------------- the job


@dataclass
class AugmentConfig:
    input: Path
    target_label: str
    n: int = 100
    output_dir: Path = Path("output")
    text_col: str = "text"
    label_col: str = "label"
    label_name: str | None = None  # the label's name in the prompt (default: the target label)
    definition: str | None = None
    definition_file: Path | None = None
    examples_per_prompt: int = 2
    per_call: int = 5
    max_requests: int | None = None  # None: 10 x the requests n needs
    batch_size: int = 8  # requests per chunk (generated and written together)
    template: str = TEMPLATE
    engine: BackendSpec = field(default_factory=BackendSpec)
    params: GenerationParams = field(default_factory=GenerationParams)
    filters: FilterSettings = field(default_factory=FilterSettings)
    embedding_model: str | None = "embedded"
    fidelity_model: Path | None = None
    skip_bad_rows: bool = False
    command: str = ""
    # (I, N): this SLURM array task's part of the job: about n/N passing examples (and max_requests/N requests),
    # from request numbers I, I+N, I+2N, ... so no two shards share a request key or seed; see shard_share
    shard: tuple[int, int] | None = None


def safe_name(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "label"


def output_path(cfg: AugmentConfig) -> Path:
    """``<output_dir>/synthetic_<label>.jsonl``, or its ``.shard-I-of-N`` sibling for a sharded job."""
    return shard_path(Path(cfg.output_dir) / f"synthetic_{safe_name(cfg.target_label)}.jsonl", cfg.shard)


def shard_share(total: int, shard: tuple[int, int] | None) -> int:
    """Shard I's part of ``total`` split over N shards as evenly as possible (the first total % N get one more)."""
    if shard is None:
        return total
    index, count = shard
    base, extra = divmod(total, count)
    return base + (1 if index < extra else 0)


@dataclass
class RealData:
    texts: list[str]
    labels: list[str]  # label_key of each row
    raw_labels: list  # the label as the file has it (written back to the CSV)
    ids: list[str]
    path: Path


def read_labelled(path: Path, text_col: str, label_col: str, skip_bad_rows: bool = False) -> RealData:
    """Rows with a text and a label; missing columns are a one-line error naming the file and column."""
    data = read_records(
        path, required=(text_col, label_col), nonempty=(text_col,), on_bad_row="skip" if skip_bad_rows else "error"
    )
    if not data.records:
        raise InputError("no rows with a text", path=path, field=text_col)
    out = RealData([], [], [], [], Path(path))
    for rec, line in zip(data.records, data.line_numbers):
        raw = rec.get(label_col)
        if is_missing(raw):
            continue
        out.texts.append(str(rec[text_col]))
        out.labels.append(label_key(raw))
        out.raw_labels.append(raw)
        out.ids.append(label_key(rec["id"]) if not is_missing(rec.get("id")) else f"{Path(path).stem}:{line}")
    return out


def check_target(data: RealData, target: str, col: str) -> list[int]:
    index = [i for i, lab in enumerate(data.labels) if lab == target]
    if not index:
        have = sorted(set(data.labels))
        raise InputError(
            f"target label {target!r} does not occur (labels: {', '.join(have[:10])})", path=data.path, field=col
        )
    return index


class Augmenter:
    """Turns request numbers into records: prompt, generate, parse, flag."""

    def __init__(self, cfg, backend, template, definition, real: RealData, target_rows, dups, fidelity=None):
        self.cfg, self.backend, self.template, self.definition = cfg, backend, template, definition
        self.real, self.target_rows, self.dups, self.fidelity = real, target_rows, dups, fidelity
        self.label_name = cfg.label_name or cfg.target_label
        self.prefix = safe_name(cfg.target_label)
        self.refusals = 0
        self.passed = 0

    def provenance(self) -> dict:
        return {
            "model": self.backend.describe(),
            "template": self.template.name,
            "template_hash": self.template.hash,
            "definition": self.definition,
            "definition_hash": hashlib.sha256(self.definition.encode()).hexdigest()[:12],
            "params": self.cfg.params.to_dict(),
            "fidelity_model": self.fidelity.model_dir if self.fidelity else None,
            "embedding_model": self.cfg.embedding_model if self.dups.embedder is not None else None,
        }

    def request_key(self, r: int) -> str:
        return f"{self.prefix}-r{r:06d}"

    def process(self, requests: Sequence[int]) -> list[dict]:
        cfg = self.cfg
        shown = {r: pick_examples(len(self.target_rows), cfg.examples_per_prompt, cfg.params.seed, r) for r in requests}
        chats = [
            build_chat(
                self.template,
                self.label_name,
                self.definition,
                [self.real.texts[self.target_rows[i]] for i in shown[r]],
                cfg.per_call,
                cfg.filters.min_words,
                cfg.filters.max_words,
            )
            for r in requests
        ]
        keys = [self.request_key(r) for r in requests]
        completions = self.backend.generate(chats, cfg.params, keys=keys)
        records, items = [], []
        model = self.backend.name
        for r, key, done in zip(requests, keys, completions):
            parsed = parse_list(done.text)
            generation = {
                "request": r,
                "request_seed": done.seed if done.seed is not None else request_seed(cfg.params.seed, key),
                "example_ids": [self.real.ids[self.target_rows[i]] for i in shown[r]],
                "finish_reason": done.finish_reason,
                "new_tokens": done.n_new_tokens,
                "parse_notes": parsed.notes,
            }
            if not parsed.items:  # a failed request is a record too, so a rerun does not repeat it
                self.refusals += parsed.refusal
                records.append(
                    {
                        "id": f"{key}-none",
                        "status": "refusal" if parsed.refusal else "no_items",
                        "text": None,
                        "raw": done.text,
                        "passed": False,
                        "generation": generation,
                        "provenance": {"model": model, "template": self.template.name},
                    }
                )
                continue
            for j, text in enumerate(parsed.items):
                flags = item_flags(text, cfg.filters)
                flags["truncated"] = done.finish_reason == "length" and j == len(parsed.items) - 1
                rec = {
                    "id": f"{key}-{j}",
                    "status": "ok",
                    "text": text,
                    "label": cfg.target_label,
                    "n_words": len(text.split()),
                    "flags": flags,
                    "generation": generation,
                    "provenance": {
                        "model": model,
                        "template": self.template.name,
                        "template_hash": self.template.hash,
                        "params": cfg.params.to_dict(),
                    },
                }
                records.append(rec)
                items.append(rec)
        texts = [rec["text"] for rec in items]
        for rec, info in zip(items, self.dups.check(texts)):
            sims = {k: info.pop(k) for k in ("max_sim_generated", "max_sim_real")}
            rec["flags"].update(info)
            rec["similarity"] = sims
        scores = self.fidelity.scores(texts) if self.fidelity else [None] * len(items)
        for rec, score in zip(items, scores):
            rec["fidelity"] = score
            rec["flags"]["low_fidelity"] = score is not None and score < cfg.filters.fidelity_threshold
            rec["passed"] = not any(rec["flags"].values())
            self.passed += rec["passed"]
        return records


def existing_records(path: Path) -> list[dict]:
    return [rec for _, rec in iter_jsonl(path)] if Path(path).exists() else []


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


def run_augment_job(cfg: AugmentConfig, backend=None, embedder=None) -> dict:
    """Generate (or resume) until `cfg.n` examples pass the filters or `max_requests` requests are spent.

    Returns the summary. Raises InputError for bad input and Interrupted on SIGTERM/SIGINT (after writing)."""
    if cfg.n < 0 or cfg.per_call < 1 or cfg.examples_per_prompt < 1:
        raise InputError("--n must be >= 0, --per-call and --examples-per-prompt >= 1")
    real = read_labelled(cfg.input, cfg.text_col, cfg.label_col, cfg.skip_bad_rows)
    target = label_key(cfg.target_label)
    target_rows = check_target(real, target, cfg.label_col)
    if len(target_rows) < cfg.examples_per_prompt:
        raise InputError(
            f"only {len(target_rows)} rows with label {target!r}, a prompt needs {cfg.examples_per_prompt} "
            "(--examples-per-prompt)",
            path=cfg.input,
            field=cfg.label_col,
        )
    label_name = cfg.label_name or target
    definition = load_definition(cfg.definition, cfg.definition_file, label_name)
    template = load_template(cfg.template)
    label_value = real.raw_labels[target_rows[0]]
    out = output_path(cfg)
    meta_file = meta_path(out)
    target_n = shard_share(cfg.n, cfg.shard)  # passing examples this job (or shard) makes
    index, count = cfg.shard or (0, 1)  # the k-th request of this shard is request number index + count * k
    if cfg.max_requests is not None:
        max_requests = shard_share(cfg.max_requests, cfg.shard)
    else:
        max_requests = 10 * math.ceil(max(target_n, 1) / cfg.per_call)
    t0 = time.perf_counter()
    stop = GracefulStop()
    with stop, JsonlWriter(out) as writer:
        done = existing_records(out)
        done_requests = {rec["generation"]["request"] for rec in done}
        passed = sum(bool(rec.get("passed")) for rec in done)
        meta = previous_meta(meta_file)
        meta.update(
            command=cfg.command,
            input=str(cfg.input),
            output=str(out),
            config=jsonable(asdict(cfg)),
            versions=versions(),
            n_real_rows=len(real.texts),
            n_target_rows=len(target_rows),
            stopping_rule=f"until {target_n} passing examples or {max_requests} requests",
            shard=list(cfg.shard) if cfg.shard else None,
            complete=False,
        )
        job = None
        counts = None
        try:
            next_request = max(((r - index) // count for r in done_requests), default=-1) + 1  # in this shard
            if passed < target_n and next_request < max_requests:
                backend = backend or cfg.engine.load()
                if embedder is None and cfg.embedding_model and cfg.filters.near_dup > 0:
                    from socialsynth.text.embeddings import Embedder

                    embedder = Embedder(cfg.embedding_model, device=cfg.engine.device)
                dups = DuplicateIndex(real.texts, embedder, cfg.filters.near_dup)
                dups.add([rec["text"] for rec in done if rec.get("text")])
                fidelity = None
                if cfg.fidelity_model is not None:
                    fidelity = FidelityGate(
                        cfg.fidelity_model, target, cfg.filters.fidelity_threshold, cfg.engine.device
                    )
                job = Augmenter(cfg, backend, template, definition, real, target_rows, dups, fidelity)
                meta["provenance"] = job.provenance()
                counts = 0  # requests made in this run
                while passed + job.passed < target_n and next_request < max_requests:
                    # expected passing items per request, from this run so far (at least 1/5 of what is asked)
                    per_request = (
                        cfg.per_call * max(job.passed / (counts * cfg.per_call), 0.2) if counts else cfg.per_call
                    )
                    need = max(1, math.ceil((target_n - passed - job.passed) / per_request))
                    local = range(next_request, min(next_request + need, max_requests))
                    todo = [index + count * k for k in local]
                    run_chunks(
                        todo,
                        job.process,
                        writer,
                        cfg.batch_size,
                        stop,
                        desc="requests",
                        resume_hint=f"rerun the same command to resume: {cfg.command}",
                    )
                    next_request = local[-1] + 1
                    counts += len(todo)
        finally:
            records = existing_records(out)
            n_passed = sum(bool(rec.get("passed")) for rec in records)
            meta["n_requests"] = len({rec["generation"]["request"] for rec in records})
            meta["n_generated"] = sum(rec.get("status") == "ok" for rec in records)
            meta["n_passed"] = n_passed
            meta["complete"] = n_passed >= target_n
            meta["seconds"] = round(time.perf_counter() - t0, 2)
            if job is not None:
                st = job.backend.stats
                meta.setdefault("runs", []).append(
                    {
                        "command": cfg.command,
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                        "requests": counts,
                        "generation_seconds": round(st.seconds, 2),
                        "new_tokens": st.new_tokens,
                    }
                )
            csv_path = out.with_suffix(".csv")
            meta["n_csv_rows"] = write_csv(csv_path, records, cfg.text_col, cfg.label_col, label_value)
            meta["summary"] = summarise(records)
            atomic_write_json(meta_file, meta)
    summary = dict(meta["summary"])
    summary.update(
        output=str(out),
        csv=str(csv_path),
        meta=str(meta_file),
        target=target_n,
        max_requests=max_requests,
        complete=meta["complete"],
        seconds=meta["seconds"],
    )
    return summary


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
        "flag_counts": dict(sorted(flags.items())),
    }


def format_summary(s: dict) -> str:
    lines = [
        f"requests: {s['requests']} (refusals {s['refusals']}, no list items {s['requests_without_items']})",
        f"generated: {s['generated']}, passed all filters: {s['passed']} (target {s['target']})",
    ]
    if s["flag_counts"]:
        lines.append("flags: " + ", ".join(f"{k} {v}" for k, v in s["flag_counts"].items()))
    if not s["complete"]:
        lines.append(
            f"warning: fewer than {s['target']} passing examples after {s['requests']} requests "
            f"(--max-requests {s['max_requests']}); rerun with a higher --max-requests to continue"
        )
    lines += [f"output: {s['output']}", f"csv:    {s['csv']} (passing rows only)", f"meta:   {s['meta']}"]
    return "\n".join(lines)
