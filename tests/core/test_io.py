"""Tests for socialsynth.core.io and socialsynth.core.merge: readers, resumable writer, sharding and shard merging."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pandas as pd
import pytest

from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.io import (
    JsonlWriter,
    atomic_write_json,
    iter_jsonl,
    meta_path,
    parse_shard,
    read_records,
    select_range,
    shard_path,
)
from socialsynth.core.merge import main_merge, merge_shards

ROWS = [
    {"id": 1, "comment": "first", "score": 0.5},
    {"id": 2, "comment": "zweite – ünïcode", "score": 1.5},
    {"id": 3, "comment": "", "score": 2.0},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines (test helper)."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_lines(path: Path, lines: list[bytes]) -> Path:
    """Write raw byte lines, each followed by a newline (test helper)."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


# ----------------------------------------------------------------------- errors


def test_input_error_formats_one_line_and_omits_missing_parts() -> None:
    assert str(InputError("invalid JSON (x)", path="d/x.jsonl", line=7)) == "d/x.jsonl:7: invalid JSON (x)"
    assert (
        str(InputError("column missing", path="d/x.csv", field="comment")) == "d/x.csv: field 'comment': column missing"
    )
    assert str(InputError("bad\nthing")) == "bad thing"
    assert Interrupted("stopped", resume_hint="rerun it").resume_hint == "rerun it"


# ----------------------------------------------------------------------- readers


@pytest.fixture
def same_rows_in_every_format(tmp_path: Path) -> list[Path]:
    """The same three rows saved as jsonl, jsonl.gz, csv, tsv, parquet and pickle."""
    frame = pd.DataFrame(ROWS)
    paths = [write_jsonl(tmp_path / "d.jsonl", ROWS)]
    gz = tmp_path / "d.jsonl.gz"
    gz.write_bytes(gzip.compress(paths[0].read_bytes()))
    paths.append(gz)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    (tmp_path / "d.pkl").write_bytes(pickle.dumps(ROWS))
    return [*paths, tmp_path / "d.csv", tmp_path / "d.tsv", tmp_path / "d.parquet", tmp_path / "d.pkl"]


def test_every_format_reads_the_same_native_records(same_rows_in_every_format: list[Path]) -> None:
    for path in same_rows_in_every_format:
        result = read_records(path, allow_pickle=True)
        assert result.records == ROWS, path.name
        assert result.line_numbers == [1, 2, 3], path.name
        assert [type(v) for v in result.records[0].values()] == [int, str, float], path.name


def test_pickle_refused_without_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pickle"
    path.write_bytes(pickle.dumps(ROWS))
    with pytest.raises(InputError, match="--allow-pickle"):
        read_records(path)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(InputError, match=r"\.jsonl.*\.parquet"):
        read_records(tmp_path / "d.xlsx")
    with pytest.raises(InputError, match="file not found"):
        read_records(tmp_path / "nope.jsonl")


def test_csv_keeps_empty_strings_and_turns_nan_into_none(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,text,note\n1,NA,\n2,,x\n", encoding="utf-8")
    assert read_records(path).records == [{"id": 1, "text": "NA", "note": ""}, {"id": 2, "text": "", "note": "x"}]
    pd.DataFrame({"id": [1, 2], "v": [0.5, float("nan")]}).to_parquet(tmp_path / "n.parquet")
    assert read_records(tmp_path / "n.parquet").records[1] == {"id": 2, "v": None}


def test_broken_json_line_names_file_and_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "broken.jsonl", [b'{"id": 1}', b"", b'{"id": 2,, }'])
    with pytest.raises(InputError) as info:
        read_records(path)
    assert "broken.jsonl:3:" in str(info.value)
    assert "invalid JSON" in str(info.value)
    assert "\n" not in str(info.value)


def test_non_utf8_line_names_line_3(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "latin.jsonl", [b'{"id": 1}', b'{"id": 2}', '{"id": 3, "t": "café"}'.encode("latin-1")]
    )
    with pytest.raises(InputError, match=r"latin\.jsonl:3: .*UTF-8"):
        read_records(path)


