"""Per-model sampling in the job file (`models: [{name, temperature, ...}]`), the CSV names, and the socsys preset
(seed 001: three models, each with its own sampling, written to the seed's file names). Fake models, no download."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from socialsynth.core.cli import run_main
from socialsynth.core.config import flat_values, parse
from socialsynth.core.run import read_run_record
from socialsynth.jobs.rephrase.cli import main
from socialsynth.jobs.rephrase.config import RephraseConfig
from socialsynth.llm import BackendSpec

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE = REPO / "data" / "posts_sample.csv"
SEED_MODELS = ["meta-llama/Llama-2-7b-chat-hf", "meta-llama/Meta-Llama-3-8B-Instruct", "HuggingFaceH4/zephyr-7b-beta"]


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    try:
        code = run_main(lambda: main([str(a) for a in argv]))
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def calls(monkeypatch, fake_backend_cls):
    """-m NAME loads a fake backend named NAME; returns {model name: [GenerationParams of each generate call]}."""
    seen: dict[str, list] = {}

    class Recording(fake_backend_cls):
        def generate(self, chats, params, keys=None, progress=None):
            seen.setdefault(self.name, []).append(params)
            self.reply = lambda chat, key: f'"Changed Post": a new story for {key}'
            return super().generate(chats, params, keys, progress)

    def load(self):
        backend = Recording()
        backend.name = self.model
        return backend

    monkeypatch.setattr(BackendSpec, "load", load)
    monkeypatch.setattr("socialsynth.llm.loading.check_model_available", lambda name, flag="", backend="hf": None)
    return seen


def job_file(tmp_path: Path, models: list, name: str = "job.yaml", **more) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"input": str(SAMPLE), "models": models, **more}), encoding="utf-8")
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# -- per-model sampling -----------------------------------------------------------------------------------------------
def test_each_model_samples_with_its_own_settings_and_records_say_so(tmp_path, capsys, calls):
    job = job_file(tmp_path, [{"name": "model-a", "temperature": 0.6, "top_p": 0.9},
                              {"name": "model-b", "temperature": 0.7, "top_k": 50, "top_p": 0.95,
                               "max_new_tokens": 64},
                              "model-c"])
    out = tmp_path / "o"
    code, stdout, err = run_cli(["--config", job, "-o", out, "-e", "3", "--temperature", "0.3", "--top-k", "5"],
                                capsys)
    assert code == 0, err
    got = {name: {(p.temperature, p.top_p, p.top_k, p.max_new_tokens) for p in ps} for name, ps in calls.items()}
    # an entry's keys win for that model; the keys it leaves out, and a plain name, take the shared flags
    assert got == {"model-a": {(0.6, 0.9, 5, 256)}, "model-b": {(0.7, 0.95, 50, 64)}, "model-c": {(0.3, 0.9, 5, 256)}}
    by_model = {r["model"]: r["provenance"]["sampling"] for r in records(out / "rephrased.jsonl")}
    assert (by_model["model-a"]["temperature"], by_model["model-b"]["top_k"]) == (0.6, 50)
    assert by_model["model-c"]["temperature"] == 0.3
    record = read_run_record(out / "rephrased.meta.json")
    assert record["per_model"]["model-a"]["temperature_source"] == "models entry"
    assert record["per_model"]["model-c"]["temperature_source"] == "flags"
    assert record["sampling"]["model-b"]["max_new_tokens"] == 64
    assert "model-a" in stdout and " 0.6 " in stdout  # the summary table shows each model's temperature


def test_plain_repeated_models_share_the_flags(tmp_path, capsys, calls):
    code, _, err = run_cli(["--input", SAMPLE, "-o", tmp_path / "o", "-e", "2", "-m", "a", "-m", "b",
                            "--temperature", "0.4", "--top-p", "0.8"], capsys)
    assert code == 0, err
    assert {(n, p.temperature, p.top_p) for n, ps in calls.items() for p in ps} == {("a", 0.4, 0.8), ("b", 0.4, 0.8)}
    assert parse(RephraseConfig, ["--input", str(SAMPLE), "-m", "a", "-m", "b"]).models == ["a", "b"]


def test_the_search_keeps_a_models_other_settings(tmp_path, capsys, calls, monkeypatch):
    import numpy as np

    class Embedder:
        name = "fake"

        def __init__(self, name, device="auto"):
            pass

        def pair_similarity(self, a, b):
            return np.zeros(len(b))

    monkeypatch.setattr("socialsynth.text.embeddings.Embedder", Embedder)
    job = job_file(tmp_path, [{"name": "z", "temperature": 0.7, "top_k": 50, "top_p": 0.95}])
    code, _, err = run_cli(["--config", job, "-o", tmp_path / "o", "-e", "3", "--search-temperatures", "0.5,0.9",
                            "--search-sample", "2"], capsys)
    assert code == 0, err
    assert {(p.temperature, p.top_k, p.top_p) for p in calls["z"]} == {(0.5, 50, 0.95), (0.9, 50, 0.95)}
    record = read_run_record(tmp_path / "o" / "rephrased.meta.json")
    assert record["per_model"]["z"]["temperature_source"] == "search"


def test_a_resume_with_other_per_model_settings_is_refused(tmp_path, capsys, calls):
    out = tmp_path / "o"
    first = job_file(tmp_path, [{"name": "a", "temperature": 0.6}, {"name": "b", "temperature": 0.8}])
    code, _, err = run_cli(["--config", first, "-o", out, "-e", "2"], capsys)
    assert code == 0, err
    changed = job_file(tmp_path, [{"name": "a", "temperature": 0.6}, {"name": "b", "temperature": 0.9}], "changed.yaml")
    code, _, err = run_cli(["--config", changed, "-o", out, "-e", "2"], capsys)
    assert code == 2 and "models" in err and "0.9" in err and len(err.strip().splitlines()) == 1
    # the same settings resume; --overwrite starts over with the new ones
    code, _, err = run_cli(["--config", first, "-o", out, "-e", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["--config", changed, "-o", out, "-e", "2", "--overwrite"], capsys)
    assert code == 0, err
    assert {r["provenance"]["sampling"]["temperature"] for r in records(out / "rephrased.jsonl")
            if r["model"] == "b"} == {0.9}


def test_print_config_round_trip_keeps_the_entries(tmp_path, capsys):
    job = job_file(tmp_path, [{"name": "a", "top_k": "40", "temperature": 1}, "b"], csv_name="{slug}.csv")
    code, printed, _ = run_cli(["--config", job, "--print-config"], capsys)
    assert code == 0
    again = tmp_path / "again.yaml"
    again.write_text(printed, encoding="utf-8")
    cfg = parse(RephraseConfig, ["--config", str(again)])
    assert cfg.models == [{"name": "a", "temperature": 1.0, "top_k": 40}, "b"]
    assert flat_values(cfg) == flat_values(parse(RephraseConfig, ["--config", str(job)]))
    assert cfg.model_params(0).top_k == 40 and cfg.model_params(1).top_k == 0


BAD_ENTRIES = [
    ([{"name": "a", "temprature": 0.6}], "--model", "unknown key 'temprature'"),
    ([{"temperature": 0.6}], "--model", "needs a `name`"),
    ([{"name": "a", "top_p": 1.5}], "--model", "top_p"),
    ([{"name": "a", "top_k": 2.5}], "--model", "whole number"),
    ([{"name": "a", "temperature": "hot"}], "--model", "must be a number"),
    ([{"name": "a", "temperature": float("nan")}], "--model", "finite"),
    ([{"name": "a", "max_new_tokens": 0}], "--model", "max_new_tokens"),
    ([{"name": "a", "csv_name": "../x.csv"}], "--model", "no folders"),
    ([{"name": "a", "csv_name": "x.csv"}, {"name": "b", "csv_name": "X.csv"}], "--csv-name", "same CSV"),
    ({"name": "a"}, "--model", "in a list"),
]


@pytest.mark.parametrize("models, flag, words", BAD_ENTRIES, ids=[w for _, _, w in BAD_ENTRIES])
def test_a_bad_models_entry_is_one_line_naming_the_flag(models, flag, words, tmp_path, bad_flag, monkeypatch):
    monkeypatch.setattr(BackendSpec, "load", lambda self: pytest.fail("a model was loaded"))
    line = bad_flag(main, ["--config", job_file(tmp_path, models), "-o", tmp_path / "o"], flag)
    assert words in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, words", [
    (["--csv-name", "out.csv", "-m", "a", "-m", "b"], "same CSV"),
    (["--csv-name", "{model}.csv"], "placeholder"),
    (["--csv-name", "sub/{slug}.csv"], "no folders"),
    (["--csv-name", "{slug}.tsv"], ".csv"),
])
def test_a_bad_csv_name_is_refused(argv, words, tmp_path, bad_flag):
    assert words in bad_flag(main, ["--input", SAMPLE, "-o", tmp_path / "o", *argv], "--csv-name")


# -- CSV names -------------------------------------------------------------------------------------------------------
def test_csv_name_template_and_per_model_names(tmp_path, capsys, calls):
    out = tmp_path / "o"
    job = job_file(tmp_path, [{"name": "org/Llama-x", "csv_name": "Llama2generated.csv"}, "org/zephyr"],
                   csv_name="{slug}generated.csv")
    code, stdout, err = run_cli(["--config", job, "-o", out, "-e", "2"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.csv")) == ["Llama2generated.csv", "zephyrgenerated.csv"]
    assert "Llama2generated.csv" in stdout
    # the CSVs are rewritten from the records: another --csv-name on a finished run needs no --overwrite
    code, _, err = run_cli(["--config", job, "-o", out, "-e", "2", "--csv-name", "{slug}.csv", "--no-csv-post-id"],
                           capsys)
    assert code == 0, err
    assert (out / "zephyr.csv").exists() and calls["org/zephyr"] and len(calls["org/zephyr"]) == 1  # no new calls
    with open(out / "Llama2generated.csv", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header[header.index("original_post") + 1] == "generated_text"  # where the seed inserted it


# -- the socsys preset ------------------------------------------------------------------------------------------------
def test_socsys_preset_prints_the_seeds_models_and_sampling(capsys):
    code, printed, _ = run_cli(["--preset", "socsys", "--input", SAMPLE, "--print-config"], capsys)
    assert code == 0
    cfg = yaml.safe_load(printed)
    models = {m["name"]: m for m in cfg["models"]}
    assert list(models) == SEED_MODELS
    pick = ("temperature", "top_p", "top_k", "max_new_tokens", "csv_name")
    assert [tuple(m.get(k) for k in pick) for m in models.values()] == [
        (0.6, 0.9, 0, 256, "Llama2generated.csv"),
        (0.8, 0.9, 50, 256, "Llama3_generated.csv"),
        (0.7, 0.95, 50, 256, "Zephyr_generated.csv"),
    ]
    assert cfg["repetition_penalty"] == 1.0 and cfg["text_col"] == "original_post" and cfg["samples_per_model"] == 1
    code, listing, _ = run_cli(["--list-presets"], capsys)
    assert code == 0 and listing.startswith("socsys") and "Zephyr-7B-beta" in listing


def test_socsys_preset_runs_each_model_with_its_sampling_into_the_seeds_files(tmp_path, capsys, calls):
    out = tmp_path / "o"
    seed_input = tmp_path / "original_dataset.csv"  # the seed's input: one column, no id
    seed_input.write_text("original_post\n" + "".join(f'"Posted in the AskMen subreddit: I am {30 + i}, from Leeds"\n'
                                                      for i in range(3)), encoding="utf-8")
    code, _, err = run_cli(["--preset", "socsys", "--input", seed_input, "-o", out], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.csv")) == ["Llama2generated.csv", "Llama3_generated.csv",
                                                        "Zephyr_generated.csv"]
    sampling = {r["model"]: r["provenance"]["sampling"] for r in records(out / "rephrased.jsonl")}
    assert [(sampling[m]["temperature"], sampling[m]["top_p"], sampling[m]["top_k"]) for m in SEED_MODELS] == [
        (0.6, 0.9, 0), (0.8, 0.9, 50), (0.7, 0.95, 50)]
    assert {s["repetition_penalty"] for s in sampling.values()} == {1.0}
    with open(out / "Llama2generated.csv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["original_post", "generated_text"] and len(rows) == 4  # the seed's columns, no post_id


def test_flags_override_the_preset(tmp_path, capsys):
    cfg = parse(RephraseConfig, ["--preset", "socsys", "--input", str(SAMPLE), "-m", "mine", "--temperature", "0.2"],
                prog="rephrase_posts.py")
    assert cfg.models == ["mine"] and cfg.model_params(0).temperature == 0.2
    assert cfg.csv_names() == ["mine_generated.csv"]


# -- a real (tiny, random) model through the transformers engine ------------------------------------------------------
def test_a_tiny_model_twice_with_two_samplings(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "o"
    job = job_file(tmp_path, [{"name": str(tiny_model_dir), "temperature": 0.6, "top_p": 0.9, "max_new_tokens": 6},
                              {"name": str(tiny_model_dir), "temperature": 0.7, "top_k": 50, "top_p": 0.95,
                               "max_new_tokens": 4}])
    code, _, err = run_cli(["--config", job, "-o", out, "-e", "2", "--embedding-model", "none"], capsys)
    assert code == 0, err
    recs = records(out / "rephrased.jsonl")
    by_slug: dict[str, set] = {}
    for r in recs:
        s = r["provenance"]["sampling"]
        by_slug.setdefault(r["model_slug"], set()).add((s["temperature"], s["top_k"], s["top_p"], s["max_new_tokens"]))
        assert r["generation"]["new_tokens"] <= s["max_new_tokens"]
    assert sorted(by_slug.values(), key=str) == [{(0.6, 0, 0.9, 6)}, {(0.7, 50, 0.95, 4)}]
    assert len(list(out.glob("*_generated.csv"))) == 2
