"""Hostile corpus for `socialsynth merge`: missing, unrecorded, incomplete, doubled, torn, damaged and foreign
shards, bad flags. Every case ends in one line naming the shard file (or the flag), exit 2, and no merged file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socialsynth.core.merge import main_merge
from tests.hostile.conftest import Case, Error, case_params

OUT = "{tmp}/x.jsonl"


def shards(*specs):
    """A setup writing shard I of N for each spec: (records or raw bytes, record dict or None or raw text)."""

    def setup(tmp: Path) -> dict:
        n = len(specs)
        for i, (rows, meta) in enumerate(specs):
            shard = tmp / f"x.shard-{i}-of-{n}.jsonl"
            if isinstance(rows, bytes):
                shard.write_bytes(rows)
            else:
                shard.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            record = tmp / f"x.shard-{i}-of-{n}.meta.json"
            if isinstance(meta, str):
                record.write_text(meta, encoding="utf-8")
            elif meta is not None:
                record.write_text(json.dumps(meta), encoding="utf-8")
        return {}

    return setup


DONE = {"complete": True}
A = [{"id": "a"}, {"id": "b"}]
B = [{"id": "c"}]

CASES = [
    # missing and unrecorded shards
    Case("no shards at all", [OUT], Error("no shard files found")),
    Case("one shard of two missing", [OUT], Error("x.shard-0-of-2.jsonl"),
         lambda tmp: (tmp / "x.shard-1-of-2.jsonl").write_text('{"id": 1}\n') and {}),
    Case("shard killed before its first record", [OUT], Error("x.shard-1-of-2.meta.json"),
         shards((A, DONE), (B, None))),
    Case("shards of two different counts", [OUT], Error("different shard counts"),
         lambda tmp: shards((A, DONE), (B, DONE))(tmp) or (tmp / "x.shard-0-of-3.jsonl").write_text("") and {}),
    # incomplete or disagreeing records
    Case("incomplete shard", [OUT], Error("x.shard-0-of-2.jsonl"), shards((A, {"complete": False}), (B, DONE))),
    Case("record says running", [OUT], Error("incomplete shards"), shards((A, {"status": "running"}), (B, DONE))),
    Case("record counts other records", [OUT], Error("n_written=5"),
         shards((A, {"complete": True, "n_written": 5}), (B, DONE))),
    # damaged records
    Case("record is a JSON list", [OUT], Error("x.shard-0-of-2.meta.json"), shards((A, "[1, 2]"), (B, DONE))),
    Case("record is not JSON", [OUT], Error("x.shard-1-of-2.meta.json"), shards((A, DONE), (B, "{not json"))),
    Case("record not UTF-8", [OUT], Error("x.shard-0-of-2.meta.json"),
         lambda tmp: shards((A, DONE), (B, DONE))(tmp) or (tmp / "x.shard-0-of-2.meta.json").write_bytes(b"\xff\xfe")
         and {}),
    # damaged shard files
    Case("half-written last line", [OUT], Error("x.shard-1-of-2.jsonl:2: half-written"),
         shards((A, DONE), (b'{"id": "c"}\n{"id": "d", "te', DONE))),
    Case("invalid JSON in the middle", [OUT], Error("x.shard-0-of-2.jsonl:1: invalid JSON"),
         shards((b'{"id": \n{"id": "b"}\n', DONE), (B, DONE))),
    Case("non-UTF-8 line", [OUT], Error("x.shard-0-of-2.jsonl:2"),
         shards((b'{"id": "a"}\n\xff\xfe\n', DONE), (B, DONE))),
    Case("record without the key", [OUT], Error("field 'id'"), shards(([{"id": "a"}, {"text": "x"}], DONE), (B, DONE))),
    Case("record that is a list", [OUT], Error("x.shard-1-of-2.jsonl:1"), shards((A, DONE), (b"[1, 2]\n", DONE))),
    Case("other key asked", [OUT, "--key", "user_id"], Error("field 'user_id'"), shards((A, DONE), (B, DONE))),
    # doubled
    Case("id in two shards", [OUT], Error("duplicated id values across shards: a"),
         shards((A, DONE), ([{"id": "a"}], DONE))),
    Case("wrong total", [OUT, "--expected", "4"], Error("expected 4"), shards((A, DONE), (B, DONE))),
    # flags
    Case("negative expected", [OUT, "--expected", "-1"], Error("--expected"), shards((A, DONE), (B, DONE))),
    Case("expected not a number", [OUT, "--expected", "many"], Error("--expected")),
    Case("unknown flag", [OUT, "--shards", "3"], Error("--shards")),
    Case("output is a folder", ["{tmp}"], Error("no shard files found")),
]


@pytest.mark.parametrize("case", case_params(CASES))
def test_merge_refuses_with_one_line(case, hostile, tmp_path):
    hostile(lambda argv: main_merge(["merge", *argv]), case)
    assert not (tmp_path / "x.jsonl").exists()


def test_merge_of_good_shards_still_works(tmp_path, run_cli):
    shards((A, {"complete": True, "n_written": 2}), (B, DONE))(tmp_path)
    code, out, err = run_cli(lambda argv: main_merge(["merge", *argv]), [tmp_path / "x.jsonl", "--expected", "3"])
    assert code == 0, err
    assert "total: 3 records" in out
