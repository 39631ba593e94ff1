"""train_classifier.py's declared config (socialsynth.jobs.train.config.TrainConfig): every bad value is one line
naming the flag (exit 2) before any data is read or model loaded; --print-config / --config round-trip to the same
config and the same outputs; the run record <output_dir>/train.meta.json reads as a run record, keeps the finished
run's record when other settings are refused, and sums its runs."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from socialsynth.core.cli import run_main
from socialsynth.core.config import flat_values
from socialsynth.core.run import read_run_record
from socialsynth.jobs.train.cli import main, parse_config
from tests.helpers import flag_cases


def run_cli(argv) -> tuple[int, str, str]:
    """main(argv) through run_main as the script runs it: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = run_main(lambda: main([str(a) for a in argv]))
        except SystemExit as e:  # argparse and --print-config exit directly
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def csv(tmp_path, separable) -> Path:
    return separable.write(tmp_path / "toxic.csv", separable.binary(80, seed=5))


BAD = flag_cases(
    """
    --lr -1
    --lr 0
    --val-fraction 1.5
    --test-fraction -0.1
    --val-fraction 0.5 --test-fraction 0.5  -> --test-fraction
    --epochs 0
    --batch-size 0
    -b many  -> --batch-size
    --grad-accum 0
    --max-length 0
    --early-stopping -1
    --eval-steps 0
    --warmup -0.5
    --weight-decay -1
    --seed -3
    --tfidf-features 0
    --C 0
    --metric bogus
    --metric r2  # a regression metric for a binary task
    --precision fp8
    --class-weight heavy
    --task ranking
    --preset upvote  -> --task  # binary with the regression preset
    --preset likes
    --label-col ,
    --val '{tmp}/missing.csv'
    --test '{tmp}/missing.csv'
    --train '{csv}:-1'
    --compare  -> --synthetic
    --compare --synthetic '{tmp}/nope.csv'  -> --synthetic
    --lr nan
    --epochs inf
    --warmup nan
    --weight-decay inf
    --C inf
    --seed 99999999999  # numpy and scikit-learn refuse seeds of 2**32 and more, after the data is read
    --text-col ''
    --label-sep ''
    --id-col ' '
    --positive-label ''
    --label-col text  # the text column
    --device gpu
    --device cuda:99
    --model ./no-such-model
    --model /no/such/encoder
    --model t5-encoder:./no/such/t5
    --val-size 0
    --test-size -5
    --split-method seed  # ValueScope's upvote split, without the upvote recipe
    --split-method random
    --select-model first
    --binary-columns 3
    --nn-lr 0
    --nn-lr nan
    --time-format local
    -o '{csv}'  -> --output-dir  # a file where the output folder should be
    -o '{csv}/sub'  -> --output-dir
    """
)


@pytest.mark.parametrize("extra, flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_exit_2_naming_the_flag(extra, flag, csv, tmp_path, bad_flag):
    out = tmp_path / "out"
    argv = ["--task", "binary", "--input", csv, "--model", "tfidf-logreg", "-o", out]
    bad_flag(main, argv + [a.format(tmp=tmp_path, csv=csv) for a in extra], flag)
    assert not out.exists()  # nothing read, nothing trained


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--input", "{csv}"], "--task"),
        (["--task", "binary"], "--input"),
        (["--task", "binary", "--input", "{tmp}/nope.csv"], "--input"),
        (["--predict", "{csv}"], "--model-dir"),
        (["--predict", "{tmp}/nope.csv", "--model-dir", "{tmp}"], "--predict"),
        (["--predict", "{csv}", "--model-dir", "{tmp}/none"], "--model-dir"),
    ],
)
def test_missing_or_wrong_mode_flags(argv, flag, csv, tmp_path):
    rc, _, stderr = run_cli([a.format(tmp=tmp_path, csv=csv) for a in argv])
    assert rc == 2 and "Traceback" not in stderr
    assert flag in stderr.strip().splitlines()[-1]




@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("mode", ["train", "predict"])
def test_device_cuda_without_a_gpu_is_refused_before_anything_loads(device, mode, csv, tmp_path, monkeypatch,
                                                                   bad_flag):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    out = tmp_path / "out"
    if mode == "train":
        argv = ["--task", "binary", "--input", csv, "-o", out]
    else:
        argv = ["--predict", csv, "--model-dir", tmp_path, "-o", out / "p.jsonl"]
    line = bad_flag(main, [*argv, "--device", device], "--device")
    assert "cuda" in line.lower() and "machine" in line
    assert not out.exists()


def test_output_place_that_cannot_be_written(csv, tmp_path, bad_flag):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = bad_flag(main, ["--task", "binary", "--input", csv, "-o", locked / "out"], "--output-dir")
        assert "cannot write" in line
    finally:
        locked.chmod(0o700)


