"""The normness-distillation job: find the data, pick this run's comments, rewrite and rate them in chunks,
write as it goes, and summarise. `generate_synthetic_data.py` (and `socialsynth.jobs.norms.cli`) is a thin front
end to :func:`run`; the run record is ``<subreddit>_<dimension>.meta.json`` beside the output."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
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
from socialsynth.jobs.norms.judges import (
    JudgeSpec,
    clear_seed_ratings,
    free_memory,
    generator_judge,
    join_ratings,
    judge_rater,
    methods_used,
    open_judge,
    rate_records,
    ratings_block,
    ratings_path,
    with_judges,
)
from socialsynth.jobs.norms.ladder import LadderRatings, format_judges
from socialsynth.jobs.norms.rewrite import CommentResult, NormRewriter, Rater, Rating, RewriteFilters
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
        check_model_available(cfg.model.model, flag="-m/--model", backend=cfg.model.backend)
    content = content_model(cfg)
    if cfg.content_metric == "bertscore":
        check_model_available(content, flag="--content-model")
    elif content and content != "embedded":
        check_embedding_model_available(content, flag="--content-model" if cfg.content_model else "--embedding-model")
    if fluency_wanted(cfg) and cfg.fluency_model != "generator":
        check_model_available(cfg.fluency_model, flag="--fluency-model")
    for spec in cfg.judge_specs:
        if spec.backend in ("hf", "vllm"):
            check_model_available(spec.model, flag="--judge")


def content_model(cfg: NormsConfig) -> str | None:
    """The model of the content check: --content-model, else the metric's default (None: no content check)."""
    if cfg.content_model:
        return cfg.content_model
    if cfg.content_metric == "bertscore":
        from socialsynth.text.bertscore import DEFAULT_MODEL

        return DEFAULT_MODEL
    return cfg.embedding_model


def fluency_wanted(cfg: NormsConfig) -> bool:
    """Whether the fluency filter runs at all (--max-perplexity 0 or --fluency-cut 0 turn it off)."""
    return cfg.fluency_number is None or cfg.fluency_number > 0


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


def held_out_positions(wanted: set[str], ids: set[str], n_rows: int) -> set[int] | None:
    """The research code wrote ``inference_sample_ids.txt`` as list positions of the data file: when every line is
    a whole number below the file's length and fewer than half of them are ids of its rows, they are positions
    (returned); else None (the lines are ids, as train_classifier.py writes them)."""
    if not wanted or not all(w.isascii() and w.isdigit() for w in wanted):
        return None
    positions = {int(w) for w in wanted}
    if max(positions) >= n_rows or 2 * len(wanted & ids) >= len(wanted):
        return None
    return positions


def load_idx_to_id(path: Path, allow_pickle: bool) -> dict[int, str]:
    """The research code's ``<subreddit>_idx_to_id.pkl`` (a dict list position -> comment id), or the same as a
    JSON object; InputError naming --idx-to-id for anything else."""
    import json
    import pickle

    try:
        if path.suffix == ".pkl":
            if not allow_pickle:
                raise InputError("pickle can run code; pass --allow-pickle to read it", path=path, field="--idx-to-id")
            with open(path, "rb") as f:
                data = pickle.load(f)  # noqa: S301 (only with --allow-pickle, for files the user trusts)
        else:
            data = json.loads(read_text_file(path, "the idx_to_id map", field="--idx-to-id"))
        return {int(k): str(v) for k, v in dict(data).items() if v is not None}
    except InputError:
        raise
    except Exception as e:  # a foreign pickle or JSON of another shape
        raise InputError(f"not a map of list positions to ids ({type(e).__name__}: {e})", path=path,
                         field="--idx-to-id") from None


def fill_ids(data: ReadResult, idx_to_id: dict[int, str]) -> int:
    """Give rows without an id the one the map has for their list position; returns how many were filled."""
    filled = 0
    for row, line in zip(data.records, data.line_numbers, strict=True):
        if row.get("id") in (None, "") and (line - 1) in idx_to_id:
            row["id"] = idx_to_id[line - 1]
            filled += 1
    return filled


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
    """This run's comments: the file read, the rows kept, why the others were skipped, and each kept row's list
    position in the file (the research code's ``idx``)."""

    path: Path
    n_read: int
    rows: list[dict]
    skipped: Counter
    positions: list[int] = field(default_factory=list)
    held_out_as: str | None = None  # how inference_sample_ids.txt was read: "ids" or "positions"


