"""The `vllm` backend without vLLM: the pure conversions, and the adapter driven through a fake `vllm` module
(put in sys.modules) that records how it is called. vLLM itself needs CUDA and cannot be installed here."""

from __future__ import annotations

import math
import sys
import types
from dataclasses import dataclass, field

import pytest

from socialsynth.core.errors import InputError
from socialsynth.llm import BackendSpec, GenerationParams, request_seed
from socialsynth.llm.vllm_backend import (
    choice_scores_from_logprobs,
    completion_from_output,
    continuation_logprob,
    perplexity_from_prompt_logprobs,
    sampling_kwargs,
)


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    text: str
    token_ids: list
    finish_reason: str | None
    logprobs: list | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list
    outputs: list
    prompt_logprobs: list | None = None


class FakeTokenizer:
    """Characters are tokens (ord); the chat template is '<role>content|' per message, then 'A>'."""

    def encode(self, text, add_special_tokens=True):
        return ([1] if add_special_tokens else []) + [ord(c) for c in text]

    def apply_chat_template(self, chat, add_generation_prompt=True, tokenize=True):
        text = "".join(f"<{m['role'][0]}>{m['content']}|" for m in chat) + ("A>" if add_generation_prompt else "")
        return [ord(c) for c in text]


@dataclass
class FakeLLM:
    kwargs: dict
    calls: list = field(default_factory=list)

    def get_tokenizer(self):
        return FakeTokenizer()

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        self.calls.append(("chat", messages, sampling_params, use_tqdm))
        outs = []
        for i, chat in enumerate(messages):
            sp = sampling_params[i] if isinstance(sampling_params, list) else sampling_params
            prompt = FakeTokenizer().apply_chat_template(chat)
            if sp.kwargs.get("logprobs"):  # rating: the first answer token's top logprobs, keyed by token id
                top = {ord("4"): Logprob(math.log(0.6)), ord("2"): Logprob(math.log(0.2)), 7: Logprob(-3.0)}
                outs.append(RequestOutput(prompt, [CompletionOutput("4", [ord("4")], "length", [top])]))
            else:
                text = f" answer {i} "
                outs.append(RequestOutput(prompt, [CompletionOutput(text, [5, 6, 7], "stop" if i else "length")]))
        return outs

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        self.calls.append(("generate", prompts, sampling_params, use_tqdm))
        outs = []
        for p in prompts:
            ids = p["prompt_token_ids"]
            # log-probability -0.5 for every token after the first (vLLM: None at position 0)
            lps = [None] + [{t: Logprob(-0.5, 1)} for t in ids[1:]]
            outs.append(RequestOutput(ids, [CompletionOutput("", [9], "length")], lps))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.instances = []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    def LLM(**kwargs):  # noqa: N802 (vLLM's name)
        module.instances.append(FakeLLM(kwargs))
        return module.instances[-1]

    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    # the made-up model ids are "on the Hub": the offline cache check (tested below) stays out of the way
    monkeypatch.setattr("socialsynth.llm.loading.hub_offline", lambda: False)
    return module


def test_a_model_missing_offline_is_refused_before_the_engine_starts(fake_vllm, monkeypatch):
    monkeypatch.setattr("socialsynth.llm.loading.hub_offline", lambda: True)
    with pytest.raises(InputError, match="not in the local Hugging Face cache and the hub is offline"):
        BackendSpec(backend="vllm", model="made-up-org/not-a-model").load()
    with pytest.raises(InputError, match="no such folder"):
        BackendSpec(backend="vllm", model="/no/such/model/folder").load()
    assert fake_vllm.instances == []


def test_missing_vllm_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(InputError, match="pip install vllm on a CUDA machine"):
        BackendSpec(backend="vllm").load()


