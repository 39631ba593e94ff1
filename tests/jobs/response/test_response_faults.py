"""Faults of predict_responses.py that the hostile corpus (tests/hostile/test_predict_responses.py) cannot show in one
run: torn training checkpoints (skipped with a warning, the run falls back to the one before), a run killed between
the adapter save and its record (finished on rerun, never refused), reruns with other settings (refused with the
differences, unless they only change how the work is done), kill/resume of extract-personas and infer (every item
once; the record says interrupted, then finished), and prompts past the model's context (cut, or skipped and
counted)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from predict_responses import main
from socialsynth.core.config import parse
from socialsynth.core.errors import InputError
from socialsynth.core.run import read_run_record
from socialsynth.jobs.response.config import PersonaConfig, TrainConfig
from socialsynth.jobs.response.persona import run_personas
from socialsynth.jobs.response.records import SPAN_NEWS, SPAN_USER, prompt_text
from socialsynth.jobs.response.spans import encode_prompt, shorten_record
from socialsynth.jobs.response.training import checkpoint_problem, train_adapter
from socialsynth.llm.args import SamplingArgs
from tests.jobs.response.test_response_persona import case, write_cases
from tests.jobs.response.test_response_train_infer import TRAIN, StopAfterFirstStep, alpaca_records


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.fixture
def stage(tmp_path) -> Path:
    (tmp_path / "alpaca").mkdir()
    rows = alpaca_records(n_train=4, n_test=5)
    (tmp_path / "alpaca" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def train_argv(stage: Path, model: Path, *extra: str) -> list[str]:
    return ["train", "-o", str(stage), "-m", str(model), "--device", "cpu", *TRAIN, *extra]


# -- torn checkpoints ------------------------------------------------------------------------------------------


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


TEARS = {  # what a kill during the Trainer's save leaves behind, in the order it writes
    "weights cut short": lambda c: _cut(c / "pac_lora.safetensors", 200),
    "optimizer cut short": lambda c: _cut(c / "optimizer.pt", 100),
    "no trainer state": lambda c: (c / "trainer_state.json").unlink(),
    "trainer state cut short": lambda c: _cut(c / "trainer_state.json", 30),
}


def test_torn_checkpoints_are_skipped_and_the_run_falls_back(stage, tiny_model_dir, capsys):
    argv = train_argv(stage, tiny_model_dir)
    with pytest.raises(Exception) as stopped:  # noqa: PT011  (Interrupted, from the stop after step 1)
        train_adapter(parse(TrainConfig, argv[1:]), StopAfterFirstStep())
    assert "step 1 of 3" in str(stopped.value)
    checkpoints = stage / "adapters" / ".pac-lora.work" / "checkpoints"
    good = checkpoints / "checkpoint-1"
    assert checkpoint_problem(good, "pac-lora") is None
    for step, tear in enumerate(TEARS.values(), start=2):  # newer checkpoints, each torn another way
        torn = checkpoints / f"checkpoint-{step}"
        shutil.copytree(good, torn)
        tear(torn)
        assert checkpoint_problem(torn, "pac-lora")
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((stage / "adapters" / "pac-lora" / "training.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["steps"] == 3
    assert sorted(t.split(":")[0] for t in summary["torn_checkpoints"]) == [f"checkpoint-{s}" for s in (2, 3, 4, 5)]
    assert "torn checkpoint checkpoint-5" in out and "resumed from" in out
    record = read_run_record(stage / "adapters" / "pac-lora.meta.json")
    assert record["complete"] and record["skipped"] == {"torn checkpoint removed": 4}


def test_only_torn_checkpoints_start_over(stage, tiny_model_dir):
    argv = train_argv(stage, tiny_model_dir, "--method", "lora")
    with pytest.raises(Exception):  # noqa: B017, PT011  (Interrupted)
        train_adapter(parse(TrainConfig, argv[1:]), StopAfterFirstStep())
    only = stage / "adapters" / ".lora.work" / "checkpoints" / "checkpoint-1"
    _cut(only / "adapter_model.safetensors", 100)
    assert checkpoint_problem(only, "lora")
    summary = train_adapter(parse(TrainConfig, argv[1:]), None)
    assert summary["resumed_from"] is None and summary["steps"] == 3 and len(summary["torn_checkpoints"]) == 1


# -- killed after the adapter was written; reruns with other settings -------------------------------------------


def test_run_killed_between_adapter_and_record_finishes_on_rerun(stage, tiny_model_dir, capsys):
    argv = train_argv(stage, tiny_model_dir)
    assert main(argv) == 0
    record_file = stage / "adapters" / "pac-lora.meta.json"
    # as if killed after the adapter was renamed into place: the record still says running, the work folder is there
    record = json.loads(record_file.read_text())
    record.update(status="running", complete=False)
    record["runs"][-1]["status"] = "running"
    record_file.write_text(json.dumps(record))
    (stage / "adapters" / ".pac-lora.work" / "checkpoints").mkdir(parents=True)
    (stage / "adapters" / ".pac-lora.tmp-999999").mkdir()  # and one killed while writing it
    capsys.readouterr()
    # settings that do not change the adapter may differ: never "other settings"
    assert main([*argv, "--save-steps", "7", "--keep-checkpoints", "-v", "--batch-size", "2"]) == 0
    assert "already exists; nothing to do" in capsys.readouterr().out
    record = read_run_record(record_file)
    assert record["complete"] is True and record["status"] == "finished"
    assert [r["status"] for r in record["runs"]] == ["running", "finished"]
    assert not (stage / "adapters" / ".pac-lora.tmp-999999").exists()


def test_an_adapter_or_checkpoints_of_other_settings_are_refused(stage, tiny_model_dir, bad_flag, capsys):
    argv = train_argv(stage, tiny_model_dir)
    assert main(argv) == 0
    capsys.readouterr()
    line = bad_flag(main, [*argv, "--lr", "0.002", "--rank", "4"], "adapters/pac-lora")
    assert "lr: 0.001 -> 0.002" in line and "rank: 8 -> 4" in line and "--restart" in line
    with pytest.raises(Exception):  # noqa: B017, PT011  (Interrupted)
        train_adapter(parse(TrainConfig, [*argv[1:], "--name", "b"]), StopAfterFirstStep())
    capsys.readouterr()
    line = bad_flag(main, [*argv, "--name", "b", "--seed", "5"], ".b.work")
    assert "seed: 0 -> 5" in line
    assert main([*argv, "--name", "b", "--seed", "5", "--restart"]) == 0


# -- kill and resume: extract-personas, infer ---------------------------------------------------------------------


def sigterm_on_first_call(fake_backend_cls, reply):
    """A fake backend that receives SIGTERM while it answers its first chunk (as a preempted job does)."""

    class Preempted(fake_backend_cls):
        def generate(self, chats, params, keys=None, progress=None):
            if not self.generate_calls:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().generate(chats, params, keys, progress)

    return Preempted(reply=reply)


def use_backend(monkeypatch, backend) -> None:
    """Every model the job loads is `backend` (the command line runs as it would, without a real model)."""
    monkeypatch.setattr("socialsynth.llm.BackendSpec.load", lambda self: backend)


def test_personas_killed_after_the_first_chunk_resume(tmp_path, fake_backend_cls, monkeypatch, run_cli):
    users = [f"u{i}" for i in range(5)]
    write_cases(tmp_path / "cases.jsonl", [case(u, t) for u in users for t in ("t1", "t2")])
    argv = ["extract-personas", "-o", tmp_path, "--batch-size", "2"]
    use_backend(monkeypatch, sigterm_on_first_call(fake_backend_cls, lambda chat, key: f"1. Interests: {key}"))
    code, _, err = run_cli(main, argv)
    assert code == 143 and "rerun" in err and "Traceback" not in err
    assert [r["user_id"] for r in lines(tmp_path / "personas.jsonl")] == ["u0", "u1"]
    record = read_run_record(tmp_path / "personas.meta.json")
    assert record["status"] == "interrupted" and record["complete"] is False

    second = fake_backend_cls(reply=lambda chat, key: f"1. Interests: {key}")
    use_backend(monkeypatch, second)
    code, out, _ = run_cli(main, argv)
    assert code == 0 and "5 (ok 5); 3 new this run" in out
    assert [k for _, _, keys in second.generate_calls for k in keys] == ["u2", "u3", "u4"]
    records = lines(tmp_path / "personas.jsonl")
    assert sorted(r["user_id"] for r in records) == users  # every user exactly once
    assert all(r["persona"] == [f"Interests: {r['user_id']}"] for r in records)
    record = read_run_record(tmp_path / "personas.meta.json")
    assert [r["status"] for r in record["runs"]] == ["interrupted", "finished"] and record["complete"] is True
    assert len(lines(tmp_path / "alpaca" / "full.jsonl")) == 10


def test_infer_killed_after_the_first_chunk_resumes(stage, fake_backend_cls, monkeypatch, run_cli):
    argv = ["infer", "-o", stage, "--zero-shot", "--batch-size", "2"]
    use_backend(monkeypatch, sigterm_on_first_call(fake_backend_cls, lambda chat, key: f"answer {key}"))
    code, _, err = run_cli(main, argv)
    assert code == 143 and "rerun" in err and "Traceback" not in err
    target = stage / "predictions" / "zero-shot.jsonl"
    assert len(lines(target)) == 2
    assert read_run_record(stage / "predictions" / "zero-shot.meta.json")["status"] == "interrupted"

    use_backend(monkeypatch, fake_backend_cls(reply=lambda chat, key: f"answer {key}"))
    code, out, _ = run_cli(main, argv)
    assert code == 0 and "3 predictions written, 2 already there, 5 of 5" in out
    preds = lines(target)
    test_ids = [r["id"] for r in alpaca_records(n_train=4, n_test=5) if r["split"] == "test"]
    assert sorted(p["id"] for p in preds) == sorted(test_ids)  # each once
    assert all(p["prediction"] == f"answer {p['id']}" for p in preds)
    record = read_run_record(stage / "predictions" / "zero-shot.meta.json")
    assert [r["status"] for r in record["runs"]] == ["interrupted", "finished"] and record["complete"] is True


# -- prompts past the model's context --------------------------------------------------------------------------


class WordContext:
    """What a backend in this process offers for fitting prompts: a token count (here: words) and a context."""

    def __init__(self, context: int):
        self.model = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=context))

    def encode_chat(self, chat) -> list[str]:
        return " ".join(turn["content"] for turn in chat).split()


def test_persona_prompts_are_cut_to_the_context_or_skipped_and_counted(tmp_path, fake_backend_cls):
    cases = [case("a", "t1"), case("b", "t1"), case("c", "t1")]
    cases[0]["history"][1] = "word " * 5000  # a huge post: cut
    cases[2]["user_name"] = "name " * 5000  # a huge name: nothing to cut, skipped
    write_cases(tmp_path / "cases.jsonl", cases)

    class Small(WordContext, fake_backend_cls):
        def __init__(self, **kw):
            fake_backend_cls.__init__(self, **kw)
            WordContext.__init__(self, context=400)

    backend = Small(reply=lambda chat, key: "1. Interests: trains")
    cfg = PersonaConfig(output_dir=tmp_path, sampling=SamplingArgs(max_new_tokens=100))
    summary = run_personas(cfg, backend=backend)
    asked = [c for chats, _, _ in backend.generate_calls for c in chats]
    assert len(asked) == 2 and all(len(backend.encode_chat(c)) <= 300 for c in asked)
    assert summary["history_cut"] == 1 and summary["status"] == {"ok": 2, "too_long": 1}
    assert summary["skipped"] == {"persona prompt too long for the model's context": 1}
    record = read_run_record(tmp_path / "personas.meta.json")
    assert record["skipped"] == summary["skipped"] and record["complete"] is True
    by_user = {r["user_id"]: r for r in lines(tmp_path / "personas.jsonl")}
    assert by_user["a"]["history_cut"] and not by_user["b"]["history_cut"] and by_user["c"]["status"] == "too_long"


def test_shorten_record_cuts_the_user_span_first(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    record = alpaca_records(1, 0)[0]
    news_text = prompt_text(record)[slice(*record["spans"][SPAN_NEWS][0])]
    s, e = record["spans"][SPAN_USER][0]
    long_user = prompt_text(record)[s:e] + " and more words" * 300
    record["instruction"] = record["instruction"][:s] + long_user + record["instruction"][e:]
    record["spans"][SPAN_USER] = [[s, s + len(long_user)]]
    full = len(encode_prompt(tok, record))
    short = shorten_record(tok, record, 120)
    assert full > 600 and len(encode_prompt(tok, short)) <= 120
    text = prompt_text(short)
    assert text[slice(*short["spans"][SPAN_NEWS][0])] == news_text  # the news is whole
    user = text[slice(*short["spans"][SPAN_USER][0])]
    assert long_user.startswith(user[:20]) and len(user) < len(long_user) / 5
    assert shorten_record(tok, record, 20) is None  # the template and news alone are longer
    assert shorten_record(tok, {**record, "spans": None}, 120) is None


def test_zero_shot_prompts_past_the_context_are_cut_or_counted(stage, tiny_model_dir, capsys):
    rows = alpaca_records(n_train=0, n_test=3)
    s, e = rows[0]["spans"][SPAN_USER][0]
    extra = " lorem" * 4000  # far past the tiny model's 2048 positions
    rows[0]["instruction"] = rows[0]["instruction"][:e] + extra + rows[0]["instruction"][e:]
    rows[0]["spans"] = {SPAN_NEWS: rows[0]["spans"][SPAN_NEWS], SPAN_USER: [[s, e + len(extra)]]}
    rows[1]["system"] = "rules " * 3000  # no span to cut: skipped, counted
    (stage / "alpaca" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["infer", "-o", str(stage), "--zero-shot", "-m", str(tiny_model_dir), "--device", "cpu", "--dtype", "fp32",
            "--max-new-tokens", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "prompts cut to fit" in out and "skipped (prompt too long" in out
    preds = {p["id"]: p for p in lines(stage / "predictions" / "zero-shot.jsonl")}
    assert len(preds) == 3 and preds[rows[0]["id"]]["prompt_tokens_cut"] > 3000
    assert preds[rows[1]["id"]]["status"] == "error" and "context" in preds[rows[1]["id"]]["error"]
    record = read_run_record(stage / "predictions" / "zero-shot.meta.json")
    assert record["skipped"] == {"prompt too long for --max-length or the model's context": 1}
    assert record["prompts_cut"] == 1


def test_repeated_ids_are_refused_by_name(tmp_path):
    from socialsynth.jobs.response.persona import load_cases

    write_cases(tmp_path / "cases.jsonl", [case("a", "t1"), case("b", "t1"), case("a", "t1")])
    with pytest.raises(InputError, match=r"cases.jsonl: field 'id': 1 case id\(s\) appear more than once: 't1:a' "
                                         r"\(lines 1 and 3\)"):
        load_cases(tmp_path / "cases.jsonl")
