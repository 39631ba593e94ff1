"""The `blueprint` preset (seed 002): Dolly-15k mixing, the seed's instruct flag and file names, and what
--print-config shows for both scripts. Also: BluePrint's cache files are never needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from socialsynth.jobs.bluesky.cli import main_cluster, main_instruct
from socialsynth.jobs.bluesky.config import InstructConfig
from socialsynth.jobs.bluesky.instruct import run_instruct_job
from tests.jobs.bluesky.test_bluesky_instruct import _chain, _read, _write

DOLLY = [
    {"instruction": f"Question {i}?", "context": "Some context." if i % 2 else "", "response": f"Answer {i}.",
     "category": "open_qa"}
    for i in range(30)
]


def _dolly(path: Path, rows=DOLLY, extra: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + extra, encoding="utf-8")
    return path


@pytest.fixture
def clusters(tmp_path) -> Path:
    d = tmp_path / "processed_2_clusters"
    _write(d, 0, [_chain(t, n=1 + t % 4) for t in range(40)])
    _write(d, 1, [_chain(t, users=("dave",), n=3) for t in range(8)])
    return d


def _is_dolly(msgs) -> bool:
    return msgs[0]["content"].startswith("Question ")


def test_dolly_is_a_fifth_of_each_file_in_the_seed_layout(clusters, tmp_path):
    out = tmp_path / "out"
    meta = run_instruct_job(InstructConfig(clusters, out, dolly_path=_dolly(tmp_path / "dolly.jsonl")))
    rows = _read(out / "instruct_cluster_0.jsonl")
    dolly = [m for m in rows if _is_dolly(m)]
    assert len(rows) - len(dolly) == 40 and len(dolly) == int(40 * 0.2 / 0.8) == 10
    assert len({m[0]["content"] for m in dolly}) == 10  # sampled without replacement
    for msgs in dolly:
        i = int(msgs[0]["content"].split()[1].rstrip("?"))
        roles = [m["role"] for m in msgs]
        assert roles == (["system", "context", "assistant"] if i % 2 else ["system", "assistant"])
        assert json.loads(msgs[-1]["content"]) == {"text": f"Answer {i}."}
    # shuffled in (the seed shuffled the file), not appended at the end
    assert any(_is_dolly(m) for m in rows[:-10])
    assert meta["clusters"]["0"]["tasks"]["dolly"] == 10 and meta["clusters"]["1"]["tasks"]["dolly"] == 2
    assert meta["dolly_mixing"]["records"] == 30 and meta["dolly_mixing"]["fraction"] == 0.2


def test_without_dolly_path_nothing_is_mixed(clusters, tmp_path):
    meta = run_instruct_job(InstructConfig(clusters, tmp_path / "out"))
    assert not any(_is_dolly(m) for m in _read(tmp_path / "out" / "instruct_cluster_0.jsonl"))
    assert "dolly" not in meta["totals"] and meta["dolly_mixing"].startswith("not done")


def test_seed_flag_and_file_names(clusters, tmp_path, run_cli):
    out = tmp_path / "seed_out"
    code, stdout, err = run_cli(main_instruct, [
        "--input_dir", clusters, "--output_dir", out, "--max_chains_per_cluster", 12, "--openai_fraction", 0,
        "--dolly_path", _dolly(tmp_path / "d.jsonl"), "--dolly_mix_fraction", 0.5, "--output-names", "seed"])
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*cluster_*.jsonl")) == ["cluster_0.jsonl", "cluster_1.jsonl"]
    rows = _read(out / "cluster_0.jsonl")
    assert len(rows) == 24 and sum(_is_dolly(m) for m in rows) == 12  # 12 chains + 12 Dolly at a half


def test_bad_dolly_files_are_one_line(clusters, tmp_path, bad_flag, run_cli):
    bad_flag(main_instruct, ["-i", clusters, "--dolly-path", tmp_path / "missing.jsonl"], "--dolly-path")
    bad_flag(main_instruct, ["-i", clusters, "--dolly-fraction", 1], "--dolly-fraction")
    bad_flag(main_instruct, ["-i", clusters, "-o", clusters, "--output-names", "seed"], "--output-names")
    broken = _dolly(tmp_path / "broken.jsonl", DOLLY[:3], extra="{not json\n")
    code, _, err = run_cli(main_instruct, ["-i", clusters, "-o", tmp_path / "o1", "--dolly-path", broken])
    assert code == 2 and "broken.jsonl:4" in err and "Traceback" not in err
    nofield = _dolly(tmp_path / "nofield.jsonl", [{"instruction": "q", "context": ""}])
    code, _, err = run_cli(main_instruct, ["-i", clusters, "-o", tmp_path / "o2", "--dolly-path", nofield])
    assert code == 2 and "nofield.jsonl:1" in err and "response" in err and len(err.strip().splitlines()) == 1


def test_empty_dolly_records_are_counted(clusters, tmp_path):
    rows = DOLLY[:5] + [{"instruction": "", "context": "", "response": "x"}]
    meta = run_instruct_job(InstructConfig(clusters, tmp_path / "o", dolly_path=_dolly(tmp_path / "d.jsonl", rows)))
    assert meta["dolly_mixing"]["skipped_empty"] == 1 and meta["dolly_mixing"]["records"] == 5


def _print_config(run_cli, main, argv) -> dict:
    code, out, err = run_cli(main, [*argv, "--print-config"])
    assert code == 0, err
    return yaml.safe_load(out)


def test_print_config_of_the_cluster_preset(tmp_path, run_cli):
    (tmp_path / "events.jsonl").write_text("{}\n")
    cfg = _print_config(run_cli, main_cluster, ["--preset", "blueprint", "--data-root", tmp_path / "events.jsonl"])
    assert cfg["embedding_model"] == "intfloat/multilingual-e5-large"
    assert (cfg["embedding_pooling"], cfg["embedding_prefix"], cfg["embedding_max_tokens"]) == ("cls", "", 128)
    assert cfg["embedding_normalize"] is False
    assert (cfg["chains"], cfg["action_lines"]) == ("seed", "seed")
    assert (cfg["n_clusters"], cfg["min_cluster_size"], cfg["seed"], cfg["n_workers"]) == (25, 10, 42, 10)
    assert (cfg["min_english_posts"], cfg["language_detector"]) == (2, "seed")
    assert (cfg["similarity_threshold"], cfg["cap_ignored_messages"]) == (0.7, 1000)
    # flags override the preset; our defaults are untouched without it
    over = _print_config(run_cli, main_cluster, ["--preset", "blueprint", "--data-root", tmp_path / "events.jsonl",
                                                 "--action-lines", "all", "--embedding-normalize"])
    assert over["action_lines"] == "all" and over["embedding_normalize"] is True and over["chains"] == "seed"
    plain = _print_config(run_cli, main_cluster, ["--data-root", tmp_path / "events.jsonl"])
    assert (plain["embedding_model"], plain["chains"], plain["action_lines"]) == ("embedded", "paths", "all")
    embedding = (plain["embedding_pooling"], plain["embedding_prefix"], plain["embedding_normalize"])
    assert embedding == ("model", None, True)


def test_print_config_of_the_instruct_preset(clusters, tmp_path, run_cli):
    dolly = _dolly(tmp_path / "dolly.jsonl")
    cfg = _print_config(run_cli, main_instruct, ["--preset", "blueprint", "-i", clusters, "--dolly_path", dolly])
    assert (cfg["max_chains"], cfg["llm_fraction"], cfg["dolly_fraction"], cfg["seed"]) == (10000, 0.0, 0.2, 42)
    assert cfg["output_names"] == "seed" and cfg["dolly_path"] == str(dolly)
    plain = _print_config(run_cli, main_instruct, ["-i", clusters])
    assert plain["output_names"] == "ours" and plain["dolly_path"] is None


def test_list_presets_names_blueprint(tmp_path, run_cli):
    for main in (main_cluster, main_instruct):
        code, out, _ = run_cli(main, ["--list-presets"])
        assert code == 0 and out.startswith("blueprint") and "BluePrint" in out


def test_blueprint_cache_files_are_never_read(tmp_path, run_cli):
    """BluePrint's pickled caches (data_processing_*_cache.pkl) are not needed and not opened: a run with them in
    the cache folder (here as files that would fail to unpickle) parses the events itself."""
    from tests.jobs.bluesky.test_cluster_users_cli import _events

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in _events()), encoding="utf-8")
    caches = tmp_path / "caches"
    caches.mkdir()
    for name in ("data_processing_embedding_cache.pkl", "data_processing_user_data_cache.pkl",
                 "embedding_cache.pkl", "user_data_cache.pkl"):
        (caches / name).write_bytes(b"not a pickle")
    code, out, err = run_cli(main_cluster, ["--data-root", events, "-o", tmp_path / "out", "--cache-dir", caches,
                                            "--n-clusters", 2, "--min-cluster-size", 5, "--n-workers", 1])
    assert code == 0, err
    assert len(json.loads((tmp_path / "out" / "processed_2_clusters" / "user_clusters.json").read_text())) == 12
    assert all((caches / n).read_bytes() == b"not a pickle" for n in ("embedding_cache.pkl", "user_data_cache.pkl"))
