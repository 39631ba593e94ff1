"""Privacy-preserving rephrasing (socsys/synthetic, seed 001): each post is rewritten by one or more LLMs so that
its personal details are swapped for plausible alternatives, optionally after a per-model temperature search,
and optionally followed by a linkability audit. `rephrase_posts.py` (and `socialsynth rephrase`) parse a
:class:`~socialsynth.jobs.rephrase.config.RephraseConfig` and call :func:`run`.

Models are loaded one at a time (search and generate everything with model 1, free it, then model 2) so that
several 7-8B models fit one GPU in turn. The run record is `rephrased.meta.json` in the output folder (sharded:
`rephrased.shard-I-of-N.meta.json`); it counts tokens per model and per stage ("search", "rephrase").
"""

from __future__ import annotations

import gc
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import (
    JsonlWriter,
    atomic_write_json,
    atomic_write_text,
    iter_jsonl,
    read_records,
    select_range,
    shard_path,
)
from socialsynth.core.run import JobRun, record_path
from socialsynth.core.runner import GracefulStop, run_chunks
from socialsynth.jobs.rephrase.audit import strip_context
from socialsynth.jobs.rephrase.config import RephraseConfig, model_slugs, parse_temperatures
from socialsynth.llm import Backend, Chat, GenerationParams
from socialsynth.prompts import Template, load_template
from socialsynth.text.quality import QUOTES, Cleaned, clean_generation, lexical_flags

__all__ = ["RephraseConfig", "model_slugs", "parse_temperatures", "run", "format_summary"]

log = logging.getLogger(__name__)
RECORDS_NAME = "rephrased"

# -- prompt and parsing ----------------------------------------------------------------------------------------


def rephrase_chat(template: Template, post: str) -> Chat:
    return [
        {"role": "system", "content": template.system.format(post=post)},
        {"role": "user", "content": template.user.format(post=post)},
    ]


# The seed kept Llama2's "text after the first colon". We cut before the first colon only when what precedes it is
# a label (a short noun phrase naming the answer), never an ordinary sentence such as "Posted in the X subreddit:".
_LABEL = re.compile(
    r"^[\"'*#\s]*(?:the\s+|my\s+|a\s+)?(?:(?:changed|new|rephrased|rewritten|modified|synthetic|recreated|revised|"
    r"different|anonymi[sz]ed|final)\s+)*(?:post|story|version|text|output|answer|response|reddit post)(?:\s*\d+)?"
    r"[\"'*\s]*$",
    re.IGNORECASE,
)


def clean_rephrasing(text: str) -> Cleaned:
    """clean_generation (preambles incl. `"Changed Post":`, echoes, trailing notes, wrapping quotes), then a
    leading `Label:` and quotes that wrap the whole answer even when the answer quotes someone inside."""
    cleaned = clean_generation(text)
    out, notes = cleaned.text, list(cleaned.notes)
    head, colon, rest = out.partition(":")
    if colon and "\n" not in head and _LABEL.match(head):
        out = rest.strip()
        notes.append("label")
    if len(out) >= 2 and out[0] in QUOTES and out[-1] in QUOTES and (notes or out[0] == out[-1]):
        inner = out[1:-1]
        if _balanced_quotes(inner):
            out = inner.strip()
            notes.append("quotes")
    return Cleaned(out, notes)


def _balanced_quotes(text: str) -> bool:
    """Straight double quotes inside `text` pair up as opening (after a space or start) and closing (before a space,
    punctuation or end) quotes: then outer quotes around `text` wrap the whole answer, not `"hi" she said, "bye"`."""
    opening = True
    for m in re.finditer('"', text):
        before = text[m.start() - 1] if m.start() else " "
        after = text[m.end()] if m.end() < len(text) else " "
        if opening and not (before.isspace() or before in "([{-—"):
            return False
        if not opening and after.isalnum():
            return False
        opening = not opening
    return opening and text.count("“") == text.count("”")


# -- models and temperatures -----------------------------------------------------------------------------------


