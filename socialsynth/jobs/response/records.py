"""The records that pass between the stages of predict_responses.py, and the one rule that turns an Alpaca
record into the prompt a model sees.

cases.jsonl (build-dataset), one line per (topic, user) whose real response is known:
    {"id": "<topic_id>:<user_id>", "topic_id", "topic" (hashtag or title), "news", "user_id", "user_name",
     "profile": {"description", "gender", "location", "level", ...} (optional keys), "history": [str, ...]
     (the top-k retrieved posts, best first), "response" (the real post), "split": "train"|"test",
     "language": "en"|"zh"}

personas.jsonl (extract-personas), one line per user: {"user_id", "persona": [str, ...], "raw", provenance}

alpaca/<variant>.jsonl (extract-personas), variant in VARIANTS, one line per case:
    {"id", "topic_id", "user_id", "split", "variant", "language", "system", "instruction", "input": "",
     "output" (the real response), "spans": {"news": [[start, end], ...], "user": [[start, end], ...]}}
    Span offsets are character offsets into prompt_text(record). The "news" spans cover the news text (and
    topic); the "user" spans cover the profile, history and persona. PAC-LoRA's A-router sees only news-span
    tokens and its B-router only user-span tokens.

predictions/<method>.jsonl (infer), one line per case: {"id", "topic_id", "user_id", "variant", "method",
    "prediction", "reference", "finish_reason", plus provenance: "model", "adapter", "params", "seed"}
"""

from __future__ import annotations

from collections.abc import Mapping

VARIANTS = ("full", "without_persona", "without_history")
# the linear layers an adapter wraps by default (Llama/Qwen2 names); PAC-LoRA and plain LoRA alike
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SPAN_NEWS = "news"
SPAN_USER = "user"


def prompt_text(record: Mapping) -> str:
    """The user turn of an Alpaca record: the instruction, then the input (when there is one)."""
    instruction, extra = record["instruction"], record.get("input") or ""
    return f"{instruction}\n\n{extra}" if extra else instruction


def chat_for(record: Mapping) -> list[dict[str, str]]:
    """The chat a model answers for an Alpaca record (system prompt first when the record has one)."""
    chat = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    return chat + [{"role": "user", "content": prompt_text(record)}]