class DeferredRater(Rater):
    """The generator's rater when --judge names the judges (and no --candidates selection needs ratings): it rates
    nothing, so the generator pass only rewrites. Its placeholder ratings never reach a record: the seed's rating
    fields are emptied until the judges' pass fills them."""

    def rate(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[Rating]:
        return [Rating(3, 3.0) for _ in items]

    def prompt_costs(self) -> list:
        return []  # no rating prompts: only the rewrite prompts must fit the generator's context


@dataclass
class Models:
    """What rewrites and rates: the generator, its rater, the rewriter tying them, the optional upvote model.

    ``judges`` names the judges every record lists (the --judge specs, or the generator); ``generator_judge`` is
    the generator's judge name when its ratings are real (no --judge, or --candidates selecting), else None."""

    backend: Backend
    rater: Rater
    rewriter: NormRewriter
    scorer: object | None = None  # socialsynth.jobs.norms.preference.PreferenceScorer
    predictions: JsonlWriter | None = None  # --predictions-file: the research code's per-variant predictions
    judges: list[str] = field(default_factory=list)
    generator_judge: str | None = None

    def provenance(self) -> dict:
        provenance = self.rewriter.provenance()
        if self.generator_judge is None:  # the generator did not rate: no rating method or template of its own
            provenance.update(rating_method=None, rating_template=None)
        provenance["judges"] = list(self.judges)
        if self.scorer is not None:
            provenance["upvote_model"] = self.scorer.model_dir
        return provenance

    def judged(self, record: dict, result: CommentResult) -> dict:
        """The record with its judges, and the generator's ratings under its judge name when it rated (else the
        seed's rating fields empty until the judges' pass)."""
        ratings = {}
        if self.generator_judge is None:
            clear_seed_ratings(record)
        else:
            rewrites = [(rw.level, rw.rating if rw.text else None) for rw in result.rewrites]
            ratings[self.generator_judge] = ratings_block(self.rater.method, result.rating, rewrites)
        return with_judges(record, self.judges, ratings)

    def process(self, chunk: Sequence[tuple[int, dict]], levels: Sequence[int]) -> list[dict]:
        results = self.rewriter.run(chunk)
        provenance = self.provenance()
        records = [self.judged(result.record(self.rewriter.filters, provenance), result) for result in results]
        if self.scorer is None:
            return records
        records = self.scorer.annotate(records, chunk, levels)
        if self.predictions is not None:
            from socialsynth.jobs.norms.preference import prediction_record

            self.predictions.write([prediction_record(rec, row, levels) for rec, (_, row) in zip(records, chunk,
                                                                                                  strict=True)
                                    if rec["id"] not in self.predictions.done])
        return records


def run(cfg: NormsConfig, command: str | None = None) -> dict:
    """Run (or resume) the job; return the summary. Raises InputError for bad input, Interrupted on SIGTERM."""
    command = command or command_line()
    check_models(cfg)
    dim = load_dimension(cfg.norm_dimension)
    inputs = load_inputs(cfg)
    scorer = preference_scorer(cfg) if cfg.filter_originals else None
    if cfg.filter_originals:
        keep_reliable(cfg, inputs, scorer)
    shard = cfg.shard
    if cfg.range.start_idx and cfg.range.start_idx >= len(inputs.rows):
        raise InputError(f"{cfg.range.start_idx} is past the end of the input ({len(inputs.rows)} comments after "
                         "the skips)", field="--start-idx")
    # -s/-e and --shard slice the kept rows (as the seed sliced its list); idx is the row's place in the file
    selected = [(inputs.positions[i], row)
                for i, row in select_range(inputs.rows, cfg.range.start_idx, cfg.range.end_idx, shard)]
    out = output_path(cfg, dim.name, shard)
    if out.is_dir():
        raise InputError("is a folder, not an output file: remove it or choose another -o", path=out)
    predictions = predictions_output(cfg, dim.name, shard)
    sides = [ratings_path(out, spec) for spec in cfg.judge_specs]
    with JobRun("norms", record_path(out), cfg, command=command, resume_safe=("judge",),
                outputs=[out, *([predictions] if predictions else []), *sides]
                ) as job, GracefulStop() as stop, JsonlWriter(out) as writer, ExitStack() as extra:
        job.meta.update(describe_inputs(inputs, out, dim, selected, shard))
        todo = [(i, r) for i, r in selected if str(r["id"]) not in writer.done]
        log.info("%s: %d comments selected, %d already written, %d to do -> %s", inputs.path, len(selected),
                 len(selected) - len(todo), len(todo), out)
        models = counts = None
        too_long: set[str] = set()
        try:
            if todo:
                models = load_models(cfg, dim, job, scorer)
                if predictions is not None and models.scorer is not None:
                    models.predictions = extra.enter_context(JsonlWriter(predictions))
                set_fluency_cut(cfg, models, selected, job.meta)
                todo, too_long = drop_too_long(models, todo, job.meta["skipped"])
                counts = rewrite_all(cfg, models, todo, writer, stop, job, command)
        finally:
            record_outcome(job, cfg, out, writer, [s for s in selected if str(s[1]["id"]) not in too_long], models,
                           counts)
        if cfg.judge:
            models = scorer = None  # the generator (its rater, rewriter, models) goes before any judge loads
            writer.close()
            extra.close()
            free_memory()
            run_judges(cfg, dim, out, job, stop, command)
    return report(job.meta, out, dim.name)


def load_inputs(cfg: NormsConfig) -> Inputs:
    """Read the comments, then drop (and count) rows without a usable id, repeated ids, overlong comments and those
    outside the upvote model's held-out ids."""
    path = cfg.input or find_input(Path(cfg.data_dir), cfg.subreddit, cfg.allow_pickle)
    required = ("comment",) if cfg.idx_to_id else ("id", "comment")  # the map gives ids to rows without one
    data = read_records(path, allow_pickle=cfg.allow_pickle, required=required, nonempty=("comment",),
                        on_bad_row="skip" if cfg.skip_bad_rows else "error")
    if not data.records and not data.skipped:
        raise InputError("the file has no records", path=path)
    if cfg.idx_to_id:
        filled = fill_ids(data, load_idx_to_id(Path(cfg.idx_to_id), cfg.allow_pickle))
        log.info("%s: %d ids taken from %s", path, filled, cfg.idx_to_id)
        for row in data.records:
            row.setdefault("id", None)
    skipped = Counter(data.skipped)
    position = {id(row): line - 1 for row, line in zip(data.records, data.line_numbers, strict=True)}
    records = unique_ids(data, skipped, cfg.skip_bad_rows)
    rows = [r for r in records if len(r["comment"]) <= cfg.max_comment_chars]
    if len(rows) < len(records):
        skipped[f"comment longer than {cfg.max_comment_chars} characters"] += len(records) - len(rows)
    rows, held_out_as = keep_held_out(cfg, rows, position, max(data.line_numbers, default=0), skipped)
    return Inputs(Path(path), len(data.records), rows, skipped, [position[id(r)] for r in rows], held_out_as)


def keep_held_out(cfg: NormsConfig, rows: list[dict], position: dict, n_rows: int,
                  skipped: Counter) -> tuple[list[dict], str | None]:
    """Only the rows in the upvote model's ``inference_sample_ids.txt``: by id, or by list position when the file
    holds the research code's positions (see :func:`held_out_positions`)."""
    wanted = inference_ids(cfg.upvote_dir)
    if wanted is None:
        return rows, None
    positions = held_out_positions(wanted, {str(r["id"]) for r in rows}, n_rows)
    before = len(rows)
    if positions is None:
        rows, how = [r for r in rows if str(r["id"]) in wanted], "ids"
    else:
        log.info("%s holds list positions (the research code's format): selecting rows by position", INFERENCE_IDS)
        rows, how = [r for r in rows if position[id(r)] in positions], "positions"
    skipped["not in inference_sample_ids.txt"] += before - len(rows)
    return rows, how


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
        "held_out_ids_read_as": inputs.held_out_as,
        "shard": list(shard) if shard else None,
    }


