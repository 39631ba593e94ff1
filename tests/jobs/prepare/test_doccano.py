"""`socialsynth prepare --format doccano`: doccano span files (the seed 001 Annotation*.jsonl) -> multi-label rows
that train_classifier.py reads, in both layouts; malformed spans are one line naming file, line and field."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from socialsynth.classify.data import load_texts
from socialsynth.jobs.prepare.cli import main

# three posts as the seed's doccano export writes them (ids, texts and spans of this shape), one without any span
POSTS = [
    {"id": 108503, "text": "Posted in queer subreddit 15 QMFG you can reach me", "label": [[0, 25, "Sexuality"]],
     "Comments": []},
    {"id": 108505, "text": "Posted in queer subreddit Toronto melts my nonbinary heart",
     "label": [[0, 25, "Sexuality"], [26, 33, "Location"], [40, 58, "Gender"], [26, 33, "Location"]],
     "Comments": []},
    {"id": 108524, "text": "Posted in teenagers subreddit I dont want my allowance", "label": [], "Comments": []},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_list_layout_csv_is_what_train_classifier_reads(tmp_path, run_cli):
    src, out = write_jsonl(tmp_path / "AnnotationLlama2-19.jsonl", POSTS), tmp_path / "Llama2_label.csv"
    code, stdout, err = run_cli(main, ["--format", "doccano", "--input", src, "-o", out])
    assert code == 0, err
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["108503", "108505", "108524"]
    # each category once, in the order its first span appears; a post without spans has no labels
    assert [json.loads(r["label"]) for r in rows] == [["Sexuality"], ["Sexuality", "Location", "Gender"], []]
    data = load_texts(out, task="multilabel")
    assert data.texts[1] == POSTS[1]["text"]
    assert [sorted(labels) for labels in data.labels] == [["Sexuality"], ["Gender", "Location", "Sexuality"], []]
    assert "posts without any span: 1" in stdout and "train_classifier.py --task multilabel --input" in stdout
    assert json.loads((tmp_path / "Llama2_label.meta.json").read_text())["posts_per_category"]["Sexuality"] == 2


def test_columns_layout_with_given_categories_and_unlabelled_posts_dropped(tmp_path, run_cli):
    src, out = write_jsonl(tmp_path / "a.jsonl", POSTS), tmp_path / "pii.jsonl"
    code, stdout, err = run_cli(main, ["--format", "doccano", "--input", src, "-o", out, "--layout", "columns",
                                       "--categories", "Sexuality,Gender", "--categories", "Location,Age",
                                       "--drop-unlabelled"])
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == ["id", "text", "Sexuality", "Gender", "Location", "Age"]  # the order given
    assert [r["id"] for r in rows] == [108503, 108505]
    assert [(r["Sexuality"], r["Gender"], r["Location"], r["Age"]) for r in rows] == [(1, 0, 0, 0), (1, 1, 1, 0)]
    assert "--label-col Sexuality,Gender,Location,Age" in stdout
    data = load_texts(out, task="multilabel", label_cols=["Sexuality", "Gender", "Location", "Age"])
    assert [sorted(labels) for labels in data.labels] == [["Sexuality"], ["Gender", "Location", "Sexuality"]]


def test_entities_export_text_classification_export_and_emoji_offsets(tmp_path, run_cli):
    rows = [
        {"text": "Im 25 from Leeds", "entities": [{"id": 1, "start_offset": 3, "end_offset": 5, "label": "Age"}]},
        {"text": "just a post", "label": ["Location"]},
        # doccano counts an emoji as 2 (UTF-16, as the browser does); the span ends at the text's end there
        {"text": "me 😀", "label": [[0, 5, "Age"]]},
    ]
    src, out = write_jsonl(tmp_path / "a.jsonl", rows), tmp_path / "o.tsv"
    code, _, err = run_cli(main, ["--format", "doccano", "--input", src, "-o", out])
    assert code == 0, err
    with open(out, encoding="utf-8", newline="") as handle:
        got = list(csv.DictReader(handle, delimiter="\t"))
    assert [(r["id"], json.loads(r["label"])) for r in got] == [("1", ["Age"]), ("2", ["Location"]), ("3", ["Age"])]


BAD = [
    ([[5, 2, "Age"]], "starts after it ends", "start after end"),
    ([[0, 99, "Age"]], "outside the text", "span outside the text"),
    ([[-1, 2, "Age"]], "outside the text", "span outside the text"),
    ([[0, 2.5, "Age"]], "whole number", "offset not a whole number"),
    ([[0, 2, "Hobby"]], "unknown category 'Hobby'", "unknown category"),
    ([[0, 2, 7]], "must be a name", "category not a name"),
    ([[0, 2]], "[start, end, category]", "malformed span"),
    ("Age", "must be a list of spans", "malformed span"),
]


@pytest.mark.parametrize("label, words, reason", BAD, ids=[r for _, _, r in BAD])
def test_a_malformed_span_is_one_line_naming_file_line_and_field(label, words, reason, tmp_path, run_cli):
    rows = [POSTS[0], {"id": 9, "text": "a short post", "label": label}]
    src, out = write_jsonl(tmp_path / "spans.jsonl", rows), tmp_path / "o.csv"
    argv = ["--format", "doccano", "--input", src, "-o", out, "--categories", "Age,Sexuality"]
    code, _, err = run_cli(main, argv)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "spans.jsonl:2" in lines[0] and "'label'" in lines[0] and words in lines[0]
    assert not out.exists()
    # --skip-bad-rows converts the rest and counts why the post was left out
    code, stdout, err = run_cli(main, [*argv, "--skip-bad-rows"])
    assert code == 0, err
    assert f"{reason}: 1" in stdout and "wrote 1 rows" in stdout


@pytest.mark.parametrize("row, words", [
    ({"id": 1, "label": []}, "'text'"),
    ({"id": 1, "text": ["not", "text"], "label": []}, "'text'"),
    ({"id": 1, "text": "no labels here"}, "'label'"),
    ('{"id": 1, "text": "torn', "rows.jsonl:1: invalid JSON"),
])
def test_a_bad_row_names_its_line(row, words, tmp_path, run_cli):
    src = write_jsonl(tmp_path / "rows.jsonl", [row])
    code, _, err = run_cli(main, ["--format", "doccano", "--input", src, "-o", tmp_path / "o.csv"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "rows.jsonl" in err and words in err, err


def test_a_duplicate_id_is_refused(tmp_path, run_cli):
    src = write_jsonl(tmp_path / "rows.jsonl", [POSTS[0], POSTS[0]])
    code, _, err = run_cli(main, ["--format", "doccano", "--input", src, "-o", tmp_path / "o.csv"])
    assert code == 2 and "rows.jsonl:2" in err and "duplicate id" in err


@pytest.mark.parametrize("argv, flag", [
    (["--input", "x.jsonl", "-o", "o.jsonl", "--layout", "columns"], "--layout"),
    (["--input", "x.jsonl", "-o", "o.jsonl", "--categories", "Age"], "--categories"),
    (["--input", "x.jsonl", "-o", "o.jsonl", "--drop-unlabelled"], "--drop-unlabelled"),
    (["--format", "doccano", "--input", "x.jsonl", "-o", "o.parquet"], "--output"),
    (["--format", "doccano", "-o", "o.csv"], "--input"),
    (["--format", "doccano", "--comments", "c.jsonl", "--submissions", "s.jsonl", "-o", "o.csv"], "--input"),
    (["--format", "doccano", "--input", "x.jsonl", "-o", "o.csv", "--categories", " , "], "--categories"),
    (["--format", "brat", "--input", "x.jsonl", "-o", "o.csv"], "--format"),
])
def test_flags_that_do_not_fit_the_format_are_refused(argv, flag, bad_flag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad_flag(main, argv, flag)
