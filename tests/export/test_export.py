"""`socialsynth export`: Parquet / JSONL / datasets folders from real job outputs, the data card, bad input, and
no network unless --push-to-hub."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from socialsynth.__main__ import main as socialsynth
from socialsynth.export.card import front_matter_of
from socialsynth.export.flatten import columns_from_metadata, unflatten, without_nulls
from tests.export.conftest import FAILED_ID, SERVER_ERROR, read_jsonl


def export(src: Path, out: Path, *flags) -> int:
    """``socialsynth export SRC -o OUT FLAGS``; the exit code (argparse's exit on a bad flag included)."""
    try:
        return socialsynth(["export", str(src), "-o", str(out), *map(str, flags)])
    except SystemExit as stop:
        return int(stop.code)


def parquet_records(path: Path) -> list[dict]:
    """Read an exported Parquet file back with pandas (Arrow types: exact 64-bit integers beside nulls) and rebuild
    the nested records."""
    frame = pd.read_parquet(path, dtype_backend="pyarrow")
    return unflatten(frame.to_dict("records"), columns_from_metadata(pq.read_schema(path)))


def card_of(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    return front_matter_of(text), text


# -- normness ---------------------------------------------------------------------------------------------------
def test_norms_parquet_round_trip_keeps_failed_rows(norms_output, tmp_path):
    records = read_jsonl(norms_output / "askmen_formality.jsonl")
    assert export(norms_output, tmp_path / "ex") == 0
    files = sorted((tmp_path / "ex" / "askmen_formality").glob("train-*.parquet"))
    assert [f.name for f in files] == ["train-00000-of-00001.parquet"]
    back = parquet_records(files[0])
    assert len(back) == len(records) == 3
    assert without_nulls(back) == without_nulls(records)
    frame = pd.read_parquet(files[0])
    assert "rewrite_ratings.3" in frame.columns and "filters.5.passed" in frame.columns
    judge = records[0]["judges"][0]
    assert f"ratings.{judge}.original.expected" in frame.columns and "candidates.3" in frame.columns
    failed = frame[frame["id"] == FAILED_ID].iloc[0]
    assert failed["status"] == "error" and SERVER_ERROR in failed["error"]
    assert set(frame["status"]) == {"ok", "error"}


def test_norms_card_names_model_template_hash_and_counts(norms_output, tmp_path, tiny_model_dir):
    record = read_jsonl(norms_output / "askmen_formality.jsonl")[0]
    assert export(norms_output, tmp_path / "ex", "--license", "cc-by-nc-4.0") == 0
    meta, text = card_of(tmp_path / "ex")
    rewrite_hash = record["provenance"]["rewrite_template"].split("@")[1]
    facts = meta["socialsynth"]["subsets"]["askmen_formality"]
    assert record["provenance"]["model"] in facts["models"]
    assert any(rewrite_hash in t for t in facts["templates"])
    assert facts["rows"] == {"train": 3} and facts["failed_rows"] == 1
    assert meta["license"] == "cc-by-nc-4.0" and meta["viewer"] is False and meta["language"] == ["en"]
    assert meta["configs"] == [{"config_name": "askmen_formality", "default": True,
                                "data_files": [{"split": "train", "path": "askmen_formality/train-*.parquet"}]}]
    assert "reddit" in meta["tags"] and meta["size_categories"] == ["n<1K"]
    assert facts["judges"] == [f"hf:{tiny_model_dir}:logits"] and "judge (logits)" in text
    assert "Best of 2 candidates" in text
    assert SERVER_ERROR in text and FAILED_ID in text  # which rows failed and why
    assert "deleted" in text and "temperature" in text and rewrite_hash in text


def test_norms_hf_format_loads_with_load_from_disk(norms_output, tmp_path):
    import datasets

    assert export(norms_output, tmp_path / "ex", "--format", "hf") == 0
    data = datasets.load_from_disk(str(tmp_path / "ex"))
    assert data.num_rows == 3 and sorted(data["status"]) == ["error", "ok", "ok"]
    assert data.column_names == pd.read_parquet(next(iter(_parquet_of(norms_output, tmp_path)))).columns.tolist()
    meta, _ = card_of(tmp_path / "ex")
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "data-*.arrow"}]


def _parquet_of(src: Path, tmp_path: Path) -> list[Path]:
    assert export(src, tmp_path / "pq") == 0
    return sorted((tmp_path / "pq").rglob("*.parquet"))


def test_norms_jsonl_keeps_the_records_as_they_are(norms_output, tmp_path):
    assert export(norms_output, tmp_path / "ex", "--format", "jsonl") == 0
    (written,) = (tmp_path / "ex" / "askmen_formality").glob("*.jsonl")
    assert read_jsonl(written) == read_jsonl(norms_output / "askmen_formality.jsonl")


def test_public_viewer_and_default_license_note(norms_output, tmp_path):
    assert export(norms_output, tmp_path / "ex", "--public-viewer") == 0
    meta, text = card_of(tmp_path / "ex")
    assert meta["viewer"] is True and meta["license"] == "other"
    assert "choose one that fits them" in text


