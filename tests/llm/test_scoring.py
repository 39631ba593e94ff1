"""HFBackend.score_choices and HFBackend.perplexity against plain, unpadded forward passes."""

from __future__ import annotations

import math
import random

import pytest
import torch

CHOICES = ["1", "2", "3", "4", "5"]
SYSTEM = (
    "You rate Reddit comments on formality using these RATING DEFINITIONS. Answer with the level number "
    "and its name, for example 3 (Neutral)."
)
COMMENTS = [
    "hi",
    "lol just walk in and demand double, works every time trust me bro",
    "okay then, sure",
    "It is highly advisable. Preparing one's own meals permits considerable savings over time.",
    "Start sending short recap emails after meetings that list who did what.",
]


def reference_choice_probs(backend, chat, choices):
    """Full-vocabulary softmax of one unpadded forward pass, restricted to the choices: (renormalised, mass)."""
    ids = backend.encode_chat(chat)
    choice_ids = [backend.tokenizer.encode(c, add_special_tokens=False)[0] for c in choices]
    with torch.no_grad():
        logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    p = logits.softmax(-1)[choice_ids]
    return (p / p.sum()).tolist(), float(p.sum())


def reference_perplexity(backend, text):
    ids = backend.tokenizer.encode(text, add_special_tokens=True)
    bos = backend.tokenizer.bos_token_id
    if not ids or ids[0] != bos:
        ids = [bos] + ids
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = backend.model(input_ids=x).logits[0, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits, x[0, 1:])
    return math.exp(float(nll))


@pytest.mark.parametrize("shared_head", [True, False], ids=["shared-system-prompt", "different-system-prompts"])
def test_score_choices_equal_unpadded_softmax_restricted_to_choices(sharp_backend, shared_head):
    if shared_head:
        chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": c}] for c in COMMENTS]
    else:
        chats = [
            [{"role": "system", "content": f"Rater number {i}. " * (i + 1)}, {"role": "user", "content": c}]
            for i, c in enumerate(COMMENTS)
        ]
    assert len({len(sharp_backend.encode_chat(c)) for c in chats}) == len(chats)
    scores = sharp_backend.score_choices(chats, CHOICES)
    assert len(scores) == len(chats)
    for chat, s in zip(chats, scores, strict=True):
        assert len(s.probs) == 5
        assert sum(s.probs) == pytest.approx(1.0, abs=1e-4)
        assert 0.0 < s.mass <= 1.0
        ref, mass = reference_choice_probs(sharp_backend, chat, CHOICES)
        assert s.probs == pytest.approx(ref, abs=1e-3)
        assert s.mass == pytest.approx(mass, rel=1e-3)
        assert s.best == max(range(5), key=ref.__getitem__)
    # The probabilities really depend on the prompt (otherwise the comparison above proves little).
    assert max(abs(a - b) for a, b in zip(scores[0].probs, scores[1].probs, strict=True)) > 5e-3


def test_score_choices_of_one_chat_do_not_depend_on_its_batch(sharp_backend):
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": c}] for c in COMMENTS]
    alone = sharp_backend.score_choices([chats[1]], CHOICES)[0]
    together = sharp_backend.score_choices(chats, CHOICES)[1]
    assert together.probs == pytest.approx(alone.probs, abs=1e-4)


@pytest.mark.parametrize("choices", [["10", "15"], ["1", "1"], ["", "2"]])
def test_score_choices_rejects_choices_without_distinct_first_tokens(tiny_backend, choices):
    chat = [{"role": "user", "content": "rate this"}]
    with pytest.raises(ValueError):
        tiny_backend.score_choices([chat], choices)


def test_score_choices_of_no_chats_is_empty(tiny_backend):
    assert tiny_backend.score_choices([], CHOICES) == []


def test_perplexity_batched_equals_one_at_a_time(sharp_backend):
    texts = [
        "hi",
        "The cat sat on the mat and looked out of the window for a long time.",
        "ok so",
        "Preparing one's own meals permits considerable savings over time and affords greater control.",
        "lol",
    ]
    batched = sharp_backend.perplexity(texts)
    single = [sharp_backend.perplexity([t])[0] for t in texts]
    assert len(batched) == len(texts)
    for b, s, t in zip(batched, single, texts, strict=True):
        assert math.isfinite(b)
        assert b == pytest.approx(s, rel=1e-3)
        assert b == pytest.approx(reference_perplexity(sharp_backend, t), rel=1e-3)
    assert max(batched) / min(batched) > 1.05  # texts do get different scores


