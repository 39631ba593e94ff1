"""The `vllm` backend: vLLM's offline engine in this process, for GPU nodes (tensor parallelism over the node's
GPUs, prefix caching for the shared heads of rating prompts, continuous batching).

vLLM is imported only when the backend is built (it needs CUDA and pins its own torch, so it is not a
dependency). The conversions between our types and vLLM's are pure functions so they can be tested without it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from socialsynth.core.errors import InputError
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
from socialsynth.llm.embedded import EMBEDDED_HF_ID, EMBEDDED_NAME

VLLM_DTYPES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOP_LOGPROBS = 20
SEED_MASK = 0x7FFF_FFFF


def sampling_kwargs(params: GenerationParams, seed: int) -> dict:
    """SamplingParams arguments for GenerationParams and one request's seed (0 top_k and 1.0 penalty = off)."""
    kwargs: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p if params.temperature > 0 else 1.0,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
    }
    if params.top_k > 0:
        kwargs["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = params.repetition_penalty
    return kwargs


def completion_from_output(output, seed: int | None) -> Completion:
    """A vLLM RequestOutput -> Completion ("stop" or "length"; vLLM's "abort" becomes "error")."""
    first = output.outputs[0]
    reason = first.finish_reason or "stop"
    n_prompt = len(output.prompt_token_ids or [])
    if reason not in ("stop", "length"):
        return Completion(first.text.strip(), n_prompt, len(first.token_ids), "error", seed, error=f"vLLM: {reason}")
    return Completion(first.text.strip(), n_prompt, len(first.token_ids), reason, seed)


def split_prompts(prompts: Sequence[Prompt]) -> list[tuple[bool, list[int]]]:
    """(is raw, indices) of the raw-string prompts and of the chats, each group non-empty, in input order."""
    raw = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    chat = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    return [(kind, index) for kind, index in ((True, raw), (False, chat)) if index]


def _logprob(value) -> float:
    return float(getattr(value, "logprob", value))


def choice_scores_from_logprobs(position: dict, choice_ids: Sequence[int]) -> ChoiceScores:
    """The first answer token's {token_id: Logprob} -> probabilities of the one-token choices (renormalised;
    `mass` is what the choices held; uniform with mass 0 if none of them is among the returned tokens)."""
    sums = [math.exp(_logprob(position[t])) if t in position else 0.0 for t in choice_ids]
    mass = sum(sums)
    if mass <= 0:
        return ChoiceScores([1.0 / len(choice_ids)] * len(choice_ids), 0.0)
    return ChoiceScores([s / mass for s in sums], min(mass, 1.0))


def continuation_logprob(prompt_logprobs: Sequence, token_ids: Sequence[int], n_tail: int) -> float:
    """Summed log-probability of the last `n_tail` prompt tokens (vLLM's `prompt_logprobs`: one dict per
    position, None at position 0, each holding at least the actual token)."""
    total = 0.0
    for pos in range(len(token_ids) - n_tail, len(token_ids)):
        entry = prompt_logprobs[pos]
        if entry is None:
            continue
        total += _logprob(entry[token_ids[pos]])
    return total


def perplexity_from_prompt_logprobs(prompt_logprobs: Sequence, token_ids: Sequence[int]) -> float:
    values = [_logprob(e[t]) for e, t in zip(prompt_logprobs, token_ids, strict=False) if e is not None]
    return math.exp(-sum(values) / len(values)) if values else math.nan


class VLLMBackend(Backend):
    """vLLM's offline `LLM` in this process.

    Args:
        model: "embedded" (SmolLM2-135M-Instruct from the Hub), a Hugging Face model id or a local path.
        quantization: None, or a vLLM quantization method name ("awq", "gptq", "fp8", "bitsandbytes", ...);
            4 and 8 (the hf backend's bitsandbytes bits) mean "bitsandbytes".
        dtype: "auto", "bf16", "fp16", "fp32".
        tensor_parallel: GPUs to split the model over (`--tensor-parallel`).
        gpu_memory_utilization: share of each GPU's memory vLLM may take.
        seed: engine seed (each request still gets its own).
    """

    seed_mask = SEED_MASK

    def __init__(
        self,
        model: str = EMBEDDED_NAME,
        quantization: int | str | None = None,
        dtype: str = "auto",
        tensor_parallel: int = 1,
        gpu_memory_utilization: float = 0.9,
        seed: int = 0,
        **_ignored,
    ):
        try:
            import vllm
        except ImportError as e:
            raise InputError(
                "--backend vllm needs vLLM, which runs on CUDA GPUs only: pip install vllm on a CUDA machine "
                "(or serve the model with vLLM and use --backend openai --api-base URL)",
                field="--backend",
            ) from e
        self._vllm = vllm
        self.name = model
        self.path = EMBEDDED_HF_ID if model == EMBEDDED_NAME else model
        self.dtype = VLLM_DTYPES.get(dtype, dtype)
        self.quantization = "bitsandbytes" if quantization in (4, 8) else quantization
        self.tensor_parallel = tensor_parallel
        self.stats = GenerationStats()
        from socialsynth.llm.loading import check_model_available

        check_model_available(self.path)  # before the engine starts: one line, not a traceback from its workers
        t0 = time.perf_counter()
        self.llm = vllm.LLM(**self.engine_kwargs(gpu_memory_utilization, seed))
        self.load_seconds = time.perf_counter() - t0
        self.tokenizer = self.llm.get_tokenizer()

    def engine_kwargs(self, gpu_memory_utilization: float, seed: int) -> dict:
        kwargs = {
            "model": self.path,
            "tensor_parallel_size": self.tensor_parallel,
            "enable_prefix_caching": True,
            "dtype": self.dtype,
            "seed": seed,
            "gpu_memory_utilization": gpu_memory_utilization,
        }
        if self.quantization:
            kwargs["quantization"] = self.quantization
        return kwargs

    def _chat_ids(self, chat: Chat) -> list[int]:
        ids = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def prompt_token_count(self, prompt: Prompt) -> int:
        """Tokens of a prompt as :meth:`generate` sends it: a raw string with the tokenizer's special tokens, a
        chat through its template."""
        if isinstance(prompt, str):
            return len(self.tokenizer.encode(prompt))
        return len(self._chat_ids(prompt))

    def _generate(self, chats: Sequence[Prompt], params: GenerationParams, keys: list[str], seeds: list[int],
                  progress: Progress | None) -> list[Completion]:
        """Chats go through `LLM.chat` (the model's template), raw strings through `LLM.generate` (as they are)."""
        results: list[Completion | None] = [None] * len(chats)
        for raw, index in split_prompts(chats):
            sampling = [self._vllm.SamplingParams(**sampling_kwargs(params, seeds[i])) for i in index]
            prompts = [chats[i] for i in index]
            if raw:
                outputs = self.llm.generate(prompts, sampling_params=sampling, use_tqdm=False)
            else:
                outputs = self.llm.chat(prompts, sampling_params=sampling, use_tqdm=False)
            for i, o in zip(index, outputs, strict=True):
                results[i] = completion_from_output(o, seeds[i])
        self.stats.batches += 1
        if progress:
            progress(len(results))
        return results

    def choice_token_ids(self, choices: Sequence[str]) -> list[int]:
        ids = [(self.tokenizer.encode(c, add_special_tokens=False) or [None])[0] for c in choices]
        if None in ids or len(set(ids)) != len(ids):
            raise ValueError(f"choices {list(choices)} do not start with distinct tokens")
        return ids

    def score_choices(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScores]:
        if not chats:
            return []
        t0 = time.perf_counter()
        choice_ids = self.choice_token_ids(choices)
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=TOP_LOGPROBS)
        outputs = self.llm.chat(list(chats), sampling_params=sp, use_tqdm=False)
        results = []
        for o in outputs:
            positions = o.outputs[0].logprobs or [{}]
            results.append(choice_scores_from_logprobs(positions[0], choice_ids))
            self.stats.scored_tokens += len(o.prompt_token_ids or [])
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results

    def _prompt_logprobs(self, sequences: list[list[int]]) -> list:
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        prompts = [{"prompt_token_ids": ids} for ids in sequences]
        outputs = self.llm.generate(prompts, sampling_params=sp, use_tqdm=False)
        self.stats.scored_tokens += sum(len(s) for s in sequences)
        return [o.prompt_logprobs for o in outputs]

    def score_continuations(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        if not chats:
            return []
        t0 = time.perf_counter()
        conts = [self.tokenizer.encode(c, add_special_tokens=False) for c in continuations]
        sequences = [self._chat_ids(chat) + cont for chat, cont in zip(chats, conts, strict=False)]
        logprobs = self._prompt_logprobs(sequences)
        rows = zip(logprobs, sequences, conts, strict=False)
        results = [continuation_logprob(lp, seq, len(c)) for lp, seq, c in rows]
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results

    def perplexity(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        t0 = time.perf_counter()
        encoded = [self.tokenizer.encode(t or " ", add_special_tokens=True)[:1024] for t in texts]
        logprobs = self._prompt_logprobs(encoded)
        results = [perplexity_from_prompt_logprobs(lp, ids) for lp, ids in zip(logprobs, encoded, strict=True)]
        self.stats.scoring_seconds += time.perf_counter() - t0
        return results

    def describe(self) -> dict:
        return {
            "backend": "vllm",
            "model": self.name,
            "model_path": self.path,
            "dtype": self.dtype,
            "quantization": self.quantization,
            "tensor_parallel": self.tensor_parallel,
        }