def predictions_output(cfg: NormsConfig, dim_name: str, shard) -> Path | None:
    """--predictions-file with an upvote model in -u: <output_dir>/upvote_predictions/predictions_<sub>_<dim>.jsonl."""
    from socialsynth.classify.model import CARD

    if not cfg.predictions_file or cfg.upvote_dir is None or not (Path(cfg.upvote_dir) / CARD).exists():
        return None
    from socialsynth.jobs.norms.preference import predictions_path

    return shard_path(predictions_path(Path(cfg.output_dir), cfg.subreddit, dim_name), shard)


def keep_reliable(cfg: NormsConfig, inputs: Inputs, scorer) -> None:
    """--filter: keep only the originals whose per-item pairwise accuracy under the upvote model is above
    --filter-accuracy (the others are counted as skipped)."""
    if scorer is None:
        raise InputError("--filter needs an upvote model in -u DIR (train_classifier.py --task regression --preset "
                         "upvote -o DIR)", field="--filter")
    kept, _ = scorer.reliable(inputs.rows, cfg.filter_accuracy, cfg.filter_gap, cfg.filter_block)
    dropped = kept.count(False)
    if dropped:
        inputs.skipped[f"upvote model's pairwise accuracy not above {cfg.filter_accuracy} (--filter)"] += dropped
    inputs.rows = [r for r, k in zip(inputs.rows, kept, strict=True) if k]
    inputs.positions = [p for p, k in zip(inputs.positions, kept, strict=True) if k]
    log.info("--filter: %d of %d originals kept", len(inputs.rows), len(kept))


