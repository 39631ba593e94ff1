"""HFBackend.generate against transformers' own generate, and per-request seeding."""

from __future__ import annotations

import json

import pytest
import torch

from socialsynth.llm.base import GenerationParams

SYSTEM = (
    "You rewrite Reddit comments in a requested style. Keep the meaning, opinion and facts of the comment "
    "and write like a Reddit user. Reply with the rewritten comment only."
)
USER_TEXTS = [
    "ok",
    "How do I ask for a raise?",
    "lol just walk in and demand double, works every time trust me bro",
    "Start sending short recap emails after meetings that list who did what.",
    "hi",
    "It is highly advisable. Preparing one's own meals permits considerable savings over time and affords "
    "greater control over nutritional intake, both of which are of particular value to those living alone.",
]
GREEDY = GenerationParams(temperature=0, repetition_penalty=1.0, max_new_tokens=12)


def shared_head_chats():
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": t}] for t in USER_TEXTS]


_REFERENCES: dict = {}


def reference_greedy(backend, chat, max_new_tokens, eos_ids):
    """transformers' generate on one prompt, no padding: the new token ids (up to and including an eos).

    transformers runs with the backend's own end-of-turn ids; a test that declares more stop tokens cuts the
    answer at the first of them, which is what greedy decoding with those stop tokens produces.
    """
    key = (id(backend), json.dumps(chat), max_new_tokens)
    if key not in _REFERENCES:
        ids = backend.encode_chat(chat)
        inp = torch.tensor([ids], device=backend.model.device)
        with torch.no_grad():
            out = backend.model.generate(
                inp,
                attention_mask=torch.ones_like(inp),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                repetition_penalty=1.0,
                eos_token_id=list(backend.eos_ids),
                pad_token_id=backend.pad_id,
            )
        _REFERENCES[key] = out[0, len(ids) :].tolist()
    new = _REFERENCES[key]
    for k, tok in enumerate(new):
        if tok in eos_ids:
            return new[: k + 1]
    return list(new)


@pytest.fixture
def decoded_ids(sharp_backend, monkeypatch):
    """Record the token ids the backend turns into text (Completion only carries text)."""
    seen: list[list[int]] = []
    original = sharp_backend.tokenizer.decode

    def spy(ids, *args, **kwargs):
        seen.append(list(ids))
        return original(ids, *args, **kwargs)

    monkeypatch.setattr(sharp_backend.tokenizer, "decode", spy)
    return seen


def check_against_reference(backend, chats, params, decoded_ids, eos_ids):
    refs = [reference_greedy(backend, c, params.max_new_tokens, eos_ids) for c in chats]
    outs = backend.generate(chats, params)
    assert len(outs) == len(chats)
    assert sorted(map(tuple, decoded_ids)) == sorted(map(tuple, refs)), "batched decoding changed the tokens"
    for chat, out, ref in zip(chats, outs, refs, strict=True):
        expected_text = backend.tokenizer.decode(ref, skip_special_tokens=True).strip()
        assert out.text == expected_text
        assert out.n_new_tokens == len(ref) <= params.max_new_tokens
        assert out.n_prompt_tokens == len(backend.encode_chat(chat))
        if ref[-1] in eos_ids:
            assert out.finish_reason == "stop"
        else:
            assert len(ref) == params.max_new_tokens
            assert out.finish_reason == "length"
    return outs, refs


def test_greedy_batch_with_shared_head_matches_transformers_one_by_one(sharp_backend, decoded_ids, monkeypatch):
    chats = shared_head_chats()
    lengths = {len(sharp_backend.encode_chat(c)) for c in chats}
    assert len(lengths) >= 4, "prompts should differ in length so that left padding is exercised"
    monkeypatch.setattr(sharp_backend, "max_batch_size", 4)  # two batches sharing one cached head
    outs, refs = check_against_reference(sharp_backend, chats, GREEDY, decoded_ids, sharp_backend.eos_ids)
    assert any(o.text for o in outs)
    assert len({tuple(r) for r in refs}) > 1, "the test model should answer different prompts differently"
    # The shared head (system prompt + chat markup) was long enough to be cached and reused.
    assert any(len(k) >= 16 for k in sharp_backend._prefixes)


