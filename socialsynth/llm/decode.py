"""Batched decoding for transformers causal LMs, written for throughput on small models.

Why not `model.generate`: a synthetic-data job sends thousands of prompts that share a long head (system
prompt, rubric, few-shot examples) and whose answers differ a lot in length. This loop
  * computes the shared head once and reuses its key/value cache for every batch (prefix caching),
  * drops rows from the batch as soon as they finish instead of decoding padding until the longest is done,
  * samples each row from its own seeded generator, so an answer does not depend on its batch neighbours.
Rows are left-padded after the shared head; positions come from the attention mask, so padding is invisible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers import DynamicCache

from .base import GenerationParams


@dataclass
class PrefixKV:
    """Key/value cache of a prompt head shared by many requests (batch size 1)."""

    ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    def __len__(self) -> int:
        return len(self.ids)


@torch.inference_mode()
def compute_prefix(model, ids: Sequence[int]) -> PrefixKV:
    device = model.device
    input_ids = torch.tensor([list(ids)], device=device)
    cache = DynamicCache(config=model.config)
    model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    return PrefixKV(tuple(ids), [(layer.keys, layer.values) for layer in cache.layers])


def _expanded_cache(model, prefix: PrefixKV | None, rows: int) -> DynamicCache:
    if prefix is None or len(prefix) == 0:
        return DynamicCache(config=model.config)
    data = [(k.expand(rows, -1, -1, -1).contiguous(), v.expand(rows, -1, -1, -1).contiguous()) for k, v in prefix.layers]
    return DynamicCache(data, config=model.config)


def _left_pad(suffixes: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in suffixes)
    ids = torch.full((len(suffixes), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(suffixes), width), dtype=torch.long)
    for i, s in enumerate(suffixes):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def prefill(model, suffixes: Sequence[Sequence[int]], prefix: PrefixKV | None, pad_id: int):
    """Run the prompts through the model; return (last-position logits, cache, attention mask, next positions)."""
    device = model.device
    ids, suffix_mask = _left_pad(suffixes, pad_id, device)
    rows = ids.shape[0]
    p = len(prefix) if prefix is not None else 0
    mask = torch.cat([torch.ones((rows, p), dtype=torch.long, device=device), suffix_mask], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
    cache = _expanded_cache(model, prefix, rows)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1
    )
    next_pos = positions[:, -1:] + 1
    return out.logits[:, -1, :].float(), cache, mask, next_pos


def _filter_logits(logits: torch.Tensor, params: GenerationParams, history: torch.Tensor | None) -> torch.Tensor:
    if history is not None and history.numel() and params.repetition_penalty != 1.0:
        seen = logits.gather(1, history)
        seen = torch.where(seen > 0, seen / params.repetition_penalty, seen * params.repetition_penalty)
        logits = logits.scatter(1, history, seen)
    if params.temperature <= 0:
        return logits
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < params.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > params.top_p  # keep the token that crosses top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    return logits


def _choose(logits: torch.Tensor, params: GenerationParams, generators: list[torch.Generator]) -> torch.Tensor:
    if params.temperature <= 0:
        return logits.argmax(-1)
    probs = logits.softmax(-1).cpu()
    return torch.stack([torch.multinomial(probs[i], 1, generator=g)[0] for i, g in enumerate(generators)]).to(logits.device)


@torch.inference_mode()
def decode(
    model,
    suffixes: Sequence[Sequence[int]],
    prefix: PrefixKV | None,
    params: GenerationParams,
    seeds: Sequence[int],
    eos_ids: Sequence[int],
    pad_id: int,
    prune_fraction: float = 0.125,
    on_finish: Callable[[int], None] | None = None,
) -> tuple[list[tuple[list[int], str]], int]:
    """Generate for one batch. Returns ([(new token ids, finish reason)] in input order, padded row-steps)."""
    n = len(suffixes)
    logits, cache, mask, pos = prefill(model, suffixes, prefix, pad_id)
    device = logits.device
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    eos = torch.tensor(sorted(set(eos_ids)), device=device)
    outputs: list[list[int]] = [[] for _ in range(n)]
    reasons = ["length"] * n
    active = list(range(n))  # batch row -> request index
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    history = torch.empty((n, 0), dtype=torch.long, device=device)
    padded_steps = 0
    for step in range(params.max_new_tokens):
        tokens = _choose(_filter_logits(logits, params, history), params, [generators[i] for i in active])
        padded_steps += len(active)
        done_now = torch.isin(tokens, eos) & ~finished
        tok_list = tokens.tolist()
        for row, req in enumerate(active):
            if not finished[row]:
                outputs[req].append(tok_list[row])
        for row in done_now.nonzero().flatten().tolist():
            reasons[active[row]] = "stop"
            if on_finish:
                on_finish(active[row])
        finished |= done_now
        if bool(finished.all()) or step == params.max_new_tokens - 1:
            break
        history = torch.cat([history, tokens[:, None]], dim=1)
        if int(finished.sum()) >= max(1, int(len(active) * prune_fraction)):
            keep = (~finished).nonzero().flatten()
            cache.batch_select_indices(keep)
            mask, pos, tokens, history = mask[keep], pos[keep], tokens[keep], history[keep]
            active = [active[i] for i in keep.tolist()]
            finished = finished[keep]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(
            input_ids=tokens[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
        )
        pos = pos + 1
        logits = out.logits[:, -1, :].float()
    if on_finish:
        for req in range(n):
            if reasons[req] == "length":
                on_finish(req)
    return [(outputs[i], reasons[i]) for i in range(n)], padded_steps
