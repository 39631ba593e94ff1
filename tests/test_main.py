"""The `socialsynth` command: every job is reachable by name, and the research scripts' names run the same jobs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from socialsynth.__main__ import ALIASES, JOBS, job_main, main
from tests.helpers import REPO


def test_help_lists_every_job(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in JOBS:
        assert f"  {name} " in out


def test_unknown_job_is_one_line_exit_2(capsys):
    assert main(["generate-everything"]) == 2
    err = capsys.readouterr().err
    assert "unknown job 'generate-everything'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", [*JOBS, *ALIASES])
def test_every_job_resolves_to_a_main(name):
    assert callable(job_main(name))


@pytest.mark.parametrize("job,script", [("norms", "generate_synthetic_data.py"), ("train", "train_classifier.py")])
def test_job_and_research_script_print_the_same_config(job, script):
    """`socialsynth JOB ...` and `python SCRIPT ...` resolve the same flags to the same config."""
    flags = {"norms": ["-r", "askmen", "-n", "politeness", "-b", "4"],
             "train": ["--task", "binary", "--input", "data/comments_labelled.csv", "--label-col", "toxic"]}[job]
    run = [sys.executable, "-m", "socialsynth", job, *flags, "--print-config"]
    direct = [sys.executable, script, *flags, "--print-config"]
    a, b = (subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120) for cmd in (run, direct))
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    assert a.stdout == b.stdout and a.stdout.strip()
