"""The `openai` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp server, a hosted API).

This is how a job drives a multi-GPU or multi-node deployment: the server batches, this process keeps many
requests in flight (`concurrency` threads over one HTTP client) and puts the answers back in input order.

What it does over plain HTTP, and why:
- Retries with exponential backoff (honouring `Retry-After`) on 408/409/429/5xx, timeouts and refused
  connections, so a busy or restarting server slows a job down instead of killing it. The retry loop is ours
  (the SDK's own is turned off) so the number of tries is known, tests can shorten the waits, and the job can
  stop every request at once when the server is gone for good (`BackendUnavailable`: exit 1, rerun resumes).
- A 4xx about one request (prompt too long, bad parameter) fails only that request: its Completion has
  finish_reason "error" and the server's message, and the job goes on. 401/403/404 concern every request
  (wrong key, model or URL) and stop the job with one line.
- Per-request seeds (`request_seed(job seed, request key)`, 31 bits) where the server honours `seed`.
- Ratings by forward pass become the `top_logprobs` of the first answer token; perplexity comes from
  `/completions` with `echo` and `logprobs` (vLLM and llama.cpp's server return prompt log-probabilities,
  hosted APIs mostly do not). What the server cannot do raises `Unsupported` once, with the flag to use instead.
- The API key is read from an environment variable and handed to the client only: it never appears in
  `describe()`, metadata, logs or error messages. It is registered as a secret (as are user:password@ in the URL),
  so a server that echoes it back has it masked in every message relayed from it (`_error_text`, run_main).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import unquote, urlsplit

from socialsynth.core.errors import InputError
from socialsynth.core.provenance import mask_secrets, redact_url, register_secret
from socialsynth.llm.base import (
    Backend,
    BackendUnavailable,
    Chat,
    ChoiceScores,
    Completion,
    GenerationParams,
    GenerationStats,
    Progress,
    Prompt,
    Unsupported,
)
from socialsynth.llm.embedded import EMBEDDED_NAME

log = logging.getLogger(__name__)

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx
JOB_STATUSES = {401: "--api-key-env", 403: "--api-key-env", 404: "-m/--model or --api-base"}
TOP_LOGPROBS = 20  # the most the OpenAI API allows
SEED_MASK = 0x7FFF_FFFF  # servers take a 32-bit signed seed


class RequestFailed(Exception):
    """One request was refused by the server (a 4xx other than 401/403/404/408/409/429)."""


class _ShiftedEcho(Exception):
    """llama-cpp-python's echoed log-probabilities are misaligned for this model (see OpenAIBackend.perplexity)."""


class _Aborted(Exception):
    """Another request of the same call already failed for good; stop retrying."""


def normalise_api_base(url: str) -> str:
    """`http://host:8000` -> `http://host:8000/v1` (what vLLM, SGLang and llama.cpp serve); a URL with a path is
    kept as given (hosted APIs have their own)."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"expected an http(s) URL like http://127.0.0.1:8000/v1, got {url!r}", field="--api-base")
    return url if parts.path not in ("", "/") else url + "/v1"


def backoff_delay(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds to wait before try `attempt + 1`: the server's Retry-After when it gives a sane one, else
    base * 2^(attempt-1) with up to 25% jitter (so many threads do not retry in lockstep), at most `cap`."""
    if retry_after is not None and math.isfinite(retry_after) and 0 <= retry_after <= 120:
        return retry_after
    return min(cap, base * 2 ** (attempt - 1)) * (1 - 0.25 * random.random())


