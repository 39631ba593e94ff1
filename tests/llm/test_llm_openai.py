"""The `openai` backend against a tiny fake OpenAI-compatible server on loopback (http.server in a thread):
retries and backoff, per-request errors, order under concurrency, seeds, logprobs, the key kept secret, and a
whole generate_synthetic_data job through it."""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from socialsynth.core.config import group, parse
from socialsynth.core.errors import InputError  # noqa: E402
from socialsynth.llm import BackendSpec, BackendUnavailable, GenerationParams, Unsupported, request_seed  # noqa: E402
from socialsynth.llm.args import ModelArgs, SamplingArgs
from socialsynth.llm.openai_api import (  # noqa: E402
    OpenAIBackend,
    backoff_delay,
    choice_scores_from_top_logprobs,
    normalise_api_base,
    perplexity_from_echo,
    redact_url,
    sampling_kwargs,
)

SECRET = "sk-test-SECRET-do-not-write-0123456789"


class FakeServer:
    """An OpenAI-compatible server whose answers come from `handler(path, body, n)` -> (status, json, headers);
    n counts the requests to that path. Every request is recorded (path, body, headers)."""

    def __init__(self, handler=None):
        self.handler = handler or default_handler
        self.requests: list[tuple[str, dict, dict]] = []
        self.counts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, body):
                with server.lock:
                    server.requests.append((self.path, body, {k.lower(): v for k, v in self.headers.items()}))
                    n = server.counts[self.path] = server.counts.get(self.path, 0) + 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload, headers = server.handler(self.path, body, n)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer({})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                self._answer(json.loads(self.rfile.read(length) or b"{}"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, suffix: str) -> list[dict]:
        return [b for p, b, _ in self.requests if p.endswith(suffix)]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_answer(text: str, finish_reason: str = "stop", logprobs=None, prompt_tokens: int = 7) -> dict:
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-served",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
                "logprobs": logprobs,
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": prompt_tokens + 3},
    }


def default_handler(path, body, n):
    if path.endswith("/models"):
        return (
            200,
            {"object": "list", "data": [{"id": "fake-served", "object": "model", "created": 0, "owned_by": "x"}]},
            {},
        )
    if path.endswith("/chat/completions"):
        return 200, chat_answer(f"echo {body['messages'][-1]['content']} seed={body.get('seed')}"), {}
    return 404, {"error": {"message": "no such endpoint"}}, {}


@pytest.fixture
def server():
    servers = []

    def make(handler=None):
        servers.append(FakeServer(handler))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def backend(url, **kw) -> OpenAIBackend:
    kw.setdefault("retry_base_delay", 0.01)
    kw.setdefault("max_retries", 2)
    return OpenAIBackend(kw.pop("model", "embedded"), api_base=url, **kw)


CHATS = [[{"role": "user", "content": f"comment {i}"}] for i in range(6)]


def test_generate_order_seeds_usage_and_sampling_fields(server):
    srv = server()
    b = backend(srv.url, concurrency=4)
    assert b.name == "fake-served"  # -m embedded: the model the server serves
    params = GenerationParams(temperature=0.7, top_p=0.9, top_k=40, repetition_penalty=1.1, max_new_tokens=20, seed=3)
    keys = [f"id{i}:1" for i in range(6)]
    done = []
    out = b.generate(CHATS, params, keys=keys, progress=done.append)
    seeds = [request_seed(3, k) & 0x7FFFFFFF for k in keys]
    assert [c.text for c in out] == [f"echo comment {i} seed={s}" for i, s in enumerate(seeds)]
    assert [c.seed for c in out] == seeds and sum(done) == 6
    assert all(c.finish_reason == "stop" and c.n_prompt_tokens == 7 and c.n_new_tokens == 3 for c in out)
    assert b.stats.prompt_tokens == 42 and b.stats.new_tokens == 18 and b.stats.seconds > 0
    body = srv.bodies("/chat/completions")[0]
    assert body["model"] == "fake-served" and body["max_tokens"] == 20 and body["stream"] is False
    assert body["top_k"] == 40 and body["repetition_penalty"] == 1.1 and body["top_p"] == 0.9
    # the same keys give the same seeds on a second run (resume, resharding)
    again = b.generate(list(reversed(CHATS)), params, keys=list(reversed(keys)))
    assert [c.seed for c in again] == list(reversed(seeds))


