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


def is_id(value) -> bool:
    """An id a record may carry: non-empty text or a whole number (never a bool, list or object)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(str(value).strip())


def check_prompt_record(record: Mapping, path=None, line: int | None = None) -> None:
    """The fields of an Alpaca record that make its prompt have the right types (InputError naming the field)."""
    from socialsynth.core.errors import InputError

    if not is_id(record.get("id")):
        raise InputError(f"expected a non-empty id (text or number), got {record.get('id')!r:.60}", path=path,
                         line=line, field="id")
    if not isinstance(record.get("instruction"), str) or not record["instruction"].strip():
        raise InputError(f"expected non-empty text, got {record.get('instruction')!r:.60}", path=path, line=line,
                         field="instruction")
    for name in ("input", "system"):
        if record.get(name) is not None and not isinstance(record[name], str):
            raise InputError(f"expected text, got {record[name]!r:.60}", path=path, line=line, field=name)


class RepeatedIds:
    """Collects the ids met while reading a file and refuses repeats, naming them with their lines."""

    def __init__(self, path, what: str = "id"):
        self.path, self.what = path, what
        self.first: dict[str, int] = {}
        self.repeated: dict[str, int] = {}

    def seen(self, key, line: int) -> bool:
        """Whether `key` came before (then it is remembered as a repeat)."""
        key = str(key)
        if key in self.first:
            self.repeated.setdefault(key, line)
            return True
        self.first[key] = line
        return False

    def check(self, hint: str) -> None:
        """InputError listing the repeated ids (at most five) and where, if there are any."""
        from socialsynth.core.errors import InputError

        if not self.repeated:
            return
        items = list(self.repeated.items())
        named = ", ".join(f"{k!r} (lines {self.first[k]} and {n})" for k, n in items[:5])
        more = f" and {len(items) - 5} more" if len(items) > 5 else ""
        raise InputError(f"{len(items)} {self.what}(s) appear more than once: {named}{more}; {hint}", path=self.path,
                         field="id")