def load_models(cfg: NormsConfig, dim: Dimension, job: JobRun, scorer=None) -> Models:
    """The generator (tokens counted per stage in the run record), rater, rewriter and optional upvote model."""
    backend = cfg.engine().load()
    generator = generator_judge(cfg)
    rates = not cfg.judge or cfg.candidates > 1  # with --judge, the generator rates only to select candidates
    rater = judge_rater(generator, backend, dim, cfg) if rates else DeferredRater(backend, dim)
    cut = cfg.fluency_number
    rewriter = NormRewriter(
        backend, dim, rater, cfg.params(), tuple(cfg.levels), load_content_scorer(cfg),
        RewriteFilters(cfg.min_similarity, 0.0 if not fluency_wanted(cfg) else (cut if cut is not None else 0.0)),
        load_template(cfg.rewrite_template), stage=lambda name: job.track(backend, name),
        candidates=cfg.candidates, selection_weight=cfg.selection_weight, selection_judge=generator.name,
    )
    if fluency_wanted(cfg) and cfg.fluency_model != "generator":
        from socialsynth.text.fluency import FluencyScorer

        rewriter.fluency = FluencyScorer(cfg.fluency_model, device=cfg.model.device, dtype=cfg.model.dtype)
    models = Models(backend, rater, rewriter, scorer or preference_scorer(cfg),
                    judges=[spec.name for spec in cfg.judge_specs] or [generator.name],
                    generator_judge=generator.name if rates else None)
    job.meta["provenance"] = models.provenance()
    return models


def load_content_scorer(cfg: NormsConfig):
    """The content check's scorer (anything with ``pair_similarity``), or None when it is off."""
    name = content_model(cfg)
    if not name:
        return None
    if cfg.content_metric == "bertscore":
        from socialsynth.text.bertscore import BertScorer

        return BertScorer(name, layer=cfg.content_layer, device=cfg.model.device)
    from socialsynth.text.embeddings import Embedder

    return Embedder(name, device=cfg.model.device)


def set_fluency_cut(cfg: NormsConfig, models: Models, selected: list, meta: dict) -> None:
    """--fluency-cut mean+sd: perplexities of the originals this run selects (all of them, so a resumed run gets
    the same cut), and the cut mean + sd; recorded in the run record as ``fluency_cut``."""
    rewriter = models.rewriter
    if cfg.fluency_number is not None or not rewriter.fluency_on_by_rule:
        meta["fluency_cut"] = rewriter.filters.max_perplexity if rewriter.fluency_on else None
        return
    from socialsynth.text.fluency import MEAN_SD, fluency_cut

    with rewriter.stage("fluency"):
        originals = rewriter.original_perplexities([row["comment"] for _, row in selected])
    cut = fluency_cut(MEAN_SD, originals)
    rewriter.filters.max_perplexity = cut if cut != float("inf") else 0.0  # 0 = off: fewer than two originals
    meta["fluency_cut"] = {"rule": MEAN_SD, "value": round(cut, 2) if cut != float("inf") else None,
                           "n_originals": sum(1 for v in originals if v == v)}
    log.info("fluency cut (mean + sd of %d originals' perplexities): %s", len(originals), meta["fluency_cut"]["value"])


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
        job.meta["rating_method_used"] = models.rater.method if models.generator_judge else None
        job.meta["rating_method_notes"] = models.rewriter.notes
        if not cfg.judge:
            job.meta["judges"] = [generator_entry(cfg, models)]
        job.meta["fluency_filter_off"] = models.rewriter.fluency_off
        job.meta["provenance"] = models.provenance()
        job.meta["throughput"] = throughput(models.backend.stats, counts.done if counts else 0,
                                            counts.seconds if counts else 0.0, unit="comments")
        job.note_run(provenance=job.meta["provenance"])
        job.note_items(counts.done if counts else 0)
    job.meta["summary"] = summarise(out, cfg.levels)


def generator_entry(cfg: NormsConfig, models: Models) -> dict:
    """The run record's entry of the generator as the judge (no --judge)."""
    spec = generator_judge(cfg)
    return {"name": spec.name, **spec.fields(), "method_used": models.rater.method,
            "notes": list(models.rater.method_notes), "provenance": models.backend.describe()}


