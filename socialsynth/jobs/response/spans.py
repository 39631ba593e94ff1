"""Token masks from character spans: which prompt tokens PAC-LoRA's A-router (news) and B-router (user) see.

An Alpaca record carries character spans into ``prompt_text(record)`` (records.py). The model sees that text inside
its chat template, so: render the chat with ``tokenizer.apply_chat_template(chat_for(record), tokenize=False,
add_generation_prompt=True)``, find ``prompt_text(record)`` in the rendered string (it appears verbatim; a template
that rewrites it is an error), shift the spans by its offset, tokenize with offsets, and mark every token that
overlaps a span. No marker strings, so it works in any language and with any template.

Length limit (``--max-length``): the answer is always kept whole. When prompt + answer is too long, tokens are cut
from the user span first, from the tail of its longest runs (water-filling: the longest run is shortened to the
length of the next longest, and so on). The history is by far the longest part of the user span (the posts, or
each post when every post has its own span), so it is what gets shortened, while the short name/profile/persona
runs survive. Only when the user span is gone is the news span cut the same way; if the template and the answer
alone exceed the limit the record is refused (``encode_example`` returns None and the caller counts the skip).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from socialsynth.core.errors import InputError
from socialsynth.jobs.response.records import SPAN_NEWS, SPAN_USER, chat_for, prompt_text


@dataclass
class EncodedPrompt:
    """Prompt token ids (chat template applied, generation prompt opened) and the two span masks."""

    ids: list[int]
    news: list[bool]
    user: list[bool]
    chars: list[tuple[int, int]] | None = None  # each token's characters in prompt_text(record) (encode_prompt)

    def __len__(self) -> int:
        return len(self.ids)


def render_chat(tokenizer, chat: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """The chat as the model sees it; a tokenizer without a chat template gets plain "Role: text" turns."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in chat)
    return text + "\n\nAssistant:" if add_generation_prompt else text


def check_spans(record: Mapping, path=None, line: int | None = None) -> dict[str, list[tuple[int, int]]]:
    """The record's spans as {"news": [(s, e)], "user": [(s, e)]}, validated against prompt_text(record)."""
    spans = record.get("spans")
    length = len(prompt_text(record))
    if not isinstance(spans, Mapping):
        raise InputError(
            "missing or not an object {news: [[start, end]], user: [...]}", path=path, line=line, field="spans"
        )
    out = {}
    for kind in (SPAN_NEWS, SPAN_USER):
        pairs = spans.get(kind, [])
        if not isinstance(pairs, list):
            raise InputError("must be a list of [start, end] pairs", path=path, line=line, field=f"spans.{kind}")
        checked = []
        for pair in pairs:
            ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, int) for v in pair)
            if not ok or not 0 <= pair[0] <= pair[1] <= length:
                raise InputError(
                    f"bad span {pair!r} (need 0 <= start <= end <= {length}, the prompt's length)",
                    path=path,
                    line=line,
                    field=f"spans.{kind}",
                )
            checked.append((pair[0], pair[1]))
        out[kind] = checked
    return out


def encode_prompt(
    tokenizer, record: Mapping, path=None, line: int | None = None, need_spans: bool = True
) -> EncodedPrompt:
    """Token ids of the record's chat (generation prompt opened) with its news and user token masks.

    `need_spans=False` (plain LoRA) accepts records without spans; their masks are then all False."""
    spans = check_spans(record, path, line) if need_spans or "spans" in record else {SPAN_NEWS: [], SPAN_USER: []}
    rendered = render_chat(tokenizer, chat_for(record))
    prompt = prompt_text(record)
    found = rendered.rfind(prompt)
    offset = found if found >= 0 else None
    lo, hi = found, found + len(prompt)  # where the prompt's characters are in the rendered text
    if offset is None and prompt.strip():  # templates that trim the message (Llama 3): find the trimmed text
        found = rendered.rfind(prompt.strip())
        offset = found - (len(prompt) - len(prompt.lstrip())) if found >= 0 else None
        lo, hi = found, found + len(prompt.strip())
    if offset is None:
        raise InputError(
            "the chat template does not contain the prompt text verbatim, so the spans cannot be placed",
            path=path,
            line=line,
            field="instruction",
        )
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("PAC-LoRA spans need a fast tokenizer (offset mapping)", field="model")
    enc = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]

    def mask(pairs):
        shifted = [(max(s + offset, lo), min(e + offset, hi)) for s, e in pairs]
        shifted = [(s, e) for s, e in shifted if e > s]
        return [any(a < e and b > s for s, e in shifted) for a, b in offsets]

    chars = [(max(a, lo) - offset, min(b, hi) - offset) for a, b in offsets]
    return EncodedPrompt(ids, mask(spans[SPAN_NEWS]), mask(spans[SPAN_USER]), chars)


