"""Best of n rewrites (--candidates N): every candidate kept in the record, the selection rule's pick, N = 1 as
without the flag, resume, bad values. Fake backends whose rewrites, ratings and similarities the tests set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.rewrite import NormRewriter, Rater
from socialsynth.llm import BackendSpec
from socialsynth.llm.base import GenerationParams, request_seed
from socialsynth.prompts import load_dimension

FORMALITY = load_dimension("formality")
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ROWS = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
PARAMS = GenerationParams(temperature=0.7, seed=11, max_new_tokens=64)

# What each candidate k says at each target level: a marker the fake judge rates and the fake embedder scores.
# level 5: k0 rated 3 (sim .90), k1 rated 5 (sim .55), k2 rated 4 (sim .99)
#   w = 0 (default): scores -2, 0, -1 -> k1;   w = 3: -2 + 2.7 = 0.7, 0 + 1.65 = 1.65, -1 + 2.97 = 1.97 -> k2
# level 1: k0 a refusal rated 1 and k1 rated 1 with sim .30 (< --min-similarity 0.5) fail a check; k2 rated 2 -> k2
# level 3: k0 a refusal; k1 rated 2 and k2 rated 4, both sim .70: a tie -> k1
SCRIPT = {
    5: ["R3 S90 Well, this one is in between.", "R5 S55 It is most advisable to proceed.",
        "R4 S99 One would proceed, I believe."],
    1: ["R1 S90 I'm sorry, but I can't help with that.", "R1 S30 lol whatever dude", "R2 S60 eh just go for it"],
    3: ["R3 S90 I'm sorry, but I can't help with that.", "R2 S70 yeah you could go", "R4 S70 You may proceed."],
}


def scripted_reply(chat, key):
    parts = key.split(":")
    level, k = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    return SCRIPT[level][k]


def marker_probs(chat):
    """The fake judge: a text with "R<k>" gets level k with certainty (expected rating k); others level 3."""
    found = re.search(r"\bR([1-5])\b", chat[-1]["content"])
    level = int(found.group(1)) if found else 3
    return [1.0 if i == level else 0.0 for i in range(1, 6)]


class MarkerSimilarity:
    """A content scorer: "S<nn>" in a rewrite is its similarity nn/100 to the original (0 without a marker)."""

    name = "marker-similarity"
    metric = "cosine"

    def pair_similarity(self, originals, texts):
        return np.array([int(m.group(1)) / 100 if (m := re.search(r"\bS(\d\d)\b", t)) else 0.0 for t in texts])


def rewriter(backend, candidates, weight=None, levels=(1, 5)):
    """The rewriter with the fake content scorer; ``weight`` None: the default --selection-weight."""
    extra = {} if weight is None else {"selection_weight": weight}
    return NormRewriter(backend, FORMALITY, Rater(backend, FORMALITY, "logits"), PARAMS, levels, MarkerSimilarity(),
                        candidates=candidates, **extra)


@pytest.fixture
def scripted(fake_backend_cls):
    return fake_backend_cls(reply=scripted_reply, choice_probs=marker_probs)


# -- the rule, on NormRewriter ----------------------------------------------------------------------------------
def test_three_candidates_are_all_kept_and_the_rule_picks_the_hand_checked_one(scripted):
    (rec,) = rewriter(scripted, 3, levels=(1, 3, 5)).process([(0, ROWS[0])])
    cid = ROWS[0]["id"]
    high = rec["candidates"]["5"]
    assert [c["text"] for c in high] == SCRIPT[5]
    assert [c["rating"] for c in high] == [3.0, 5.0, 4.0]
    assert [c["similarity"] for c in high] == [0.9, 0.55, 0.99]
    assert [c["selection_score"] for c in high] == [-2.0, 0.0, -1.0]
    assert [c["failed_checks"] for c in high] == [[], [], []]
    assert [c["kept"] for c in high] == [False, True, False]
    assert [c["request_seed"] for c in high] == [request_seed(11, k) for k in (f"{cid}:5", f"{cid}:5:1", f"{cid}:5:2")]
    assert rec["5"] == SCRIPT[5][1]  # the kept one is the level's rewrite, rated and filtered as before
    assert rec["rewrite_ratings"]["5"] == 5 and rec["rewrite_ratings_expected"]["5"] == 5.0
    assert rec["filters"]["5"]["similarity"] == 0.55
    assert rec["generation"]["5"]["request_seed"] == request_seed(11, f"{cid}:5:1")

    low = rec["candidates"]["1"]  # the two closest fail a check: a refusal, and too little of the original kept
    assert [c["failed_checks"] for c in low] == [["refusal"], ["low_similarity"], []]
    assert [c["selection_score"] for c in low] == [0.0, 0.0, -1.0]
    assert [c["kept"] for c in low] == [False, False, True]
    assert rec["1"] == SCRIPT[1][2]

    mid = rec["candidates"]["3"]  # k1 and k2 tie: the lower k is kept
    assert [c["selection_score"] for c in mid] == [0.0, -1.0, -1.0]
    assert [c["kept"] for c in mid] == [False, True, False]

    assert rec["selection"]["judge"] == "generator:fake-model:logits" and rec["selection"]["n"] == 3
    assert rec["selection"]["weight"] == 0.0
    assert "below --min-similarity 0.5" in rec["selection"]["rule"]
    assert "-|expected rating - target level| + 0 * content similarity" in rec["selection"]["rule"]
    assert rec["provenance"]["candidates"] == 3
    assert rec["provenance"]["selection_judge"] == "generator:fake-model:logits"
    json.dumps(rec)


def test_the_selection_weight_changes_the_pick(scripted):
    (rec,) = rewriter(scripted, 3, weight=3.0).process([(0, ROWS[0])])
    assert [c["selection_score"] for c in rec["candidates"]["5"]] == pytest.approx([0.7, 1.65, 1.97])
    assert [c["kept"] for c in rec["candidates"]["5"]] == [False, False, True]
    assert rec["5"] == SCRIPT[5][2]
    assert "+ 3 * content similarity" in rec["selection"]["rule"] and rec["selection"]["weight"] == 3.0


def test_candidates_and_originals_are_rated_in_one_call_and_only_kept_ones_measured(scripted):
    rows = [(0, ROWS[0]), (1, ROWS[1])]
    records = rewriter(scripted, 3).process(rows)
    ((chats, _, keys),) = scripted.generate_calls
    assert keys[:3] == [f"{ROWS[0]['id']}:1", f"{ROWS[0]['id']}:1:1", f"{ROWS[0]['id']}:1:2"]
    assert len(keys) == len(set(keys)) == 2 * 2 * 3
    (rating_call,) = scripted.score_calls  # 2 originals + 2 comments x 2 levels x 3 candidates
    assert len(rating_call[0]) == 2 + 12
    (measured,) = scripted.perplexity_calls  # fluency only for the kept rewrites
    assert measured == [rec[lv] for rec in records for lv in ("1", "5")]


def test_an_empty_candidate_has_no_rating_or_score_and_ranks_after_the_others(fake_backend_cls):
    backend = fake_backend_cls(reply=lambda chat, key: "" if key.count(":") == 1 else "R2 S60 fine whatever",
                               choice_probs=marker_probs)
    (rec,) = rewriter(backend, 2, levels=(2,), weight=1.0).process([(0, ROWS[0])])
    empty, other = rec["candidates"]["2"]
    assert empty["text"] == "" and empty["rating"] is None and empty["selection_score"] is None
    assert "empty" in empty["failed_checks"] and not empty["kept"]
    assert other["kept"] and rec["2"] == "R2 S60 fine whatever"


def test_one_candidate_is_the_record_without_the_flag(scripted):
    """N = 1: the request keys of today, no candidates or selection fields, and candidate 0 of N = 3 is the same
    sample (same key, same seed, same text) as the N = 1 rewrite."""
    (single,) = rewriter(scripted, 1).process([(0, ROWS[0])])
    cid = ROWS[0]["id"]
    assert scripted.generate_calls[0][2] == [f"{cid}:1", f"{cid}:5"]
    assert list(single) == ["id", "idx", "original_comment", "original_rating", "original_score", "submission_title",
                            "1", "5", "rewrite_ratings", "rewrite_ratings_expected", "original_rating_detail",
                            "filters", "generation", "status", "provenance"]
    assert "candidates" not in single["provenance"] and "selection_judge" not in single["provenance"]
    (several,) = rewriter(scripted, 3).process([(0, ROWS[0])])
    for level in ("1", "5"):
        first = several["candidates"][level][0]
        assert first["text"] == single[level]
        assert first["request_seed"] == single["generation"][level]["request_seed"]


# -- the job ----------------------------------------------------------------------------------------------------
@pytest.fixture
def job_backends(fake_backend_cls, monkeypatch):
    """BackendSpec.load gives a fresh scripted fake each time; every one made is kept."""
    made = []

    def load(spec):
        made.append(fake_backend_cls(reply=scripted_reply, choice_probs=marker_probs))
        return made[-1]

    monkeypatch.setattr(BackendSpec, "load", load)
    return made


def run_job(tmp_path, run_cli, *extra):
    tmp_path.mkdir(exist_ok=True)
    data = tmp_path / "askmen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    argv = ["-r", "askmen", "-n", "formality", "--input", data, "-o", tmp_path / "out", "--embedding-model", "none",
            "--levels", "1,5", "--rating-method", "logits", "-b", "1", *extra]
    code, out, err = run_cli(main, argv)
    path = tmp_path / "out" / "askmen_formality.jsonl"
    return code, err, path


def test_the_job_with_three_candidates_resumes_to_the_same_records(tmp_path, run_cli, job_backends):
    code, err, path = run_job(tmp_path, run_cli, "--candidates", "3")
    assert code == 0, err
    full = path.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in full]
    assert [r["id"] for r in records] == [r["id"] for r in ROWS]
    for rec in records:  # no content model: similarity 0, closeness alone decides
        assert [c["kept"] for c in rec["candidates"]["5"]] == [False, True, False]
        assert [c["similarity"] for c in rec["candidates"]["5"]] == [None] * 3
        assert rec["selection"]["n"] == 3 and rec["provenance"]["candidates"] == 3

    path.write_text(full[0] + "\n", encoding="utf-8")  # as if killed after the first comment
    code, err, _ = run_job(tmp_path, run_cli, "--candidates", "3")
    assert code == 0, err
    assert path.read_text(encoding="utf-8").splitlines() == full
    resumed_keys = [key for _, _, keys in job_backends[-1].generate_calls for key in keys]
    assert {k.split(":")[0] for k in resumed_keys} == {r["id"] for r in ROWS[1:]}

    path.write_text(full[0] + "\n", encoding="utf-8")  # resuming with another N would mix two kinds of record
    code, err, _ = run_job(tmp_path, run_cli, "--candidates", "2")
    assert code == 2 and "candidates: 3 -> 2" in err, err


def test_with_a_judge_the_generator_still_selects_and_the_judge_rates_the_kept_ones(tmp_path, run_cli,
                                                                                    job_backends):
    code, err, path = run_job(tmp_path, run_cli, "--candidates", "3", "--judge", "embedded:likelihood")
    assert code == 0, err
    for rec in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()):
        assert rec["selection"]["judge"] == "generator:embedded:logits" != rec["judges"][0]
        assert [c["rating"] for c in rec["candidates"]["5"]] == [3.0, 5.0, 4.0]  # the generator's (selector's)
        assert [c["kept"] for c in rec["candidates"]["5"]] == [False, True, False]
        assert rec["5"] == SCRIPT[5][1] and "5" in rec["ratings"]["embedded:likelihood"]


def test_the_job_without_the_flag_and_with_one_candidate_write_the_same_file(tmp_path, run_cli, job_backends):
    code, err, path = run_job(tmp_path / "a", run_cli)
    assert code == 0, err
    code, err, other = run_job(tmp_path / "b", run_cli, "--candidates", "1")
    assert code == 0, err
    assert path.read_bytes() == other.read_bytes()
    assert "candidates" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("argv,flag", [
    (["--candidates", "0"], "--candidates"),
    (["--candidates", "-2"], "--candidates"),
    (["--candidates", "three"], "--candidates"),
    (["--selection-weight", "-1"], "--selection-weight"),
    (["--selection-weight", "nan"], "--selection-weight"),
])
def test_bad_candidate_settings_are_one_line_errors(tmp_path, bad_flag, argv, flag, job_backends):
    bad_flag(main, ["-r", "askmen", "-n", "formality", "-o", tmp_path / "out", *argv], flag)
    assert not job_backends  # refused before any model loads


def test_several_candidates_with_greedy_decoding_are_refused(tmp_path, bad_flag, job_backends):
    line = bad_flag(main, ["-r", "askmen", "-n", "formality", "-o", tmp_path / "out", "--candidates", "3",
                           "--temperature", "0"], "--candidates")
    assert "greedy" in line and not job_backends


def test_help_states_the_selection_rule(run_cli):
    code, out, _ = run_cli(main, ["--help"])
    assert code == 0
    text = " ".join(out.split())
    assert "--candidates N" in text and "--selection-weight W" in text
    assert "below --min-similarity" in text and "-|expected rating - target level| + W * content similarity" in text
