"""The normness-distillation job: find the data, pick this run's comments, rewrite and rate them in chunks,
write as it goes, and summarise. `generate_synthetic_data.py` (and `socialsynth.jobs.norms.cli`) is a thin front
end to :func:`run`; the run record is ``<subreddit>_<dimension>.meta.json`` beside the output."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from socialsynth.classify.presets import INFERENCE_IDS
from socialsynth.core.errors import InputError
from socialsynth.core.io import (
    JsonlWriter,
    ReadResult,
    iter_jsonl,
    read_records,
    read_text_file,
    select_range,
    shard_path,
)
from socialsynth.core.provenance import command_line
from socialsynth.core.run import JobRun, record_path, throughput
from socialsynth.core.runner import GracefulStop, RunCounts, run_chunks
from socialsynth.jobs.norms.config import NormsConfig
from socialsynth.jobs.norms.rewrite import NormRewriter, Rater, RewriteFilters
from socialsynth.jobs.prepare.reddit import usable_id  # the processed-comment format prepare writes
from socialsynth.llm.base import Backend
from socialsynth.prompts import Dimension, load_dimension, load_template

log = logging.getLogger(__name__)
INPUT_EXTENSIONS = (".jsonl", ".csv", ".parquet", ".pkl")


def find_input(data_dir: Path, subreddit: str, allow_pickle: bool) -> Path:
    """`<data_dir>/<subreddit>.jsonl` (or .csv, .parquet; .pkl only with --allow-pickle)."""
    for ext in INPUT_EXTENSIONS:
        path = data_dir / f"{subreddit}{ext}"
        if path.exists():
            if ext == ".pkl" and not allow_pickle:
                raise InputError(
                    "found only a pickle file; pickle can run code, pass --allow-pickle to read it", path=path
                )
            return path
    raise InputError(
        f"no data for subreddit {subreddit!r}: looked for {', '.join(subreddit + e for e in INPUT_EXTENSIONS)} "
        f"(make one with: socialsynth prepare --input RAW.jsonl -o {data_dir / (subreddit + '.jsonl')})",
        path=data_dir,
    )


def check_models(cfg: NormsConfig) -> None:
    """The generator and the embedding model can be found (a folder, or an id cached while offline): refused in one
    line before the input is read, not after the generator has loaded."""
    from socialsynth.llm.loading import check_embedding_model_available, check_model_available

    if cfg.model.backend != "openai" and cfg.model.model != "embedded":
        check_model_available(cfg.model.model, flag="-m/--model")
    if cfg.embedding_model and cfg.embedding_model != "embedded":
        check_embedding_model_available(cfg.embedding_model)


def inference_ids(upvote_dir: Path | None) -> set[str] | None:
    """The ids held out from upvote-model training, if that list exists (only those are rewritten)."""
    if upvote_dir is None:
        return None
    path = Path(upvote_dir) / INFERENCE_IDS
    if not path.exists():
        log.info("%s not found: rewriting every comment", path)
        return None
    text = read_text_file(path, "the list of inference ids")
    return {line.strip() for line in text.splitlines() if line.strip()}


def preference_scorer(cfg: NormsConfig):
    """The upvote model in -u DIR, if that folder holds one (it may hold only inference_sample_ids.txt)."""
    from socialsynth.classify.model import CARD

    if cfg.upvote_dir is None or not (Path(cfg.upvote_dir) / CARD).exists():
        return None
    from socialsynth.jobs.norms.preference import PreferenceScorer

    return PreferenceScorer(cfg.upvote_dir, device=cfg.model.device)


def output_path(cfg: NormsConfig, dim_name: str, shard: tuple[int, int] | None = None) -> Path:
    return shard_path(Path(cfg.output_dir) / f"{cfg.subreddit}_{dim_name}.jsonl", shard)


# ------------------------------------------------------------------------------------------- the job


@dataclass
class Inputs:
    """This run's comments: the file read, the rows kept, and why the others were skipped."""

    path: Path
    n_read: int
    rows: list[dict]
    skipped: Counter


@dataclass
class Models:
    """What rewrites and rates: the generator, its rater, the rewriter tying them, the optional upvote model."""

    backend: Backend
    rater: Rater
    rewriter: NormRewriter
    scorer: object | None = None  # socialsynth.jobs.norms.preference.PreferenceScorer

    def provenance(self) -> dict:
        provenance = self.rewriter.provenance()
        if self.scorer is not None:
            provenance["upvote_model"] = self.scorer.model_dir
        return provenance

    def process(self, chunk: Sequence[tuple[int, dict]], levels: Sequence[int]) -> list[dict]:
        records = self.rewriter.process(chunk)
        return records if self.scorer is None else self.scorer.annotate(records, chunk, levels)


