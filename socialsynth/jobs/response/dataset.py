"""Topics + users (with history) + real responses -> cases.jsonl, with cleaned, BM25-retrieved history.

build-dataset, after seed 004 (SocialAlign, `construct_dataset/clean_user_history.py`, `organize_dataset.py`):
one case per (topic, user) whose real response is known; the user's history posts are cleaned with the seed's
rules and the `--top-k` posts most related to the news text (BM25, k1 1.5, b 0.75) become the case's history,
best first.

Input (`--input DIR` holding topics.*, users.*, responses.*, or the three files given explicitly with `--topics
--users --responses`; each may be JSONL, CSV/TSV or Parquet, read through socialsynth.core.io.read_records):

    topics.jsonl     {"topic_id", "topic" (hashtag or title), "news", "language"? ("en"|"zh", detected when
                      missing), "split"? ("train"|"test")}
    users.jsonl      {"user_id", "name", "description"?, "gender"?, "location"?, "level"?,
                      "history": [{"id"?, "text", "time"?, "topics"?: [str, ...], "retweet"?: {"text", ...}}, ...]}
                      (in CSV/Parquet, "history" is a JSON string holding that list)
    responses.jsonl  {"topic_id", "user_id", "id"?, "text", "time"?}   the user's real post about the topic

`--format weibo` reads the seed's Weibo crawl instead (topic folders with news.txt and a search CSV, per-user
history JSON files; see socialsynth/jobs/response/weibo.py) and converts it to the same records.

A malformed row stops the run with one line `file:line: field 'x': problem` (exit 2), or with `--skip-bad-rows`
is counted and skipped. Cleaning (the seed's rules, each configurable; the summary and cases.meta.json count what
each rule dropped):
  * history posts dropped when empty, hashtag-only (`#a# #b#` or `#a #b`), with a topic of fewer than
    `--min-topic-chars` characters (seed: <= 3 dropped, so 4), matching `--exclude-topics FILE` / `--exclude-texts
    FILE` (one entry a line, substring match on the post or its retweet), or naming the user (their name in the
    text); with `--require-topics` (the seed's rule; on by default for `--format weibo`) posts without topics too;
  * the target response is never in its own case's history (same id, or the same text); a user's responses to
    held-out (test) topics are removed from all of their histories, so no test answer leaks into a prompt;
  * a case whose user keeps fewer than `--min-history` posts (default 10) is skipped, counted by reason.
Retweets are retrieved on post text + retweet text (seed) and shown in the history as the comment plus the
reposted text. Tokens: jieba for Chinese when it is installed, else lower-cased word tokens (Chinese split into
characters).

Split: `--test-topics a,b` or `--test-fraction F` (seeded by `--seed`) hold out whole topics; without either,
the topics file's `split` field decides, and with no split anywhere 20% of the topics (at least one) are held out.

Output in `-o` (default output/responses): cases.jsonl (schema in records.py; each case also carries
`history_ids` and `history_scores`, the retrieved posts' ids and BM25 scores) and cases.meta.json (arguments,
input file hashes, versions, counts per reason). The stage is fast, so a rerun rebuilds both files and replaces
them atomically (readers never see half a file); nothing is appended or resumed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.io import SUPPORTED_EXTENSIONS, atomic_write_text, read_records, read_text_file
from socialsynth.core.provenance import versions
from socialsynth.core.run import JobRun
from socialsynth.jobs.response.config import BuildConfig
from socialsynth.jobs.response.inputs import Inputs, Post, Response, RowChecker, Topic, User, _text, _topic_list
from socialsynth.jobs.response.weibo import load_weibo

log = logging.getLogger(__name__)

CASES_NAME = "cases.jsonl"
CASES_META = "cases.meta.json"
PROFILE_KEYS = ("description", "gender", "location", "level")
LANGUAGES = ("en", "zh")
SPLITS = ("train", "test")


# -- reading the schema ----------------------------------------------------------------------------------------


def parse_post(raw: Any, index: int) -> Post | str:
    """One history entry -> Post, or a message saying what is wrong with it."""
    if not isinstance(raw, dict):
        return f"history[{index}] is not an object"
    text = _text(raw.get("text"))
    if text is None:
        return f"history[{index}].text is missing or not text"
    topics = _topic_list(raw.get("topics"))
    if topics is None:
        return f"history[{index}].topics must be a list of strings"
    retweet, retweet_topics = "", []
    rt = raw.get("retweet")
    if rt not in (None, "", {}):
        if isinstance(rt, str):
            retweet = rt.strip()
        elif isinstance(rt, dict):
            retweet = _text(rt.get("text")) or ""
            retweet_topics = _topic_list(rt.get("topics")) or []
        else:
            return f"history[{index}].retweet must be an object with text"
    post_id = _text(raw.get("id"))
    when = _text(raw.get("time") or raw.get("post_time") or raw.get("created_at"))
    return Post(post_id or f"h{index}", text, when or None, topics, retweet, retweet_topics)


def find_input_file(folder: Path, stem: str) -> Path:
    """`<folder>/<stem>.<ext>` for the first supported extension that exists."""
    for ext in SUPPORTED_EXTENSIONS:
        if ext in (".pkl", ".pickle"):
            continue
        candidate = folder / f"{stem}{ext}"
        if candidate.exists():
            return candidate
    raise InputError(f"no {stem}.jsonl (or .csv/.tsv/.parquet) in the input folder", path=folder)


def read_topics(path: Path, checker: RowChecker) -> list[Topic]:
    data = read_records(path, required=("topic_id",), on_bad_row="skip" if checker.skip else "error")
    checker.skipped.update({f"topics: {k}": v for k, v in data.skipped.items()})
    topics, seen = [], set()
    for rec, line in zip(data.records, data.line_numbers, strict=False):
        tid, news = _text(rec.get("topic_id")), _text(rec.get("news"))
        topic = _text(rec.get("topic")) or tid
        if not tid:
            checker.bad(path, line, "topic_id", "empty topic id", "topics: empty topic_id")
            continue
        if not news:
            checker.bad(path, line, "news", "missing or empty news text", "topics: empty news")
            continue
        if tid in seen:
            checker.bad(path, line, "topic_id", f"duplicate topic id {tid!r}", "topics: duplicate topic_id")
            continue
        language = _text(rec.get("language")) or None
        if language is not None and language not in LANGUAGES:
            checker.bad(path, line, "language", f"expected one of {LANGUAGES}, got {language!r}", "topics: language")
            continue
        split = _text(rec.get("split")) or None
        if split is not None and split not in SPLITS:
            checker.bad(path, line, "split", f"expected train or test, got {split!r}", "topics: bad split")
            continue
        seen.add(tid)
        topics.append(Topic(tid, topic.lstrip("#").rstrip("#").strip() or tid, news, language, split))
    return topics


def read_users(path: Path, checker: RowChecker) -> dict[str, User]:
    data = read_records(path, required=("user_id",), on_bad_row="skip" if checker.skip else "error")
    checker.skipped.update({f"users: {k}": v for k, v in data.skipped.items()})
    users: dict[str, User] = {}
    for rec, line in zip(data.records, data.line_numbers, strict=False):
        uid = _text(rec.get("user_id"))
        if not uid:
            checker.bad(path, line, "user_id", "empty user id", "users: empty user_id")
            continue
        if uid in users:
            checker.bad(path, line, "user_id", f"duplicate user id {uid!r}", "users: duplicate user_id")
            continue
        history = rec.get("history", [])
        if isinstance(history, str) and history.strip()[:1] in ("", "["):  # CSV/Parquet: a JSON string
            try:
                history = json.loads(history) if history.strip() else []
            except json.JSONDecodeError as e:
                checker.bad(path, line, "history", f"not a JSON list ({e.msg})", "users: bad history")
                continue
        if not isinstance(history, list):
            checker.bad(path, line, "history", "must be a list of posts", "users: bad history")
            continue
        posts, problem = [], None
        for i, raw in enumerate(history):
            post = parse_post(raw, i)
            if isinstance(post, str):
                problem = post
                break
            posts.append(post)
        if problem:
            checker.bad(path, line, "history", problem, "users: bad history")
            continue
        profile = {k: v for k in PROFILE_KEYS if (v := _text(rec.get(k)))}
        users[uid] = User(uid, _text(rec.get("name")) or uid, profile, posts)
    return users


def read_responses(path: Path, checker: RowChecker) -> list[Response]:
    data = read_records(path, required=("topic_id", "user_id"), on_bad_row="skip" if checker.skip else "error")
    checker.skipped.update({f"responses: {k}": v for k, v in data.skipped.items()})
    out = []
    for rec, line in zip(data.records, data.line_numbers, strict=False):
        tid, uid, text = _text(rec.get("topic_id")), _text(rec.get("user_id")), _text(rec.get("text"))
        if not tid or not uid:
            name = "topic_id" if not tid else "user_id"
            checker.bad(path, line, name, "empty id", f"responses: empty {name}")
            continue
        if text is None:
            checker.bad(path, line, "text", "missing or not text", "responses: missing text")
            continue
        out.append(Response(tid, uid, _text(rec.get("id")) or None, text, _text(rec.get("time")) or None))
    return out


def load_schema_inputs(
    input_dir: Path | None, topics: Path | None, users: Path | None, responses: Path | None, skip_bad_rows: bool
) -> Inputs:
    """Read the three files of the documented schema (from a folder, or given one by one)."""
    paths = {"topics": topics, "users": users, "responses": responses}
    for role in paths:
        if paths[role] is None:
            if input_dir is None:
                raise InputError(f"give --input DIR or --{role} FILE")
            if not Path(input_dir).is_dir():
                raise InputError("not a folder (give --topics --users --responses for single files)", path=input_dir)
            paths[role] = find_input_file(Path(input_dir), role)
    skipped: Counter = Counter()
    checker = RowChecker(skip_bad_rows, skipped)
    return Inputs(
        topics=read_topics(Path(paths["topics"]), checker),
        users=read_users(Path(paths["users"]), checker),
        responses=read_responses(Path(paths["responses"]), checker),
        skipped=skipped,
        files={k: str(v) for k, v in paths.items()},
    )


# -- language and tokens ---------------------------------------------------------------------------------------

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
# A short English stop list: on a user's few dozen posts, BM25's idf cannot tell these from content words.
EN_STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that these "
    "those i me my we our you your he she they them their his her what which who whom do does did have has had not no "
    "so than too very can will just about into over after before up down out off again then there here all any "
    "some such only own same s t don should now would could".split()
)


def detect_language(text: str) -> str:
    """ "zh" when CJK characters make up at least a third of the letters, else "en"."""
    cjk, latin = len(_CJK_CHAR.findall(text)), len(_LATIN.findall(text))
    return "zh" if cjk and cjk * 3 >= cjk + latin else "en"


def _jieba():
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokenizer_name(language: str) -> str:
    return "jieba" if language == "zh" and _jieba() is not None else "regex"


def tokenize(text: str, language: str) -> list[str]:
    """BM25 tokens: jieba words for Chinese when jieba is installed; otherwise lower-cased word tokens (CJK split
    into single characters), with English stop words removed."""
    text = text.lower()
    jieba = _jieba() if language == "zh" else None
    if jieba is not None:
        tokens = [t.strip() for t in jieba.lcut(text)]
        return [t for t in tokens if t and _WORD_TOKEN.search(t)]
    return [t for t in _WORD_TOKEN.findall(text) if t not in EN_STOPWORDS]


def bm25_rank(query: str, docs: Sequence[str], language: str, k1: float = 1.5, b: float = 0.75) -> list[float]:
    """BM25 (rank-bm25's BM25Okapi) score of every doc against the query; 0 for all when nothing is tokenised."""
    from rank_bm25 import BM25Okapi

    if not docs:
        return []
    corpus = [tokenize(d, language) for d in docs]
    query_tokens = tokenize(query, language)
    if not query_tokens or not any(corpus):
        return [0.0] * len(docs)
    return [float(s) for s in BM25Okapi(corpus, k1=k1, b=b).get_scores(query_tokens)]


def top_k(
    query: str, docs: Sequence[str], k: int, language: str, k1: float = 1.5, b: float = 0.75
) -> list[tuple[int, float]]:
    """The k docs (all of them when there are fewer) most related to the query, best first: [(index, score)].
    Ties keep the input order."""
    scores = bm25_rank(query, docs, language, k1, b)
    order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
    return [(i, scores[i]) for i in order[: max(k, 0)]]


# -- cleaning --------------------------------------------------------------------------------------------------

_WEIBO_TAG = re.compile(r"#[^#\n]+#")
_TWITTER_TAG = re.compile(r"#[^\s#]+(?=\s|$)")
_URL = re.compile(r"https?://\S+")


def is_hashtag_only(text: str) -> bool:
    """True when the post is nothing but hashtags (Weibo `#topic#` or Twitter `#tag`) and links/punctuation."""
    text = _URL.sub(" ", text)
    if not text.strip() or "#" not in text:
        return False
    return any(not re.search(r"[^\W_]", tags.sub(" ", text)) for tags in (_WEIBO_TAG, _TWITTER_TAG))


@dataclass
class CleaningRules:
    """The seed's history filters. Each `drop_reason` names the first rule a post breaks."""

    min_topic_chars: int = 4
    exclude_topics: tuple[str, ...] = ()
    exclude_texts: tuple[str, ...] = ()
    drop_naming_user: bool = True
    require_topics: bool = False

    def drop_reason(self, post: Post, user_name: str) -> str | None:
        if not post.text.strip():
            return "empty text"
        topics = post.topics + post.retweet_topics
        if self.exclude_topics and any(ex in t for ex in self.exclude_topics for t in topics):
            return "excluded topic"
        if self.exclude_texts and any(ex in post.text or ex in post.retweet for ex in self.exclude_texts):
            return "excluded text"
        if self.drop_naming_user and user_name and user_name in post.text:
            return "names the user"
        if any(len(t.lstrip("#").rstrip("#")) < self.min_topic_chars for t in post.topics):
            return f"topic shorter than {self.min_topic_chars} characters"
        if is_hashtag_only(post.text):
            return "hashtag only"
        if self.require_topics and not post.topics:
            return "no topics"
        return None


def clean_history(user: User, rules: CleaningRules, drops: Counter) -> list[Post]:
    """The user's posts that pass every rule; `drops` counts the others by reason."""
    kept = []
    for post in user.history:
        reason = rules.drop_reason(post, user.name)
        if reason:
            drops[reason] += 1
        else:
            kept.append(post)
    return kept


def read_list_file(path: Path | None) -> tuple[str, ...]:
    """An exclusion list: one entry a line, blank lines and `# comments` ignored."""
    if path is None:
        return ()
    lines = read_text_file(path, "the list").splitlines()
    return tuple(s for line in lines if (s := line.strip()) and not s.startswith("# "))


# -- history shown in prompts ----------------------------------------------------------------------------------

REPOST_FORMAT = {"en": 'Reposted "{retweet}" and commented: {text}', "zh": "转发了微博：{retweet}，并评论说：{text}"}


def history_item_text(post: Post, language: str) -> str:
    """A history post as shown in prompts: the text, or for a retweet the comment with the reposted text."""
    if not post.retweet:
        return post.text
    return REPOST_FORMAT[language].format(retweet=post.retweet, text=post.text)


# -- splits ----------------------------------------------------------------------------------------------------


def assign_splits(
    topics: Sequence[Topic], test_topics: Sequence[str] | None, test_fraction: float | None, seed: int
) -> tuple[dict[str, str], str]:
    """topic_id -> "train"|"test", and how it was decided."""
    ids = [t.topic_id for t in topics]
    if test_topics:
        unknown = sorted(set(test_topics) - set(ids))
        if unknown:
            raise InputError(f"unknown topic ids: {', '.join(unknown)}", field="--test-topics")
        held = set(test_topics)
        how = "--test-topics"
    elif test_fraction is not None or not any(t.split for t in topics):
        fraction = 0.2 if test_fraction is None else test_fraction
        if not 0 <= fraction < 1:
            raise InputError(f"must be in [0, 1), got {fraction}", field="--test-fraction")
        n = round(fraction * len(ids))
        if fraction > 0 and len(ids) > 1:
            n = min(max(n, 1), len(ids) - 1)
        held = set(random.Random(seed).sample(sorted(ids), n))
        how = (
            f"{'--test-fraction' if test_fraction is not None else 'default test fraction'} {fraction:g} (seed {seed})"
        )
    else:
        held = {t.topic_id for t in topics if t.split == "test"}
        how = "the topics file's split field (missing = train)"
    return {tid: "test" if tid in held else "train" for tid in ids}, how


# -- building cases --------------------------------------------------------------------------------------------


def load_inputs(cfg: BuildConfig) -> Inputs:
    if cfg.format == "weibo":
        if cfg.input is None:
            raise InputError("--format weibo needs --input TOPIC_FOLDER_ROOT")
        return load_weibo(Path(cfg.input), cfg.user_history, skip_bad_rows=cfg.skip_bad_rows)
    if cfg.format != "schema":
        raise InputError(f"unknown format {cfg.format!r} (schema or weibo)", field="--format")
    return load_schema_inputs(cfg.input, cfg.topics, cfg.users, cfg.responses, cfg.skip_bad_rows)


def cleaning_rules(cfg: BuildConfig, inputs: Inputs) -> CleaningRules:
    """The seed's history filters as configured (--require-topics unset: the input format's default)."""
    return CleaningRules(
        min_topic_chars=cfg.min_topic_chars,
        exclude_topics=read_list_file(cfg.exclude_topics),
        exclude_texts=read_list_file(cfg.exclude_texts),
        drop_naming_user=not cfg.keep_user_name_posts,
        require_topics=inputs.require_topics if cfg.require_topics is None else cfg.require_topics,
    )


def choose_responses(inputs: Inputs, skipped_cases: Counter) -> dict[tuple[str, str], Response]:
    """The responses to use, one per (topic, user); the others are counted in `skipped_cases` by reason."""
    topic_ids = {t.topic_id for t in inputs.topics}
    chosen: dict[tuple[str, str], Response] = {}
    for r in inputs.responses:
        if r.topic_id not in topic_ids:
            skipped_cases["response to an unknown topic"] += 1
        elif r.user_id not in inputs.users:
            skipped_cases["user not in the users file"] += 1
        elif not r.text:
            skipped_cases["empty response"] += 1
        elif is_hashtag_only(r.text):
            skipped_cases["hashtag-only response"] += 1
        elif (r.topic_id, r.user_id) in chosen:
            skipped_cases["second response of a user to a topic (first kept)"] += 1
        else:
            chosen[(r.topic_id, r.user_id)] = r
    return chosen


def clean_histories(
    inputs: Inputs, chosen: dict[tuple[str, str], Response], splits: dict[str, str], rules: CleaningRules,
    post_drops: Counter,
) -> dict[str, list[Post]]:
    """user_id -> the history posts that pass the rules, without the user's answers to held-out topics."""
    test_answers: dict[str, list[Response]] = defaultdict(list)  # what no history may contain
    for (tid, uid), r in chosen.items():
        if splits[tid] == "test":
            test_answers[uid].append(r)
    cleaned: dict[str, list[Post]] = {}
    for uid in sorted({uid for _, uid in chosen}):
        kept = clean_history(inputs.users[uid], rules, post_drops)
        leaks = test_answers.get(uid, [])
        if leaks:
            before = len(kept)
            kept = [p for p in kept if not any(_same_post(p, r) for r in leaks)]
            if before > len(kept):
                post_drops["answer to a test topic"] += before - len(kept)
        cleaned[uid] = kept
    return cleaned


def case_record(topic: Topic, user: User, response: Response, history: Sequence[Post], ranked, split: str,
                language: str) -> dict:
    """One cases.jsonl line (records.py schema) from the retrieved history (`ranked`: [(index, score)])."""
    return {
        "id": f"{topic.topic_id}:{user.user_id}",
        "topic_id": topic.topic_id,
        "topic": topic.topic,
        "news": topic.news,
        "user_id": user.user_id,
        "user_name": user.name,
        "profile": dict(user.profile),
        "history": [history_item_text(history[i], language) for i, _ in ranked],
        "history_ids": [history[i].id for i, _ in ranked],
        "history_scores": [round(s, 4) for _, s in ranked],
        "response": response.text,
        "response_id": response.id,
        "split": split,
        "language": language,
    }


@dataclass
class CaseTally:
    """What building the cases counted: skipped cases and users by reason, history sizes."""

    skipped_cases: Counter = field(default_factory=Counter)
    skipped_users: dict[str, str] = field(default_factory=dict)
    users_with_case: set[str] = field(default_factory=set)
    history_sizes: list[int] = field(default_factory=list)


def make_cases(cfg: BuildConfig, inputs: Inputs, chosen: dict[tuple[str, str], Response],
               cleaned: dict[str, list[Post]], splits: dict[str, str], languages: dict[str, str],
               tally: CaseTally) -> list[dict]:
    """One case per chosen response whose user keeps at least --min-history posts; BM25 picks its history."""
    topics = {t.topic_id: t for t in inputs.topics}
    cases = []
    for (tid, uid), response in chosen.items():
        topic, user, language = topics[tid], inputs.users[uid], languages[tid]
        history = [p for p in cleaned[uid] if not _same_post(p, response)]
        if len(history) < cfg.min_history:
            reason = f"fewer than {cfg.min_history} history posts after cleaning"
            tally.skipped_cases[reason] += 1
            tally.skipped_users.setdefault(uid, reason)
            continue
        ranked = top_k(topic.news, [p.retrieval_text for p in history], cfg.top_k, language, cfg.k1, cfg.b)
        tally.history_sizes.append(len(history))
        tally.users_with_case.add(uid)
        cases.append(case_record(topic, user, response, history, ranked, splits[tid], language))
    return cases


def build_cases(cfg: BuildConfig, inputs: Inputs | None = None) -> tuple[list[dict], dict]:
    """Clean, split and retrieve: the case records and the counts that go into the meta file."""
    inputs = inputs or load_inputs(cfg)
    if not inputs.topics:
        raise InputError("no usable topics", path=inputs.files.get("topics"))
    rules = cleaning_rules(cfg, inputs)
    splits, split_how = assign_splits(inputs.topics, cfg.test_topics, cfg.test_fraction, cfg.seed)
    languages = {t.topic_id: t.language or detect_language(t.news) for t in inputs.topics}
    tally, post_drops = CaseTally(), Counter()
    chosen = choose_responses(inputs, tally.skipped_cases)
    cleaned = clean_histories(inputs, chosen, splits, rules, post_drops)
    cases = make_cases(cfg, inputs, chosen, cleaned, splits, languages, tally)
    if not cases:
        reasons = {**{f"rows: {k}": v for k, v in inputs.skipped.items()}, **tally.skipped_cases}
        why = "; ".join(f"{k}: {v}" for k, v in reasons.items()) or "no responses"
        raise InputError(f"no case could be built from {len(inputs.responses)} responses ({why})",
                         path=inputs.files.get("responses") or inputs.files.get("topics"))
    skipped_users = {u: r for u, r in tally.skipped_users.items() if u not in tally.users_with_case}
    stats = {
        "n_topics": len(inputs.topics),
        "n_users": len(inputs.users),
        "n_responses": len(inputs.responses),
        "n_cases": len(cases),
        "cases_by_split": dict(Counter(c["split"] for c in cases)),
        "cases_by_language": dict(Counter(c["language"] for c in cases)),
        "n_users_with_cases": len(tally.users_with_case),
        "skipped_rows": dict(inputs.skipped),
        "skipped_cases": dict(tally.skipped_cases),
        "skipped_users": {"count": len(skipped_users), "reasons": dict(Counter(skipped_users.values()))},
        "dropped_history_posts": dict(post_drops),
        "history_posts_after_cleaning": _describe(tally.history_sizes),
        "split": {"how": split_how, "test_topics": sorted(t for t, s in splits.items() if s == "test")},
        "tokenizer": {lang: tokenizer_name(lang) for lang in sorted(set(languages.values()))},
        "require_topics": rules.require_topics,
    }
    return cases, stats


def _same_post(post: Post, response: Response) -> bool:
    if response.id and post.id == response.id:
        return True
    return post.text.strip() == response.text.strip()


def _describe(values: Sequence[int]) -> dict:
    if not values:
        return {}
    return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 1)}


