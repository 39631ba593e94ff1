"""`socialsynth prepare --comments ... --submissions ...` as a user runs it: exit codes, messages, files."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE_COMMENTS = REPO / "data" / "pushshift_sample_comments.jsonl"
SAMPLE_SUBMISSIONS = REPO / "data" / "pushshift_sample_submissions.jsonl"
COLLEGE = Path("/work/shared/data/real/reddit_college")
SAMPLE_KEPT = ["i3ab001", "i3ab002", "i3ab003", "i3ab004", "i3ab005", "i3ab006", "i3ab007", "i3ab008", "i3ab009"]
SAMPLE_KEPT.append("i3ab010")


def prepare(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "socialsynth", "prepare", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or REPO,
        timeout=300,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def comment(cid: str, **fields) -> dict:
    return {
        "id": cid,
        "body": f"Comment {cid} with an opinion.",
        "author": "someone",
        "created_utc": 1650001200,
        "score": 5,
        "link_id": "t3_u1ka01",
        "parent_id": "t3_u1ka01",
        "subreddit": "AskMen",
        "edited": False,
        "retrieved_on": 1652600000,
        **fields,
    }


def write_lines(path: Path, lines: list[bytes | str]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n" for line in lines))
    return path


def test_sample_dump_in_data_keeps_ten_and_reports_every_reason(tmp_path):
    out = tmp_path / "askmen_cooking.jsonl"
    result = prepare("--comments", SAMPLE_COMMENTS, "--submissions", SAMPLE_SUBMISSIONS, "-o", out)
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_jsonl(out)] == SAMPLE_KEPT
    lines = result.stdout.splitlines()
    assert f"comments: read 21 rows from {SAMPLE_COMMENTS}" in lines
    assert f"submissions: read 8 rows from {SAMPLE_SUBMISSIONS}" in lines
    table = {w[0]: int(w[1]) for w in map(str.split, lines) if len(w) == 2 and w[1].lstrip("-").isdigit()}
    assert table == {
        "not_top_level": 1,
        "removed_or_deleted": 2,
        "edited": 1,
        "single_link": 1,
        "media_post": 3,
        "late_comment": 1,
        "retrieved_too_soon": 1,
        "no_submission": 1,
        "other_subreddit": 0,
        "duplicate_id": 0,
        "AskMen": 6,
        "Cooking": 4,
    }
    assert f"kept 10 of 21 comments -> {out}" in lines
    assert "not checked" not in result.stdout
    meta = json.loads((tmp_path / "askmen_cooking.meta.json").read_text(encoding="utf-8"))
    assert meta["n_kept"] == 10 and meta["dropped"]["media_post"] == 3
    assert meta["inputs"]["comments"]["columns"]["retrieved_on"] == ["retrieved_on", "retrieved_utc"]


def test_zst_dump_split_by_subreddit(tmp_path):
    import zstandard

    comments, submissions = tmp_path / "RC_2022-04.zst", tmp_path / "RS_2022-04.zst"
    for source, target in ((SAMPLE_COMMENTS, comments), (SAMPLE_SUBMISSIONS, submissions)):
        target.write_bytes(zstandard.ZstdCompressor().compress(source.read_bytes()))
    out = tmp_path / "data"
    result = prepare(
        "--comments",
        comments,
        "--posts",
        submissions,
        "--subreddit",
        "askmen,r/Cooking",
        "--split-by-subreddit",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "AskMen.jsonl",
        "Cooking.jsonl",
        "prepare.config.yaml",
        "prepare.meta.json",
    ]
    assert [r["id"] for r in read_jsonl(out / "AskMen.jsonl")] == SAMPLE_KEPT[:5] + ["i3ab010"]
    assert [r["id"] for r in read_jsonl(out / "Cooking.jsonl")] == SAMPLE_KEPT[5:9]
    assert f"-> {out / 'Cooking.jsonl'}" in result.stdout
    assert f"kept 10 of 21 comments -> {out} (2 files)" in result.stdout


def test_subreddit_with_nothing_kept_is_shown_as_zero(tmp_path):
    out = tmp_path / "x.jsonl"
    result = prepare(
        "--comments", SAMPLE_COMMENTS, "--submissions", SAMPLE_SUBMISSIONS, "--subreddit", "Nope", "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  Nope +0$", result.stdout, re.MULTILINE)
    assert re.search(r"^other_subreddit +21$", result.stdout, re.MULTILINE)
    assert "held 0 submissions in memory (not held: other_subreddit: 8)" in result.stdout
    assert out.read_text() == ""


def test_bad_json_line_names_file_and_line(tmp_path):
    comments = write_lines(
        tmp_path / "comments.jsonl", [json.dumps(comment("a")), json.dumps(comment("b")), '{"id": "c"']
    )
    out = tmp_path / "out.jsonl"
    result = prepare("--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "-o", out)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {comments}:3: invalid JSON")
    assert "Traceback" not in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [comments]


def test_score_that_is_not_a_number_and_missing_id(tmp_path):
    comments = write_lines(
        tmp_path / "comments.jsonl", [json.dumps(comment("a")), json.dumps(comment("b", score="lots"))]
    )
    result = prepare("--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "-o", tmp_path / "out.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {comments}:2: field 'label': 'lots' in column 'score' is not a number"

    no_id = {k: v for k, v in comment("c").items() if k != "id"}
    write_lines(comments, [json.dumps(no_id)])
    result = prepare("--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "-o", tmp_path / "out.jsonl")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {comments}:1: field 'id': no value (looked for: id, comment_id)"


def test_missing_column_names_the_field_and_an_override_fixes_it(tmp_path):
    comments = tmp_path / "comments.csv"
    with comments.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(
            [["comment_id", "post_id", "text", "created_utc", "votes"], ["c1", "u1ka01", "Hi.", 1650001200, "12"]]
        )
    out = tmp_path / "out.jsonl"
    result = prepare("--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "-o", out)
    assert result.returncode == 2
    assert f"error: {comments}: field 'label': the comments file has no column for it" in result.stderr
    assert "looked for: score, upvotes, label, ups;" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()

    result = prepare(
        "--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "--comment-column", "label=votes", "-o", out
    )
    assert result.returncode == 0, result.stderr
    assert [(r["id"], r["label"]) for r in read_jsonl(out)] == [("c1", 12)]
    assert "label=votes" in result.stdout
    assert "not checked: not_top_level, edited, retrieved_too_soon (columns absent)" in result.stdout


def test_skip_bad_rows_counts_each_reason(tmp_path):
    comments = write_lines(
        tmp_path / "comments.jsonl",
        [
            json.dumps(comment("good1")),
            "{not json",
            b'{"id": "latin1", "body": "caf\xe9"}',
            json.dumps(comment("nonum", score="n/a")),
            json.dumps({k: v for k, v in comment("noid").items() if k != "id"}),
            json.dumps(comment("good2", body="Second good one.")),
        ],
    )
    out = tmp_path / "out.jsonl"
    result = prepare("--comments", comments, "--submissions", SAMPLE_SUBMISSIONS, "--skip-bad-rows", "-o", out)
    assert result.returncode == 0, result.stderr
    assert f"comments: read 6 rows from {comments}" in result.stdout
    assert (
        "  skipped unreadable rows: invalid JSON: 1, label not a number: 1, missing id: 1, not UTF-8: 1"
        in result.stdout
    )
    assert "kept 2 of 2 comments" in result.stdout
    assert [r["id"] for r in read_jsonl(out)] == ["good1", "good2"]
    meta = json.loads((tmp_path / "out.meta.json").read_text(encoding="utf-8"))
    assert meta["inputs"]["comments"]["skipped"] == {
        "invalid JSON": 1,
        "not UTF-8": 1,
        "label not a number": 1,
        "missing id": 1,
    }


PAIR = [
    "--comments",
    "data/pushshift_sample_comments.jsonl",
    "--submissions",
    "data/pushshift_sample_submissions.jsonl",
]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "data/askmen_raw.jsonl", "--comments", "c.jsonl"], "not both"),
        (PAIR[:2], "--submissions is missing"),
        (["--input", "data/askmen_raw.jsonl", "--subreddit", "askmen"], "--subreddit only work with --comments"),
        (["--comments", "nope.jsonl", *PAIR[2:]], "nope.jsonl: file not found"),
        (["--comments", "data/README.md", *PAIR[2:]], "unsupported file type"),
        ([*PAIR, "--comment-column", "label"], "expected FIELD=COLUMN"),
        ([*PAIR, "--submission-column", "score=points"], "--submission-column': unknown field 'score'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, message):
    result = prepare(*args, "-o", tmp_path / "out.jsonl")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_single_file_input_still_works(tmp_path):
    out = tmp_path / "askmen.jsonl"
    result = prepare("--input", "data/askmen_raw.jsonl", "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (REPO / "data" / "askmen.jsonl").read_bytes()
    assert "kept 40 of 52 comments" in result.stdout


@pytest.mark.skipif(not (COLLEGE / "comments.csv").exists(), reason="reddit_college data not available")
def test_real_reddit_college_split_by_subreddit(tmp_path):
    out = tmp_path / "college"
    result = prepare(
        "--comments",
        COLLEGE / "comments.csv",
        "--submissions",
        COLLEGE / "posts.csv",
        "--split-by-subreddit",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.glob("*.jsonl"))
    assert len(files) == 8 and "AskAcademia.jsonl" in files and "Emory.jsonl" in files
    assert "not checked: edited, media_post, retrieved_too_soon (columns absent)" in result.stdout
    with (COLLEGE / "comments.csv").open(encoding="utf-8", newline="") as handle:
        source = {row["comment_id"]: row for row in csv.DictReader(handle)}
    total = 0
    for name in files:
        for record in read_jsonl(out / name):
            total += 1
            assert record["comment"].strip() and record["submission_title"].strip()
            assert isinstance(record["label"], int) and record["subreddit"] + ".jsonl" == name
            row = source[record["id"]]  # not a reply: top-level in the source on both counts
            assert row["depth"] == "0" and row["parent_id"] == f"t3_{row['post_id']}"
            assert record["label"] == int(row["upvotes"])
    meta = json.loads((out / "prepare.meta.json").read_text(encoding="utf-8"))
    assert total == meta["n_kept"] == sum(meta["kept"].values()) > 10_000
    assert meta["dropped"]["not_top_level"] == 38_135 - 18_424  # every comment with depth > 0
    assert meta["dropped"]["no_submission"] == 0
