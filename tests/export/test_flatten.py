"""The flattening rule of the Parquet export: records -> flat typed columns -> the same records."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from socialsynth.export.flatten import MAX_KEYS, columns_from_metadata, plan_columns, to_table, unflatten, without_nulls


def round_trip(records: list[dict], tmp_path) -> tuple[pa.Table, list[dict]]:
    import pandas as pd

    path = tmp_path / "t.parquet"
    pq.write_table(to_table(records), path)
    frame = pd.read_parquet(path, dtype_backend="pyarrow")
    back = unflatten(frame.to_dict("records"), columns_from_metadata(pq.read_schema(path)))
    return pq.read_table(path), back


def judged_record(i: int) -> dict:
    """A normness record with two judges (names holding ':', '/' and '.') and candidates, as in the judges
    schema."""
    rating = {"rating": 3, "expected": 3.2 + i, "probs": [0.1, 0.2, 0.4, 0.2, 0.1], "mass": 0.9}
    return {
        "id": f"c{i}", "1": "rewrite", "5": None if i else "RE-WRITE",
        "judges": ["generator:tiny:likelihood", "hf:Qwen/Qwen2.5-0.5B-Instruct:logits"],
        "ratings": {"generator:tiny:likelihood": {"method": "likelihood", "original": rating, "1": rating,
                                                  "5": None if i else rating},
                    "hf:Qwen/Qwen2.5-0.5B-Instruct:logits": {"method": "logits", "original": rating, "1": rating,
                                                             "5": None}},
        "candidates": {"1": [{"text": "a", "kept": True, "rating": 2.5, "request_seed": 2**62 + i},
                             {"text": "", "kept": False, "rating": None, "error": "refused"}]},
        "status": "error" if i else "ok", **({"error": "level 5: refused"} if i else {}),
    }


def test_judge_ratings_and_candidates_round_trip(tmp_path):
    records = [judged_record(0), judged_record(1)]
    table, back = round_trip(records, tmp_path)
    assert without_nulls(back) == without_nulls(records)
    names = table.column_names
    assert "ratings.hf:Qwen/Qwen2.5-0.5B-Instruct:logits.original.expected" in names
    assert table.schema.field("candidates.1").type.value_type.get_field_index("request_seed") >= 0
    assert table.column("error").to_pylist() == [None, "level 5: refused"]


def test_a_key_holding_the_separator_keeps_its_own_column(tmp_path):
    records = [{"a.b": 1, "a": {"b": 2}}]
    table, back = round_trip(records, tmp_path)
    assert sorted(table.column_names) == ["a.b", "a.b#2"]
    assert back == records


def test_values_without_one_type_become_json_text(tmp_path):
    records = [{"score": 3, "flag": True, "seed": 2**64 - 1}, {"score": "high", "flag": 1, "seed": 5}]
    table, back = round_trip(records, tmp_path)
    assert table.schema.field("score").type == pa.string() and table.schema.field("flag").type == pa.string()
    assert table.schema.field("seed").type == pa.uint64()
    assert back == records
    assert {c.name: c.json for c in plan_columns(records)} == {"score": False, "flag": False, "seed": False}


def test_objects_that_cannot_spread_stay_json(tmp_path):
    wide = {f"user{i}": i for i in range(MAX_KEYS + 1)}
    records = [{"skipped": {}, "mixed": {"x": 1}, "wide": wide}, {"skipped": {"a": 1}, "mixed": 7, "wide": {}}]
    columns = {c.name: c.json for c in plan_columns(records)}
    assert columns == {"skipped": True, "mixed": True, "wide": True}
    _, back = round_trip(records, tmp_path)
    assert back == records


def test_rows_and_order_are_kept_even_without_keys(tmp_path):
    records = [{}, {"id": "b"}, {}]
    table, back = round_trip(records, tmp_path)
    assert table.num_rows == 3 and back == [{}, {"id": "b"}, {}]
