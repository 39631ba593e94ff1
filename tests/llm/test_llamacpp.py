"""`--backend llamacpp`: llama.cpp's llama-server started and stopped by the backend, checked against transformers.

The real-server tests run the embedded model's transformers checkpoint converted to a bf16 GGUF (the very weights
HFBackend runs), so prompt log-probabilities, ratings and perplexity must agree with HFBackend's up to bf16
rounding; a one-token shift in the pairing of tokens with logits (what llama-cpp-python's server did for models
without BOS) would move perplexities by a factor, far beyond the tolerances. They skip, with the reason, when the
llama-server binary is not built (`make install-llama-server`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from socialsynth.core.errors import InputError
from socialsynth.llm import GenerationParams, load_backend
from socialsynth.llm import llamacpp as lc

needs_server = pytest.mark.skipif(lc.find_server() is None, reason=lc.missing_server_reason())


def chat(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are a careful annotator."}, {"role": "user", "content": text}]


RATING = chat("How formal is this comment, from 1 (very informal) to 5 (very formal)? Answer with one digit.\n\n"
              "Comment: hey dude wanna grab a beer later lol")
TEXTS = ["The committee will publish its findings next week.", "mat the on sat cat The quickly purple",
         "honestly idk what ppl see in that show lol"]
EMOJI = "Good luck either way 🤞 you got this"  # the emoji is three byte tokens, which are not scored


def test_the_backend_is_registered_and_its_flags_are_checked(monkeypatch, tmp_path):
    from socialsynth.llm.args import ModelArgs

    assert ModelArgs(backend="llamacpp").spec().backend == "llamacpp"
    monkeypatch.setenv(lc.SERVER_ENV, str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(InputError, match="make install-llama-server"):
        load_backend("llamacpp", "embedded")
    with pytest.raises(InputError, match="-q 4 needs a quantized GGUF"):
        lc.outtype_for("auto", 4)
    assert lc.outtype_for("fp16") == "f16" and lc.outtype_for("auto", 8) == "q8_0"
    assert lc.forced_grammar([5, 17]) == "root ::= <[5]> <[17]>"


def test_a_gguf_path_is_used_as_it_is_and_a_missing_one_refused(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert lc.model_gguf(str(gguf)) == gguf
    with pytest.raises(InputError, match="no such GGUF"):
        lc.model_gguf(str(tmp_path / "absent.gguf"))
    with pytest.raises(InputError, match="not a transformers checkpoint"):
        lc.convert_to_gguf(tmp_path)
    # the jobs' model check takes a GGUF file for --backend llamacpp, and only there
    from socialsynth.llm.loading import check_model_available

    check_model_available(str(gguf), backend="llamacpp")
    with pytest.raises(InputError, match="not a saved model folder"):
        check_model_available(str(gguf), backend="hf")


def test_the_normness_job_takes_a_gguf_file_with_the_llamacpp_backend(tmp_path):
    from socialsynth.core.config import parse
    from socialsynth.jobs.norms.config import NormsConfig
    from socialsynth.jobs.norms.job import check_models

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    argv = ["-r", "askmen", "-n", "formality", "-m", str(gguf), "--embedding-model", "none", "-o", str(tmp_path)]
    check_models(parse(NormsConfig, [*argv, "--backend", "llamacpp"]))
    with pytest.raises(InputError, match="not a saved model folder"):
        check_models(parse(NormsConfig, argv))


@pytest.fixture(scope="module")
def pair():
    """(llamacpp backend on the embedded checkpoint as bf16 GGUF, HFBackend on the same checkpoint in fp32)."""
    if lc.find_source() is None:
        pytest.skip("llama.cpp's source (for convert_hf_to_gguf.py) is not unpacked: make install-llama-server")
    from socialsynth.llm.embedded import embedded_checkpoint
    from socialsynth.llm.hf import HFBackend

    checkpoint = embedded_checkpoint()
    server = lc.LlamaCppBackend(str(checkpoint), max_batch_size=2, max_batch_tokens=4096, threads=1)
    try:
        yield server, HFBackend(str(checkpoint), device="cpu", dtype="fp32")
    finally:
        server.close()


@needs_server
@pytest.mark.slow
def test_perplexity_matches_transformers(pair):
    server, hf = pair
    ours, reference = server.perplexity([*TEXTS, EMOJI]), hf.perplexity([*TEXTS, EMOJI])
    for got, want in zip(ours[:-1], reference[:-1], strict=True):
        assert got == pytest.approx(want, rel=0.05)
    assert ours[0] < ours[1]  # word salad is less fluent
    assert reference[-1] / 3 < ours[-1] < reference[-1] * 3  # a value, not an error: its byte tokens are left out
    assert server.stats.scored_tokens > 0


@needs_server
@pytest.mark.slow
def test_ratings_and_likelihoods_match_transformers(pair):
    server, hf = pair
    choices = ["1", "2", "3", "4", "5"]
    got, want = server.score_choices([RATING], choices)[0], hf.score_choices([RATING], choices)[0]
    assert got.probs == pytest.approx(want.probs, abs=0.03)
    assert got.mass == pytest.approx(want.mass, abs=0.03)
    continuations = ["2", "This comment is very informal: 1.", EMOJI]
    got_ll = server.score_continuations([RATING] * 3, continuations)
    want_ll = hf.score_continuations([RATING] * 3, continuations)
    for g, w in zip(got_ll[:2], want_ll[:2], strict=True):
        assert g == pytest.approx(w, abs=0.15 + 0.02 * abs(w))
    assert want_ll[2] < got_ll[2] < 0  # the emoji's byte tokens are left out of the sum


@needs_server
@pytest.mark.slow
def test_generation_is_seeded_and_described(pair):
    server, _ = pair
    params = GenerationParams(temperature=0.7, top_p=0.9, repetition_penalty=1.1, max_new_tokens=12, seed=3)
    first = server.generate([chat("Say hello."), chat("Name a colour.")], params, keys=["a", "b"])
    assert all(c.text and c.finish_reason in ("stop", "length") and 0 < c.n_new_tokens <= 12 for c in first)
    again = server.generate([chat("Say hello.")], params, keys=["a"])
    assert again[0].text == first[0].text
    info = server.describe()
    assert info["backend"] == "llamacpp" and info["gguf"].endswith("-bf16.gguf") and info["parallel"] == 2


STARTER = """
import sys, time
from socialsynth.llm import GenerationParams
from socialsynth.llm.llamacpp import LlamaCppBackend
backend = LlamaCppBackend("embedded", max_batch_size=2, max_batch_tokens=2048, threads=1)
print(backend.server.proc.pid, flush=True)
if sys.argv[1] == "close":
    backend.close()
    print("closed", flush=True)
