"""The training job behind `train_classifier.py`: data in, model + metrics + predictions out.

    files -> labelled texts -> label space (fitted on train) -> model.fit -> thresholds tuned on validation
          -> metrics on validation and test (at 0.5 and tuned) -> model folder, metrics.json, report.txt,
             predictions_<split>.jsonl

A finished output folder is reused when the same command runs again (a --compare run that was stopped resumes
with the runs it has not finished); a stopped transformer run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from socialsynth import __version__
from socialsynth.classify.data import LabelledTexts, load_texts, parse_weighted_files, sample_fraction, split_indices
from socialsynth.classify.labels import LabelSpace, UnseenLabel
from socialsynth.classify.model import CARD, CHECKPOINTS, TextClassifier, TrainSettings, read_card
from socialsynth.classify.registry import load_classifier, make_classifier
from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text
from socialsynth.core.runner import GracefulStop

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    task: str
    output_dir: Path
    model: str = "embedded"
    input: Path | None = None  # one file, split train/val/test
    train: list[str] = field(default_factory=list)  # "file[:weight]" specs
    val: Path | None = None
    test: Path | None = None
    synthetic: list[str] = field(default_factory=list)  # --compare: the synthetic training files
    text_col: str = "text"
    label_cols: list[str] = field(default_factory=lambda: ["label"])
    id_col: str | None = None
    label_sep: str = ","
    positive_label: str | None = None
    preset: str | None = None
    with_author: bool = False
    time_format: str = "ours"  # the upvote text's time phrases: ours | seed
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    val_size: int | None = None  # a row count; overrides val_fraction when the data has room for it
    test_size: int | None = None
    split_method: str = "ours"  # ours | seed (ValueScope's half and dev/test draws; the upvote recipe)
    settings: TrainSettings = field(default_factory=TrainSettings)
    skip_bad_rows: bool = False
    allow_pickle: bool = False
    overwrite: bool = False
    command: str = ""


# ------------------------------------------------------------------------------------------- data


def _adapter(job: TrainJob):
    if job.preset is None:
        return None, ()
    if job.preset == "upvote":
        from socialsynth.classify.presets import UpvotePreset

        preset = UpvotePreset(with_author=job.with_author, time_format=job.time_format)
        return preset.example, preset.required_fields
    raise InputError(f"unknown recipe {job.preset!r} (upvote)", field="--recipe")


def _load(job: TrainJob, path: Path, require_labels: bool = True) -> LabelledTexts:
    adapter, fields = _adapter(job)
    return load_texts(
        path,
        task=job.task,
        text_col=job.text_col,
        label_cols=job.label_cols,
        id_col=job.id_col,
        label_sep=job.label_sep,
        require_labels=require_labels,
        skip_bad_rows=job.skip_bad_rows,
        allow_pickle=job.allow_pickle,
        adapter=adapter,
        adapter_fields=fields,
    )


def _stratify(job: TrainJob, data: LabelledTexts):
    return data.labels if job.task in ("binary", "multiclass") else None


@dataclass
class Splits:
    train: LabelledTexts
    val: LabelledTexts | None
    test: LabelledTexts | None
    notes: dict = field(default_factory=dict)


def _note_duplicate_ids(notes: dict, path, data: LabelledTexts) -> None:
    """Rows of one file that share an id with an earlier row: kept (they are data), but counted and reported."""
    counts = Counter(data.ids)
    extra = sum(c - 1 for c in counts.values() if c > 1)
    if extra:
        example = next(i for i, c in counts.items() if c > 1)
        log.warning("%s: %d rows repeat an earlier row's id (e.g. %r); kept, but their predictions share ids",
                    path, extra, example)
        notes.setdefault("duplicate_ids", {})[str(path)] = extra


def load_splits(job: TrainJob, train_specs: list[str] | None = None) -> Splits:
    """Read the training/validation/test data the job names; split what was not given separately."""
    specs = job.train if train_specs is None else train_specs
    seed = job.settings.seed
    notes: dict[str, Any] = {}
    if job.input is not None and not specs:
        data = _load(job, job.input)
        notes["skipped"] = dict(data.skipped)
        _note_duplicate_ids(notes, job.input, data)
        if job.preset == "upvote":
            data = _upvote_half(job, data, notes)
        tr, va, te, how = _held_out(job, data)
        notes["split"] = {"seed": seed, "train": len(tr), "val": len(va), "test": len(te), "from": str(job.input),
                          "method": how}
        train, val, test = data.subset(tr), data.subset(va) if va else None, data.subset(te) if te else None
    else:
        if not specs:
            raise InputError("give --input FILE (split 80/10/10) or --train FILE [--val FILE --test FILE]")
        weighted = parse_weighted_files(specs)
        parts = [_load(job, path) for path, _ in weighted]
        n_read = [len(part) for part in parts]
        for (path, _), part in zip(weighted, parts, strict=True):
            notes.setdefault("skipped", {}).update({f"{path.name}: {k}": v for k, v in part.skipped.items()})
            _note_duplicate_ids(notes, path, part)
        val, test = None, None
        if job.val is None:
            # carve validation rows out before any up-sampling, so no copy of a training row is validated on
            whole = LabelledTexts.concat(parts)
            tr, va, _ = split_indices(len(whole), seed, job.val_fraction, 0.0, _stratify(job, whole))
            notes["split"] = {"seed": seed, "train": len(tr), "val": len(va), "from": "training files"}
            val = whole.subset(va)
            kept, start = set(tr), 0
            for k, part in enumerate(parts):
                parts[k] = part.subset([i for i in range(len(part)) if start + i in kept])
                start += len(part)
        sampled = []
        for i, ((path, weight), part) in enumerate(zip(weighted, parts, strict=True)):
            sampled.append(sample_fraction(part, weight, seed + i))
            notes.setdefault("train_files", []).append(
                {
                    "file": str(path),
                    "weight": weight,
                    "rows": n_read[i],
                    "rows_after_validation_split": len(part),
                    "used": len(sampled[-1]),
                }
            )
        train = LabelledTexts.concat(sampled)
    for name in ("val", "test"):
        path = getattr(job, name)
        if path is not None:
            part = _load(job, path)
            notes.setdefault("skipped", {}).update({f"{Path(path).name}: {k}": v for k, v in part.skipped.items()})
            _note_duplicate_ids(notes, path, part)
            val, test = (part, test) if name == "val" else (val, part)
    if not len(train):
        raise InputError("no usable training rows", path=job.input or specs[0])
    return Splits(train, val, test, notes)


def _held_out(job: TrainJob, data: LabelledTexts) -> tuple[list, list, list, str]:
    """Validation and test rows of one --input file (none for a split given as its own file): by --val-size and
    --test-size counts where they leave rows to train on, else by the fractions; drawn our way or the seed's."""
    n, seed = len(data), job.settings.seed
    val_f = 0.0 if job.val else job.val_fraction
    test_f = 0.0 if job.test else job.test_fraction
    val_n = 0 if job.val else (job.val_size or 0)
    test_n = 0 if job.test else (job.test_size or 0)
    counts = bool(val_n or test_n)
    if counts and val_n + test_n >= n:
        # the seed's datasets call fails here; a small file still trains, on the fractions, and says so
        log.warning("--val-size %d + --test-size %d leave no training rows of %d: holding out %g + %g instead",
                    val_n, test_n, n, val_f, test_f)
        counts = False
    if not counts:
        val_n = math.ceil(val_f * n) if val_f else 0
        test_n = math.ceil(test_f * n) if test_f else 0
    if job.split_method == "seed":
        from socialsynth.classify.presets import seed_dev_test

        tr, va, te = seed_dev_test(n, seed, val_n, test_n)
        return tr, va, te, "seed" + (" (counts)" if counts else " (fractions)")
    if counts:
        val_f, test_f = val_n / n, test_n / n
    tr, va, te = split_indices(n, seed, val_f, test_f, _stratify(job, data))
    return tr, va, te, "ours" + (" (counts)" if counts else " (fractions)")


