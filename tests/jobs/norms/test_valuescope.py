"""--preset valuescope: the seed's generator, prompts, rating parser and sampling, DialoGPT-style fluency and
BERTScore content filters (tiny models built from configs, a fake generator)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from socialsynth.core.run import read_run_record
from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.rewrite import parse_rating, parse_rating_seed, rating_chat, rewrite_chat
from socialsynth.llm import BackendSpec
from socialsynth.llm.loading import END_OF_TURN_MARKERS
from socialsynth.prompts import load_dimension, load_template

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ROWS = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()[:4]]
FORMALITY = load_dimension("formality")


def test_print_config_shows_the_seeds_settings(run_cli):
    code, out, err = run_cli(main, ["--preset", "valuescope", "-r", "askmen", "-n", "formality", "--print-config"])
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["model"] == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert (cfg["temperature"], cfg["top_p"], cfg["top_k"], cfg["repetition_penalty"], cfg["max_new_tokens"]) == (
        1.0, 1.0, 0, 1.0, 256)
    assert (cfg["rewrite_template"], cfg["rating_template"]) == ("norm_rewrite_valuescope", "norm_rating_valuescope")
    assert (cfg["rating_method"], cfg["rating_parse"], cfg["rating_sampling"]) == ("generate", "seed", "rewrite")
    assert (cfg["fluency_model"], cfg["fluency_cut"]) == ("microsoft/DialoGPT-medium", "mean+sd")
    assert (cfg["content_metric"], cfg["content_model"], cfg["min_similarity"]) == (
        "bertscore", "microsoft/deberta-xlarge-mnli", 0.5)
    assert cfg["predictions_file"] is True
    assert "<|eot_id|>" in END_OF_TURN_MARKERS  # generation stops on eos and Llama 3's end of turn


def test_flags_override_the_preset_and_our_defaults_stay(run_cli):
    code, out, _ = run_cli(main, ["--preset", "valuescope", "-r", "askmen", "-n", "formality", "--temperature",
                                  "0.3", "--content-metric", "cosine", "--print-config"])
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["temperature"] == 0.3 and cfg["content_metric"] == "cosine" and cfg["top_p"] == 1.0
    code, out, _ = run_cli(main, ["-r", "askmen", "-n", "formality", "--print-config"])
    cfg = yaml.safe_load(out)
    assert (cfg["rating_method"], cfg["rating_parse"], cfg["content_metric"], cfg["fluency_model"]) == (
        "likelihood", "lenient", "cosine", "generator")


@pytest.mark.parametrize("flag, value", [("--fluency-cut", "median"), ("--fluency-cut", "-3"),
                                         ("--content-metric", "bleu"), ("--rating-parse", "strict"),
                                         ("--content-layer", "-1"), ("--filter-accuracy", "1.5")])
def test_bad_filter_settings_are_one_line_naming_the_flag(run_cli, flag, value):
    code, _, err = run_cli(main, ["-r", "askmen", "-n", "formality", flag, value])
    assert code == 2 and flag.lstrip("-").replace("-", "_")[:8] in err.replace("-", "_")
    assert "Traceback" not in err


def test_the_seed_prompts_keep_the_seeds_layout():
    rewrite = rewrite_chat(FORMALITY, load_template("norm_rewrite_valuescope"), "T?", "my comment", 2)
    user = rewrite[1]["content"]
    order = [user.index(s) for s in ("Requirements:", '"Somewhat Casual"', "RATING DEFINITIONS:",
                                     "POST TITLE (context): T?", "COMMENT: my comment", "TASK:")]
    assert order == sorted(order) and user.endswith("REWRITTEN COMMENT:")
    rating = rating_chat(FORMALITY, load_template("norm_rating_valuescope"), "T?", "my comment")
    assert len(rating) == 2 and "NO RATING" in rating[0]["content"]  # no few-shot turns, as the seed
    assert rating[1]["content"].startswith("Requirements:") and rating[1]["content"].endswith("RATING:")


@pytest.mark.parametrize("answer, seed, lenient", [
    ("It is neutral, not Somewhat Formal.", (3, True), (4, True)),  # the seed checks level by level from 1
    ("Very Casual", (1, True), (1, True)),
    ("RATING: 4.", (4, True), (4, True)),
    ("I'd say 4 out of 5", (3, False), (4, True)),  # the seed takes a digit only as the whole answer
    ("NO RATING", (3, True), (3, True)),
    ("no rating", (3, False), (3, True)),  # the seed's NO RATING is case sensitive
    ("in-between", (3, True), (3, True)),
])
def test_the_seed_parser_follows_the_seeds_order(answer, seed, lenient):
    assert parse_rating_seed(answer, FORMALITY) == seed
    assert parse_rating(answer, FORMALITY) == lenient


# -- the job with the seed's filters ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A 2-layer random GPT-2 (DialoGPT's architecture) with the embedded tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from socialsynth.llm.embedded import embedded_checkpoint

    path = tmp_path_factory.mktemp("tiny_dialogpt")
    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    with torch.no_grad():
        model.lm_head.weight.mul_(20)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def seed_like_backend(fake_backend_cls, monkeypatch):
    """The generator: rewrites echo the level; ratings answer with a level name; every call is kept."""
    made = []

    def reply(chat, key):
        if chat[-1]["content"].endswith("RATING:"):
            return "Somewhat Casual, I think"
        return "Hey man, don't stress, four years is fine" if key.endswith(":1") else "Four years is not late at all."

    def load(spec):
        made.append(fake_backend_cls(reply=reply))
        return made[-1]

    monkeypatch.setattr(BackendSpec, "load", load)
    return made


def test_the_job_with_the_seeds_filters(tmp_path, run_cli, seed_like_backend, tiny_gpt2, tiny_encoder_dir,
                                        tiny_model_dir):
    from socialsynth.text.fluency import FluencyScorer, fluency_cut

    data = tmp_path / "askmen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, err = run_cli(main, ["--preset", "valuescope", "-r", "askmen", "-n", "formality", "--input", data,
                                       "-o", out, "-m", tiny_model_dir, "--fluency-model", tiny_gpt2, "--content-model",
                                       tiny_encoder_dir, "--content-layer", "2", "--levels", "1,5", "--device", "cpu"])
    assert code == 0, err
    records = [json.loads(line) for line in (out / "askmen_formality.jsonl").read_text().splitlines()]
    assert [r["original_rating"] for r in records] == [2] * len(ROWS)  # "Somewhat Casual" by the seed's parser
    backend = seed_like_backend[0]
    rating_params = [p for chats, p, keys in backend.generate_calls if keys[0].startswith("rate:")]
    assert rating_params and all(p.temperature == 1.0 and p.max_new_tokens == 256 for p in rating_params)
    assert backend.perplexity_calls == []  # fluency comes from the fluency model, not the generator
    originals = FluencyScorer(str(tiny_gpt2), device="cpu").perplexity([r["comment"] for r in ROWS])
    cut = fluency_cut("mean+sd", originals)
    meta = read_run_record(out / "askmen_formality.meta.json")
    assert meta["fluency_cut"]["value"] == pytest.approx(cut, rel=1e-3) and meta["fluency_cut"]["n_originals"] == 4
    for rec in records:
        for flags in rec["filters"].values():
            assert flags["disfluent"] == (flags["perplexity"] > cut)
            assert 0 < flags["similarity"] <= 1 and flags["low_similarity"] == (flags["similarity"] < 0.5)
        assert rec["provenance"]["content_metric"] == "bertscore"
        assert rec["provenance"]["fluency_model"] == str(tiny_gpt2)
    assert not math.isnan(meta["fluency_cut"]["value"])
    assert f"fluency cut: perplexity {meta['fluency_cut']['value']:,} (mean+sd of 4 originals)" in stdout


# -- the seed's input files ---------------------------------------------------------------------------------------
@pytest.fixture
def fake_generator(fake_backend_cls, monkeypatch):
    monkeypatch.setattr(BackendSpec, "load", lambda spec: fake_backend_cls(reply=lambda chat, key: f"new {key}"))


def seed_job(tmp_path, run_cli, rows, *extra):
    data = tmp_path / "askmen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = run_cli(main, ["-r", "askmen", "-n", "formality", "--input", data, "-o", tmp_path / "out",
                                    "--embedding-model", "none", "--levels", "1", "--rating-method", "logits",
                                    "--max-perplexity", "0", *extra])
    path = tmp_path / "out" / "askmen_formality.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return code, err, records


def test_a_held_out_list_of_positions_selects_by_position_and_idx_is_the_position(tmp_path, run_cli,
                                                                                   fake_generator):
    upvote = tmp_path / "upvote"
    upvote.mkdir()
    (upvote / "inference_sample_ids.txt").write_text("3\n0\n", encoding="utf-8")  # the seed's format
    code, err, records = seed_job(tmp_path, run_cli, ROWS, "-u", upvote)
    assert code == 0, err
    assert sorted((r["idx"], r["id"]) for r in records) == [(0, ROWS[0]["id"]), (3, ROWS[3]["id"])]
    meta = read_run_record(tmp_path / "out" / "askmen_formality.meta.json")
    assert meta["held_out_ids_read_as"] == "positions" and meta["skipped"]["not in inference_sample_ids.txt"] == 2


def test_a_held_out_list_of_ids_still_selects_by_id(tmp_path, run_cli, fake_generator):
    upvote = tmp_path / "upvote"
    upvote.mkdir()
    (upvote / "inference_sample_ids.txt").write_text(f"{ROWS[2]['id']}\n", encoding="utf-8")
    code, err, records = seed_job(tmp_path, run_cli, ROWS, "-u", upvote, "-s", "0")
    assert code == 0, err
    assert [(r["idx"], r["id"]) for r in records] == [(2, ROWS[2]["id"])]  # idx: the place in the file


def test_idx_to_id_gives_ids_to_rows_without_one(tmp_path, run_cli, fake_generator):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS[:3]]
    mapping = tmp_path / "askmen_idx_to_id.json"
    mapping.write_text(json.dumps({"0": "a0", "1": "a1", "2": "a2"}), encoding="utf-8")
    code, err, records = seed_job(tmp_path, run_cli, rows, "--idx-to-id", mapping)
    assert code == 0, err
    assert sorted((r["idx"], r["id"]) for r in records) == [(0, "a0"), (1, "a1"), (2, "a2")]
    pkl = tmp_path / "askmen_idx_to_id.pkl"
    pkl.write_bytes(b"\x80\x04}\x94.")
    code, _, err = run_cli(main, ["-r", "askmen", "-n", "formality", "--idx-to-id", pkl])
    assert code == 2 and "--allow-pickle" in err


def test_the_seeds_pickled_idx_to_id_with_allow_pickle(tmp_path, run_cli, fake_generator):
    import pickle

    rows = [{k: v for k, v in r.items() if k != "id"} for r in ROWS[:2]]
    mapping = tmp_path / "askmen_idx_to_id.pkl"
    mapping.write_bytes(pickle.dumps({0: "p0", 1: "p1"}))
    code, err, records = seed_job(tmp_path, run_cli, rows, "--idx-to-id", mapping, "--allow-pickle")
    assert code == 0, err
    assert sorted(r["id"] for r in records) == ["p0", "p1"]


# -- the upvote model's side: --filter and the predictions file ---------------------------------------------------
@pytest.fixture(scope="module")
def upvote_dir(tmp_path_factory):
    """A small upvote model (TF-IDF regression on the ValueScope text) trained on half of data/askmen.jsonl."""
    from socialsynth.core.cli import run_main
    from socialsynth.jobs.train.cli import main as train

    folder = tmp_path_factory.mktemp("upvote")
    argv = ["--task", "regression", "--recipe", "upvote", "--input", str(REPO / "data" / "askmen.jsonl"),
            "-m", "tfidf-logreg", "-o", str(folder)]
    assert run_main(lambda: train(argv)) == 0
    return folder


def seed_pairwise(targets, predictions, gap):
    """The research code's per-item pairwise accuracy, pair by pair."""
    right = {i: [] for i in range(len(targets))}
    for i in range(len(targets)):
        for j in range(i + 1, len(targets)):
            if abs(targets[i] - targets[j]) < gap:
                continue
            ok = (predictions[i] > predictions[j]) == (targets[i] > targets[j])
            right[i].append(ok)
            right[j].append(ok)
    return {i: sum(v) / len(v) for i, v in right.items() if v}