def temperature_search(
    backend: Backend,
    template: Template,
    posts: Sequence[tuple[str, str]],
    temperatures: Sequence[float],
    params: GenerationParams,
    similarity: Callable[[Sequence[str], Sequence[str]], np.ndarray],
) -> dict[float, float]:
    """Mean cosine similarity (original, rephrasing) over `posts` [(id, text)] at each temperature."""
    means = {}
    chats = [rephrase_chat(template, text) for _, text in posts]
    originals = [text for _, text in posts]
    for t in temperatures:
        keys = [f"search:{pid}:t{t:g}" for pid, _ in posts]
        completions = backend.generate(chats, replace(params, temperature=t), keys=keys)
        texts = [clean_rephrasing(c.text).text or c.text for c in completions]
        means[t] = round(float(np.mean(similarity(originals, texts))), 4)
    return means


def choose_temperature(means: dict[float, float]) -> float:
    """The temperature with the lowest mean similarity (the lowest temperature among ties)."""
    return min(sorted(means), key=lambda t: means[t])


def plot_search(by_model: dict[str, dict], path: Path) -> str | None:
    if not by_model:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for slug, res in by_model.items():
        points = sorted((float(t), m) for t, m in res["means"].items())
        line = ax.plot(*zip(*points, strict=True), marker="o", label=slug)[0]
        chosen = float(res["chosen"])
        ax.plot([chosen], [res["means"][str(chosen)]], marker="*", ms=14, color=line.get_color())
    ax.set(xlabel="temperature", ylabel="mean cosine similarity to original", title="temperature search (* = chosen)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def format_search(by_model: dict[str, dict]) -> str:
    temps = sorted({float(t) for res in by_model.values() for t in res["means"]})
    lines = [f"{'temperature':<24}" + "".join(f"{t:>7g}" for t in temps) + "   chosen"]
    for slug, res in by_model.items():
        cells = "".join(f"{res['means'].get(str(t), float('nan')):>7.3f}" for t in temps)
        lines.append(f"{slug:<24}{cells}   {float(res['chosen']):g}")
    return "\n".join(lines)


# -- inputs ----------------------------------------------------------------------------------------------------


@dataclass
class Post:
    idx: int
    id: str
    text: str
    row: dict


def load_posts(cfg: RephraseConfig) -> tuple[list[Post], Counter, int]:
    """Read and select the posts; returns (selected posts, skip counts, input row count)."""
    data = read_records(
        cfg.input,
        required=(cfg.text_col,) + ((cfg.id_col,) if cfg.id_col else ()),
        nonempty=(cfg.text_col,),
        on_bad_row="skip" if cfg.skip_bad_rows else "error",
    )
    if not data.records and not data.skipped:
        raise InputError("the file has no records", path=cfg.input)
    skipped = Counter(data.skipped)
    id_col = cfg.id_col or ("id" if data.records and all("id" in r for r in data.records) else None)
    posts, seen = [], set()
    for rec, line in zip(data.records, data.line_numbers, strict=True):
        if len(rec[cfg.text_col]) > cfg.max_post_chars:
            skipped[f"post longer than {cfg.max_post_chars} characters"] += 1
            continue
        pid = str(rec[id_col]) if id_col else str(line)
        if pid in seen:
            if cfg.skip_bad_rows:  # counted, like any other bad row
                skipped["duplicate id"] += 1
                continue
            raise InputError(f"duplicate id {pid!r} (ids must be unique; use --id-col, or --skip-bad-rows to keep "
                             "the first)", path=cfg.input, line=line, field=id_col)
        seen.add(pid)
        posts.append(Post(0, pid, rec[cfg.text_col], rec))
    if posts and cfg.range.start_idx >= len(posts):
        raise InputError(f"{cfg.range.start_idx} is past the last post (there are {len(posts)})",
                         path=cfg.input, field="--start-idx")
    selected = select_range(posts, cfg.range.start_idx, cfg.range.end_idx, cfg.shard)
    for i, post in selected:
        post.idx = i
    return [p for _, p in selected], skipped, len(data.records)


def record_key(post_id: str, slug: str, k: int) -> str:
    return f"{post_id}:{slug}:{k}"


# -- one model's rephrasings -----------------------------------------------------------------------------------


class Rephraser:
    """Turns chunks of posts into output records for one model."""

    def __init__(self, backend: Backend, template: Template, params: GenerationParams, slug: str, samples: int):
        self.backend, self.template, self.params, self.slug, self.samples = backend, template, params, slug, samples

    def provenance(self) -> dict:
        return {
            **self.backend.describe(),
            "template": f"{self.template.name}@{self.template.hash}",
            "sampling": self.params.to_dict(),
        }

    def process(self, items: Sequence[tuple[Post, int]]) -> list[dict]:
        chats = [rephrase_chat(self.template, post.text) for post, _ in items]
        keys = [record_key(post.id, self.slug, k) for post, k in items]
        completions = self.backend.generate(chats, self.params, keys=keys)
        provenance = self.provenance()
        return [
            self.record(post, k, key, comp, provenance)
            for (post, k), key, comp in zip(items, keys, completions, strict=True)
        ]

    def record(self, post: Post, k: int, key: str, comp: Any, provenance: dict) -> dict:
        cleaned = clean_rephrasing(comp.text)
        flags = lexical_flags(cleaned.text, post.text)
        # a copy without the "Posted in the X subreddit:" prefix is unchanged too
        flags["unchanged"] = flags["unchanged"] or lexical_flags(cleaned.text, strip_context(post.text))["unchanged"]
        flags["truncated"] = comp.finish_reason == "length"
        return {
            "id": key,
            "post_id": post.id,
            "idx": post.idx,
            "model": self.backend.name,
            "model_slug": self.slug,
            "sample": k,
            "original": post.text,
            "generated_text": cleaned.text,
            "raw_text": comp.text,
            "cut": cleaned.notes,
            "flags": flags,
            "passed": not any(flags.values()),
            "generation": {
                "finish_reason": comp.finish_reason,
                "new_tokens": comp.n_new_tokens,
                "request_seed": comp.seed,
            },
            "status": "ok",
            "provenance": provenance,
        }


def _free(backend) -> None:
    del backend
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


# -- the job ---------------------------------------------------------------------------------------------------


@dataclass
class OutputPaths:
    """Where a run (or one shard of it) writes: records, run record, CSVs, plot and audit."""

    out_dir: Path
    shard: tuple[int, int] | None

    def file(self, name: str) -> Path:
        return shard_path(self.out_dir / name, self.shard)

    @property
    def records(self) -> Path:
        return self.file(f"{RECORDS_NAME}.jsonl")

    @property
    def record(self) -> Path:
        return record_path(self.records)


class LazyEmbedder:
    """The embedding model, loaded on first use (or the one given, e.g. a test's)."""

    def __init__(self, name: str | None, device: str, given: Any = None):
        self.name, self.device, self.model = name, device, given

    def get(self) -> Any:
        if self.model is None:
            from socialsynth.text.embeddings import Embedder

            self.model = Embedder(self.name, device=self.device)
        return self.model


@dataclass
class Rephrasing:
    """What the steps of one run share: the config, the selected posts, the models and where things go."""

    cfg: RephraseConfig
    template: Template
    posts: list[Post]
    skipped: Counter
    n_input: int
    specs: list[Any]  # BackendSpec (or anything with .model and .load())
    slugs: list[str]
    paths: OutputPaths
    embedder: LazyEmbedder
    params: list[GenerationParams]  # per model: the shared flags with its models entry on top
    csv_names: list[str]  # per model
    t_start: float = field(default_factory=time.perf_counter)
    search: dict = field(default_factory=dict)
    too_long: dict = field(default_factory=dict)  # the current model's: post id -> why it does not fit

    def keys(self, slugs: Sequence[str]) -> list[str]:
        """Every record key the selected posts need from these models."""
        samples = range(self.cfg.samples_per_model)
        return [record_key(p.id, s, k) for s in slugs for p in self.posts for k in samples]


def run(cfg: RephraseConfig, *, specs: Sequence[Any] | None = None, embedder: Any = None,
        command: str | None = None) -> dict:
    """Run (or resume) the job; return the summary. Raises InputError for bad input, Interrupted on SIGTERM.

    ``specs`` replace the BackendSpecs of ``cfg.models`` (anything with ``.model`` and ``.load()``); ``embedder``
    (anything with ``encode`` and ``pair_similarity``) replaces loading ``cfg.embedding_model``."""
    job = load_inputs(cfg, specs, embedder)
    # the CSVs are rewritten whole from the records at the end of every run: their names may change on a resume
    with JobRun("rephrase", job.paths.record, cfg, command=command, outputs=[job.paths.records],
                resume_safe=("csv_name", "csv_post_id")) as record:
        check_outputs(job.paths.records)
        describe_run(record, job)
        open_search(record, job)
        generate(record, job)
        records = read_outputs(job)
        summary = summarise_outputs(record, job, records)
        if cfg.audit:
            summary.update(audit_outputs(record, job, records))
        summary["seconds"] = round(time.perf_counter() - job.t_start, 2)
        record.meta["summary"] = {k: v for k, v in summary.items() if k not in ("audit_table", "search_table")}
    return summary


def load_inputs(cfg: RephraseConfig, specs: Sequence[Any] | None, embedder: Any) -> Rephrasing:
    """Step 1: the template, the selected posts and the models (nothing is written yet)."""
    t_start = time.perf_counter()
    template = load_template(cfg.template)
    posts, skipped, n_input = load_posts(cfg)
    if embedder is None and (cfg.search_temperatures or cfg.audit):
        check_embedding_model(cfg.embedding_model)  # now, not after every model has generated
    if specs is None:
        specs = cfg.specs()
        check_models(specs)
    specs = list(specs)
    slugs = model_slugs([s.model for s in specs])
    if [s.model for s in specs] == cfg.model_names:
        params, csv_names = [cfg.model_params(i) for i in range(len(specs))], cfg.csv_names()
    else:  # specs given in place of other models (tests): the shared settings
        params, csv_names = [cfg.params] * len(specs), [cfg.csv_name.format(slug=slug) for slug in slugs]
    return Rephrasing(cfg, template, posts, skipped, n_input, specs, slugs, OutputPaths(cfg.output_dir, cfg.shard),
                      LazyEmbedder(cfg.embedding_model, cfg.model.device, embedder), params, csv_names, t_start)


# the fields every record of this job has, and their types (a record written by something else is refused)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (str,), "post_id": (str,), "model_slug": (str,), "sample": (int,), "status": (str,), "passed": (bool,),
    "flags": (dict,), "generated_text": (str, type(None)), "provenance": (dict,),
}