def _upvote_half(job: TrainJob, data: LabelledTexts, notes: dict) -> LabelledTexts:
    """Seed 000: train on a random half and rewrite the other half; both id lists go next to the model."""
    from socialsynth.classify.presets import (
        INFERENCE_IDS,
        SEED_INFERENCE_IDXS,
        SEED_TRAINING_IDXS,
        TRAINING_IDS,
        split_half,
    )

    train_idx, infer_idx = split_half(len(data), job.settings.seed, job.split_method)
    out = Path(job.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / TRAINING_IDS, "".join(data.ids[i] + "\n" for i in train_idx))
    atomic_write_text(out / INFERENCE_IDS, "".join(data.ids[i] + "\n" for i in infer_idx))
    if job.split_method == "seed":
        # the seed's position lists too (row positions of the usable rows, in its permutation order)
        atomic_write_text(out / SEED_TRAINING_IDXS, "".join(f"{i}\n" for i in train_idx))
        atomic_write_text(out / SEED_INFERENCE_IDXS, "".join(f"{i}\n" for i in infer_idx))
    notes["upvote_half"] = {"training": len(train_idx), "inference": len(infer_idx), "seed": job.settings.seed}
    return data.subset(train_idx)


def encode(space: LabelSpace, data: LabelledTexts) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Targets for the rows whose labels the model knows; returns (y, kept row index, problems counted)."""
    ys, keep, problems = [], [], Counter()
    for i, label in enumerate(data.labels):
        if label is None:
            problems["no label"] += 1
            continue
        if space.task == "multilabel":
            for name in space.unknown_names(label):
                problems[f"label not seen in training: {name}"] += 1
        try:
            ys.append(space.encode(label))
        except UnseenLabel as exc:
            problems[f"label not seen in training: {exc}"] += 1
            continue
        keep.append(i)
    dtype = np.float32 if space.task in ("multilabel", "regression") else np.int64
    y = np.asarray(ys, dtype=dtype) if ys else np.zeros((0,), dtype=dtype)
    return y, np.asarray(keep, dtype=int), problems


# ------------------------------------------------------------------------------------- predictions


def prediction_records(model: TextClassifier, data: LabelledTexts, scores: np.ndarray) -> list[dict]:
    """One JSON object per row: id, the true label (if any), the scores and the decision at the tuned threshold."""
    names, task = model.labels.names, model.task
    decided = model.decide(scores)
    preset = (model.card.get("preset") or {}).get("name")
    rows = []
    for i, row_id in enumerate(data.ids):
        rec: dict[str, Any] = {"id": row_id}
        if data.labels[i] is not None:
            rec["label"] = data.labels[i]
        if task == "regression":
            rec["prediction"] = round(float(scores[i]), 6)
            if preset == "upvote":
                from socialsynth.classify.presets import upvotes_from_target

                rec["predicted_upvotes"] = round(upvotes_from_target(float(scores[i])), 3)
        elif task == "binary":
            rec["score"] = round(float(scores[i]), 6)
            rec["prediction"] = names[int(decided[i])]
        elif task == "multiclass":
            rec["prediction"] = names[int(decided[i])]
            rec["probabilities"] = {n: round(float(p), 6) for n, p in zip(names, scores[i], strict=True)}
        else:
            rec["prediction"] = [n for n, d in zip(names, decided[i], strict=True) if d]
            rec["scores"] = {n: round(float(p), 6) for n, p in zip(names, scores[i], strict=True)}
        rows.append(rec)
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def evaluate_split(
    model: TextClassifier, data: LabelledTexts, batch_size: int, scores: np.ndarray | None = None
) -> tuple[dict | None, list, Counter]:
    """Scores every row (unless given); metrics over the rows whose labels the model knows (the rest are counted)."""
    from socialsynth.classify.metrics import evaluate

    if scores is None:
        scores = model.predict_scores(data.texts, batch_size)
    rows = prediction_records(model, data, scores)
    if not data.labels or all(label is None for label in data.labels):
        return None, rows, Counter()
    y, keep, problems = encode(model.labels, data)
    if not len(keep):
        return None, rows, problems
    thresholds = model.thresholds or None
    metrics = evaluate(model.task, y, scores[keep], model.labels.names, thresholds)
    if problems:
        metrics["excluded_rows"] = dict(problems)
    return metrics, rows, problems


# ------------------------------------------------------------------------------------------- train


def _config(job: TrainJob, train_specs) -> dict:
    """What must match for a finished output folder to count as this run's result."""
    keep = {k: v for k, v in asdict(job).items() if k not in ("output_dir", "overwrite", "command", "synthetic")}
    keep["train"] = list(train_specs)
    # the same paths with other contents are other data: size and modification time tell them apart cheaply
    files = [p for p, _ in parse_weighted_files(train_specs)] + [job.input, job.val, job.test]
    keep["files"] = {str(p): _fingerprint(p) for p in files if p is not None}
    settings = keep.pop("settings")
    for k in ("keep_checkpoints", "resume", "device", "eval_batch_size"):
        settings.pop(k, None)
    keep["settings"] = settings
    return json.loads(json.dumps(keep, default=str))


