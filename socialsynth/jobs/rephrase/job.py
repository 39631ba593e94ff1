"""Privacy-preserving rephrasing (socsys/synthetic, seed 001): each post is rewritten by one or more LLMs so that
its personal details are swapped for plausible alternatives, optionally after a per-model temperature search,
and optionally followed by a linkability audit. `rephrase_posts.py` is a thin front end to `run_rephrase_job`.

Models are loaded one at a time (search and generate everything with model 1, free it, then model 2) so that
several 7-8B models fit one GPU in turn.
"""

from __future__ import annotations

import gc
import logging
import random
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import JsonlWriter, atomic_write_json, atomic_write_text, iter_jsonl, read_records, select_range, shard_path
from socialsynth.llm import Backend, BackendSpec, Chat, GenerationParams
from socialsynth.jobs.rephrase.audit import strip_context
from socialsynth.prompts import Template, load_template
from socialsynth.core.provenance import jsonable, previous_meta, versions
from socialsynth.text.quality import QUOTES, Cleaned, clean_generation, lexical_flags
from socialsynth.core.runner import GracefulStop, run_chunks

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


def model_slugs(models: Sequence[str]) -> list[str]:
    """File-name-safe names for models; a repeated name gets its position appended (`m`, `m-2`)."""
    base = []
    for m in models:
        name = Path(m.rstrip("/")).name or m
        base.append(re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model")
    counts = Counter(base)
    return [f"{b}-{i + 1}" if counts[b] > 1 and base.index(b) != i else b for i, b in enumerate(base)]


def parse_temperatures(spec: str) -> tuple[float, ...]:
    """`0.5:1.0:0.1` (start:stop:step, stop included) or `0.5,0.7,0.9`."""
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            n = int(round((stop - start) / step)) + 1
            temps = [round(start + i * step, 6) for i in range(n) if start + i * step <= stop + 1e-9]
        else:
            temps = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"expected START:STOP:STEP (e.g. 0.5:1.0:0.1) or a list like 0.5,0.7, got {spec!r}",
            field="--search-temperatures",
        ) from None
    if not temps or any(t < 0 for t in temps):
        raise InputError(f"no valid temperatures in {spec!r}", field="--search-temperatures")
    return tuple(sorted(set(temps)))


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
        line = ax.plot(*zip(*points), marker="o", label=slug)[0]
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


# -- the job ---------------------------------------------------------------------------------------------------


@dataclass
class RephraseConfig:
    input: Path
    output_dir: Path = Path("output/rephrase")
    models: tuple[Any, ...] = (BackendSpec(),)  # BackendSpec (or anything with .model and .load())
    text_col: str = "original_post"
    id_col: str | None = None  # None: "id" if the input has it, else the row number
    samples_per_model: int = 1
    params: GenerationParams = field(default_factory=GenerationParams)
    template: str = "privacy_rephrase"
    batch_size: int = 8  # posts per chunk (generated together and written together)
    start_idx: int = 0
    end_idx: int | None = None
    shard: tuple[int, int] | None = None
    skip_bad_rows: bool = False
    max_post_chars: int = 10_000
    search_temperatures: tuple[float, ...] | None = None
    search_sample: int = 50
    embedding_model: str | None = "embedded"
    audit: bool = False
    device: str = "auto"
    command: str = ""


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
    for rec, line in zip(data.records, data.line_numbers):
        if len(rec[cfg.text_col]) > cfg.max_post_chars:
            skipped[f"post longer than {cfg.max_post_chars} characters"] += 1
            continue
        pid = str(rec[id_col]) if id_col else str(line)
        if pid in seen:
            raise InputError(f"duplicate id {pid!r} (ids must be unique; use --id-col)", path=cfg.input, field=id_col)
        seen.add(pid)
        posts.append(Post(0, pid, rec[cfg.text_col], rec))
    selected = select_range(posts, cfg.start_idx, cfg.end_idx, cfg.shard)
    for i, post in selected:
        post.idx = i
    return [p for _, p in selected], skipped, len(data.records)