def test_sampling_kwargs_leave_out_what_is_off():
    kw = sampling_kwargs(GenerationParams(temperature=0.0, top_k=0, repetition_penalty=1.0, max_new_tokens=5), 9)
    assert kw == {"max_tokens": 5, "temperature": 0.0, "seed": 9, "stream": False}


def test_penalty_name_follows_the_server_and_strict_servers_get_standard_fields(server):
    def llama(path, body, n):
        if path.endswith("/models"):
            return 200, {"object": "list", "data": [{"id": "g", "object": "model", "owned_by": "me"}]}, {}
        return default_handler(path, body, n)

    srv = server(llama)
    backend(srv.url).generate(CHATS[:1], GenerationParams(repetition_penalty=1.2))
    body = srv.bodies("/chat/completions")[0]
    assert body["repeat_penalty"] == 1.2 and "repetition_penalty" not in body  # llama-cpp-python's name

    def strict(path, body, n):
        if path.endswith("/chat/completions") and ("top_k" in body or "repetition_penalty" in body):
            return 400, {"error": {"message": "Unrecognized request argument supplied: top_k"}}, {}
        return default_handler(path, body, n)

    srv2 = server(strict)
    b = backend(srv2.url, concurrency=3)
    out = b.generate(CHATS, GenerationParams(top_k=5))
    assert all(c.finish_reason == "stop" for c in out) and b.stats.extra["request_errors"] == 0
    assert b.describe()["ignored_sampling_fields"] == ["top_k", "repetition_penalty"]
    assert "top_k" not in srv2.bodies("/chat/completions")[-1]


def test_concurrency_keeps_input_order(server):
    def slow(path, body, n):
        if path.endswith("/chat/completions"):
            i = int(body["messages"][-1]["content"].split()[-1])
            time.sleep(0.02 * (6 - i))  # the first requests answer last
            return 200, chat_answer(f"answer {i}"), {}
        return default_handler(path, body, n)

    srv = server(slow)
    out = backend(srv.url, model="m", concurrency=6).generate(CHATS, GenerationParams())
    assert [c.text for c in out] == [f"answer {i}" for i in range(6)]
    assert srv.max_in_flight > 1


def test_429_is_retried_honouring_retry_after(server):
    def limited(path, body, n):
        if n == 1 and path.endswith("/chat/completions"):
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "0.3"}
        return default_handler(path, body, n)

    srv = server(limited)
    b = backend(srv.url, model="m", retry_base_delay=0.0)
    t0 = time.perf_counter()
    out = b.generate(CHATS[:1], GenerationParams())
    assert out[0].text.startswith("echo comment 0") and b.stats.extra["retries"] == 1
    assert 0.3 <= time.perf_counter() - t0 < 5


def test_5xx_exhausted_raises_backend_unavailable(server):
    def overloaded(path, body, n):
        if path.endswith("/chat/completions"):
            return 503, {"error": {"message": "overloaded"}}, {}
        return default_handler(path, body, n)

    srv = server(overloaded)
    b = backend(srv.url, model="m", max_retries=2, concurrency=4)
    with pytest.raises(BackendUnavailable) as err:
        b.generate(CHATS, GenerationParams())
    assert f"server at {srv.url} not reachable after 3 tries (last: HTTP 503: overloaded)" in str(err.value)
    assert "rerun the same command to resume" in err.value.resume_hint and err.value.exit_code == 1
    assert len(srv.bodies("/chat/completions")) <= 6 * 3


def test_unreachable_server_raises_backend_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(BackendUnavailable, match="not reachable after 2 tries"):
        backend(f"http://127.0.0.1:{port}/v1", model="m", max_retries=1)  # /models at start: fails fast