def _fingerprint(path) -> list | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def saved_state(job: TrainJob, train_specs: list[str] | None = None) -> tuple[str, dict | None]:
    """What the output folder holds for this job: ``("none", None)``, ``("finished", metrics)``, or
    ``("unevaluated", None)``: this very run's model, saved before a kill took its metrics.json.

    Raises InputError when the folder holds a model trained with other settings (unless ``job.overwrite``).
    """
    out = Path(job.output_dir)
    specs = job.train if train_specs is None else train_specs
    if not (out / CARD).exists() or job.overwrite:
        return "none", None
    card = read_card(out)
    if card.get("config") != _config(job, specs):
        raise InputError(
            "holds a model trained with other settings; pass --overwrite to replace it, or choose another -o", path=out
        )
    metrics = _read_metrics(out / "metrics.json")
    return ("unevaluated", None) if metrics is None else ("finished", metrics)


def _read_metrics(path: Path) -> dict | None:
    """A finished run's metrics.json, or None when it is missing or damaged (the evaluation is then redone)."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): evaluating the saved model again", path, exc)
        return None
    if not isinstance(metrics, dict) or "headline" not in metrics:
        log.warning("%s is not a metrics summary: evaluating the saved model again", path)
        return None
    return metrics


def finished_result(job: TrainJob, train_specs: list[str] | None = None) -> dict | None:
    """The metrics of a finished run of this very job in its output folder, or None when there is none.

    Raises InputError when the folder holds a model trained with other settings (unless ``job.overwrite``).
    """
    return saved_state(job, train_specs)[1]


@dataclass
class Prepared:
    """The encoded data of a training run: splits, the label space and the rows each split keeps."""

    splits: Splits
    space: LabelSpace
    label_notes: dict
    train_texts: list[str]
    y_train: np.ndarray
    train_problems: Counter
    val_texts: list[str] | None = None
    y_val: np.ndarray | None = None
    keep_val: np.ndarray | None = None


def prepare_data(job: TrainJob, specs: list[str]) -> Prepared:
    """Read the splits, fit the label space on the training rows and encode the targets."""
    splits = load_splits(job, specs)
    train = splits.train
    space = LabelSpace.fit(
        job.task,
        [label for label in train.labels if label is not None],
        positive=job.positive_label,
        label_sep=job.label_sep,
        name=",".join(job.label_cols),
    )
    label_notes = _check_label_columns(job, space)
    y_train, keep_train, train_problems = encode(space, train)
    prepared = Prepared(splits, space, label_notes, [train.texts[i] for i in keep_train], y_train, train_problems)
    if splits.val is not None and len(splits.val):
        prepared.y_val, prepared.keep_val, _ = encode(space, splits.val)
        prepared.val_texts = [splits.val.texts[i] for i in prepared.keep_val]
    return prepared


def _log_start(job: TrainJob, data: Prepared) -> None:
    space = data.space
    counts = zip(space.names, space.counts, strict=True)
    log.info(
        "training %s (%s, %s) on %d rows, validating on %d; labels: %s",
        job.model,
        job.task,
        "output " + str(job.output_dir),
        len(data.train_texts),
        len(data.val_texts or []),
        ", ".join(f"{n} ({int(c)})" for n, c in counts) if job.task != "regression" else "-",
    )


def _tune_on_validation(job: TrainJob, model: TextClassifier, data: Prepared) -> dict:
    """Score the validation rows once (for thresholds and the report); binary/multilabel thresholds tuned on them."""
    from socialsynth.classify.metrics import tune_thresholds

    scored = {}
    if data.val_texts:
        scored["val"] = model.predict_scores(data.splits.val.texts, job.settings.eval_batch_size)
        if job.task in ("binary", "multilabel"):
            model.thresholds = tune_thresholds(job.task, data.y_val, scored["val"][data.keep_val])
    return scored


def _model_card(job: TrainJob, config: dict, history: dict) -> dict:
    return {
        "task": job.task,
        "base_model": "embedded (all-MiniLM-L6-v2)" if job.model == "embedded" else job.model,
        "max_length": job.settings.max_length,
        "preset": {"name": job.preset, "with_author": job.with_author, "time_format": job.time_format}
        if job.preset
        else None,
        "text_col": job.text_col,
        "label_cols": job.label_cols,
        "config": config,
        "socialsynth": __version__,
        "trained": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "history": history,
    }


def _evaluate_and_write_predictions(job: TrainJob, model: TextClassifier, data: Prepared, scored: dict) -> dict:
    """Metrics per held-out split (predictions_<split>.jsonl written for each); the tuned thresholds."""
    results: dict[str, Any] = {"task": job.task, "model": job.model, "labels": data.space.names}
    for name, split in (("val", data.splits.val), ("test", data.splits.test)):
        if split is None or not len(split):
            continue
        metrics, rows, _ = evaluate_split(model, split, job.settings.eval_batch_size, scored.get(name))
        _write_jsonl(Path(job.output_dir) / f"predictions_{name}.jsonl", rows)
        if metrics is not None:
            results[name] = metrics
    if job.task in ("binary", "multilabel") and model.thresholds:
        names = data.space.names[-1:] if job.task == "binary" else data.space.names
        results["thresholds"] = dict(zip(names, model.thresholds, strict=True))
    return results


def _summarise(job: TrainJob, results: dict, data: Prepared, history: dict, seconds: tuple[float, float]) -> None:
    """Headline, data counts, timings and the training history, added to ``results``."""
    from socialsynth.classify.metrics import headline

    space, splits = data.space, data.splits
    final = results.get("test") or results.get("val")
    results["headline"] = headline(job.task, final) if final else {}
    results["headline_split"] = "test" if "test" in results else ("val" if "val" in results else None)
    results["data"] = {
        "train_rows": len(data.train_texts),
        "val_rows": len(data.val_texts or []),
        "test_rows": len(splits.test) if splits.test is not None else 0,
        "label_counts": dict(zip(space.names, space.counts, strict=True)) if job.task != "regression" else None,
        "train_excluded": dict(data.train_problems),
        **splits.notes,
        **data.label_notes,
    }
    results["seconds"] = {"train": round(seconds[0], 2), "total": round(seconds[1], 2)}
    results["history"] = {k: v for k, v in history.items() if k != "log"}


def _write_report(job: TrainJob, results: dict) -> None:
    """report.txt and metrics.json."""
    from socialsynth.classify.report import format_report

    out = Path(job.output_dir)
    report = [f"# {job.model} on {job.task} ({out})"]
    for name in ("val", "test"):
        if name in results:
            report.append(format_report(job.task, results[name], title=f"{name} set ({results[name].get('n')} rows)"))
    atomic_write_text(out / "report.txt", "\n\n".join(report) + "\n")
    atomic_write_json(out / "metrics.json", results)


def _write_outputs(job: TrainJob, model: TextClassifier, card: dict, results: dict) -> None:
    """report.txt and metrics.json, then the model folder with its card last (a folder with a card is finished),
    then the checkpoints go: a kill anywhere before the card leaves a run that resumes."""
    card["headline"] = results["headline"]
    _write_report(job, results)
    model.save(Path(job.output_dir), card)
    if hasattr(model, "cleanup"):
        model.cleanup(job.settings.keep_checkpoints)


def _finish_evaluation(job: TrainJob, data: Prepared, t0: float) -> dict | None:
    """Evaluate this run's saved model when a kill came between its save and metrics.json; None: retrain instead."""
    out = Path(job.output_dir)
    try:
        model = load_classifier(out, device=job.settings.device)
    except InputError as exc:
        log.warning("%s: the saved model cannot be loaded (%s): training it again", out, exc.message)
        return None
    log.warning("%s holds this run's model but no metrics: evaluating it (metrics.json was missing)", out)
    history = dict(model.card.get("history") or {})
    results = _evaluate_and_write_predictions(job, model, data, {})
    _summarise(job, results, data, history, (float(history.get("train_seconds") or 0.0), time.perf_counter() - t0))
    _write_report(job, results)
    results["repaired"] = "evaluated the saved model again: metrics.json was missing or damaged"  # this run only
    if not job.settings.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return results


