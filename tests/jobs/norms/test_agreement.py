"""Several judges against people and against each other (--judge-agreement with --judge), on hand-made tables and
through the command line with fake backends."""

from __future__ import annotations

import json

import pytest

from socialsynth.core.cli import run_main
from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.judge import (
    JudgeRatings,
    compare_judges,
    format_multi_report,
    majority_vote,
    sample_pairs,
)
from socialsynth.llm import BackendSpec
from tests.helpers import write_csv

SCORE = {"1": (4.0, 2.0), "2": (2.0, 4.0), "tie": (3.0, 3.0)}  # the two expected ratings behind a decision


def pairs_table(labels, topics):
    return [{"topic": t, "title1": "", "comment1": f"text {2 * k}", "title2": "", "comment2": f"text {2 * k + 1}",
             "formality": lab} for k, (lab, t) in enumerate(zip(labels, topics, strict=True))]


def judge_from_decisions(name, decisions):
    scores = {}
    for k, d in enumerate(decisions):
        scores[("", f"text {2 * k}")], scores[("", f"text {2 * k + 1}")] = SCORE[d]
    return JudgeRatings(name, {"formality": scores}, {"formality": "logits"}, {"formality": []})


def test_majority_vote_abstains_on_ties_and_calls_even_votes_a_tie():
    a = ["1", "2", "tie", "1", "tie"]
    b = ["1", "1", "tie", "2", "2"]
    c = ["2", "1", "tie", "tie", "tie"]
    assert majority_vote([a, b, c]) == ["1", "1", "tie", "tie", "2"]
    assert majority_vote([a]) == a


# Six pairs; the last has no usable human label. Judges A and B decide as below.
LABELS = ["1", "1", "2", "1", "2", "hard-to-tell"]
TOPICS = ["askscience", "askscience", "askscience", "gender", "gender", "gender"]
A = ["1", "1", "2", "2", "1", "tie"]
B = ["1", "2", "2", "1", "1", "2"]


def test_two_judges_ensemble_and_kappa_on_a_hand_table():
    rows = pairs_table(LABELS, TOPICS)
    report = compare_judges([judge_from_decisions("A", A), judge_from_decisions("B", B)], rows, ["formality"],
                            n_boot=200)
    a, b = report.people["A"]["formality"], report.people["B"]["formality"]
    # A: agrees on pairs 0-2, disagrees on 3 and 4; pair 5 is skipped (hard-to-tell)
    assert (a["all"].agree, a["all"].disagree, a["all"].ties, a["all"].skipped) == (3, 2, 0, 1)
    assert a["askscience"].rate == pytest.approx(1.0) and a["gender"].rate == pytest.approx(0.0)
    assert (b["all"].agree, b["all"].disagree) == (3, 2)
    assert b["askscience"].rate == pytest.approx(2 / 3) and b["gender"].rate == pytest.approx(1 / 2)
    for agreement in (*a.values(), *b.values()):
        low, high = agreement.ci
        assert low <= agreement.rate <= high
    # Ensemble: (1,1)->1 agree, (1,2)->tie, (2,2)->2 agree, (2,1)->tie, (1,1)->1 disagree, (tie,2)->2 skipped
    ens = report.ensemble["formality"]["all"]
    assert (ens.agree, ens.disagree, ens.ties, ens.skipped) == (2, 1, 2, 1)
    assert ens.rate == pytest.approx(2 / 3)
    # Between: same decision on pairs 0, 2, 4 -> 0.5; shares A 1:3 2:2 tie:1, B 1:3 2:3 -> pe = 15/36
    (between,) = report.between["formality"]
    assert between.judges == ("A", "B") and between.pairs == 6 and between.texts == 12
    assert between.agreement == pytest.approx(0.5)
    assert between.kappa == pytest.approx((0.5 - 15 / 36) / (1 - 15 / 36))  # = 1/7
    text = format_multi_report(report)
    assert "askscience*" in text and "gender*" not in text and "judge A" in text and "ensemble of 2" in text
    assert "A ~ B" in text


def test_between_judges_spearman_is_over_the_ratings_of_the_texts():
    rows = pairs_table(["1", "2"], ["t", "t"])
    first = JudgeRatings("x", {"formality": {("", "text 0"): 1.0, ("", "text 1"): 2.0, ("", "text 2"): 3.0,
                                             ("", "text 3"): 4.0}})
    second = JudgeRatings("y", {"formality": {("", "text 0"): 1.5, ("", "text 1"): 3.5, ("", "text 2"): 2.5,
                                              ("", "text 3"): 4.5}})
    (between,) = compare_judges([first, second], rows, ["formality"], n_boot=100).between["formality"]
    # ranks [1,2,3,4] vs [1,3,2,4]: d^2 = 2 -> rho = 1 - 6*2 / (4*15)
    assert between.spearman[0] == pytest.approx(0.8)
    assert between.to_dict()["spearman"] == 0.8 and len(between.to_dict()["spearman_ci95"]) == 2