def record_key(post_id: str, slug: str, k: int) -> str:
    return f"{post_id}:{slug}:{k}"


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
        records = []
        for (post, k), key, comp in zip(items, keys, completions):
            cleaned = clean_rephrasing(comp.text)
            flags = lexical_flags(cleaned.text, post.text)
            # a copy without the "Posted in the X subreddit:" prefix is unchanged too
            flags["unchanged"] = (
                flags["unchanged"] or lexical_flags(cleaned.text, strip_context(post.text))["unchanged"]
            )
            flags["truncated"] = comp.finish_reason == "length"
            records.append(
                {
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
            )
        return records


def _spec_dict(spec) -> dict:
    return asdict(spec) if is_dataclass(spec) else {"model": spec.model}


def _free(backend) -> None:
    del backend
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _search_settings(cfg: RephraseConfig, sample_ids: list[str]) -> dict:
    return {
        "temperatures": list(cfg.search_temperatures or ()),
        "sample_size": len(sample_ids),
        "sample_ids": sample_ids,
        "seed": cfg.params.seed,
        "embedding_model": cfg.embedding_model,
        "template": cfg.template,
    }


def run_rephrase_job(cfg: RephraseConfig, embedder=None) -> dict:
    """Run (or resume) the job; return the summary. Raises InputError for bad input, Interrupted on SIGTERM.

    `embedder` (anything with `encode` and `pair_similarity`) replaces loading `cfg.embedding_model`."""
    if cfg.samples_per_model < 1:
        raise InputError("must be at least 1", field="--samples-per-model")
    if (cfg.search_temperatures or cfg.audit) and not cfg.embedding_model and embedder is None:
        raise InputError("--search-temperatures and --audit need an embedding model", field="--embedding-model")
    template = load_template(cfg.template)
    posts, skipped, n_input = load_posts(cfg)
    slugs = model_slugs([m.model for m in cfg.models])
    out_dir = Path(cfg.output_dir)
    out = shard_path(out_dir / f"{RECORDS_NAME}.jsonl", cfg.shard)
    meta_file = shard_path(out_dir / f"{RECORDS_NAME}.meta.json", cfg.shard)
    t_start = time.perf_counter()

    def get_embedder():
        nonlocal embedder
        if embedder is None:
            from socialsynth.text.embeddings import Embedder

            embedder = Embedder(cfg.embedding_model, device=cfg.device)
        return embedder

    sample_ids: list[str] = []
    if cfg.search_temperatures:
        rng = random.Random(cfg.params.seed)
        sample = rng.sample(posts, min(cfg.search_sample, len(posts)))
        sample_ids = [p.id for p in sample]
    meta = previous_meta(meta_file)
    search = meta.get("temperature_search") or {}
    if cfg.search_temperatures and search.get("settings") != _search_settings(cfg, sample_ids):
        search = {}  # a different search: do it again
    if cfg.search_temperatures:
        search.setdefault("settings", _search_settings(cfg, sample_ids))
        search.setdefault("by_model", {})
    meta.update(
        {
            "command": cfg.command,
            "input": str(cfg.input),
            "output": str(out),
            "config": jsonable({**asdict(replace(cfg, models=())), "models": [_spec_dict(m) for m in cfg.models]}),
            "models": dict(zip(slugs, [m.model for m in cfg.models])),
            "template": f"{template.name}@{template.hash}",
            "versions": versions(),
            "n_input_rows": n_input,
            "skipped": dict(skipped),
            "n_selected": len(posts),
            "shard": list(cfg.shard) if cfg.shard else None,
            "complete": False,
        }
    )
    if cfg.search_temperatures:
        meta["temperature_search"] = search
    per_model = meta.setdefault("per_model", {})
    stop = GracefulStop()
    with stop, JsonlWriter(out) as writer:
        try:
            for spec, slug in zip(cfg.models, slugs):
                todo = [
                    (p, k)
                    for p in posts
                    for k in range(cfg.samples_per_model)
                    if record_key(p.id, slug, k) not in writer.done
                ]
                log.info("%s: %d records to do (of %d)", slug, len(todo), len(posts) * cfg.samples_per_model)
                if not todo:
                    continue
                backend = spec.load()
                params, source = cfg.params, "flags"
                if cfg.search_temperatures:
                    done = search["by_model"].get(slug)
                    if done is None:
                        t0 = time.perf_counter()
                        sample = [(p.id, p.text) for p in posts if p.id in set(sample_ids)]
                        means = temperature_search(
                            backend,
                            template,
                            sample,
                            cfg.search_temperatures,
                            cfg.params,
                            get_embedder().pair_similarity,
                        )
                        chosen = choose_temperature(means)
                        done = {
                            "means": {str(t): m for t, m in means.items()},
                            "chosen": chosen,
                            "seconds": round(time.perf_counter() - t0, 2),
                        }
                        search["by_model"][slug] = done
                        atomic_write_json(meta_file, meta)  # a killed job keeps its search
                        log.info("temperature search for %s:\n%s", slug, format_search({slug: done}))
                    params, source = replace(cfg.params, temperature=float(done["chosen"])), "search"
                job = Rephraser(backend, template, params, slug, cfg.samples_per_model)
                counts = run_chunks(
                    todo,
                    job.process,
                    writer,
                    cfg.batch_size * cfg.samples_per_model,
                    stop,
                    desc=f"{slug} rephrasings",
                    resume_hint=f"rerun the same command to resume: {cfg.command}",
                )
                st = backend.stats
                per_model[slug] = {
                    "model": spec.model,
                    "temperature": params.temperature,
                    "temperature_source": source,
                    "provenance": job.provenance(),
                    "records_this_run": counts.done,
                    "seconds": round(counts.seconds, 2),
                    "new_tokens": st.new_tokens,
                    "new_tokens_per_second": round(st.new_tokens / st.seconds, 1) if st.seconds else None,
                }
                _free(backend)
                backend = None
        finally:
            meta["n_written"] = len(writer.done)
            meta["complete"] = all(
                record_key(p.id, s, k) in writer.done
                for p in posts
                for s in slugs
                for k in range(cfg.samples_per_model)
            )
            meta["seconds"] = round(time.perf_counter() - t_start, 2)
            atomic_write_json(meta_file, meta)

    records = [rec for _, rec in iter_jsonl(out)] if out.exists() else []
    wanted = {p.id for p in posts}
    records = [r for r in records if r["post_id"] in wanted and r["model_slug"] in slugs]
    summary: dict = {
        "output": str(out),
        "meta": str(meta_file),
        "n_selected": len(posts),
        "skipped": dict(skipped),
        "by_model": summarise(records, slugs),
        "csv": write_csvs(cfg, posts, records, slugs, out_dir),
    }
    if cfg.search_temperatures and search.get("by_model"):
        summary["search_table"] = format_search(search["by_model"])
        summary["search_plot"] = plot_search(
            search["by_model"], shard_path(out_dir / "temperature_search.png", cfg.shard)
        )
    if cfg.audit:
        by_model = run_audit(posts, records, slugs, get_embedder())
        audit_file = shard_path(out_dir / "audit.json", cfg.shard)
        from socialsynth.jobs.rephrase.audit import format_audit

        table = format_audit(by_model)
        atomic_write_json(audit_file, {"embedding_model": getattr(embedder, "name", None), "by_model": by_model})
        atomic_write_text(audit_file.with_suffix(".txt"), table + "\n")
        summary.update(audit_table=table, audit=str(audit_file))
        meta["audit"] = by_model
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    meta["summary"] = {k: v for k, v in summary.items() if k not in ("audit_table", "search_table")}
    atomic_write_json(meta_file, meta)
    return summary


def summarise(records: list[dict], slugs: Sequence[str]) -> dict:
    out = {}
    for slug in slugs:
        recs = [r for r in records if r["model_slug"] == slug]
        flags: Counter = Counter()
        for r in recs:
            flags.update(k for k, v in r["flags"].items() if v)
        n = len(recs)
        out[slug] = {
            "n_records": n,
            "pass_rate": round(sum(r["passed"] for r in recs) / n, 3) if n else None,
            "flag_rates": {k: round(v / n, 3) for k, v in sorted(flags.items())} if n else {},
            "temperature": recs[0]["provenance"]["sampling"]["temperature"] if recs else None,
        }
    return out


def write_csvs(cfg: RephraseConfig, posts: list[Post], records: list[dict], slugs, out_dir: Path) -> list[str]:
    """The seed's output: the input rows with `generated_text` after the text column, one file per model."""
    import pandas as pd

    by_key = {r["id"]: r for r in records}
    has_id = bool(posts) and (cfg.id_col or "id") in posts[0].row
    paths = []
    for slug in slugs:
        rows = []
        for p in posts:
            for k in range(cfg.samples_per_model):
                rec = by_key.get(record_key(p.id, slug, k))
                if rec is None:
                    continue
                row = {} if has_id else {"post_id": p.id}
                for col, value in p.row.items():
                    row[col] = value
                    if col == cfg.text_col:
                        row["generated_text"] = rec["generated_text"]
                if cfg.samples_per_model > 1:
                    row["sample"] = k
                rows.append(row)
        path = shard_path(out_dir / f"{slug}_generated.csv", cfg.shard)
        atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False))
        paths.append(str(path))
    return paths


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
    return by_model


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