def test_greedy_rows_that_stop_early_match_transformers(sharp_backend, decoded_ids, monkeypatch):
    """Rows finishing at different steps are dropped from the batch; the others must be unaffected."""
    chats = shared_head_chats()
    refs = [reference_greedy(sharp_backend, c, GREEDY.max_new_tokens, []) for c in chats]
    # Declare as end-of-turn a token some answers produce after their first step and others never produce.
    stopper = None
    for ref in refs:
        for tok in ref[1:]:
            if tok != ref[0] and sum(tok in r for r in refs) < len(refs):
                stopper = tok
                break
        if stopper is not None:
            break
    if stopper is None:
        pytest.skip("the random test model produced no usable stop token")
    eos = sorted({*sharp_backend.eos_ids, stopper})
    monkeypatch.setattr(sharp_backend, "eos_ids", eos)
    outs, _ = check_against_reference(sharp_backend, chats, GREEDY, decoded_ids, eos)
    reasons = [o.finish_reason for o in outs]
    assert "stop" in reasons and "length" in reasons
    stopped = [o for o in outs if o.finish_reason == "stop"]
    assert any(o.n_new_tokens < GREEDY.max_new_tokens for o in stopped), "some row should stop before the limit"


def test_greedy_prompts_without_shared_head_match_transformers(sharp_backend, decoded_ids):
    systems = ["Be brief.", "You are a pirate who answers every question in rhymes and riddles.", "Answer in French."]
    users = ["What is the capital of Norway?", "hi", "Tell me about the weather on Mars next week please."]
    chats = [
        [{"role": "system", "content": s}, {"role": "user", "content": u}]
        for s, u in zip(systems, users, strict=True)
    ]
    encoded = [sharp_backend.encode_chat(c) for c in chats]
    from socialsynth.llm.batching import common_prefix_length

    assert common_prefix_length(encoded) < 16  # no prefix cache for these
    check_against_reference(sharp_backend, chats, GREEDY, decoded_ids, sharp_backend.eos_ids)


def test_generate_empty_list_and_progress_counts_every_request(tiny_backend):
    assert tiny_backend.generate([], GREEDY) == []
    ticks = []
    chats = shared_head_chats()[:3]
    outs = tiny_backend.generate(chats, GenerationParams(temperature=0, max_new_tokens=3), progress=ticks.append)
    assert len(outs) == 3
    assert sum(ticks) == 3


SAMPLING = GenerationParams(temperature=1.0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=10, seed=7)


def test_sampling_same_key_and_seed_gives_same_text_alone_or_in_a_batch(tiny_backend):
    chats = shared_head_chats()
    target = chats[3]
    alone = tiny_backend.generate([target], SAMPLING, keys=["comment-42:3"])[0]
    assert alone.text, "a sampled answer of the random model should not be empty"
    batch = tiny_backend.generate(
        [chats[0], chats[1], target, chats[5]], SAMPLING, keys=["a:1", "b:2", "comment-42:3", "c:4"]
    )
    assert batch[2].text == alone.text
    assert batch[2].seed == alone.seed
    # Another order and batch neighbours: still the same answer.
    reordered = tiny_backend.generate([target, chats[4]], SAMPLING, keys=["comment-42:3", "z:9"])
    assert reordered[0].text == alone.text
    # And rerunning is deterministic.
    assert tiny_backend.generate([target], SAMPLING, keys=["comment-42:3"])[0].text == alone.text


