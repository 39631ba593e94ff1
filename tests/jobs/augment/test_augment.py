"""augment_labels.py: prompts, list parsing, filters, the generation job (fake backend), resume, CLI errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import zlib
from pathlib import Path

import numpy as np
import pytest

from socialsynth.core.errors import InputError, Interrupted
from socialsynth.jobs.augment.job import (
    AugmentConfig,
    DuplicateIndex,
    FidelityGate,
    TextFilters,
    build_chat,
    load_definition,
    parse_list,
    pick_examples,
    remove_hashtags,
    run_generation,
)
from socialsynth.llm.args import SamplingArgs
from socialsynth.prompts import load_template
from tests.helpers import run_script

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())


# ------------------------------------------------------------------------------------------- prompts


def test_prompt_has_definition_both_examples_and_the_count():
    chat = build_chat(
        load_template("augment_fewshot"),
        "toxic",
        "rude or hateful remarks",
        ['you are a "total" idiot', "nobody asked you, loser"],
        per_call=5,
        min_words=5,
        max_words=100,
    )
    user = chat[-1]["content"]
    assert chat[0]["role"] == "system" and chat[-1]["role"] == "user"
    assert "DEFINITION: toxic: rude or hateful remarks" in user
    assert "\"you are a 'total' idiot\"" in user  # one quoted line per example, inner quotes made single
    assert '"nobody asked you, loser"' in user
    assert "Here are 2 real examples" in user
    assert "Write 5 new" in user and "between 5 and 100 words" in user


def test_long_examples_are_cut_to_max_words():
    chat = build_chat(load_template("augment_fewshot"), "t", "d", ["w " * 300, "short one"], 3, 1, 20)
    line = [ln for ln in chat[-1]["content"].splitlines() if ln.startswith('"w')][0]
    assert len(line.split()) == 21 and line.endswith('..."')


def test_examples_are_used_in_seeded_pairs_covering_every_row_before_repeating():
    picks = [pick_examples(10, 2, seed=3, request=r) for r in range(5)]
    assert all(len(p) == 2 for p in picks)
    assert sorted(i for p in picks for i in p) == list(range(10))
    assert picks == [pick_examples(10, 2, seed=3, request=r) for r in range(5)]  # reproducible
    assert picks != [pick_examples(10, 2, seed=4, request=r) for r in range(5)]


def test_definition_from_text_yaml_and_plain_file(tmp_path):
    assert load_definition("  rude   remarks ", None, "x") == "rude remarks"
    y = tmp_path / "defs.yaml"
    y.write_text("toxic: >-\n  rude\n  remarks\noffensive: hurtful\n")
    assert load_definition(None, y, "toxic") == "rude remarks"
    with pytest.raises(InputError, match="no definition for '1'.*--label-name"):
        load_definition(None, y, "1")
    plain = tmp_path / "def.txt"
    plain.write_text("Comments that insult: people.\nOr groups.\n")
    assert load_definition(None, plain, "any") == "Comments that insult: people. Or groups."
    with pytest.raises(InputError):
        load_definition(None, None, "toxic")
    assert "insults" in load_definition(None, REPO / "data" / "label_definitions.yaml", "toxic")


def test_a_broken_or_odd_yaml_definitions_file_is_an_error_naming_it(tmp_path):
    broken = tmp_path / "defs.yaml"
    broken.write_text("toxic: rude\nhate: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML") as err:
        load_definition(None, broken, "toxic")
    assert err.value.path == str(broken) and err.value.line == 3 and err.value.field == "--definition-file"
    for text, match in (("- a\n- b\n", "must map label names"), ("toxic: [a, b]\n", "must be text"),
                        ("toxic:\n", "must be text")):
        broken.write_text(text)
        with pytest.raises(InputError, match=match):
            load_definition(None, broken, "toxic")
    plain = tmp_path / "def.txt"  # not a .yaml file: text that YAML cannot read is the definition itself
    plain.write_text("rude: [remarks\n")
    assert load_definition(None, plain, "toxic") == "rude: [remarks"


# ------------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ('1. "you are a moron"\n2. "get lost, loser"', ["you are a moron", "get lost, loser"]),
        ("1) you are a moron\n2) get lost, loser", ["you are a moron", "get lost, loser"]),
        (
            "- you are a moron\n* get lost, loser\n• nobody likes you",
            ["you are a moron", "get lost, loser", "nobody likes you"],
        ),
        (
            'Here are 3 toxic comments:\n"you are a moron"\n"get lost"\n"shut up"',
            ["you are a moron", "get lost", "shut up"],
        ),
        ("Sure! Here are the comments:\n1. one two\n2. three four", ["one two", "three four"]),
        ("you are a moron\nget lost, loser", ["you are a moron", "get lost, loser"]),  # no quotes, no numbers
        ('"he said "no" to you, idiot"\n"second one"', ['he said "no" to you, idiot', "second one"]),  # inner quotes
        ('"first one", "second one", "third one"', ["first one", "second one", "third one"]),  # seed's spans
        ("“curly quoted comment”", ["curly quoted comment"]),
        ("1. a comment that goes on\nover two lines\n2. next", ["a comment that goes on over two lines", "next"]),
        ("1. first\n2. second\nNote: these are fictional.", ["first", "second"]),
        ('### Instruction: write\n### Response:\n"one"\n"two"', ["one", "two"]),
        ("", []),
        ("   \n\n", []),
        ('1. ""\n2. kept', ["kept"]),
    ],
)
def test_parse_list(text, expected):
    parsed = parse_list(text)
    assert parsed.items == expected
    assert not parsed.refusal


def test_parse_list_notes_what_it_cut():
    assert "preamble" in parse_list('Here are 2 comments:\n"a b"\n"c d"').notes
    assert "response_prefix" in parse_list('### Response: "a b"').notes


def test_refusal_gives_no_items_and_is_counted():
    parsed = parse_list("I'm sorry, but I can't help with creating toxic content.")
    assert parsed.items == [] and parsed.refusal
    assert parse_list("As an AI language model, I will not write that.").refusal
    assert parse_list("Sorry, I can't generate offensive comments.").refusal


def test_hashtags_are_removed():
    assert remove_hashtags("you are a joke #loser #fail") == "you are a joke"
    assert remove_hashtags("so #stupid of you") == "so of you"
    assert parse_list('1. "get out #go_away now"').items == ["get out now"]
    assert "hashtags" in parse_list('1. "get out #go_away now"').notes
    assert remove_hashtags("issue &#39;s fine") == "issue &#39;s fine"  # not an HTML entity


# ------------------------------------------------------------------------------------------- filters


class FakeEmbedder:
    """Texts sharing their first word get the same direction (cosine 1); others are orthogonal-ish."""

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 4096), dtype=np.float32)
        for i, t in enumerate(texts):
            words = t.lower().split() or [""]
            out[i, zlib.crc32(words[0].encode()) % 4096] = 1.0
            out[i, zlib.crc32(" ".join(words).encode()) % 4096] += 0.05  # a little of the rest: near, not identical
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_exact_and_near_duplicates_against_each_other_and_real_rows():
    index = DuplicateIndex(["Real comment here", "alpha beta gamma"], FakeEmbedder(), threshold=0.95)
    flags = index.check(
        [
            "real comment HERE!",  # exact copy of a real row (normalised)
            "alpha something else entirely",  # near a real row
            "zebra one two",
            "Zebra one two.",  # exact duplicate of the item before
            "zebra three four",  # near duplicate of an earlier item
            "omega unrelated",
        ]
    )
    assert [f["copies_real"] for f in flags] == [True, False, False, False, False, False]
    assert [f["duplicate"] for f in flags] == [False, False, False, True, False, False]
    assert flags[1]["near_real"] and flags[1]["max_sim_real"] >= 0.95
    assert flags[4]["near_duplicate"] and not flags[4]["duplicate"]
    assert not any(flags[5][k] for k in ("duplicate", "copies_real", "near_duplicate", "near_real"))
    assert not flags[2]["near_duplicate"] and flags[2]["max_sim_generated"] < 0.95


def test_near_duplicates_off_without_embedder():
    index = DuplicateIndex(["a b c"], None, threshold=0.95)
    flags = index.check(["a b c", "x y z"])
    assert flags[0]["copies_real"] and flags[1]["max_sim_real"] is None and not flags[1]["near_real"]


@pytest.fixture(scope="module")
def fidelity_dir(tmp_path_factory, separable):
    from socialsynth.classify.model import TrainSettings
    from socialsynth.classify.train import TrainJob, run_training

    folder = tmp_path_factory.mktemp("fidelity")
    data = separable.write(folder / "train.csv", separable.binary(300, seed=1))
    run_training(
        TrainJob(task="binary", output_dir=folder / "model", model="tfidf-logreg", input=data, settings=TrainSettings())
    )
    return folder / "model"


def test_fidelity_gate_scores_the_target_label(fidelity_dir):
    toxic = FidelityGate(fidelity_dir, "toxic", 0.5)
    clean = FidelityGate(fidelity_dir, "clean", 0.5)
    texts = ["you idiot stupid moron loser", "thanks lovely kind friendly"]
    t, c = toxic.scores(texts), clean.scores(texts)
    assert t[0] > 0.5 > t[1]
    assert c[1] > 0.5 > c[0]
    assert t[0] + c[0] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(InputError, match="not the target label 'spam'"):
        FidelityGate(fidelity_dir, "spam")


# ------------------------------------------------------------------------------------------- the job


def canned(chat, key):
    """Five numbered items per request, unique per request key; one too short, one copying a real row."""
    n = key.rsplit("r", 1)[-1]
    return (
        f'Here are 5 toxic comments:\n1. "insult{n} you are so dumb honestly"\n'
        f'2. "mock{n} nobody wants you here"\n3. "short{n} one"\n4. "you are a total idiot number 1"\n'
        f'5. "rage{n} get lost you absolute clown #loser"'
    )


def make_cfg(labelled, out, **kw):
    base = dict(
        input=labelled,
        target_label="1",
        n=6,
        output_dir=out,
        text_col="comment",
        label_col="bad",
        label_name="toxic",
        definition="rude remarks",
        batch_size=2,
        sampling=SamplingArgs(seed=7),
        filters=TextFilters(min_words=4, max_words=30, near_dup=0.95),
    )
    base.update(kw)
    return AugmentConfig(**base)


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_job_writes_flagged_records_with_provenance_and_a_csv(labelled, tmp_path, fake_backend_cls):
    backend = fake_backend_cls(reply=canned)
    summary = run_generation(make_cfg(labelled, tmp_path / "out"), backend=backend, embedder=FakeEmbedder())
    records = read_jsonl(tmp_path / "out" / "synthetic_1.jsonl")
    assert summary["passed"] >= 6 and summary["complete"]
    assert len({r["id"] for r in records}) == len(records)
    assert len(backend.generate_calls[0][0]) == 2  # the first round asked for ceil(6/5) = 2 requests
    by_text = {r["text"]: r for r in records}
    short = [r for r in records if r["text"].startswith("short0")]
    assert short and all(r["flags"]["too_short"] and not r["passed"] for r in short)
    copy = [r for r in records if r["text"] == "you are a total idiot number 1"]
    assert copy and all(r["flags"]["copies_real"] for r in copy)
    assert all("#" not in t for t in by_text)
    rec = next(r for r in records if r["passed"])
    assert set(rec["generation"]["example_ids"]) <= {f"t{i}" for i in range(6)}
    assert len(rec["generation"]["example_ids"]) == 2
    assert rec["provenance"]["template"] == "augment_fewshot" and len(rec["provenance"]["template_hash"]) == 12
    assert rec["provenance"]["params"]["seed"] == 7 and isinstance(rec["generation"]["request_seed"], int)
    assert rec["label"] == "1"
    prompt = backend.generate_calls[0][0][0][-1]["content"]
    assert "DEFINITION: toxic: rude remarks" in prompt and "you are a total idiot number" in prompt
    with open(tmp_path / "out" / "synthetic_1.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "comment", "bad"]
    assert len(rows) == sum(r["passed"] for r in records) and {r["bad"] for r in rows} == {"1"}
    meta = json.loads((tmp_path / "out" / "synthetic_1.meta.json").read_text())
    assert meta["n_passed"] == summary["passed"] and meta["complete"] and meta["provenance"]["definition"]


def test_rerun_continues_without_duplicates(labelled, tmp_path, fake_backend_cls):
    out = tmp_path / "out"
    run_generation(make_cfg(labelled, out, n=3), backend=fake_backend_cls(reply=canned), embedder=FakeEmbedder())
    first = read_jsonl(out / "synthetic_1.jsonl")
    backend = fake_backend_cls(reply=canned)
    summary = run_generation(make_cfg(labelled, out, n=12), backend=backend, embedder=FakeEmbedder())
    records = read_jsonl(out / "synthetic_1.jsonl")
    assert records[: len(first)] == first
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    old_requests = {r["generation"]["request"] for r in first}
    new_requests = {r["generation"]["request"] for r in records[len(first) :]}
    assert min(new_requests) == max(old_requests) + 1
    assert summary["passed"] >= 12
    # the resumed run still knows the earlier items: a repeat of an earlier text is flagged as a duplicate
    texts = [r["text"] for r in records]
    assert len(set(texts)) < len(texts) and any(r["flags"]["duplicate"] for r in records[len(first) :])
    # nothing left to do: a third run makes no request
    again = fake_backend_cls(reply=canned)
    run_generation(make_cfg(labelled, out, n=12), backend=again, embedder=FakeEmbedder())
    assert again.generate_calls == []


def test_refusals_are_records_and_counted(labelled, tmp_path, fake_backend_cls):
    def reply(chat, key):
        return "I'm sorry, but I can't help with that." if key.endswith("0") else canned(chat, key)

    summary = run_generation(
        make_cfg(labelled, tmp_path / "out", n=4, max_requests=3), backend=fake_backend_cls(reply=reply), embedder=None
    )
    records = read_jsonl(tmp_path / "out" / "synthetic_1.jsonl")
    refused = [r for r in records if r["status"] == "refusal"]
    assert len(refused) == 1 and refused[0]["text"] is None and not refused[0]["passed"]
    assert summary["refusals"] == 1


def test_stops_at_max_requests_and_says_so(labelled, tmp_path, fake_backend_cls):
    summary = run_generation(
        make_cfg(labelled, tmp_path / "out", n=50, max_requests=3),
        backend=fake_backend_cls(reply=lambda chat, key: "1. too short"),
        embedder=None,
    )
    assert summary["requests"] == 3 and summary["passed"] == 0 and not summary["complete"]


def test_low_fidelity_items_are_flagged(tmp_path, fake_backend_cls, fidelity_dir, separable):
    data = separable.write(tmp_path / "real.csv", separable.binary(60, seed=5))

    def reply(chat, key):
        return '1. "you idiot stupid moron trash loser"\n2. "thanks lovely kind friendly wonderful nice"'

    cfg = make_cfg(
        data,
        tmp_path / "out",
        n=1,
        max_requests=1,
        text_col="text",
        label_col="label",
        target_label="toxic",
        fidelity_model=fidelity_dir,
        filters=TextFilters(min_words=1, max_words=30, near_dup=0, fidelity_threshold=0.5),
    )
    run_generation(cfg, backend=fake_backend_cls(reply=reply), embedder=None)
    records = read_jsonl(tmp_path / "out" / "synthetic_toxic.jsonl")
    assert [r["flags"]["low_fidelity"] for r in records] == [False, True]
    assert records[0]["fidelity"] > 0.5 > records[1]["fidelity"]
    assert [r["passed"] for r in records] == [True, False]


def test_sigterm_stops_after_the_chunk_and_resumes(labelled, tmp_path, fake_backend_cls):
    sent = []

    def reply(chat, key):
        if key.endswith("r000001") and not sent:
            sent.append(key)
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first chunk is being generated
        return canned(chat, key)

    out = tmp_path / "out"
    cfg = make_cfg(labelled, out, n=20, batch_size=2)
    with pytest.raises(Interrupted) as info:
        run_generation(cfg, backend=fake_backend_cls(reply=reply), embedder=FakeEmbedder())
    assert info.value.exit_code == 143 and "rerun" in info.value.resume_hint
    partial = read_jsonl(out / "synthetic_1.jsonl")
    assert {r["generation"]["request"] for r in partial} == {0, 1}
    assert not json.loads((out / "synthetic_1.meta.json").read_text())["complete"]
    run_generation(cfg, backend=fake_backend_cls(reply=canned), embedder=FakeEmbedder())
    records = read_jsonl(out / "synthetic_1.jsonl")
    assert len({r["id"] for r in records}) == len(records) and records[: len(partial)] == partial


# ------------------------------------------------------------------------------------------- CLI


def cli(*args, timeout=240):
    return run_script("augment_labels.py", *args, timeout=timeout)


def test_cli_bad_input_exits_2_with_one_line(labelled, tmp_path):
    common = ["--input", labelled, "--text-col", "comment", "-o", tmp_path / "o", "--definition", "rude", "--n", "3"]
    proc = cli(*common, "--label-col", "nope", "--target-label", "1")
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error:") and "real.csv" in line and "nope" in line


def test_cli_bad_target_and_too_few_examples(labelled, tmp_path, capsys):
    from augment_labels import main

    common = ["--input", str(labelled), "--text-col", "comment", "--label-col", "bad", "-o", str(tmp_path / "o")]
    assert main([*common, "--target-label", "7", "--definition", "x", "--n", "3"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "real.csv" in line and "'bad'" in line and "'7' does not occur" in line
    assert main([*common, "--target-label", "1", "--definition", "x", "--n", "3", "--examples-per-prompt", "9"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "only 6 rows with label '1'" in line and "real.csv" in line
    assert main([*common, "--target-label", "1", "--n", "3"]) == 2  # no definition
    assert "--definition" in capsys.readouterr().err
    assert main([*common, "--target-label", "1"]) == 2  # neither --n nor --synthetic
    assert "--n" in capsys.readouterr().err
    assert not (tmp_path / "o" / "synthetic_1.jsonl").exists()


@pytest.mark.slow
def test_cli_end_to_end_with_the_tiny_model(labelled, tmp_path, tiny_model_dir):
    out = tmp_path / "o"
    args = [
        "--input", labelled, "--text-col", "comment", "--label-col", "bad", "--target-label", "1",
        "--definition", "rude remarks", "--n", "2", "--max-requests", "2", "-m", tiny_model_dir,
        "--device", "cpu", "--max-new-tokens", "8", "--embedding-model", "none", "--min-words", "1",
        "-o", out, "--positive-rates", "0.3",
    ]  # fmt: skip
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(out / "synthetic_1.jsonl")
    assert records and {r["generation"]["request"] for r in records} <= {0, 1}
    meta = json.loads((out / "synthetic_1.meta.json").read_text())
    assert meta["provenance"]["model"]["model"] == str(tiny_model_dir)
    assert (out / "synthetic_1.csv").exists() and (out / "ladder" / "train_rate_0.3.csv").exists()
    assert "requests:" in proc.stdout and "rate asked" in proc.stdout
