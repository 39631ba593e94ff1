"""Community preference distillation (seed 000): an upvote model, and how much each rewrite moves its prediction.

The upvote model is a regression text classifier (`train_classifier.py --task regression --preset upvote`) on
ValueScope's input text

    [Author: <name> (<id>) || ]Time of reply: <date>, which is <h m s> after post. || <title> || <comment>

with target sign(s) * log2|s| of the comment score s. It is trained on a random half of a subreddit; the other
half (`inference_sample_ids.txt`) is what `generate_synthetic_data.py -u DIR` rewrites. For every rewrite it
then writes the predicted upvotes and the *preference delta*: prediction for the rewrite minus prediction for the
original, in the model's log2 units (+1 = twice the upvotes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from socialsynth.classify.presets import (  # noqa: F401  (re-exported for the norms job)
    INFERENCE_IDS,
    TRAINING_IDS,
    upvote_target,
    upvote_text,
    upvotes_from_target,
)
from socialsynth.core.stats import bootstrap_mean_ci  # noqa: F401

# ------------------------------------------------------------------------------------ scoring rewrites


class PreferenceScorer:
    """Scores originals and rewrites with a saved upvote model and adds the deltas to output records."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 64):
        from socialsynth.classify.registry import load_classifier
        from socialsynth.core.errors import InputError

        self.model = load_classifier(model_dir, device=device)
        if self.model.task != "regression":
            raise InputError(f"-u needs an upvote (regression) model, this one is {self.model.task}", path=model_dir)
        preset = self.model.card.get("preset") or {}
        self.uses_context = preset.get("name") == "upvote"
        self.with_author = bool(preset.get("with_author"))
        self.time_format = preset.get("time_format") or "ours"  # the text format the model was trained on
        self.model_dir = str(model_dir)
        self.batch_size = batch_size

    def _text(self, row: dict, comment: str | None) -> str:
        if self.uses_context:
            return upvote_text(row, comment, self.with_author, self.time_format)
        return row["comment"] if comment is None else comment

    def annotate(self, records: list[dict], rows: Sequence[tuple[int, dict]], levels: Sequence[int]) -> list[dict]:
        """Add `upvote_log_pred`, `upvotes_pred` and `preference_delta` (per level) to each record."""
        texts, where = [], []
        for r, ((_, row), rec) in enumerate(zip(rows, records, strict=True)):
            texts.append(self._text(row, None))
            where.append((r, "original"))
            for level in levels:
                rewrite = rec.get(str(level))
                if rewrite:
                    texts.append(self._text(row, rewrite))
                    where.append((r, str(level)))
        predictions = self.model.predict_scores(texts, self.batch_size) if texts else []
        found: dict[int, dict[str, float]] = {}
        for (r, key), value in zip(where, predictions, strict=True):
            found.setdefault(r, {})[key] = round(float(value), 4)
        for r, rec in enumerate(records):
            pred = found.get(r, {})
            original = pred.get("original")
            rec["upvote_log_pred"] = {k: pred.get(k) for k in ["original", *map(str, levels)]}
            rec["upvotes_pred"] = {
                k: (round(upvotes_from_target(v), 2) if v is not None else None)
                for k, v in rec["upvote_log_pred"].items()
            }
            rec["preference_delta"] = {
                str(lv): (round(pred[str(lv)] - original, 4) if str(lv) in pred and original is not None else None)
                for lv in levels
            }
            rec.setdefault("provenance", {})["upvote_model"] = self.model_dir
        return records


    def predict_originals(self, rows: Sequence[dict]) -> list[float]:
        """The model's log2-upvote prediction for each original comment."""
        texts = [self._text(row, None) for row in rows]
        return [float(v) for v in self.model.predict_scores(texts, self.batch_size)] if texts else []

    def reliable(self, rows: Sequence[dict], accuracy: float = 0.9, gap: float = 0.1,
                 block: int = 5000) -> tuple[list[bool], list[float | None]]:
        """The research code's ``--filter``: the originals on which the model ranks well. Rows are taken ``block``
        at a time in input order (its 5k evaluation batches); within a block each row's pairwise accuracy is the
        share of its pairs (targets at least ``gap`` apart) that the predictions order rightly, and a row is kept
        when that is above ``accuracy``. A row with no score or no pair is not kept. Returns (kept, accuracy)."""
        from socialsynth.classify.metrics import per_item_pairwise_accuracy

        kept: list[bool] = [False] * len(rows)
        accuracies: list[float | None] = [None] * len(rows)
        scored = [i for i, row in enumerate(rows) if _score(row) is not None]
        predictions = self.predict_originals([rows[i] for i in scored])
        for start in range(0, len(scored), block):
            part = scored[start : start + block]
            if len(part) < 2:
                continue
            targets = [upvote_target(_score(rows[i])) for i in part]
            values = per_item_pairwise_accuracy(targets, predictions[start : start + len(part)], gap)
            for i, value in zip(part, values, strict=True):
                if value == value:  # NaN: no pair far enough apart
                    accuracies[i] = round(float(value), 4)
                    kept[i] = float(value) > accuracy
        return kept, accuracies


def _score(row: dict) -> float | None:
    """The comment's score (``label``, else ``score``) as a number, or None."""
    value = row.get("label", row.get("score"))
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def prediction_record(record: dict, row: dict, levels: Sequence[int]) -> dict:
    """One line of ``predictions_<sub>_<dim>.jsonl`` as the research code wrote it: the comment's fields, then
    ``<id>-0`` (the original) and ``<id>-<level>`` (each rewrite) with ``comment``, ``upvote_log`` and ``upvote``
    (2**x with its sign; the research code's exp was a bug)."""
    cid = record["id"]
    out = {"id": cid, "idx": record["idx"], "original_rating": record["original_rating"],
           "original_score": record["original_score"], "submission_title": record["submission_title"]}
    out.update({k: row.get(k) for k in ("created_submission", "created_comment", "author", "author_id")})
    logs = record.get("upvote_log_pred") or {}
    texts = {"0": record["original_comment"], **{str(lv): record.get(str(lv)) for lv in levels}}
    for key, text in texts.items():
        value = logs.get("original" if key == "0" else key)
        if text and value is not None:
            out[f"{cid}-{key}"] = {"comment": text, "upvote_log": value,
                                   "upvote": round(upvotes_from_target(value), 4)}
    return out


def predictions_path(output_dir: Path, subreddit: str, dim_name: str) -> Path:
    return Path(output_dir) / "upvote_predictions" / f"predictions_{subreddit}_{dim_name}.jsonl"


def plot_deltas(by_level: dict[str, dict], path: Path, dim_name: str) -> str | None:
    """Mean preference delta per target level with its 95% interval."""
    points = [(int(k), v) for k, v in by_level.items() if v.get("mean") is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p[0] for p in points]
    means = [p[1]["mean"] for p in points]
    err = [
        [m - p[1]["low"] for m, p in zip(means, points, strict=True)],
        [p[1]["high"] - m for m, p in zip(means, points, strict=True)],
    ]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.axhline(0, c="grey", lw=1, ls="--")
    ax.errorbar(xs, means, yerr=err, marker="o", capsize=4)
    ax.set(
        xlabel=f"target {dim_name} level",
        ylabel="predicted upvotes, rewrite - original (log2)",
        title="community preference shift (95% CI)",
        xlim=(0.5, 5.5),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
