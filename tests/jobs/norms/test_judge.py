"""Rater agreement with human pairwise labels (socialsynth.jobs.norms.judge), with a fake rater."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.norms.judge import format_report, judge_agreement, load_pairs
from socialsynth.jobs.norms.rewrite import Rater

FORMAL = "It is advisable to prepare thoroughly. FORMALTEXT"
CASUAL = "lol just wing it CASUALTEXT"
MID = "Bring some notes. MIDTEXT"
MID2 = "Prepare a little. MIDTEXT"
DATA = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists()) / "data"


def probs_by_marker(chat):
    last = chat[-1]["content"]
    if "FORMALTEXT" in last:
        return [0.0, 0.0, 0.1, 0.2, 0.7]
    if "CASUALTEXT" in last:
        return [0.7, 0.2, 0.1, 0.0, 0.0]
    return [0.2, 0.2, 0.2, 0.2, 0.2]


def pair(topic, c1, c2, label, title1="T", title2="T"):
    return {"topic": topic, "title1": title1, "comment1": c1, "title2": title2, "comment2": c2, "formality": label}


ROWS = [
    pair("a", FORMAL, CASUAL, "1"),  # agree
    pair("a", CASUAL, FORMAL, "2"),  # agree
    pair("a", FORMAL, CASUAL, "2"),  # disagree
    pair("b", CASUAL, FORMAL, 2),  # agree (label read as a number from CSV)
    pair("b", MID, MID2, "1"),  # tie: same expected rating
    pair("b", FORMAL, CASUAL, "hard-to-tell"),  # skipped
    pair("b", FORMAL, CASUAL, ""),  # skipped
    pair("a", FORMAL, CASUAL, None),  # skipped
]


def test_judge_agreement_counts(fake_backend_cls):
    backend = fake_backend_cls(choice_probs=probs_by_marker)
    report = judge_agreement(lambda dim: Rater(backend, dim), ROWS, ["formality"])
    by_topic = report.by_dimension["formality"]
    total = by_topic["all"]
    assert (total.agree, total.disagree, total.ties, total.skipped) == (3, 1, 1, 3)
    assert total.rate == pytest.approx(3 / 4)
    a, b = by_topic["a"], by_topic["b"]
    assert (a.agree, a.disagree, a.ties, a.skipped) == (2, 1, 0, 1)
    assert (b.agree, b.disagree, b.ties, b.skipped) == (1, 0, 1, 2)
    assert report.to_dict()["formality"]["all"] == {
        "agreement": 0.75,
        "agree": 3,
        "disagree": 1,
        "ties": 1,
        "skipped": 3,
    }
    assert report.methods_used == {"formality": "logits"} and report.method_notes == {"formality": []}
    # Each distinct (title, comment) is rated once per dimension.
    assert len(backend.score_calls) == 1
    assert len(backend.score_calls[0][0]) == 4


def test_judge_agreement_per_dimension(fake_backend_cls):
    backend = fake_backend_cls(choice_probs=probs_by_marker)
    rows = [{**pair("a", FORMAL, CASUAL, "1"), "politeness": "2"}]
    report = judge_agreement(lambda dim: Rater(backend, dim), rows, ["formality", "politeness"])
    assert report.by_dimension["formality"]["all"].agree == 1
    assert report.by_dimension["politeness"]["all"].disagree == 1
    text = format_report(report)
    assert "formality" in text and "politeness" in text
    assert "100.0%" in text and "0.0%" in text


def test_judge_agreement_without_labels_has_no_rate(fake_backend_cls):
    backend = fake_backend_cls(choice_probs=probs_by_marker)
    report = judge_agreement(lambda dim: Rater(backend, dim), [pair("a", FORMAL, CASUAL, "")], ["formality"])
    assert report.by_dimension["formality"]["all"].rate is None
    assert report.to_dict()["formality"]["all"]["agreement"] is None
    assert "-" in format_report(report)


def test_load_pairs_sample_csv():
    rows, dims = load_pairs(DATA / "judge_pairs_sample.csv")
    assert len(rows) == 12
    assert set(dims) == {"formality", "supportiveness", "sarcasm", "politeness", "humor"}
    with pytest.raises(InputError) as e:
        load_pairs(DATA / "judge_pairs_sample.csv", topics=["nosuchtopic"])
    assert "judge_pairs_sample.csv" in str(e.value)


def test_load_pairs_without_dimension_columns(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("topic,comment1,comment2,toxicity\na,x,y,1\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_pairs(path)
    assert "pairs.csv" in str(e.value)