elif sys.argv[1] == "busy":  # the main thread waits on requests in flight when SIGTERM comes
    chat = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    backend.generate([chat] * 64, GenerationParams(temperature=1.0, repetition_penalty=1.0, max_new_tokens=900))
else:
    time.sleep(600)
"""


def _gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie of an already-dead parent is reaped by init; ours: look at its state
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@needs_server
@pytest.mark.parametrize("how", ["close", "sigterm", "busy", "sigkill"])
def test_the_server_stops_with_the_job(how):
    """close() stops it; SIGTERM to the job stops it (and the job still dies of SIGTERM), also while the job waits
    on requests in flight; even SIGKILL to the job does (the kernel's parent-death signal)."""
    job = subprocess.Popen([sys.executable, "-c", STARTER, how], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        server_pid = int(job.stdout.readline())
        if how == "close":
            assert job.stdout.readline().strip() == "closed"
        else:
            if how == "busy":
                time.sleep(2)  # the requests are on the wire
            job.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
        status = job.wait(60)
        expected = {"close": 0, "sigterm": -signal.SIGTERM, "busy": -signal.SIGTERM, "sigkill": -signal.SIGKILL}
        assert status == expected[how]
        assert _gone(server_pid), f"llama-server {server_pid} outlived the job ({how})"
    finally:
        if job.poll() is None:
            job.kill()

