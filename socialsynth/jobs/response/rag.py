"""A retrieval-augmented prompting baseline in the style of LaMP (Salemi et al., 2023): no training, no persona.

`infer --rag` answers each case of cases.jsonl from a short prompt that holds the user's past posts retrieved by
BM25 against the news (the ones build-dataset retrieved, best first: jieba words for Chinese, k1/b as given there;
the first --rag-k of them) and the news, through any backend, like --zero-shot. Unlike the seed's prompts
(alpaca/*.jsonl) it carries no profile, no persona and no style rules: the model sees only what retrieval found,
which is what LaMP's baseline measures. The prompt's news and post lines are marked as the usual "news" and "user"
spans, so a prompt too long for the model's context is cut in the same way (older retrieved posts first).
"""

from __future__ import annotations

from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import iter_jsonl
from socialsynth.jobs.response.records import RepeatedIds, is_id

RAG_VARIANT = "rag"
# Our own wording; {posts} is one "- post" line each.
TEMPLATES = {
    "en": ("Here are some posts this user wrote before:\n", "\n\nThe news: ",
           "\n\nWrite the post this user would publish about {topic}, in their own voice. Output only the post."),
    "zh": ("以下是这位用户以前发过的微博：\n", "\n\n新闻：",
           "\n\n请以这位用户的口吻，发一条关于{topic}的微博。只输出微博正文。"),
}


def rag_record(case: dict, k: int) -> dict:
    """An Alpaca-style record (records.py) whose prompt is the LaMP-style one, with its news and user spans."""
    language = case.get("language") if case.get("language") in TEMPLATES else "en"
    head, middle, tail = TEMPLATES[language]
    posts = [" ".join(str(p).split()) for p in case.get("history") or [] if str(p).strip()][:k]
    lines = "\n".join(f"- {p}" for p in posts)
    news = str(case["news"]).strip()
    topic = str(case.get("topic") or "").strip() or ("this news" if language == "en" else "这则新闻")
    text = head + lines + middle + news + tail.format(topic=topic)
    user_start, news_start = len(head), len(head) + len(lines) + len(middle)
    spans = {"news": [[news_start, news_start + len(news)]], "user": [[user_start, user_start + len(lines)]] if lines
             else []}
    return {"id": case["id"], "topic_id": case.get("topic_id"), "user_id": case.get("user_id"),
            "split": case.get("split"), "variant": RAG_VARIANT, "language": language, "system": "",
            "instruction": text, "input": "", "output": case.get("response"), "spans": spans,
            "rag_posts": len(posts)}


def read_rag_cases(path: Path, split: str, k: int) -> list[tuple[int, dict]]:
    """(line, LaMP-style record) for the cases of `split` in cases.jsonl, checked (InputError naming the line and
    field); a repeated id is refused."""
    if not path.exists():
        raise InputError("file not found (run build-dataset first, or pass --cases)", path=path)
    rows, ids = [], RepeatedIds(path, "case id")
    for line, case in iter_jsonl(path, required=("id", "news", "history", "split")):
        if case.get("split") != split:
            continue
        if not is_id(case["id"]):
            raise InputError(f"expected a non-empty id, got {case['id']!r:.60}", path=path, line=line, field="id")
        if not isinstance(case["news"], str) or not case["news"].strip():
            raise InputError("expected the news text", path=path, line=line, field="news")
        if not isinstance(case["history"], list) or not all(isinstance(p, str) for p in case["history"]):
            raise InputError("expected a list of posts (text)", path=path, line=line, field="history")
        if not ids.seen(case["id"], line):
            rows.append((line, rag_record(case, k)))
    ids.check("one prediction per id; rebuild cases.jsonl with build-dataset")
    return rows
