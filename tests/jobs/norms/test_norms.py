"""parse_rating, Rater and NormRewriter, driven by a fake backend (no model)."""

from __future__ import annotations

import json

import pytest

from socialsynth.jobs.norms.rewrite import NormRewriter, Rater, RewriteFilters, parse_rating
from socialsynth.llm.base import GenerationParams
from socialsynth.prompts import load_dimension, load_template

FORMALITY = load_dimension("formality")

OVERLAPPING_YAML = """\
name: stiffness
description: test dimension whose level names contain each other
levels:
  - {name: Informal, rubric: a}
  - {name: Slightly Formal, rubric: b}
  - {name: Formal, rubric: c}
  - {name: Quite Formal, rubric: d}
  - {name: Very Formal, rubric: e}
"""


# -- parse_rating ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer,level",
    [
        ("Very Casual", 1),
        ("somewhat casual", 2),
        ("3 (Neutral in terms of Casual-Formal)", 3),
        ("I would rate it SOMEWHAT FORMAL.", 4),
        ("Somewhat Formal", 4),  # not "Very Formal", not "Formal"
        ("very formal!", 5),
        ("5 (Very Formal)", 5),
    ],
)
def test_parse_rating_level_names_any_case(answer, level):
    assert parse_rating(answer, FORMALITY) == (level, True)


def test_parse_rating_longest_level_name_wins(tmp_path):
    path = tmp_path / "stiffness.yaml"
    path.write_text(OVERLAPPING_YAML, encoding="utf-8")
    dim = load_dimension(str(path))
    assert parse_rating("It is very formal.", dim) == (5, True)
    assert parse_rating("quite formal", dim) == (4, True)
    assert parse_rating("Formal.", dim) == (3, True)
    assert parse_rating("slightly formal", dim) == (2, True)
    assert parse_rating("informal", dim) == (1, True)


@pytest.mark.parametrize("answer", ["neutral", "It's kind of in-between", "somewhere in between", "NEUTRAL."])
def test_parse_rating_neutral_words_mean_3(answer):
    assert parse_rating(answer, FORMALITY) == (3, True)


def test_parse_rating_no_rating_is_a_parsed_3():
    assert parse_rating("NO RATING", FORMALITY) == (3, True)


@pytest.mark.parametrize("answer,level", [("4", 4), ("1", 1), (" 5\n", 5), ("Rating: 2", 2), ("2 out of 5", 2)])
def test_parse_rating_bare_digit(answer, level):
    assert parse_rating(answer, FORMALITY) == (level, True)


@pytest.mark.parametrize("answer,level", [("I'd say 2.", 2), ("It's a 4.", 4)])
def test_parse_rating_digit_at_end_of_sentence(answer, level):
    assert parse_rating(answer, FORMALITY) == (level, True)


@pytest.mark.parametrize("answer", ["banana", "", "I like this comment", "10/10", "3.5"])
def test_parse_rating_garbage_falls_back_unparsed(answer):
    assert parse_rating(answer, FORMALITY) == (3, False)


# -- Rater ------------------------------------------------------------------------------------------------------
def test_rater_generate_parses_answers_and_counts_fallbacks(fake_backend_cls):
    answers = iter(["5 (Very Formal)", "banana", "2", "no idea at all", "NO RATING"])
    backend = fake_backend_cls(reply=lambda chat, key: next(answers))
    rater = Rater(backend, FORMALITY, method="generate")
    items = [("t", f"comment {i}") for i in range(5)]
    ratings = rater.rate(items, keys=[f"k{i}" for i in range(5)])
    assert [r.level for r in ratings] == [5, 3, 2, 3, 3]
    assert [r.parsed for r in ratings] == [True, False, True, False, True]
    assert [r.expected for r in ratings] == [5.0, 3.0, 2.0, 3.0, 3.0]
    assert ratings[1].raw == "banana"
    assert rater.fallbacks == 2
    # The rating prompts were sent greedily, with the caller's keys.
    ((chats, params, keys),) = backend.generate_calls
    assert params.temperature == 0
    assert keys == [f"k{i}" for i in range(5)]
    assert chats[0][-1]["content"].count("comment 0") == 1
    assert ratings[1].to_dict() == {"rating": 3, "expected": 3.0, "raw": "banana", "parsed": False}


def test_rater_fallbacks_accumulate_over_calls(fake_backend_cls):
    backend = fake_backend_cls(reply=lambda chat, key: "???")
    rater = Rater(backend, FORMALITY, method="generate")
    rater.rate([("t", "a"), ("t", "b")])
    rater.rate([("t", "c")])
    assert rater.fallbacks == 3


def test_rater_logits_uses_choice_probabilities(fake_backend_cls):
    backend = fake_backend_cls(choice_probs=lambda chat: [0.0, 0.1, 0.2, 0.6, 0.1])
    rater = Rater(backend, FORMALITY)  # default: one forward pass
    (r,) = rater.rate([("title", "comment")])
    assert r.level == 4
    assert r.expected == pytest.approx(1 * 0.0 + 2 * 0.1 + 3 * 0.2 + 4 * 0.6 + 5 * 0.1)
    assert r.probs == [0.0, 0.1, 0.2, 0.6, 0.1]
    assert backend.score_calls[0][1] == ["1", "2", "3", "4", "5"]
    assert not backend.generate_calls


