"""Hostile inputs for ``rephrase_posts.py``: malformed, mistyped, mis-encoded, empty, duplicate and huge input files,
a bad value for every numeric and choice flag, unwritable output places, missing models and damaged outputs. Each
case ends in exit 2 with one line naming the file/line/field or the flag, or in exit 0 with the skip counted; never
a traceback. Models are fakes (``-m fake-...``; a fake's context is 400 "tokens", one a word) and load in no time;
most cases stop before any model loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from socialsynth.jobs.rephrase.cli import main
from tests.hostile.conftest import Case, Error, Skip, case_params
from tests.hostile.corpus import fake_generators, run_with_read_only_output
from tests.hostile.corpus import raw as corpus_raw

POSTS = [{"id": f"p{i}", "original_post": f"I am Bob, 34, from Dayton, and this is post {i}."} for i in range(3)]
OK = ["--input", "{data}", "-o", "out", "-m", "fake-a", "--embedding-model", "none"]


@pytest.fixture(autouse=True)
def fake_models(monkeypatch, fake_backend_cls):
    """``-m fake-*`` loads a fake backend with a 400-token context; any other name loads as it really would."""
    fake_generators(monkeypatch, fake_backend_cls, 400,
                    lambda chat, key: f'"Changed Post": I am Tim, 41, from Boise ({key}).')


# ------------------------------------------------------------------------------------------- file writers


def jsonl(*lines: str, name: str = "posts.jsonl"):
    """setup: a JSONL input of the given raw lines."""

    def setup(tmp: Path) -> dict:
        (tmp / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return {"data": tmp / name}

    return setup


def raw(content: bytes, name: str = "posts.csv"):
    return corpus_raw(content, name)


def posts(rows=POSTS, then=None):
    """setup: a good JSONL input of ``rows``; ``then(tmp)`` damages something else afterwards."""

    def setup(tmp: Path) -> dict:
        values = jsonl(*(json.dumps(r) for r in rows))(tmp)
        if then is not None:
            then(tmp)
        return values

    return setup


def output(name: str, content: str):
    """then: write ``out/<name>`` (an output or run record left by an earlier run)."""

    def then(tmp: Path) -> None:
        (tmp / "out").mkdir(exist_ok=True)
        (tmp / "out" / name).write_text(content, encoding="utf-8")

    return then


def good_record(post_id: str) -> str:
    return json.dumps({"id": f"{post_id}:fake-a:0", "post_id": post_id, "model_slug": "fake-a", "sample": 0,
                       "status": "ok", "passed": True, "flags": {}, "generated_text": "x",
                       "provenance": {"sampling": {"temperature": 0.7}}})


def job_file(text: str):
    def then(tmp: Path) -> None:
        (tmp / "job.yaml").write_text(text, encoding="utf-8")

    return then


def a_file_at(name: str):
    def then(tmp: Path) -> None:
        (tmp / name).write_text("not a folder", encoding="utf-8")

    return then


HUGE = " ".join(["word"] * 2000)

CASES = [
    # -- malformed files
    Case("torn JSON line in the middle", OK, Error("posts.jsonl:2"),
         jsonl(json.dumps(POSTS[0]), '{"id": "p1", "original_post": "cut', json.dumps(POSTS[2]))),
    Case("a JSON array instead of an object", OK, Error("posts.jsonl:2"), jsonl(json.dumps(POSTS[0]), "[1, 2]")),
    Case("CSV without the text column", OK, Error("original_post"), raw(b"id,text\n1,hello\n")),
    Case("broken job file", ["--config", "{tmp}/job.yaml"], Error("job.yaml:3"),
         posts(then=job_file("input: posts.jsonl\nmodel: [unclosed\n"))),
    Case("job file that is a list", ["--config", "{tmp}/job.yaml"], Error("job.yaml"),
         posts(then=job_file("- a\n- b\n"))),
    Case("unknown setting in the job file", ["--config", "{tmp}/job.yaml", *OK], Error("no_such_setting"),
         posts(then=job_file("no_such_setting: 1\n"))),
    Case("job file gives null for a count", ["--config", "{tmp}/job.yaml", *OK], Error("job.yaml: field '--start-idx'"),
         posts(then=job_file("start_idx: null\n"))),
    Case("job file gives null for a model", ["--config", "{tmp}/job.yaml", "--input", "{data}"],
         Error("field '--model'"), posts(then=job_file("model: [null]\n"))),
    # -- per-model entries in a job file (models: [{name, temperature, ...}])
    Case("models entry with a list for a name", ["--config", "{tmp}/job.yaml", *OK[:4]], Error("field '--model'"),
         posts(then=job_file("models: [{name: [a, b]}]\n"))),
    Case("models entry with a nested list", ["--config", "{tmp}/job.yaml", *OK[:4]], Error("field '--model'"),
         posts(then=job_file("models: [[a, b]]\n"))),
    Case("models entry with true for a temperature", ["--config", "{tmp}/job.yaml", *OK[:4]],
         Error("field '--model'"), posts(then=job_file("models: [{name: fake-a, temperature: true}]\n"))),
    Case("models entry with .inf for top_p", ["--config", "{tmp}/job.yaml", *OK[:4]], Error("field '--model'"),
         posts(then=job_file("models: [{name: fake-a, top_p: .inf}]\n"))),
    Case("a models entry whose max_new_tokens overflows the context is counted",
         ["--config", "{tmp}/job.yaml", *OK[:4], "--max-post-chars", "100000"],
         Skip("too long for the model's context: 3"),
         posts(then=job_file("models: [{name: fake-a, max_new_tokens: 1000}]\n"))),
    Case("models entry with a mapping as csv_name", ["--config", "{tmp}/job.yaml", *OK[:4]],
         Error("field '--model'"), posts(then=job_file("models: [{name: fake-a, csv_name: {a: 1}}]\n"))),
    Case("models entries that write one CSV", ["--config", "{tmp}/job.yaml", *OK[:4]], Error("field '--csv-name'"),
         posts(then=job_file("models: [{name: fake-a, csv_name: x.csv}, {name: fake-b, csv_name: x.csv}]\n"))),
    Case("--csv-name with an unknown placeholder", [*OK, "--csv-name", "{{model}}.csv"], Error("field '--csv-name'"),
         posts()),
    Case("--csv-name with a stray brace", [*OK, "--csv-name", "{{slug.csv"], Error("field '--csv-name'"), posts()),
    Case("--csv-name leaving the output folder", [*OK, "--csv-name", "../{{slug}}.csv"], Error("field '--csv-name'"),
         posts()),
    # -- wrong types and columns
    Case("a post that is a number is counted", OK, Skip("original_post is not text: 1"),
         jsonl(json.dumps(POSTS[0]), json.dumps({"id": "p9", "original_post": 5}))),
    Case("--id-col names no column", [*OK, "--id-col", "post_key"], Error("post_key"), posts()),
    Case("--text-col names no column", [*OK, "--text-col", "body"], Error("body"), posts()),
    # -- encodings
    Case("latin-1 byte in a CSV", OK, Error("posts.csv"), raw(b"id,original_post\n1,caf\xe9 in Dayton\n")),
    Case("latin-1 byte in a JSONL line", OK, Error("posts.jsonl:1"),
         raw(b'{"id": "1", "original_post": "caf\xe9"}\n', "posts.jsonl")),
    Case("UTF-8 BOM before the header is read as text", OK, Skip('"post_id": "a1"', record="out/rephrased.jsonl"),
         raw(b"\xef\xbb\xbfid,original_post\na1,I am Bob from Dayton\n")),
    Case("UTF-16 file", OK, Error("posts.csv"), raw("id,original_post\n1,hello\n".encode("utf-16"))),
    # -- empty files and empty texts
    Case("empty file", OK, Error("posts.jsonl"), raw(b"", "posts.jsonl")),
    Case("header only", OK, Error("posts.csv"), raw(b"id,original_post\n")),
    Case("blank lines only", OK, Error("posts.jsonl"), raw(b"\n\n  \n", "posts.jsonl")),
    Case("empty post texts are counted", OK, Skip("empty original_post: 2"),
         jsonl(json.dumps(POSTS[0]), json.dumps({"id": "e1", "original_post": ""}),
               json.dumps({"id": "e2", "original_post": "   "}))),
    Case("every post empty", OK, Skip("empty original_post: 1"), jsonl(json.dumps({"id": "e", "original_post": ""}))),
    # -- duplicate ids and rows
    Case("duplicate id", OK, Error("posts.jsonl:2: field 'id'"), jsonl(json.dumps(POSTS[0]), json.dumps(POSTS[0]))),
    Case("duplicate id counted with --skip-bad-rows", [*OK, "--skip-bad-rows"], Skip("duplicate id: 1"),
         jsonl(json.dumps(POSTS[0]), json.dumps(POSTS[0]), json.dumps(POSTS[1]))),
    Case("duplicate row numbers never happen without an id column", OK, Skip("posts selected: 2"),
         raw(b"original_post\nsame text\nsame text\n")),
    # -- huge texts
    Case("post over --max-post-chars is counted", [*OK, "--max-post-chars", "20"], Skip("longer than 20 characters: 3"),
         posts()),
    Case("post over the model's context is counted", [*OK, "--max-post-chars", "100000"],
         Skip("too long for the model's context: 1"),
         jsonl(json.dumps(POSTS[0]), json.dumps({"id": "big", "original_post": HUGE}))),
    Case("one long line of 2 MB", OK, Skip("longer than 10000 characters: 1"),
         jsonl(json.dumps(POSTS[0]), json.dumps({"id": "big", "original_post": "x" * 2_000_000}))),
    # -- bad values for every numeric and choice flag
    Case("-b 0", [*OK, "-b", "0"], Error("field '--batch-size'"), posts()),
    Case("-b -1", [*OK, "-b", "-1"], Error("field '--batch-size'"), posts()),
    Case("--samples-per-model 0", [*OK, "--samples-per-model", "0"], Error("field '--samples-per-model'"), posts()),
    Case("--max-batch-tokens 0", [*OK, "--max-batch-tokens", "0"], Error("field '--max-batch-tokens'"), posts()),
    Case("--max-post-chars 0", [*OK, "--max-post-chars", "0"], Error("field '--max-post-chars'"), posts()),
    Case("--search-sample 0", [*OK, "--search-sample", "0"], Error("field '--search-sample'"), posts()),
    Case("--search-temperatures with a negative", [*OK, "--search-temperatures=-0.5,0.7"],
         Error("field '--search-temperatures'"), posts()),
    Case("--search-temperatures to inf", [*OK, "--search-temperatures", "0.5:inf:0.1"],
         Error("field '--search-temperatures'"), posts()),
    Case("--search-temperatures nan", [*OK, "--search-temperatures", "nan,0.5"], Error("field '--search-temperatures'"),
         posts()),
    Case("--search-temperatures of a million", [*OK, "--search-temperatures", "0:1:0.000001"],
         Error("field '--search-temperatures'"), posts()),
    Case("--search-temperatures backwards", [*OK, "--search-temperatures", "1:0.5:0.1"],
         Error("field '--search-temperatures'"), posts()),
    Case("--temperature -1", [*OK, "--temperature", "-1"], Error("field '--temperature'"), posts()),
    Case("--temperature nan", [*OK, "--temperature", "nan"], Error("field '--temperature'"), posts()),
    Case("--temperature inf", [*OK, "--temperature", "inf"], Error("field '--temperature'"), posts()),
    Case("--top-p 0", [*OK, "--top-p", "0"], Error("field '--top-p'"), posts()),
    Case("--top-p 1.5", [*OK, "--top-p", "1.5"], Error("field '--top-p'"), posts()),
    Case("--top-k -1", [*OK, "--top-k", "-1"], Error("field '--top-k'"), posts()),
    Case("--repetition-penalty 0", [*OK, "--repetition-penalty", "0"], Error("field '--repetition-penalty'"), posts()),
    Case("--repetition-penalty inf", [*OK, "--repetition-penalty", "inf"], Error("field '--repetition-penalty'"),
         posts()),
    Case("--max-new-tokens 0", [*OK, "--max-new-tokens", "0"], Error("field '--max-new-tokens'"), posts()),
    Case("--seed -1", [*OK, "--seed", "-1"], Error("field '--seed'"), posts()),
    Case("--seed 2**70", [*OK, "--seed", str(2**70)], Error("field '--seed'"), posts()),
    Case("--seed 1.5", [*OK, "--seed", "1.5"], Error("field '--seed'"), posts()),
    Case("-s -1", [*OK, "-s", "-1"], Error("field '--start-idx'"), posts()),
    Case("-s 2 -e 1 (start after end)", [*OK, "-s", "2", "-e", "1"], Error("field '--end-idx'"), posts()),
    Case("-s past the last post", [*OK, "-s", "3"], Error("field '--start-idx'"), posts()),
    Case("--shard 3/2", [*OK, "--shard", "3/2"], Error("field '--shard'"), posts()),
    Case("--shard 0/0", [*OK, "--shard", "0/0"], Error("field '--shard'"), posts()),
    Case("--backend tpu", [*OK, "--backend", "tpu"], Error("--backend"), posts()),
    Case("--backend openai without --api-base", [*OK, "--backend", "openai"], Error("field '--api-base'"), posts()),
    Case("-q 3", [*OK, "-q", "3"], Error("--quantization"), posts()),
    Case("--dtype fp8", [*OK, "--dtype", "fp8"], Error("--dtype"), posts()),
    Case("--device tpu", [*OK, "--device", "tpu"], Error("field '--device'"), posts()),
    Case("--concurrency 0", [*OK, "--concurrency", "0"], Error("field '--concurrency'"), posts()),
    Case("--request-timeout 0", [*OK, "--request-timeout", "0"], Error("field '--request-timeout'"), posts()),
    Case("--request-timeout nan", [*OK, "--request-timeout", "nan"], Error("field '--request-timeout'"), posts()),
    Case("--max-retries -1", [*OK, "--max-retries", "-1"], Error("field '--max-retries'"), posts()),
    Case("--tensor-parallel 0", [*OK, "--tensor-parallel", "0"], Error("field '--tensor-parallel'"), posts()),
    Case("--text-col ''", [*OK, "--text-col", ""], Error("field '--text-col'"), posts()),
    Case("--template unknown", [*OK, "--template", "no_such_template"], Error("field '--template'"), posts()),
    Case("--template a broken YAML file", [*OK, "--template", "{tmp}/t.yaml"], Error("field '--template'"),
         posts(then=lambda tmp: (tmp / "t.yaml").write_text("system: [unclosed\n"))),
    Case("--audit without an embedding model", [*OK, "--audit"], Error("field '--embedding-model'"), posts()),
    Case("--embedding-model blank", [*OK, "--embedding-model", " ", "--audit"], Error("field '--embedding-model'"),
         posts()),
    Case("-m blank", [*OK, "-m", " "], Error("field '--model'"), posts()),
    # -- argparse's own errors are one line too
    Case("-b without its value", [*OK, "-b"], Error("-b"), posts()),
    Case("-b not a number", [*OK, "-b", "many"], Error("field '--batch-size'"), posts()),
    Case("unknown flag", [*OK, "--no-such-flag"], Error("--no-such-flag"), posts()),
    Case("no --input", ["-o", "out"], Error("--input"), None),
    Case("--input does not exist", ["--input", "{tmp}/missing.csv", "-o", "out"], Error("missing.csv"), None),
    # -- unwritable places
    Case("a file where the output folder should be", OK, Error("out"), posts(then=a_file_at("out"))),
    Case("a file where a parent folder should be", ["--input", "{data}", "-o", "blocker/out", "-m", "fake-a",
                                                   "--embedding-model", "none"], Error("blocker"),
         posts(then=a_file_at("blocker"))),
    # -- missing models and names that could leave the output folder
    Case("-m a local path that does not exist", [*OK, "-m", "./models/none-here"], Error("field '--model'"), posts()),
    Case("a second -m not in the cache, offline: refused before the first loads",
         [*OK, "-m", "nobody-xyz/not-cached-model"], Error("nobody-xyz/not-cached-model"), posts()),
    Case("--embedding-model a missing path", [*OK, "--audit", "--embedding-model", "/no/such/encoder"],
         Error("field '--embedding-model'"), posts()),
    Case("--embedding-model an id not cached, offline", [*OK, "--audit", "--embedding-model", "nobody-xyz/enc"],
         Error("field '--embedding-model'"), posts()),
    Case("-m NAME/.. writes its CSV inside the output folder", [*OK, "-m", "fake-x/.."],
         Skip("out/model_generated.csv"), posts()),
    Case("-m ../../x is a missing folder", [*OK, "-m", "../../x"], Error("field '--model'"), posts()),
    # -- damaged outputs
    Case("run record that is a JSON list", OK, Error("rephrased.meta.json"),
         posts(then=output("rephrased.meta.json", "[1, 2]"))),
    Case("run record that is not JSON", OK, Error("rephrased.meta.json"),
         posts(then=output("rephrased.meta.json", "{torn"))),
    Case("torn line in the middle of the output", OK, Error("rephrased.jsonl:2"),
         posts(then=output("rephrased.jsonl", good_record("p0") + '\n{"id": "p1:fa\n' + good_record("p2") + "\n"))),
    Case("a record of another job in the output", OK, Error("rephrased.jsonl:2: field 'post_id'"),
         posts(then=output("rephrased.jsonl", good_record("p0") + '\n{"id": "p1:fake-a:0", "text": "x"}\n'))),
    Case("a record without an id in the output", OK, Error("rephrased.jsonl:1"),
         posts(then=output("rephrased.jsonl", '{"post_id": "p0"}\n'))),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    hostile(main, case)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder(hostile, tmp_path):
    run_with_read_only_output(hostile, main, OK, posts(), tmp_path)


def test_a_torn_last_line_is_repaired_and_nothing_is_doubled(hostile, tmp_path):
    torn = good_record("p0") + '\n{"id": "p1:fake-a:0", "post_'
    hostile(main, Case("torn last line", OK, Skip("posts selected: 3"), posts(then=output("rephrased.jsonl", torn))))
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "rephrased.jsonl").read_text().splitlines()]
    assert sorted(ids) == ["p0:fake-a:0", "p1:fake-a:0", "p2:fake-a:0"]