def test_400_fails_only_that_request(server):
    def picky(path, body, n):
        if path.endswith("/chat/completions") and body["messages"][-1]["content"] == "comment 2":
            return 400, {"error": {"message": "prompt is too long"}}, {}
        return default_handler(path, body, n)

    srv = server(picky)
    b = backend(srv.url, model="m")
    out = b.generate(CHATS, GenerationParams())
    assert out[2].finish_reason == "error" and out[2].text == "" and "prompt is too long" in out[2].error
    assert all(c.finish_reason == "stop" for i, c in enumerate(out) if i != 2)
    assert b.stats.extra["request_errors"] == 1 and len(srv.bodies("/chat/completions")) == 6  # not retried


def test_401_and_404_stop_the_job(server):
    srv = server(lambda path, body, n: (401, {"error": {"message": "bad key"}}, {}))
    with pytest.raises(InputError, match="HTTP 401"):
        backend(srv.url)  # -m embedded asks /models first
    srv2 = server(lambda path, body, n: (404, {"error": {"message": "model nope not found"}}, {}))
    with pytest.raises(InputError, match="not found"):
        backend(srv2.url, model="nope").generate(CHATS[:1], GenerationParams())


def test_key_comes_from_the_environment_and_is_never_shown(server, monkeypatch, caplog):
    monkeypatch.setenv("MY_KEY", SECRET)
    srv = server()
    b = backend(srv.url, api_key_env="MY_KEY")
    b.generate(CHATS[:1], GenerationParams())
    assert srv.requests[-1][2].get("authorization") == f"Bearer {SECRET}"
    assert SECRET not in json.dumps(b.describe()) and SECRET not in caplog.text
    assert b.describe() == {
        "backend": "openai",
        "model": "fake-served",
        "api_base": srv.url,
        "server": "x",
        "model_requested": "embedded",
    }
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    backend(srv.url).generate(CHATS[:1], GenerationParams())
    assert srv.requests[-1][2].get("authorization") == "Bearer EMPTY"  # a local server needs none


def test_choice_scores_mapping():
    top = [(" 4", math.log(0.5)), ("4", math.log(0.1)), ("3", math.log(0.2)), ("The", math.log(0.15))]
    s = choice_scores_from_top_logprobs(top, ["1", "2", "3", "4", "5"])
    assert s.best == 3 and s.mass == pytest.approx(0.8)
    assert s.probs == pytest.approx([0, 0, 0.25, 0.75, 0])
    none = choice_scores_from_top_logprobs([("The", -0.1)], ["1", "2"])
    assert none.probs == [0.5, 0.5] and none.mass == 0.0


def logprob_handler(path, body, n):
    if path.endswith("/chat/completions"):
        assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
        top = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in (("2", 0.6), ("5", 0.2), ("x", 0.1))]
        lp = {"content": [{"token": "2", "logprob": math.log(0.6), "bytes": None, "top_logprobs": top}]}
        return 200, chat_answer("2", "length", lp), {}
    return default_handler(path, body, n)


def test_score_choices_from_logprobs(server):
    srv = server(logprob_handler)
    b = backend(srv.url, model="m", concurrency=3)
    scores = b.score_choices(CHATS[:4], ["1", "2", "3", "4", "5"])
    assert len(scores) == 4 and all(s.best == 1 for s in scores)
    assert scores[0].probs == pytest.approx([0, 0.75, 0, 0, 0.25]) and scores[0].mass == pytest.approx(0.8)
    assert b.stats.scoring_seconds > 0


def test_no_logprobs_raises_unsupported_once(server):
    srv = server()  # answers without logprobs
    b = backend(srv.url, model="m")
    with pytest.raises(Unsupported, match="--rating-method generate"):
        b.score_choices(CHATS, ["1", "2", "3", "4", "5"])
    asked = len(srv.requests)
    assert len(srv.bodies("/chat/completions")) == 1  # one probe, not one request per chat
    with pytest.raises(Unsupported):
        b.score_choices(CHATS, ["1", "2"])
    assert len(srv.requests) == asked  # cached
    with pytest.raises(Unsupported, match="--rating-method logits"):
        b.score_continuations(CHATS[:1], ["x"])


