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
# the research code's list positions (upvote_prediction/main.py names)
SEED_TRAINING_IDXS = "train_sample_idxs.txt"
SEED_INFERENCE_IDXS = "inference_sample_idxs.txt"
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


def seed_readable_time(seconds: float) -> str:
    """main.py's ``strftime('%A %B %d %Y %H:%M:%S %p')``: 'Saturday August 10 2019 05:30:43 AM' (in UTC here; the
    research code used the machine's local time zone)."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%A %B %d %Y %H:%M:%S %p")


def seed_elapsed(seconds: float) -> str:
    """main.py's seconds_to_time_string: '1 hours 3 minutes 11 seconds', zero parts left out."""
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    units = ((days, "days"), (hours, "hours"), (minutes, "minutes"), (sec, "seconds"))
    return " ".join(f"{value} {unit}" for value, unit in units if value)


TIME_FORMATS = ("ours", "seed")


def upvote_text(record: dict, comment: str | None = None, with_author: bool = False, time_format: str = "ours") -> str:
    """The upvote model's input for a processed comment record (or for a rewrite of it, via `comment`).

    ``time_format`` ours: 'Saturday, August 10, 2019 05:30:43 UTC, which is 1h 3m 11s after post.'; seed: the
    research code's 'Saturday August 10 2019 05:30:43 AM, which is 1 hours 3 minutes 11 seconds after post.'
    """
    created = _timestamp(record["created_comment"])
    gap = created - _timestamp(record["created_submission"])
    parts = []
    if with_author:
        parts.append(f"Author: {record.get('author') or '[unknown]'} ({record.get('author_id') or '-'})")
    if time_format == "seed":
        parts.append(f"Time of reply: {seed_readable_time(created)}, which is {seed_elapsed(gap)} after post.")
    else:
        parts.append(f"Time of reply: {readable_time(created)}, which is {elapsed_hms(gap)} after post.")
    parts.append(str(record.get("submission_title") or ""))
    parts.append(record["comment"] if comment is None else comment)
    return " || ".join(parts)


class UpvotePreset:
    """`--preset upvote`: builds (text, target) from a processed Reddit record."""

    required_fields = UPVOTE_FIELDS

    def __init__(self, with_author: bool = False, time_format: str = "ours"):
        self.with_author = with_author
        self.time_format = time_format

    def example(self, record: dict) -> tuple[str, Any]:
        score = record.get("label")  # absent when scoring new comments
        if score is None or (isinstance(score, str) and not score.strip()):
            return upvote_text(record, with_author=self.with_author, time_format=self.time_format), None
        try:
            target = upvote_target(float(score))
        except (TypeError, ValueError):
            raise ValueError(f"score is not a number: {str(score)[:40]!r}") from None
        return upvote_text(record, with_author=self.with_author, time_format=self.time_format), target


def split_half(n: int, seed: int, method: str = "ours") -> tuple[list[int], list[int]]:
    """A seeded random half for training and the rest for rewriting.

    ``ours``: numpy's default_rng permutation, (n+1)//2 rows for training, both lists sorted.
    ``seed``: ValueScope's main.py (``np.random.seed(42); np.random.permutation(n)``, the first n//2 train), in
    permutation order: the same seed and row order put the same comments in each half, and the seed's dev/test
    draw (seed_dev_test) then sees the training rows in the order it saw them.
    """
    if method == "seed":
        # RandomState(s).permutation is what np.random.seed(s) + np.random.permutation draw, without global state
        order = np.random.RandomState(seed).permutation(n)
        return order[: n // 2].tolist(), order[n // 2 :].tolist()
    order = np.random.default_rng(seed).permutation(n)
    half = (n + 1) // 2
    return sorted(order[:half].tolist()), sorted(order[half:].tolist())


def _hf_split(n: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions as ``datasets.Dataset.train_test_split(test_size=K, seed=S)`` draws them: one
    default_rng(S) permutation, the first K rows are the test part (the seed trained through that call)."""
    order = np.random.default_rng(seed).permutation(n)
    return order[test_size:], order[:test_size]


def seed_dev_test(n: int, seed: int, dev_size: int, test_size: int) -> tuple[list[int], list[int], list[int]]:
    """ValueScope's load_data: dev + test rows held out in one draw, then the test rows drawn from those (``-e K``
    gives K and K, 5000 in the paper). Positions into the training half, in the order the seed's Dataset held them."""
    train, held = _hf_split(n, dev_size + test_size, seed)
    dev, test = _hf_split(len(held), test_size, seed)
    return train.tolist(), held[dev].tolist(), held[test].tolist()
