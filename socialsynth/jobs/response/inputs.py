"""The in-memory data set both readers build: build-dataset's own schema (dataset.py) and the Weibo crawl
(weibo.py) are read into :class:`Inputs` (topics, users with their history posts, real responses), with
:class:`RowChecker` for bad rows and the field helpers both readers share."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from socialsynth.core.errors import InputError

__all__ = ["Inputs", "Post", "Response", "RowChecker", "Topic", "User"]


@dataclass
class Post:
    """One history post. `retweet` is the reposted text ("" for an original post)."""

    id: str
    text: str
    time: str | None = None
    topics: list[str] = field(default_factory=list)
    retweet: str = ""
    retweet_topics: list[str] = field(default_factory=list)

    @property
    def retrieval_text(self) -> str:
        """What BM25 sees: the post text and the retweeted text concatenated, as the seed did."""
        return f"{self.text} {self.retweet}".strip() if self.retweet else self.text


@dataclass
class User:
    user_id: str
    name: str
    profile: dict[str, str]
    history: list[Post]


@dataclass
class Topic:
    topic_id: str
    topic: str
    news: str
    language: str | None = None
    split: str | None = None


@dataclass
class Response:
    topic_id: str
    user_id: str
    id: str | None
    text: str
    time: str | None = None


@dataclass
class Inputs:
    """Everything build-dataset reads, in the schema of dataset.py, plus what the readers skipped."""

    topics: list[Topic]
    users: dict[str, User]
    responses: list[Response]
    skipped: Counter = field(default_factory=Counter)
    files: dict[str, str] = field(default_factory=dict)  # role -> path
    require_topics: bool = False  # the input format's default for --require-topics


class RowChecker:
    """Raise a one-line InputError for a bad field, or count the row as skipped under `--skip-bad-rows`."""

    def __init__(self, skip: bool, skipped: Counter):
        self.skip, self.skipped = skip, skipped

    def bad(self, path, line, field_name: str, message: str, reason: str) -> None:
        if not self.skip:
            raise InputError(message, path=path, line=line, field=field_name)
        self.skipped[reason] += 1


def _text(value: Any) -> str | None:
    """A field as stripped text (numbers become text), or None when missing or not a scalar."""
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    return str(value).strip()


def _topic_list(value: Any) -> list[str] | None:
    """Topics as a list of strings: a list, or a comma-separated string (the Weibo crawler's form)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [t.strip() for t in re.split(r"[,，]", value) if t.strip()]
    if isinstance(value, list) and all(isinstance(t, (str, int)) for t in value):
        return [str(t).strip() for t in value if str(t).strip()]
    return None
