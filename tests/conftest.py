"""Shared fixtures: a tiny random Llama with the embedded SmolLM2 tokenizer, fake backends, data paths."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: on a 2-core machine shared with other jobs, OpenMP's spinning threads make every small
# tensor op up to 1000x slower when oversubscribed. Subprocesses started by the tests inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys
from pathlib import Path
from typing import Sequence

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from socialsynth.llm.base import (  # noqa: E402
    Backend,
    ChoiceScores,
    Completion,
    GenerationParams,
    GenerationStats,
    request_seed,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: uses the real embedded model (SmolLM2-135M); runs by default")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer random Llama (bf16 weights) with the embedded model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from socialsynth.llm.embedded import embedded_checkpoint

    path = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    assert tokenizer.chat_template, "the embedded tokenizer should carry a chat template"
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_backend(tiny_model_dir):
    from socialsynth.llm.hf import HFBackend

    return HFBackend(model=str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def sharp_backend(tiny_model_dir):
    """The tiny model with its residual branches and final norm scaled up.

    Freshly initialised weights (std 0.02) leave the residual stream dominated by the input embedding, so with
    tied embeddings the plain tiny model greedily repeats the last prompt token and spreads its next-token
    probability almost uniformly: a padding or position bug would not change its answers. Scaling the
    attention/MLP output projections makes the predictions depend on the whole context, and scaling the final
    norm sharpens them, so comparisons against a reference computation can actually fail.
    """
    import torch

    from socialsynth.llm.hf import HFBackend

    backend = HFBackend(model=str(tiny_model_dir), device="cpu", dtype="fp32")
    with torch.no_grad():
        for layer in backend.model.model.layers:
            layer.self_attn.o_proj.weight.mul_(30.0)
            layer.mlp.down_proj.weight.mul_(30.0)
        backend.model.model.norm.weight.mul_(4.0)
    return backend


@pytest.fixture(scope="session")
def askmen_file() -> Path:
    path = DATA / "askmen.jsonl"
    assert path.exists()
    return path


@pytest.fixture(scope="session")
def askmen_raw_file() -> Path:
    return DATA / "askmen_raw.jsonl"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point SOCIALSYNTH_CACHE_DIR at an empty folder (only for tests about conversion/caching)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SOCIALSYNTH_CACHE_DIR", str(cache))
    return cache


class FakeBackend(Backend):
    """A Backend that answers from canned texts, for testing the logic above the model.

    `reply(chat, key)` returns the text for one request; `choice_probs(chat)` the 5 level probabilities;
    `loglik(chat, text)` the log-likelihood of a continuation.
    Every call is recorded.
    """

    def __init__(
        self, reply=None, choice_probs=None, finish_reason: str = "stop", perplexity: float = 20.0, loglik=None
    ):
        self.name = "fake-model"
        self.stats = GenerationStats()
        self.reply = reply or (lambda chat, key: f"rewritten {key}")
        self.choice_probs = choice_probs or (lambda chat: [0.1, 0.2, 0.4, 0.2, 0.1])
        self.finish_reason = finish_reason
        self.ppl = perplexity
        self.generate_calls: list[tuple[list, GenerationParams, list[str]]] = []
        self.score_calls: list[tuple[list, list[str]]] = []
        self.perplexity_calls: list[list[str]] = []
        self.loglik = loglik or (lambda chat, text: 0.0)
        self.continuation_calls: list[tuple[list, list[str]]] = []

    def generate(self, chats, params, keys=None, progress=None) -> list[Completion]:
        keys = list(keys) if keys is not None else [str(i) for i in range(len(chats))]
        self.generate_calls.append((list(chats), params, keys))
        out = []
        for chat, key in zip(chats, keys):
            text = self.reply(chat, key)
            out.append(Completion(text, 10, len(text.split()), self.finish_reason, seed=request_seed(params.seed, key)))
        return out

    def score_choices(self, chats, choices: Sequence[str]) -> list[ChoiceScores]:
        self.score_calls.append((list(chats), list(choices)))
        return [ChoiceScores(list(self.choice_probs(c)), 0.9) for c in chats]

    def score_continuations(self, chats, continuations) -> list[float]:
        self.continuation_calls.append((list(chats), list(continuations)))
        return [self.loglik(c, t) for c, t in zip(chats, continuations)]

    def perplexity(self, texts) -> list[float]:
        self.perplexity_calls.append(list(texts))
        return [self.ppl for _ in texts]


@pytest.fixture
def fake_backend_cls():
    return FakeBackend