def test_json_value_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "arr.json", [b"[1, 2]"])
    with pytest.raises(InputError, match=r"arr\.json:1: expected a JSON object, got array"):
        read_records(path)


def test_missing_required_field_in_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "comment": "a"}, {"id": 2}])
    with pytest.raises(InputError) as info:
        read_records(path, required=("id", "comment"))
    assert str(info.value).startswith(f"{path}:2: field 'comment':")


def test_missing_csv_column_lists_present_columns(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,text\n1,a\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        read_records(path, required=("comment",))
    assert str(info.value) == f"{path}: field 'comment': column missing (columns: id, text)"


def test_empty_and_non_text_values_are_counted_skips(tmp_path: Path) -> None:
    rows = [
        {"id": 1, "comment": "ok"},
        {"id": 2, "comment": "   "},
        {"id": 3, "comment": ""},
        {"id": 4, "comment": None},
        {"id": 5, "comment": 42},
        {"id": 6, "comment": ["a"]},
        {"id": 7, "comment": "fine"},
    ]
    result = read_records(write_jsonl(tmp_path / "d.jsonl", rows), required=("comment",), nonempty=("comment",))
    assert [r["id"] for r in result.records] == [1, 7]
    assert result.line_numbers == [1, 7]
    assert result.skipped == {"empty comment": 3, "comment is not text": 2}


def test_empty_csv_cells_are_skipped_not_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("id,comment\n1,hello\n2,\n3,  \n", encoding="utf-8")
    result = read_records(path, nonempty=("comment",))
    assert result.records == [{"id": 1, "comment": "hello"}]
    assert result.skipped == {"empty comment": 2}


def test_on_bad_row_skip_counts_reasons(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [b'{"id": 1, "comment": "a"}', b"{not json", b"\xff\xfe", b'{"id": 4}', b'"str"', b'{"id": 6, "comment": "b"}'],
    )
    result = read_records(path, required=("comment",), on_bad_row="skip")
    assert [r["id"] for r in result.records] == [1, 6]
    assert result.line_numbers == [1, 6]
    assert result.skipped == {"invalid JSON": 1, "not UTF-8": 1, "missing comment": 1, "not an object": 1}


def test_iter_jsonl_is_lazy_and_strict(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [b'{"id": 1}', b'{"id": 2}', b"oops"])
    items = iter_jsonl(path)
    assert next(items) == (1, {"id": 1})
    assert next(items) == (2, {"id": 2})
    with pytest.raises(InputError, match=r"d\.jsonl:3:"):
        next(items)


# ----------------------------------------------------------------------- writing


def test_atomic_write_json_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "meta.json"
    atomic_write_json(target, {"a": "ü", "n": 1})
    atomic_write_json(target, {"a": "ö"})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": "ö"}
    assert "ö" in target.read_text(encoding="utf-8")
    assert [p.name for p in target.parent.iterdir()] == ["meta.json"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "meta.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_jsonl_writer_resumes_and_skips_done_keys(tmp_path: Path) -> None:
    path = tmp_path / "out" / "res.jsonl"
    with JsonlWriter(path) as writer:
        assert writer.write([{"id": i, "v": i} for i in range(3)]) == 3
    with JsonlWriter(path) as writer:
        assert writer.done == {"0", "1", "2"}
        assert 2 in writer and "2" in writer and len(writer) == 3
        assert writer.write([{"id": i, "v": i} for i in range(1, 5)]) == 2
        assert writer.skipped_existing == 2
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [0, 1, 2, 3, 4]


def test_jsonl_writer_repairs_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "res.jsonl"
    with JsonlWriter(path) as writer:
        writer.write([{"id": "a"}, {"id": "b"}])
    intact = path.read_bytes()
    with open(path, "ab") as handle:
        handle.write(b'{"id": "c", "text": "cut off he')
    with JsonlWriter(path) as writer:
        assert "c" not in writer
        assert writer.done == {"a", "b"}
        assert writer.repaired_bytes == len(b'{"id": "c", "text": "cut off he')
        assert path.read_bytes() == intact
        writer.write([{"id": "c"}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_jsonl_writer_counts_duplicates_and_refuses_corruption_mid_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "old.jsonl", [{"id": 1}, {"id": 1}, {"id": 2}])
    with JsonlWriter(path) as writer:
        assert writer.duplicates_found == 1 and len(writer) == 2
    bad = write_lines(tmp_path / "bad.jsonl", [b'{"id": 1}', b"garbage", b'{"id": 3}'])
    with pytest.raises(InputError, match=r"bad\.jsonl:2:"):
        JsonlWriter(bad)
    assert bad.read_bytes().count(b"\n") == 3  # nothing was truncated


# ----------------------------------------------------------------------- sharding


def test_parse_shard_from_spec() -> None:
    assert parse_shard("0/4", env={}) == (0, 4)
    assert parse_shard("3/4", env={}) == (3, 4)
    assert parse_shard(None, env={}) is None


@pytest.mark.parametrize("spec", ["4/4", "-1/4", "1/0", "a/b", "1", "1/2/3", ""])
def test_parse_shard_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(InputError, match="--shard"):
        parse_shard(spec, env={})


def test_parse_shard_from_slurm_array() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard(None, env=env) == (2, 4)
    assert parse_shard(None, env={"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "2"}) == (0, 2)
    assert parse_shard("1/2", env=env) == (1, 2)  # an explicit spec wins
    with pytest.raises(InputError):
        parse_shard(None, env={"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"})


def test_select_range_keeps_original_indices() -> None:
    items = list("abcdefghij")
    assert select_range(items) == list(enumerate(items))
    assert select_range(items, 2, 5) == [(2, "c"), (3, "d"), (4, "e")]
    assert select_range(items, 8) == [(8, "i"), (9, "j")]
    assert select_range(items, 2, 8, shard=(1, 2)) == [(5, "f"), (6, "g"), (7, "h")]


@pytest.mark.parametrize("length,count", [(10, 3), (10, 4), (7, 7), (3, 5), (0, 2), (100, 7), (1, 1)])
def test_shards_partition_the_slice_exactly(length: int, count: int) -> None:
    items = [f"item{i}" for i in range(length + 3)]
    whole = select_range(items, 3)
    blocks = [select_range(items, 3, shard=(i, count)) for i in range(count)]
    assert [pair for block in blocks for pair in block] == whole
    sizes = [len(block) for block in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_shard_and_meta_paths() -> None:
    out = Path("out/x.jsonl")
    assert shard_path(out, (1, 4)) == Path("out/x.shard-1-of-4.jsonl")
    assert shard_path(out, None) == out
    assert meta_path(out) == Path("out/x.meta.json")
    assert meta_path(shard_path(out, (1, 4))) == Path("out/x.shard-1-of-4.meta.json")
    assert shard_path(Path("out/x.meta.json"), (1, 4)) == Path("out/x.shard-1-of-4.meta.json")


# ----------------------------------------------------------------------- merging


def make_shards(out: Path, shards: list[list[dict]], metas: list[dict | None] | None = None) -> None:
    """Write shard files and their records for ``out`` (test helper); default: each shard complete, a None meta
    writes no record (a shard killed before its first save)."""
    for i, rows in enumerate(shards):
        path = shard_path(out, (i, len(shards)))
        write_jsonl(path, rows)
        meta = {"complete": True} if metas is None else metas[i]
        if meta is not None:
            atomic_write_json(meta_path(path), meta)


def test_merge_two_shards_in_order_with_meta(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    metas = [{"n_selected": 2, "n_written": 2, "complete": True}, {"n_selected": 2, "n_written": 1, "complete": True}]
    make_shards(out, [[{"id": "a"}, {"id": "b"}], [{"id": "c"}]], metas)
    report = merge_shards(out, expected=3)
    assert report.n_records == 3
    assert [s.n_records for s in report.per_shard] == [2, 1]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c"]
    merged_meta = json.loads(meta_path(out).read_text())
    assert merged_meta == {
        "merged_from": ["x.shard-0-of-2.jsonl", "x.shard-1-of-2.jsonl"],
        "n_records": 3,
        "shards": metas,
    }


def test_merge_rejects_wrong_expected_total(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}], [{"id": 2}]])
    with pytest.raises(InputError, match="expected 5"):
        merge_shards(out, expected=5)
    assert not out.exists()


def test_merge_missing_shard_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    write_jsonl(shard_path(out, (0, 3)), [{"id": 1}])
    write_jsonl(shard_path(out, (2, 3)), [{"id": 3}])
    with pytest.raises(InputError, match=r"x\.shard-1-of-3\.jsonl"):
        merge_shards(out)
    assert not out.exists()


def test_merge_duplicate_key_is_an_error_unless_allowed(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1, "v": "first"}, {"id": 2}], [{"id": 2, "v": "later"}, {"id": 3}]])
    with pytest.raises(InputError, match=r"duplicated id values across shards: 2\b"):
        merge_shards(out)
    report = merge_shards(out, allow_duplicates=True)
    assert report.duplicates == ["2"] and report.n_records == 3
    assert [json.loads(line).get("v") for line in out.read_text().splitlines()] == ["first", None, None]


def test_merge_n_written_mismatch_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}], [{"id": 2}]], [{"complete": True},
                                                   {"n_selected": 5, "n_written": 4, "complete": True}])
    with pytest.raises(InputError, match=r"x\.shard-1-of-2\.jsonl: .*n_written=4"):
        merge_shards(out)