def _guard_checkpoints(job: TrainJob, config: dict) -> None:
    """Checkpoints made with other settings (``--overwrite``, changed input files) must not be resumed from."""
    folder = Path(job.output_dir) / CHECKPOINTS
    marker = folder / "run_config.json"
    if folder.is_dir():
        try:
            saved = json.loads(marker.read_text(encoding="utf-8"))
        except FileNotFoundError:
            saved = "unknown" if job.overwrite else None  # an older run's checkpoints: trusted unless overwriting
        except (OSError, ValueError):
            saved = "unreadable"
        if saved is not None and saved != config:
            log.warning("%s holds checkpoints of a run with other settings: removing them", folder)
            shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, config)


def run_training(job: TrainJob, train_specs: list[str] | None = None, stop: GracefulStop | None = None) -> dict:
    """Train (or reuse a finished run), evaluate, write everything; return the metrics summary."""
    out = Path(job.output_dir)
    specs = job.train if train_specs is None else train_specs
    state, reused = saved_state(job, specs)
    if reused is not None:
        log.info("%s already holds this run's model: reusing it (--overwrite to retrain)", out)
        return reused
    config = _config(job, specs)
    t0 = time.perf_counter()
    data = prepare_data(job, specs)
    if state == "unevaluated":
        results = _finish_evaluation(job, data, t0)
        if results is not None:
            return results
    _log_start(job, data)
    model = make_classifier(job.model, data.space, job.settings)
    out.mkdir(parents=True, exist_ok=True)
    if model.kind == "transformer":
        _guard_checkpoints(job, config)
    history = model.fit(data.train_texts, data.y_train, data.val_texts, data.y_val, job.settings, out, stop)
    t_train = time.perf_counter() - t0
    scored = _tune_on_validation(job, model, data)
    card = _model_card(job, config, history)
    model.card = card  # prediction_records reads the preset from it
    results = _evaluate_and_write_predictions(job, model, data, scored)
    _summarise(job, results, data, history, (t_train, time.perf_counter() - t0))
    _write_outputs(job, model, card, results)
    return results


