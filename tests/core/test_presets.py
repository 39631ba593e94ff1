"""--preset NAME and --list-presets on every script: a shipped job file under --config and the flags."""

from __future__ import annotations

import pytest
import yaml

from socialsynth import presets
from socialsynth.core.config import parse
from socialsynth.jobs.train.cli import main as train_main
from socialsynth.jobs.train.config import TrainConfig
from tests.helpers import REPO

DATA = str(REPO / "data" / "askmen.jsonl")


def test_section_names_follow_the_script():
    assert presets.section_of("generate_synthetic_data.py") == "generate_synthetic_data"
    assert presets.section_of("predict_responses.py train") == "predict_responses.train"
    assert presets.section_of("socialsynth prepare") == "prepare"


def test_list_presets_names_each_with_its_description(capsys):
    with pytest.raises(SystemExit) as stop:
        parse(TrainConfig, ["--list-presets"], prog="train_classifier.py")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "ValueScope (seed 000)" in lines["valuescope"] and "same as valuescope" in lines["upvote"]


def test_a_preset_sits_under_the_job_file_and_the_flags(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text("task: regression\nval_fraction: 0.2\n")
    base = ["--input", DATA, "--preset", "upvote"]
    cfg = parse(TrainConfig, base, prog="train_classifier.py")
    assert (cfg.recipe, cfg.task) == ("upvote", "regression")
    cfg = parse(TrainConfig, [*base, "--config", str(job), "--val-fraction", "0.3"], prog="train_classifier.py")
    assert cfg.val_fraction == 0.3 and cfg.recipe == "upvote"
    cfg = parse(TrainConfig, [*base, "--config", str(job)], prog="train_classifier.py")
    assert cfg.val_fraction == 0.2


def test_print_config_of_a_preset_reads_back(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse(TrainConfig, ["--input", DATA, "--preset", "valuescope", "--print-config"],
              prog="train_classifier.py")
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["recipe"] == "upvote" and printed["task"] == "regression"


def test_an_unknown_preset_is_one_line_naming_the_flag(run_cli):
    code, _, err = run_cli(train_main, ["--input", DATA, "--preset", "nope"])
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--preset" in err and "unknown preset 'nope'" in err and "valuescope" in err


def test_every_shipped_preset_file_is_a_mapping_with_a_description():
    files = sorted(presets.PRESETS_DIR.glob("*/*.yaml"))
    assert files
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
        assert presets.describe(path), f"{path} has no leading comment"