def run(cfg: NormsConfig, command: str | None = None) -> dict:
    """Run (or resume) the job; return the summary. Raises InputError for bad input, Interrupted on SIGTERM."""
    command = command or command_line()
    check_models(cfg)
    dim = load_dimension(cfg.norm_dimension)
    inputs = load_inputs(cfg)
    shard = cfg.shard
    if cfg.range.start_idx and cfg.range.start_idx >= len(inputs.rows):
        raise InputError(f"{cfg.range.start_idx} is past the end of the input ({len(inputs.rows)} comments after "
                         "the skips)", field="--start-idx")
    selected = select_range(inputs.rows, cfg.range.start_idx, cfg.range.end_idx, shard)
    out = output_path(cfg, dim.name, shard)
    if out.is_dir():
        raise InputError("is a folder, not an output file: remove it or choose another -o", path=out)
    with JobRun("norms", record_path(out), cfg, command=command, outputs=[out]) as job, GracefulStop() as stop, \
            JsonlWriter(out) as writer:
        job.meta.update(describe_inputs(inputs, out, dim, selected, shard))
        todo = [(i, r) for i, r in selected if str(r["id"]) not in writer.done]
        log.info("%s: %d comments selected, %d already written, %d to do -> %s", inputs.path, len(selected),
                 len(selected) - len(todo), len(todo), out)
        models = counts = None
        too_long: set[str] = set()
        try:
            if todo:
                models = load_models(cfg, dim, job)
                todo, too_long = drop_too_long(models, todo, job.meta["skipped"])
                counts = rewrite_all(cfg, models, todo, writer, stop, job, command)
        finally:
            record_outcome(job, cfg, out, writer, [s for s in selected if str(s[1]["id"]) not in too_long], models,
                           counts)
    return report(job.meta, out, dim.name)


def load_inputs(cfg: NormsConfig) -> Inputs:
    """Read the comments, then drop (and count) rows without a usable id, repeated ids, overlong comments and those
    outside the upvote model's held-out ids."""
    path = cfg.input or find_input(Path(cfg.data_dir), cfg.subreddit, cfg.allow_pickle)
    data = read_records(path, allow_pickle=cfg.allow_pickle, required=("id", "comment"), nonempty=("comment",),
                        on_bad_row="skip" if cfg.skip_bad_rows else "error")
    if not data.records and not data.skipped:
        raise InputError("the file has no records", path=path)
    skipped = Counter(data.skipped)
    records = unique_ids(data, skipped, cfg.skip_bad_rows)
    rows = [r for r in records if len(r["comment"]) <= cfg.max_comment_chars]
    if len(rows) < len(records):
        skipped[f"comment longer than {cfg.max_comment_chars} characters"] += len(records) - len(rows)
    wanted = inference_ids(cfg.upvote_dir)
    if wanted is not None:
        before = len(rows)
        rows = [r for r in rows if str(r["id"]) in wanted]
        skipped["not in inference_sample_ids.txt"] += before - len(rows)
    return Inputs(Path(path), len(data.records), rows, skipped)


def unique_ids(data: ReadResult, skipped: Counter, skip_bad_rows: bool) -> list[dict]:
    """The rows with a usable id, each id once: a repeated id keeps its first row and counts the others as a skip
    ("duplicate id", with a warning naming a few); a row without a usable id is an error naming its line (a
    counted skip with --skip-bad-rows)."""
    kept, seen, repeated = [], set(), []
    for row, line in zip(data.records, data.line_numbers, strict=True):
        if not usable_id(row["id"]):
            if not skip_bad_rows:
                raise InputError(f"not a usable id: {row['id']!r} (ids are non-empty strings or numbers)",
                                 path=data.path, line=line, field="id")
            skipped["no usable id"] += 1
            continue
        key = str(row["id"])
        if key in seen:
            repeated.append(key)
            continue
        seen.add(key)
        kept.append(row)
    if repeated:
        skipped["duplicate id"] += len(repeated)
        shown = ", ".join(repr(k) for k in list(dict.fromkeys(repeated))[:5])
        log.warning("%s: %d rows repeat an earlier id and were skipped (the first row of each id is kept): %s%s",
                    data.path, len(repeated), shown, ", ..." if len(set(repeated)) > 5 else "")
    return kept


def drop_too_long(models: Models, todo: list, skipped: dict) -> tuple[list, set[str]]:
    """Leave out (and count in ``skipped``) the comments whose longest prompt and answer do not fit in the model's
    context: the model would fail on them or, for a huge one, try to allocate memory it does not have."""
    limit = models.backend.context_length()
    if not limit:
        return todo, set()
    kept, too_long = [], {}
    for item in todo:
        need = models.rewriter.over_context(item[1], limit)
        if need is None:
            kept.append(item)
        else:
            too_long[str(item[1]["id"])] = need
    if too_long:
        reason = f"comment longer than the model's context ({limit} tokens)"
        skipped[reason] = skipped.get(reason, 0) + len(too_long)
        shown = ", ".join(f"{k!r} (~{n} tokens)" for k, n in list(too_long.items())[:5])
        log.warning("%d comments skipped: with their prompts and answers they need more than the model's %d "
                    "tokens: %s%s", len(too_long), limit, shown, ", ..." if len(too_long) > 5 else "")
    return kept, set(too_long)