def check_outputs(path: Path) -> None:
    """Refuse (one line naming the file, line and field) an existing output whose records this job did not write:
    resuming into it would trust them as done and then fail on them."""
    if not Path(path).exists():
        return
    for line, rec in iter_jsonl(path, on_bad_row="skip"):  # a torn line is the writer's to repair or refuse
        for name, types in RECORD_FIELDS.items():
            if not isinstance(rec.get(name), types) or (types == (int,) and isinstance(rec.get(name), bool)):
                raise InputError("not a record of rephrase_posts.py (missing or of the wrong type): move the file "
                                 "away, or pass --overwrite to start over", path=path, line=line, field=name)


def check_models(specs: Sequence[Any]) -> None:
    """Every -m can be found (a folder, or an id cached while offline) before the first one loads: the second
    model missing is otherwise found after the first one's whole run."""
    from socialsynth.llm.loading import check_model_available

    for spec in specs:
        if spec.backend != "openai" and spec.model != "embedded":
            check_model_available(spec.model, flag="-m/--model", backend=spec.backend)


def check_embedding_model(name: str | None) -> None:
    """InputError naming --embedding-model when the model is a missing folder, or an id not cached offline."""
    from socialsynth.llm.loading import check_embedding_model_available

    if name and name != "embedded":
        check_embedding_model_available(name)


