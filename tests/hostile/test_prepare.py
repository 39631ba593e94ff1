"""Hostile inputs for ``socialsynth prepare``: malformed, mistyped, mis-encoded, empty, duplicate and huge comment and
submission files (Pushshift dumps, tables, processed files), bad values for every flag (prepare has no numeric flag:
its column overrides, subreddit filters and output place are what a user can get wrong), unwritable output places,
outputs that would overwrite an input, subreddit names from the data that would leave the output folder, and a
damaged run record. Each case ends in exit 2 with one line naming the file/line/field or the flag, or in exit 0
with the drop or skip counted in the report or the run record; never a traceback. No model is involved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from socialsynth.jobs.prepare.cli import main
from tests.hostile.conftest import Case, Error, Skip, case_params

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
COMMENTS = [json.loads(line) for line in (REPO / "data" / "pushshift_sample_comments.jsonl").read_text().splitlines()]
SUBMISSIONS = [json.loads(line) for line in (REPO / "data" / "pushshift_sample_submissions.jsonl").read_text()
               .splitlines()]
PROCESSED = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()]
PAIR = ["--comments", "{comments}", "--submissions", "{submissions}", "-o", "out.jsonl"]
SINGLE = ["--input", "{data}", "-o", "out.jsonl"]
RECORD = "out.meta.json"
HEADER = "id,body,score,link_id,parent_id,created_utc\n"


def jsonl(rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def pair(comments=COMMENTS, submissions=SUBMISSIONS, then=None, names=("c.jsonl", "s.jsonl")):
    """setup: a comments file and a submissions file (rows, raw text or bytes); ``then(tmp)`` afterwards."""

    def setup(tmp: Path) -> dict:
        values = {}
        for key, content, name in (("comments", comments, names[0]), ("submissions", submissions, names[1])):
            path = tmp / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content if isinstance(content, str) else jsonl(content), encoding="utf-8")
            values[key] = path
        if then is not None:
            then(tmp)
        return values

    return setup


def single(rows=PROCESSED[:3], name="raw.jsonl", then=None):
    """setup: a processed input (rows, raw text or bytes) as ``{data}``."""

    def setup(tmp: Path) -> dict:
        path = tmp / name
        if isinstance(rows, bytes):
            path.write_bytes(rows)
        else:
            path.write_text(rows if isinstance(rows, str) else jsonl(rows), encoding="utf-8")
        if then is not None:
            then(tmp)
        return {"data": path}

    return setup


def comment(i: int = 0, **fields) -> dict:
    return {**COMMENTS[i], **fields}


def write(name: str, content: str | None):
    """then: a file (or, for None, a folder) at ``name`` under tmp."""

    def then(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if content is None else path.write_text(content, encoding="utf-8")

    return then


def table(body: str) -> str:
    """A comments CSV of the sample's first post (u1ka01) with these data lines."""
    return HEADER + body