def _check_label_columns(job: TrainJob, space: LabelSpace) -> dict:
    """One 0/1 column per label: a column with no positive training row cannot be learned; say which."""
    if job.task != "multilabel" or len(job.label_cols) < 2:
        return {}
    empty = [c for c in job.label_cols if c not in space.names]
    if empty:
        log.warning("label columns with no positive training row (left out of the model): %s", ", ".join(empty))
    return {"labels_without_positive_training_rows": empty} if empty else {}


# ---------------------------------------------------------------------------------------- compare


def run_compare(job: TrainJob, stop: GracefulStop | None = None) -> dict:
    """Seed 001's question: does a model trained on synthetic data score like one trained on real data?

    Three runs (real, synthetic, real + synthetic) validated and tested on the same real held-out rows.
    """
    if not job.synthetic:
        raise InputError("--compare needs --synthetic FILE[:weight]", field="--synthetic")
    if job.preset:
        raise InputError("--compare works on labelled text tables, not with the upvote recipe", field="--recipe")
    base = Path(job.output_dir)
    real_specs = list(job.train)
    if job.input is not None and not real_specs:
        # split the real file once; every run then uses the same real val/test rows
        split_dir = base / "real_split"
        real_specs, job = _materialise_real_split(job, split_dir)
    runs = {"real": real_specs, "synthetic": list(job.synthetic), "real+synthetic": real_specs + list(job.synthetic)}
    table, results = {}, {}
    for name, specs in runs.items():
        sub = TrainJob(**{**asdict(job), "settings": job.settings, "output_dir": base / name.replace("+", "_plus_")})
        sub.input = None
        log.info("--compare: training on %s", name)
        results[name] = run_training(sub, specs, stop)
        table[name] = {"train_rows": results[name]["data"]["train_rows"], **results[name]["headline"]}
    from socialsynth.classify.report import format_comparison

    text = format_comparison(table)
    split = next(iter(results.values())).get("headline_split")
    summary = {"evaluated_on": split, "table": table, "runs": {k: str(base / k.replace("+", "_plus_")) for k in runs}}
    atomic_write_json(base / "comparison.json", summary)
    atomic_write_text(base / "comparison.txt", f"evaluated on the real {split} set\n{text}\n")
    summary["text"] = text
    return summary


