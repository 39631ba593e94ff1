"""The normness job's declared config (socialsynth.jobs.norms.config): bad values, job files, the run record.

The job runs in-process with a fake backend that counts tokens (BackendSpec.load is patched), so these tests
take seconds and load no model.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from socialsynth.core.cli import run_main
from socialsynth.core.config import flat_values, parse
from socialsynth.core.run import read_run_record
from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.config import NormsConfig
from socialsynth.llm import BackendSpec
from socialsynth.llm.base import Unsupported
from tests.helpers import flag_cases

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ASKMEN_LINES = (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()
JOB = ["-r", "askmen", "-n", "formality"]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """main(argv) as the script runs it: (exit code, stdout, stderr)."""
    try:
        rc = run_main(lambda: main(argv))
    except SystemExit as e:  # argparse's own errors (unknown choice) exit from inside the parser
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- (a) bad values: one line naming the flag, exit 2, before anything loads -----------------------------------
BAD = flag_cases(
    """
    -b 0  -> --batch-size
    -b many  -> --batch-size
    -sb 0  -> --sub-batch-size
    --max-batch-tokens 0
    --max-comment-chars 0
    --levels 0,9
    --levels 1,7
    --levels one,five
    --min-similarity 1.5
    --max-perplexity -1
    --rating-method vibes
    --rating-template no_such_template
    --rewrite-template no_such_template
    -n toxicity  -> --norm-dimension
    --temperature -1
    --top-p 1.5
    --max-new-tokens 0
    -s 5 -e 2  -> --end-idx
    --shard 3/2
    --concurrency 0
    -u no/such/folder  -> --upvote-dir
    --input no/such/file.jsonl
    --backend openai  -> --api-base
    """
)


@pytest.mark.parametrize("bad,name", BAD, ids=[" ".join(b) for b, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(bad, name, bad_flag, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setattr(BackendSpec, "load", lambda self: pytest.fail("a model was loaded"))
    bad_flag(main, [*JOB, *bad], name)


@pytest.mark.parametrize(
    "argv,name",
    [([], "--subreddit"), (["-r", "askmen"], "--norm-dimension"), (["--judge-agreement", "nofile.csv"],
                                                                  "--judge-agreement")],
)
def test_mode_needs_subreddit_and_dimension_or_judge_file(argv, name, capsys):
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and name in err and "Traceback" not in err


def test_flags_map_into_the_backend_spec_and_params():
    cfg = parse(NormsConfig, [*JOB, "-sb", "7", "--max-batch-tokens", "999", "--seed", "5", "-m", "x/y",
                              "--embedding-model", "none", "--levels", "5,1,5", "--temperature", "0.3"])
    spec = cfg.engine()
    assert (spec.max_batch_size, spec.max_batch_tokens, spec.seed, spec.model) == (7, 999, 5, "x/y")
    assert cfg.embedding_model is None and cfg.levels == (1, 5)
    assert cfg.params().temperature == 0.3 and cfg.params().seed == 5
    assert cfg.norm_dimension == "formality" and cfg.subreddit == "askmen"
    for spelling in ("--norm_dimension", "--norm-dimension"):  # the research code's spellings stay
        assert parse(NormsConfig, ["-r", "a", spelling, "humor"]).norm_dimension == "humor"
    seed_flags = ["--subreddit", "a", "-n", "humor", "--data_dir", "d", "--output_dir", "o", "--batch_size", "2",
                  "--sub_batch_size", "3", "--start_idx", "1", "--end_idx", "4", "--model_name", "m"]
    cfg = parse(NormsConfig, seed_flags)
    assert (cfg.data_dir, cfg.output_dir, cfg.batch_size, cfg.sub_batch_size) == (Path("d"), Path("o"), 2, 3)
    assert (cfg.range.start_idx, cfg.range.end_idx, cfg.model.model) == (1, 4, "m")


# -- a fake generator that counts tokens --------------------------------------------------------------------------
@pytest.fixture
def counting_backend(fake_backend_cls, monkeypatch):
    """Patch BackendSpec.load to give a FakeBackend that counts tokens like a real one; returns the instances."""

    class Counting(fake_backend_cls):
        sigterm_on_call: int | None = None  # send SIGTERM to ourselves during this generate call (1-based)

        def generate(self, chats, params, keys=None, progress=None):
            out = super().generate(chats, params, keys, progress)
            self.stats.prompt_tokens += 10 * len(chats)
            self.stats.new_tokens += sum(c.n_new_tokens for c in out)
            if len(self.generate_calls) == self.sigterm_on_call:
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        def score_choices(self, chats, choices):
            self.stats.scored_tokens += 7 * len(chats)
            return super().score_choices(chats, choices)

        def perplexity(self, texts):
            self.stats.scored_tokens += 3 * len(texts)
            return super().perplexity(texts)

    made = []

    def load(spec):
        backend = Counting(reply=lambda chat, key: f"A rewritten comment for {key}.")
        backend.sigterm_on_call = load.sigterm_on_call
        made.append(backend)
        return backend

    load.sigterm_on_call = None
    load.cls = Counting
    monkeypatch.setattr(BackendSpec, "load", load)
    return load, made


def job_flags(tmp_path: Path, out: Path, n: int = 4) -> list[str]:
    data = tmp_path / "askmen.jsonl"
    data.write_text("\n".join(ASKMEN_LINES[:n]) + "\n", encoding="utf-8")
    return [*JOB, "--input", str(data), "-o", str(out), "--embedding-model", "none", "--rating-method", "logits",
            "--levels", "1,5", "-b", "2", "--seed", "3", "--max-new-tokens", "16"]


# -- (b) --print-config fed back with --config: the same config and the same records -----------------------------
def test_print_config_round_trip_gives_the_same_config(tmp_path, capsys):
    flags = [*JOB, "-b", "3", "-sb", "5", "--levels", "1,5", "--embedding-model", "none", "--max-perplexity", "0",
             "--judge-topics", "a,b", "-u", str(tmp_path), "--shard", "1/2", "--temperature", "0.2", "-q", "4"]
    rc, printed, _ = run_cli([*flags, "--print-config"], capsys)
    assert rc == 0
    job_file = tmp_path / "job.yaml"
    job_file.write_text(printed, encoding="utf-8")
    from_flags = parse(NormsConfig, flags)
    from_file = parse(NormsConfig, ["--config", str(job_file)])
    assert flat_values(from_file) == flat_values(from_flags)
    assert from_file.levels == (1, 5) and from_file.embedding_model is None and from_file.judge_topics == ["a", "b"]
    overridden = parse(NormsConfig, ["--config", str(job_file), "-b", "9"])  # the command line wins
    assert overridden.batch_size == 9 and overridden.sub_batch_size == 5


def test_job_file_gives_the_same_records_as_the_flags(tmp_path, capsys, counting_backend):
    flags = job_flags(tmp_path, tmp_path / "by_flags")
    assert run_cli(flags, capsys)[0] == 0
    rc, printed, _ = run_cli([*flags, "--print-config"], capsys)
    job_file = tmp_path / "job.yaml"
    job_file.write_text(printed, encoding="utf-8")
    rc, out, err = run_cli(["--config", str(job_file), "-o", str(tmp_path / "by_file")], capsys)
    assert rc == 0, err
    first = (tmp_path / "by_flags" / "askmen_formality.jsonl").read_bytes()
    assert first and first == (tmp_path / "by_file" / "askmen_formality.jsonl").read_bytes()
    # The run saved its resolved config beside the record; it reruns the job as is.
    saved = tmp_path / "by_flags" / "askmen_formality.config.yaml"
    assert flat_values(parse(NormsConfig, ["--config", str(saved)])) == flat_values(parse(NormsConfig, flags))


# -- (c) the run record: one schema, tokens per model and stage, summed over resumes ------------------------------
def test_run_record_counts_tokens_per_stage_and_sums_them_over_a_resume(tmp_path, capsys, counting_backend):
    load, made = counting_backend
    out = tmp_path / "out"
    flags = job_flags(tmp_path, out, n=6)
    load.sigterm_on_call = 2  # stop after the second chunk of 2 comments
    rc, _, err = run_cli(flags, capsys)
    assert rc == 143 and "rerun" in err
    path = out / "askmen_formality.meta.json"
    first = read_run_record(path)
    assert first["complete"] is False and first["status"] == "interrupted" and first["n_written"] == 4
    assert first["job"] == "norms"
    tokens = first["tokens"]["fake-model"]
    assert set(tokens) == {"rewrite", "rate", "fluency"}
    # 4 comments x 2 levels: 8 rewrite prompts of 10 tokens; 4 + 8 ratings of 7; 8 perplexities of 3
    assert tokens["rewrite"]["in"] == 80 and tokens["rewrite"]["out"] > 0
    assert (tokens["rate"]["in"], tokens["rate"]["out"]) == (84, 0)
    assert tokens["fluency"]["in"] == 24

    load.sigterm_on_call = None
    rc, _, err = run_cli(flags, capsys)
    assert rc == 0, err
    record = read_run_record(path)
    assert record["complete"] is True and record["status"] == "finished" and record["n_written"] == 6
    assert len(record["runs"]) == 2 and [r["status"] for r in record["runs"]] == ["interrupted", "finished"]
    total = record["tokens"]["fake-model"]
    assert total["rewrite"]["in"] == 120 and total["rate"]["in"] == 126 and total["fluency"]["in"] == 36
    for stage in ("rewrite", "rate", "fluency"):
        for key in ("in", "out"):
            assert total[stage][key] == sum(r["tokens"]["fake-model"][stage][key] for r in record["runs"])
    assert record["rating_method_used"] == "logits" and record["rating_method_notes"] == []
    assert record["throughput"]["comments_this_run"] == 2 and record["summary"]["n_records"] == 6
    assert record["provenance"]["model"] == "fake-model" and record["config"]["subreddit"] == "askmen"
    ids = [json.loads(line)["id"] for line in (out / "askmen_formality.jsonl").read_text().splitlines()]
    assert ids == [json.loads(line)["id"] for line in ASKMEN_LINES[:6]]


def test_fluency_filter_turned_off_is_recorded(tmp_path, capsys, counting_backend, monkeypatch):
    load, _ = counting_backend

    def no_perplexity(self, texts):
        raise Unsupported("no prompt logprobs")

    monkeypatch.setattr(load.cls, "perplexity", no_perplexity)
    out = tmp_path / "out"
    rc, _, err = run_cli(job_flags(tmp_path, out), capsys)
    assert rc == 0, err
    record = read_run_record(out / "askmen_formality.meta.json")
    assert record["fluency_filter_off"] == "fluency filter off: no prompt logprobs"
    assert record["rating_method_notes"] == ["fluency filter off: no prompt logprobs"]
    records = [json.loads(line) for line in (out / "askmen_formality.jsonl").read_text().splitlines()]
    assert all(r["filters"][lv]["perplexity"] is None for r in records for lv in ("1", "5"))


def test_judge_json_records_the_rating_method_used_after_fallback(tmp_path, capsys, counting_backend, monkeypatch):
    load, _ = counting_backend

    def no_likelihood(self, chats, continuations):
        raise Unsupported("no prompt logprobs")

    monkeypatch.setattr(load.cls, "score_continuations", no_likelihood)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["--judge-agreement", str(REPO / "data" / "judge_pairs_sample.csv"), "-o", str(out),
                               "--judge-topics", "sample"], capsys)
    assert rc == 0, err
    assert "12 pairs" in stdout and "rating method likelihood" in stdout
    (written,) = out.glob("judge_agreement_*_likelihood.json")
    result = json.loads(written.read_text(encoding="utf-8"))
    assert result["rating_method"] == "likelihood"
    assert set(result["rating_method_used"]) == set(result["report"])
    assert set(result["rating_method_used"].values()) == {"logits"}
    assert all("using logits" in notes[0] for notes in result["rating_method_notes"].values())
    assert result["topics"] == ["sample"]