def test_old_spellings_still_parse(csv, tmp_path):
    cfg = parse_config(["--task", "binary", "--input", str(csv), "--precision", "bf16", "--model_name", "tfidf-mlp",
                        "--batch_size", "8", "--learning-rate", "1e-4", "--text_col", "body", "--label_col", "a,b",
                        "--output_dir", str(tmp_path), "--train", str(csv), f"{csv}:0.5", "--C", "2"])
    assert cfg.model.dtype == "bf16" and cfg.model.model == "tfidf-mlp"
    assert cfg.training.batch_size == 8 and cfg.training.lr == 1e-4 and cfg.training.logreg_c == 2.0
    assert cfg.text_col == "body" and cfg.label_cols == ["a", "b"]
    assert cfg.train == [str(csv), f"{csv}:0.5"]
    settings = cfg.settings()
    assert settings.precision == "bf16" and settings.max_length == 256 and settings.lr == 1e-4
    default = parse_config(["--task", "regression", "--preset", "upvote", "--input", str(csv)])
    assert default.settings().max_length == 512
    assert default.out_dir.name == "classifier_regression"
    # the old preset name is ValueScope's: the seed's upvote model, which -m and --precision override
    assert default.model.model == "microsoft/DialogRPT-updown" and default.model.dtype == "fp32"
    own = parse_config(["--preset", "upvote", "--input", str(csv), "-m", "embedded", "--precision", "auto"])
    assert own.model.model == "embedded" and own.model.dtype == "auto" and own.recipe == "upvote"


def test_print_config_round_trip_gives_the_same_config_and_outputs(csv, tmp_path, separable):
    test = separable.write(tmp_path / "test.csv", separable.binary(30, seed=6, prefix="t"))
    flags = ["--task", "binary", "--model", "tfidf-logreg", "--C", "0.5", "--seed", "7", "--val-fraction", "0.2",
             "--train", csv, f"{csv}:0.5", "--test", test]
    rc, printed, stderr = run_cli([*flags, "--print-config"])
    assert rc == 0, stderr
    job_file = tmp_path / "job.yaml"
    job_file.write_text(printed)
    from_flags = parse_config([str(a) for a in flags])
    from_file = parse_config(["--config", str(job_file)])
    assert flat_values(from_file) == flat_values(from_flags)

    rc, _, stderr = run_cli([*flags, "-o", tmp_path / "a"])
    assert rc == 0, stderr
    rc, _, stderr = run_cli(["--config", job_file, "-o", tmp_path / "b"])
    assert rc == 0, stderr
    for name in ("predictions_val.jsonl", "predictions_test.jsonl"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab"]
    assert metrics[0]["headline"] == metrics[1]["headline"] and metrics[0]["data"] == metrics[1]["data"]
    # the config saved beside the record reruns the same job
    saved = tmp_path / "a" / "train.config.yaml"
    assert flat_values(parse_config(["--config", str(saved)])) == flat_values(
        parse_config([str(a) for a in [*flags, "-o", tmp_path / "a"]])
    )


def test_run_record_of_a_training_run(csv, tmp_path):
    out = tmp_path / "model"
    base = ["--task", "binary", "--input", csv, "--model", "tfidf-logreg", "-o", out]
    assert run_cli(base)[0] == 0
    record = read_run_record(out / "train.meta.json")
    assert record["job"] == "train" and record["mode"] == "train"
    assert record["complete"] is True and record["status"] == "finished" and record["reused"] is False
    assert record["config"]["task"] == "binary" and record["config"]["training"]["logreg_c"] == 1.0
    assert record["tokens"] == {}  # no LLM in this job
    assert record["headline"] == json.loads((out / "metrics.json").read_text())["headline"]
    assert sum(record["rows"].values()) == 80
    assert (out / "train.config.yaml").is_file()
    for name in ("classifier.json", "metrics.json", "report.txt", "predictions_val.jsonl", "predictions_test.jsonl"):
        assert (out / name).is_file(), name

    # the same command reuses the model and adds a run to the record
    assert run_cli(base)[0] == 0
    record = read_run_record(out / "train.meta.json")
    assert len(record["runs"]) == 2 and record["reused"] is True and record["complete"] is True

    # other settings are refused before anything is written: the finished run's record stays as it was
    before = (out / "train.meta.json").read_text()
    rc, _, stderr = run_cli([*base, "--C", "0.5"])
    assert rc == 2 and "--overwrite" in stderr
    assert (out / "train.meta.json").read_text() == before

    assert run_cli([*base, "--C", "0.5", "--overwrite"])[0] == 0
    record = read_run_record(out / "train.meta.json")
    assert len(record["runs"]) == 3 and record["config"]["training"]["logreg_c"] == 0.5


def test_run_record_of_predict_and_compare(csv, tmp_path, separable):
    model = tmp_path / "model"
    assert run_cli(["--task", "binary", "--input", csv, "--model", "tfidf-logreg", "-o", model])[0] == 0
    new = separable.write(tmp_path / "new.csv", separable.binary(20, seed=9, prefix="n"))
    rc, _, stderr = run_cli(["--predict", new, "--model-dir", model])
    assert rc == 0, stderr
    record = read_run_record(tmp_path / "new.predictions.meta.json")
    assert record["mode"] == "predict" and record["complete"] is True
    assert record["summary"]["rows"] == 20 and record["runs"][-1]["items"] == 20
    assert "auroc" in record["headline"]

    synth = separable.write(tmp_path / "synth.csv", separable.binary(40, seed=3, prefix="s"))
    out = tmp_path / "compare"
    rc, _, stderr = run_cli(["--task", "binary", "--compare", "--input", csv, "--synthetic", synth,
                             "--model", "tfidf-logreg", "-o", out])
    assert rc == 0, stderr
    record = read_run_record(out / "train.meta.json")
    assert record["mode"] == "compare" and record["complete"] is True
    assert set(record["table"]) == {"real", "synthetic", "real+synthetic"}
