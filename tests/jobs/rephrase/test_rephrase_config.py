"""rephrase_posts.py's declared config: bad values, the job-file round trip, and the run record (fake models)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from socialsynth.core.cli import run_main
from socialsynth.core.config import flat_values, parse
from socialsynth.core.run import read_run_record
from socialsynth.jobs.rephrase.cli import main
from socialsynth.jobs.rephrase.config import RephraseConfig
from socialsynth.llm import BackendSpec
from tests.helpers import flag_cases

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE = REPO / "data" / "posts_sample.csv"


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """main(argv) as the script runs it: exit code, stdout, stderr."""
    try:
        code = run_main(lambda: main([str(a) for a in argv]))
    except SystemExit as e:  # argparse's own errors (unknown choice, ...) and --print-config
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


# -- (a) bad values: one line naming the flag, exit 2, before any model loads -----------------------------------------
BAD = flag_cases(
    """
    -b 0  -> --batch-size
    --batch-size x
    --samples-per-model 0
    --max-batch-tokens 0
    --max-post-chars -5
    --search-sample 0
    --search-temperatures hot
    --search-temperatures 1.0:0.5:0.1
    --search-temperatures -0.5,0.7
    --audit --embedding-model none  -> --embedding-model
    --search-temperatures 0.5,0.7 --embedding-model none  -> --embedding-model
    --temperature -1
    --top-p 1.5
    --max-new-tokens 0
    -s 5 -e 2  -> --end-idx
    -s -1  -> --start-idx
    --shard 4/4
    --backend tpu
    -q 3  -> --quantization
    --concurrency 0
    --backend openai  -> --api-base
    -m ''  -> --model
    -m a -m ' '  -> --model
    --text-col ''
    --template no_such_template
    --input /no/such/posts.csv
    """
)


@pytest.mark.parametrize("argv, flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(argv, flag, tmp_path, bad_flag, monkeypatch):
    def no_load(self):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(BackendSpec, "load", no_load)
    bad_flag(main, ["--input", SAMPLE, "-o", tmp_path / "o", *argv], flag)
    assert not (tmp_path / "o").exists()


def test_missing_input_names_the_flag(capsys):
    code, _, err = run_cli([], capsys)
    assert code == 2 and "--input" in err and len(err.strip().splitlines()) == 1


# -- (b) the job file round trip --------------------------------------------------------------------------------------
def test_print_config_fed_back_gives_the_same_config(tmp_path, capsys):
    argv = ["--input", SAMPLE, "-o", tmp_path / "o", "-m", "model-a", "-m", "model-b", "--search-temperatures",
            "0.5:0.7:0.1", "--search-sample", "3", "--samples-per-model", "2", "-e", "4", "--temperature", "0.3",
            "--id-col", "id", "--embedding-model", "all-MiniLM-L6-v2", "--audit", "-q", "4"]
    code, printed, _ = run_cli([*argv, "--print-config"], capsys)
    assert code == 0
    job = tmp_path / "job.yaml"
    job.write_text(printed, encoding="utf-8")
    from_flags = parse(RephraseConfig, [str(a) for a in argv])
    from_file = parse(RephraseConfig, ["--config", str(job)])
    assert flat_values(from_file) == flat_values(from_flags)
    assert from_file.models == ["model-a", "model-b"] and from_file.search_temperatures == (0.5, 0.6, 0.7)
    assert [s.model for s in from_file.specs()] == ["model-a", "model-b"]
    assert {s.quantization for s in from_file.specs()} == {4}
    # flags on the command line override the file
    assert parse(RephraseConfig, ["--config", str(job), "-m", "other"]).models == ["other"]


def test_defaults_and_none_embedding_model(tmp_path):
    cfg = parse(RephraseConfig, ["--input", str(SAMPLE), "--embedding-model", "none"])
    assert cfg.models == ["embedded"] and cfg.embedding_model is None
    assert cfg.output_dir.name == "rephrase_posts_sample"
    spec = cfg.specs()[0]
    assert (spec.model, spec.max_batch_tokens, spec.backend) == ("embedded", 65536, "hf")
    job = tmp_path / "job.yaml"
    job.write_text("input: " + str(SAMPLE) + "\nmodel: solo\nembedding_model: none\n", encoding="utf-8")
    from_file = parse(RephraseConfig, ["--config", str(job)])
    assert from_file.models == ["solo"] and from_file.embedding_model is None


@pytest.fixture
def fake_models(monkeypatch, fake_backend_cls):
    """-m NAME loads a fake backend named NAME that counts 10 tokens in and 3 out per request."""

    class Counting(fake_backend_cls):
        def generate(self, chats, params, keys=None, progress=None):
            self.reply = lambda chat, key: f'"Changed Post": T={params.temperature:g} {key}'
            out = super().generate(chats, params, keys, progress)
            self.stats.prompt_tokens += 10 * len(chats)
            self.stats.new_tokens += 3 * len(chats)
            return out

    loads: list[str] = []

    def load(self):
        loads.append(self.model)
        backend = Counting()
        backend.name = self.model
        return backend

    class Embedder:
        name = "fake-embedder"

        def __init__(self, name, device="auto"):
            pass

        def encode(self, texts):
            out = np.ones((len(texts), 4), dtype=np.float32)
            out[:, 0] = [len(t) for t in texts]
            return out / np.linalg.norm(out, axis=1, keepdims=True)

        def pair_similarity(self, a, b):
            return np.array([abs(float(t.split("T=")[1].split()[0]) - 0.6) for t in b])

    monkeypatch.setattr(BackendSpec, "load", load)
    # fake names
    monkeypatch.setattr("socialsynth.llm.loading.check_model_available", lambda name, flag="", backend="hf": None)
    monkeypatch.setattr("socialsynth.text.embeddings.Embedder", Embedder)
    return loads


def read_records(path: Path) -> list[dict]:
    return sorted((json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()), key=lambda r: r["id"])


def test_the_job_file_gives_the_same_records_as_the_flags(tmp_path, capsys, fake_models):
    argv = ["--input", SAMPLE, "-e", "4", "-m", "model-a", "-m", "model-b", "--search-temperatures", "0.5,0.6,0.7",
            "--search-sample", "2", "--audit", "-b", "2"]
    code, _, err = run_cli([*argv, "-o", tmp_path / "flags"], capsys)
    assert code == 0, err
    code, printed, _ = run_cli([*argv, "-o", tmp_path / "flags", "--print-config"], capsys)
    job = tmp_path / "job.yaml"
    job.write_text(printed, encoding="utf-8")
    code, _, err = run_cli(["--config", job, "-o", tmp_path / "file"], capsys)
    assert code == 0, err
    by_flags = read_records(tmp_path / "flags" / "rephrased.jsonl")
    assert len(by_flags) == 8 and by_flags == read_records(tmp_path / "file" / "rephrased.jsonl")
    assert {r["provenance"]["sampling"]["temperature"] for r in by_flags} == {0.6}
    # the config saved beside the record reads back as the same config
    saved = parse(RephraseConfig, ["--config", str(tmp_path / "flags" / "rephrased.config.yaml")])
    assert flat_values(saved) == flat_values(parse(RephraseConfig, [*map(str, argv), "-o", str(tmp_path / "flags")]))


# -- (c) the run record ------------------------------------------------------------------------------------------------
def test_run_record_counts_tokens_per_model_and_stage_and_sums_them_over_resumes(tmp_path, capsys, fake_models):
    out = tmp_path / "o"
    argv = ["--input", SAMPLE, "-e", "4", "-o", out, "-m", "model-a", "-m", "model-b", "--search-temperatures",
            "0.5,0.7", "--search-sample", "2"]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    record = read_run_record(out / "rephrased.meta.json")
    assert record["job"] == "rephrase" and record["complete"] is True and record["status"] == "finished"
    assert record["n_written"] == 8 and set(record["per_model"]) == {"model-a", "model-b"}
    assert record["config"]["models"] == ["model-a", "model-b"]
    tokens = record["tokens"]
    for model in ("model-a", "model-b"):
        search = tokens[model]["search"]  # 2 temperatures x 2 sampled posts
        assert (search["in"], search["out"]) == (2 * 2 * 10, 2 * 2 * 3)
        assert (tokens[model]["rephrase"]["in"], tokens[model]["rephrase"]["out"]) == (4 * 10, 4 * 3)
    assert record["temperature_search"]["by_model"]["model-a"]["chosen"] == 0.5
    assert "rephrased.meta.json" in stdout

    # resume after losing one record: only that one is redone; tokens are summed over the two runs
    lines = (out / "rephrased.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "rephrased.jsonl").write_text("".join(lines[:-1]), encoding="utf-8")
    fake_models.clear()
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert fake_models == ["model-b"]
    again = read_run_record(out / "rephrased.meta.json")
    assert again["complete"] is True and len(again["runs"]) == 2
    assert again["tokens"]["model-b"]["rephrase"]["in"] == 4 * 10 + 10
    assert again["tokens"]["model-b"]["search"]["in"] == 2 * 2 * 10  # the search is not redone
    assert again["tokens"]["model-a"] == tokens["model-a"]
    assert again["runs"][-1]["tokens"] == {"model-b": {"rephrase": {"in": 10, "out": 3, "seconds": 0.0}}}


def test_a_shard_keeps_its_record_name(tmp_path, capsys, fake_models):
    out = tmp_path / "o"
    code, _, err = run_cli(["--input", SAMPLE, "-e", "4", "-o", out, "-m", "m", "--shard", "1/2"], capsys)
    assert code == 0, err
    record = read_run_record(out / "rephrased.shard-1-of-2.meta.json")
    assert record["shard"] == [1, 2] and record["n_selected"] == 2 and record["complete"] is True
    assert (out / "rephrased.shard-1-of-2.jsonl").exists() and (out / "m_generated.shard-1-of-2.csv").exists()
    assert record["tokens"]["m"]["rephrase"]["in"] == 2 * 10


def test_a_stop_after_one_models_search_keeps_that_search(tmp_path, capsys, fake_models, monkeypatch):
    from socialsynth.core.errors import Interrupted

    load = BackendSpec.load

    def stop_at_b(self):
        if self.model == "model-b":
            raise Interrupted("stopped by SIGTERM", resume_hint="rerun to resume")
        return load(self)

    monkeypatch.setattr(BackendSpec, "load", stop_at_b)
    out = tmp_path / "o"
    argv = ["--input", SAMPLE, "-e", "4", "-o", out, "-m", "model-a", "-m", "model-b", "--search-temperatures",
            "0.5,0.7", "--search-sample", "2"]
    code, _, err = run_cli(argv, capsys)
    assert code == 143 and "rerun to resume" in err
    record = read_run_record(out / "rephrased.meta.json")
    assert record["status"] == "interrupted" and record["complete"] is False and record["n_written"] == 4
    assert set(record["temperature_search"]["by_model"]) == {"model-a"}
    assert set(record["tokens"]["model-a"]) == {"search", "rephrase"}

    monkeypatch.setattr(BackendSpec, "load", load)
    fake_models.clear()
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert fake_models == ["model-b"]  # model-a has nothing left to do and its search is kept
    record = read_run_record(out / "rephrased.meta.json")
    assert record["complete"] is True and set(record["temperature_search"]["by_model"]) == {"model-a", "model-b"}
    assert record["tokens"]["model-a"]["search"]["in"] == 2 * 2 * 10