def test_rater_rejects_unknown_method(fake_backend_cls):
    with pytest.raises(ValueError):
        Rater(fake_backend_cls(), FORMALITY, method="vibes")


# -- NormRewriter -----------------------------------------------------------------------------------------------
def marker_probs(chat):
    """Fake judge: a rewrite containing 'LEVEL<k>' gets level k; anything else is 'Somewhat Casual' (2)."""
    last = chat[-1]["content"]
    for k in range(1, 6):
        if f"LEVEL{k}" in last:
            return [0.9 if i == k else 0.025 for i in range(1, 6)]
    return [0.05, 0.8, 0.05, 0.05, 0.05]


def canned_rewrite(chat, key):
    comment_id, level = key.rsplit(":", 1)
    return f"Sure! Here's the rewritten comment:\nA fresh take number LEVEL{level} on post {comment_id}."


@pytest.fixture(scope="module")
def askmen_rows(askmen_file):
    rows = [json.loads(line) for line in askmen_file.read_text(encoding="utf-8").splitlines()]
    return list(enumerate(rows))


def make_rewriter(backend, levels=(1, 2, 3, 4, 5), **kw):
    params = GenerationParams(temperature=0.7, seed=11, max_new_tokens=64)
    return NormRewriter(backend, FORMALITY, Rater(backend, FORMALITY), params, levels, **kw)


def test_norm_rewriter_records_have_the_seed_fields(fake_backend_cls, askmen_rows):
    backend = fake_backend_cls(reply=canned_rewrite, choice_probs=marker_probs)
    job = make_rewriter(backend)
    rows = askmen_rows[3:5]
    records = job.process(rows)
    assert len(records) == 2
    for (idx, row), rec in zip(rows, records, strict=True):
        assert list(rec)[:6] == [
            "id",
            "idx",
            "original_comment",
            "original_rating",
            "original_score",
            "submission_title",
        ]
        assert rec["id"] == str(row["id"])
        assert rec["idx"] == idx
        assert rec["original_comment"] == row["comment"]
        assert rec["original_score"] == row["label"]
        assert rec["submission_title"] == row["submission_title"]
        assert rec["original_rating"] == 2  # the fake judge's answer for text without a marker
        for level in "12345":
            # Preamble cut, and each level's text is the answer to that level's request.
            assert rec[level] == f"A fresh take number LEVEL{level} on post {row['id']}."
            assert rec["rewrite_ratings"][level] == int(level)  # ratings line up with their rewrites
            f = rec["filters"][level]
            assert f["passed"] is True
            assert f["cut"] == ["preamble"]
            assert not any(f[k] for k in ("empty", "refusal", "unchanged", "degenerate", "truncated"))
            assert rec["generation"][level]["finish_reason"] == "stop"
        assert set(rec["rewrite_ratings"]) == set("12345")
        prov = rec["provenance"]
        template = load_template("norm_rewrite")
        assert prov["model"] == "fake-model"
        assert prov["rewrite_template"] == f"norm_rewrite@{template.hash}"
        assert prov["rating_template"].startswith("norm_rating@")
        assert prov["sampling"] == job.params.to_dict()
        assert prov["seed"] == 11
        assert prov["dimension"] == "formality"
        json.dumps(rec)  # serialisable as is
    # Requests are keyed by comment id and level (per-request seeds survive resumes and resharding).
    ((_, params, keys),) = backend.generate_calls
    assert keys == [f"{rows[0][1]['id']}:{lv}" for lv in range(1, 6)] + [
        f"{rows[1][1]['id']}:{lv}" for lv in range(1, 6)
    ]
    assert params is job.params


def test_norm_rewriter_flags_a_refusal(fake_backend_cls, askmen_rows):
    def reply(chat, key):
        if key.endswith(":3"):
            return "I'm sorry, but I can't help with rewriting this comment."
        return canned_rewrite(chat, key)

    backend = fake_backend_cls(reply=reply, choice_probs=marker_probs)
    (rec,) = make_rewriter(backend).process(askmen_rows[:1])
    assert rec["filters"]["3"]["refusal"] is True
    assert rec["filters"]["3"]["passed"] is False
    assert rec["filters"]["2"]["passed"] is True
    assert rec["3"].startswith("I'm sorry")  # kept, flagged, never silently dropped