def test_perplexity_batched_equals_one_at_a_time_plain_tiny_model(tiny_backend):
    texts = ["a", "The cat sat on the mat.", "Hello there, how are you doing today my friend?"]
    batched = tiny_backend.perplexity(texts)
    assert batched == pytest.approx([tiny_backend.perplexity([t])[0] for t in texts], rel=1e-3)


@pytest.fixture(scope="module")
def embedded_backend():
    from socialsynth.llm.hf import HFBackend

    return HFBackend(device="cpu")


@pytest.mark.slow
def test_embedded_model_finds_natural_text_more_fluent_than_random_characters(embedded_backend):
    sentence = "The weather was nice today, so we went for a long walk in the park. " * 4
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;!?#%&"
    noise = "".join(rng.choice(alphabet) for _ in range(len(sentence)))
    natural, random_chars = embedded_backend.perplexity([sentence, noise])
    assert math.isfinite(natural) and math.isfinite(random_chars)
    assert natural < random_chars
    assert natural * 10 < random_chars  # not a near tie: the model does know English


LEVEL_CHATS = [
    [{"role": "user", "content": f'Write a Reddit comment whose formality is "{name}": {rubric}'}]
    for name, rubric in [
        ("Very informal", "slang, no capitals, lol."),
        ("Informal", "relaxed, contractions."),
        ("Neutral", "plain everyday language that most readers would call neither casual nor stiff."),
        ("Formal", "complete sentences."),
        ("Very formal", "elaborate, impersonal diction with no contractions at all, as in an official letter."),
    ]
]


def unshared_logprob(backend, chat, text):
    """Sum of log-probabilities of `text` after `chat`: one plain forward pass of prompt + text, no cache."""
    prompt = backend.encode_chat(chat)
    cont = backend.tokenizer.encode(text, add_special_tokens=False)
    with torch.inference_mode():
        logp = backend.model(input_ids=torch.tensor([prompt + cont])).logits[0].float().log_softmax(-1)
    return sum(logp[len(prompt) - 1 + t, cont[t]].item() for t in range(len(cont)))


def likelihood_requests(texts):
    """What likelihood rating sends: every text after each of the five level prompts."""
    return [c for _ in texts for c in LEVEL_CHATS], [t for t in texts for _ in LEVEL_CHATS]


def test_likelihood_scores_with_shared_level_prompts_equal_unshared_passes(sharp_backend, monkeypatch):
    """Each level prompt is computed once and its cache shared by every text scored after it; the scores must be
    those of a plain pass per (prompt, text), within 1e-4, and only the texts (plus one prompt token) may go
    through the model again."""
    from socialsynth.llm import hf

    texts = COMMENTS + ["ok", "Honestly it depends on the person, but I would say yes."]
    chats, conts = likelihood_requests(texts)
    suffix_tokens = []
    original = hf.continuation_logprobs

    def spy(model, sequences, cont_lengths, prefix, pad_id):
        suffix_tokens.extend(len(s) - c for s, c in zip(sequences, cont_lengths, strict=True))
        return original(model, sequences, cont_lengths, prefix, pad_id)

    monkeypatch.setattr(hf, "continuation_logprobs", spy)
    got = sharp_backend.score_continuations(chats, conts)
    assert len(got) == len(chats)
    for chat, text, value in zip(chats, conts, got, strict=True):
        assert value == pytest.approx(unshared_logprob(sharp_backend, chat, text), abs=1e-4)
    assert suffix_tokens == [1] * len(chats), "each row should carry only the prompt's last token"
    # The levels do rate differently (the comparison above proves little otherwise).
    assert len({round(v, 3) for v in got[:5]}) == 5


def test_likelihood_scores_are_the_same_with_sharing_switched_off(sharp_backend, monkeypatch):
    from socialsynth.llm import hf

    chats, conts = likelihood_requests(COMMENTS[:3])
    shared = sharp_backend.score_continuations(chats, conts)
    monkeypatch.setattr(hf, "SHARE_PROMPTS", False)
    assert sharp_backend.score_continuations(chats, conts) == pytest.approx(shared, abs=1e-4)


def test_likelihood_prompt_used_once_is_scored_without_a_prompt_cache(sharp_backend):
    """A prompt that does not repeat goes the shared-head way; mixed with repeated ones, order is kept."""
    chats = [LEVEL_CHATS[0], LEVEL_CHATS[1], LEVEL_CHATS[0], [{"role": "user", "content": "Say something."}]]
    texts = ["lol ok", "I agree with this.", "nah", "Sure."]
    got = sharp_backend.score_continuations(chats, texts)
    for chat, text, value in zip(chats, texts, got, strict=True):
        assert value == pytest.approx(unshared_logprob(sharp_backend, chat, text), abs=1e-4)