def describe_inputs(inputs: Inputs, out: Path, dim: Dimension, selected: list, shard: tuple[int, int] | None) -> dict:
    """The record's fields about what this run reads and writes."""
    return {
        "input": str(inputs.path),
        "output": str(out),
        "dimension": dim.name,
        "dimension_source": dim.source,
        "n_input_rows": inputs.n_read,
        "skipped": dict(inputs.skipped),
        "n_selected": len(selected),
        "shard": list(shard) if shard else None,
    }


def load_models(cfg: NormsConfig, dim: Dimension, job: JobRun) -> Models:
    """The generator (tokens counted per stage in the run record), rater, rewriter and optional upvote model."""
    backend = cfg.engine().load()
    embedder = None
    if cfg.embedding_model:
        from socialsynth.text.embeddings import Embedder

        embedder = Embedder(cfg.embedding_model, device=cfg.model.device)
    template = load_template(cfg.rating_template) if cfg.rating_template else None
    rater = Rater(backend, dim, cfg.rating_method, template)
    rewriter = NormRewriter(
        backend, dim, rater, cfg.params(), tuple(cfg.levels), embedder,
        RewriteFilters(cfg.min_similarity, cfg.max_perplexity), load_template(cfg.rewrite_template),
        stage=lambda name: job.track(backend, name),
    )
    models = Models(backend, rater, rewriter, preference_scorer(cfg))
    job.meta["provenance"] = models.provenance()
    return models


def rewrite_all(cfg: NormsConfig, models: Models, todo: list, writer: JsonlWriter, stop: GracefulStop,
                job: JobRun, command: str) -> RunCounts:
    """Rewrite, rate and write the comments still to do, chunk by chunk (-b comments a chunk). The record is saved
    after every chunk, so a killed run's tokens stay counted."""

    def process(chunk: Sequence[tuple[int, dict]]) -> list[dict]:
        records = models.process(chunk, cfg.levels)
        job.save()
        return records

    return run_chunks(todo, process, writer, cfg.batch_size, stop, desc="comments",
                      resume_hint=f"rerun the same command to resume: {command}")


def record_outcome(job: JobRun, cfg: NormsConfig, out: Path, writer: JsonlWriter, selected: list,
                   models: Models | None, counts: RunCounts | None) -> None:
    """However the run ended: what is written, whether that is everything, how the rating went, the summary."""
    job.meta["n_written"] = len(writer.done)
    job.mark_complete(all(str(r["id"]) in writer.done for _, r in selected))
    if models is not None:  # the backend may have made the rater switch method (or the fluency filter off)
        if counts is not None:
            job.meta["rating_fallbacks"] = models.rater.fallbacks
        job.meta["rating_method_used"] = models.rater.method
        job.meta["rating_method_notes"] = models.rewriter.notes
        job.meta["fluency_filter_off"] = models.rewriter.fluency_off
        job.meta["provenance"] = models.provenance()
        job.meta["throughput"] = throughput(models.backend.stats, counts.done if counts else 0,
                                            counts.seconds if counts else 0.0, unit="comments")
        job.note_run(provenance=job.meta["provenance"])
        job.note_items(counts.done if counts else 0)
    job.meta["summary"] = summarise(out, cfg.levels)


def report(meta: dict, out: Path, dim_name: str) -> dict:
    """The summary printed at the end: the record's summary, where things are, and the plots."""
    summary = dict(meta["summary"])
    summary.update(
        output=str(out),
        meta=str(record_path(out)),
        skipped=meta["skipped"],
        throughput=meta.get("throughput"),
        n_selected=meta["n_selected"],
        rating_fallbacks=meta.get("rating_fallbacks"),
    )
    summary["plot"] = plot_shift(summary, out.with_suffix(".shift.png"), dim_name)
    if summary.get("preference_delta_by_level"):
        from socialsynth.jobs.norms.preference import plot_deltas

        summary["preference_plot"] = plot_deltas(
            summary["preference_delta_by_level"], out.with_suffix(".preference.png"), dim_name
        )
    return summary