def parse_retry_after(headers) -> float | None:
    """Retry-After in seconds (`retry-after-ms` first, then `retry-after` as seconds); None if absent or a date."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) / scale
            except ValueError:
                continue
    return None


# The servers' names for the repetition penalty: llama.cpp (and llama-cpp-python, whose /models says
# owned_by "me") read `repeat_penalty`; vLLM and SGLang read `repetition_penalty`.
LLAMACPP_OWNERS = ("llamacpp", "llama.cpp", "me")


def sampling_kwargs(params: GenerationParams, seed: int, penalty_name: str | None = "repetition_penalty") -> dict:
    """Chat-completion arguments for GenerationParams: standard fields, plus `top_k` and the repetition penalty
    (under the server's name for it; None = do not send) in `extra_body`. 0 and 1.0 mean off and are left out."""
    kwargs: dict[str, Any] = {
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "seed": seed,
        "stream": False,
    }
    if params.temperature > 0 and params.top_p < 1.0:
        kwargs["top_p"] = params.top_p
    extra = {}
    if params.top_k > 0:
        extra["top_k"] = params.top_k
    if params.repetition_penalty != 1.0 and penalty_name:
        extra[penalty_name] = params.repetition_penalty
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def choice_scores_from_top_logprobs(top: Sequence[tuple[str, float]], choices: Sequence[str]) -> ChoiceScores:
    """Map (token, logprob) pairs of the first answer token onto one-token choices.

    Tokens are compared without surrounding spaces ("3", " 3" and "3\\n" all count for choice "3"), their
    probabilities summed; `probs` are renormalised over the choices and `mass` is what the choices held. When
    no choice is among the top tokens, probs are uniform and mass is 0.
    """
    wanted = {c.strip(): i for i, c in enumerate(choices)}
    sums = [0.0] * len(choices)
    for token, logprob in top:
        i = wanted.get(str(token).strip())
        if i is not None and logprob is not None:
            sums[i] += math.exp(logprob)
    mass = sum(sums)
    if mass <= 0:
        return ChoiceScores([1.0 / len(choices)] * len(choices), 0.0)
    return ChoiceScores([s / mass for s in sums], min(mass, 1.0))


def perplexity_from_echo(token_logprobs: Sequence[float | None], n_prompt: int) -> float:
    """Perplexity of the prompt from echoed log-probabilities: the first `n_prompt` entries (the rest are the
    generated token), skipping the first token's None."""
    values = [v for v in list(token_logprobs)[:n_prompt] if v is not None]
    if not values:
        return math.nan
    return math.exp(-sum(values) / len(values))


class OpenAIBackend(Backend):
    """Generation and rating through an OpenAI-compatible HTTP server.

    Args:
        model: the model name the server knows; "embedded" (the default of every script) or "" asks the
            server (`/models`) and uses the model it serves.
        api_base: the server's URL, e.g. http://127.0.0.1:8000/v1 (required).
        api_key_env: environment variable holding the key; a local server needs none ("EMPTY" is sent).
        concurrency: requests in flight at once.
        request_timeout: seconds one request may take.
        max_retries: retries per request after the first try (so max_retries + 1 tries).
        retry_base_delay, retry_max_delay: backoff schedule in seconds (base * 2^n with jitter, capped).
    """

    seed_mask = SEED_MASK

    def __init__(
        self,
        model: str = EMBEDDED_NAME,
        api_base: str | None = None,
        api_key_env: str = DEFAULT_KEY_ENV,
        concurrency: int = 16,
        request_timeout: float = 600.0,
        max_retries: int = 5,
        retry_base_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        **_ignored,
    ):
        if not api_base:
            raise InputError(
                "--backend openai needs the server's URL: --api-base http://HOST:PORT/v1 (or set OPENAI_BASE_URL)",
                field="--api-base",
            )
        try:
            import openai
        except ImportError as e:
            raise InputError("--backend openai needs the openai package: pip install openai") from e
        if concurrency < 1:
            raise InputError(f"must be at least 1, got {concurrency}", field="--concurrency")
        if max_retries < 0:
            raise InputError(f"must be 0 or more, got {max_retries}", field="--max-retries")
        self._openai = openai
        self._url = normalise_api_base(api_base)  # used for requests; may hold user:password@
        self.api_base = redact_url(self._url)  # shown in provenance, logs and errors
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env)
        register_secret(key)  # masked in every message relayed from the server (some echo the key they refused)
        parts = urlsplit(self._url)
        secret = parts.password or parts.username  # a user name alone is a token (https://TOKEN@host)
        register_secret(unquote(secret) if secret else None)
        self.concurrency = concurrency
        self.request_timeout = request_timeout
        self.tries = max_retries + 1
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.stats = GenerationStats()
        self.stats.extra.update(request_errors=0, retries=0)
        self._client = openai.OpenAI(
            base_url=self._url,
            api_key=key or "EMPTY",
            timeout=request_timeout,
            max_retries=0,  # our loop retries (see module docstring)
        )
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._no_logprobs: str | None = None  # cached "the server returns no logprobs" answers
        self._no_echo: str | None = None
        self.requested_model = model
        self.owned_by: str | None = None  # what /models says about the server (llama.cpp, vllm, ...)
        self.name = self._served_model(model)
        self.penalty_name = "repeat_penalty" if self.owned_by in LLAMACPP_OWNERS else "repetition_penalty"
        self.send_extras = True  # top_k / repetition penalty; off after a server rejects them (hosted APIs)

    # -- requests ---------------------------------------------------------------------------------------
    def _served_model(self, model: str) -> str:
        """Ask /models once: it checks the server is there before the job starts, tells which server it is
        (for the penalty's field name), and gives the model for the default `-m embedded`."""
        wanted = model if model and model != EMBEDDED_NAME else None
        try:
            page = self._call(lambda: self._client.models.list())
        except (RequestFailed, InputError) as e:  # some hosted APIs do not list models (404)
            missing = isinstance(e, RequestFailed) or e.field == JOB_STATUSES[404]
            if wanted and missing:
                return wanted
            raise
        entries = list(getattr(page, "data", []) or [])
        ids = [m.id for m in entries]
        chosen = next((m for m in entries if m.id == wanted), entries[0] if entries else None)
        self.owned_by = getattr(chosen, "owned_by", None)  # (None when the server lists nothing)
        if wanted:
            return wanted
        if not ids:
            raise InputError(f"the server at {self.api_base} lists no model; name one with -m", field="-m/--model")
        if len(ids) > 1:
            log.warning("the server at %s serves %d models; using %s (choose with -m)", self.api_base, len(ids), ids[0])
        log.info("model from the server: %s", ids[0])
        return ids[0]

    def _call(self, request: Callable[[], Any]) -> Any:
        """Run one request with retries. Raises RequestFailed (this request only), InputError (every request
        would fail), BackendUnavailable (no answer after every try) or _Aborted (another request gave up)."""
        errors = self._openai
        last = ""
        for attempt in range(1, self.tries + 1):
            if self._abort.is_set():
                raise _Aborted
            retry_after = None
            try:
                return request()
            except errors.APIConnectionError as e:  # refused, reset, timed out (APITimeoutError is a subclass)
                last = "timed out" if isinstance(e, errors.APITimeoutError) else "connection failed"
            except errors.APIStatusError as e:
                status = e.status_code
                message = _error_text(e)
                if status in JOB_STATUSES:
                    raise InputError(
                        f"the server at {self.api_base} answered HTTP {status}: {message}", field=JOB_STATUSES[status]
                    ) from None
                if (status not in RETRY_STATUSES and status < 500) or _about_logprobs(message):
                    # a refusal of this request, or of a feature (llama-cpp-python answers 500 "logprobs is not
                    # supported ..." when started with --logits_all false): asking again would not help
                    raise RequestFailed(f"HTTP {status}: {message}") from None
                last = f"HTTP {status}: {message}"
                retry_after = parse_retry_after(getattr(e.response, "headers", None))
            if attempt < self.tries:
                delay = backoff_delay(attempt, self.retry_base_delay, self.retry_max_delay, retry_after)
                with self._lock:
                    self.stats.extra["retries"] += 1
                log.debug("request failed (%s); try %d of %d in %.2f s", last, attempt + 1, self.tries, delay)
                if self._abort.wait(delay):
                    raise _Aborted
        raise BackendUnavailable(f"server at {self.api_base} not reachable after {self.tries} tries (last: {last})")

    def _map(self, fn: Callable[[int], Any], n: int, progress: Progress | None = None) -> list:
        """fn(0..n-1) with `concurrency` in flight; results in input order. The first fatal error stops the
        other requests (no new tries) and is raised."""
        if n == 0:
            return []
        self._abort.clear()
        results: list = [None] * n
        if self.concurrency == 1 or n == 1:
            for i in range(n):
                results[i] = fn(i)
                if progress:
                    progress(1)
            return results
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, n), thread_name_prefix="openai")
        futures = {pool.submit(fn, i): i for i in range(n)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in done:
                    error = f.exception()
                    if error is not None and not isinstance(error, _Aborted):
                        raise error
                    results[futures[f]] = f.result()
                    if progress:
                        progress(1)
        except BaseException:
            self._abort.set()  # retry loops stop; requests already on the wire finish or time out
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results

    # -- the Backend interface -------------------------------------------------------------------------
    def _generate(self, chats: Sequence[Chat], params: GenerationParams, keys: list[str], seeds: list[int],
                  progress: Progress | None) -> list[Completion]:
        try:
            return self._map(lambda i: self._complete(chats[i], params, keys[i], seeds[i]), len(chats), progress)
        finally:
            self.stats.batches += 1

    def _complete(self, chat: Prompt, params: GenerationParams, key: str, seed: int) -> Completion:
        """One chat completion, or for a raw string one text completion (`/completions`: the server applies no
        chat template). A request the server refuses becomes a Completion with finish_reason "error"; a server
        that rejects top_k / the repetition penalty is asked again without them (and from then on)."""

        def request():
            kwargs = sampling_kwargs(params, seed, self.penalty_name if self.send_extras else None)
            if not self.send_extras:
                kwargs.pop("extra_body", None)
            if isinstance(chat, str):
                return self._client.completions.create(model=self.name, prompt=chat, **kwargs)
            return self._client.chat.completions.create(model=self.name, messages=chat, **kwargs)

        try:
            try:
                resp = self._call(request)
            except RequestFailed as e:
                if not _rejects_extras(str(e)):  # (another thread may have turned the extras off already)
                    raise
                self._drop_extras(str(e))
                resp = self._call(request)
        except InputError as e:
            if isinstance(chat, str) and e.field == JOB_STATUSES[404]:  # chat-only APIs have no /completions
                raise InputError(f"{e.message}; a raw prompt needs the server's /completions endpoint: use "
                                 "--prompt-format chat (or check -m and --api-base)", field="--prompt-format") from None
            raise
        except RequestFailed as e:
            with self._lock:
                self.stats.extra["request_errors"] += 1
            log.warning("request %s failed: %s", key, e)
            return Completion("", 0, 0, "error", seed, error=str(e))
        choice = resp.choices[0]
        usage = resp.usage
        n_prompt = getattr(usage, "prompt_tokens", None) or 0
        n_new = getattr(usage, "completion_tokens", None) or 0
        reason = choice.finish_reason or "stop"
        text = choice.text if isinstance(chat, str) else choice.message.content
        return Completion((text or "").strip(), n_prompt, n_new, reason, seed)

    def score_choices(self, chats: Sequence[Chat], choices: Sequence[str]) -> list[ChoiceScores]:
        """Probabilities of one-token answers from `top_logprobs` of the first answer token (one request each,
        greedy, one token). Raises Unsupported when the server returns no logprobs (asked once, then cached)."""
        if self._no_logprobs:
            raise Unsupported(self._no_logprobs)
        if not chats:
            return []
        t0 = time.perf_counter()
        kwargs = {"max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_LOGPROBS, "seed": 0}

        def one(i: int) -> ChoiceScores:
            if self._no_logprobs:
                raise Unsupported(self._no_logprobs)
            try:
                resp = self._call(
                    lambda: self._client.chat.completions.create(model=self.name, messages=chats[i], **kwargs)
                )
            except RequestFailed as e:
                if _about_logprobs(str(e)):
                    self._no_logprobs = (
                        f"the server at {self.api_base} refuses logprobs ({e}), so ratings cannot be read from "
                        "answer probabilities: use --rating-method generate"
                    )
                    raise Unsupported(self._no_logprobs) from None
                with self._lock:
                    self.stats.extra["request_errors"] += 1
                log.warning("rating request %d failed (uniform probabilities, mass 0): %s", i, e)
                return ChoiceScores([1.0 / len(choices)] * len(choices), 0.0)
            top = _first_top_logprobs(resp.choices[0])
            if top is None:
                self._no_logprobs = (
                    f"the server at {self.api_base} returns no logprobs for chat completions, so ratings cannot be "
                    "read from answer probabilities: use --rating-method generate"
                )
                raise Unsupported(self._no_logprobs)
            with self._lock:
                self.stats.scored_tokens += getattr(resp.usage, "prompt_tokens", None) or 0
            return choice_scores_from_top_logprobs(top, choices)

        try:
            if self._no_logprobs is None and len(chats) > 1:
                first = self._map(one, 1)  # learn whether logprobs come back before sending the rest
                return first + self._map(lambda i: one(i + 1), len(chats) - 1)
            return self._map(one, len(chats))
        finally:
            self.stats.scoring_seconds += time.perf_counter() - t0

    def score_continuations(self, chats: Sequence[Chat], continuations: Sequence[str]) -> list[float]:
        """Not over HTTP: it needs the log-probabilities of an assistant answer inside the chat template, and
        chat endpoints do not echo prompts (the `completions` endpoint would need the template rendered here)."""
        raise Unsupported(
            "--backend openai cannot score a comment's likelihood under a chat prompt (chat endpoints do not return "
            "prompt log-probabilities): use --rating-method logits, or generate"
        )

    def perplexity(self, texts: Sequence[str]) -> list[float]:
        """Perplexity from `/completions` with echo=True and logprobs (prompt log-probabilities). Raises
        Unsupported when the server gives none (asked once with a probe, then cached)."""
        if self._no_echo:
            raise Unsupported(self._no_echo)
        if not texts:
            return []
        t0 = time.perf_counter()
        kwargs = {"max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1, "seed": 0}

        def one(text: str) -> float:
            resp = self._call(lambda: self._client.completions.create(model=self.name, prompt=text, **kwargs))
            with self._lock:
                self.stats.scored_tokens += getattr(resp.usage, "prompt_tokens", None) or 0
            lp = getattr(resp.choices[0], "logprobs", None)
            token_logprobs = getattr(lp, "token_logprobs", None) if lp is not None else None
            if not token_logprobs:
                return math.nan
            n_prompt = getattr(resp.usage, "prompt_tokens", None) or max(len(token_logprobs) - 1, 0)
            if self.owned_by in LLAMACPP_OWNERS:
                # llama-cpp-python drops a leading BOS from the echo and pairs each token with the logits of its
                # own position. With a BOS that is the right pairing (one entry fewer); without one every value
                # is shifted by a token, which the probe detects (the echo then spells the prompt exactly).
                if "".join(getattr(lp, "tokens", None) or []) == text:
                    raise _ShiftedEcho
                n_prompt -= 1
            return perplexity_from_echo(token_logprobs, n_prompt)

        try:
            if self._no_echo is None:
                self._probe_echo(one)

            def safe(i: int) -> float:
                try:
                    return one(texts[i])
                except RequestFailed as e:
                    with self._lock:
                        self.stats.extra["request_errors"] += 1
                    log.warning("perplexity request %d failed (nan): %s", i, e)
                    return math.nan

            return self._map(safe, len(texts))
        finally:
            seconds = time.perf_counter() - t0
            self.stats.scoring_seconds += seconds
            self.stats.extra["perplexity_seconds"] = round(self.stats.extra.get("perplexity_seconds", 0.0) + seconds, 3)

    def _probe_echo(self, one: Callable[[str], float]) -> None:
        """Ask once whether `/completions` echoes prompt log-probabilities; cache a refusal."""
        hint = "pass --max-perplexity 0 to turn the fluency (perplexity) filter off"
        try:
            value = self._map(lambda _i: one("The quick brown fox jumps over the lazy dog."), 1)[0]
        except _ShiftedEcho:
            self._no_echo = (
                f"the server at {self.api_base} (llama-cpp-python) echoes log-probabilities shifted by one token for "
                f"models without a BOS token, so perplexities would be wrong: {hint}"
            )
            raise Unsupported(self._no_echo) from None
        except RequestFailed as e:
            self._no_echo = f"the server at {self.api_base} refused /completions with echo and logprobs ({e}): {hint}"
            raise Unsupported(self._no_echo) from None
        except InputError as e:  # 404: no /completions endpoint
            self._no_echo = f"the server at {self.api_base} has no /completions with echo ({e.message}): {hint}"
            raise Unsupported(self._no_echo) from None
        if math.isnan(value):
            self._no_echo = f"the server at {self.api_base} returns no prompt log-probabilities: {hint}"
            raise Unsupported(self._no_echo)

    def _drop_extras(self, message: str) -> None:
        with self._lock:
            if self.send_extras:
                self.send_extras = False
                log.warning(
                    "the server rejects top_k/repetition penalty (%s); sending only standard sampling fields", message
                )

    def describe(self) -> dict:
        """Provenance: backend, model, server URL and kind. Never the key (nor the variable's value)."""
        info = {"backend": "openai", "model": self.name, "api_base": self.api_base, "server": self.owned_by}
        if self.requested_model != self.name:
            info["model_requested"] = self.requested_model
        if not self.send_extras:
            info["ignored_sampling_fields"] = ["top_k", "repetition_penalty"]
        return info


def _about_logprobs(message: str) -> bool:
    """Whether a server error is about log-probabilities (a feature it does not offer), not about one request."""
    lowered = message.lower()
    return "logprob" in lowered or "logits" in lowered or "echo" in lowered


def _rejects_extras(message: str) -> bool:
    """Whether a 400 is about our non-standard sampling fields (a hosted API that validates strictly)."""
    lowered = message.lower()
    return any(name in lowered for name in ("top_k", "repetition_penalty", "repeat_penalty"))


def _first_top_logprobs(choice) -> list[tuple[str, float]] | None:
    """(token, logprob) pairs for the first generated token, or None if the server sent no logprobs."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if not content:
        return None
    first = content[0]
    top = getattr(first, "top_logprobs", None) or []
    pairs = [(t.token, t.logprob) for t in top]
    if not pairs and getattr(first, "token", None) is not None:
        pairs = [(first.token, first.logprob)]
    return pairs or None


def _error_text(error) -> str:
    """The server's own message, on one line and short, with every registered secret masked (a server may echo
    the key it refused, or the URL with its password)."""
    body = getattr(error, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        message = message or body.get("detail") or body.get("message")
    text = " ".join(str(message or getattr(error, "message", "") or error).split())
    return mask_secrets(redact_url(text[:2000]))[:300]
