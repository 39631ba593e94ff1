"""BERTScore (content preservation as ValueScope measured it) on tiny encoders built from configs."""

from __future__ import annotations

import numpy as np
import pytest

from socialsynth.core.errors import InputError
from socialsynth.text.bertscore import BertScorer


@pytest.fixture(scope="session", params=["bert", "deberta"])
def tiny_encoder(request, tmp_path_factory, tiny_encoder_dir):
    """The shared tiny BERT, and a tiny DeBERTa (deberta-xlarge-mnli's architecture) with the same tokenizer."""
    if request.param == "bert":
        return str(tiny_encoder_dir)
    import torch
    from transformers import AutoTokenizer, DebertaConfig, DebertaModel

    path = tmp_path_factory.mktemp("tiny_deberta")
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    torch.manual_seed(0)
    DebertaModel(DebertaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=3,
                               num_attention_heads=2, intermediate_size=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def by_hand(scorer: BertScorer, cand: str, ref: str) -> float:
    """F1 of greedy cosine matching, one text at a time: [CLS] and [SEP] (first and last) may be matched but are
    not averaged over, as in BERTScore."""
    import torch

    def vectors(text):
        enc = scorer.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            h = scorer.model(**enc, output_hidden_states=True).hidden_states[scorer.layer][0]
        return torch.nn.functional.normalize(h.float(), dim=-1)

    c, r = vectors(cand), vectors(ref)
    sim = c @ r.T
    p, rec = float(sim.max(1).values[1:-1].mean()), float(sim.max(0).values[1:-1].mean())
    return 2 * p * rec / (p + rec)


def test_f1_matches_the_definition_and_is_one_for_identical_texts(tiny_encoder):
    scorer = BertScorer(tiny_encoder, device="cpu", batch_size=2)
    originals = ["the cat sat on the mat", "I love this, thank you so much", "short", "same words here"]
    rewrites = ["a dog sat on a rug", "this is terrible, go away", "", "same words here"]
    f1 = scorer.pair_similarity(originals, rewrites)
    assert f1[0] == pytest.approx(by_hand(scorer, rewrites[0], originals[0]), abs=1e-5)
    assert f1[1] == pytest.approx(by_hand(scorer, rewrites[1], originals[1]), abs=1e-5)
    assert f1[2] == 0.0  # an empty rewrite preserves nothing
    assert f1[3] == pytest.approx(1.0, abs=1e-5)
    p, r, f = scorer.score(rewrites[:2], originals[:2])
    np.testing.assert_allclose(f, 2 * p * r / (p + r), rtol=1e-6)


def test_layer_choice_and_a_missing_layer(tiny_encoder_dir):
    assert BertScorer(str(tiny_encoder_dir), device="cpu").layer == 2  # unknown model: the last layer
    assert BertScorer(str(tiny_encoder_dir), layer=1, device="cpu").layer == 1
    with pytest.raises(InputError, match="--content-layer"):
        BertScorer(str(tiny_encoder_dir), layer=7, device="cpu")


def test_same_as_the_bert_score_package_where_it_is_installed(tiny_encoder_dir):
    bert_score = pytest.importorskip("bert_score", reason="the bert-score package is optional (not needed)")
    cands, refs = ["a dog sat on a rug", "this is terrible, go away"], ["the cat sat", "I love this, thanks a lot"]
    _, _, expected = bert_score.score(cands, refs, model_type=str(tiny_encoder_dir), num_layers=2, lang="en")
    got = BertScorer(str(tiny_encoder_dir), layer=2, device="cpu").score(cands, refs)[2]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
