"""Training presets of the research code, kept with the classifiers that use them: the upvote model
(ValueScope), its input text, target and the seeded half split into training and rewriting ids.

The upvote model is a regression text classifier (`train_classifier.py --task regression --preset upvote`) on
ValueScope's input text

    [Author: <name> (<id>) || ]Time of reply: <date>, which is <h m s> after post. || <title> || <comment>

with target sign(s) * log2|s| of the comment score s. It is trained on a random half of a subreddit; the other
half (`inference_sample_ids.txt`) is what `generate_synthetic_data.py -u DIR` rewrites.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

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
