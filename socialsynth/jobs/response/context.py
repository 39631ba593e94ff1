"""Prompts against the model's context: how many tokens a chat takes and how many the model reads at most.

A 2 MB post in a user's history must not reach the model whole (a prompt far past the context allocates
memory for every position, or fails after minutes of work). The stages that prompt a model (extract-personas,
infer, train) measure each prompt with the model's own tokenizer and cut it (or, when even the fixed part of the
prompt is too long, skip it, counted) to fit ``context - max_new_tokens``. Engines whose tokenizer is not in this
process (a server) are left to their own limits: their refusals come back as failed requests, also counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from socialsynth.core.errors import InputError

# config attributes that hold the number of positions a model reads (Llama/Qwen/Mistral, GPT-2, others)
_CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_NO_LIMIT = 10**8  # tokenizers without a limit report ~1e30


def model_context(model=None, tokenizer=None) -> int | None:
    """The number of positions `model` reads (from its config), else the tokenizer's limit; None when unknown."""
    config = getattr(model, "config", None)
    for attribute in _CONTEXT_ATTRIBUTES:
        value = getattr(config, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < _NO_LIMIT:
        return value
    return None


def backend_context(backend) -> int | None:
    """The context of a backend's model when it runs in this process (hf, vllm); None for a server."""
    engine = getattr(getattr(getattr(backend, "llm", None), "llm_engine", None), "model_config", None)
    value = getattr(engine, "max_model_len", None)  # vllm
    if isinstance(value, int) and value > 0:
        return value
    return model_context(getattr(backend, "model", None), getattr(backend, "tokenizer", None))


def chat_token_counter(backend) -> Callable[[Sequence[dict]], int] | None:
    """A function giving the prompt tokens of a chat as `backend` renders it; None when it cannot be known here."""
    encode = getattr(backend, "encode_chat", None)
    if callable(encode):
        return lambda chat: len(encode(list(chat)))
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None

    def count(chat: Sequence[dict]) -> int:
        ids = tokenizer.apply_chat_template(list(chat), add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    return count


def prompt_budget(context: int | None, max_new_tokens: int, flag: str = "--max-new-tokens") -> int | None:
    """Prompt tokens that leave room for the answer in `context` (None: no known limit)."""
    if context is None:
        return None
    budget = context - max_new_tokens
    if budget < 1:
        raise InputError(f"{max_new_tokens} new tokens leave no room for a prompt in the model's context of "
                         f"{context} tokens", field=flag)
    return budget


def cap_texts(texts: Sequence[str], fits: Callable[[list[str]], bool]) -> list[str] | None:
    """The texts with the longest ones cut to a common length (in characters), as long as `fits` allows, or None
    when even empty texts do not fit. Short texts stay whole; a cut one ends with an ellipsis."""
    texts = list(texts)
    if fits(texts):
        return texts
    if not fits(["" for _ in texts]):
        return None
    low, high = 0, max(len(t) for t in texts)  # fits(cap low); not fits(cap high)
    while high - low > 1:
        mid = (low + high) // 2
        if fits(_capped(texts, mid)):
            low = mid
        else:
            high = mid
    return _capped(texts, low)


def _capped(texts: Sequence[str], cap: int) -> list[str]:
    return [t if len(t) <= cap else (t[: max(cap - 1, 0)].rstrip() + "…" if cap else "") for t in texts]
