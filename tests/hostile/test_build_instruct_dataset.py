"""Hostile inputs for `build_instruct_dataset.py` (socialsynth.jobs.bluesky.cli:main_instruct).

Every case ends in exit 2 with one stderr line naming the file, line, field or flag, or in exit 0 with the skip
counted (its reason in the printed summary or the run record); never a traceback. Categories: malformed cluster
files (broken or deeply nested JSON, objects instead of arrays, a folder named like a cluster file), wrong types in
chains, encodings (a non-UTF-8 byte, a BOM), empty files, empty texts and inputs with only actions, duplicate
chains, huge posts (kept as examples; left out of LLM prompts longer than the model's context), a bad value for every
numeric and choice flag, unwritable places, missing models, and damaged earlier outputs (a run record that is a
list, a torn last line and a corrupt middle line of the LLM answers file, an answer of the wrong type).

LLM cases use the fake backend of tests/conftest.py; the missing-model cases go through the real loading code and
fail before any weights are read.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from socialsynth.jobs.bluesky.cli import main_instruct
from tests.conftest import FakeBackend
from tests.hostile.conftest import Case, Error, Skip, case_params

POSTS = [
    "Honestly the sourdough starter finally doubled overnight and the bread came out amazing",
    "Watching the meteor shower tonight from the hills outside town with friends and family",
    "Another rainy morning, perfect weather for coffee, reading and quiet thinking all day long",
]


def _chain(t: int, n: int = 2) -> list[dict]:
    return [{"user_id": f"u{(t + i) % 3}", "text": POSTS[(t + i) % 3], "unix_epoch": 1000 + 10 * t + i}
            for i in range(n)]


def _action() -> list[dict]:
    return [{"user_id": "carol", "text": "liked post", "unix_epoch": 5},
            {"user_id": "u0", "actions": {"like": True}, "unix_epoch": 6}]


def _good_rows() -> list:
    return [_chain(t, 1 + t % 3) for t in range(8)] + [_action()]


def _dumps(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _clusters(extra: bytes = b"", rows=None, head: bytes = b""):
    """A processed_<k>_clusters/ folder: cluster_0.jsonl (good rows, then ``extra``) and cluster_1.jsonl."""

    def setup(tmp: Path) -> dict:
        folder = tmp / "processed_2_clusters"
        folder.mkdir(exist_ok=True)
        (folder / "cluster_0.jsonl").write_bytes(head + _dumps(_good_rows() if rows is None else rows) + extra)
        (folder / "cluster_1.jsonl").write_bytes(_dumps([_chain(t, 2) for t in range(5)]))
        return {"in": folder, "file": folder / "cluster_0.jsonl"}

    return setup


def _only(data: bytes):
    """cluster_0.jsonl is the only cluster file and holds ``data``."""

    def setup(tmp: Path) -> dict:
        folder = tmp / "processed_1_clusters"
        folder.mkdir()
        (folder / "cluster_0.jsonl").write_bytes(data)
        return {"in": folder, "file": folder / "cluster_0.jsonl"}

    return setup


def _then(first, then):
    def setup(tmp: Path) -> dict:
        values = first(tmp)
        then(tmp, values)
        return values

    return setup


def _file_at(name: str):
    return _then(_clusters(), lambda tmp, v: (tmp / name).write_text("a file", encoding="utf-8"))


def _dolly(data: bytes):
    """The good clusters and ``{tmp}/dolly.jsonl`` holding ``data``."""
    return _then(_clusters(), lambda tmp, v: (tmp / "dolly.jsonl").write_bytes(data))


DOLLY_OK = b'{"instruction": "Why?", "context": "", "response": "Because.", "category": "open_qa"}\n'
DOLLY = [*["-i", "{in}", "-o", "{tmp}/out"], "--dolly-path", "{tmp}/dolly.jsonl"]


def _read_only(tmp: Path, values: dict) -> None:
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o500)


def _record_list(tmp: Path, values: dict) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "instruct.meta.json").write_text("[]", encoding="utf-8")


def _answers(*lines: bytes):
    """An LLM answers file left by an earlier run (as written, or damaged)."""

    def write(tmp: Path, values: dict) -> None:
        (tmp / "out").mkdir()
        (tmp / "out" / "instruct_llm_answers.jsonl").write_bytes(b"".join(lines))

    return write


def _answer(i: int, text="earlier answer") -> bytes:
    return json.dumps({"id": f"0:{i}:summarize", "cluster": "0", "task": "summarize", "chain": i, "text": text,
                       "finish_reason": "stop"}).encode() + b"\n"


def _named(name: str):
    """The good folder plus a cluster file called ``name``."""

    def extra(tmp: Path, values: dict) -> None:
        (values["in"] / name).write_bytes(_dumps([_chain(0)]))

    return _then(_clusters(), extra)


def _folder_as_cluster(tmp: Path) -> dict:
    folder = tmp / "processed_1_clusters"
    (folder / "cluster_0.jsonl").mkdir(parents=True)
    return {"in": folder}


class ShortContextBackend(FakeBackend):
    """The fake backend with a 512-token context, counting a word as a token."""

    def context_length(self) -> int:
        return 512

    def token_count(self, item) -> int:
        text = item if isinstance(item, str) else " ".join(m["content"] for m in item)
        return len(text.split())


BIG = "word " * 400_000  # a 2 MB post
IO = ["-i", "{in}", "-o", "{tmp}/out"]
LLM = [*IO, "--llm-fraction", "1", "-b", "4"]


def run(*extra: str) -> list[str]:
    return [*IO, *extra]


def C(case_id: str, argv, expect, setup=None) -> Case:  # noqa: N802  (a table row)
    """A case whose setup defaults to the good cluster folder."""
    return Case(case_id, argv, expect, setup or _clusters())


CASES = [
    # ---- malformed files
    C("broken-json-line", run(), Error("{file}:10: not valid JSON"), _clusters(b"[{broken\n")),
    C("object-not-array", run(), Error("{file}:10: expected a JSON array"), _clusters(b'{"user_id": "u0"}\n')),
    C("deeply-nested-line", run(), Error("{file}:10: not valid JSON (nested too deeply)"),
      _clusters(b"[" * 100_000 + b"]" * 100_000 + b"\n")),
    C("folder-named-like-a-cluster-file", run(), Error("cluster_0.jsonl: named like a cluster file but not a file"),
      _folder_as_cluster),
    # ---- names from the data that become output file names never leave the output folder
    C("cluster-id-dot-dot", run(), Error("cluster_...jsonl: cluster id '..'"), _named("cluster_...jsonl")),
    C("cluster-id-hidden", run(), Error("cluster id '.x'"), _named("cluster_.x.jsonl")),
    C("cluster-id-with-colon", run(), Error("cluster id 'a:1'"), _named("cluster_a:1.jsonl")),
    C("input-dir-without-cluster-files", ["-i", "{tmp}", "-o", "{tmp}/out"], Error("no cluster_<id>.jsonl files"),
      lambda t: None),
    C("input-dir-missing", ["-i", "{tmp}/nope"], Error("--input-dir")),
    # ---- wrong types
    C("chain-of-numbers", run(), Skip("chain without text or author 1"), _clusters(b"[1, 2, 3]\n")),
    C("text-a-number", run(), Skip("chain without text or author 1"),
      _clusters(b'[{"user_id": "u0", "text": 5, "unix_epoch": 1}]\n')),
    C("user-id-missing", run(), Skip("chain without text or author 1"),
      _clusters(b'[{"text": "a post without an author", "unix_epoch": 1}]\n')),
    C("epoch-a-string", run(), Skip("cluster 0: 9 examples"),
      _clusters(b'[{"user_id": "u1", "text": "a post at an odd time", "unix_epoch": "noon"}]\n')),
    # ---- encodings
    C("latin-1-byte", run(), Error("{file}:10: not valid UTF-8"),
      _clusters(b'[{"user_id": "u0", "text": "caf\xe9"}]\n')),
    C("utf8-bom", run(), Skip("cluster 0: 8 examples"), _clusters(head=b"\xef\xbb\xbf")),
    # ---- empty files and empty texts
    C("empty-cluster-file", run(), Error("{in}: no usable chain"), _only(b"")),
    C("only-actions", run(), Error("{in}: no usable chain"), _only(_dumps([_action(), _action()]))),
    C("blank-texts", run(), Skip("chain without text or author 2"),
      _clusters(b'[{"user_id": "u0", "text": "   "}]\n[{"user_id": "u0", "text": ""}]\n')),
    C("one-empty-file-among-good-ones", run(), Skip("cluster 0: 0 examples from 0 chains"), _clusters(rows=[])),
    # ---- duplicates
    C("every-chain-twice", run(), Skip("duplicate chain 8"), _clusters(rows=_good_rows() * 2)),
    # ---- huge texts
    C("two-megabyte-post", run(), Skip("cluster 0: 9 examples"),
      _clusters(json.dumps([{"user_id": "u0", "text": BIG, "unix_epoch": 1}]).encode() + b"\n")),
    C("llm-answers-empty", LLM, Skip("empty LLM answer 8")),
    C("llm-requests-refused", LLM, Skip("LLM request failed (a rerun asks again) 8")),
    C("two-megabyte-post-for-the-llm", LLM, Skip("LLM prompt longer than the model's context 1"),
      _only(_dumps([[{"user_id": "u0", "text": BIG, "unix_epoch": 1}], _chain(1)]))),
    # ---- bad values for every numeric and choice flag (one case each)
    C("max-chains-0", run("--max-chains", "0"), Error("--max-chains")),
    C("max-chains-not-a-number", run("--max-chains", "many"), Error("--max-chains")),
    C("llm-fraction-above-1", run("--llm-fraction", "1.5"), Error("--llm-fraction")),
    C("llm-fraction-nan", run("--llm-fraction", "nan"), Error("--llm-fraction")),
    C("batch-size-0", run("-b", "0"), Error("--batch-size")),
    C("batch-size-negative", run("-b", "-1"), Error("--batch-size")),
    C("temperature-negative", run("--temperature", "-1"), Error("--temperature")),
    C("top-p-0", run("--top-p", "0"), Error("--top-p")),
    C("top-k-negative", run("--top-k", "-1"), Error("--top-k")),
    C("repetition-penalty-0", run("--repetition-penalty", "0"), Error("--repetition-penalty")),
    C("max-new-tokens-0", run("--max-new-tokens", "0"), Error("--max-new-tokens")),
    C("backend-bogus", run("--backend", "magic"), Error("--backend")),
    C("quantization-3", run("-q", "3"), Error("--quantization")),
    C("dtype-bogus", run("--dtype", "fp64"), Error("--dtype")),
    C("concurrency-0", run("--concurrency", "0"), Error("--concurrency")),
    C("request-timeout-0", run("--request-timeout", "0"), Error("--request-timeout")),
    C("max-retries-negative", run("--max-retries", "-1"), Error("--max-retries")),
    C("tensor-parallel-0", run("--tensor-parallel", "0"), Error("--tensor-parallel")),
    C("device-without-gpu", run("--device", "cuda:7"), Error("--device")),
    C("openai-without-api-base", run("--backend", "openai", "--api-base", ""), Error("--api-base")),
    C("seed-not-a-number", run("--seed", "x"), Error("--seed")),
    # ---- the Dolly-15k file (--dolly-path) and the seed's names
    C("dolly-path-missing", run("--dolly-path", "{tmp}/nope.jsonl"), Error("--dolly-path")),
    C("dolly-fraction-1", run("--dolly-fraction", "1"), Error("--dolly-fraction")),
    C("dolly-fraction-negative", run("--dolly_mix_fraction", "-0.1"), Error("--dolly-fraction")),
    C("dolly-broken-line", DOLLY, Error("dolly.jsonl:2: not a JSON line"), _dolly(DOLLY_OK + b"{broken\n")),
    C("dolly-line-a-list", DOLLY, Error("dolly.jsonl:1: expected a JSON object"), _dolly(b"[1, 2]\n")),
    C("dolly-response-missing", DOLLY, Error("dolly.jsonl:1"), _dolly(b'{"instruction": "q", "context": ""}\n')),
    C("dolly-response-a-number", DOLLY, Error("response"), _dolly(b'{"instruction": "q", "response": 4}\n')),
    C("dolly-not-utf8", DOLLY, Error("dolly.jsonl:1: not a JSON line"),
      _dolly(b'{"instruction": "caf\xe9", "response": "x"}\n')),
    C("dolly-empty-file", DOLLY, Error("no usable Dolly record"), _dolly(b"")),
    C("dolly-empty-records-counted", DOLLY, Skip("skipped: empty instruction or response 1"),
      _dolly(DOLLY_OK * 3 + b'{"instruction": "", "context": "", "response": "x"}\n')),
    C("seed-names-onto-the-input", ["-i", "{in}", "-o", "{in}", "--output-names", "seed"], Error("--output-names")),
    C("output-names-bogus", run("--output-names", "theirs"), Error("--output-names")),
    # ---- unwritable places
    C("file-where-output-folder-goes", ["-i", "{in}", "-o", "{tmp}/taken"], Error("--output-dir"), _file_at("taken")),
    C("file-on-the-output-path", ["-i", "{in}", "-o", "{tmp}/taken/out"], Error("--output-dir"), _file_at("taken")),
    C("read-only-output-folder", ["-i", "{in}", "-o", "{tmp}/ro/out"], Error("--output-dir"),
      _then(_clusters(), _read_only)),
    # ---- missing models
    C("model-missing-folder", run("--llm-fraction", "0.5", "-m", "/no/such/model"), Error("/no/such/model")),
    C("model-not-cached-offline", run("--llm-fraction", "0.5", "-m", "someorg/not-a-cached-model"),
      Error("someorg/not-a-cached-model")),
    # ---- damaged outputs
    C("run-record-a-list", run(), Error("instruct.meta.json"), _then(_clusters(), _record_list)),
    C("answers-torn-last-line", LLM, Skip("cluster 0: 8 examples from 8 chains"),
      _then(_clusters(), _answers(_answer(0), b'{"id": "0:1:summ'))),
    C("answers-corrupt-middle-line", LLM, Error("instruct_llm_answers.jsonl:2"),
      _then(_clusters(), _answers(_answer(0), b"{not json\n", _answer(2)))),
    C("answer-text-a-number", LLM, Error("field 'text'"), _then(_clusters(), _answers(_answer(0, text=42)))),
    C("answer-record-a-list", LLM, Error("instruct_llm_answers.jsonl:1"), _then(_clusters(), _answers(b"[1, 2]\n"))),
]
# cases that need an LLM get the fake one (answers "rewritten <id>"), or one with a short context
BACKENDS = {"two-megabyte-post-for-the-llm": ShortContextBackend, "answers-torn-last-line": FakeBackend,
            "answers-corrupt-middle-line": FakeBackend, "answer-text-a-number": FakeBackend,
            "answer-record-a-list": FakeBackend,
            "llm-answers-empty": functools.partial(FakeBackend, reply=lambda chat, key: "  "),
            "llm-requests-refused": functools.partial(FakeBackend, reply=lambda chat, key: "", finish_reason="error")}


@pytest.mark.parametrize("case", case_params(CASES))
def test_hostile(case, hostile):
    if case.id == "read-only-output-folder" and os.geteuid() == 0:
        pytest.skip("root writes in read-only folders")
    backend = BACKENDS.get(case.id)
    main = functools.partial(main_instruct, backend=backend()) if backend else main_instruct
    hostile(main, case)


def test_corpus_size_and_categories():
    assert len(CASES) >= 15 and len({c.id for c in CASES}) == len(CASES)
    assert set(BACKENDS) <= {c.id for c in CASES}


def test_counted_skips_are_in_the_run_record(run_cli, tmp_path, monkeypatch):
    """The summary's skips are in the record's ``skipped`` too, by reason."""
    monkeypatch.chdir(tmp_path)
    values = _clusters(b"[1]\n" + _dumps([_chain(0, 1)]))(tmp_path)
    code, out, err = run_cli(main_instruct, ["-i", values["in"], "-o", tmp_path / "out"])
    assert code == 0, err
    record = json.loads((tmp_path / "out" / "instruct.meta.json").read_text())
    assert record["skipped"] == {"chain without text or author": 1, "duplicate chain": 1}
    assert "skipped: chain without text or author 1, duplicate chain 1" in out


def test_refused_requests_leave_the_run_incomplete_and_a_rerun_asks_again(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    values = _clusters()(tmp_path)
    argv = ["-i", values["in"], "-o", tmp_path / "out", "--llm-fraction", "1"]
    refusing = FakeBackend(reply=lambda chat, key: "", finish_reason="error")
    assert run_cli(functools.partial(main_instruct, backend=refusing), argv)[0] == 0
    record = json.loads((tmp_path / "out" / "instruct.meta.json").read_text())
    assert record["complete"] is False and record["n_written"] == 0
    assert not (tmp_path / "out" / "instruct_llm_answers.jsonl").read_text()
    answering = FakeBackend()
    assert run_cli(functools.partial(main_instruct, backend=answering), argv)[0] == 0
    record = json.loads((tmp_path / "out" / "instruct.meta.json").read_text())
    assert record["complete"] is True and record["n_written"] == 13
    assert sum(len(keys) for _, _, keys in answering.generate_calls) == 13