CASES = [
    # -- malformed files
    Case("torn JSON line in the comments", PAIR, Error("c.jsonl:2"),
         pair(comments=jsonl([comment(0)]) + '{"id": "x", "body": "cut\n')),
    Case("a JSON array in the submissions", PAIR, Error("s.jsonl:2"),
         pair(submissions=jsonl([SUBMISSIONS[0], "[1, 2]"]))),
    Case("torn line counted with --skip-bad-rows", [*PAIR, "--skip-bad-rows"], Skip("invalid JSON: 1"),
         pair(comments=jsonl(COMMENTS) + '{"id": "x", "body": "cut\n')),
    Case("a CSV row with too many cells", PAIR, Error("c.csv:3"),
         pair(comments=table("a1,Hello,3,t3_u1ka01,t3_u1ka01,1650001200\na2,Hi,4,t3_u1ka01,t3_u1ka01,1,extra\n"),
              names=("c.csv", "s.jsonl"))),
    Case("a .zst that is not zstd", PAIR, Error("c.zst"), pair(comments=b"\x28\xb5\x2f\xfd garbage",
                                                               names=("c.zst", "s.jsonl"))),
    Case("Parquet that is not Parquet", PAIR, Error("s.parquet"), pair(submissions=b"PAR1 garbage",
                                                                       names=("c.jsonl", "s.parquet"))),
    Case("a file type prepare cannot read", PAIR, Error("c.txt"), pair(names=("c.txt", "s.jsonl"))),
    Case("torn line in a processed file", SINGLE, Error("raw.jsonl:2"),
         single(jsonl(PROCESSED[:1]) + '{"id": "x", "comm\n' + jsonl(PROCESSED[1:2]))),
    # -- wrong types and columns
    Case("a comments CSV without a text column", PAIR, Error("field 'comment'"),
         pair(comments="id,score,link_id,created_utc\na1,3,t3_u1ka01,1650001200\n", names=("c.csv", "s.jsonl"))),
    Case("a score that is not a number", PAIR, Error("c.jsonl:1: field 'label'"),
         pair(comments=[comment(0, score="lots"), *COMMENTS[1:]])),
    Case("a comment body that is an object", PAIR, Error("c.jsonl:1: field 'comment'"),
         pair(comments=[comment(0, body={"text": "hi"}), *COMMENTS[1:]])),
    Case("a blank comment id", PAIR, Error("c.jsonl:1: field 'id'"),
         pair(comments=[comment(0, id="  "), *COMMENTS[1:]])),
    Case("a list id counted with --skip-bad-rows", [*PAIR, "--skip-bad-rows"], Skip("missing id: 1"),
         pair(comments=[comment(0, id=[1]), *COMMENTS[1:]])),
    Case("--comment-column naming an absent column", [*PAIR, "--comment-column", "label=points"],
         Error("field 'label'"), pair()),
    Case("a processed row with a null id", SINGLE, Error("raw.jsonl:2: field 'id'"),
         single([PROCESSED[0], {**PROCESSED[1], "id": None}])),
    Case("a processed comment that is an object, counted", [*SINGLE, "--skip-bad-rows"], Skip("bad comment: 1"),
         single([PROCESSED[0], {**PROCESSED[1], "comment": {"a": 1}}])),
    Case("a processed row without a comment field", SINGLE, Error("raw.jsonl:1: field 'comment'"),
         single([{"id": "x"}])),
    # -- encodings
    Case("latin-1 byte in a JSONL dump", PAIR, Error("c.jsonl:2"),
         pair(comments=json.dumps(comment(0)).encode() + b'\n{"id": "z", "body": "caf\xe9"}\n')),
    Case("latin-1 byte in a CSV", PAIR, Error("c.csv:2"),
         pair(comments=table("a1,caf\xe9,3,t3_u1ka01,t3_u1ka01,1650001200\n").encode("latin-1"),
              names=("c.csv", "s.jsonl"))),
    Case("UTF-16 CSV", PAIR, Error("c.csv"), pair(comments=table("a1,Hello,3,t3_u1ka01,t3_u1ka01,1\n").encode("utf-16"),
                                                  names=("c.csv", "s.jsonl"))),
    Case("UTF-8 BOM before a CSV header", PAIR, Skip('"n_kept": 1', record=RECORD),
         pair(comments=b"\xef\xbb\xbf" + table("a1,A fine answer.,3,t3_u1ka01,t3_u1ka01,1650001200\n").encode(),
              names=("c.csv", "s.jsonl"))),
    # -- empty files and empty texts
    Case("empty comments file", PAIR, Error("c.jsonl: the file has no rows"), pair(comments="")),
    Case("empty submissions file", PAIR, Error("s.jsonl: the file has no rows"), pair(submissions="")),
    Case("comments CSV header only", PAIR, Error("c.csv: the file has no rows"),
         pair(comments=HEADER, names=("c.csv", "s.jsonl"))),
    Case("blank lines only", PAIR, Error("c.jsonl"), pair(comments="\n\n  \n")),
    Case("empty processed file", SINGLE, Error("raw.jsonl"), single("")),
    Case("empty and deleted comments are counted", PAIR, Skip('"removed_or_deleted": 4', record=RECORD),
         pair(comments=[comment(0, body=""), comment(1, body="[deleted]"), *COMMENTS[2:]])),
    # -- duplicate ids and rows
    Case("a dump repeating comments", PAIR, Skip('"duplicate_id": 6', record=RECORD),
         pair(comments=COMMENTS + COMMENTS[:6])),
    Case("a processed file repeating an id", SINGLE, Skip('"duplicate_id": 1', record=RECORD),
         single([*PROCESSED[:3], {**PROCESSED[0], "comment": "other text"}])),
    Case("a dump repeating a submission", PAIR, Skip("not held: duplicate_id: 1"),
         pair(submissions=SUBMISSIONS + SUBMISSIONS[:1])),
    # -- huge texts
    Case("a 2 MB comment in a CSV cell", PAIR, Skip('"n_kept": 1', record=RECORD),
         pair(comments=table(f'a1,"{"word " * 400_000}",3,t3_u1ka01,t3_u1ka01,1650001200\n'),
              names=("c.csv", "s.jsonl"))),
    # -- bad values for every flag
    Case("--comment-column of an unknown field", [*PAIR, "--comment-column", "bogus=x"], Error("--comment-column"),
         pair()),
    Case("--comment-column without =", [*PAIR, "--comment-column", "label"], Error("--comment-column"), pair()),
    Case("--submission-column of an unknown field", [*PAIR, "--submission-column", "score=x"],
         Error("--submission-column"), pair()),
    Case("--subreddit with no name", [*PAIR, "--subreddit", ","], Error("--subreddit"), pair()),
    Case("--subreddit with --input", [*SINGLE, "--subreddit", "AskMen"], Error("--subreddit"), single()),
    Case("--split-by-subreddit with --input", [*SINGLE, "--split-by-subreddit"], Error("--split-by-subreddit"),
         single()),
    Case("--input and --comments", [*SINGLE, "--comments", "{data}"], Error("--input"), single()),
    Case("--comments without --submissions", ["--comments", "{comments}", "-o", "out.jsonl"],
         Error("--submissions"), pair()),
    Case("no -o", ["--input", "{data}"], Error("--output"), single()),
    Case("no input at all", ["-o", "out.jsonl"], Error("--input"), None),
    Case("--input does not exist", ["--input", "{tmp}/missing.jsonl", "-o", "out.jsonl"], Error("missing.jsonl"),
         None),
    Case("--input is a folder", ["--input", "{tmp}", "-o", "out.jsonl"], Error("not a regular file"), None),
    Case("unknown flag", [*SINGLE, "--no-such-flag"], Error("--no-such-flag"), single()),
    Case("--comment-column without its value", [*PAIR, "--comment-column"], Error("--comment-column"), pair()),
    # -- unwritable places and outputs that are inputs
    Case("-o is the --input file", ["--input", "{data}", "-o", "{data}"], Error("--output"), single()),
    Case("-o is the --comments file", [*PAIR[:4], "-o", "{comments}"], Error("--output"), pair()),
    Case("-o is a folder", [*PAIR[:4], "-o", "{tmp}"], Error("--output"), pair()),
    Case("-o is a file with --split-by-subreddit", [*PAIR, "--split-by-subreddit"], Error("--output"),
         pair(then=write("out.jsonl", "x"))),
    Case("a file where a parent folder should be", [*PAIR[:4], "-o", "blocker/out.jsonl"], Error("blocker"),
         pair(then=write("blocker", "x"))),
    # -- names from the data and damaged outputs
    Case("a subreddit named like a path stays in the output folder", [*PAIR[:4], "-o", "split",
                                                                       "--split-by-subreddit"],
         Skip("split/_.._evil.jsonl"),
         pair(comments=[{**c, "subreddit": "../../evil"} if c["subreddit"] == "AskMen" else c for c in COMMENTS],
              submissions=[{**s, "subreddit": "../../evil"} if s["subreddit"] == "AskMen" else s
                           for s in SUBMISSIONS])),
    Case("run record that is a JSON list", PAIR, Error(RECORD), pair(then=write(RECORD, "[1, 2]"))),
    Case("run record that is not JSON", PAIR, Error(RECORD), pair(then=write(RECORD, "{torn"))),
    Case("a damaged old output is replaced whole", PAIR, Skip('"n_kept": 10', record=RECORD),
         pair(then=write("out.jsonl", '{"id": "a"}\n{"id": "b", "tor'))),
]


