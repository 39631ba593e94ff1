"""Reddit comment preparation as in seed 000: keep top-level comments whose score means something.

A processed record has the seed's fields: id, submission_title, submission_body, comment, created_comment,
created_submission, label (the comment score), author, author_id, submission_has_media, edited, retrieved_on.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

DAY = 24 * 3600
URL_ONLY = re.compile(r"^\s*<?(?:https?://|www\.)\S+>?\s*$", re.IGNORECASE)
FILTER_REASONS = (
    "not_top_level",  # replies see a different audience than top-level comments
    "removed_or_deleted",
    "edited",  # the score may belong to another text
    "single_link",  # nothing to rewrite
    "media_post",  # the post's content is not in the text the model sees
    "late_comment",  # posted more than 24 h after the post: few voters saw it
    "retrieved_too_soon",  # crawled less than 24 h after posting: the score had not settled
)


def _num(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def filter_reason(row: dict) -> str | None:
    """The first of the seed's filters that drops this comment, or None if it is kept."""
    parent, link = row.get("parent_id"), row.get("link_id")
    if parent and link and parent != link:
        return "not_top_level"
    if parent and str(parent).startswith("t1_"):
        return "not_top_level"
    text = str(row.get("comment") or "").strip()
    if text in ("[removed]", "[deleted]", ""):
        return "removed_or_deleted"
    if row.get("edited") not in (None, False, 0, "false", "False", ""):
        return "edited"
    if URL_ONLY.match(text):
        return "single_link"
    if row.get("submission_has_media") in (True, "true", "True", 1):
        return "media_post"
    created_c, created_s, retrieved = (
        _num(row.get(k)) for k in ("created_comment", "created_submission", "retrieved_on")
    )
    if created_c is not None and created_s is not None and created_c - created_s > DAY:
        return "late_comment"
    if retrieved is not None and created_c is not None and retrieved - created_c < DAY:
        return "retrieved_too_soon"
    return None


def prepare_comments(rows: Iterable[dict]) -> tuple[list[dict], Counter]:
    """Apply the filters; return the kept records (fields starting with "_" removed) and counts per reason."""
    kept, dropped = [], Counter()
    for row in rows:
        reason = filter_reason(row)
        if reason:
            dropped[reason] += 1
        else:
            kept.append({k: v for k, v in row.items() if not k.startswith("_")})
    return kept, dropped