def test_engine_options_from_the_spec(fake_vllm):
    spec = BackendSpec(backend="vllm", model="org/model", dtype="bf16", tensor_parallel=4, quantization=4, seed=7)
    b = spec.load()
    assert fake_vllm.instances[0].kwargs == {
        "model": "org/model",
        "tensor_parallel_size": 4,
        "enable_prefix_caching": True,
        "dtype": "bfloat16",
        "seed": 7,
        "gpu_memory_utilization": 0.9,
        "quantization": "bitsandbytes",
    }
    assert b.describe()["tensor_parallel"] == 4 and b.describe()["backend"] == "vllm"
    BackendSpec(backend="vllm").load()
    assert fake_vllm.instances[1].kwargs["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # "embedded"
    assert "quantization" not in fake_vllm.instances[1].kwargs


def test_generate_per_request_seeds(fake_vllm):
    b = BackendSpec(backend="vllm").load()
    params = GenerationParams(temperature=0.7, top_p=0.9, top_k=0, repetition_penalty=1.1, max_new_tokens=30, seed=5)
    chats = [[{"role": "user", "content": f"c{i}"}] for i in range(3)]
    done = []
    out = b.generate(chats, params, keys=["a", "b", "c"], progress=done.append)
    kind, messages, sampling, use_tqdm = fake_vllm.instances[0].calls[0]
    assert kind == "chat" and messages == chats and use_tqdm is False
    seeds = [request_seed(5, k) & 0x7FFFFFFF for k in "abc"]
    assert [sp.kwargs["seed"] for sp in sampling] == seeds
    assert sampling[0].kwargs == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 30,
        "seed": seeds[0],
        "repetition_penalty": 1.1,
    }
    assert [c.text for c in out] == ["answer 0", "answer 1", "answer 2"] and [c.seed for c in out] == seeds
    assert [c.finish_reason for c in out] == ["length", "stop", "stop"] and sum(done) == 3
    assert b.stats.new_tokens == 9 and b.stats.prompt_tokens == sum(c.n_prompt_tokens for c in out) > 0


def test_score_choices_from_first_token_logprobs(fake_vllm):
    b = BackendSpec(backend="vllm").load()
    scores = b.score_choices([[{"role": "user", "content": "rate"}]], ["1", "2", "3", "4", "5"])
    sp = fake_vllm.instances[0].calls[0][2]
    assert sp.kwargs == {"max_tokens": 1, "temperature": 0.0, "logprobs": 20}
    assert scores[0].best == 3 and scores[0].probs == pytest.approx([0, 0.25, 0, 0.75, 0])
    assert scores[0].mass == pytest.approx(0.8)


def test_continuations_and_perplexity_from_prompt_logprobs(fake_vllm):
    b = BackendSpec(backend="vllm").load()
    chat = [{"role": "user", "content": "write"}]
    assert b.score_continuations([chat, chat], ["abc", "de"]) == pytest.approx([-1.5, -1.0])
    kind, prompts, sp, _ = fake_vllm.instances[0].calls[0]
    assert kind == "generate" and sp.kwargs["prompt_logprobs"] == 0
    assert prompts[0]["prompt_token_ids"] == FakeTokenizer().apply_chat_template(chat) + [ord(c) for c in "abc"]
    assert b.perplexity(["hello"]) == pytest.approx([math.exp(0.5)])


def test_pure_conversions():
    assert sampling_kwargs(GenerationParams(temperature=0.0, top_k=20, repetition_penalty=1.0), 3) == {
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 256,
        "seed": 3,
        "top_k": 20,
    }
    aborted = completion_from_output(RequestOutput([1, 2], [CompletionOutput("x", [3], "abort")]), 1)
    assert aborted.finish_reason == "error" and "abort" in aborted.error and aborted.n_prompt_tokens == 2
    assert choice_scores_from_logprobs({}, [1, 2]).mass == 0.0
    assert continuation_logprob([None, {5: Logprob(-1.0)}, {6: -2.0}], [4, 5, 6], 2) == -3.0
    assert math.isnan(perplexity_from_prompt_logprobs([None], [1]))


def test_scoring_counts_scored_tokens_not_prompt_tokens(fake_vllm):
    b = BackendSpec(backend="vllm").load()
    chat = [{"role": "user", "content": "rate"}]
    b.score_choices([chat, chat], ["1", "2"])
    n_chat = len(FakeTokenizer().apply_chat_template(chat))
    assert b.stats.scored_tokens == 2 * n_chat and b.stats.prompt_tokens == 0
    b.score_continuations([chat], ["abc"])
    b.perplexity(["hello"])
    assert b.stats.scored_tokens == 3 * n_chat + 3 + len(FakeTokenizer().encode("hello"))
    out = b.generate([chat], GenerationParams(max_new_tokens=4))
    assert b.stats.prompt_tokens == out[0].n_prompt_tokens and b.stats.new_tokens == out[0].n_new_tokens
    snap = b.stats.snapshot()
    assert snap["tokens_in"] == b.stats.prompt_tokens + b.stats.scored_tokens and snap["tokens_out"] == 3
