"""Fluency by perplexity under a causal LM of one's choice (DialoGPT-style GPT-2, built from a config here)."""

from __future__ import annotations

import math

import pytest

from socialsynth.text.fluency import FluencyScorer, fluency_cut


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A 2-layer random GPT-2 (DialoGPT's architecture) with the embedded SmolLM2 tokenizer; no download."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from socialsynth.llm.embedded import embedded_checkpoint

    path = tmp_path_factory.mktemp("tiny_gpt2")
    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():  # sharper than the std-0.02 init, so texts get clearly different perplexities
        model.lm_head.weight.mul_(20)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def seed_perplexity(model_dir, text: str) -> float:
    """The research code's computation: the text alone, labels = input ids, exp of the model's mean loss."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return math.exp(float(model(input_ids=ids, labels=ids).loss))


def test_batched_perplexities_are_the_seeds_one_text_at_a_time(tiny_gpt2_dir):
    texts = ["ok", "This is a perfectly normal sentence about friends.", "lol idk man tbh",
             "Repetition is what turns strangers into friends, over and over again, week after week."]
    scorer = FluencyScorer(str(tiny_gpt2_dir), device="cpu", dtype="fp32", batch_size=3)
    got = scorer.perplexity(texts)
    for text, value in zip(texts[1:], got[1:], strict=True):
        assert value == pytest.approx(seed_perplexity(tiny_gpt2_dir, text), rel=1e-4)
    assert all(math.isfinite(v) and v > 1 for v in got)  # a one-token text gets BOS in front instead of NaN
    assert len(set(round(v, 3) for v in got)) == len(texts)


def test_the_cut_is_a_number_or_mean_plus_one_sd_of_the_originals():
    assert fluency_cut("9607", [1.0, 2.0]) == 9607.0
    assert fluency_cut("mean+sd", [1.0, 2.0, 3.0]) == pytest.approx(3.0)  # mean 2 + sample sd 1
    assert fluency_cut("mean+sd", [1.0, float("nan"), 3.0]) == pytest.approx(2 + math.sqrt(2))
    assert fluency_cut("mean+sd", [5.0]) == math.inf  # too few to say: nothing is flagged
