"""Generation backends behind one interface (see base.Backend)."""

from __future__ import annotations

from .base import Backend, Chat, ChoiceScores, Completion, GenerationParams, GenerationStats, request_seed
from .embedded import EMBEDDED_NAME

BACKENDS = ("hf",)


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
    "BACKENDS",
    "EMBEDDED_NAME",
]
