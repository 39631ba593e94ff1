"""build_instruct_dataset.py / socialsynth.jobs.bluesky.instruct on hand-written cluster files."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.bluesky.config import InstructConfig
from socialsynth.jobs.bluesky.instruct import (
    COMPLETION_MARKER,
    Chain,
    completion_example,
    keyword_example,
    needle_example,
    ordinal,
    run_instruct_job,
)
from socialsynth.llm.args import SamplingArgs

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
POSTS = [
    "Honestly the sourdough starter finally doubled overnight and the bread came out amazing",
    "Watching the meteor shower tonight from the hills outside town with friends",
    "short one",
    "Another rainy morning, perfect weather for coffee, reading and quiet thinking all day long",
    "great",
]


def _chain(t: int, users=("alice", "bob"), n: int = 2) -> list[dict]:
    return [
        {"user_id": users[(i + t) % len(users)], "text": POSTS[(t + i) % len(POSTS)], "unix_epoch": 1000 + 10 * t + i}
        for i in range(n)
    ]


def _action(t: int) -> list[dict]:
    return [
        {"user_id": "carol", "text": "liked post", "unix_epoch": 5},
        {"user_id": "alice", "actions": {"like": True}, "unix_epoch": 6},
    ]


def _write(folder: Path, cid: int, rows: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cluster_{cid}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def clusters(tmp_path) -> Path:
    d = tmp_path / "processed_2_clusters"
    _write(d, 0, [_chain(t, n=1 + t % 4) for t in range(40)] + [_action(0), _action(1)])
    _write(d, 1, [_chain(t, users=("dave",), n=3) for t in range(15)])
    return d


def _read(path: Path) -> list[list[dict]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_ordinals():
    got = [ordinal(n) for n in (1, 2, 3, 4, 10, 11, 12, 13, 14, 21, 22, 23, 100, 101, 111, 112, 113, 121)]
    assert got == [
        "1st", "2nd", "3rd", "4th", "10th", "11th", "12th", "13th", "14th",
        "21st", "22nd", "23rd", "100th", "101st", "111th", "112th", "113th", "121st",
    ]  # fmt: skip


def _mk(idx: int, texts: list[str], user: str = "u") -> Chain:
    return Chain(idx, [{"user_id": user, "text": t, "unix_epoch": idx} for t in texts])


def test_needle_answer_is_nth_context_message():
    history = [_mk(i, [f"m{i}-{j}" for j in range(7)]) for i in range(25)]
    for s in range(30):
        msgs = needle_example(history, random.Random(s))
        assert [m["role"] for m in msgs] == ["system", "context", "assistant"]
        context = json.loads(msgs[1]["content"])
        assert len(context) == 20 * 5
        assert context[0]["text"] == "m5-2"  # last 20 chains, last 5 messages each
        n = int("".join(ch for ch in msgs[0]["content"].split("What was the ")[1].split(" ")[0] if ch.isdigit()))
        assert json.loads(msgs[2]["content"]) == {"text": context[n - 1]["text"]}


def test_keyword_words_long_and_in_post():
    post = POSTS[0]
    for s in range(30):
        msgs = keyword_example(_mk(0, ["hello there", post]), random.Random(s))
        assert [m["role"] for m in msgs] == ["system", "context", "assistant"]
        words = msgs[0]["content"].split("uses these words: ")[1].split(".")[0].split(", ")
        assert 1 <= len(words) <= 5
        assert all(len(w) > 4 and w in post for w in words)
        assert json.loads(msgs[-1]["content"]) == {"text": post}
    root_only = keyword_example(_mk(0, [post]), random.Random(0))
    assert [m["role"] for m in root_only] == ["system", "assistant"]


def test_completion_prefix_plus_target_is_post():
    post = POSTS[3]
    for s in range(30):
        msgs = completion_example(_mk(0, [post]), random.Random(s))
        assert [m["role"] for m in msgs] == ["system", "assistant"]
        prefix = msgs[0]["content"].split(COMPLETION_MARKER, 1)[1]
        target = json.loads(msgs[1]["content"])["text"]
        assert prefix.strip() and target.strip()
        assert prefix + target == post


def test_job_outputs_shapes_actions_skipped_and_meta(clusters, tmp_path):
    out = tmp_path / "out"
    meta = run_instruct_job(InstructConfig(clusters, out, sampling=SamplingArgs(seed=42)))
    assert meta["clusters"]["0"]["skipped_action_lines"] == 2
    assert meta["clusters"]["0"]["examples"] == 40 and meta["clusters"]["1"]["examples"] == 15
    assert set(meta["totals"]) <= {"needle", "keyword", "completion"} and len(meta["totals"]) == 3
    assert json.loads((out / "instruct.meta.json").read_text())["totals"] == meta["totals"]
    for cid in ("0", "1"):
        for msgs in _read(out / f"instruct_cluster_{cid}.jsonl"):
            roles = [m["role"] for m in msgs]
            assert roles[0] == "system" and roles[-1] == "assistant" and set(roles[1:-1]) <= {"context"}
            assert isinstance(json.loads(msgs[-1]["content"])["text"], str)
            if "context" in roles:
                assert all("actions" not in m for m in json.loads(msgs[1]["content"]))
    # needle contexts only hold the last-message user's chains
    for msgs in _read(out / "instruct_cluster_1.jsonl"):
        if "What was the" in msgs[0]["content"]:
            assert {m["user_id"] for m in json.loads(msgs[1]["content"])} <= {"dave"}


def test_seed_determinism_and_max_chains(clusters, tmp_path):
    run_instruct_job(InstructConfig(clusters, tmp_path / "a", max_chains=10, sampling=SamplingArgs(seed=7)))
    run_instruct_job(InstructConfig(clusters, tmp_path / "b", max_chains=10, sampling=SamplingArgs(seed=7)))
    run_instruct_job(InstructConfig(clusters, tmp_path / "c", max_chains=10, sampling=SamplingArgs(seed=8)))
    a, b, c = ((tmp_path / x / "instruct_cluster_0.jsonl").read_text() for x in "abc")
    assert a == b and a != c
    assert len(a.splitlines()) == 10


def test_llm_fraction_uses_backend(clusters, tmp_path, fake_backend_cls):
    from socialsynth.llm import GenerationParams

    fake = fake_backend_cls(reply=lambda chat, key: f"generated for {key}")
    meta = run_instruct_job(
        InstructConfig(clusters, tmp_path / "o", llm_fraction=1.0), backend=fake, params=GenerationParams(seed=1)
    )
    assert set(meta["totals"]) == {"summarize", "paraphrase"}
    assert sum(meta["totals"].values()) == 55
    assert len(fake.generate_calls) == 2
    for msgs in _read(tmp_path / "o" / "instruct_cluster_0.jsonl"):
        assert [m["role"] for m in msgs] == ["system", "context", "assistant"]
        assert json.loads(msgs[2]["content"])["text"].startswith("generated for 0:")


def test_missing_folder_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        run_instruct_job(InstructConfig(tmp_path / "nope", tmp_path / "o"))


def test_broken_line_exits_2(clusters, tmp_path):
    path = clusters / "cluster_1.jsonl"
    path.write_text(path.read_text() + "[{broken\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run(
        [sys.executable, "build_instruct_dataset.py", "-i", str(clusters), "-o", str(tmp_path / "o")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2, r.stderr
    err = [x for x in r.stderr.splitlines() if not x.startswith("INFO ")]
    assert len(err) == 1 and err[0].startswith(f"error: {path}:16: not valid JSON"), r.stderr


# ------------------------------------------------------------------------------------------- stop and resume


def _llm_cfg(clusters: Path, out: Path) -> InstructConfig:
    return InstructConfig(clusters, out, llm_fraction=0.5, batch_size=4)


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.glob("instruct_cluster_*.jsonl"))}


def test_sigterm_stops_after_the_chunk_and_rerun_resumes(clusters, tmp_path, fake_backend_cls):
    """SIGTERM while the first chunk is generated: that chunk is written, the job stops; the rerun generates only
    what is missing and ends with the same files as an uninterrupted run, without duplicate ids."""
    import signal

    from socialsynth.core.errors import Interrupted
    from socialsynth.core.run import read_run_record

    def reply(chat, key):
        return f"generated for {key}"

    full = tmp_path / "full"
    run_instruct_job(_llm_cfg(clusters, full), backend=fake_backend_cls(reply=reply))
    n_answers = len((full / "instruct_llm_answers.jsonl").read_text().splitlines())
    assert n_answers > 8  # more than two chunks of 4

    sent = []

    def reply_then_term(chat, key):
        if not sent:
            sent.append(key)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first chunk is being generated
        return reply(chat, key)

    out = tmp_path / "stopped"
    first = fake_backend_cls(reply=reply_then_term)
    with pytest.raises(Interrupted) as info:
        run_instruct_job(_llm_cfg(clusters, out), backend=first)
    assert info.value.exit_code == 128 + signal.SIGTERM and "rerun" in info.value.resume_hint
    assert len(first.generate_calls) == 1
    partial = [json.loads(x) for x in (out / "instruct_llm_answers.jsonl").read_text().splitlines()]
    assert len(partial) == 4
    record = read_run_record(out / "instruct.meta.json")
    assert record["complete"] is False and record["status"] == "interrupted"

    second = fake_backend_cls(reply=reply)
    run_instruct_job(_llm_cfg(clusters, out), backend=second)
    asked = [key for _, _, keys in second.generate_calls for key in keys]
    assert not {r["id"] for r in partial} & set(asked)  # nothing generated twice
    answers = [json.loads(x) for x in (out / "instruct_llm_answers.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in answers]
    assert len(ids) == len(set(ids)) == n_answers
    assert _outputs(out) == _outputs(full)
    record = read_run_record(out / "instruct.meta.json")
    assert record["complete"] is True and len(record["runs"]) == 2
    stages = record["tokens"]["fake-model"]
    assert set(stages) == {"summarize", "paraphrase"}
    full_stages = read_run_record(full / "instruct.meta.json")["tokens"]["fake-model"]
    for stage in stages:  # tokens summed over both runs equal the uninterrupted run's
        assert stages[stage]["in"] == full_stages[stage]["in"] and stages[stage]["out"] == full_stages[stage]["out"]

    third = fake_backend_cls(reply=reply)  # a finished job reruns without asking the model anything
    run_instruct_job(_llm_cfg(clusters, out), backend=third)
    assert third.generate_calls == [] and _outputs(out) == _outputs(full)


def _answer_ids(out: Path) -> list[str]:
    return [json.loads(x)["id"] for x in (out / "instruct_llm_answers.jsonl").read_text().splitlines() if x.strip()]


def test_cli_killed_after_the_first_chunk_reruns_to_every_item_once(clusters, tmp_path, fake_backend_cls, run_cli):
    """build_instruct_dataset.py as the script runs it: SIGTERM during the first chunk exits 143 with the resume
    hint after writing that chunk; a hard stop in the middle of a later chunk (a second signal, with a torn line left
    in the answers file) loses only that chunk; the reruns finish with every answer once and the same files as an
    uninterrupted run."""
    import functools
    import signal

    from socialsynth.jobs.bluesky.cli import main_instruct

    def reply(chat, key):
        return f"generated for {key}"

    def argv(out: Path) -> list:
        return ["-i", clusters, "-o", out, "--llm-fraction", "0.5", "-b", "4"]

    full = tmp_path / "full"
    assert run_cli(functools.partial(main_instruct, backend=fake_backend_cls(reply=reply)), argv(full))[0] == 0
    expected = sorted(_answer_ids(full))
    assert len(expected) > 12

    class Killing(fake_backend_cls):
        """Sends SIGTERM to this process during its first chunk."""

        def generate(self, chats, params, keys=None, progress=None):
            if not self.generate_calls:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().generate(chats, params, keys, progress)

    out = tmp_path / "out"
    first = Killing(reply=reply)
    code, _, err = run_cli(functools.partial(main_instruct, backend=first), argv(out))
    assert code == 128 + signal.SIGTERM and "rerun" in err and "Traceback" not in err
    assert len(first.generate_calls) == 1 and len(_answer_ids(out)) == 4

    from socialsynth.core.errors import StopNow

    class DiesMidChunk(fake_backend_cls):
        """Writes one chunk, then dies in the next as a second SIGTERM would stop it (nothing of it written)."""

        def generate(self, chats, params, keys=None, progress=None):
            if len(self.generate_calls) == 1:
                raise StopNow(signal.SIGTERM)
            return super().generate(chats, params, keys, progress)

    second = DiesMidChunk(reply=reply)
    code, _, err = run_cli(functools.partial(main_instruct, backend=second), argv(out))
    assert code == 128 + signal.SIGTERM and "Traceback" not in err
    assert len(_answer_ids(out)) == 8
    with open(out / "instruct_llm_answers.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "0:3:summ')  # a kill in the middle of a write leaves a torn last line

    third = fake_backend_cls(reply=reply)
    code, stdout, err = run_cli(functools.partial(main_instruct, backend=third), argv(out))
    assert code == 0, err
    asked = [key for _, _, keys in third.generate_calls for key in keys]
    assert len(asked) == len(expected) - 8  # only what was not written before
    ids = _answer_ids(out)
    assert sorted(ids) == expected and len(ids) == len(set(ids))  # every answer once
    assert _outputs(out) == _outputs(full)
    from socialsynth.core.run import read_run_record

    record = read_run_record(out / "instruct.meta.json")
    assert record["complete"] is True and [r["status"] for r in record["runs"]] == ["interrupted"] * 2 + ["finished"]
