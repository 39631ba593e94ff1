"""Hostile inputs for ``augment_labels.py``: malformed, mistyped, mis-encoded, empty, duplicate and huge labelled
files, definitions files that are broken or lack the label, a bad value for every numeric and choice flag,
unwritable output places, missing models and damaged outputs (the generated JSONL, its run record, a --synthetic
file). Each case ends in exit 2 with one line naming the file/line/field or the flag, or in exit 0 with the skip
counted; never a traceback. The generator is a fake (``-m fake-gen``; a 2000-"token" context, one a word) and the
near-duplicate check is off, so nothing real loads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from socialsynth.jobs.augment.cli import main
from tests.hostile.conftest import Case, Error, Skip, case_params
from tests.hostile.corpus import fake_generators, run_with_read_only_output
from tests.hostile.corpus import raw as corpus_raw

HEADER = "id,comment,bad"
ROWS = [f"r{i},ordinary friendly comment number {i} about things,0" for i in range(20)]
ROWS += [f"t{i},you are a total idiot number {i},1" for i in range(6)]
OK = ["--input", "{data}", "--text-col", "comment", "--label-col", "bad", "--target-label", "1", "--definition",
      "rude remarks", "--n", "3", "-o", "out", "-m", "fake-gen", "--embedding-model", "none"]


def reply(chat, key: str) -> str:
    n = key.rsplit("r", 1)[-1]
    return f'1. "insult{n} you are so dumb honestly"\n2. "mock{n} nobody wants you here at all"'


@pytest.fixture(autouse=True)
def fake_models(monkeypatch, fake_backend_cls):
    """``-m fake-*`` loads a fake generator with a 2000-token context; any other name loads as it really would."""
    fake_generators(monkeypatch, fake_backend_cls, 2000, reply)


# ------------------------------------------------------------------------------------------- file writers


def table(*lines: str, header: str = HEADER, name: str = "real.csv", then=None):
    """setup: a CSV of ``header`` and ``lines`` (default: the 26 good rows); ``then(tmp)`` adds more files."""

    def setup(tmp: Path) -> dict:
        (tmp / name).write_text("\n".join([header, *(lines or ROWS)]) + "\n", encoding="utf-8")
        if then is not None:
            then(tmp)
        return {"data": tmp / name}

    return setup


def raw(content: bytes, name: str = "real.csv"):
    return corpus_raw(content, name)


def jsonl(*records, name: str = "real.jsonl"):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return raw(("\n".join(lines) + "\n").encode(), name)


def good_jsonl(*extra):
    rows = [dict(zip(HEADER.split(","), row.split(","), strict=True)) for row in ROWS]
    return jsonl(*rows, *extra)


def file(name: str, content: str | bytes):
    """then: write ``name`` (under tmp) with this content, making its folder."""

    def then(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return then


def record(n: int, **changes) -> str:
    rec = {"id": f"1-r{n:06d}-0", "status": "ok", "text": f"you are dumb {n} yes", "passed": True, "flags": {},
           "generation": {"request": n}}
    rec.update(changes)
    return json.dumps(rec)


DEFS = "--definition-file"
NO_DEF = [a for a in OK if a not in ("--definition", "rude remarks")]
LADDER = [a for a in OK if a not in ("--n", "3")] + ["--synthetic", "{tmp}/syn.jsonl", "--positive-rates", "0.3"]
SYN = "".join(json.dumps({"id": f"s{i}", "text": f"synthetic insult {i}", "passed": True}) + "\n" for i in range(9))
HUGE = " ".join(["idiot"] * 1500)

CASES = [
    # -- malformed files
    Case("torn JSON line in the middle", OK, Error("real.jsonl:27"),
         good_jsonl('{"id": "x", "comment": "cut', {"id": "y", "comment": "c", "bad": 1})),
    Case("a JSON array instead of an object", OK, Error("real.jsonl:27"), good_jsonl("[1, 2]")),
    Case("CSV without the label column", OK, Error("bad"), table(*ROWS, header="id,comment,label")),
    Case("broken job file", ["--config", "{tmp}/job.yaml"], Error("job.yaml"), table(then=file("job.yaml", "n: [3\n"))),
    Case("job file gives null for a count", ["--config", "{tmp}/job.yaml", *OK],
         Error("job.yaml: field '--batch-size'"), table(then=file("job.yaml", "batch_size: null\n"))),
    # -- wrong types and columns
    Case("--label-col is the text column", [*OK, "--label-col", "comment"], Error("is this the label column?"),
         table()),
    Case("a text that is a number is counted", OK, Skip("comment is not text: 1"),
         good_jsonl({"id": "n1", "comment": 5, "bad": 1})),
    Case("labels as numbers and strings are one class", OK, Skip("passed all filters: 4"),
         good_jsonl({"id": "f1", "comment": "a float labelled insult here", "bad": 1.0})),
    Case("--text-col names no column", [*OK, "--text-col", "body"], Error("body"), table()),
    # -- encodings
    Case("latin-1 byte in the CSV", OK, Error("real.csv"),
         raw(("\n".join([HEADER, *ROWS]) + "\nx1,caf\xe9 idiot,1\n").encode("latin-1"))),
    Case("UTF-8 BOM before the header", OK, Skip('"example_ids": ["t', record="out/synthetic_1.jsonl"),
         raw(b"\xef\xbb\xbf" + ("\n".join([HEADER, *ROWS]) + "\n").encode())),
    Case("latin-1 definitions file", [*NO_DEF, DEFS, "{tmp}/defs.yaml", "--label-name", "x"], Error("defs.yaml"),
         table(then=file("defs.yaml", "x: caf\xe9".encode("latin-1")))),
    # -- empty files and empty texts
    Case("empty file", OK, Error("real.csv"), raw(b"")),
    Case("header only", OK, Error("no rows with a text"), raw((HEADER + "\n").encode())),
    Case("empty labels are counted", OK, Skip("empty label: 2"),
         table(*ROWS, "u1,nobody labelled me,", "u2,me neither, ")),
    Case("empty labels counted by the ladder", [*LADDER], Skip("train: empty label: 2"),
         table(*ROWS, "u1,nobody labelled me,", "u2,me neither, ", then=file("syn.jsonl", SYN))),
    Case("every label empty", OK, Error("no rows with a label"), table("a,text one,", "b,text two,")),
    Case("empty texts are counted", OK, Skip("empty comment: 1"), table(*ROWS, "e1,,1")),
    # -- duplicate ids and rows
    Case("duplicate id", OK, Error("field 'id': duplicate id 't1'"), table(*ROWS, "t1,another insult you clown,1")),
    Case("duplicate id counted with --skip-bad-rows", [*OK, "--skip-bad-rows"], Skip("duplicate id: 1"),
         table(*ROWS, "t1,another insult you clown,1")),
    Case("duplicate id in a ladder-only run", LADDER, Error("field 'id': duplicate id 't1'"),
         table(*ROWS, "t1,another insult you clown,1", then=file("syn.jsonl", SYN))),
    # -- huge texts
    Case("a real example over the model's context is counted", [*OK, "--max-words", "2000", "--max-requests", "4"],
         Skip("requests too long for the model's context"), table(*[f"t{i},{HUGE},1" for i in range(6)], *ROWS[:20])),
    Case("a 2 MB real example is cut to --max-words", OK, Skip("passed all filters: 4"),
         table(*ROWS, "h1," + "idiot " * 350_000 + ",1")),
    # -- bad values for every numeric and choice flag
    *[Case(" ".join(extra), [*OK, *extra], Error(flag), table()) for extra, flag in [
        (["--n", "-1"], "'--n'"),
        (["--n", "three"], "'--n'"),
        (["--per-call", "0"], "field '--per-call'"),
        (["--examples-per-prompt", "0"], "field '--examples-per-prompt'"),
        (["--max-requests", "0"], "field '--max-requests'"),
        (["-b", "0"], "field '--batch-size'"),
        (["-b", "-1"], "field '--batch-size'"),
        (["--min-words", "-1"], "field '--min-words'"),
        (["--max-words", "0"], "field '--max-words'"),
        (["--min-words", "20", "--max-words", "10"], "field '--max-words'"),
        (["--near-dup", "1.5"], "field '--near-dup'"),
        (["--near-dup", "nan"], "field '--near-dup'"),
        (["--fidelity-threshold", "-0.1"], "field '--fidelity-threshold'"),
        (["--temperature", "-1"], "field '--temperature'"),
        (["--temperature", "nan"], "field '--temperature'"),
        (["--top-p", "0"], "field '--top-p'"),
        (["--top-k", "-1"], "field '--top-k'"),
        (["--repetition-penalty", "0"], "field '--repetition-penalty'"),
        (["--repetition-penalty", "inf"], "field '--repetition-penalty'"),
        (["--max-new-tokens", "0"], "field '--max-new-tokens'"),
        (["--seed", "-1"], "field '--seed'"),
        (["--seed", str(2**70)], "field '--seed'"),
        (["--positive-rates", "0.1,1.5"], "field '--positive-rates'"),
        (["--positive-rates", "0.1,0.1"], "field '--positive-rates'"),
        (["--positive-rates", "nan"], "field '--positive-rates'"),
        (["--positive-rates", "0,0.3", "--evaluate"], "field '--positive-rates'"),
        (["--positive-rates", "0.3", "--epochs", "0"], "field '--epochs'"),
        (["--positive-rates", "0.3", "--epochs", "nan"], "field '--epochs'"),
        (["--positive-rates", "0.3", "--classifier", ""], "field '--classifier'"),
        (["--positive-rates", "0.3", "--evaluate", "--classifier", "./no/such/encoder"], "field '--classifier'"),
        (["--evaluate"], "field '--evaluate'"),
        (["--val", "{data}"], "field '--val'"),
        (["--synthetic", "{data}", "--positive-rates", "0.3"], "field '--synthetic'"),
        (["--shard", "3/2"], "field '--shard'"),
        (["--shard", "0/2", "--positive-rates", "0.3"], "field '--positive-rates'"),
        (["--backend", "tpu"], "--backend"),
        (["-q", "3"], "--quantization"),
        (["--dtype", "fp8"], "--dtype"),
        (["--device", "tpu"], "field '--device'"),
        (["--concurrency", "0"], "field '--concurrency'"),
        (["--request-timeout", "0"], "field '--request-timeout'"),
        (["--request-timeout", "inf"], "field '--request-timeout'"),
        (["--max-retries", "-1"], "field '--max-retries'"),
        (["--tensor-parallel", "0"], "field '--tensor-parallel'"),
        (["--definition", " "], "field '--definition'"),
        (["--template", "no_such_template"], "field '--template'"),
        (["--text-col", ""], "field '--text-col'"),
        (["-b"], "-b"),
        (["--no-such-flag"], "--no-such-flag"),
        (["--prompt-format", "jinja"], "--prompt-format"),
        (["--item-parser", "regex"], "--item-parser"),
        (["--max-input-tokens", "0"], "field '--max-input-tokens'"),
        (["--max-input-tokens", "lots"], "--max-input-tokens"),
        (["--samples-per-prompt", "0"], "field '--samples-per-prompt'"),
        (["--target-groups", ","], "field '--target-groups'"),
        (["--target-groups", "a,b,a"], "field '--target-groups'"),
        (["--val-fraction", "1"], "field '--val-fraction'"),
        (["--test-fraction", "nan"], "field '--test-fraction'"),
        (["--val-fraction", "0.6", "--test-fraction", "0.4"], "field '--test-fraction'"),
        (["--preset", "no-such-paper"], "--preset"),
    ]],
    # -- seed 003's variants: groups files, raw prompts that do not fit
    Case("groups file missing", [*OK, "--target-groups", "{tmp}/none.txt"], Error("field '--target-groups'"), table()),
    Case("groups file not UTF-8", [*OK, "--target-groups", "{tmp}/g.txt"], Error("g.txt"),
         table(then=file("g.txt", "caf\xe9 owners\n".encode("latin-1")))),
    Case("groups file with only comments", [*OK, "--target-groups", "{tmp}/g.txt"], Error("no group in"),
         table(then=file("g.txt", "# nothing here\n\n"))),
    Case("raw prompt over --max-input-tokens is written, not sent",
         [*OK, "--prompt-format", "raw", "--max-input-tokens", "5", "--max-requests", "2"],
         Skip('"status": "too_long"', record="out/synthetic_1.jsonl"), table()),
    Case("a huge real example is cut to --max-input-tokens", [*OK, "--max-words", "2000", "--max-input-tokens", "300"],
         Skip('"example_word_limits"', record="out/synthetic_1.jsonl"),
         table(*[f"t{i},{HUGE},1" for i in range(6)], *ROWS[:20])),
    # -- the label's definition
    Case("no --definition: the bundled definition of the label", [*NO_DEF[:7], "toxic", *NO_DEF[8:]],
         Skip("likely to make someone leave a discussion", record="out/synthetic_toxic.meta.json"),
         table(*(r[:-1] + "toxic" if r.endswith(",1") else r for r in ROWS))),
    Case("no --definition and a label the bundled file lacks", NO_DEF, Error("field '--definition'"), table()),
    Case("broken YAML definitions file", [*NO_DEF, DEFS, "{tmp}/defs.yaml"], Error("defs.yaml:3"),
         table(then=file("defs.yaml", "1: rude\n2: [unclosed\n"))),
    Case("definitions file that is a list", [*NO_DEF, DEFS, "{tmp}/defs.yml"], Error("defs.yml"),
         table(then=file("defs.yml", "- rude\n- mean\n"))),
    Case("a definition that is not text", [*NO_DEF, DEFS, "{tmp}/defs.yaml"], Error("defs.yaml"),
         table(then=file("defs.yaml", "1: [a, b]\n"))),
    Case("definitions file missing", [*NO_DEF, DEFS, "{tmp}/none.yaml"], Error("field '--definition-file'"), table()),
    Case("empty plain-text definition", [*NO_DEF, DEFS, "{tmp}/def.txt"], Error("def.txt"),
         table(then=file("def.txt", " \n"))),
    # -- unwritable places
    Case("a file where the output folder should be", OK, Error("out"), table(then=file("out", "not a folder"))),
    Case("a label that is a path stays in the output folder", [*OK[:7], "../x", *OK[8:]],
         Skip("out/synthetic_.._x.jsonl"), table(*(r[:-1] + "../x" if r.endswith(",1") else r for r in ROWS))),
    # -- missing models
    Case("-m a local path that does not exist", [*OK, "-m", "./models/none-here"], Error("field '--model'"), table()),
    Case("-m an id not in the cache, offline", [*OK, "-m", "nobody-xyz/not-cached-model"],
         Error("nobody-xyz/not-cached-model"), table()),
    Case("--embedding-model a missing path", [*OK, "--embedding-model", "/no/such/encoder"],
         Error("field '--embedding-model'"), table()),
    Case("--fidelity-model missing", [*OK, "--fidelity-model", "{tmp}/no-model"], Error("field '--fidelity-model'"),
         table()),
    Case("--fidelity-model a folder without a model", [*OK, "--fidelity-model", "{tmp}/empty"], Error("empty"),
         table(then=lambda tmp: (tmp / "empty").mkdir())),
    # -- damaged outputs and --synthetic files
    Case("run record that is a JSON list", OK, Error("synthetic_1.meta.json"),
         table(then=file("out/synthetic_1.meta.json", "[1, 2]"))),
    Case("torn line in the middle of the output", OK, Error("synthetic_1.jsonl:2"),
         table(then=file("out/synthetic_1.jsonl", record(0) + '\n{"id": "1-r0000\n' + record(2) + "\n"))),
    Case("a record of another job in the output", OK, Error("synthetic_1.jsonl:2: field 'generation'"),
         table(then=file("out/synthetic_1.jsonl", record(0) + '\n{"id": "1-r000001-0", "text": "x"}\n'))),
    Case("a record with a text request number", OK, Error("field 'generation.request'"),
         table(then=file("out/synthetic_1.jsonl", record(0, generation={"request": "7"}) + "\n"))),
    Case("--synthetic with a torn line", LADDER, Error("syn.jsonl:2"),
         table(then=file("syn.jsonl", SYN.splitlines()[0] + '\n{"id": "s1", "te\n' + SYN))),
    Case("--synthetic without texts", LADDER, Error("syn.jsonl: field 'comment'"),
         table(then=file("syn.jsonl", '{"id": "s0", "body": "x"}\n'))),
    Case("a rate that leaves no positives to train on", [*LADDER[:-1], "0.001", "--evaluate"],
         Error("rate 0.001 gives a training set"), table(then=file("syn.jsonl", SYN))),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    hostile(main, case)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_folder(hostile, tmp_path):
    run_with_read_only_output(hostile, main, OK, table(), tmp_path)
