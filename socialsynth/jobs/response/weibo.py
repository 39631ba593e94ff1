"""Importers for the seed's Weibo crawl (SocialAlign's weibo-search + weibo-crawler output), converted to the
build-dataset schema (see dataset.py).

Layout (`--format weibo --input TOPICS [--user-history USERS]`):

    TOPICS/<topic>/news.txt        the news text; the folder name is the topic id and the hashtag
    TOPICS/<topic>/<any>.csv       the search results: one real post a row, columns
                                   user_id, 用户昵称 (name), 微博正文 (text), user_authentication (level),
                                   ip (location), 话题 (the post's topics), id
    USERS/<user_id>/<user_id>.json or USERS/<user_id>.json
                                   {"user": {"screen_name", "description", "gender", ...},
                                    "weibo": [{"id", "text", "topics" ("a,b"), "full_created_at" | "created_at" |
                                               "post_time", "attitudes_count", "comments_count", "reposts_count",
                                               "retweet": {"text", "topics", ...}?}, ...]}

USERS defaults to TOPICS/user_history. Texts get the seed's Weibo clean-up (video/live-stream suffixes, "网页链接",
"//" repost separators, "#热门视频#", redundant whitespace); the topic "热门视频" is removed from topic lists.
A search row whose user has no history file is counted ("no history file"), as the seed skipped it. The seed
also held topics in segment folders (TOPICS/<segment>/<topic>); give each segment as its own --input.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import read_records
from socialsynth.jobs.response.inputs import Inputs, Post, Response, RowChecker, Topic, User, _text, _topic_list

CSV_COLUMNS = {
    "user_id": "user_id",
    "name": "用户昵称",
    "text": "微博正文",
    "level": "user_authentication",
    "location": "ip",
    "topics": "话题",
    "id": "id",
}
# (pattern, replacement) applied in order, then whitespace is collapsed: the seed's clean_text rules
_NOISE = [
    (re.compile(r"\n\S+的微博视频"), ""),
    (re.compile(r"\n\S+的微博直播"), ""),
    (re.compile(r"\.\.\.\n全文"), ""),
    (re.compile(r"#[^#]+的微博直播"), "#"),
    (re.compile(r"#[^#]+的微博视频"), "#"),
]
_LITERAL_NOISE = ("网页链接", "微博正文", "//", "#热门视频#")
_NOISE_TOPICS = {"热门视频"}
_PLAIN_ID = re.compile(r"(?!\.+$)[^/\\\x00]+")  # no separator, not "." or ".."


def clean_weibo_text(text: str) -> str:
    """The seed's clean-up of a Weibo post: crawler noise out, whitespace collapsed."""
    for pattern, repl in _NOISE:
        text = pattern.sub(repl, text)
    for literal in _LITERAL_NOISE:
        text = text.replace(literal, "")
    return re.sub(r"\s+", " ", text).strip()


def _topics(value) -> list[str]:
    return [t for t in (_topic_list(value) or []) if t not in _NOISE_TOPICS]


def _none_if_missing(value) -> str | None:
    text = _text(value)
    return None if not text or text.lower() in ("none", "nan") else text


def history_file(users_dir: Path, user_id: str) -> Path | None:
    for candidate in (users_dir / user_id / f"{user_id}.json", users_dir / f"{user_id}.json"):
        if candidate.is_file():
            return candidate
    return None