DOCCANO = ["--format", "doccano", "--input", "{data}", "-o", "labels.csv"]
SPAN_POST = {"id": 1, "text": "I am 34 and live in Leeds", "label": [[5, 7, "Age"], [20, 25, "Location"]]}


def spans(*rows) -> object:
    """setup: a doccano file of the first good post and then ``rows`` (objects or raw lines)."""
    return single([SPAN_POST, *rows], name="ann.jsonl")


DOCCANO_CASES = [
    Case("doccano: span start after its end", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[3, 1, "Age"]]})),
    Case("doccano: span past the text", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[0, 10**12, "Age"]]})),
    Case("doccano: negative start", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[-3, 1, "Age"]]})),
    Case("doccano: offsets that are true/false", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[False, True, "Age"]]})),
    Case("doccano: offsets as strings", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [["0", "2", "Age"]]})),
    Case("doccano: a category that is a list", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[0, 2, ["Age"]]]})),
    Case("doccano: a blank category", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[0, 2, "  "]]})),
    Case("doccano: a category not in --categories", [*DOCCANO, "--categories", "Age"],
         Error("ann.jsonl:1: field 'label'"), spans()),
    Case("doccano: a span of four items", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": [[0, 2, "Age", "extra"]]})),
    Case("doccano: label is an object", DOCCANO, Error("ann.jsonl:2: field 'label'"),
         spans({"id": 2, "text": "abc", "label": {"Age": [0, 2]}})),
    Case("doccano: entity without offsets", DOCCANO, Error("ann.jsonl:2: field 'entities'"),
         spans({"id": 2, "text": "abc", "entities": [{"label": "Age"}]})),
    Case("doccano: text is a number", DOCCANO, Error("ann.jsonl:2: field 'text'"),
         spans({"id": 2, "text": 5, "label": []})),
    Case("doccano: no text field", DOCCANO, Error("ann.jsonl:2"), spans({"id": 2, "label": []})),
    Case("doccano: a torn line", DOCCANO, Error("ann.jsonl:2"), single(jsonl([SPAN_POST]) + '{"id": 2, "te\n',
                                                                       name="ann.jsonl")),
    Case("doccano: an id that is an object", DOCCANO, Error("ann.jsonl:2: field 'id'"),
         spans({"id": {"a": 1}, "text": "abc", "label": []})),
    Case("doccano: bad spans counted with --skip-bad-rows", [*DOCCANO, "--skip-bad-rows"],
         Skip("start after end: 1"), spans({"id": 2, "text": "abc", "label": [[3, 1, "Age"]]},
                                           {"id": 3, "text": "abc", "label": [[0, 1, 3]]})),
    Case("doccano: an empty file", DOCCANO, Error("ann.jsonl"), single("", name="ann.jsonl")),
    Case("doccano: latin-1 bytes", DOCCANO, Error("ann.jsonl:1"),
         single(b'{"id": 1, "text": "caf\xe9", "label": []}\n', name="ann.jsonl")),
    Case("doccano: --layout of another kind", [*DOCCANO, "--layout", "wide"], Error("--layout"), spans()),
    Case("doccano: -o a Parquet file", [*DOCCANO[:4], "-o", "labels.parquet"], Error("field '--output'"), spans()),
    Case("doccano: -o is a folder", [*DOCCANO[:4], "-o", "folder"], Error("field '--output'"),
         single([SPAN_POST], name="ann.jsonl", then=write("folder", None))),
    Case("doccano: -o is the input", [*DOCCANO[:4], "-o", "ann.jsonl"], Error("field '--output'"), spans()),
]


