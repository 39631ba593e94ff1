"""Raw prompts (a plain string instead of a chat): sent as they are, without the model's chat template, by every
backend (hf: tokenized as is; vllm: LLM.generate; openai: the /completions endpoint). Seed 003 prompted Falcon-7B
this way ("### Instruction: ... ### Response:")."""

from __future__ import annotations

import pytest
import torch

from socialsynth.core.errors import InputError
from socialsynth.llm import BackendSpec, GenerationParams
from socialsynth.llm.vllm_backend import split_prompts
from tests.llm.test_llm_openai import FakeServer, chat_answer, default_handler
from tests.llm.test_llm_vllm import CompletionOutput, RequestOutput, fake_vllm  # noqa: F401 (a fixture)

RAW = "### Instruction: Write two short comments about rain, each in double quotes.\n### Response:"
GREEDY = GenerationParams(temperature=0.0, repetition_penalty=1.0, max_new_tokens=6)


def test_hf_sends_a_raw_prompt_as_it_is_and_a_chat_through_its_template(sharp_backend):
    tok = sharp_backend.tokenizer
    ids = sharp_backend.encode_chat(RAW)
    assert ids == tok(RAW)["input_ids"]
    assert "<|im_start|>" not in tok.decode(ids)  # no chat template around it
    chat = [{"role": "user", "content": RAW}]
    assert "<|im_start|>" in tok.decode(sharp_backend.encode_chat(chat))
    assert sharp_backend.prompt_token_count(RAW) == len(ids) and sharp_backend.token_count(RAW) <= len(ids)

    raw_out, chat_out = sharp_backend.generate([RAW, chat], GREEDY)
    assert raw_out.n_prompt_tokens == len(ids) and chat_out.n_prompt_tokens > len(ids)
    # the answer is the model's own continuation of exactly those tokens
    with torch.no_grad():
        ref = sharp_backend.model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=6,
            do_sample=False, eos_token_id=sharp_backend.eos_ids, pad_token_id=sharp_backend.pad_id,
        )[0, len(ids):].tolist()
    eos = set(sharp_backend.eos_ids)
    cut = next((i + 1 for i, t in enumerate(ref) if t in eos), len(ref))
    assert raw_out.text == tok.decode(ref[:cut], skip_special_tokens=True).strip()


def test_vllm_splits_raw_prompts_from_chats_and_keeps_the_order(fake_vllm):  # noqa: F811
    chat = [{"role": "user", "content": "hi"}]
    assert split_prompts(["a", chat, "b"]) == [(True, [0, 2]), (False, [1])]
    assert split_prompts([chat]) == [(False, [0])]
    backend = BackendSpec(backend="vllm", model="org/model").load()
    llm = fake_vllm.instances[0]

    def generate(prompts, sampling_params=None, use_tqdm=True):
        llm.calls.append(("generate", prompts, sampling_params, use_tqdm))
        return [RequestOutput([1, 2], [CompletionOutput(f" raw {p[:5]}", [5], "stop")]) for p in prompts]

    llm.generate = generate
    assert backend.prompt_token_count("ab") == 3 and backend.prompt_token_count(chat) == len("<u>hi|A>")
    out = backend.generate(["first", chat, "second"], GenerationParams(max_new_tokens=4))
    assert [c.text for c in out] == ["raw first", "answer 0", "raw secon"]
    kinds = [(call[0], len(call[1])) for call in llm.calls]
    assert kinds == [("generate", 2), ("chat", 1)]
    assert llm.calls[0][1] == ["first", "second"]  # the strings themselves: vLLM applies no template to them


@pytest.fixture
def server():
    servers = []

    def make(handler=None):
        servers.append(FakeServer(handler))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def completion_answer(text: str) -> dict:
    return {
        "id": "c", "object": "text_completion", "created": 0, "model": "fake-served",
        "choices": [{"index": 0, "text": text, "finish_reason": "length", "logprobs": None}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }  # fmt: skip


def test_openai_sends_raw_prompts_to_the_completions_endpoint(server):
    def handler(path, body, n):
        if path.endswith("/completions") and not path.endswith("/chat/completions"):
            return 200, completion_answer(f' "one" "two" seed={body["seed"]}'), {}
        if path.endswith("/chat/completions"):
            return 200, chat_answer("chat answer"), {}
        return default_handler(path, body, n)

    srv = server(handler)
    backend = BackendSpec(backend="openai", api_base=srv.url, max_retries=0).load()
    chat = [{"role": "user", "content": "hi"}]
    raw, answered = backend.generate([RAW, chat], GenerationParams(max_new_tokens=4, seed=1), keys=["a", "b"])
    assert raw.text.startswith('"one" "two"') and raw.finish_reason == "length" and raw.n_prompt_tokens == 11
    assert answered.text == "chat answer"
    sent = [b for p, b, _ in srv.requests if p.endswith("/v1/completions")]
    assert len(sent) == 1 and sent[0]["prompt"] == RAW and sent[0]["max_tokens"] == 4


def test_openai_server_without_completions_refuses_raw_in_one_line(server):
    srv = server()  # the default handler answers 404 to /completions
    backend = BackendSpec(backend="openai", api_base=srv.url, max_retries=0).load()
    with pytest.raises(InputError) as e:
        backend.generate([RAW], GenerationParams(max_new_tokens=4))
    assert e.value.field == "--prompt-format" and "--prompt-format chat" in str(e.value)
    assert "\n" not in str(e.value)