def test_a_server_refusing_logprobs_is_unsupported_without_retries(server):
    def refuses(path, body, n):
        if body.get("logprobs"):
            return 500, {"error": {"message": "logprobs is not supported for models created with logits_all=False"}}, {}
        return default_handler(path, body, n)

    srv = server(refuses)
    b = backend(srv.url, model="m", max_retries=3)
    with pytest.raises(Unsupported, match="refuses logprobs"):
        b.score_choices(CHATS, ["1", "2"])
    with pytest.raises(Unsupported, match="--max-perplexity 0"):
        b.perplexity(["text"])
    assert len(srv.requests) == 3 and b.stats.extra["retries"] == 0  # /models + one probe each


def test_perplexity_from_completions_echo(server):
    def echo(path, body, n):
        if path.endswith("/completions") and not path.endswith("chat/completions"):
            assert body["echo"] is True and body["logprobs"] == 1
            lp = {"tokens": ["a", "b", "c", "d"], "token_logprobs": [None, -1.0, -2.0, -9.0], "top_logprobs": None}
            choice = {"index": 0, "text": "abcd", "finish_reason": "length", "logprobs": lp}
            usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
            return (
                200,
                {
                    "id": "c",
                    "object": "text_completion",
                    "created": 0,
                    "model": "m",
                    "choices": [choice],
                    "usage": usage,
                },
                {},
            )
        return default_handler(path, body, n)

    srv = server(echo)
    values = backend(srv.url, model="m").perplexity(["one text", "two"])
    assert values == pytest.approx([math.exp(1.5)] * 2)
    assert perplexity_from_echo([None], 1) != perplexity_from_echo([None], 1)  # nan


def test_perplexity_unsupported_names_the_flag(server):
    srv = server()  # /completions -> 404
    b = backend(srv.url, model="m")
    with pytest.raises(Unsupported, match="--max-perplexity 0"):
        b.perplexity(["text"])
    asked = len(srv.requests)
    with pytest.raises(Unsupported):
        b.perplexity(["text"])
    assert len(srv.requests) == asked


def test_helpers():
    assert normalise_api_base("http://h:8000") == "http://h:8000/v1"
    assert normalise_api_base("https://api.example.com/v1/") == "https://api.example.com/v1"
    with pytest.raises(InputError, match="--api-base"):
        normalise_api_base("localhost:8000")
    assert redact_url("https://user:pw@api.example.com:8443/v1") == "https://***@api.example.com:8443/v1"
    assert backoff_delay(1, 0.5, 30, retry_after=2.0) == 2.0
    assert 0.375 <= backoff_delay(1, 0.5, 30) <= 0.5 and backoff_delay(10, 0.5, 4) <= 4
    with pytest.raises(InputError, match="--api-base"):
        BackendSpec(backend="openai").load()


@dataclass
class EngineJob:
    """The shared model and sampling flags alone."""

    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs)


def test_cli_flags_build_the_spec(monkeypatch):
    Job = EngineJob
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = parse(Job, "--backend openai --api-base http://h:1/v1 --api-key-env K --concurrency 3 --request-timeout 9 "
                "--max-retries 1 --seed 4 -m served".split())
    spec = cfg.model.spec(seed=cfg.sampling.seed)
    assert (spec.backend, spec.model, spec.api_base, spec.api_key_env) == ("openai", "served", "http://h:1/v1", "K")
    assert (spec.concurrency, spec.request_timeout, spec.max_retries, spec.seed) == (3, 9.0, 1, 4)
    assert cfg.model.spec("other").model == "other"
    with pytest.raises(InputError, match="--api-base"):
        parse(Job, ["--backend", "openai"])
    with pytest.raises(InputError, match="--concurrency"):
        parse(Job, "--backend openai --api-base http://h:1 --concurrency 0".split())


