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

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

INFERENCE_IDS = "inference_sample_ids.txt"
TRAINING_IDS = "training_sample_ids.txt"
UPVOTE_FIELDS = ("comment", "submission_title", "created_comment", "created_submission", "label")


def upvote_target(score: float) -> float:
    """sign(s) * log2|s|; scores 0 and +-1 all map to 0 (log2 1 = 0; the seed left 0 undefined)."""
    score = float(score)
    if abs(score) < 1:
        return 0.0
    return math.copysign(math.log2(abs(score)), score)


def upvotes_from_target(value: float) -> float:
    """Inverse of upvote_target: sign(x) * 2**|x| (the research code used exp here, which is wrong for log2)."""
    return 0.0 if value == 0 else math.copysign(2.0 ** abs(value), value)


def _timestamp(value: Any) -> float:
    """Unix seconds from a number, a numeric string, or an ISO date string ('2024-04-01 12:00:00', UTC)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def readable_time(seconds: float) -> str:
    """'Saturday, August 10, 2019 07:43:30 UTC'."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%A, %B %d, %Y %H:%M:%S UTC")


def elapsed_hms(seconds: float) -> str:
    """'1h 5m 3s' (negative gaps, from clock skew in dumps, count as 0)."""
    total = max(int(round(seconds)), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes}m {secs}s"


def upvote_text(record: dict, comment: str | None = None, with_author: bool = False) -> str:
    """The upvote model's input for a processed comment record (or for a rewrite of it, via `comment`)."""
    created = _timestamp(record["created_comment"])
    gap = created - _timestamp(record["created_submission"])
    parts = []
    if with_author:
        parts.append(f"Author: {record.get('author') or '[unknown]'} ({record.get('author_id') or '-'})")
    parts.append(f"Time of reply: {readable_time(created)}, which is {elapsed_hms(gap)} after post.")
    parts.append(str(record.get("submission_title") or ""))
    parts.append(record["comment"] if comment is None else comment)
    return " || ".join(parts)


class UpvotePreset:
    """`--preset upvote`: builds (text, target) from a processed Reddit record."""

    required_fields = UPVOTE_FIELDS

    def __init__(self, with_author: bool = False):
        self.with_author = with_author

    def example(self, record: dict) -> tuple[str, Any]:
        score = record.get("label")  # absent when scoring new comments
        if score is None or (isinstance(score, str) and not score.strip()):
            return upvote_text(record, with_author=self.with_author), None
        try:
            target = upvote_target(float(score))
        except (TypeError, ValueError):
            raise ValueError(f"score is not a number: {str(score)[:40]!r}") from None
        return upvote_text(record, with_author=self.with_author), target


def split_half(n: int, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random half for training and the rest for rewriting (sorted index lists)."""
    order = np.random.default_rng(seed).permutation(n)
    half = (n + 1) // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


# ------------------------------------------------------------------------------------ scoring rewrites


class PreferenceScorer:
    """Scores originals and rewrites with a saved upvote model and adds the deltas to output records."""

    def __init__(self, model_dir: str | Path, device: str = "auto", batch_size: int = 64):
        from .classify.model import load_classifier
        from .errors import InputError

        self.model = load_classifier(model_dir, device=device)
        if self.model.task != "regression":
            raise InputError(f"-u needs an upvote (regression) model, this one is {self.model.task}", path=model_dir)
        preset = self.model.card.get("preset") or {}
        self.uses_context = preset.get("name") == "upvote"
        self.with_author = bool(preset.get("with_author"))
        self.model_dir = str(model_dir)
        self.batch_size = batch_size

    def _text(self, row: dict, comment: str | None) -> str:
        if self.uses_context:
            return upvote_text(row, comment, self.with_author)
        return row["comment"] if comment is None else comment

    def annotate(self, records: list[dict], rows: Sequence[tuple[int, dict]], levels: Sequence[int]) -> list[dict]:
        """Add `upvote_log_pred`, `upvotes_pred` and `preference_delta` (per level) to each record."""
        texts, where = [], []
        for r, ((_, row), rec) in enumerate(zip(rows, records)):
            texts.append(self._text(row, None))
            where.append((r, "original"))
            for level in levels:
                rewrite = rec.get(str(level))
                if rewrite:
                    texts.append(self._text(row, rewrite))
                    where.append((r, str(level)))
        predictions = self.model.predict_scores(texts, self.batch_size) if texts else []
        found: dict[int, dict[str, float]] = {}
        for (r, key), value in zip(where, predictions):
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


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """Mean with a percentile bootstrap interval: (mean, low, high), or Nones for no data."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(x):
        return None, None, None
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # blocks keep memory flat for large outputs
        stop = min(start + 500, n_boot)
        means[start:stop] = x[rng.integers(0, len(x), size=(stop - start, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


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
    err = [[m - p[1]["low"] for m, p in zip(means, points)], [p[1]["high"] - m for m, p in zip(means, points)]]
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