def describe_run(record: JobRun, job: Rephrasing) -> None:
    """Step 2: what this run reads and which models it uses, in the run record."""
    cfg = job.cfg
    record.meta.update(
        {
            "input": str(cfg.input),
            "output": str(job.paths.records),
            "models": dict(zip(job.slugs, [s.model for s in job.specs], strict=True)),
            "sampling": {slug: p.to_dict() for slug, p in zip(job.slugs, job.params, strict=True)},
            "template": f"{job.template.name}@{job.template.hash}",
            "n_input_rows": job.n_input,
            "skipped": dict(job.skipped),
            "n_selected": len(job.posts),
            "shard": list(cfg.shard) if cfg.shard else None,
        }
    )
    record.meta.setdefault("per_model", {})


def _search_settings(cfg: RephraseConfig, sample_ids: list[str]) -> dict:
    return {
        "temperatures": list(cfg.search_temperatures or ()),
        "sample_size": len(sample_ids),
        "sample_ids": sample_ids,
        "seed": cfg.sampling.seed,
        "embedding_model": cfg.embedding_model,
        "template": cfg.template,
    }


def open_search(record: JobRun, job: Rephrasing) -> None:
    """Step 3: the temperature search's sample, and the results of an earlier run with the same settings."""
    cfg = job.cfg
    if not cfg.search_temperatures:
        return
    sample = random.Random(cfg.sampling.seed).sample(job.posts, min(cfg.search_sample, len(job.posts)))
    settings = _search_settings(cfg, [p.id for p in sample])
    search = record.meta.get("temperature_search") or {}
    if search.get("settings") != settings:
        search = {}  # a different search: do it again
    search.setdefault("settings", settings)
    search.setdefault("by_model", {})
    record.meta["temperature_search"] = job.search = search


