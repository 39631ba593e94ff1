"""BluePrint's embedding (seed 002): CLS pooling, no prefix, 128 tokens, no normalisation, on a plain HF checkpoint.

A 2-layer random BERT (conftest's tiny_encoder_dir, built from a config) stands in for multilingual-e5-large; the
Embedder must give what the seed's own code computes (AutoModel, first token of the last hidden state).
"""

from __future__ import annotations

import numpy as np
import pytest

from socialsynth.text.embeddings import Embedder

TEXTS = ["the cat sat on the mat", "rain again over the harbour today", "tea or coffee, that is the question"]


def _seed_cls(path, texts, max_length):
    """What BluePrint's EmbeddingManager computes: one text at a time, CLS token, fp32."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    for text in texts:
        inputs = tokenizer(text, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        with torch.no_grad():
            out.append(model(**inputs).last_hidden_state[:, 0, :].numpy()[0])
    return np.stack(out)


def _cosine(a, b):
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_cls_pooling_matches_the_seed_computation(tiny_encoder_dir):
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="", max_length=128,
                  normalize=False) as emb:
        got = emb.encode(TEXTS)
    want = _seed_cls(tiny_encoder_dir, TEXTS, 128)
    assert got.shape == want.shape
    assert _cosine(got, want).min() > 0.995  # bf16 on CPU against the seed's fp32
    assert np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(want, axis=1), rtol=0.03)  # not normalised


def test_cls_differs_from_mean_and_from_the_default(tiny_encoder_dir):
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="") as cls, \
            Embedder(str(tiny_encoder_dir), device="cpu", pooling="mean", prefix="") as mean, \
            Embedder(str(tiny_encoder_dir), device="cpu", prefix="") as default:
        v_cls, v_mean, v_default = cls.encode(TEXTS), mean.encode(TEXTS), default.encode(TEXTS)
    assert _cosine(v_cls, v_mean).max() < 0.99
    # a plain checkpoint without a sentence-transformers config gets mean pooling by default
    assert np.allclose(v_mean, v_default, atol=1e-3)
    assert np.allclose(np.linalg.norm(v_cls, axis=1), 1, atol=1e-3)  # normalised unless told otherwise


def test_max_tokens_cuts_the_text(tiny_encoder_dir):
    long_text = "the harbour was grey " + " ".join(f"word{i}" for i in range(200))
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="", max_length=8,
                  normalize=False) as emb:
        got = emb.encode([long_text])
        seen = emb.model.tokenize([long_text])["input_ids"]
    assert seen.shape[1] == 8  # the model sees the first 8 tokens only
    assert _cosine(got, _seed_cls(tiny_encoder_dir, [long_text], 8))[0] > 0.995


def test_prefix_changes_the_vector_and_empty_text_is_zero(tiny_encoder_dir):
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="passage: ") as pre, \
            Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="") as plain:
        a, b = pre.encode(TEXTS + ["  "]), plain.encode(TEXTS + ["  "])
    assert np.abs(a[:3] - b[:3]).max(axis=1).min() > 1e-4  # same weights, same text: only the prefix differs
    assert not a[3].any() and not b[3].any()


def test_cache_keeps_settings_apart(tiny_encoder_dir, tmp_path):
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="mean", prefix="", cache_dir=tmp_path) as mean:
        mean.encode(TEXTS)
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="", cache_dir=tmp_path,
                  max_length=128, normalize=False) as cls:
        v = cls.encode(TEXTS)
        assert cls.encoded == len(TEXTS)  # nothing of the mean-pooled run was reused
        assert cls.cache_name.endswith("|pooling=cls|max_length=128|raw")
    with Embedder(str(tiny_encoder_dir), device="cpu", pooling="cls", prefix="", cache_dir=tmp_path,
                  max_length=128, normalize=False) as again:
        assert np.allclose(again.encode(TEXTS), v) and again.encoded == 0


def test_unknown_pooling_is_refused(tiny_encoder_dir):
    with pytest.raises(ValueError, match="pooling"):
        Embedder(str(tiny_encoder_dir), device="cpu", pooling="max")
