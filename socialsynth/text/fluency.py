"""Fluency as perplexity under a causal LM of one's choice (ValueScope used ``microsoft/DialoGPT-medium``, a GPT-2
trained on Reddit threads), and the cut that turns perplexities into a pass or a flag.

Perplexity is computed the way the research code computed it: the text alone, tokenized without added special
tokens and cut to the model's length, exp of the mean next-token loss over its tokens after the first. A text of
a single token has nothing to predict, so it gets the model's BOS token in front (the seed got NaN and dropped it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

MEAN_SD = "mean+sd"


def fluency_cut(rule: str | float, perplexities: Sequence[float]) -> float:
    """The largest perplexity that passes: a number as given, or for ``mean+sd`` the mean plus one (sample)
    standard deviation of ``perplexities`` (the originals' in ValueScope's notebook: 2,747 + 6,860 = 9,607).
    NaN values are left out; with fewer than two values left the cut is infinite (nothing is flagged)."""
    if str(rule).strip().lower() != MEAN_SD:
        return float(rule)
    values = [float(v) for v in perplexities if v is not None and math.isfinite(float(v))]
    if len(values) < 2:
        return math.inf
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean + math.sqrt(var)


class FluencyScorer:
    """Perplexities of texts under one causal LM (any Hugging Face id or path), batched with right padding."""

    metric = "perplexity"

    def __init__(self, name: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 max_length: int = 1024):
        from socialsynth.llm.loading import load_causal_lm

        self.name = name
        self.tokenizer, self.model = load_causal_lm(name, device=device, dtype=dtype)
        limit = getattr(self.tokenizer, "model_max_length", None) or max_length
        self.max_length = min(int(limit), max_length)  # a tokenizer without a limit reports ~1e30
        self.batch_size = batch_size
        self.seconds = 0.0

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)[: self.max_length]
        if len(ids) < 2:  # nothing to predict: score the token after BOS
            bos = self.tokenizer.bos_token_id
            if bos is None:
                bos = self.tokenizer.eos_token_id
            ids = ([bos] if bos is not None else []) + (ids or [bos])
        return ids

    def perplexity(self, texts: Sequence[str]) -> list[float]:
        """One perplexity per text (NaN where the tokenizer gives nothing at all)."""
        import torch

        t0 = time.perf_counter()
        encoded = [self._encode(t) for t in texts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths pad less
        out = [math.nan] * len(encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i], dtype=torch.long)
                mask[r, : len(encoded[i])] = 1
            ids, mask = ids.to(device), mask.to(device)
            with torch.no_grad():
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            valid = mask[:, 1:].float()
            per_row = (nll * valid).sum(1) / valid.sum(1).clamp(min=1)
            for r, i in enumerate(batch):
                if valid[r].sum() > 0:
                    out[i] = math.exp(float(per_row[r]))
        self.seconds += time.perf_counter() - t0
        return out
