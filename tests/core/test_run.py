"""socialsynth.core.run.JobRun: the run record every job writes, written at the start, kept across resumes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from socialsynth.core.config import flag
from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.run import JobRun, config_path, read_run_record, record_path
from socialsynth.llm.base import GenerationStats


@dataclass
class Job:
    n: int = flag(3, "items")


class CountingBackend:
    def __init__(self):
        self.stats = GenerationStats()

    def describe(self):
        return {"model": "tiny-model"}

    def generate(self, n_in, n_out):
        self.stats.prompt_tokens += n_in
        self.stats.new_tokens += n_out


def test_record_names():
    assert record_path("out/askmen_formality.jsonl") == Path("out/askmen_formality.meta.json")
    assert record_path("out/x.shard-0-of-2.jsonl") == Path("out/x.shard-0-of-2.meta.json")
    assert config_path("out/x.meta.json") == Path("out/x.config.yaml")


def test_written_at_the_start_incomplete(tmp_path):
    path = tmp_path / "job.meta.json"
    with JobRun("toy", path, Job(), command="toy --n 3") as run:
        first = read_run_record(path)
        assert first["complete"] is False and first["status"] == "running" and first["command"] == "toy --n 3"
        assert first["config"] == {"n": 3} and config_path(path).read_text() == "n: 3\n"
        run.mark_complete(True)
    done = read_run_record(path)
    assert done["complete"] is True and done["status"] == "finished" and len(done["runs"]) == 1


def test_tokens_per_model_and_stage_summed_over_resumes(tmp_path):
    path = tmp_path / "job.meta.json"
    backend = CountingBackend()
    with pytest.raises(Interrupted), JobRun("toy", path, Job()) as run:
        with run.track(backend, "rewrite"):
            backend.generate(100, 20)
        run.count_tokens("judge", "rate", 50, 1)
        raise Interrupted("stopped", exit_code=143)
    record = read_run_record(path)
    assert record["status"] == "interrupted" and record["complete"] is False
    assert record["tokens"]["tiny-model"]["rewrite"]["in"] == 100
    with JobRun("toy", path, Job()) as run:
        with run.track(backend, "rewrite"):
            backend.generate(30, 5)
        run.mark_complete(True)
    record = read_run_record(path)
    assert record["tokens"]["tiny-model"]["rewrite"]["in"] == 130
    assert record["tokens"]["tiny-model"]["rewrite"]["out"] == 25
    assert record["tokens"]["judge"]["rate"] == {"in": 50, "out": 1, "seconds": 0.0}
    assert [r["status"] for r in record["runs"]] == ["interrupted", "finished"]
    assert record["runs"][1]["tokens"]["tiny-model"]["rewrite"]["in"] == 30  # this run's own count


def test_failure_is_recorded_and_one_shot_jobs_leave_nothing(tmp_path):
    path = tmp_path / "job.meta.json"
    with pytest.raises(ValueError), JobRun("toy", path, Job()):
        raise ValueError("bug")
    assert read_run_record(path)["status"] == "failed"
    one_shot = tmp_path / "prepare.meta.json"
    with pytest.raises(InputError), JobRun("prepare", one_shot, Job(), resumable=False):
        raise InputError("bad row")
    assert not one_shot.exists() and not config_path(one_shot).exists()


def test_reader_refuses_what_is_not_a_record(tmp_path):
    path = tmp_path / "x.meta.json"
    path.write_text(json.dumps({"complete": True}))
    with pytest.raises(InputError, match="missing job"):
        read_run_record(path)
    path.write_text("{half")
    with pytest.raises(InputError, match="not valid JSON"):
        read_run_record(path)