def generate(record: JobRun, job: Rephrasing) -> None:
    """Step 4: each model in turn (search, then rephrase what is missing); the record says what is written."""
    with GracefulStop() as stop, JsonlWriter(job.paths.records) as writer:
        try:
            for i in range(len(job.specs)):
                rephrase_with(record, job, i, writer, stop)
        finally:
            record.meta["n_written"] = len(writer.done)
            record.mark_complete(all(key in writer.done for key in job.keys(job.slugs)))
            record.save()


def rephrase_with(record: JobRun, job: Rephrasing, index: int, writer: JsonlWriter, stop: GracefulStop) -> None:
    """Model ``index``: load it, find its temperature, write the rephrasings it still owes, free it."""
    cfg, spec, slug = job.cfg, job.specs[index], job.slugs[index]
    todo = [(p, k) for p in job.posts for k in range(cfg.samples_per_model)
            if record_key(p.id, slug, k) not in writer.done]
    log.info("%s: %d records to do (of %d)", slug, len(todo), len(job.posts) * cfg.samples_per_model)
    if not todo:
        return
    backend = spec.load()
    try:
        too_long = too_long_posts(backend, job, {p.id: p for p, _ in todo}, job.params[index].max_new_tokens)
        if too_long:  # written as records with their reason, so they are counted and never retried
            writer.write([too_long_record(p, k, slug, backend, too_long[p.id]) for p, k in todo if p.id in too_long])
            todo = [(p, k) for p, k in todo if p.id not in too_long]
        params, source = model_params(record, job, backend, index)
        rephraser = Rephraser(backend, job.template, params, slug, cfg.samples_per_model)
        with record.track(backend, "rephrase", model=spec.model):
            counts = run_chunks(todo, rephraser.process, writer, cfg.batch_size * cfg.samples_per_model, stop,
                                desc=f"{slug} rephrasings",
                                resume_hint=f"rerun the same command to resume: {record.command}")
        st = backend.stats
        record.meta["per_model"][slug] = {
            "model": spec.model,
            "temperature": params.temperature,
            "temperature_source": source,
            "provenance": rephraser.provenance(),
            "records_this_run": counts.done,
            "seconds": round(counts.seconds, 2),
            "new_tokens": st.new_tokens,
            "new_tokens_per_second": round(st.new_tokens / st.seconds, 1) if st.seconds else None,
        }
    finally:
        _free(backend)


def too_long_posts(backend: Backend, job: Rephrasing, posts: dict[str, Post], new_tokens: int) -> dict[str, str]:
    """Posts (of ``posts`` and the search sample) whose prompt and --max-new-tokens do not fit the model's
    context: post id -> why. Empty when the engine does not say its context (a server refuses such requests)."""
    limit = getattr(backend, "context_length", lambda: None)()
    if not limit:
        return {}
    sample = set(job.search.get("settings", {}).get("sample_ids", ()))
    posts = {**posts, **{p.id: p for p in job.posts if p.id in sample}}
    out = {}
    for pid, post in posts.items():
        n = backend.token_count(rephrase_chat(job.template, post.text))
        if n is not None and n + new_tokens > limit:
            out[pid] = (f"prompt of {n} tokens + --max-new-tokens {new_tokens} is more than the model's context "
                        f"({limit} tokens)")
    job.too_long = out
    return out


def too_long_record(post: Post, k: int, slug: str, backend: Backend, why: str) -> dict:
    """The record of a post the model cannot take: no rephrasing, the reason, counted as ``too_long``."""
    return {
        "id": record_key(post.id, slug, k), "post_id": post.id, "idx": post.idx, "model": backend.name,
        "model_slug": slug, "sample": k, "original": post.text, "generated_text": None, "raw_text": None, "cut": [],
        "flags": {}, "passed": False, "generation": None, "status": "too_long", "error": why,
        "provenance": backend.describe(),
    }