def test_sampling_different_seeds_give_different_text(tiny_backend):
    chats = shared_head_chats()
    keys = [f"k{i}" for i in range(len(chats))]
    first = tiny_backend.generate(chats, SAMPLING, keys=keys)
    other = tiny_backend.generate(chats, GenerationParams(**{**SAMPLING.to_dict(), "seed": 8}), keys=keys)
    assert any(a.text != b.text for a, b in zip(first, other, strict=True))
    assert all(a.seed != b.seed for a, b in zip(first, other, strict=True))
    assert all(o.n_new_tokens <= SAMPLING.max_new_tokens for o in first + other)


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(temperature=0, repetition_penalty=1.3, max_new_tokens=10),
        GenerationParams(temperature=0.7, top_p=0.9, top_k=50, repetition_penalty=1.1, max_new_tokens=10, seed=3),
    ],
    ids=["greedy-with-repetition-penalty", "default-style-sampling"],
)
def test_answer_does_not_depend_on_batch_neighbours(sharp_backend, params):
    chats = shared_head_chats()
    keys = [f"req{i}" for i in range(len(chats))]
    together = sharp_backend.generate(chats, params, keys=keys)
    for i in (0, 2, 5):
        alone = sharp_backend.generate([chats[i]], params, keys=[keys[i]])[0]
        assert alone.text == together[i].text
        assert alone.n_new_tokens == together[i].n_new_tokens
        assert alone.finish_reason == together[i].finish_reason


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_continuous_batching_refills_slots_and_matches_transformers(sharp_backend, decoded_ids, monkeypatch, rows):
    """With fewer slots than requests, finished rows hand their slot to waiting requests (keys/values written
    right-aligned into the live cache, the window moved back to column 0 when it reaches the buffer's end);
    every answer must still be the one transformers gives for the prompt alone."""
    from socialsynth.llm import decode as decode_module

    chats = shared_head_chats() * 3  # 18 requests, 12 new tokens each: the window slides past its buffer
    refs = [reference_greedy(sharp_backend, c, GREEDY.max_new_tokens, []) for c in chats[:6]]
    stopper = next((t for r in refs for t in r[2:] if sum(t in x for x in refs) < len(refs)), None)
    eos = sorted({*sharp_backend.eos_ids, *([stopper] if stopper is not None else [])})
    monkeypatch.setattr(sharp_backend, "eos_ids", eos)
    monkeypatch.setattr(sharp_backend, "max_batch_size", rows)
    compactions = []
    original = decode_module.PreallocatedLayer.compact
    monkeypatch.setattr(
        decode_module.PreallocatedLayer, "compact", lambda self, cap: compactions.append(cap) or original(self, cap)
    )
    before = sharp_backend.stats.padded_tokens
    check_against_reference(sharp_backend, chats, GREEDY, decoded_ids, eos)
    if rows < 5:
        assert compactions, "the cache window should have been moved back to column 0 at least once"
    # Idle slots are few: computed row-steps stay close to the tokens actually generated.
    useful = sum(len(x) for x in decoded_ids)
    assert sharp_backend.stats.padded_tokens - before <= useful * 1.5


def test_sampled_answer_is_the_same_with_one_slot_or_many(sharp_backend):
    # top-k keeps the candidates few: the random model's distribution is nearly flat over 49k tokens, and there a
    # 1e-6 difference in logits between batch shapes moves float32 cumulative sums across token boundaries.
    params = GenerationParams(temperature=0.8, top_p=0.95, top_k=40, repetition_penalty=1.2, max_new_tokens=10, seed=11)
    chats = shared_head_chats() * 2
    keys = [f"r{i}" for i in range(len(chats))]
    wide = sharp_backend.generate(chats, params, keys=keys)
    old = sharp_backend.max_batch_size
    try:
        sharp_backend.max_batch_size = 2
        narrow = sharp_backend.generate(chats, params, keys=keys)
    finally:
        sharp_backend.max_batch_size = old
    assert [o.text for o in narrow] == [o.text for o in wide]
    assert [o.finish_reason for o in narrow] == [o.finish_reason for o in wide]