def test_filter_keeps_the_originals_the_upvote_model_ranks_well(tmp_path, run_cli, fake_generator, upvote_dir):
    from socialsynth.classify.presets import upvote_target, upvote_text
    from socialsynth.classify.registry import load_classifier

    rows = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()]
    held = set((upvote_dir / "inference_sample_ids.txt").read_text(encoding="utf-8").split())
    held_rows = [r for r in rows if r["id"] in held]
    model = load_classifier(upvote_dir)
    preds = model.predict_scores([upvote_text(r) for r in held_rows])
    acc = seed_pairwise([upvote_target(r["label"]) for r in held_rows], list(preds), 0.1)
    expected = {held_rows[i]["id"] for i, a in acc.items() if a > 0.6}
    assert 0 < len(expected) < len(held_rows)  # the check below tells kept from dropped
    code, err, records = seed_job(tmp_path, run_cli, rows, "-u", upvote_dir, "--filter", "--filter-accuracy", "0.6")
    assert code == 0, err
    assert {r["id"] for r in records} == expected
    meta = read_run_record(tmp_path / "out" / "askmen_formality.meta.json")
    reason = "upvote model's pairwise accuracy not above 0.6 (--filter)"
    assert meta["skipped"][reason] == len(held_rows) - len(expected)


def test_filter_without_an_upvote_model_is_one_line(tmp_path, run_cli):
    code, _, err = run_cli(main, ["-r", "askmen", "-n", "formality", "--filter"])
    assert code == 2 and "--filter" in err and "-u" in err