def test_norm_job_through_a_server_without_logprobs(server, tmp_path, monkeypatch, capsys):
    """generate_synthetic_data.py --backend openai with default flags: likelihood -> logits -> generate, the
    fluency filter off (no /completions), all recorded in the meta; the key appears nowhere."""
    import generate_synthetic_data as script

    def answers(path, body, n):
        if path.endswith("/chat/completions"):
            user = body["messages"][-1]["content"]
            if "bad" in user and body.get("max_tokens", 0) > 12:
                return 400, {"error": {"message": "prompt too long"}}, {}
            return 200, chat_answer("Level 4" if body["max_tokens"] <= 12 else "A rewritten comment here."), {}
        return default_handler(path, body, n)

    srv = server(answers)
    data = tmp_path / "sub.jsonl"
    rows = [{"id": f"c{i}", "comment": f"comment number {i}" + (" bad" if i == 1 else "")} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("MY_KEY", SECRET)
    argv = f"-r sub -n formality --input {data} -o {tmp_path} --backend openai --api-base {srv.url} "
    argv += "--api-key-env MY_KEY --embedding-model none --levels 1,5 -b 2 --max-retries 1"
    assert script.main(argv.split()) == 0
    out = capsys.readouterr()
    records = [json.loads(x) for x in (tmp_path / "sub_formality.jsonl").read_text().splitlines()]
    meta = json.loads((tmp_path / "sub_formality.meta.json").read_text())
    assert [r["id"] for r in records] == ["c0", "c1", "c2"]
    assert records[0]["status"] == "ok" and records[0]["rewrite_ratings"] == {"1": 4, "5": 4}
    assert records[1]["status"] == "error" and "prompt too long" in records[1]["error"]
    assert records[0]["provenance"]["rating_method"] == "generate" and records[0]["filters"]["1"]["perplexity"] is None
    assert meta["rating_method_used"] == "generate" and len(meta["rating_method_notes"]) == 3
    assert meta["provenance"]["backend"] == "openai" and meta["provenance"]["api_base"] == srv.url
    everything = (tmp_path / "sub_formality.jsonl").read_text() + json.dumps(meta) + out.out + out.err
    assert SECRET not in everything and "MY_KEY" in json.dumps(meta)  # the variable's name, not its value


def test_stats_count_generated_and_scored_tokens(server):
    """Generation adds the completions' prompt/new tokens; ratings add their prompts to scored_tokens only."""

    def handler(path, body, n):
        if path.endswith("/chat/completions") and body.get("logprobs"):
            status, payload, headers = logprob_handler(path, body, n)
            payload["usage"] = {"prompt_tokens": 11, "completion_tokens": 1, "total_tokens": 12}
            return status, payload, headers
        return default_handler(path, body, n)

    b = backend(server(handler).url, model="m", concurrency=3)
    before = b.stats.snapshot()
    out = b.generate(CHATS, GenerationParams(max_new_tokens=5))
    b.score_choices(CHATS[:4], ["1", "2", "3", "4", "5"])
    assert b.stats.prompt_tokens == sum(c.n_prompt_tokens for c in out) == 42
    assert b.stats.new_tokens == sum(c.n_new_tokens for c in out) == 18
    assert b.stats.scored_tokens == 4 * 11
    after = b.stats.snapshot()
    assert after["tokens_in"] - before["tokens_in"] == 42 + 44 and after["tokens_out"] - before["tokens_out"] == 18
    assert after["seconds"] == pytest.approx(b.stats.seconds + b.stats.scoring_seconds) and after["seconds"] > 0


# ------------------------------------------------------------------------------------------------ secrets (issue 13)


def echo_key_handler(path, body, n, headers_seen=None):
    """A careless server: every error message repeats the key it was sent (whole, and truncated)."""
    if path.endswith("/chat/completions") and "bad" in body["messages"][-1]["content"]:
        return 400, {"error": {"message": f"prompt too long (key {SECRET[:12]}...{SECRET[-6:]})"}}, {}
    return default_handler(path, body, n)


def test_a_key_echoed_by_the_server_is_masked_in_every_message(server, monkeypatch, run_cli, tmp_path):
    monkeypatch.setenv("MY_KEY", SECRET)
    refused = server(lambda path, body, n: (401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}, {}))
    with pytest.raises(InputError) as caught:
        backend(refused.url, api_key_env="MY_KEY")
    assert "HTTP 401" in str(caught.value) and SECRET not in str(caught.value) and "***" in str(caught.value)
    # a request refused with the key in the message: the record's error and the warning hide it too
    b = backend(server(echo_key_handler).url, api_key_env="MY_KEY", model="m")
    (done,) = b.generate([[{"role": "user", "content": "a bad one"}]], GenerationParams())
    assert done.finish_reason == "error" and "prompt too long" in done.error and SECRET[:12] not in done.error
    # through a script: one line, exit 2, no key
    import generate_synthetic_data as script

    data = tmp_path / "sub.jsonl"
    data.write_text(json.dumps({"id": "c0", "comment": "a comment"}) + "\n")
    argv = f"-r sub -n formality --input {data} -o {tmp_path} --backend openai --api-base {refused.url} "
    argv += "--api-key-env MY_KEY --embedding-model none --max-retries 0"
    code, out, err = run_cli(script.main, argv.split())
    assert code == 2 and len(err.strip().splitlines()) == 1 and "HTTP 401" in err, err
    assert SECRET not in out + err and SECRET[:8] not in err