def test_max_rows_per_file_cuts_a_split_into_shards(norms_output, tmp_path):
    assert export(norms_output, tmp_path / "ex", "--max-rows-per-file", "2") == 0
    files = sorted((tmp_path / "ex" / "askmen_formality").glob("*.parquet"))
    assert [f.name for f in files] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    assert sum(len(pd.read_parquet(f)) for f in files) == 3


def test_unmerged_shards_are_one_subset_and_merged_ones_are_not_doubled(norms_output, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(norms_output, src)
    records = (src / "askmen_formality.jsonl").read_text().splitlines(keepends=True)
    for i, part in enumerate((records[:2], records[2:])):
        (src / f"askmen_formality.shard-{i}-of-2.jsonl").write_text("".join(part))
        shutil.copy(src / "askmen_formality.meta.json", src / f"askmen_formality.shard-{i}-of-2.meta.json")
    assert export(src, tmp_path / "merged") == 0
    assert card_of(tmp_path / "merged")[0]["socialsynth"]["subsets"]["askmen_formality"]["rows"] == {"train": 3}
    for name in ("askmen_formality.jsonl", "askmen_formality.meta.json"):
        (src / name).unlink()
    assert export(src, tmp_path / "shards") == 0
    files = sorted((tmp_path / "shards" / "askmen_formality").glob("*.parquet"))
    assert [len(pd.read_parquet(f)) for f in files] == [2, 1]


# -- other job kinds --------------------------------------------------------------------------------------------
def test_instruct_clusters_become_splits_of_chat_messages(instruct_output, tmp_path):
    import datasets

    sources = sorted(instruct_output.glob("instruct_cluster_*.jsonl"))
    assert export(instruct_output, tmp_path / "ex") == 0
    meta, _ = card_of(tmp_path / "ex")
    rows = meta["socialsynth"]["subsets"]["instruct"]["rows"]
    assert {k: v for k, v in rows.items() if k.startswith("cluster")} == {  # the common "instruct_" dropped
        s.stem.removeprefix("instruct_"): len(read_jsonl(s)) for s in sources}
    first = parquet_records(tmp_path / "ex" / "instruct" / "cluster_0-00000-of-00001.parquet")
    assert [r["messages"] for r in first] == read_jsonl(sources[0])
    assert export(instruct_output, tmp_path / "hf", "--format", "hf") == 0
    data = datasets.load_from_disk(str(tmp_path / "hf"))
    assert data["cluster_1"].num_rows == len(read_jsonl(sources[1]))
    assert data["cluster_0"][0]["messages"] == read_jsonl(sources[0])[0]


def test_augment_items_and_ladder_splits(augment_output, tmp_path):
    import datasets

    assert export(augment_output, tmp_path / "ex", "--format", "hf") == 0
    meta, text = card_of(tmp_path / "ex")
    subsets = meta["socialsynth"]["subsets"]
    items = read_jsonl(augment_output / "synthetic_1.jsonl")
    assert subsets["synthetic_1"]["rows"] == {"train": len(items)}
    ladder = {p.stem: len(pd.read_csv(p)) for p in (augment_output / "ladder").glob("*.csv")}
    assert subsets["synthetic_1-ladder"]["rows"] == ladder
    assert set(subsets) == {"synthetic_1", "synthetic_1-ladder"}  # the accepted-items CSV repeats JSONL rows
    assert "not exported" in text and "`synthetic_1.csv`" in text
    assert datasets.load_from_disk(str(tmp_path / "ex" / "synthetic_1")).num_rows == len(items)
    splits = datasets.load_from_disk(str(tmp_path / "ex" / "synthetic_1-ladder"))
    assert {name: split.num_rows for name, split in splits.items()} == ladder
    assert "augment_fewshot@" in text and "text-classification" in meta["task_categories"]


# -- bad input --------------------------------------------------------------------------------------------------
def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_folder_without_run_records_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = _one_line_error(capsys, export(tmp_path / "empty", tmp_path / "ex"))
    assert "no run records" in line and not (tmp_path / "ex").exists()


def test_unknown_format_is_a_one_line_error(norms_output, tmp_path, capsys):
    line = _one_line_error(capsys, export(norms_output, tmp_path / "ex", "--format", "csv"))
    assert "--format" in line


def test_output_not_empty_needs_overwrite(norms_output, tmp_path, capsys):
    out = tmp_path / "ex"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    line = _one_line_error(capsys, export(norms_output, out))
    assert "--overwrite" in line and (out / "keep.txt").exists()
    assert export(norms_output, out, "--overwrite") == 0
    assert not (out / "keep.txt").exists() and (out / "README.md").exists()


def test_output_inside_the_exported_folder_is_refused(norms_output, capsys):
    line = _one_line_error(capsys, export(norms_output, norms_output, "--overwrite"))
    assert "holds the outputs" in line and (norms_output / "askmen_formality.jsonl").exists()


def test_broken_record_line_names_file_and_line(norms_output, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(norms_output, src)
    with open(src / "askmen_formality.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{broken\n")
    line = _one_line_error(capsys, export(src, tmp_path / "ex"))
    assert "askmen_formality.jsonl:4" in line and not (tmp_path / "ex").exists()


# -- the network ------------------------------------------------------------------------------------------------
class FakeHub:
    """Stands in for huggingface_hub.HfApi: records the calls, sends nothing."""

    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kw):
        FakeHub.calls.append(("create_repo", {"repo_id": repo_id, **kw}))
        return f"https://hub.invalid/datasets/{repo_id}"

    def upload_folder(self, **kw):
        FakeHub.calls.append(("upload_folder", kw))

    def upload_file(self, **kw):
        FakeHub.calls.append(("upload_file", kw))


def _no_network(monkeypatch):
    import datasets
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the export touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(huggingface_hub, "HfApi", refuse)
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", refuse)
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", refuse)


@pytest.mark.parametrize("fmt", ["parquet", "hf"])
def test_without_push_to_hub_nothing_touches_the_network(norms_output, tmp_path, monkeypatch, fmt):
    _no_network(monkeypatch)
    assert export(norms_output, tmp_path / "ex", "--format", fmt) == 0


@pytest.mark.parametrize(("flags", "private"), [((), True), (("--public",), False), (("--no-private",), False)])
def test_push_to_hub_uploads_the_folder_private_by_default(norms_output, tmp_path, monkeypatch, flags, private):
    import huggingface_hub

    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    assert export(norms_output, tmp_path / "ex", "--push-to-hub", "me/askmen", *flags) == 0
    (create, kw), (upload, up) = FakeHub.calls
    assert create == "create_repo" and kw["private"] is private and kw["repo_type"] == "dataset"
    assert upload == "upload_folder" and Path(up["folder_path"]) == tmp_path / "ex" and up["repo_id"] == "me/askmen"
    assert up["ignore_patterns"] == [".socialsynth-export"]


def test_bad_hub_repository_id_is_a_one_line_error(norms_output, tmp_path, capsys):
    line = _one_line_error(capsys, export(norms_output, tmp_path / "ex", "--push-to-hub", "not a repo"))
    assert "--push-to-hub" in line


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        socialsynth(["export", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for name in ("--format", "--push-to-hub", "--private", "--public", "--public-viewer", "--license",
                 "--overwrite", "--max-rows-per-file"):
        assert name in text


def test_summary_counts_match_the_files(norms_output, tmp_path, capsys):
    assert export(norms_output, tmp_path / "ex") == 0
    out = capsys.readouterr().out
    assert "3 rows exported as parquet" in out
    assert json.loads(json.dumps(card_of(tmp_path / "ex")[0]))["configs"][0]["config_name"] == "askmen_formality"


def test_response_cases_are_split_by_their_split_field(response_output, tmp_path):
    cases = read_jsonl(response_output / "cases.jsonl")
    assert export(response_output, tmp_path / "ex") == 0
    meta, text = card_of(tmp_path / "ex")
    wanted = {name: sum(c["split"] == name for c in cases) for name in ("train", "test")}
    assert meta["socialsynth"]["subsets"]["cases"]["rows"] == wanted and min(wanted.values()) > 0
    for name in wanted:
        back = parquet_records(tmp_path / "ex" / "cases" / f"{name}-00000-of-00001.parquet")
        assert without_nulls(back) == without_nulls([c for c in cases if c["split"] == name])
    assert "response" in meta["tags"] and "Weibo" in text


def test_push_of_a_datasets_folder_pushes_each_subset_then_the_card(norms_output, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    pushed = []
    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", lambda self, repo, **kw: pushed.append((repo, kw)))
    assert export(norms_output, tmp_path / "ex", "--format", "hf", "--push-to-hub", "me/askmen") == 0
    assert [(repo, kw["config_name"], kw["private"]) for repo, kw in pushed] == [("me/askmen", "askmen_formality",
                                                                                  True)]
    (_, create), (upload, card) = FakeHub.calls
    assert upload == "upload_file" and card["path_in_repo"] == "README.md" and create["private"] is True
    meta = front_matter_of(card["path_or_fileobj"].decode("utf-8"))
    assert meta["configs"][0]["data_files"] == [{"split": "train", "path": "askmen_formality/train-*"}]


def test_an_export_inside_the_exported_folder_is_not_exported_again(norms_output, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(norms_output, src)
    for target in ("published", "published", "again"):
        assert export(src, src / target, "--overwrite", "--format", "jsonl") == 0
        meta, _ = card_of(src / target)
        assert list(meta["socialsynth"]["subsets"]) == ["askmen_formality"]
        assert meta["socialsynth"]["subsets"]["askmen_formality"]["rows"] == {"train": 3}


def test_a_failed_push_is_one_line_and_keeps_the_export(norms_output, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    class Offline(FakeHub):
        def create_repo(self, repo_id, **kw):
            raise ConnectionError("cannot reach the Hub\nsecond line")

    monkeypatch.setattr(huggingface_hub, "HfApi", Offline)
    assert export(norms_output, tmp_path / "ex", "--push-to-hub", "me/askmen") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Hub" in err[0] and (tmp_path / "ex" / "README.md").exists()
