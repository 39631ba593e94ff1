"""Generation backends behind one interface (see base.Backend)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Backend, Chat, ChoiceScores, Completion, GenerationParams, GenerationStats, request_seed
from .embedded import EMBEDDED_NAME

BACKENDS = ("hf",)


@dataclass(frozen=True)
class BackendSpec:
    """Which engine and model to load and how: what `--backend -m -q --device --dtype` and the batch limits say.

    Scripts build one from their flags and pass it around; `load()` makes the backend."""

    backend: str = "hf"
    model: str = EMBEDDED_NAME
    quantization: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 64
    max_batch_tokens: int = 65536

    def load(self) -> Backend:
        return load_backend(
            self.backend,
            self.model,
            quantization=self.quantization,
            device=self.device,
            dtype=self.dtype,
            max_batch_size=self.max_batch_size,
            max_batch_tokens=self.max_batch_tokens,
        )


def load_backend(backend: str = "hf", model: str = EMBEDDED_NAME, **options) -> Backend:
    """Build a backend by name. `options` go to the backend (quantization, device, dtype, batch limits)."""
    if backend == "hf":
        from .hf import HFBackend

        return HFBackend(model, **options)
    raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = [
    "Backend",
    "Chat",
    "ChoiceScores",
    "Completion",
    "GenerationParams",
    "GenerationStats",
    "request_seed",
    "load_backend",
    "BackendSpec",
    "BACKENDS",
    "EMBEDDED_NAME",
]
