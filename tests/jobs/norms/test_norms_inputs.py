"""The normness job on awkward inputs (in-process, fake backends): repeated ids, rows without a usable id, comments
too long for the model's context, templates that cannot build their prompts, names that would leave the output
folder, and the token estimate the context check relies on (against the tiny real model)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from socialsynth.core.config import parse
from socialsynth.core.run import read_run_record
from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.config import NormsConfig
from socialsynth.jobs.norms.rewrite import (
    NormRewriter,
    Rater,
    level_chat,
    rating_chat,
    rewrite_chat,
    template_problem,
)
from socialsynth.llm import BackendSpec, GenerationParams
from socialsynth.prompts import Template, load_dimension, load_template

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ROWS = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
OUT = "askmen_formality"


@pytest.fixture
def fake_load(fake_backend_cls, monkeypatch):
    """BackendSpec.load gives a fake whose context is ``fake_load.context`` words (None: it cannot count)."""

    class Counting(fake_backend_cls):
        def context_length(self):
            return fake_load.context

        def token_count(self, item):
            if fake_load.context is None:
                return None
            text = item if isinstance(item, str) else " ".join(m["content"] for m in item)
            return len(text.split())

    def fake_load(spec):
        return Counting(reply=lambda chat, key: f"A rewritten comment {key}.")

    fake_load.context = None
    monkeypatch.setattr(BackendSpec, "load", fake_load)
    return fake_load


def run_job(tmp_path: Path, rows: list, run_cli, *extra) -> tuple[int, str, str]:
    data = tmp_path / "askmen.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["-r", "askmen", "-n", "formality", "--input", data, "-o", tmp_path / "out", "--embedding-model", "none",
            "--levels", "1,5", "--rating-method", "logits", "-b", "2", *extra]
    return run_cli(main, argv)


def written_ids(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "out" / f"{OUT}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["id"] for line in lines]


# -- repeated and unusable ids ----------------------------------------------------------------------------------
def test_repeated_ids_are_counted_named_and_written_once(tmp_path, run_cli, fake_load, caplog):
    rows = [ROWS[0], ROWS[1], {**ROWS[0], "comment": "another text, same id"}, ROWS[2], ROWS[1]]
    with caplog.at_level(logging.WARNING):
        code, out, err = run_job(tmp_path, rows, run_cli)
    assert code == 0, err
    assert "skipped input rows: duplicate id: 2" in out
    assert written_ids(tmp_path) == [r["id"] for r in ROWS]
    record = read_run_record(tmp_path / "out" / f"{OUT}.meta.json")
    assert record["skipped"] == {"duplicate id": 2} and record["complete"] is True
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert repr(ROWS[0]["id"]) in warning and repr(ROWS[1]["id"]) in warning
    first = json.loads((tmp_path / "out" / f"{OUT}.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["original_comment"] == ROWS[0]["comment"]  # the first row of an id wins


@pytest.mark.parametrize("bad_id", [None, "", "   ", [1, 2], True, {"a": 1}])
def test_a_row_without_a_usable_id_names_its_line(tmp_path, run_cli, fake_load, bad_id):
    code, _, err = run_job(tmp_path, [ROWS[0], {**ROWS[1], "id": bad_id}], run_cli)
    assert code == 2 and err.strip().endswith("(ids are non-empty strings or numbers)"), err
    assert "askmen.jsonl:2: field 'id'" in err and len(err.strip().splitlines()) == 1


def test_rows_without_a_usable_id_are_counted_with_skip_bad_rows(tmp_path, run_cli, fake_load):
    code, out, err = run_job(tmp_path, [ROWS[0], {**ROWS[1], "id": None}], run_cli, "--skip-bad-rows")
    assert code == 0, err
    assert "no usable id: 1" in out and written_ids(tmp_path) == [ROWS[0]["id"]]


# -- comments too long for the model ----------------------------------------------------------------------------
def test_a_comment_over_the_context_is_counted_and_the_run_is_complete(tmp_path, run_cli, fake_load):
    fake_load.context = 1500  # words; the rating prompt with its examples is about 750
    big = {**ROWS[1], "comment": "word " * 5000}
    code, out, err = run_job(tmp_path, [ROWS[0], big, ROWS[2]], run_cli, "--max-comment-chars", "100000")
    assert code == 0, err
    reason = "comment longer than the model's context (1500 tokens)"
    assert f"{reason}: 1" in out
    assert written_ids(tmp_path) == [ROWS[0]["id"], ROWS[2]["id"]]
    record = read_run_record(tmp_path / "out" / f"{OUT}.meta.json")
    assert record["skipped"] == {reason: 1} and record["complete"] is True
    code, out, err = run_job(tmp_path, [ROWS[0], big, ROWS[2]], run_cli, "--max-comment-chars", "100000")
    assert code == 0 and f"{reason}: 1" in out, err  # a rerun counts it again and writes nothing twice
    assert written_ids(tmp_path) == [ROWS[0]["id"], ROWS[2]["id"]]


def test_a_backend_that_cannot_count_tokens_skips_nothing(tmp_path, run_cli, fake_load):
    big = {**ROWS[1], "comment": "word " * 5000}
    code, out, err = run_job(tmp_path, [ROWS[0], big], run_cli, "--max-comment-chars", "100000")
    assert code == 0 and "context" not in out, err
    assert written_ids(tmp_path) == [ROWS[0]["id"], ROWS[1]["id"]]


@pytest.mark.parametrize("method", ["logits", "likelihood", "generate"])
@pytest.mark.parametrize("template", ["norm_rewrite", "norm_rewrite_full"])
def test_the_token_estimate_covers_every_real_prompt(tiny_backend, method, template):
    """over_context(row, 0) is the estimate itself: never below the longest prompt the model really gets, and
    close to it (the fixed margin and the empty-title placeholder)."""
    dim = load_dimension("formality")
    rater = Rater(tiny_backend, dim, method)
    rewriter = NormRewriter(tiny_backend, dim, rater, GenerationParams(max_new_tokens=7), (1, 5),
                            template=load_template(template))
    count = tiny_backend.token_count
    for row in [*ROWS, {**ROWS[0], "comment": "ünïcödé 🤞 " * 300, "submission_title": None}]:
        title, comment = row.get("submission_title") or "", row["comment"]
        real = [count(rewrite_chat(dim, rewriter.template, title, comment, lv)) + 7 for lv in (1, 5)]
        if method == "likelihood":
            real += [count(level_chat(dim, rater.template, title, lv)) + count(comment) for lv in range(1, 6)]
        else:
            real += [count(rating_chat(dim, rater.template, title, comment)) + (12 if method == "generate" else 0)]
        estimate = rewriter.over_context(row, 0)
        assert max(real) <= estimate <= max(real) + 40, (row["id"], estimate, real)
        assert rewriter.over_context(row, estimate) is None


def test_hf_backend_reports_its_context_and_counts_tokens(tiny_backend):
    assert tiny_backend.context_length() == 2048
    assert tiny_backend.token_count("hello world") == len(tiny_backend.tokenizer.encode("hello world",
                                                                                       add_special_tokens=False))
    chat = [{"role": "user", "content": "hello"}]
    assert tiny_backend.token_count(chat) == len(tiny_backend.encode_chat(chat))


# -- templates ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,use", [("norm_rewrite", "rewrite"), ("norm_rewrite_full", "rewrite"),
                                      ("norm_rating", "rating"), ("norm_rating_seed", "rating"),
                                      ("norm_likelihood", "likelihood")])
def test_bundled_templates_build_their_prompts(name, use):
    assert template_problem(load_template(name), use) is None


@pytest.mark.parametrize(
    "system,user,use,needle",
    [
        ("Hi {nope}", "{comment} {level_name}", "rewrite", "unknown field {nope}"),
        ("Hi {", "{comment} {level_name}", "rewrite", "not a valid format string"),
        ("Hi {0}", "{comment} {level_name}", "rewrite", "not a valid format string"),
        ("Hi {level_name:d}", "{comment}", "rewrite", "not a valid format string"),
        ("Rewrite it.", "{level_name}", "rewrite", "no {comment} field"),
        ("Rewrite it.", "{comment}", "rewrite", "no {level}"),
        ("Rate {comment}", "{comment}", "rating", "system: unknown field {comment}"),
        ("Rate it.", "{title}", "rating", "no {comment} field"),
        ("", "Write a {dimension} comment.", "likelihood", "no {level}"),
        ("", "{definitions}", "likelihood", "unknown field {definitions}"),
    ],
)
def test_template_problems(system, user, use, needle):
    problem = template_problem(Template("t", system, user), use)
    assert problem is not None and needle in problem, problem


# -- names and places ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("subreddit", ["../x", "a/b", "..", "a\\b", " "])
def test_subreddit_names_that_leave_the_output_folder_are_refused(subreddit, bad_flag):
    line = bad_flag(main, ["-r", subreddit, "-n", "formality"], "--subreddit")
    assert "plain name" in line or "empty" in line


def test_a_dimension_named_with_a_path_is_refused(tmp_path, bad_flag):
    dim = (REPO / "socialsynth" / "prompts" / "dimensions" / "formality.yaml").read_text(encoding="utf-8")
    path = tmp_path / "evil.yaml"
    path.write_text(dim.replace("name: formality", "name: ../../evil"), encoding="utf-8")
    assert "name: ../../evil" in path.read_text(encoding="utf-8")
    line = bad_flag(main, ["-r", "askmen", "-n", path], "--norm-dimension")
    assert str(path) in line and "'../../evil'" in line


def test_a_folder_named_like_a_yaml_file_is_one_line(tmp_path, bad_flag):
    (tmp_path / "dim.yaml").mkdir()
    assert str(tmp_path / "dim.yaml") in bad_flag(main, ["-r", "a", "-n", tmp_path / "dim.yaml"], "--norm-dimension")


def test_a_broken_yaml_dimension_file_names_the_file(tmp_path, bad_flag):
    (tmp_path / "dim.yaml").write_text("name: x\nlevels: [a, b\n", encoding="utf-8")
    assert str(tmp_path / "dim.yaml") in bad_flag(main, ["-r", "a", "-n", tmp_path / "dim.yaml"], "--norm-dimension")


@pytest.mark.parametrize("flag,value", [("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "nan"),
                                        ("--repetition-penalty", "inf"), ("--max-perplexity", "nan"),
                                        ("--request-timeout", "inf"), ("--seed", "-1"), ("--seed", str(2**40)),
                                        ("--embedding-model", " ")])
def test_values_no_comparison_catches_are_refused(flag, value, bad_flag):
    bad_flag(main, ["-r", "askmen", "-n", "formality", flag, value], flag)


def test_an_output_folder_in_a_files_place_is_refused_while_parsing(tmp_path):
    (tmp_path / "blocker").write_text("x", encoding="utf-8")
    with pytest.raises(Exception, match="blocker is a file"):
        parse(NormsConfig, ["-r", "askmen", "-n", "formality", "-o", str(tmp_path / "blocker" / "out")])