def test_single_judge_has_no_ensemble_or_between():
    rows = pairs_table(LABELS, TOPICS)
    report = compare_judges([judge_from_decisions("A", A)], rows, ["formality"], n_boot=50)
    assert report.ensemble is None and report.between == {}
    assert report.to_dict()["ensemble"] is None


def test_max_pairs_draws_per_topic_with_the_seed():
    rows = pairs_table(["1"] * 10, ["a"] * 6 + ["b"] * 4)
    picked = sample_pairs(rows, 3, seed=5)
    assert [r["topic"] for r in picked].count("a") == 3 and [r["topic"] for r in picked].count("b") == 3
    assert picked == sample_pairs(rows, 3, seed=5)
    drawn = {r["comment1"] for seed in range(10) for r in sample_pairs(rows, 3, seed=seed) if r["topic"] == "a"}
    assert len(drawn) > 3  # another seed, another draw
    positions = [rows.index(r) for r in picked]
    assert positions == sorted(positions)  # file order kept
    assert sample_pairs(rows, None) == rows


# -- the command line with two fake judges ------------------------------------------------------------------------
def level_probs(level: int) -> list[float]:
    return [0.8 if k == level else 0.05 for k in range(1, 6)]


def marker_judge(inverted: bool):
    """Rates a text by its "[k]" marker (k = 1..5); inverted, as 6 - k."""
    def probs(chat):
        text = chat[-1]["content"]
        level = next(k for k in range(1, 6) if f"[{k}]" in text)
        return level_probs(6 - level if inverted else level)
    return probs


@pytest.fixture
def two_fake_judges(fake_backend_cls, monkeypatch):
    made = []

    def load(spec):
        backend = fake_backend_cls(choice_probs=marker_judge(spec.model == "fake-down"))
        backend.name = spec.model
        made.append(backend)
        return backend

    monkeypatch.setattr(BackendSpec, "load", load)
    return made


def run_cli(argv, capsys):
    try:
        rc = run_main(lambda: main(argv))
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def marked_pairs(tmp_path):
    rows = []
    for k, (hi, lo, topic) in enumerate([(5, 1, "askscience"), (4, 2, "askscience"), (5, 2, "gender"),
                                         (3, 1, "gender")]):
        first_higher = k % 2 == 0
        c1, c2 = (hi, lo) if first_higher else (lo, hi)
        rows.append({"topic": topic, "pair_id": f"p{k}", "title1": "T", "comment1": f"comment [{c1}] number {k}",
                     "title2": "T", "comment2": f"comment [{c2}] other {k}", "formality": "1" if first_higher else "2"})
    return write_csv(tmp_path / "pairs.csv", rows)


def test_cli_two_judges_rate_every_text_and_compare(tmp_path, capsys, two_fake_judges):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["--judge-agreement", str(marked_pairs(tmp_path)), "-o", str(out),
                               "--judge", "hf:fake-up:logits", "--judge", "hf:fake-down:logits"], capsys)
    assert rc == 0, err
    up, down = two_fake_judges
    assert (up.name, down.name) == ("fake-up", "fake-down")  # loaded in the order given
    # Each judge rated each of the 8 distinct texts once for the one dimension
    for backend in (up, down):
        (chats, _), = backend.score_calls
        assert len(chats) == 8
    (written,) = out.glob("judge_agreement_pairs_*.json")
    result = json.loads(written.read_text(encoding="utf-8"))
    names = [j["name"] for j in result["judges"]]
    assert names == ["hf:fake-up:logits", "hf:fake-down:logits"]
    assert [j["rating_method_used"] for j in result["judges"]] == [{"formality": "logits"}] * 2
    first, second = (j["report"]["formality"] for j in result["judges"])
    assert first["all"]["agreement"] == 1.0 and second["all"]["agreement"] == 0.0
    assert set(first) == {"askscience", "gender", "all"} and len(first["askscience"]["ci95"]) == 2
    assert result["report"] == result["judges"][0]["report"]  # the primary judge under the old fields
    assert result["rating_method"] == "logits" and result["rating_method_used"] == {"formality": "logits"}
    # Opposite judges: every vote is even, so the ensemble only ties
    ensemble = result["ensemble"]["report"]["formality"]["all"]
    assert (ensemble["ties"], ensemble["agreement"]) == (4, None)
    (between,) = result["between_judges"]["formality"]
    assert between["agreement"] == 0.0 and between["kappa"] == pytest.approx(-1.0)
    assert between["spearman"] == pytest.approx(-1.0)
    assert result["tuning_topics"] == ["askscience"]
    assert "judge hf:fake-up:logits" in stdout and "hf:fake-up:logits ~ hf:fake-down:logits" in stdout
    assert "askscience*" in stdout and "tuning groups (askscience)" in stdout


def test_cli_bad_judge_spec_is_one_line(tmp_path, capsys, two_fake_judges):
    rc, _, err = run_cli(["--judge-agreement", str(marked_pairs(tmp_path)), "-o", str(tmp_path / "o"),
                          "--judge", "hf:fake-up:vibes"], capsys)
    assert rc == 2 and "vibes" in err and len(err.strip().splitlines()) == 1
    assert two_fake_judges == []
