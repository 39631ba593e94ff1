"""Hostile inputs for ``generate_synthetic_data.py`` (the normness job, and its ``--judge-agreement`` mode):
malformed, mistyped, mis-encoded, empty, duplicate and huge comment files, a bad value for every numeric and choice
flag, names that would leave the output folder, broken dimension and template files, unwritable output places,
missing models, damaged outputs and upvote-id lists. Each case ends in exit 2 with one line naming the
file/line/field or the flag, or in exit 0 with the skip counted in the summary or the run record; never a traceback.

Models are fakes (``-m fake-...``: a fake's context is 1500 "tokens", one a word) and load in no time; one case loads
the tiny real model to show a 2 MB comment is counted against its real context, not put in a prompt. Most cases stop
while parsing, before any model loads."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from socialsynth.jobs.norms.cli import main
from tests.hostile.conftest import Case, Error, Skip, case_params
from tests.hostile.corpus import fake_generators, run_with_read_only_output
from tests.hostile.corpus import raw as corpus_raw

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ROWS = [json.loads(line) for line in (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()[:3]]
FORMALITY = (REPO / "socialsynth" / "prompts" / "dimensions" / "formality.yaml").read_text(encoding="utf-8")
PAIRS = REPO / "data" / "judge_pairs_sample.csv"
OK = ["-r", "askmen", "-n", "formality", "--input", "{data}", "-o", "out", "-m", "fake-a", "--embedding-model",
      "none", "--levels", "1,5"]
RECORD = "out/askmen_formality.meta.json"


@pytest.fixture(autouse=True)
def fake_models(monkeypatch, fake_backend_cls):
    """``-m fake-*`` loads a fake backend with a 1500-token context; any other name loads as it really would."""
    fake_generators(monkeypatch, fake_backend_cls, 1500, lambda chat, key: f"A rewritten comment ({key}).")


# ------------------------------------------------------------------------------------------- file writers


def lines(*content: str, name: str = "askmen.jsonl"):
    """setup: an input of the given raw lines."""

    def setup(tmp: Path) -> dict:
        (tmp / name).write_text("".join(line + "\n" for line in content), encoding="utf-8")
        return {"data": tmp / name}

    return setup


def raw(content: bytes, name: str = "comments.csv"):
    return corpus_raw(content, name)


def comments(rows=ROWS, then=None):
    """setup: a good JSONL input of ``rows``; ``then(tmp)`` damages something else afterwards."""

    def setup(tmp: Path) -> dict:
        values = lines(*(json.dumps(r) for r in rows))(tmp)
        if then is not None:
            then(tmp)
        return values

    return setup


def row(i: int = 1, **fields) -> str:
    return json.dumps({**ROWS[i], **fields})


def write(name: str, content: str | bytes | None):
    """then: write ``name`` under tmp (text, bytes, or None for a folder)."""

    def then(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return then


def good_record(comment_id: str) -> str:
    return json.dumps({"id": comment_id, "idx": 0, "original_comment": "x", "original_rating": 3, "1": "y", "5": "z"})


HUGE = "word " * 400_000  # 2 MB
CONTEXT = "comment longer than the model's context"

CASES = [
    # -- malformed files
    Case("torn JSON line in the middle", OK, Error("askmen.jsonl:2"),
         lines(row(0), '{"id": "x", "comment": "cut', row(2))),
    Case("a JSON array instead of an object", OK, Error("askmen.jsonl:2"), lines(row(0), "[1, 2]")),
    Case("torn line counted with --skip-bad-rows", [*OK, "--skip-bad-rows"], Skip("invalid JSON: 1"),
         lines(row(0), '{"id": "x", "comment": "cut', row(2))),
    Case("CSV without a comment column", OK, Error("field 'comment'"), raw(b"id,text\n1,hello\n")),
    Case("Parquet that is not Parquet", OK, Error("comments.parquet"), raw(b"PAR1 garbage", "comments.parquet")),
    Case("gzip that is not gzip", OK, Error("comments.jsonl.gz"), raw(b"\x1f\x8b garbage", "comments.jsonl.gz")),
    Case("pickle without --allow-pickle", OK, Error("--allow-pickle"), raw(b"\x80\x04N.", "comments.pkl")),
    Case("damaged pickle with --allow-pickle", [*OK, "--allow-pickle"], Error("cannot unpickle"),
         raw(b"\x80\x04\x95garbage", "comments.pkl")),
    Case("broken job file", ["--config", "{tmp}/job.yaml"], Error("job.yaml:3"),
         comments(then=write("job.yaml", "subreddit: askmen\nlevels: [unclosed\n"))),
    Case("job file that is a list", ["--config", "{tmp}/job.yaml"], Error("job.yaml"),
         comments(then=write("job.yaml", "- a\n- b\n"))),
    Case("unknown setting in the job file", ["--config", "{tmp}/job.yaml", *OK], Error("no_such_setting"),
         comments(then=write("job.yaml", "no_such_setting: 1\n"))),
    # -- wrong types and columns
    Case("a comment that is a number is counted", OK, Skip("comment is not text: 1"), lines(row(0), row(1, comment=5))),
    Case("a row without a comment", OK, Error("askmen.jsonl:2: field 'comment'"),
         lines(row(0), json.dumps({"id": "x"}))),
    Case("a null id", OK, Error("askmen.jsonl:2: field 'id'"), lines(row(0), row(1, id=None))),
    Case("an empty id", OK, Error("askmen.jsonl:2: field 'id'"), lines(row(0), row(1, id=" "))),
    Case("a list id counted with --skip-bad-rows", [*OK, "--skip-bad-rows"], Skip("no usable id: 1"),
         lines(row(0), row(1, id=[1, 2]))),
    # -- encodings
    Case("latin-1 byte in a JSONL line", OK, Error("askmen.jsonl:2"),
         raw(row(0).encode() + b'\n{"id": "z", "comment": "caf\xe9"}\n', "askmen.jsonl")),
    Case("latin-1 byte in a CSV", OK, Error("comments.csv"), raw(b"id,comment\n1,caf\xe9 au lait\n")),
    Case("UTF-16 CSV", OK, Error("comments.csv"), raw("id,comment\n1,hello\n".encode("utf-16"))),
    Case("UTF-8 BOM before the first line", OK, Skip("records in output: 2", record=RECORD),
         raw(b"\xef\xbb\xbf" + row(0).encode() + b"\n" + row(1).encode() + b"\n", "askmen.jsonl")),
    # -- empty files and empty texts
    Case("empty file", OK, Error("askmen.jsonl"), raw(b"", "askmen.jsonl")),
    Case("blank lines only", OK, Error("askmen.jsonl"), raw(b"\n\n  \n", "askmen.jsonl")),
    Case("CSV header only", OK, Error("comments.csv"), raw(b"id,comment\n")),
    Case("empty comments are counted", OK, Skip("empty comment: 2"),
         lines(row(0), row(1, comment=""), row(2, comment="   "))),
    Case("every comment empty", OK, Skip("empty comment: 1", record=RECORD), lines(row(0, comment=""))),
    # -- duplicate ids and rows
    Case("duplicate id: counted, the first row kept", OK, Skip("duplicate id: 1", record=RECORD),
         lines(row(0), row(1), row(0, comment="another text under the same id"))),
    Case("a whole row twice", OK, Skip("duplicate id: 2"), lines(row(0), row(1), row(1), row(1))),
    # -- huge texts
    Case("a 2 MB comment over --max-comment-chars", OK, Skip("comment longer than 10000 characters: 1"),
         lines(row(0), row(1, comment=HUGE))),
    Case("a comment over the model's context", [*OK, "--max-comment-chars", "100000"],
         Skip(f"{CONTEXT} (1500 tokens): 1", record=RECORD), lines(row(0), row(1, comment="word " * 3000))),
    Case("a 2 MB comment with a raised limit, tiny real model",
         ["-r", "askmen", "-n", "formality", "--input", "{data}", "-o", "out", "-m", "{tiny}", "--device", "cpu",
          "--embedding-model", "none", "--levels", "1", "--max-new-tokens", "2", "--max-comment-chars", "3000000"],
         Skip(f"{CONTEXT} (2048 tokens): 1", record=RECORD), lines(row(1, comment=HUGE))),
    # -- bad values for every numeric and choice flag
    Case("-b 0", [*OK, "-b", "0"], Error("--batch-size"), comments()),
    Case("-b -1", [*OK, "-b", "-1"], Error("--batch-size"), comments()),
    Case("-sb 0", [*OK, "-sb", "0"], Error("--sub-batch-size"), comments()),
    Case("--max-batch-tokens 0", [*OK, "--max-batch-tokens", "0"], Error("--max-batch-tokens"), comments()),
    Case("--max-comment-chars 0", [*OK, "--max-comment-chars", "0"], Error("--max-comment-chars"), comments()),
    Case("--max-comment-chars -5", [*OK, "--max-comment-chars", "-5"], Error("--max-comment-chars"), comments()),
    Case("--levels 0,9", [*OK, "--levels", "0,9"], Error("--levels"), comments()),
    Case("--levels 6", [*OK, "--levels", "6"], Error("--levels"), comments()),
    Case("--levels empty", [*OK, "--levels", ","], Error("--levels"), comments()),
    Case("--levels one", [*OK, "--levels", "one"], Error("--levels"), comments()),
    Case("--min-similarity 1.5", [*OK, "--min-similarity", "1.5"], Error("--min-similarity"), comments()),
    Case("--min-similarity -2", [*OK, "--min-similarity", "-2"], Error("--min-similarity"), comments()),
    Case("--min-similarity nan", [*OK, "--min-similarity", "nan"], Error("--min-similarity"), comments()),
    Case("--max-perplexity -1", [*OK, "--max-perplexity", "-1"], Error("--max-perplexity"), comments()),
    Case("--max-perplexity nan", [*OK, "--max-perplexity", "nan"], Error("--max-perplexity"), comments()),
    Case("--rating-method vibes", [*OK, "--rating-method", "vibes"], Error("--rating-method"), comments()),
    Case("--temperature -1", [*OK, "--temperature", "-1"], Error("--temperature"), comments()),
    Case("--temperature nan", [*OK, "--temperature", "nan"], Error("--temperature"), comments()),
    Case("--temperature inf", [*OK, "--temperature", "inf"], Error("--temperature"), comments()),
    Case("--top-p 0", [*OK, "--top-p", "0"], Error("--top-p"), comments()),
    Case("--top-p 1.5", [*OK, "--top-p", "1.5"], Error("--top-p"), comments()),
    Case("--top-k -1", [*OK, "--top-k", "-1"], Error("--top-k"), comments()),
    Case("--repetition-penalty 0", [*OK, "--repetition-penalty", "0"], Error("--repetition-penalty"), comments()),
    Case("--repetition-penalty inf", [*OK, "--repetition-penalty", "inf"], Error("--repetition-penalty"), comments()),
    Case("--max-new-tokens 0", [*OK, "--max-new-tokens", "0"], Error("--max-new-tokens"), comments()),
    Case("--seed -1", [*OK, "--seed", "-1"], Error("--seed"), comments()),
    Case("--judge without a method", [*OK, "--judge", "embedded"], Error("--judge"), comments()),
    Case("--judge unknown method", [*OK, "--judge", "embedded:vibes"], Error("--judge"), comments()),
    Case("--judge unknown backend", [*OK, "--judge", "tpu:m:logits"], Error("--judge"), comments()),
    Case("--judge bad option", [*OK, "--judge", "hf:m:logits,quantize=3"], Error("--judge"), comments()),
    Case("--judge openai without --api-base", [*OK, "--judge", "openai:gpt:logits"], Error("--judge"), comments()),
    Case("--judge hf model that is not there", [*OK, "--judge", "hf:{tmp}/no_such_model:logits"],
         Error("no_such_model"), comments()),
    Case("--candidates 0", [*OK, "--candidates", "0"], Error("--candidates"), comments()),
    Case("--candidates x", [*OK, "--candidates", "x"], Error("--candidates"), comments()),
    Case("--candidates 3 with greedy decoding", [*OK, "--candidates", "3", "--temperature", "0"],
         Error("--candidates"), comments()),
    Case("--selection-weight nan", [*OK, "--selection-weight", "nan"], Error("--selection-weight"), comments()),
    Case("--max-pairs 0", ["--judge-agreement", str(PAIRS), "-o", "out", "--max-pairs", "0"], Error("--max-pairs")),
    Case("--seed 2**40", [*OK, "--seed", str(2**40)], Error("--seed"), comments()),
    Case("--seed 1.5", [*OK, "--seed", "1.5"], Error("--seed"), comments()),
    Case("-s -1", [*OK, "-s", "-1"], Error("--start-idx"), comments()),
    Case("-s 2 -e 1 (start after end)", [*OK, "-s", "2", "-e", "1"], Error("--end-idx"), comments()),
    Case("-s past the last comment", [*OK, "-s", "3"], Error("--start-idx"), comments()),
    Case("--shard 3/2", [*OK, "--shard", "3/2"], Error("--shard"), comments()),
    Case("--shard x", [*OK, "--shard", "x"], Error("--shard"), comments()),
    Case("--backend tpu", [*OK, "--backend", "tpu"], Error("--backend"), comments()),
    Case("--backend openai without --api-base", [*OK, "--backend", "openai"], Error("--api-base"), comments()),
    Case("-q 3", [*OK, "-q", "3"], Error("--quantization"), comments()),
    Case("--dtype fp8", [*OK, "--dtype", "fp8"], Error("--dtype"), comments()),
    Case("--device tpu", [*OK, "--device", "tpu"], Error("--device"), comments()),
    Case("--concurrency 0", [*OK, "--concurrency", "0"], Error("--concurrency"), comments()),
    Case("--request-timeout 0", [*OK, "--request-timeout", "0"], Error("--request-timeout"), comments()),
    Case("--request-timeout nan", [*OK, "--request-timeout", "nan"], Error("--request-timeout"), comments()),
    Case("--max-retries -1", [*OK, "--max-retries", "-1"], Error("--max-retries"), comments()),
    Case("--tensor-parallel 0", [*OK, "--tensor-parallel", "0"], Error("--tensor-parallel"), comments()),
    Case("--embedding-model blank", [*OK, "--embedding-model", " "], Error("--embedding-model"), comments()),
    Case("-m blank", [*OK, "-m", " "], Error("--model"), comments()),
    # -- dimensions and templates
    Case("-n unknown", [*OK, "-n", "toxicity"], Error("--norm-dimension"), comments()),
    Case("-n a broken YAML file", [*OK, "-n", "{tmp}/dim.yaml"], Error("dim.yaml"),
         comments(then=write("dim.yaml", "name: x\nlevels: [unclosed\n"))),
    Case("-n a YAML file of plain text", [*OK, "-n", "{tmp}/dim.yaml"], Error("dim.yaml"),
         comments(then=write("dim.yaml", "just a sentence about formality\n"))),
    Case("-n a YAML file with four levels", [*OK, "-n", "{tmp}/dim.yaml"], Error("dim.yaml"),
         comments(then=write("dim.yaml", FORMALITY.split("  - name: Very Formal")[0]))),
    Case("-n a folder named like a YAML file", [*OK, "-n", "{tmp}/dim.yaml"], Error("dim.yaml"),
         comments(then=write("dim.yaml", None))),
    Case("-n a dimension whose name is a path", [*OK, "-n", "{tmp}/dim.yaml"], Error("'../../evil'"),
         comments(then=write("dim.yaml", FORMALITY.replace("name: formality", "name: ../../evil")))),
    Case("--rewrite-template unknown", [*OK, "--rewrite-template", "no_such_template"], Error("--rewrite-template"),
         comments()),
    Case("--rewrite-template with an unknown field", [*OK, "--rewrite-template", "{tmp}/t.yaml"],
         Error("unknown field {{nope}}"), comments(then=write("t.yaml", "system: 'Hi {nope}'\nuser: '{comment}'\n"))),
    Case("--rewrite-template without the comment", [*OK, "--rewrite-template", "{tmp}/t.yaml"],
         Error("no {{comment}} field"), comments(then=write("t.yaml", "system: 'Hi'\nuser: 'Be {level_name}'\n"))),
    Case("--rating-template broken YAML", [*OK, "--rating-template", "{tmp}/t.yaml"], Error("--rating-template"),
         comments(then=write("t.yaml", "system: [unclosed\n"))),
    Case("--rating-template of another method", [*OK, "--rating-method", "logits", "--rating-template",
                                                 "norm_likelihood"], Error("--rating-template"), comments()),
    # -- names that would leave the output folder
    Case("-r ../x", [*OK, "-r", "../x"], Error("--subreddit"), comments()),
    Case("-r a/b", [*OK, "-r", "a/b"], Error("--subreddit"), comments()),
    Case("-r ..", [*OK, "-r", ".."], Error("--subreddit"), comments()),
    # -- argparse's own errors are one line too
    Case("-b without its value", [*OK, "-b"], Error("-b"), comments()),
    Case("-b not a number", [*OK, "-b", "many"], Error("--batch-size"), comments()),
    Case("unknown flag", [*OK, "--no-such-flag"], Error("--no-such-flag"), comments()),
    Case("no -r", ["-n", "formality"], Error("--subreddit"), None),
    # -- paths that are not there
    Case("--input does not exist", [*OK, "--input", "{tmp}/missing.jsonl"], Error("missing.jsonl"), comments()),
    Case("no data file for -r in -d", ["-r", "askmen", "-n", "formality", "-d", "{tmp}", "-o", "out"],
         Error("no data for subreddit 'askmen'"), None),
    Case("-d is a file", ["-r", "askmen", "-n", "formality", "-d", "{data}", "-o", "out"], Error("--data-dir"),
         comments()),
    Case("-u does not exist", [*OK, "-u", "{tmp}/no_model"], Error("--upvote-dir"), comments()),
    # -- unwritable places
    Case("a file where the output folder should be", OK, Error("--output-dir"), comments(then=write("out", "x"))),
    Case("a file where a parent folder should be", [*OK, "-o", "blocker/out"], Error("blocker"),
         comments(then=write("blocker", "x"))),
    Case("a folder where the output file should be", OK, Error("askmen_formality.jsonl"),
         comments(then=write("out/askmen_formality.jsonl", None))),
    # -- missing models
    Case("-m a local path that does not exist", [*OK, "-m", "./models/none-here"], Error("--model"), comments()),
    Case("-m an id not cached, offline", [*OK, "-m", "nobody-xyz/not-cached-model"],
         Error("nobody-xyz/not-cached-model"), comments()),
    Case("--embedding-model a missing path", [*OK, "--embedding-model", "/no/such/encoder"],
         Error("--embedding-model"), comments()),
    Case("--embedding-model an id not cached, offline", [*OK, "--embedding-model", "nobody-xyz/enc"],
         Error("--embedding-model"), comments()),
    # -- damaged outputs and upvote-id lists
    Case("run record that is a JSON list", OK, Error("askmen_formality.meta.json"),
         comments(then=write(RECORD, "[1, 2]"))),
    Case("run record that is not JSON", OK, Error("askmen_formality.meta.json"), comments(then=write(RECORD, "{torn"))),
    Case("torn line in the middle of the output", OK, Error("askmen_formality.jsonl:2"),
         comments(then=write("out/askmen_formality.jsonl", good_record("a") + '\n{"id": "b", "orig\n'
                             + good_record("c") + "\n"))),
    Case("a record without an id in the output", OK, Error("askmen_formality.jsonl:1"),
         comments(then=write("out/askmen_formality.jsonl", '{"original_comment": "x"}\n'))),
    Case("inference ids that are a folder", [*OK, "-u", "{tmp}/up"], Error("inference_sample_ids.txt"),
         comments(then=write("up/inference_sample_ids.txt", None))),
    Case("inference ids not UTF-8", [*OK, "-u", "{tmp}/up"], Error("inference_sample_ids.txt"),
         comments(then=write("up/inference_sample_ids.txt", b"\xff\xfe\x00a\n"))),
    Case("no comment among the inference ids", [*OK, "-u", "{tmp}/up"], Skip("not in inference_sample_ids.txt: 3"),
         comments(then=write("up/inference_sample_ids.txt", "someone_else\n"))),
    # -- --judge-agreement
    Case("judge pairs without comment columns", ["--judge-agreement", "{data}", "-m", "fake-a", "-o", "out"],
         Error("comment1"), raw(b"topic,text\na,b\n")),
    Case("judge pairs without dimension columns", ["--judge-agreement", "{data}", "-m", "fake-a", "-o", "out"],
         Error("no dimension columns"), raw(b"topic,comment1,comment2\na,x,y\n")),
    Case("judge pairs of an unknown topic", ["--judge-agreement", str(PAIRS), "-m", "fake-a", "-o", "out",
                                             "--judge-topics", "nowhere"], Error("topic"), None),
    Case("judge pairs with an empty comment are counted",
         ["--judge-agreement", "{data}", "-m", "fake-a", "-o", "out"], Skip("empty comment2: 1"),
         raw(b"topic,comment1,comment2,formality\na,Hello there.,Hi,1\na,Good day.,,2\n")),
    Case("judge pairs with a comment over the context",
         ["--judge-agreement", "{data}", "-m", "fake-a", "-o", "out"], Skip(f"{CONTEXT} (1500 tokens): 1"),
         raw(b"topic,comment1,comment2,formality\na,Hello there.,Hi,1\na,Good day.," + b"word " * 3000 + b",2\n")),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile, request):
    if any("{tiny}" in str(arg) for arg in case.argv):
        tiny, setup = request.getfixturevalue("tiny_model_dir"), case.setup
        case = replace(case, setup=lambda tmp: {**setup(tmp), "tiny": tiny})
    hostile(main, case)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder(hostile, tmp_path):
    run_with_read_only_output(hostile, main, OK, comments(), tmp_path)


def test_a_torn_last_line_is_repaired_and_nothing_is_doubled(hostile, tmp_path):
    torn = good_record(ROWS[0]["id"]) + '\n{"id": "' + ROWS[1]["id"] + '", "orig'
    hostile(main, Case("torn last line", OK, Skip("records in output: 3"),
                       comments(then=write("out/askmen_formality.jsonl", torn))))
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "askmen_formality.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in ROWS)


def test_duplicate_ids_are_each_written_once(hostile, tmp_path):
    case = Case("duplicate ids", OK, Skip("duplicate id: 2"), lines(row(0), row(1), row(0), row(2), row(1)))
    hostile(main, case)
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "askmen_formality.jsonl").read_text().splitlines()]
    assert ids == [r["id"] for r in ROWS]
    record = json.loads((tmp_path / RECORD).read_text(encoding="utf-8"))
    assert record["complete"] is True and record["skipped"] == {"duplicate id": 2}
