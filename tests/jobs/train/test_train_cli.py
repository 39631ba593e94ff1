"""train_classifier.py as a user runs it (a subprocess): bad input gives exit 2 and one line naming the file,
row and column, never a traceback; skippable rows are counted; a finished run is reused, a changed one refused
without --overwrite; a transformer run stopped with SIGTERM exits 143, says how to resume, and resumes."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from socialsynth.core.run import read_run_record

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def assert_clean_error(proc: subprocess.CompletedProcess, *expected: str) -> None:
    """Exit 2 and one 'error: ...' line that contains every expected piece; no traceback."""
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for piece in expected:
        assert piece in errors[0], f"{piece!r} not in {errors[0]!r}"


@pytest.fixture
def binary_csv(tmp_path, separable) -> Path:
    return separable.write(tmp_path / "toxic.csv", separable.binary(80, seed=5))


# ------------------------------------------------------------------------------------------- bad input


def test_missing_label_column(train_cli, tmp_path, separable):
    rows = [{"text": r["text"], "toxic": int(r["label"] == "toxic")} for r in separable.binary(40, seed=1)]
    path = separable.write(tmp_path / "comments.csv", rows)
    proc = train_cli("--task", "binary", "--input", path, "--model", "tfidf-logreg", "-o", tmp_path / "out")
    assert_clean_error(proc, str(path), "'label'", "column missing", "toxic")
    # the same file with the right column trains
    train_cli(
        "--task",
        "binary",
        "--input",
        path,
        "--label-col",
        "toxic",
        "--model",
        "tfidf-logreg",
        "-o",
        tmp_path / "out",
        check_rc=0,
    )
    assert read_json(tmp_path / "out" / "classifier.json")["labels"]["names"] == ["0", "1"]


def test_missing_label_field_in_jsonl(train_cli, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b"}\n{"text": "c", "label": 0}\n')
    proc = train_cli("--task", "binary", "--input", path, "--model", "tfidf-logreg", "-o", tmp_path / "out")
    assert_clean_error(proc, f"{path}:2", "'label'")


def test_missing_text_column(train_cli, binary_csv, tmp_path):
    proc = train_cli(
        "--task",
        "binary",
        "--input",
        binary_csv,
        "--text-col",
        "body",
        "--model",
        "tfidf-logreg",
        "-o",
        tmp_path / "out",
    )
    assert_clean_error(proc, str(binary_csv), "'body'")


def test_empty_and_nan_texts_are_counted_not_fatal(train_cli, tmp_path, separable):
    rows = separable.binary(60, seed=2)
    lines = [json.dumps(r) for r in rows]
    lines += [
        '{"id": "x1", "text": NaN, "label": "toxic"}',
        '{"id": "x2", "text": null, "label": "clean"}',
        '{"id": "x3", "text": "", "label": "clean"}',
        '{"id": "x4", "text": "   ", "label": "toxic"}',
        '{"id": "x5", "text": "no label here", "label": null}',
        '{"id": "x6", "text": "blank label", "label": ""}',
    ]
    path = tmp_path / "messy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = train_cli("--task", "binary", "--input", path, "--model", "tfidf-logreg", "-o", out, check_rc=0)
    assert "Traceback" not in proc.stderr
    data = read_json(out / "metrics.json")["data"]
    assert sum(data["skipped"].values()) == 6, data["skipped"]
    assert data["skipped"]["missing label"] == 2
    assert data["train_rows"] + data["val_rows"] + data["test_rows"] == 60
    assert "skipped" in proc.stderr  # the log says so too


def test_single_class_binary(train_cli, tmp_path, separable):
    rows = [r for r in separable.binary(80, seed=3) if r["label"] == "clean"]
    path = separable.write(tmp_path / "clean_only.csv", rows)
    proc = train_cli("--task", "binary", "--input", path, "--model", "tfidf-logreg", "-o", tmp_path / "out")
    assert_clean_error(proc, "single class", "'clean'", "'label'")
    assert not (tmp_path / "out" / "classifier.json").exists()


def test_three_classes_for_a_binary_task(train_cli, tmp_path, separable):
    path = separable.write(tmp_path / "topics.csv", separable.multiclass(60, seed=1))
    proc = train_cli("--task", "binary", "--input", path, "--model", "tfidf-logreg", "-o", tmp_path / "out")
    assert_clean_error(proc, "--task multiclass")


def test_positive_label_not_among_the_classes(train_cli, binary_csv, tmp_path):
    proc = train_cli(
        "--task",
        "binary",
        "--input",
        binary_csv,
        "--positive-label",
        "spam",
        "--model",
        "tfidf-logreg",
        "-o",
        tmp_path / "out",
    )
    assert_clean_error(proc, "'spam'", "clean", "toxic")


def test_regression_label_that_is_not_a_number(train_cli, tmp_path, separable):
    rows = separable.regression(60, seed=4)
    rows[7]["label"] = "lots"
    path = separable.write(tmp_path / "scores.csv", rows)
    out = tmp_path / "out"
    proc = train_cli("--task", "regression", "--input", path, "--model", "tfidf-logreg", "-o", out)
    assert_clean_error(proc, f"{path}:8", "'label'", "lots")

    proc = train_cli(
        "--task", "regression", "--input", path, "--skip-bad-rows", "--model", "tfidf-logreg", "-o", out, check_rc=0
    )
    assert "Traceback" not in proc.stderr
    data = read_json(out / "metrics.json")["data"]
    assert data["skipped"] == {"unreadable label": 1}
    assert data["train_rows"] + data["val_rows"] + data["test_rows"] == 59


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--input", "{csv}"], ["--task is required"]),
        (["--task", "binary", "--preset", "upvote", "--input", "{csv}"], ["regression task"]),
        (["--task", "binary"], ["--input FILE"]),
        (["--task", "binary", "--input", "{tmp}/nope.csv"], ["nope.csv", "file not found"]),
        (["--predict", "{csv}"], ["--model-dir"]),
        (["--predict", "{csv}", "--model-dir", "{tmp}"], ["classifier.json missing"]),
        (["--task", "binary", "--compare", "--input", "{csv}"], ["--synthetic"]),
        (["--task", "binary", "--input", "{tmp}/rows.pkl"], ["--allow-pickle"]),
        (
            [
                "--task",
                "binary",
                "--input",
                "{csv}",
                "--class-weight",
                "none",
                "--model",
                "tfidf-logreg",
                "--train",
                "{tmp}/missing.csv:0.5",
            ],
            ["missing.csv", "file not found"],
        ),
        (["--task", "binary", "--train", "{csv}:-1"], ["weight must be >= 0"]),
    ],
    ids=[
        "no-task",
        "upvote-not-regression",
        "no-data",
        "missing-file",
        "predict-no-model-dir",
        "not-a-model",
        "compare-no-synthetic",
        "pickle",
        "missing-train-file",
        "negative-weight",
    ],
)
def test_usage_errors(train_cli, binary_csv, tmp_path, args, expected):
    with open(tmp_path / "rows.pkl", "wb") as handle:
        pickle.dump([{"text": "a", "label": 1}], handle)
    args = [a.format(csv=binary_csv, tmp=tmp_path) for a in args]
    proc = train_cli(*args, "-o", tmp_path / "out")
    assert_clean_error(proc, *expected)


def test_output_dir_with_another_model_needs_overwrite(train_cli, binary_csv, tmp_path):
    out = tmp_path / "model"
    base = ["--task", "binary", "--input", binary_csv, "--model", "tfidf-logreg", "-o", out]
    train_cli(*base, check_rc=0)
    card = read_json(out / "classifier.json")
    metrics = (out / "metrics.json").read_text()

    # the same command again: reused, not retrained
    proc = train_cli(*base, check_rc=0)
    assert "reusing it" in proc.stderr
    assert read_json(out / "classifier.json")["trained"] == card["trained"]
    assert (out / "metrics.json").read_text() == metrics

    # other settings: refused, the old model kept
    proc = train_cli(*base, "--C", "0.5")
    assert_clean_error(proc, str(out), "--overwrite")
    assert read_json(out / "classifier.json") == card

    proc = train_cli(*base, "--C", "0.5", "--overwrite", check_rc=0)
    assert read_json(out / "classifier.json")["config"]["settings"]["logreg_c"] == 0.5


def test_predict_prints_metrics_for_a_labelled_file(train_cli, binary_csv, tmp_path, separable):
    out = tmp_path / "model"
    train_cli("--task", "binary", "--input", binary_csv, "--model", "tfidf-logreg", "-o", out, check_rc=0)
    new = separable.binary(30, seed=11, prefix="n")
    new[0]["label"] = "spam"  # a class the model never saw
    path = separable.write(tmp_path / "new.csv", new)
    proc = train_cli("--predict", path, "--model-dir", out, "-o", tmp_path / "pred.jsonl", check_rc=0)
    summary, rest = json.JSONDecoder().raw_decode(proc.stdout)
    assert summary["excluded"] == {"label not seen in training: spam": 1}
    assert "items: 29" in proc.stdout[rest:] and "AUROC" in proc.stdout[rest:]
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 30
    proc = train_cli("--predict", path, "--model-dir", out, "-o", tmp_path / "pred.jsonl", check_rc=0)
    assert json.JSONDecoder().raw_decode(proc.stdout)[0]["written_this_run"] == 0
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 30


# --------------------------------------------------------------------------------------- SIGTERM, resume


def test_sigterm_stops_with_a_checkpoint_and_the_rerun_resumes(tmp_path, separable, tiny_encoder_dir, train_cli):
    data = separable.write(tmp_path / "toxic.jsonl", separable.binary(100, seed=8))
    out = tmp_path / "run"
    # 80 training rows, batch 16: 5 steps per epoch, a checkpoint after each epoch, 200 steps in all
    args = [
        "--task",
        "binary",
        "--input",
        data,
        "--model",
        tiny_encoder_dir,
        "--lr",
        "1e-3",
        "--epochs",
        "40",
        "--early-stopping",
        "0",
        "--max-length",
        "32",
        "-o",
        out,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(
        [sys.executable, "train_classifier.py", *map(str, args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not list((out / "checkpoints").glob("checkpoint-*")):
            assert proc.poll() is None, "training ended before the first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 90 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.seek(0)
    stderr = log.read()
    log.close()
    assert rc == 143, stderr
    assert "Traceback" not in stderr
    assert "SIGTERM received" in stderr
    assert "rerun the same command to resume" in stderr
    assert not (out / "classifier.json").exists()
    record = read_run_record(out / "train.meta.json")
    assert record["status"] == "interrupted" and record["complete"] is False and len(record["runs"]) == 1
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    stopped_at = int(checkpoints[-1].name.split("-")[1])
    assert 0 < stopped_at < 200

    # the interrupted folder is not a model yet, and says how to finish it
    proc = train_cli("--predict", data, "--model-dir", out)
    assert_clean_error(proc, "rerun it to resume")

    proc = train_cli(*args, check_rc=0)
    assert "resuming from" in proc.stderr and f"checkpoint-{stopped_at}" in proc.stderr
    assert (out / "classifier.json").is_file()
    metrics = read_json(out / "metrics.json")
    assert metrics["history"]["resumed_from"].endswith(f"checkpoint-{stopped_at}")
    assert metrics["history"]["steps"] == 200
    assert not (out / "checkpoints").exists()
    assert metrics["headline"]["auroc"] > 0.8
    record = read_run_record(out / "train.meta.json")  # the resumed run is the record's second run
    assert record["status"] == "finished" and record["complete"] is True
    assert [r["status"] for r in record["runs"]] == ["interrupted", "finished"]
    assert record["seconds"] >= sum(r["seconds"] for r in record["runs"]) - 0.1