@pytest.mark.parametrize("case", case_params(DOCCANO_CASES))
def test_hostile_doccano(case, hostile):
    hostile(main, case)


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    hostile(main, case)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 12 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder(hostile, tmp_path):
    def setup(tmp: Path) -> dict:
        values = pair()(tmp)
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o500)
        return values

    try:
        hostile(main, Case("read-only output folder", [*PAIR[:4], "-o", "ro/out.jsonl"], Error("--output"), setup))
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_nothing_is_written_outside_the_output_folder(hostile, tmp_path):
    evil = [{**c, "subreddit": "../../evil"} for c in COMMENTS]
    posts = [{**s, "subreddit": "../../evil"} for s in SUBMISSIONS]
    hostile(main, Case("path subreddit", [*PAIR[:4], "-o", "a/b/split", "--split-by-subreddit"], Skip("kept"),
                       pair(comments=evil, submissions=posts)))
    made = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert made - {"c.jsonl", "s.jsonl"} <= {"a/b/split/_.._evil.jsonl", "a/b/split/prepare.meta.json",
                                              "a/b/split/prepare.config.yaml"}, made


def test_a_repeated_comment_is_written_once(hostile, tmp_path):
    hostile(main, Case("repeats", PAIR, Skip('"duplicate_id": 10', record=RECORD), pair(comments=COMMENTS * 2)))
    ids = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(ids) == len(set(ids)) == 10