def _file_hash(path: str | Path) -> str | None:
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def write_cases(cases: Iterable[dict], path: Path) -> None:
    atomic_write_text(path, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases))


def run_build(cfg: BuildConfig, inputs: Inputs | None = None) -> dict:
    """Build cases.jsonl and cases.meta.json (the run record) in cfg.output_dir; return the summary."""
    t0 = time.perf_counter()
    out_dir = Path(cfg.output_dir)
    out, meta_file = out_dir / CASES_NAME, out_dir / CASES_META
    with JobRun("response.build-dataset", meta_file, cfg) as run:
        run.meta["versions"] = _versions()
        inputs = inputs or load_inputs(cfg)
        cases, stats = build_cases(cfg, inputs)
        write_cases(cases, out)
        seconds = round(time.perf_counter() - t0, 2)
        run.meta.update(
            inputs={role: {"path": p, "sha256": _file_hash(p)} for role, p in inputs.files.items()},
            counts=stats,
            output=str(out),
            rerun="rebuilt from the inputs and replaced atomically",
            n_written=len(cases),
            skipped={**stats["skipped_rows"], **stats["skipped_cases"]},
        )
        run.note_items(len(cases))
        run.mark_complete(True)
    return {"output": str(out), "meta": str(meta_file), **stats, "seconds": seconds}