def answer_ids(tokenizer, record: Mapping) -> list[int]:
    """The answer's tokens as the template closes the assistant turn: the response and the end-of-turn token.

    Rendered from the chat with the answer appended, minus the rendering with only the generation prompt; trailing
    whitespace after the end-of-turn marker is dropped. Templates that do not extend the prompt that way (some
    rewrite earlier turns) fall back to the response followed by the EOS token.
    """
    chat = chat_for(record)
    head = render_chat(tokenizer, chat)
    full = render_chat(tokenizer, chat + [{"role": "assistant", "content": record["output"]}], False)
    if tokenizer.chat_template and full.startswith(head) and record["output"] in full[len(head) :]:
        return list(tokenizer(full[len(head) :].rstrip(), add_special_tokens=False)["input_ids"])
    ids = list(tokenizer(record["output"], add_special_tokens=False)["input_ids"])
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def _runs(flags: Sequence[bool]) -> list[tuple[int, int]]:
    """Contiguous runs of True as (start, end) index pairs."""
    runs, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _cut_plan(runs: list[tuple[int, int]], excess: int) -> set[int]:
    """Token positions to drop from the tails of the longest runs so that at least `excess` go (or all of them)."""
    lengths = [e - s for s, e in runs]
    if sum(lengths) <= excess:
        cap = 0
    else:  # the largest cap L with sum(max(0, len - L)) >= excess
        cap = max(lengths)
        while cap > 0 and sum(max(0, n - cap) for n in lengths) < excess:
            cap -= 1
    drop = set()
    for (s, e), n in zip(runs, lengths, strict=False):
        if n > cap:
            drop.update(range(s + cap, e))
    return drop


def _kept(prompt: EncodedPrompt, budget: int) -> list[int] | None:
    """Positions of the tokens that stay when a prompt is cut to `budget` tokens, user span first, then news span;
    None if that is not enough."""
    keep = list(range(len(prompt)))
    for flags in (prompt.user, prompt.news):
        excess = len(keep) - budget
        if excess <= 0:
            break
        drop = _cut_plan(_runs([flags[i] for i in keep]), excess)
        keep = [k for j, k in enumerate(keep) if j not in drop]
    return keep if len(keep) <= budget else None


def fit_length(prompt: EncodedPrompt, budget: int) -> EncodedPrompt | None:
    """Shorten a prompt to at most `budget` tokens, user span first, then news span; None if that is not enough."""
    if len(prompt) <= budget:
        return prompt
    keep = _kept(prompt, budget)
    if keep is None:
        return None
    return EncodedPrompt([prompt.ids[i] for i in keep], [prompt.news[i] for i in keep], [prompt.user[i] for i in keep])


def _remove_chars(text: str, ranges: list[tuple[int, int]], spans: dict) -> tuple[str, dict]:
    """`text` without the character ranges, and the spans moved to match (emptied ones dropped)."""
    merged: list[list[int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    def moved(pos: int) -> int:
        return pos - sum(min(end, pos) - start for start, end in merged if start < pos)

    pieces, at = [], 0
    for start, end in merged:
        pieces.append(text[at:start])
        at = end
    pieces.append(text[at:])
    new_spans = {kind: [[moved(s), moved(e)] for s, e in pairs if moved(e) > moved(s)] for kind, pairs in spans.items()}
    return "".join(pieces), new_spans


def shorten_record(tokenizer, record: Mapping, budget: int, measure=None) -> dict | None:
    """The record with the characters of the tokens `fit_length` would cut removed from its prompt (user span
    first, then news), for an engine that takes text; `measure(record)` counts its prompt tokens as that engine
    does (default: as encode_prompt does). None when it cannot be made to fit (or has no spans to cut)."""
    if not isinstance(record.get("spans"), Mapping):
        return None
    measure = measure or (lambda r: len(encode_prompt(tokenizer, r)))
    full = encode_prompt(tokenizer, record)
    target = budget - max(0, measure(record) - len(full))  # the engine's own extra tokens (a BOS, ...)
    for _ in range(4):
        keep = _kept(full, target) if target > 0 else None
        if keep is None:
            return None
        kept = set(keep)
        cut = [full.chars[i] for i in range(len(full)) if i not in kept]
        text, spans = _remove_chars(prompt_text(record), cut, check_spans(record))
        short = {**record, "instruction": text, "input": "", "spans": spans}
        over = measure(short) - budget
        if over <= 0:
            return short
        target -= over  # tokens merge differently across a cut: ask for a little more
    return None


def encode_example(
    tokenizer, record: Mapping, max_length: int, path=None, line: int | None = None, need_spans: bool = True
) -> dict | None:
    """A training example: prompt + answer ids, labels (-100 on the prompt), span masks (False on the answer).

    None when even the template and the answer alone do not fit in `max_length` (the caller counts the skip)."""
    answer = answer_ids(tokenizer, record)
    full = encode_prompt(tokenizer, record, path, line, need_spans)
    prompt = fit_length(full, max_length - len(answer))
    if prompt is None or not answer:
        return None
    n = len(prompt)
    return {
        "input_ids": prompt.ids + answer,
        "labels": [-100] * n + answer,
        "news_mask": prompt.news + [False] * len(answer),
        "user_mask": prompt.user + [False] * len(answer),
        "truncated": len(full) - n,  # prompt tokens cut to fit max_length
    }