def test_norm_rewriter_flags_empty_truncated_and_unchanged(fake_backend_cls, askmen_rows):
    original = askmen_rows[0][1]["comment"]

    def reply(chat, key):
        level = key.rsplit(":", 1)[1]
        return {"1": "", "2": original.upper(), "3": "NOOOOOOOOOOOOOOOO"}.get(level, canned_rewrite(chat, key))

    backend = fake_backend_cls(reply=reply, choice_probs=marker_probs)
    (rec,) = make_rewriter(backend, levels=(1, 2, 3)).process(askmen_rows[:1])
    f = rec["filters"]
    assert f["1"]["empty"] and not f["1"]["passed"]
    assert rec["rewrite_ratings"]["1"] is None and f["1"]["perplexity"] is None
    assert f["2"]["unchanged"] and not f["2"]["passed"]
    assert f["3"]["degenerate"] and not f["3"]["passed"]

    truncating = fake_backend_cls(reply=canned_rewrite, choice_probs=marker_probs, finish_reason="length")
    (rec,) = make_rewriter(truncating, levels=(5,)).process(askmen_rows[:1])
    assert rec["filters"]["5"]["truncated"] is True and rec["filters"]["5"]["passed"] is False


def test_norm_rewriter_flags_disfluent_rewrites(fake_backend_cls, askmen_rows):
    backend = fake_backend_cls(reply=canned_rewrite, choice_probs=marker_probs, perplexity=5000.0)
    job = make_rewriter(backend, levels=(1,), filters=RewriteFilters(max_perplexity=1000.0))
    (rec,) = job.process(askmen_rows[:1])
    assert rec["filters"]["1"]["disfluent"] is True
    assert rec["filters"]["1"]["perplexity"] == 5000.0
    assert rec["filters"]["1"]["passed"] is False


def test_norm_rewriter_only_requested_levels(fake_backend_cls, askmen_rows):
    backend = fake_backend_cls(reply=canned_rewrite, choice_probs=marker_probs)
    records = make_rewriter(backend, levels=(1, 5)).process(askmen_rows[:3])
    for rec in records:
        assert "1" in rec and "5" in rec
        assert not any(k in rec for k in ("2", "3", "4"))
        assert set(rec["rewrite_ratings"]) == {"1", "5"}
        assert set(rec["filters"]) == {"1", "5"}
        assert rec["rewrite_ratings"] == {"1": 1, "5": 5}
    ((chats, _, keys),) = backend.generate_calls
    assert len(chats) == 6
    assert [k.rsplit(":", 1)[1] for k in keys] == ["1", "5"] * 3
    assert "Very Casual" in chats[0][-1]["content"] and "Very Formal" in chats[1][-1]["content"]


def test_norm_rewriter_uses_submission_score_when_no_label(fake_backend_cls):
    backend = fake_backend_cls(reply=canned_rewrite, choice_probs=marker_probs)
    rows = [(0, {"id": 7, "comment": "hello there friends", "score": 12})]
    (rec,) = make_rewriter(backend, levels=(2,)).process(rows)
    assert rec["id"] == "7"
    assert rec["original_score"] == 12
    assert rec["submission_title"] == ""


def test_likelihood_rater_turns_level_loglikelihoods_into_probabilities(fake_backend_cls):
    """The level whose description makes the comment most likely wins; probabilities are a softmax over levels."""
    from socialsynth.jobs.norms.rewrite import Rater
    from socialsynth.prompts import load_dimension

    dim = load_dimension("formality")

    def loglik(chat, text):  # "formal" texts are likeliest under level 5, others under level 1
        level = next(i for i, lv in enumerate(dim.levels, 1) if lv.name in chat[-1]["content"])
        target = 5 if "advisable" in text else 1
        return -abs(level - target) * 2.0

    backend = fake_backend_cls(loglik=loglik)
    ratings = Rater(backend, dim, "likelihood").rate([("t", "It is advisable to wait."), ("t", "lol nah")])
    assert [r.level for r in ratings] == [5, 1]
    assert ratings[0].expected > 4.5 > 1.5 > ratings[1].expected
    assert abs(sum(ratings[0].probs) - 1) < 1e-9 and ratings[0].probs[3] > ratings[0].probs[2]
    chats, texts = backend.continuation_calls[0]
    assert len(chats) == 10 and texts[:5] == ["It is advisable to wait."] * 5
    assert all(dim.levels[i].name in chats[i][-1]["content"] for i in range(5))


def test_score_continuations_matches_an_unbatched_forward_pass(sharp_backend):
    """The likelihood method's scorer: batched, prefix-cached sums equal a plain forward pass per sequence."""
    import torch

    system = "You write Reddit comments in many different styles for a research project on norms. " * 2
    chats = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"Write a {w} comment."}]
        for w in ("very casual", "very formal", "neutral")
    ]
    texts = ["lol ok", "It is advisable to consider this carefully.", "I think that works."]
    got = sharp_backend.score_continuations(chats, texts)
    for chat, text, value in zip(chats, texts, got, strict=True):
        prompt = sharp_backend.encode_chat(chat)
        cont = sharp_backend.tokenizer.encode(text, add_special_tokens=False)
        with torch.inference_mode():
            logp = sharp_backend.model(input_ids=torch.tensor([prompt + cont])).logits[0].float().log_softmax(-1)
        expected = sum(logp[len(prompt) - 1 + t, cont[t]].item() for t in range(len(cont)))
        assert abs(value - expected) < 1e-3 * max(1.0, abs(expected))