def summarise(path: Path, levels) -> dict:
    """Mean rating per target level and filter pass rates over everything written so far (streamed: an output of
    millions of records is read line by line)."""
    keys = [str(lv) for lv in levels]
    rating_sum, rating_n = Counter(), Counter()
    passed, judged = Counter(), Counter()
    flag_counts: Counter = Counter()
    deltas: dict[str, list[float]] = {lv: [] for lv in keys}
    n_records, original_sum, original_n = 0, 0.0, 0
    records = iter_jsonl(path) if Path(path).exists() else ()
    for _, rec in records:
        n_records += 1
        original = (rec.get("original_rating_detail") or {}).get("expected", rec.get("original_rating"))
        if original is not None:
            original_sum, original_n = original_sum + original, original_n + 1
        for lv in keys:
            value = (rec.get("rewrite_ratings_expected") or {}).get(lv)
            if value is not None:
                rating_sum[lv] += value
                rating_n[lv] += 1
            delta = (rec.get("preference_delta") or {}).get(lv)
            if delta is not None:
                deltas[lv].append(delta)
            flags = (rec.get("filters") or {}).get(lv)
            if flags:
                judged[lv] += 1
                passed[lv] += bool(flags.get("passed"))
                flag_counts.update(k for k, v in flags.items() if v is True and k != "passed")
    n_rewrites = sum(judged.values())
    summary_deltas = None
    if any(deltas.values()):
        from socialsynth.core.stats import bootstrap_mean_ci

        summary_deltas = {}
        for lv in keys:
            mean, low, high = bootstrap_mean_ci(deltas[lv])
            summary_deltas[lv] = {
                "mean": None if mean is None else round(mean, 4),
                "low": None if low is None else round(low, 4),
                "high": None if high is None else round(high, 4),
                "n": len(deltas[lv]),
            }
    return {
        "preference_delta_by_level": summary_deltas,
        "n_records": n_records,
        "mean_original_rating": round(original_sum / original_n, 3) if original_n else None,
        "mean_rating_by_level": {
            lv: (round(rating_sum[lv] / rating_n[lv], 3) if rating_n[lv] else None) for lv in keys
        },
        "pass_rate_by_level": {lv: (round(passed[lv] / judged[lv], 3) if judged[lv] else None) for lv in keys},
        "flag_rates": {k: round(v / n_rewrites, 3) for k, v in sorted(flag_counts.items())} if n_rewrites else {},
    }


def plot_shift(summary: dict, path: Path, dim_name: str) -> str | None:
    """Norm shift at a glance: mean rating of rewrites against the level asked for."""
    points = [(int(k), v) for k, v in summary["mean_rating_by_level"].items() if v is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([1, 5], [1, 5], ls="--", c="grey", lw=1, label="perfect shift")
    ax.plot(*zip(*points, strict=True), marker="o", label="rewrites")
    if summary.get("mean_original_rating") is not None:
        ax.axhline(summary["mean_original_rating"], c="tab:red", lw=1, label="originals")
    ax.set(
        xlabel="target level",
        ylabel="mean rating (expected)",
        title=f"{dim_name}: rating by target level",
        xlim=(0.5, 5.5),
        ylim=(0.5, 5.5),
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def format_summary(summary: dict) -> str:
    lines = [f"records in output: {summary['n_records']} (selected this run: {summary['n_selected']})"]
    if summary.get("skipped"):
        lines.append("skipped input rows: " + ", ".join(f"{k}: {v}" for k, v in summary["skipped"].items()))
    lines.append(f"mean rating of originals: {summary['mean_original_rating']}")
    lines.append("target level | mean rating | filter pass rate")
    for lv, value in summary["mean_rating_by_level"].items():
        lines.append(f"{lv:>12} | {value!s:>11} | {summary['pass_rate_by_level'][lv]}")
    if summary.get("rating_fallbacks"):
        lines.append(f"warning: {summary['rating_fallbacks']} generated ratings could not be parsed and were set to 3")
    if summary.get("preference_delta_by_level"):
        lines.append("preference delta (predicted log2 upvotes, rewrite - original), mean [95% bootstrap CI]:")
        for lv, d in summary["preference_delta_by_level"].items():
            if d["mean"] is not None:
                lines.append(f"{lv:>12} | {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (n={d['n']})")
    if summary["flag_rates"]:
        lines.append("flag rates: " + ", ".join(f"{k} {v:.0%}" for k, v in summary["flag_rates"].items()))
    tp = summary.get("throughput")
    if tp:
        lines.append(
            f"throughput: {tp['comments_per_second']} comments/s overall; generation {tp['new_tokens_per_second']} "
            f"new tokens/s ({tp['generation_seconds']} s), rating {tp['rating_seconds']} s"
        )
    lines.append(f"output: {summary['output']}")
    lines.append(f"meta:   {summary['meta']}")
    if summary.get("plot"):
        lines.append(f"plot:   {summary['plot']}")
    if summary.get("preference_plot"):
        lines.append(f"preference plot: {summary['preference_plot']}")
    return "\n".join(lines)
