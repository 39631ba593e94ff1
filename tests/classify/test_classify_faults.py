"""Faults in a training run's output folder, as a kill leaves them, and how a rerun of the same command gets past
them: a torn checkpoint (skipped with a warning naming it; the previous one, or a fresh start, takes over), a kill
between the model save and metrics.json (the saved model is evaluated, never refused as "other settings"), stale
checkpoints of another run (never resumed from), and an encoder whose context is shorter than --max-length."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from socialsynth.classify.transformer import checkpoint_problem, last_complete_checkpoint
from socialsynth.core.run import read_run_record
from socialsynth.jobs.train.cli import main

FINAL = ("classifier.json", "metrics.json", "report.txt", "predictions_val.jsonl", "predictions_test.jsonl", "model")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def steps(folder: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (folder / "checkpoints").glob("checkpoint-*"))


def truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def as_killed_during_the_last_save(out: Path) -> None:
    """What a kill while the last checkpoint was written leaves: checkpoints, no model card, no metrics."""
    for name in FINAL:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


@pytest.fixture
def tiny_run(tmp_path, separable, tiny_encoder_dir, run_cli):
    """A finished tiny-BERT run that kept its checkpoints (60 rows: 3 steps an epoch, 3 epochs); returns
    (argv, out). ``run(extra)`` runs the same command again."""
    data = separable.write(tmp_path / "toxic.jsonl", separable.binary(60, seed=4))
    out = tmp_path / "run"
    argv = ["--task", "binary", "--input", data, "--model", tiny_encoder_dir, "--epochs", "3", "--lr", "1e-3",
            "--early-stopping", "0", "--max-length", "16", "--keep-checkpoints", "-o", out]
    code, _, err = run_cli(main, argv)
    assert code == 0, err
    assert steps(out)[-1] == 9 and len(steps(out)) >= 2, steps(out)
    return argv, out


# ------------------------------------------------------------------------------------------- torn checkpoints


TEARS = {
    "optimizer-truncated": lambda c: truncate(c / "optimizer.pt"),
    "scheduler-missing": lambda c: (c / "scheduler.pt").unlink(),
    "trainer-state-missing": lambda c: (c / "trainer_state.json").unlink(),
    "trainer-state-truncated": lambda c: truncate(c / "trainer_state.json", 20),
    "weights-truncated": lambda c: truncate(c / "model.safetensors", 5000),
    "weights-missing": lambda c: (c / "model.safetensors").unlink(),
    "rng-state-truncated": lambda c: truncate(c / "rng_state.pth"),
}


@pytest.mark.parametrize("tear", TEARS)
def test_checkpoint_problem_names_the_torn_file(tiny_run, tear):
    _, out = tiny_run
    last = out / "checkpoints" / f"checkpoint-{steps(out)[-1]}"
    assert checkpoint_problem(last) is None
    TEARS[tear](last)
    problem = checkpoint_problem(last)
    assert problem is not None
    assert problem.split()[0] in {p.name for p in last.iterdir()} | {"model", "scheduler.pt", "trainer_state.json"}


def test_torn_last_checkpoint_falls_back_to_the_previous_one(tiny_run, run_cli, caplog):
    argv, out = tiny_run
    before = steps(out)
    as_killed_during_the_last_save(out)
    torn = out / "checkpoints" / "checkpoint-9"
    truncate(torn / "optimizer.pt")  # a kill in the middle of torch.save
    caplog.set_level(logging.WARNING)
    code, printed, err = run_cli(main, argv)
    assert code == 0 and "Traceback" not in err, err
    assert f"checkpoint {torn} is torn (optimizer.pt truncated" in caplog.text
    metrics = read_json(out / "metrics.json")
    previous = before[-2]
    assert metrics["history"]["resumed_from"].endswith(f"checkpoint-{previous}")
    assert metrics["history"]["torn_checkpoints_skipped"] == ["checkpoint-9"]
    assert metrics["history"]["steps"] == 9  # finished the run, from the step the previous checkpoint holds
    assert "torn checkpoints skipped: checkpoint-9" in printed
    assert checkpoint_problem(torn) is None  # written again, whole, by the resumed run
    record = read_run_record(out / "train.meta.json")
    assert record["complete"] is True and record["torn_checkpoints_skipped"] == ["checkpoint-9"]


def test_every_checkpoint_torn_starts_over(tiny_run, run_cli, caplog):
    argv, out = tiny_run
    as_killed_during_the_last_save(out)
    for step in steps(out):
        (out / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").unlink()
    caplog.set_level(logging.WARNING)
    code, _, err = run_cli(main, argv)
    assert code == 0 and "Traceback" not in err, err
    assert "no complete checkpoint left" in caplog.text
    history = read_json(out / "metrics.json")["history"]
    assert history["resumed_from"] is None and history["steps"] == 9
    assert len(history["torn_checkpoints_skipped"]) >= 2


def test_last_complete_checkpoint_of_an_empty_or_missing_folder(tmp_path):
    assert last_complete_checkpoint(tmp_path / "none") == (None, [])
    (tmp_path / "checkpoint-5").mkdir()  # made, then killed before anything was written into it
    (tmp_path / "runs").mkdir()  # not a checkpoint
    assert last_complete_checkpoint(tmp_path) == (None, ["checkpoint-5"])
    assert not (tmp_path / "checkpoint-5").exists() and (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ killed before metrics.json


@pytest.mark.parametrize("damage", ["missing", "a-list", "truncated"])
def test_kill_between_the_model_save_and_metrics_evaluates_the_saved_model(tmp_path, separable, run_cli, damage):
    data = separable.write(tmp_path / "toxic.csv", separable.binary(80, seed=5))
    out = tmp_path / "model"
    argv = ["--task", "binary", "--input", data, "--model", "tfidf-logreg", "-o", out]
    assert run_cli(main, argv)[0] == 0
    card = (out / "classifier.json").read_text()
    metrics = read_json(out / "metrics.json")
    (out / "report.txt").unlink()
    if damage == "missing":
        (out / "metrics.json").unlink()
    elif damage == "a-list":
        (out / "metrics.json").write_text("[]")
    else:
        truncate(out / "metrics.json", 30)
    code, printed, err = run_cli(main, argv)
    assert code == 0, err
    assert "other settings" not in err
    assert "metrics.json was missing or damaged" in printed
    assert (out / "classifier.json").read_text() == card  # the saved model was used, not retrained
    again = read_json(out / "metrics.json")
    assert again["headline"] == metrics["headline"] and again["data"] == metrics["data"]
    assert (out / "report.txt").is_file()
    assert read_run_record(out / "train.meta.json")["complete"] is True
    # and the next rerun simply reuses it
    code, printed, _ = run_cli(main, argv)
    assert code == 0 and "metrics.json was missing" not in printed


def test_kill_before_the_model_card_retrains(tiny_run, run_cli):
    """metrics.json and report.txt now come before the card: a kill between them leaves a run that resumes."""
    argv, out = tiny_run
    trained = read_json(out / "classifier.json")["trained"]
    (out / "classifier.json").unlink()
    code, _, err = run_cli(main, argv)
    assert code == 0, err
    assert read_json(out / "classifier.json")["headline"] == read_json(out / "metrics.json")["headline"]
    assert read_json(out / "metrics.json")["history"]["resumed_from"].endswith("checkpoint-9")
    assert read_json(out / "classifier.json")["trained"] >= trained


def test_a_transformer_killed_before_metrics_is_evaluated_not_retrained(tiny_run, run_cli):
    argv, out = tiny_run
    card = (out / "classifier.json").read_text()
    predictions = (out / "predictions_test.jsonl").read_text()
    (out / "metrics.json").unlink()
    (out / "predictions_test.jsonl").unlink()
    code, printed, err = run_cli(main, argv)
    assert code == 0, err
    assert "metrics.json was missing" in printed
    assert (out / "classifier.json").read_text() == card
    assert (out / "predictions_test.jsonl").read_text() == predictions


# ------------------------------------------------------------------------- checkpoints of another run


def test_overwrite_never_resumes_from_another_runs_checkpoints(tiny_run, run_cli, caplog):
    argv, out = tiny_run
    caplog.set_level(logging.WARNING)
    code, _, err = run_cli(main, [*argv, "--lr", "5e-4", "--overwrite"])
    assert code == 0, err
    assert "checkpoints of a run with other settings" in caplog.text
    metrics = read_json(out / "metrics.json")
    assert metrics["history"]["resumed_from"] is None and metrics["history"]["steps"] == 9
    assert read_json(out / "checkpoints" / "run_config.json")["settings"]["lr"] == 5e-4


def test_restart_removes_the_old_checkpoints(tiny_run, run_cli):
    argv, out = tiny_run
    as_killed_during_the_last_save(out)
    # a checkpoint numbered past this run's last step would outrank (and outlive) the new run's own
    shutil.copytree(out / "checkpoints" / "checkpoint-9", out / "checkpoints" / "checkpoint-99")
    code, _, err = run_cli(main, [*argv, "--restart"])
    assert code == 0, err
    assert 99 not in steps(out) and steps(out)[-1] == 9
    assert read_json(out / "metrics.json")["history"]["resumed_from"] is None


# ------------------------------------------------------------------------------------- encoder context


def test_max_length_beyond_the_encoder_context_is_cut_to_it(tmp_path, separable, tiny_encoder_dir, run_cli):
    """The tiny BERT has 128 positions; the default --max-length is 256: long texts must not index past them."""
    rows = separable.binary(40, seed=6)
    for row in rows[:10]:
        row["text"] = " ".join([row["text"]] * 60)  # ~400 tokens
    data = separable.write(tmp_path / "long.jsonl", rows)
    out = tmp_path / "run"
    code, printed, err = run_cli(main, ["--task", "binary", "--input", data, "--model", tiny_encoder_dir,
                                        "--epochs", "1", "-o", out])
    assert code == 0, err
    assert read_json(out / "classifier.json")["max_length"] == 128
    history = read_json(out / "metrics.json")["history"]
    assert history["truncated_texts"] >= 8
    assert f"texts cut at --max-length: {history['truncated_texts']}" in printed
