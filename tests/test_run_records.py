"""Every job writes its run record in one schema: one reader (socialsynth.core.run.read_run_record) reads the
record of each job after a small real run, and the saved job file reproduces the run's config."""

from __future__ import annotations

import json
import shutil

import pytest

from socialsynth.core.config import parse, to_plain
from socialsynth.core.run import RECORD_KEYS, config_path, read_run_record
from tests.helpers import REPO, write_csv
from tests.jobs.bluesky.test_cluster_users_cli import _events


def norms(tmp_path, tiny_model_dir, **_):
    from socialsynth.jobs.norms.cli import main

    run = _strings(main)

    out = tmp_path / "norms"
    run(["-r", "askmen", "-n", "formality", "-d", REPO / "data", "-o", out, "-m", tiny_model_dir, "-e", "2",
          "--embedding-model", "none", "--max-new-tokens", "4", "--levels", "1,5", "--rating-method", "logits"])
    return out / "askmen_formality.meta.json", "norms"


def rephrase(tmp_path, tiny_model_dir, **_):
    from socialsynth.jobs.rephrase.cli import main

    run = _strings(main)

    out = tmp_path / "rephrase"
    run(["--input", REPO / "data" / "posts_sample.csv", "-e", "2", "-o", out, "-m", tiny_model_dir,
          "--max-new-tokens", "4", "--embedding-model", "none"])
    return out / "rephrased.meta.json", "rephrase"


def augment(tmp_path, tiny_model_dir, **_):
    from socialsynth.jobs.augment.cli import main

    run = _strings(main)

    rows = [{"id": f"r{i}", "comment": f"ordinary friendly comment number {i}", "bad": int(i < 4)} for i in range(12)]
    out = tmp_path / "augment"
    run(["--input", write_csv(tmp_path / "real.csv", rows), "--text-col", "comment", "--label-col", "bad",
          "--target-label", "1", "--definition", "rude remarks", "--n", "2", "--max-requests", "1", "-m",
          tiny_model_dir, "--max-new-tokens", "8", "--embedding-model", "none", "-o", out])
    return out / "synthetic_1.meta.json", "augment"


def train(tmp_path, separable, **_):
    from socialsynth.jobs.train.cli import main

    run = _strings(main)

    data = separable.write(tmp_path / "toxic.csv", separable.binary(60, seed=3))
    out = tmp_path / "train"
    run(["--task", "binary", "--input", data, "--model", "tfidf-logreg", "-o", out])
    return out / "train.meta.json", "train"


def cluster_and_instruct(tmp_path, fake_backend_cls, **_):
    from socialsynth.jobs.bluesky.cli import main_cluster, main_instruct

    day = tmp_path / "root" / "01" / "10"
    day.mkdir(parents=True)
    (day / "events").write_text("".join(json.dumps(e) + "\n" for e in _events()), encoding="utf-8")
    out = tmp_path / "bluesky"
    run_with(main_cluster, ["--data-root", tmp_path / "root", "--start-date", "1", "--end-date", "1", "-o", out,
                  "--n-clusters", "2", "--min-cluster-size", "5", "--n-workers", "1"])
    run_with(main_instruct, ["-i", out / "processed_2_clusters", "-o", tmp_path / "instruct", "--llm-fraction", "0.5"],
                  backend=fake_backend_cls(reply=lambda chat, key: f"answer {key}"))
    return [(out / "cluster.meta.json", "cluster"), (tmp_path / "instruct" / "instruct.meta.json", "instruct")]


def respond(tmp_path, **_):
    from socialsynth.jobs.response.cli import main

    run = _strings(main)

    out = tmp_path / "responses"
    run(["build-dataset", "--input", REPO / "data" / "responses_sample", "-o", out])
    return out / "cases.meta.json", "response.build-dataset"


def prepare(tmp_path, **_):
    from socialsynth.jobs.prepare.cli import main

    run = _strings(main)

    run(["--input", REPO / "data" / "askmen_raw.jsonl", "-o", tmp_path / "prepared.jsonl"])
    return tmp_path / "prepared.meta.json", "prepare"


def _strings(main):
    """``main`` called as the shell calls it: every argument a string."""
    return lambda argv, **kw: main([str(a) for a in argv], **kw)


def run_with(main, argv, **kw):
    return _strings(main)(argv, **kw)


JOBS = [norms, rephrase, augment, train, cluster_and_instruct, respond, prepare]


def _config_class(record: dict):
    """The config class of a record's job (to read its saved job file back)."""
    from socialsynth.jobs.augment.config import AugmentConfig
    from socialsynth.jobs.bluesky.config import ClusterConfig, InstructConfig
    from socialsynth.jobs.norms.config import NormsConfig
    from socialsynth.jobs.prepare.config import PrepareConfig
    from socialsynth.jobs.rephrase.config import RephraseConfig
    from socialsynth.jobs.response.config import BuildConfig
    from socialsynth.jobs.train.config import TrainConfig

    return {"norms": NormsConfig, "rephrase": RephraseConfig, "augment": AugmentConfig, "train": TrainConfig,
            "cluster": ClusterConfig, "instruct": InstructConfig, "response.build-dataset": BuildConfig,
            "prepare": PrepareConfig}[record["job"]]


@pytest.mark.slow
@pytest.mark.parametrize("job", JOBS, ids=[j.__name__ for j in JOBS])
def test_every_job_writes_one_record_schema(job, tmp_path, tiny_model_dir, separable, fake_backend_cls,
                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    made = job(tmp_path, tiny_model_dir=tiny_model_dir, separable=separable, fake_backend_cls=fake_backend_cls)
    for path, name in made if isinstance(made, list) else [made]:
        record = read_run_record(path)  # the one reader: every key of the schema is there
        assert record["job"] == name and set(RECORD_KEYS) <= set(record)
        assert isinstance(record["complete"], bool) and record["status"] == "finished"
        assert record["runs"][-1]["status"] == "finished" and isinstance(record["tokens"], dict)
        rerun = parse(_config_class(record), ["--config", str(config_path(path))])
        assert to_plain(rerun) == record["config"]  # the saved job file gives back the run's config
    shutil.rmtree(tmp_path, ignore_errors=True)