def test_credentials_in_the_api_base_are_used_but_never_recorded(server, tmp_path, monkeypatch, capsys):
    """--api-base http://user:password@host/v1 reaches the server; the record, the saved config, the command and
    every message show http://***@host/v1."""
    import generate_synthetic_data as script

    srv = server()
    password = "hunter2-very-secret"
    url = srv.url.replace("http://", f"http://alice:{password}@")
    data = tmp_path / "sub.jsonl"
    data.write_text("".join(json.dumps({"id": f"c{i}", "comment": f"comment {i}"}) + "\n" for i in range(2)))
    argv = f"-r sub -n formality --input {data} -o {tmp_path} --backend openai --api-base {url} "
    argv += "--embedding-model none --levels 1,5 -b 2 --max-retries 1 --rating-method generate"
    monkeypatch.setattr("sys.argv", ["generate_synthetic_data.py", *argv.split()])
    assert script.main(argv.split()) == 0
    out = capsys.readouterr()
    assert srv.counts.get("/v1/chat/completions", 0) > 0  # the URL with its credentials was the one used
    meta_text = (tmp_path / "sub_formality.meta.json").read_text()
    meta = json.loads(meta_text)
    saved = (tmp_path / "sub_formality.config.yaml").read_text()
    records = (tmp_path / "sub_formality.jsonl").read_text()
    for text in (meta_text, saved, records, out.out, out.err):
        assert password not in text and "alice" not in text
    redacted = srv.url.replace("http://", "http://***@")
    assert meta["config"]["model"]["api_base"] == redacted and redacted in saved
    assert "--api-base http://***@" in meta["command"]


def test_a_redacted_api_base_asks_for_its_credentials_again(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(InputError, match="credentials were redacted"):
        parse(EngineJob, ["--backend", "openai", "--api-base", "http://***@elsewhere.example:9/v1"])
    cfg = parse(EngineJob, ["--backend", "openai", "--api-base", "http://bob:pw-123456@h.example:1/v1"])
    assert cfg.model.api_base == "http://***@h.example:1/v1"
    assert cfg.model.spec().api_base == "http://bob:pw-123456@h.example:1/v1"  # the connection keeps them
    # a group rebuilt from the recorded (redacted) value in this process still connects
    again = ModelArgs(**{**cfg.model.__dict__})
    assert again.spec().api_base == "http://bob:pw-123456@h.example:1/v1"