def load_history_file(path: Path, user_id: str) -> tuple[dict, list[Post]]:
    """(the crawler's user object, the cleaned-up posts) of one history file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not a valid JSON history file ({e})", path=path) from e
    if not isinstance(data, dict) or not isinstance(data.get("weibo", []), list):
        raise InputError("expected an object with 'user' and a 'weibo' list", path=path, field="weibo")
    posts = []
    for i, w in enumerate(data.get("weibo", [])):
        if not isinstance(w, dict):
            raise InputError(f"weibo[{i}] is not an object", path=path, field="weibo")
        rt = w.get("retweet") if isinstance(w.get("retweet"), dict) else {}
        when = w.get("full_created_at") or w.get("created_at") or w.get("post_time")
        posts.append(
            Post(
                id=_text(w.get("id")) or f"{user_id}-{i}",
                text=clean_weibo_text(_text(w.get("text")) or ""),
                time=_text(when) or None,
                topics=_topics(w.get("topics")),
                retweet=clean_weibo_text(_text(rt.get("text")) or "") if rt else "",
                retweet_topics=_topics(rt.get("topics")) if rt else [],
            )
        )
    user = data.get("user") if isinstance(data.get("user"), dict) else {}
    return user, posts


def topic_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise InputError("not a folder of topic folders", path=root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "news.txt").is_file())
    if not folders:
        raise InputError("no topic folders (subfolders with news.txt) found", path=root)
    return folders


def load_weibo(root: Path, users_dir: Path | None = None, skip_bad_rows: bool = False) -> Inputs:
    """Read the seed's topic folders and user history files into the build-dataset records."""
    root = Path(root)
    users_dir = Path(users_dir) if users_dir is not None else root / "user_history"
    if not users_dir.is_dir():
        raise InputError("user history folder not found (give --user-history)", path=users_dir)
    skipped: Counter = Counter()
    checker = RowChecker(skip_bad_rows, skipped)
    topics, responses, users = [], [], {}
    search_info: dict[str, dict] = {}  # user_id -> name/level/location from the search rows
    for folder in topic_folders(root):
        csvs = sorted(folder.glob("*.csv"))
        if not csvs:
            raise InputError("topic folder has no search CSV", path=folder)
        try:
            news = (folder / "news.txt").read_text(encoding="utf-8").replace("\\n", "\n").strip()
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text (byte {e.start + 1})", path=folder / "news.txt") from None
        if not news:
            raise InputError("empty news.txt", path=folder / "news.txt")
        topics.append(Topic(folder.name, folder.name, news))
        data = read_records(
            csvs[0],
            required=(CSV_COLUMNS["user_id"], CSV_COLUMNS["text"]),
            on_bad_row="skip" if skip_bad_rows else "error",
        )
        skipped.update({f"search csv: {k}": v for k, v in data.skipped.items()})
        for row, line in zip(data.records, data.line_numbers, strict=False):
            uid, text = _text(row.get(CSV_COLUMNS["user_id"])), _text(row.get(CSV_COLUMNS["text"]))
            if not uid:
                checker.bad(csvs[0], line + 1, CSV_COLUMNS["user_id"], "empty user id", "search csv: empty user_id")
                continue
            if not _PLAIN_ID.fullmatch(uid):  # it names a history file: never a path out of the history folder
                checker.bad(csvs[0], line + 1, CSV_COLUMNS["user_id"], f"not a plain id: {uid!r:.40}",
                            "search csv: user_id not a plain id")
                continue
            if text is None:
                checker.bad(csvs[0], line + 1, CSV_COLUMNS["text"], "not text", "search csv: bad text")
                continue
            info = search_info.setdefault(uid, {})
            for key in ("name", "level", "location"):
                value = _none_if_missing(row.get(CSV_COLUMNS[key]))
                if value and key not in info:
                    info[key] = value
            responses.append(
                Response(folder.name, uid, _text(row.get(CSV_COLUMNS["id"])) or None, clean_weibo_text(text))
            )
    for uid, info in search_info.items():
        path = history_file(users_dir, uid)
        if path is None:
            skipped["no history file"] += sum(r.user_id == uid for r in responses)
            responses = [r for r in responses if r.user_id != uid]
            continue
        crawled, posts = load_history_file(path, uid)
        profile = {
            "description": _none_if_missing(crawled.get("description")),
            "gender": _none_if_missing(crawled.get("gender")),
            "location": info.get("location") or _none_if_missing(crawled.get("ip_location")),
            "level": info.get("level"),
        }
        name = info.get("name") or _text(crawled.get("screen_name")) or uid
        users[uid] = User(uid, name, {k: v for k, v in profile.items() if v}, posts)
    return Inputs(
        topics=topics,
        users=users,
        responses=responses,
        skipped=skipped,
        files={"topics": str(root), "users": str(users_dir)},
        require_topics=True,
    )