def _materialise_real_split(job: TrainJob, split_dir: Path) -> tuple[list[str], TrainJob]:
    """Write the real file's seeded train/val/test parts as JSONL so the three runs share them exactly."""
    data = _load(job, job.input)
    tr, va, te = split_indices(len(data), job.settings.seed, job.val_fraction, job.test_fraction, _stratify(job, data))
    split_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, idx in (("train", tr), ("val", va), ("test", te)):
        part = data.subset(idx)
        columns = zip(part.texts, part.labels, part.ids, strict=True)
        rows = [_as_row(job, row_id, text, label) for text, label, row_id in columns]
        paths[name] = split_dir / f"{name}.jsonl"
        _write_jsonl(paths[name], rows)
    new = TrainJob(**{**asdict(job), "settings": job.settings})
    new.input, new.val, new.test = None, paths["val"], paths["test"]
    new.id_col = job.id_col or "id"
    return [str(paths["train"])], new


def _as_row(job: TrainJob, row_id: str, text: str, label) -> dict:
    """A labelled row in the user's own column layout, so the synthetic files and the real parts read alike."""
    row = {job.id_col or "id": row_id, job.text_col: text}
    if len(job.label_cols) > 1:  # one 0/1 column per label
        row.update({col: int(col in label) for col in job.label_cols})
    else:
        row[job.label_cols[0]] = label
    return row


