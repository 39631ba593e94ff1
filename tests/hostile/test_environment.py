"""Hostile environments, across jobs (issue 13): what the machine, the file system, the model store or a server
does to a run, rather than what the data does.

The corpus covers output places that cannot be written (a file where the output folder should be or in its
path, a read-only folder or file system, no permission), a full disk or quota (exit 1 with the resume hint, and
the rerun resumes), models that cannot be found (a local path that does not exist, a Hub id that is not cached
while offline, for the LLM and the embedding model), devices this machine does not have (cuda, cuda:N, mps, an
unknown name) for every job that takes the model flags, and secrets: credentials in --api-base are used but never
recorded (run record, saved config, command line, messages), and an API key that a server echoes back is masked
in every message and record. Each case ends in exit 2 (1 for a full disk) with one stderr line naming the path,
model or flag, or in exit 0 with nothing leaked; never a traceback. Cases stop before any model loads, or use
the fake backend of tests/conftest.py or a fake OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from socialsynth.core import provenance
from socialsynth.jobs.augment.cli import main as augment_main
from socialsynth.jobs.bluesky.cli import main_instruct as instruct_main
from socialsynth.jobs.norms.cli import main as norms_main
from socialsynth.jobs.rephrase.cli import main as rephrase_main
from socialsynth.jobs.response.cli import main as response_main
from socialsynth.jobs.train.cli import main as train_main
from socialsynth.llm import BackendSpec
from tests.conftest import FakeBackend, SeparableTexts

from .conftest import Case, Error, Skip

KEY = "sk-hostile-KEY-0123456789-abcdef"
PASSWORD = "pw-hostile-5ecret"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_CUDA = torch.cuda.is_available()


# ------------------------------------------------------------------------------------------------ inputs


def comments(tmp: Path, n: int = 3) -> dict:
    path = tmp / "sub.jsonl"
    path.write_text("".join(json.dumps({"id": f"c{i}", "comment": f"comment number {i}"}) + "\n" for i in range(n)))
    return {"data": path}


def labelled(tmp: Path) -> dict:
    return {"data": SeparableTexts.write(tmp / "data.csv", SeparableTexts.binary(40))}


def read_only_dir(make_inputs):
    def setup(tmp: Path) -> dict:
        values = make_inputs(tmp)
        (tmp / "locked").mkdir()
        (tmp / "locked").chmod(0o555)
        return values

    return setup


BASE = ["-r", "sub", "-n", "formality", "--input", "{data}", "--levels", "1,5"]
NORMS = [*BASE, "--embedding-model", "none"]
TRAIN = ["--task", "binary", "--input", "{data}", "--model", "tfidf-logreg"]


# ------------------------------------------------------------------------------------------------ faults


def fsync_fails(code: int, suffix: str = ""):
    """patch: fsync of files ending in ``suffix`` fails with ``code`` (ENOSPC: the disk filled up)."""

    def patch(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        real = os.fsync

        def fsync(fd):
            if os.readlink(f"/proc/self/fd/{fd}").endswith(suffix):
                raise OSError(code, os.strerror(code))  # what a real write() gives: no filename
            return real(fd)

        mp.setattr(os, "fsync", fsync)

    return patch


def mkdir_fails(code: int):
    """patch: making a folder under tmp fails with ``code`` (EROFS: a read-only file system)."""

    def patch(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        real = Path.mkdir

        def mkdir(self, *args, **kwargs):
            if str(self).startswith(str(tmp / "out")):
                raise OSError(code, os.strerror(code), str(self))
            return real(self, *args, **kwargs)

        mp.setattr(Path, "mkdir", mkdir)

    return patch


def fake_backend(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setattr(BackendSpec, "load", lambda self: FakeBackend())


def both(*patches):
    def patch(mp: pytest.MonkeyPatch, tmp: Path) -> None:
        for p in patches:
            p(mp, tmp)

    return patch


# ------------------------------------------------------------------------------------------------ a fake server


class FakeServer:
    """An OpenAI-compatible server on loopback: /models lists one model; ``refuse`` answers every request
    with 401 and the key it was sent (a careless server); otherwise chat completions echo "Level 4"."""

    def __init__(self, refuse: bool):
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                server.requests += 1
                sent = self.headers.get("Authorization", "")
                if refuse:
                    status, body = 401, {"error": {"message": f"Incorrect API key provided: {sent[7:]}"}}
                elif self.path.endswith("/models"):
                    status, body = 200, {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "x"}]}
                else:
                    message = {"role": "assistant", "content": "Level 4"}
                    status, body = 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                         "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer()

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Env:
    """A case of the corpus: the job's main, the Case, an optional ``patch(monkeypatch, tmp)`` (the fault),
    a server ("refuse" or "answer": {server} in argv is its host:port) and ``check(tmp, output)`` for what must
    not be left behind."""

    main: Callable
    case: Case
    patch: Callable | None = None
    server: str | None = None
    check: Callable[[Path, str], None] | None = None
    unless: bool = False  # skip (a GPU case on a GPU machine, a permission case as root)
    why: str = ""


def no_secret_anywhere(tmp: Path, output: str) -> None:
    """Neither the key nor the URL password is in the messages or in any file the run wrote."""
    texts = {"output": output}
    texts.update({str(p): p.read_text(errors="replace") for p in tmp.rglob("*") if p.is_file()})
    for name, text in texts.items():
        assert KEY not in text and KEY[:10] not in text, name
        assert PASSWORD not in text, name


def credentials_recorded_redacted(tmp: Path, output: str) -> None:
    no_secret_anywhere(tmp, output)
    meta = json.loads((tmp / "out" / "sub_formality.meta.json").read_text())
    assert meta["config"]["model"]["api_base"].startswith("http://***@127.0.0.1:")
    assert "http://***@127.0.0.1:" in meta["command"]
    assert "***@127.0.0.1" in (tmp / "out" / "sub_formality.config.yaml").read_text()


OPENAI = ["--backend", "openai", "--max-retries", "0", "--api-key-env", "HOSTILE_KEY"]
OUT = ["-o", "{tmp}/out"]

CASES = [
    # ---- unwritable places (a file in the way, a read-only folder or file system, no permission)
    Env(norms_main, Case("norms-output-dir-under-a-file", [*NORMS, "-o", "{data}/out"], Error("sub.jsonl/out"),
                         comments)),
    Env(train_main, Case("train-output-dir-is-a-file", [*TRAIN, "-o", "{data}"], Error("data.csv"), labelled)),
    Env(norms_main, Case("norms-read-only-file-system", [*NORMS, *OUT], Error("read-only file system"), comments),
        patch=mkdir_fails(errno.EROFS)),
    Env(train_main, Case("train-read-only-file-system", [*TRAIN, *OUT], Error("read-only file system"), labelled),
        patch=mkdir_fails(errno.EROFS)),
    Env(norms_main, Case("norms-no-permission", [*NORMS, *OUT], Error("permission denied"), comments),
        patch=mkdir_fails(errno.EACCES)),
    Env(norms_main, Case("norms-read-only-folder", [*NORMS, "-o", "{tmp}/locked/out"], Error("locked"),
                         read_only_dir(comments)), unless=AS_ROOT, why="root ignores permissions"),
    Env(train_main, Case("train-read-only-folder", [*TRAIN, "-o", "{tmp}/locked/out"], Error("locked"),
                         read_only_dir(labelled)), unless=AS_ROOT, why="root ignores permissions"),
    # ---- a full disk or quota: exit 1, the path, and how to resume
    # (full while writing records, mid-run: test_a_full_disk_then_freed_space_resumes_every_record_once)
    Env(norms_main, Case("norms-disk-full-at-the-start", [*NORMS, *OUT],
                         Error("no space left on the device; free space and rerun", code=1), comments),
        patch=both(fake_backend, fsync_fails(errno.ENOSPC))),
    Env(train_main, Case("train-disk-full", [*TRAIN, *OUT], Error("free space and rerun the same command", code=1),
                         labelled), patch=fsync_fails(errno.ENOSPC)),
    Env(train_main, Case("train-quota-exceeded", [*TRAIN, *OUT], Error("disk quota exceeded", code=1), labelled),
        patch=fsync_fails(errno.EDQUOT)),
    # ---- models that cannot be found
    Env(norms_main, Case("norms-model-path-missing", [*NORMS, *OUT, "-m", "{tmp}/no-such-model"],
                         Error("no-such-model: no such folder"), comments)),
    Env(norms_main, Case("norms-model-not-cached-offline", [*NORMS, *OUT, "-m", "made-up-org/no-such-model-13"],
                         Error("not in the local Hugging Face cache and the hub is offline"), comments),
        patch=lambda mp, tmp: mp.setattr("socialsynth.llm.loading.hub_offline", lambda: True)),
    Env(norms_main, Case("norms-model-folder-without-a-model", [*NORMS, *OUT, "-m", "{tmp}"],
                         Error("not a saved model folder"), comments)),
    Env(norms_main, Case("norms-embedding-model-not-cached-offline",
                         [*BASE, *OUT, "--embedding-model", "made-up-org/no-embedder-13"],
                         Error("--embedding-model"), comments),
        patch=both(fake_backend, lambda mp, tmp: mp.setattr("socialsynth.llm.loading.hub_offline", lambda: True))),
    Env(norms_main, Case("norms-embedding-model-path-missing",
                         [*BASE, *OUT, "--embedding-model", "./no-such-embedder"],
                         Error("no-such-embedder: no such folder"), comments), patch=fake_backend),
    # ---- devices this machine does not have: refused while parsing, for every job with the model flags
    *[
        Env(main, Case(f"{name}-device-{device}", [*argv, "--device", device], Error("--device"), setup),
            unless=HAS_CUDA and device.startswith("cuda"), why="this machine has a GPU")
        for name, main, argv, setup, device in [
            ("norms", norms_main, [*NORMS, *OUT], comments, "cuda"),
            ("norms", norms_main, [*NORMS, *OUT], comments, "mps"),
            ("norms", norms_main, [*NORMS, *OUT], comments, "gpu"),
            ("train", train_main, [*TRAIN, *OUT], labelled, "cuda"),
            ("train", train_main, [*TRAIN, *OUT], labelled, "cuda:3"),
            ("augment", augment_main, [], None, "cuda"),
            ("rephrase", rephrase_main, [], None, "cuda:1"),
            ("instruct", instruct_main, [], None, "cuda"),
            ("response-train", response_main, ["train", *OUT], None, "cuda"),
            ("response-infer", response_main, ["infer", *OUT], None, "mps"),
        ]
    ],
    # ---- secrets: a key echoed by the server, credentials in --api-base
    Env(norms_main, Case("norms-server-echoes-the-key", [*NORMS, *OUT, *OPENAI, "--api-base", "http://{server}/v1"],
                         Error("HTTP 401"), comments), server="refuse", check=no_secret_anywhere),
    Env(norms_main, Case("norms-credentials-in-api-base-refused",
                         [*NORMS, *OUT, *OPENAI, "--api-base", f"http://alice:{PASSWORD}@{{server}}/v1"],
                         Error("http://***@127.0.0.1"), comments), server="refuse",
        check=credentials_recorded_redacted),
    Env(norms_main, Case("norms-credentials-in-api-base-used",
                         [*NORMS, *OUT, *OPENAI, "--api-base", f"http://alice:{PASSWORD}@{{server}}/v1",
                          "--rating-method", "generate"], Skip("sub_formality.jsonl"), comments),
        server="answer", check=credentials_recorded_redacted),
    Env(norms_main, Case("norms-redacted-api-base-from-a-record",
                         [*NORMS, *OUT, *OPENAI, "--api-base", "http://***@{server}/v1"],
                         Error("credentials were redacted"), comments), server="answer"),
]


@pytest.mark.parametrize("env", [pytest.param(e, id=e.case.id) for e in CASES])
def test_environment(env: Env, hostile, monkeypatch, tmp_path, run_cli):
    if env.unless:
        pytest.skip(env.why)
    monkeypatch.setattr(provenance, "_secrets", set())
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    case = env.case
    server = FakeServer(refuse=env.server == "refuse") if env.server else None
    try:
        if server is not None:
            case = replace(case, argv=[a.replace("{server}", server.host) for a in case.argv])
        if env.patch is not None:
            env.patch(monkeypatch, tmp_path)
        _, out, err = hostile(env.main, case)
    finally:
        if server is not None:
            server.close()
    if env.check is not None:
        monkeypatch.undo()  # (reading back what was written needs the real file system)
        env.check(tmp_path, out + err)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 15
    assert len({e.case.id for e in CASES}) == len(CASES)


def test_a_full_disk_then_freed_space_resumes_every_record_once(hostile, monkeypatch, tmp_path, run_cli):
    """ENOSPC while writing records: exit 1 with the hint; once there is space again, the same command resumes
    and writes every record exactly once."""
    monkeypatch.chdir(tmp_path)
    values = comments(tmp_path, n=5)
    argv = [a.format(tmp=tmp_path, **values) for a in [*NORMS, *OUT, "-b", "2"]]
    fake_backend(monkeypatch, tmp_path)
    real = os.fsync
    calls = {"jsonl": 0}

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
            calls["jsonl"] += 1
            if calls["jsonl"] == 2:  # the first chunk is on disk; the second lands torn, then the disk is full
                os.ftruncate(fd, os.fstat(fd).st_size - 7)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, _, err = run_cli(norms_main, argv)
    assert code == 1 and "free space and rerun the same command to resume" in err and "Traceback" not in err, err
    monkeypatch.setattr(os, "fsync", real)
    code, _, err = run_cli(norms_main, argv)
    assert code == 0, err
    ids = [json.loads(line)["id"] for line in (tmp_path / "out" / "sub_formality.jsonl").read_text().splitlines()]
    assert sorted(ids) == [f"c{i}" for i in range(5)]