def model_params(record: JobRun, job: Rephrasing, backend: Backend, index: int) -> tuple[GenerationParams, str]:
    """The sampling parameters for model ``index`` and where its temperature came from ("flags", "models entry"
    or "search")."""
    cfg, slug, params = job.cfg, job.slugs[index], job.params[index]
    own = [s.model for s in job.specs] == cfg.model_names and "temperature" in cfg.model_settings(index)
    given = "models entry" if own else "flags"
    if not cfg.search_temperatures:
        return params, given
    done = job.search["by_model"].get(slug)
    if done is None:
        sample = set(job.search["settings"]["sample_ids"]) - set(job.too_long)
        if not sample:
            log.warning("%s: no sampled post fits the model; using temperature %g", slug, params.temperature)
            return params, f"{given} (no sampled post fits the model)"
        done = search_model(record, job, backend, index)
    return replace(params, temperature=float(done["chosen"])), "search"


def search_model(record: JobRun, job: Rephrasing, backend: Backend, index: int) -> dict:
    """The temperature search for model ``index`` (its own sampling but the temperature), saved in the record at
    once (a killed job keeps it)."""
    spec, slug = job.specs[index], job.slugs[index]
    t0 = time.perf_counter()
    sample_ids = set(job.search["settings"]["sample_ids"])
    sample = [(p.id, p.text) for p in job.posts if p.id in sample_ids and p.id not in job.too_long]
    with record.track(backend, "search", model=spec.model):
        means = temperature_search(backend, job.template, sample, job.cfg.search_temperatures, job.params[index],
                                   job.embedder.get().pair_similarity)
    done = {
        "means": {str(t): m for t, m in means.items()},
        "chosen": choose_temperature(means),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    job.search["by_model"][slug] = done
    record.save()
    log.info("temperature search for %s:\n%s", slug, format_search({slug: done}))
    return done


def read_outputs(job: Rephrasing) -> list[dict]:
    """The records of the selected posts and models (the file may hold others)."""
    out = job.paths.records
    records = [rec for _, rec in iter_jsonl(out)] if out.exists() else []
    wanted = {p.id for p in job.posts}
    return [r for r in records if r["post_id"] in wanted and r["model_slug"] in job.slugs]


def summarise_outputs(record: JobRun, job: Rephrasing, records: list[dict]) -> dict:
    """Step 5: per-model counts and flag rates, the seed's CSVs, and the search table and plot."""
    summary: dict = {
        "output": str(job.paths.records),
        "meta": str(record.path),
        "n_selected": len(job.posts),
        "skipped": dict(job.skipped),
        "by_model": summarise(records, job.slugs),
        "csv": write_csvs(job.cfg, job.posts, records, job.slugs, job.paths, job.csv_names),
    }
    by_model = job.search.get("by_model")
    if job.cfg.search_temperatures and by_model:
        summary["search_table"] = format_search(by_model)
        summary["search_plot"] = plot_search(by_model, job.paths.file("temperature_search.png"))
    return summary


def audit_outputs(record: JobRun, job: Rephrasing, records: list[dict]) -> dict:
    """Step 6 (--audit): the linkability audit of every model's rephrasings, as JSON and as a table."""
    from socialsynth.jobs.rephrase.audit import format_audit

    embedder = job.embedder.get()
    by_model = run_audit(job.posts, records, job.slugs, embedder)
    audit_file = job.paths.file("audit.json")
    table = format_audit(by_model)
    atomic_write_json(audit_file, {"embedding_model": getattr(embedder, "name", None), "by_model": by_model})
    atomic_write_text(audit_file.with_suffix(".txt"), table + "\n")
    # the run record keeps the rates; the per-rephrasing ranks stay in audit.json
    record.meta["audit"] = {slug: {k: v for k, v in res.items() if k != "ranks"} for slug, res in by_model.items()}
    return {"audit_table": table, "audit": str(audit_file)}


def summarise(records: list[dict], slugs: Sequence[str]) -> dict:
    out = {}
    for slug in slugs:
        recs = [r for r in records if r["model_slug"] == slug]
        ok = [r for r in recs if r["status"] == "ok"]
        flags: Counter = Counter()
        for r in ok:
            flags.update(k for k, v in r["flags"].items() if v)
        n = len(ok)
        out[slug] = {
            "n_records": n,
            "pass_rate": round(sum(r["passed"] for r in ok) / n, 3) if n else None,
            "flag_rates": {k: round(v / n, 3) for k, v in sorted(flags.items())} if n else {},
            "temperature": ok[0]["provenance"]["sampling"]["temperature"] if ok else None,
            "not_rephrased": dict(sorted(Counter(r["status"] for r in recs if r["status"] != "ok").items())),
        }
    return out


def write_csvs(cfg: RephraseConfig, posts: list[Post], records: list[dict], slugs: Sequence[str],
               paths: OutputPaths, names: Sequence[str]) -> list[str]:
    """The seed's output: the input rows with `generated_text` after the text column, one file per model (named
    ``names``, e.g. the seed's `Llama2generated.csv`)."""
    import pandas as pd

    by_key = {r["id"]: r for r in records}
    has_id = not cfg.csv_post_id or (bool(posts) and (cfg.id_col or "id") in posts[0].row)
    written = []
    for slug, name in zip(slugs, names, strict=True):
        rows = []
        for p in posts:
            for k in range(cfg.samples_per_model):
                rec = by_key.get(record_key(p.id, slug, k))
                if rec is None or rec["status"] != "ok":
                    continue
                row = {} if has_id else {"post_id": p.id}
                for col, value in p.row.items():
                    row[col] = value
                    if col == cfg.text_col:
                        row["generated_text"] = rec["generated_text"]
                if cfg.samples_per_model > 1:
                    row["sample"] = k
                rows.append(row)
        path = paths.file(name)
        atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))
        written.append(str(path))
    return written