# ---------------------------------------------------------------------------------------- predict


def run_predict(
    model_dir: Path, path: Path, output: Path, job: TrainJob, batch_size: int = 64, stop: GracefulStop | None = None
) -> dict:
    """Score a new file with a saved model; writes one prediction per row (resumable, keyed by id)."""
    from socialsynth.core.io import JsonlWriter
    from socialsynth.core.runner import run_chunks

    model = load_classifier(model_dir, device=job.settings.device)
    if job.settings.precision != "auto" and hasattr(model, "precision"):
        model.precision = job.settings.precision
    card = model.card
    predict_job = TrainJob(**{**asdict(job), "settings": job.settings})
    predict_job.task = model.task
    preset = card.get("preset") or {}
    predict_job.preset = preset.get("name")
    predict_job.with_author = bool(preset.get("with_author"))
    predict_job.time_format = preset.get("time_format") or "ours"  # the texts the model was trained on
    if job.text_col == "text" and card.get("text_col"):
        predict_job.text_col = card["text_col"]
    if job.label_cols == ["label"] and card.get("label_cols"):
        predict_job.label_cols = card["label_cols"]
    if job.label_sep == ",":
        predict_job.label_sep = model.labels.label_sep
    data = _load(predict_job, path, require_labels=False)
    if len(set(data.ids)) != len(data.ids):
        log.warning("%s: ids are not unique; using row numbers as ids", path)
        data.ids = [f"{path.stem}:{i + 1}" for i in range(len(data))]
    scored: dict[int, np.ndarray] = {}
    with JsonlWriter(output) as writer:
        todo = [i for i in range(len(data)) if data.ids[i] not in writer.done]

        def process(chunk):
            part = data.subset(chunk)
            scores = model.predict_scores(part.texts, batch_size)
            scored.update(zip(chunk, scores, strict=True))
            return prediction_records(model, part, scores)

        counts = run_chunks(
            todo,
            process,
            writer,
            max(batch_size * 8, 256),
            stop or GracefulStop(),
            desc="rows",
            resume_hint="rerun the same command to resume",
        )
    summary = {
        "model": str(model_dir),
        "rows": len(data),
        "written_this_run": counts.done,
        "skipped": dict(data.skipped),
        "output": str(output),
    }
    if any(label is not None for label in data.labels):
        from socialsynth.classify.metrics import evaluate

        missing = [i for i in range(len(data)) if i not in scored]  # written by an earlier, interrupted run
        if missing:
            scored.update(zip(missing, model.predict_scores(data.subset(missing).texts, batch_size), strict=True))
        scores = np.stack([scored[i] for i in range(len(data))])
        y, keep, problems = encode(model.labels, data)
        if len(keep):
            summary["metrics"] = evaluate(model.task, y, scores[keep], model.labels.names, model.thresholds or None)
        summary["excluded"] = dict(problems)
    return summary
