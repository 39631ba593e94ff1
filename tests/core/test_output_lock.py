"""One writer per output (socialsynth.core.lock) and no mixing of settings on resume (socialsynth.core.run):
a second run on a held output refuses naming the holder, a stale lock is taken over, a rerun with other settings
is refused with the differences listed, and --overwrite starts over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from socialsynth.core.errors import InputError
from socialsynth.core.lock import OutputLock, lock_path
from socialsynth.core.run import JobRun, setting_differences
from tests.helpers import REPO, read_jsonl


def test_lock_path_sits_beside_the_record(tmp_path):
    assert lock_path(tmp_path / "askmen_formality.meta.json") == tmp_path / "askmen_formality.lock"
    assert lock_path(tmp_path / "x.jsonl") == tmp_path / "x.jsonl.lock"


def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    lock = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from socialsynth.core.lock import OutputLock\n"
         f"with OutputLock({str(lock)!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"another run is writing .*pid {holder.pid} on {socket.gethostname()}"):
            OutputLock(lock).acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale on this host and is taken over
    with OutputLock(lock):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "started": "earlier"}))
    with OutputLock(lock):
        pass
    assert "taking over a stale lock" in caplog.text and "its process is gone" in caplog.text


def test_lock_from_another_host_is_stale_only_when_not_refreshed(tmp_path, monkeypatch):
    import socialsynth.core.lock as lock_module

    lock = tmp_path / "x.lock"
    lock.write_text(json.dumps({"pid": 1, "host": "node-that-is-not-here", "started": "earlier"}))
    with pytest.raises(InputError, match="node-that-is-not-here"):
        OutputLock(lock).acquire()
    old = time.time() - 3600
    os.utime(lock, (old, old))
    monkeypatch.setattr(lock_module, "STALE_SECONDS", 600.0)
    with OutputLock(lock):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()


def test_the_same_process_may_take_its_own_lock_twice(tmp_path):
    lock = tmp_path / "x.lock"
    with OutputLock(lock), OutputLock(lock):
        assert lock.exists()
    assert not lock.exists()


# ------------------------------------------------------------------------------------------- settings on resume


def test_setting_differences_lists_what_changed_and_ignores_safe_settings():
    before = {"levels": [1, 2, 3], "batch_size": 4, "sampling": {"temperature": 0.7, "seed": 0}, "old_field": 1}
    now = {"levels": [1, 5], "batch_size": 16, "sampling": {"temperature": 1.0, "seed": 0}, "new_field": 2}
    assert setting_differences(before, now) == ["levels: [1, 2, 3] -> [1, 5]", "temperature: 0.7 -> 1.0"]
    assert setting_differences({"x": 1}, {"x": 1.0}) == []


def _norms(tmp_path, tiny_model_dir, *extra):
    from socialsynth.jobs.norms.cli import main

    out = tmp_path / "norms"
    argv = ["-r", "askmen", "-n", "formality", "-d", REPO / "data", "-o", out, "-m", tiny_model_dir, "-e", "3",
            "--embedding-model", "none", "--max-new-tokens", "4", "--levels", "1,5", "--rating-method", "logits",
            *extra]
    return main, [str(a) for a in argv], out


def test_rerun_while_the_output_is_held_is_refused_and_the_output_stays_single(tmp_path, tiny_model_dir, run_cli):
    main, argv, out = _norms(tmp_path, tiny_model_dir)
    record = out / "askmen_formality.meta.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from socialsynth.core.lock import OutputLock\n"
         f"with OutputLock({str(lock_path(record))!r}):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run_cli(main, argv)
        assert code == 2 and "another run is writing" in err and f"pid {holder.pid}" in err
        assert len(err.strip().splitlines()) == 1
        assert not (out / "askmen_formality.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    code, _, err = run_cli(main, argv)
    assert code == 0, err
    ids = [r["id"] for r in read_jsonl(out / "askmen_formality.jsonl")]
    assert len(ids) == 3 == len(set(ids))
    assert not lock_path(record).exists()


def test_resume_with_other_settings_is_refused_then_overwrite_starts_over(tmp_path, tiny_model_dir, run_cli):
    main, argv, out = _norms(tmp_path, tiny_model_dir)
    assert run_cli(main, argv)[0] == 0
    code, _, err = run_cli(main, [*argv, "--temperature", "1.0", "--levels", "1,3,5", "-b", "2"])
    assert code == 2, err
    line = err.strip()
    assert "other settings" in line and "levels: [1, 5] -> [1, 3, 5]" in line and "temperature: 0.7 -> 1.0" in line
    assert "batch_size" not in line and "--overwrite" in line
    code, _, err = run_cli(main, [*argv, "--temperature", "1.0", "--levels", "1,3,5", "--overwrite"])
    assert code == 0, err
    rows = read_jsonl(out / "askmen_formality.jsonl")
    assert len(rows) == 3 and all({"1", "3", "5"} <= set(r) for r in rows)
    record = json.loads((out / "askmen_formality.meta.json").read_text())
    assert record["config"]["sampling"]["temperature"] == 1.0 and len(record["runs"]) == 1


def test_damaged_run_record_is_refused_with_one_line(tmp_path, tiny_model_dir, run_cli):
    main, argv, out = _norms(tmp_path, tiny_model_dir)
    out.mkdir()
    (out / "askmen_formality.meta.json").write_text("[1, 2]")
    code, _, err = run_cli(main, argv)
    assert code == 2 and "askmen_formality.meta.json: the run record is not a JSON object" in err
    assert len(err.strip().splitlines()) == 1


def test_overwrite_rerun_after_an_interruption_resumes(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        levels: tuple = (1, 5)
        overwrite: bool = True

    out = tmp_path / "x.jsonl"
    out.write_text('{"id": 1}\n')
    record = tmp_path / "x.meta.json"
    with pytest.raises(KeyboardInterrupt), JobRun("t", record, Cfg(), outputs=[out]):
        raise KeyboardInterrupt
    assert not out.exists()  # the first --overwrite run started over
    out.write_text('{"id": 2}\n')  # what it wrote before the interruption
    with JobRun("t", record, Cfg(), outputs=[out]) as run:  # a requeue: same command
        pass
    assert out.read_text() == '{"id": 2}\n' and [r["status"] for r in run.meta["runs"]] == ["interrupted", "finished"]


def test_other_settings_are_accepted_while_the_output_holds_no_record(tmp_path):
    """A first run that failed before writing (a wrong -m) may be rerun with the corrected setting."""
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        model: str = "wrong/name"

    out, record = tmp_path / "x.jsonl", tmp_path / "x.meta.json"
    with pytest.raises(RuntimeError), JobRun("t", record, Cfg(), outputs=[out]):
        raise RuntimeError("cannot load wrong/name")
    with JobRun("t", record, Cfg("right/name"), outputs=[out]) as run:
        out.write_text('{"id": 1}\n')
    assert run.meta["config"]["model"] == "right/name"
    with pytest.raises(InputError, match="model: 'right/name' -> 'wrong/name'"):
        JobRun("t", record, Cfg(), outputs=[out]).__enter__()


@pytest.mark.parametrize("field, value", [("runs", {}), ("seconds", "12"), ("tokens", [])])
def test_a_record_field_of_the_wrong_type_is_refused_naming_it(tmp_path, field, value):
    record = tmp_path / "x.meta.json"
    record.write_text(json.dumps({"job": "t", field: value}))
    with pytest.raises(InputError, match=f"field '{field}' of the run record is not"):
        JobRun("t", record, None).__enter__()