def run_judges(cfg: NormsConfig, dim: Dimension, out: Path, job: JobRun, stop: GracefulStop, command: str) -> None:
    """The judges' pass, after the generator is freed: each --judge in turn is loaded, rates the original and the
    rewrites of every written record its side file lacks, and is freed; then the output is rewritten with every
    judge's ratings joined in. The run record's ``judges`` says, per judge, the method really used (after any
    fallback), the notes why, and the loaded model's provenance. The run is complete only when every judge is."""
    generator_done = bool(job.meta.get("complete"))
    job.mark_complete(False)
    previous = {e.get("name"): e for e in job.meta.get("judges") or [] if isinstance(e, dict)}
    entries = job.meta["judges"] = []
    for spec in cfg.judge_specs:
        entry = {"name": spec.name, **spec.fields(), "provenance": previous.get(spec.name, {}).get("provenance")}
        entries.append(entry)
        job.save()
        rate_with_judge(cfg, dim, spec, out, job, stop, command, entry)
        side = ratings_path(out, spec)
        methods = methods_used(side)
        entry.update(method_used=max(methods, key=methods.get) if methods else None, methods=methods,
                     ratings_file=str(side))
        entry.setdefault("notes", previous.get(spec.name, {}).get("notes", []))
        job.save()
    missing = join_ratings(out, cfg.judge_specs)
    job.mark_complete(generator_done and not missing)
    job.meta["summary"] = summarise(out, cfg.levels)


def rate_with_judge(cfg: NormsConfig, dim: Dimension, spec: JudgeSpec, out: Path, job: JobRun, stop: GracefulStop,
                    command: str, entry: dict) -> None:
    """One judge's part of the judges' pass: rate (chunk by chunk, -b comments a chunk) the written records its
    side file ``<stem>.ratings.<slug>.jsonl`` lacks; the judge is loaded only when there is something to rate."""
    with JsonlWriter(ratings_path(out, spec)) as writer:
        todo = [rec for _, rec in iter_jsonl(out) if str(rec["id"]) not in writer.done]
        log.info("judge %s: %d of %d comments to rate -> %s", spec.name, len(todo), len(todo) + len(writer.done),
                 writer.path)
        if not todo:
            return
        with open_judge(spec, cfg) as backend:
            entry["provenance"] = backend.describe()
            # a function of its own: its rater is gone when it returns, so open_judge really frees the judge
            rate_todo(judge_rater(spec, backend, dim, cfg), spec, todo, writer, (cfg, job, stop, command), entry)


def rate_todo(rater: Rater, spec: JudgeSpec, todo: list[dict], writer: JsonlWriter, context: tuple,
              entry: dict) -> None:
    """Rate ``todo`` with one judge's rater, chunk by chunk, into its side file; ``context`` is (cfg, job, stop,
    command). The method really used, the notes why and the unparsed answers go into the judge's ``entry``."""
    cfg, job, stop, command = context
    limit = rater.backend.context_length()

    def process(chunk: Sequence[dict]) -> list[dict]:
        with job.track(rater.backend, "rate", model=spec.name):
            blocks = rate_records(rater, chunk, cfg.levels, spec.name, limit)
        job.save()
        return blocks

    try:
        run_chunks(todo, process, writer, cfg.batch_size, stop, desc="comments",
                   resume_hint=f"rerun the same command to resume: {command}")
    finally:
        entry.update(method_used=rater.method, notes=list(rater.method_notes), fallbacks=rater.fallbacks)


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
        fluency_cut=meta.get("fluency_cut"),
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
    millions of records is read line by line), and per judge the ladder figures and the agreement between judges
    (see :class:`socialsynth.jobs.norms.ladder.LadderRatings`)."""
    keys = [str(lv) for lv in levels]
    rating_sum, rating_n = Counter(), Counter()
    passed, judged = Counter(), Counter()
    flag_counts: Counter = Counter()
    deltas: dict[str, list[float]] = {lv: [] for lv in keys}
    n_records, original_sum, original_n = 0, 0.0, 0
    by_judge = LadderRatings(keys)
    records = iter_jsonl(path) if Path(path).exists() else ()
    for _, rec in records:
        n_records += 1
        by_judge.add(rec)
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
        "judges": by_judge.summary(),
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
    cut = summary.get("fluency_cut")
    if isinstance(cut, dict) and cut.get("value") is not None:
        lines.append(f"fluency cut: perplexity {cut['value']:,} ({cut['rule']} of {cut['n_originals']} originals)")
    if summary["flag_rates"]:
        lines.append("flag rates: " + ", ".join(f"{k} {v:.0%}" for k, v in summary["flag_rates"].items()))
    if summary.get("judges"):
        lines.extend(format_judges(summary["judges"]))
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
