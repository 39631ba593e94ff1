"""Embedder batching, order, prefixes and the SQLite content-hash cache, with a fake encoder (no downloads)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from socialsynth.text.embeddings import CACHE_FILENAME, Embedder, EmbeddingCache, cache_key, default_prefix


class FakeEncoder:
    """SentenceTransformer-like: a deterministic vector per text (from its hash), records every call."""

    def __init__(self, dim: int = 8, salt: str = ""):
        self.dim = dim
        self.salt = salt
        self.calls: list[list[str]] = []
        self.max_seq_length = 512

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True):
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            rng = np.random.default_rng(abs(hash((self.salt, t))) % (2**32))
            v = rng.normal(size=self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, dtype=np.float32)

    @property
    def n_texts(self) -> int:
        return sum(len(c) for c in self.calls)


def expected(enc: FakeEncoder, text: str, prefix: str = "") -> np.ndarray:
    return FakeEncoder(enc.dim, enc.salt).encode([prefix + text])[0]


def test_order_preserved_duplicates_once_and_sorted_by_length():
    enc = FakeEncoder()
    emb = Embedder("fake/model", encoder=enc)
    texts = ["bb", "a", "cccc", "bb", "ddd"]
    out = emb.encode(texts)
    assert out.shape == (5, 8) and out.dtype == np.float32
    for row, t in zip(out, texts, strict=True):
        np.testing.assert_allclose(row, expected(enc, t), atol=1e-6)
    assert enc.calls == [["cccc", "ddd", "bb", "a"]]  # distinct texts, longest first


def test_empty_text_gives_zero_vector_and_is_not_encoded(tmp_path):
    enc = FakeEncoder()
    emb = Embedder("fake/model", encoder=enc, cache_dir=tmp_path)
    out = emb.encode(["", "hello", "   "])
    assert not out[0].any() and not out[2].any()
    assert np.isclose(np.linalg.norm(out[1]), 1.0)
    assert enc.calls == [["hello"]]
    assert len(emb.cache) == 1
    assert emb.encode([]).shape == (0, 8)


def test_cache_hits_and_misses(tmp_path):
    enc = FakeEncoder()
    emb = Embedder("fake/model", encoder=enc, cache_dir=tmp_path, chunk_size=2)
    first = emb.encode(["one", "two", "three"])
    assert enc.n_texts == 3 and len(enc.calls) == 2  # chunks of 2
    assert emb.cache.stats() == {"hits": 0, "misses": 3, "ignored": 0}
    second = emb.encode(["three", "four", "one"])
    assert enc.n_texts == 4 and enc.calls[-1] == ["four"]
    assert emb.cache.hits == 2 and emb.cache.misses == 4
    np.testing.assert_allclose(second[0], first[2], atol=1e-6)
    np.testing.assert_allclose(second[2], first[0], atol=1e-6)


def test_reload_from_disk_in_new_embedder(tmp_path):
    enc = FakeEncoder()
    a = Embedder("fake/model", encoder=enc, cache_dir=tmp_path).encode(["x y z", "p q"])
    enc2 = FakeEncoder()
    emb2 = Embedder("fake/model", encoder=enc2, cache_dir=tmp_path)
    b = emb2.encode(["p q", "x y z"])
    assert enc2.calls == []
    np.testing.assert_allclose(b, a[::-1], atol=1e-6)


def test_two_models_never_mix(tmp_path):
    enc_a, enc_b = FakeEncoder(salt="a"), FakeEncoder(salt="b")
    va = Embedder("model-a", encoder=enc_a, cache_dir=tmp_path).encode(["same text"])
    vb = Embedder("model-b", encoder=enc_b, cache_dir=tmp_path).encode(["same text"])
    assert enc_b.n_texts == 1
    assert not np.allclose(va, vb)
    # a different dimension under the same name is not served from the cache either
    enc_c = FakeEncoder(dim=4)
    Embedder("model-a", encoder=enc_c, cache_dir=tmp_path).encode(["same text"])
    assert enc_c.n_texts == 1


def test_prefix_for_e5_and_override(tmp_path):
    assert default_prefix("intfloat/multilingual-e5-large") == "passage: "
    assert default_prefix("intfloat/e5-base-v2") == "passage: "
    assert default_prefix("intfloat/multilingual-e5-large-instruct") == ""
    assert default_prefix("embedded") == ""
    enc = FakeEncoder()
    emb = Embedder("intfloat/multilingual-e5-large", encoder=enc, cache_dir=tmp_path)
    out = emb.encode(["bonjour"])
    assert enc.calls == [["passage: bonjour"]]
    np.testing.assert_allclose(out[0], expected(enc, "bonjour", "passage: "), atol=1e-6)
    enc2 = FakeEncoder()
    Embedder("intfloat/multilingual-e5-large", encoder=enc2, cache_dir=tmp_path, prefix="").encode(["bonjour"])
    assert enc2.calls == [["bonjour"]]  # another prefix is another cache key
    assert cache_key("m", "passage: ", "t") != cache_key("m", "", "passage: t")


def test_max_length_is_set_on_encoder():
    enc = FakeEncoder()
    Embedder("fake/model", encoder=enc, max_length=128)
    assert enc.max_seq_length == 128


def test_torn_row_is_ignored_and_recomputed(tmp_path):
    enc = FakeEncoder()
    emb = Embedder("fake/model", encoder=enc, cache_dir=tmp_path)
    good = emb.encode(["alpha", "beta"])
    emb.cache.close()
    key = cache_key("fake/model", "", "alpha")
    with sqlite3.connect(tmp_path / CACHE_FILENAME) as conn:
        conn.execute("UPDATE vectors SET vec = substr(vec, 1, 10) WHERE key = ?", (key,))
    enc2 = FakeEncoder()
    emb2 = Embedder("fake/model", encoder=enc2, cache_dir=tmp_path)
    again = emb2.encode(["alpha", "beta"])
    assert enc2.calls == [["alpha"]] and emb2.cache.ignored == 1
    np.testing.assert_allclose(again, good, atol=1e-6)
    enc3 = FakeEncoder()
    Embedder("fake/model", encoder=enc3, cache_dir=tmp_path).encode(["alpha"])
    assert enc3.calls == []  # the repaired row was written back


def test_corrupt_file_moved_aside(tmp_path):
    (tmp_path / CACHE_FILENAME).write_bytes(b"this is not sqlite" * 100)
    enc = FakeEncoder()
    emb = Embedder("fake/model", encoder=enc, cache_dir=tmp_path)
    emb.encode(["alpha"])
    assert enc.n_texts == 1 and len(emb.cache) == 1
    assert list(tmp_path.glob(CACHE_FILENAME + ".corrupt-*"))


def test_failed_append_leaves_cache_unchanged(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.put_many("m", ["k1"], np.ones((1, 4)))
    with pytest.raises(sqlite3.Error):
        cache.put_many("m", ["k2", ["not", "a", "key"]], np.ones((2, 4)))  # second row fails mid-transaction
    assert len(cache) == 1  # k2 was rolled back with it
    assert set(cache.get_many("m", ["k1", "k2"])) == {"k1"}


def test_float16_cache(tmp_path):
    enc = FakeEncoder()
    a = Embedder("fake/model", encoder=enc, cache_dir=tmp_path, cache_dtype="float16").encode(["t1"])
    b = Embedder("fake/model", encoder=FakeEncoder(), cache_dir=tmp_path, cache_dtype="float16").encode(["t1"])
    assert b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-3)
