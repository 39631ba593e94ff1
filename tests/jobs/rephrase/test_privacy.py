"""The linkability audit on constructed cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from socialsynth.jobs.rephrase.audit import (
    audit,
    format_audit,
    linkability,
    names_and_numbers,
    ngram_document_frequency,
    own_ranks,
    replay,
    replay_rates,
)


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """n orthonormal vectors: each original is similar only to itself."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    return q[:n]


def test_top1_is_half_when_half_the_posts_copy_their_original():
    orig = unit_vectors(10)
    syn = orig.copy()
    # synthetic 5..9 sit right on another original (i -> i-5 for the own one is far away)
    for i in range(5, 10):
        syn[i] = orig[(i + 1) % 10 if i < 9 else 0]
    result = linkability(syn, orig, own=list(range(10)))
    assert result["top1"] == 0.5
    assert result["n"] == 10 and result["chance_top1"] == 0.1
    assert result["own_similarity"]["q90"] == pytest.approx(1.0)


def test_top5_counts_own_original_ranked_within_five():
    orig = unit_vectors(10)
    # synthetic i: similarity to its own original 0.5, to originals 0..r-1 (others) higher: own rank = r + 1
    wanted_ranks = [1, 2, 3, 5, 6, 8, 10, 1, 4, 7]
    syn = []
    for i, rank in enumerate(wanted_ranks):
        v = 0.5 * orig[i]
        better = [j for j in range(10) if j != i][: rank - 1]
        for j in better:
            v = v + 0.6 * orig[j]
        syn.append(v / np.linalg.norm(v))
    syn = np.array(syn)
    ranks = own_ranks(syn @ orig.T, list(range(10)))
    assert ranks.tolist() == wanted_ranks
    result = linkability(syn, orig, list(range(10)))
    assert result["top1"] == 0.2
    assert result["top5"] == 0.6  # ranks 1, 2, 3, 5, 1, 4
    assert result["top5"] != result["top1"]


def test_ties_count_for_the_attacker_and_best_other_excludes_own():
    orig = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    syn = np.array([[1.0, 0.0]])
    result = linkability(syn, orig, own=[1])
    assert result["top1"] == 1.0
    assert result["best_other_similarity"]["mean"] == pytest.approx(1.0)  # original 0 is identical, not own


def test_names_and_numbers_skip_sentence_starts_and_subreddit_prefix():
    names, numbers = names_and_numbers(
        "Posted in the AskMen subreddit: My wife Priya and I moved to Dayton. Lease SAC-2291 costs $1,850. I'm 34."
    )
    assert "Priya" in names and "Dayton" in names
    assert "AskMen" not in names and "My" not in names and "I'm" not in names
    assert names_and_numbers("My (27F) boyfriend Marco (29M)")[0] == {"Marco"}  # no one-letter "names"
    assert {"2291", "1,850", "34"} <= numbers


def test_replay_detects_a_replayed_name_and_number_but_not_replaced_ones():
    original = "I'm 34 and my wife Priya works at Kessler in Dayton."
    replayed = "I'm 34 now and my partner Priya works at a shop in Boise."
    replaced = "I'm 41 and my husband Tom works at Acme in Boise."
    df = ngram_document_frequency([original])
    r = replay(original, replayed, df)
    assert r["replayed_names"] == ["Priya"]
    assert r["replayed_numbers"] == ["34"]
    r2 = replay(original, replaced, df)
    assert r2["replayed_names"] == [] and r2["replayed_numbers"] == []


def test_rare_ngrams_are_counted_only_when_rare_in_the_corpus():
    corpus = [
        "i do not know what to do about my landlord in reno",
        "i do not know what to do with my cat",
        "i do not know how to cook rice",
    ]
    df = ngram_document_frequency(corpus)
    synthetic = "honestly i do not know what to do about my landlord lol"
    r = replay(corpus[0], synthetic, df, max_df=1)
    # "i do not", "do not know", "not know what", "know what to", "what to do" occur in 2+ posts: not rare
    assert "i do not" not in r["replayed_ngrams"] and "what to do" not in r["replayed_ngrams"]
    assert "about my landlord" in r["replayed_ngrams"] and "to do about" in r["replayed_ngrams"]


def test_replay_rates_per_post_and_audit_combines_both():
    originals = ["My son Eli is 7.", "Our dog Rex is 12.", "Nothing special here at all."]
    synthetics = ["My son Eli is 9.", "Our cat Max is 3.", "Nothing special here at all."]
    df = ngram_document_frequency(originals)
    rates = replay_rates(originals, synthetics, df)
    assert rates["posts_names"] == 0.5  # Eli replayed, Rex not
    assert rates["n_posts_with_numbers"] == 1 and rates["posts_numbers"] == 0.0  # "12" replaced; "7" is one digit
    assert rates["posts_ngrams"] == pytest.approx(2 / 3, abs=1e-4)  # "my son eli" and the copy; dog post: none
    emb = unit_vectors(3)
    result = audit(originals, emb, synthetics, emb, [0, 1, 2])
    assert result["top1"] == 1.0 and result["replay"]["posts_names"] == 0.5
    table = format_audit({"m": result})
    assert "100%" in table and "top-1" in table