def test_merge_incomplete_shard_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}], [{"id": 2}]], [{"n_written": 1, "complete": False}, {"complete": True}])
    with pytest.raises(InputError, match=r"incomplete shards must be resumed first: x\.shard-0-of-2\.jsonl"):
        merge_shards(out)


def test_merge_refuses_a_shard_killed_before_its_first_record(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}, {"id": 2}], [{"id": 3}]], [{"n_written": 2, "complete": True}, None])
    with pytest.raises(InputError, match=r"without a run record.*x\.shard-1-of-2\.meta\.json"):
        merge_shards(out)
    assert not out.exists()


def test_merge_shard_doubled_inside_gets_past_with_allow_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}, {"id": 1}], [{"id": 2}]], [{"n_written": 1, "complete": True},
                                                            {"n_written": 1, "complete": True}])
    with pytest.raises(InputError, match="duplicated id values"):
        merge_shards(out)
    assert merge_shards(out, allow_duplicates=True).n_records == 2


def test_jsonl_writer_repairs_duplicates_on_resume(tmp_path: Path, caplog) -> None:
    path = tmp_path / "doubled.jsonl"
    write_jsonl(path, [{"id": 1, "v": "a"}, {"id": 2}, {"id": 1, "v": "b"}, {"id": 2}])
    with JsonlWriter(path) as writer:
        assert writer.duplicates_found == 2 and writer.done == {"1", "2"}
        writer.write([{"id": 3}])
    assert [(r["id"], r.get("v")) for r in map(json.loads, path.read_text().splitlines())] == [
        (1, "a"), (2, None), (3, None)]
    assert "2 duplicate records" in caplog.text


def test_merge_half_written_shard_line_is_an_error(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}], [{"id": 2}]])
    with open(shard_path(out, (1, 2)), "ab") as handle:
        handle.write(b'{"id": 3, "te')
    with pytest.raises(InputError, match=r"x\.shard-1-of-2\.jsonl:2: half-written.*rerun"):
        merge_shards(out)


def test_main_merge_prints_one_line_error_for_missing_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.jsonl"
    write_jsonl(shard_path(out, (1, 2)), [{"id": 1}])
    assert main_merge(["merge", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "x.shard-0-of-2.jsonl" in err
    assert err.count("\n") == 1


def test_main_merge_success_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.jsonl"
    make_shards(out, [[{"id": 1}], [{"id": 2}, {"id": 3}]])
    assert main_merge(["merge", str(out), "--expected", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and "2 records" in lines[1] and lines[2].startswith("total: 3 records")


def test_jsonl_writer_keeps_valid_last_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "external.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2}')  # e.g. written by a tool that omits the final newline
    with JsonlWriter(path) as writer:
        assert writer.done == {"1", "2"} and writer.repaired_bytes == 0
        writer.write([{"id": 3}])
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2, 3]
