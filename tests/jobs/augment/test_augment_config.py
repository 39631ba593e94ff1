"""augment_labels.py's declared config: bad values (one line, exit 2, before any model), the --print-config /
--config round trip (same config, same records), the run record (tokens per model and stage, summed over a
resume), skipped rows, and the ladder-only mode."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import augment_labels as script
from socialsynth.core.config import flat_values, parse
from socialsynth.core.errors import InputError
from socialsynth.core.run import read_run_record
from socialsynth.jobs.augment.config import AugmentConfig
from socialsynth.llm import BackendSpec
from tests.helpers import flag_cases


def canned(chat, key):
    n = key.rsplit("r", 1)[-1]
    return (
        f'1. "insult{n} you are so dumb honestly"\n2. "mock{n} nobody wants you here"\n3. "short{n} one"\n'
        f'4. "rage{n} get lost you absolute clown"'
    )


@pytest.fixture
def fake_engine(monkeypatch, fake_backend_cls):
    """Every BackendSpec.load() gives a fresh FakeBackend answering `canned`; the backends made are listed."""
    made = []

    def load(self):
        made.append(fake_backend_cls(reply=canned))
        return made[-1]

    monkeypatch.setattr(BackendSpec, "load", load)
    return made


def base_args(labelled, out) -> list[str]:
    return [
        "--input", str(labelled), "--text-col", "comment", "--label-col", "bad", "--target-label", "1",
        "--definition", "rude remarks", "--n", "3", "-o", str(out), "--embedding-model", "none", "--seed", "7",
    ]  # fmt: skip


def run_script(argv, capsys) -> tuple[int, str, str]:
    try:
        code = script.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors (unknown choice, missing value) exit from the parser
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------- bad values


BAD = flag_cases(
    """
    --n -1  -> "'--n'"
    --n three  -> "'--n'"
    --per-call 0
    --examples-per-prompt 0
    --max-requests 0
    -b 0  -> --batch-size
    --min-words -1
    --min-words 20 --max-words 10  -> --max-words
    --near-dup 1.5
    --fidelity-threshold -0.1
    --fidelity-model no/such/model
    --embedding-model ' '
    --definition-file no/such/defs.yaml
    --input no/such/file.csv
    --template ''
    --shard 3/2
    --shard 0/2 --positive-rates 0.1  -> --positive-rates
    --positive-rates 0.1,1.5
    --positive-rates x
    --positive-rates 0.1 --epochs 0  -> --epochs
    --positive-rates 0.1 --classifier ''  -> --classifier
    --positive-rates 0.1 --train TRAIN  -> --train
    --n 0  -> "'--n'"  # neither generation nor --synthetic
    --n 0 --synthetic SYN  -> --synthetic  # --synthetic without --positive-rates
    --temperature -1
    --top-p 0
    --max-new-tokens 0
    --backend nope
    --concurrency 0
    -q 3  -> --quantization
    """
)


@pytest.mark.parametrize("extra, flag", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(extra, flag, labelled, tmp_path, bad_flag, fake_engine):
    extra = [str(labelled) if x in ("TRAIN", "SYN") else x for x in extra]
    bad_flag(script.main, [*base_args(labelled, tmp_path / "o"), *extra], flag)
    assert fake_engine == [] and not (tmp_path / "o").exists()  # nothing loaded, nothing written


def test_missing_target_label_is_one_line(labelled, tmp_path, capsys):
    argv = [a for a in base_args(labelled, tmp_path / "o") if a not in ("--target-label", "1")]
    code, _, err = run_script(argv, capsys)
    assert code == 2 and "--target-label" in err and len(err.strip().splitlines()) == 1


def test_flags_keep_their_spellings_and_conversions(labelled, tmp_path):
    cfg = parse(
        AugmentConfig,
        [*base_args(labelled, tmp_path), "--text_col", "comment", "--batch_size", "3", "--output_dir", "x",
         "--positive-rates", "0.01,0.05", "-m", "tiny", "--model-name", "tiny2"],
    )  # fmt: skip
    assert cfg.embedding_model is None  # 'none' -> None
    assert cfg.ladder.positive_rates == [0.01, 0.05] and cfg.batch_size == 3 and cfg.output_dir == Path("x")
    assert cfg.engine.model == "tiny2" and cfg.params.seed == 7 and cfg.engine.seed == 7
    assert cfg.ladder_config().rates == [0.01, 0.05] and cfg.ladder_config().input == labelled
    default = parse(AugmentConfig, ["--input", str(labelled), "--target-label", "1", "--definition", "d", "--n", "1"])
    assert default.embedding_model == "embedded" and default.output_dir.parts[-2:] == ("output", "augment")
    assert default.filters.min_words == 5 and default.filters.near_dup == 0.95 and default.batch_size == 8


# ------------------------------------------------------------------------------------------- round trip


def test_print_config_round_trip_gives_the_same_config_and_records(labelled, tmp_path, capsys, fake_engine):
    flags = [*base_args(labelled, tmp_path / "a"), "--per-call", "4", "-b", "2", "--min-words", "4",
             "--positive-rates", "0.3"]  # fmt: skip
    code, printed, _ = run_script([*flags, "--print-config"], capsys)
    assert code == 0
    job = tmp_path / "job.yaml"
    job.write_text(printed)
    from_flags = parse(AugmentConfig, flags)
    from_file = parse(AugmentConfig, ["--config", str(job)])
    assert flat_values(from_file) == flat_values(from_flags)

    code, out_a, err = run_script(flags, capsys)
    assert code == 0, err and "requests:" in out_a and "rate asked" in out_a
    code, out_b, err = run_script(["--config", job, "-o", tmp_path / "b"], capsys)  # a flag overrides the file
    assert code == 0, err
    a = (tmp_path / "a" / "synthetic_1.jsonl").read_text()
    assert a and a == (tmp_path / "b" / "synthetic_1.jsonl").read_text()
    assert (tmp_path / "b" / "ladder" / "train_rate_0.3.csv").read_text() == (
        tmp_path / "a" / "ladder" / "train_rate_0.3.csv"
    ).read_text()
    # the run record saves the resolved config beside it, and --config reads that back too
    saved = tmp_path / "a" / "synthetic_1.config.yaml"
    assert flat_values(parse(AugmentConfig, ["--config", str(saved)])) == flat_values(from_flags)


# ------------------------------------------------------------------------------------------- the run record


def test_run_record_counts_tokens_per_stage_and_sums_them_over_a_resume(labelled, tmp_path, capsys, fake_engine):
    out = tmp_path / "o"
    assert run_script(base_args(labelled, out), capsys)[0] == 0
    first = read_run_record(out / "synthetic_1.meta.json")
    assert first["job"] == "augment" and first["complete"] and first["status"] == "finished"
    tokens = first["tokens"]["fake-model"]["generate"]
    assert tokens["in"] > 0 and tokens["out"] > 0
    assert first["n_passed"] >= 3 and first["summary"]["passed"] == first["n_passed"]
    assert first["provenance"]["definition"] == "rude remarks" and first["n_target_rows"] == 6
    assert first["runs"][0]["items"] == first["n_requests"]

    argv = base_args(labelled, out)
    argv[argv.index("--n") + 1] = "9"  # more: the rerun resumes after the written requests
    assert run_script(argv, capsys)[0] == 0
    second = read_run_record(out / "synthetic_1.meta.json")
    assert len(second["runs"]) == 2 and second["complete"] and second["n_passed"] >= 9
    total = second["tokens"]["fake-model"]["generate"]
    per_run = [r["tokens"]["fake-model"]["generate"] for r in second["runs"]]
    assert total["in"] == sum(t["in"] for t in per_run) > tokens["in"]
    assert total["out"] == sum(t["out"] for t in per_run) > tokens["out"]
    assert len(fake_engine) == 2

    assert run_script(argv, capsys)[0] == 0  # nothing left: no model loaded, no tokens added
    third = read_run_record(out / "synthetic_1.meta.json")
    assert len(fake_engine) == 2 and third["tokens"] == second["tokens"] and len(third["runs"]) == 3


def test_rows_with_an_empty_label_are_counted_as_skipped(labelled, tmp_path, capsys, fake_engine):
    with open(labelled, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["u1", "a comment nobody labelled", ""], ["u2", "", "1"]])
    out = tmp_path / "o"
    assert run_script(base_args(labelled, out), capsys)[0] == 0
    record = read_run_record(out / "synthetic_1.meta.json")
    assert record["skipped"] == {"empty label": 1, "empty comment": 1} and record["n_real_rows"] == 26


def test_ladder_only_mode_reads_synthetic(labelled, tmp_path, capsys, fake_engine):
    syn = tmp_path / "syn.jsonl"
    syn.write_text("".join(json.dumps({"id": f"s{i}", "text": f"synthetic {i}", "passed": True}) + "\n"
                           for i in range(10)))  # fmt: skip
    argv = [a for a in base_args(labelled, tmp_path / "o") if a not in ("--n", "3")]
    code, out, err = run_script([*argv, "--synthetic", syn, "--positive-rates", "0.3"], capsys)
    assert code == 0, err
    assert "rate asked" in out and "requests:" not in out and fake_engine == []
    assert (tmp_path / "o" / "ladder" / "train_rate_0.3.csv").exists()
    assert not (tmp_path / "o" / "synthetic_1.meta.json").exists()


# ------------------------------------------------------------------------------------------- issue 13


def test_the_bundled_definition_is_the_default(labelled, tmp_path):
    argv = [a for a in base_args(labelled, tmp_path / "o") if a not in ("--definition", "rude remarks")]
    cfg = parse(AugmentConfig, [*argv, "--label-name", "toxic"])
    assert cfg.definition_file.name == "label_definitions.yaml" and "insults" in cfg.definition_text()
    with pytest.raises(InputError, match="no definition for '1'") as err:
        parse(AugmentConfig, argv)
    assert err.value.field == "--definition" and err.value.path.endswith("label_definitions.yaml")
    assert parse(AugmentConfig, [*argv, "--definition", "given"]).definition_text() == "given"


def test_skipped_rows_are_in_the_printed_summary(labelled, tmp_path, capsys, fake_engine):
    with open(labelled, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["u1", "a comment nobody labelled", ""], ["t1", "a second t1", "1"]])
    code, out, err = run_script([*base_args(labelled, tmp_path / "o"), "--skip-bad-rows"], capsys)
    assert code == 0, err
    assert "skipped input rows: duplicate id: 1, empty label: 1" in out
    code, _, err = run_script(base_args(labelled, tmp_path / "o2"), capsys)
    assert code == 2 and "duplicate id 't1'" in err and len(err.strip().splitlines()) == 1


def test_the_ladder_counts_skipped_rows_and_refuses_a_set_without_positives(labelled, tmp_path, capsys,
                                                                            fake_engine):
    with open(labelled, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["u1", "a comment nobody labelled", ""]])
    syn = tmp_path / "syn.jsonl"
    syn.write_text("".join(json.dumps({"id": f"s{i}", "text": f"synthetic {i}", "passed": True}) + "\n"
                           for i in range(10)))  # fmt: skip
    argv = [a for a in base_args(labelled, tmp_path / "o") if a not in ("--n", "3")]
    code, out, err = run_script([*argv, "--synthetic", syn, "--positive-rates", "0.3"], capsys)
    assert code == 0, err
    assert "skipped input rows: train: empty label: 1" in out
    report = json.loads((tmp_path / "o" / "ladder" / "ladder.json").read_text())
    assert report["skipped"] == {"train: empty label": 1}
    code, _, err = run_script([*argv, "--synthetic", syn, "--positive-rates", "0.01,0.3", "--evaluate"], capsys)
    assert code == 2 and "rate 0.01 gives a training set" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "ladder" / "models").exists()  # refused before any training


def test_records_of_another_job_in_the_output_are_refused(labelled, tmp_path, capsys, fake_engine):
    from socialsynth.jobs.augment.job import record_problem

    assert record_problem({"id": "x", "status": "ok", "text": "t", "passed": True, "flags": {},
                           "generation": {"request": 0}}) is None
    assert record_problem({"id": "x", "status": "ok", "text": "t", "passed": True, "generation": {"request": 0}}) \
        == "flags"
    assert record_problem({"id": "x", "generation": {"request": True}}) == "generation.request"
    out = tmp_path / "o"
    out.mkdir()
    (out / "synthetic_1.jsonl").write_text('{"id": "1-r000000-0", "text": "from elsewhere"}\n')
    code, _, err = run_script(base_args(labelled, out), capsys)
    assert code == 2 and "synthetic_1.jsonl:1: field 'generation'" in err
