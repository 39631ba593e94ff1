"""`socialsynth prepare` on awkward inputs, in-process: repeated ids (dumps repeat comments), rows without a usable
id or with a non-text comment, empty sources, and outputs that would overwrite an input or cannot be made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socialsynth.jobs.prepare.cli import main
from socialsynth.jobs.prepare.reddit import usable_id

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
COMMENTS = REPO / "data" / "pushshift_sample_comments.jsonl"
SUBMISSIONS = REPO / "data" / "pushshift_sample_submissions.jsonl"
PROCESSED = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()]


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_repeated_comments_of_a_dump_are_kept_once_and_counted(tmp_path, run_cli):
    lines = COMMENTS.read_text(encoding="utf-8").splitlines()
    comments = write(tmp_path / "c.jsonl", lines + lines[:4])
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_cli(main, ["--comments", comments, "--submissions", SUBMISSIONS, "-o", out])
    assert code == 0, err
    kept = ids(out)
    assert len(kept) == len(set(kept)) == 10
    meta = json.loads((tmp_path / "out.meta.json").read_text(encoding="utf-8"))
    repeated_kept = sum(1 for line in lines[:4] if json.loads(line)["id"] in kept)
    assert repeated_kept and meta["dropped"]["duplicate_id"] == repeated_kept
    assert f"duplicate_id            {repeated_kept}" in stdout
    assert f"kept 10 of {len(lines) + 4} comments" in stdout


def test_repeated_ids_of_a_processed_file_are_kept_once_and_counted(tmp_path, run_cli):
    rows = PROCESSED[:3] + [{**PROCESSED[0], "comment": "same id, other text"}]
    out = tmp_path / "out.jsonl"
    code, stdout, err = run_cli(main, ["--input", write(tmp_path / "raw.jsonl", rows), "-o", out])
    assert code == 0, err
    assert ids(out) == [r["id"] for r in PROCESSED[:3]]
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["comment"] == PROCESSED[0]["comment"]
    meta = json.loads((tmp_path / "out.meta.json").read_text(encoding="utf-8"))
    assert meta["dropped"] == {"duplicate_id": 1} and meta["n_kept"] == 3
    assert "duplicate_id            1" in stdout


@pytest.mark.parametrize("value,usable", [("a1", True), (7, True), (1.5, True), ("", False), ("  ", False),
                                          (None, False), ([1], False), ({}, False), (True, False),
                                          (float("nan"), False)])
def test_usable_ids(value, usable):
    assert usable_id(value) is usable


@pytest.mark.parametrize("row,field", [({"id": None}, "id"), ({"id": ""}, "id"), ({"comment": {"a": 1}}, "comment"),
                                       ({"comment": 5}, "comment")])
def test_a_processed_row_without_a_usable_id_or_text_names_its_line(tmp_path, run_cli, row, field):
    raw = write(tmp_path / "raw.jsonl", [PROCESSED[0], {**PROCESSED[1], **row}])
    code, _, err = run_cli(main, ["--input", raw, "-o", tmp_path / "out.jsonl"])
    assert code == 2 and f"raw.jsonl:2: field '{field}'" in err and len(err.strip().splitlines()) == 1, err
    code, stdout, err = run_cli(main, ["--input", raw, "-o", tmp_path / "out.jsonl", "--skip-bad-rows"])
    assert code == 0 and f"bad {field}: 1" in stdout, err
    assert ids(tmp_path / "out.jsonl") == [PROCESSED[0]["id"]]


@pytest.mark.parametrize("change,field", [({"id": "  "}, "id"), ({"body": {"text": "hi"}}, "comment"),
                                          ({"body": ["hi"]}, "comment")])
def test_a_dump_row_without_a_usable_id_or_text_names_its_line(tmp_path, run_cli, change, field):
    lines = COMMENTS.read_text(encoding="utf-8").splitlines()
    comments = write(tmp_path / "c.jsonl", [json.dumps({**json.loads(lines[0]), **change}), *lines[1:]])
    code, _, err = run_cli(main, ["--comments", comments, "--submissions", SUBMISSIONS, "-o", tmp_path / "o.jsonl"])
    assert code == 2 and f"c.jsonl:1: field '{field}'" in err, err


@pytest.mark.parametrize("content", ["", "\n\n", "id,body,score,link_id,created_utc\n"])
def test_an_empty_comments_file_is_an_error_and_leaves_the_old_output(tmp_path, run_cli, content):
    comments = tmp_path / ("c.csv" if content.startswith("id") else "c.jsonl")
    comments.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "old"}\n', encoding="utf-8")
    code, _, err = run_cli(main, ["--comments", comments, "--submissions", SUBMISSIONS, "-o", out])
    assert code == 2 and f"{comments}: the file has no rows" in err, err
    assert out.read_text(encoding="utf-8") == '{"id": "old"}\n'


def test_an_empty_submissions_file_is_an_error(tmp_path, run_cli):
    (tmp_path / "s.jsonl").write_text("", encoding="utf-8")
    code, _, err = run_cli(main, ["--comments", COMMENTS, "--submissions", tmp_path / "s.jsonl", "-o",
                                  tmp_path / "o.jsonl"])
    assert code == 2 and "s.jsonl: the file has no rows" in err, err


def test_an_empty_processed_file_is_an_error(tmp_path, run_cli):
    (tmp_path / "raw.jsonl").write_text("", encoding="utf-8")
    code, _, err = run_cli(main, ["--input", tmp_path / "raw.jsonl", "-o", tmp_path / "o.jsonl"])
    assert code == 2 and "raw.jsonl: the file has no records" in err, err


def test_an_output_that_is_an_input_is_refused(tmp_path, bad_flag):
    raw = write(tmp_path / "raw.jsonl", PROCESSED[:2])
    line = bad_flag(main, ["--input", raw, "-o", raw], "--output")
    assert "also the --input file" in line
    assert ids(raw) == [r["id"] for r in PROCESSED[:2]]
    comments = write(tmp_path / "c.jsonl", COMMENTS.read_text(encoding="utf-8").splitlines())
    assert "--comments" in bad_flag(main, ["--comments", comments, "--submissions", SUBMISSIONS, "-o", comments],
                                    "--output")


@pytest.mark.parametrize("argv,flag", [
    (["--comment-column", "bogus=x"], "--comment-column"),
    (["--submission-column", "score=x"], "--submission-column"),
    (["--subreddit", ","], "--subreddit"),
    (["--subreddit", " "], "--subreddit"),
])
def test_pair_flags_are_checked_while_parsing(argv, flag, bad_flag, tmp_path):
    bad_flag(main, ["--comments", COMMENTS, "--submissions", SUBMISSIONS, "-o", tmp_path / "o.jsonl", *argv], flag)


def test_output_places(tmp_path, bad_flag):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    (tmp_path / "adir").mkdir()
    pair = ["--comments", COMMENTS, "--submissions", SUBMISSIONS]
    assert "is a file" in bad_flag(main, [*pair, "-o", tmp_path / "afile" / "o.jsonl"], "--output")
    assert "is a file" in bad_flag(main, [*pair, "-o", tmp_path / "afile", "--split-by-subreddit"], "--output")
    assert "is a folder" in bad_flag(main, [*pair, "-o", tmp_path / "adir"], "--output")
    assert "is a folder" in bad_flag(main, ["--input", COMMENTS, "-o", tmp_path / "adir"], "--output")