def test_predictions_file_as_the_seed_wrote_it(tmp_path, run_cli, fake_generator, upvote_dir):
    rows = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()]
    code, err, records = seed_job(tmp_path, run_cli, rows, "-u", upvote_dir, "-e", "3", "--levels", "1,5",
                                  "--predictions-file")
    assert code == 0, err
    path = tmp_path / "out" / "upvote_predictions" / "predictions_askmen_formality.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [p["id"] for p in lines] == [r["id"] for r in records] and len(lines) == 3
    for pred, rec in zip(lines, records, strict=True):
        cid = rec["id"]
        assert set(pred) >= {"idx", "original_rating", "original_score", "submission_title", "created_comment",
                             f"{cid}-0", f"{cid}-1", f"{cid}-5"}
        assert pred[f"{cid}-0"]["comment"] == rec["original_comment"]
        assert pred[f"{cid}-5"]["comment"] == rec["5"]
        for key, level in (("0", "original"), ("1", "1"), ("5", "5")):
            value = pred[f"{cid}-{key}"]["upvote_log"]
            assert value == rec["upvote_log_pred"][level]  # the inline fields stay
            assert pred[f"{cid}-{key}"]["upvote"] == pytest.approx(math.copysign(2 ** abs(value), value), rel=1e-3)


def test_the_presets_print_config_reads_back(tmp_path, run_cli):
    code, first, _ = run_cli(main, ["--preset", "valuescope", "-r", "askmen", "-n", "formality", "--print-config"])
    job = tmp_path / "job.yaml"
    job.write_text(first, encoding="utf-8")
    code2, second, err = run_cli(main, ["--config", job, "--print-config"])
    assert code == code2 == 0, err
    assert yaml.safe_load(second) == yaml.safe_load(first)
