"""Generation backends behind one interface (see base.Backend)."""

from __future__ import annotations

from dataclasses import dataclass

from socialsynth.llm.base import (
    Backend,
    BackendUnavailable,
    Chat,
    ChoiceScores,
    Completion,
    GenerationParams,
    GenerationStats,
    Prompt,
    Unsupported,
    request_seed,
)
from socialsynth.llm.embedded import EMBEDDED_NAME

BACKENDS = ("hf", "openai", "vllm", "llamacpp")


@dataclass(frozen=True)
class BackendSpec:
    """Which engine and model to load and how: what `--backend -m -q --device --dtype`, the server flags
    (`--api-base --api-key-env --concurrency --request-timeout --max-retries`), `--tensor-parallel` and the batch
    limits say. Options an engine does not use are ignored by it.

    Jobs build one from their model flags (`ModelArgs.spec()`) and pass it around; `load()` makes the backend. It
    holds the *name* of the key's environment variable, never the key."""

    backend: str = "hf"
    model: str = EMBEDDED_NAME
    quantization: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 64
    max_batch_tokens: int = 65536
    api_base: str | None = None  # openai
    api_key_env: str = "OPENAI_API_KEY"  # openai
    concurrency: int = 16  # openai: requests in flight
    request_timeout: float = 600.0  # openai: seconds per request
    max_retries: int = 5  # openai: retries per request
    tensor_parallel: int = 1  # vllm: GPUs the model is split over
    seed: int = 0  # vllm: engine seed

    def load(self) -> Backend:
        if self.backend == "openai":
            options = dict(
                api_base=self.api_base,
                api_key_env=self.api_key_env,
                concurrency=self.concurrency,
                request_timeout=self.request_timeout,
                max_retries=self.max_retries,
            )
        elif self.backend == "llamacpp":
            options = dict(
                quantization=self.quantization,
                dtype=self.dtype,
                max_batch_size=self.max_batch_size,
                max_batch_tokens=self.max_batch_tokens,
                request_timeout=self.request_timeout,
                max_retries=self.max_retries,
            )
        elif self.backend == "vllm":
            options = dict(
                quantization=self.quantization, dtype=self.dtype, tensor_parallel=self.tensor_parallel, seed=self.seed
            )
        else:
            options = dict(
                quantization=self.quantization,
                device=self.device,
                dtype=self.dtype,
                max_batch_size=self.max_batch_size,
                max_batch_tokens=self.max_batch_tokens,
            )
        return load_backend(self.backend, self.model, **options)


def load_backend(backend: str = "hf", model: str = EMBEDDED_NAME, **options) -> Backend:
    """Build a backend by name. `options` go to the backend (hf: quantization, device, dtype, batch limits;
    openai: api_base, api_key_env, concurrency, request_timeout, max_retries; vllm: quantization, dtype,
    tensor_parallel, seed; llamacpp: quantization, dtype, batch limits = slots and KV tokens, threads). The
    engines are imported only when asked for."""
    if backend == "hf":
        from socialsynth.llm.hf import HFBackend

        return HFBackend(model, **options)
    if backend == "openai":
        from socialsynth.llm.openai_api import OpenAIBackend

        return OpenAIBackend(model, **options)
    if backend == "llamacpp":
        from socialsynth.llm.llamacpp import LlamaCppBackend

        return LlamaCppBackend(model, **options)
    if backend == "vllm":
        from socialsynth.llm.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


# The model-loading helpers import torch: they are loaded on first use, so `import socialsynth.llm` stays light.
_LOADING = ("load_causal_lm", "resolve_model_path", "resolve_device", "resolve_dtype", "bnb_config", "eos_ids")


def __getattr__(name: str):
    if name in _LOADING:
        from socialsynth.llm import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backend",
    "BackendUnavailable",
    "Unsupported",
    "Chat",
    "Prompt",
    "ChoiceScores",
    "Completion",
    "GenerationParams",
    "GenerationStats",
    "request_seed",
    "load_backend",
    "BackendSpec",
    "BACKENDS",
    "EMBEDDED_NAME",
    "load_causal_lm",
    "resolve_model_path",
    "resolve_device",
    "resolve_dtype",
    "bnb_config",
    "eos_ids",
]