def run_audit(posts: list[Post], records: list[dict], slugs, embedder) -> dict:
    from socialsynth.jobs.rephrase.audit import audit

    originals = [p.text for p in posts]
    position = {p.id: i for i, p in enumerate(posts)}
    orig_emb = embedder.encode(originals)
    by_model = {}
    for slug in slugs:
        recs = [r for r in records if r["model_slug"] == slug and r["status"] == "ok"]
        texts = [r["generated_text"] for r in recs]
        syn_emb = embedder.encode(texts) if texts else np.zeros((0, orig_emb.shape[1]), dtype=np.float32)
        by_model[slug] = audit(originals, orig_emb, texts, syn_emb, [position[r["post_id"]] for r in recs])
        # each rephrasing's own rank, by record id (the report shows it beside the text)
        by_model[slug]["ranks"] = dict(zip((r["id"] for r in recs), by_model[slug].pop("ranks", []), strict=True))
    return by_model


NOT_REPHRASED = {"too_long": "too long for the model's context"}


def format_summary(summary: dict, elapsed: float | None = None) -> str:
    lines = [f"posts selected: {summary['n_selected']}"]
    if summary.get("skipped"):
        lines.append("skipped input rows: " + ", ".join(f"{k}: {v}" for k, v in summary["skipped"].items()))
    if summary.get("search_table"):
        lines += [
            "temperature search (mean cosine similarity to the original; lowest chosen):",
            summary["search_table"],
        ]
    lines.append(f"{'model':<24} {'records':>7} {'temp':>5} {'passed':>7}  flags")
    for slug, s in summary["by_model"].items():
        flags = ", ".join(f"{k} {v:.0%}" for k, v in s["flag_rates"].items()) or "-"
        passed = "-" if s["pass_rate"] is None else f"{s['pass_rate']:.0%}"
        lines.append(f"{slug:<24} {s['n_records']:>7} {s['temperature']!s:>5} {passed:>7}  {flags}")
    for slug, s in summary["by_model"].items():
        if s.get("not_rephrased"):
            lines.append(f"{slug}: not rephrased: " + ", ".join(
                f"{NOT_REPHRASED.get(k, k)}: {v}" for k, v in s["not_rephrased"].items()))
    if summary.get("audit_table"):
        lines += ["linkability audit:", summary["audit_table"]]
    lines.append(f"records: {summary['output']}")
    lines.append(f"meta:    {summary['meta']}")
    for path in summary["csv"]:
        lines.append(f"csv:     {path}")
    if summary.get("search_plot"):
        lines.append(f"plot:    {summary['search_plot']}")
    if summary.get("audit"):
        lines.append(f"audit:   {summary['audit']} (+ .txt)")
    lines.append(f"time:    {summary['seconds']} s")
    return "\n".join(lines)