def _versions() -> dict:
    out = versions()
    for name in ("rank_bm25", "jieba"):
        try:
            from importlib.metadata import version

            out[name] = version(name.replace("_", "-"))
        except Exception:  # not installed
            out[name] = None
    return out


def format_summary(s: dict) -> str:
    lines = [
        f"topics {s['n_topics']}, users {s['n_users']}, responses {s['n_responses']}",
        f"cases: {s['n_cases']} ({', '.join(f'{k} {v}' for k, v in sorted(s['cases_by_split'].items())) or 'none'}; "
        f"{', '.join(f'{k} {v}' for k, v in sorted(s['cases_by_language'].items()))}) "
        f"from {s['n_users_with_cases']} users",
        f"split: {s['split']['how']}; test topics: {', '.join(s['split']['test_topics']) or 'none'}",
    ]
    for title, key in (
        ("skipped input rows", "skipped_rows"),
        ("skipped cases", "skipped_cases"),
        ("dropped history posts", "dropped_history_posts"),
    ):
        if s.get(key):
            lines.append(f"{title}: " + ", ".join(f"{k}: {v}" for k, v in sorted(s[key].items())))
    if s["skipped_users"]["count"]:
        lines.append(f"users without any case: {s['skipped_users']['count']} ({s['skipped_users']['reasons']})")
    if s.get("history_posts_after_cleaning"):
        h = s["history_posts_after_cleaning"]
        lines.append(f"history posts per case after cleaning: min {h['min']}, mean {h['mean']}, max {h['max']}")
    lines.append("tokenizer: " + ", ".join(f"{k} {v}" for k, v in s["tokenizer"].items()))
    lines += [f"cases: {s['output']}", f"meta:  {s['meta']}", f"time:  {s['seconds']} s"]
    return "\n".join(lines)
