"""rephrase_posts.py: prompt, parsing, temperature search, the job (fake backend) and the CLI (tiny model)."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.rephrase.config import RephraseConfig
from socialsynth.jobs.rephrase.job import (
    choose_temperature,
    clean_rephrasing,
    format_summary,
    model_slugs,
    parse_temperatures,
    rephrase_chat,
    run,
    temperature_search,
)
from socialsynth.llm import GenerationParams
from socialsynth.llm.args import SamplingArgs
from socialsynth.prompts import load_template
from tests.helpers import run_script, write_csv

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SAMPLE = REPO / "data" / "posts_sample.csv"
POST = "Posted in the AskMen subreddit: I'm 34, married to Priya, laid off from Kessler Logistics in Dayton."


# -- prompt -------------------------------------------------------------------------------------------------------
def test_prompt_names_every_pii_category_and_contains_the_post():
    chat = rephrase_chat(load_template("privacy_rephrase"), POST)
    assert [m["role"] for m in chat] == ["system", "user"]
    text = " ".join(" ".join(m["content"] for m in chat).lower().split())
    for category in [
        "age",
        "birth date",
        "religion",
        "gender",
        "marital status",
        "ethnicity",
        "employment",
        "location",
        "sexuality",
        "parenthood",
        "organisations",
        "names",
        "codes",
        "numbers",
        "reddit",
        "do not add a title",
        '"changed post"',
    ]:
        assert category in text, category
    assert chat[1]["content"].endswith(POST)


# -- parsing ------------------------------------------------------------------------------------------------------
BODY = "I'm 41, my husband Tom and I just moved to Boise and I work at a bakery now."


@pytest.mark.parametrize(
    "raw, expected",
    [
        (f'"Changed Post": {BODY}', BODY),
        (f"Changed Post: {BODY}", BODY),
        (f"**Changed Post:** {BODY}", BODY),
        (f'"Changed Post": "{BODY}"', BODY),
        (f'Sure! Here is the changed post:\n\n"{BODY}"', BODY),
        (f"Here's the rephrased post: {BODY}\n\nNote: I changed the age and the location.", BODY),
        (f"Story: {BODY}", BODY),  # Llama2's label before the first colon
        ('"Changed Post": "My wife said "no way" and left."', 'My wife said "no way" and left.'),  # nested quotes
        ('"He said "hi" and she said "bye""', 'He said "hi" and she said "bye"'),
        (f"Posted in the AskWomen subreddit: {BODY}", f"Posted in the AskWomen subreddit: {BODY}"),  # not a label
        ("My advice: ask your manager for a raise.", "My advice: ask your manager for a raise."),  # not a label
        ('"hi" she said, then "bye"', '"hi" she said, then "bye"'),  # quotes that do not wrap the answer
        ("", ""),
        ('"Changed Post":', ""),
    ],
)
def test_clean_rephrasing(raw, expected):
    assert clean_rephrasing(raw).text == expected


def test_cleaning_reports_what_it_cut_and_refusal_is_flagged():
    from socialsynth.text.quality import lexical_flags

    cleaned = clean_rephrasing(f'"Changed Post": "{BODY}"')
    assert "preamble" in cleaned.notes and "quotes" in cleaned.notes
    assert "label" in clean_rephrasing(f"Story: {BODY}").notes
    refusal = clean_rephrasing("I'm sorry, but I can't rewrite this post because it has personal information.")
    assert lexical_flags(refusal.text, POST)["refusal"]
    assert lexical_flags(clean_rephrasing("").text, POST)["empty"]


def test_a_copy_without_the_subreddit_prefix_is_flagged_unchanged(fake_backend_cls):
    from socialsynth.jobs.rephrase.job import Post, Rephraser

    backend = fake_backend_cls(reply=lambda chat, key: POST.split(": ", 1)[1].upper())
    rec = Rephraser(backend, load_template("privacy_rephrase"), GenerationParams(), "m", 1).process(
        [(Post(0, "p", POST, {}), 0)]
    )[0]
    assert rec["flags"]["unchanged"] and not rec["passed"]


def test_model_slugs_differ_for_a_repeated_model():
    assert model_slugs(["embedded", "/tmp/x/tiny_llama0/", "meta-llama/Llama-3-8B"]) == [
        "embedded",
        "tiny_llama0",
        "Llama-3-8B",
    ]
    slugs = model_slugs(["/a/m", "/b/m", "other"])
    assert len(set(slugs)) == 3 and slugs[0] == "m"


@pytest.mark.parametrize("models", [["m", "m", "m-2"], ["m", "M"], ["a/Llama", "b/llama", "Llama-2"], ["x", "x", "x"]])
def test_model_slugs_are_unique_even_ignoring_case(models):
    slugs = model_slugs(models)
    assert len({s.lower() for s in slugs}) == len(models)


def test_model_slugs_never_leave_the_output_folder():
    for slug in model_slugs(["../../etc/x", "..", "/", "a/b/../..", "C:\\evil\\m", "fake-x/.."]):
        assert "/" not in slug and "\\" not in slug and slug not in (".", "..") and slug


def test_parse_temperatures():
    assert parse_temperatures("0.5:1.0:0.1") == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert parse_temperatures("0.9,0.6") == (0.6, 0.9)
    for bad in ("hot", "0.5:inf:0.1", "nan,0.5", "inf", "0:1:0.001", "-1,0.5", "1:0:0.1", "0:1:0"):
        with pytest.raises(InputError, match="--search-temperatures"):
            parse_temperatures(bad)


# -- temperature search -------------------------------------------------------------------------------------------
def temp_of(text: str) -> float:
    return float(re.search(r"T=([\d.]+)", text).group(1))


class FakeEmbedder:
    """Bag-of-words hash vectors; the similarity of a `T=<t>` answer to anything is (t - best)^2 (lowest at best)."""

    name = "fake-embedder"

    def __init__(self, best: float = 0.8):
        self.best = best

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for w in text.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def pair_similarity(self, a, b):
        return np.array([(temp_of(t) - self.best) ** 2 for t in b])


@pytest.fixture
def temp_backend(fake_backend_cls):
    """A fake backend that answers `T=<temperature> <the post>`."""

    class TempBackend(fake_backend_cls):
        def generate(self, chats, params, keys=None, progress=None):
            self.reply = lambda chat, key: f'"Changed Post": T={params.temperature:g} ' + chat[1]["content"][-60:]
            return super().generate(chats, params, keys, progress)

    return TempBackend


def test_temperature_search_picks_the_lowest_mean_similarity(temp_backend):
    backend = temp_backend()
    posts = [(f"p{i}", f"post number {i}") for i in range(4)]
    means = temperature_search(
        backend,
        load_template("privacy_rephrase"),
        posts,
        (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
        GenerationParams(),
        FakeEmbedder(best=0.7).pair_similarity,
    )
    assert choose_temperature(means) == 0.7
    assert means[0.7] == 0.0 and means[1.0] > means[0.9] > means[0.8] > 0
    assert len(backend.generate_calls) == 6
    assert [c[1].temperature for c in backend.generate_calls] == [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert choose_temperature({0.5: 0.3, 0.6: 0.1, 0.9: 0.1}) == 0.6  # ties: the lower temperature


# -- the job with a fake backend ----------------------------------------------------------------------------------
class FakeSpec:
    def __init__(self, backend, model="fake-model"):
        self.backend, self.model, self.loads = backend, model, 0

    def load(self):
        self.loads += 1
        return self.backend


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_job_searches_generates_writes_and_resumes(tmp_path, temp_backend):
    posts = [
        {"id": f"p{i}", "original_post": f"Posted in the X subreddit: my name is Ann{i} and I am {20 + i}"}
        for i in range(6)
    ]
    posts.append({"id": "empty", "original_post": "   "})
    src = write_csv(tmp_path / "posts.csv", posts)
    a, b = temp_backend(), temp_backend()
    spec_a, spec_b = FakeSpec(a, "model-a"), FakeSpec(b, "model-b")
    cfg = RephraseConfig(
        input=src,
        output_dir=tmp_path / "out",
        models=["model-a", "model-b"],
        search_temperatures=(0.6, 0.8, 1.0),
        search_sample=3,
        audit=True,
        samples_per_model=2,
    )
    summary = run(cfg, specs=(spec_a, spec_b), embedder=FakeEmbedder(best=1.0))
    out = tmp_path / "out"
    records = read_jsonl(out / "rephrased.jsonl")
    assert len(records) == 6 * 2 * 2
    assert len({r["id"] for r in records}) == len(records)
    assert {r["id"] for r in records} >= {"p0:model-a:0", "p0:model-a:1", "p5:model-b:1"}
    rec = records[0]
    assert rec["generated_text"].startswith("T=1 ") and rec["cut"] == ["preamble"]
    assert rec["provenance"]["sampling"]["temperature"] == 1.0
    assert rec["provenance"]["template"].startswith("privacy_rephrase@")
    assert {"refusal", "unchanged", "empty", "degenerate", "truncated"} <= set(rec["flags"])
    assert rec["generation"]["request_seed"] is not None and rec["status"] == "ok"
    # search: 3 temperatures on 3 posts, then 6 posts x 2 samples
    assert [c[1].temperature for c in a.generate_calls[:3]] == [0.6, 0.8, 1.0]
    assert all(len(c[0]) == 3 for c in a.generate_calls[:3])
    meta = json.loads((out / "rephrased.meta.json").read_text())
    assert meta["temperature_search"]["by_model"]["model-a"]["chosen"] == 1.0
    assert meta["temperature_search"]["settings"]["sample_size"] == 3
    assert meta["complete"] is True and meta["skipped"] == {"empty original_post": 1}
    assert (out / "temperature_search.png").stat().st_size > 0
    # CSV like the seed: generated_text right after the text column, one file per model
    with open(out / "model-a_generated.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["id", "original_post", "generated_text", "sample"]
    assert len(rows) == 12
    audit = json.loads((out / "audit.json").read_text())
    assert set(audit["by_model"]) == {"model-a", "model-b"}
    assert audit["by_model"]["model-a"]["n"] == 12
    ranks = audit["by_model"]["model-a"]["ranks"]  # each rephrasing's own re-identification rank, by record id
    assert len(ranks) == 12 and all(1 <= r <= 6 for r in ranks.values())
    assert set(ranks) <= {json.loads(line)["id"] for line in (out / "rephrased.jsonl").read_text().splitlines()}
    assert "ranks" not in meta["audit"]["model-a"]  # the run record keeps only the rates
    assert (out / "audit.txt").read_text().startswith("model")
    assert summary["by_model"]["model-b"]["n_records"] == 12

    # resume: nothing left to do, no model loaded, no duplicates; a removed record is redone alone
    lines = (out / "rephrased.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (out / "rephrased.jsonl").write_text("".join(lines[:-1]), encoding="utf-8")
    n_calls = len(b.generate_calls)
    run(cfg, specs=(spec_a, spec_b), embedder=FakeEmbedder(best=1.0))
    assert spec_a.loads == 1 and spec_b.loads == 2
    assert len(b.generate_calls) == n_calls + 1 and len(b.generate_calls[-1][0]) == 1  # the search is not redone
    again = read_jsonl(out / "rephrased.jsonl")
    assert len(again) == 24 and len({r["id"] for r in again}) == 24


def test_job_without_search_uses_the_given_params_and_row_numbers_as_ids(tmp_path, fake_backend_cls):
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(json.dumps({"original_post": f"post {i}"}) for i in range(3)) + "\n")
    backend = fake_backend_cls(reply=lambda chat, key: "I'm sorry, but I can't rewrite this.")
    cfg = RephraseConfig(input=src, output_dir=tmp_path / "o", sampling=SamplingArgs(temperature=0.3))
    summary = run(cfg, specs=(FakeSpec(backend),))
    records = read_jsonl(tmp_path / "o" / "rephrased.jsonl")
    assert [r["id"] for r in records] == ["1:fake-model:0", "2:fake-model:0", "3:fake-model:0"]
    assert all(r["flags"]["refusal"] and not r["passed"] for r in records)
    assert backend.generate_calls[0][1].temperature == 0.3
    assert summary["by_model"]["fake-model"]["flag_rates"]["refusal"] == 1.0
    with open(tmp_path / "o" / "fake-model_generated.csv", encoding="utf-8") as handle:
        assert next(csv.reader(handle)) == ["post_id", "original_post", "generated_text"]


def test_posts_too_long_for_the_models_context_are_records_counted_once(tmp_path, fake_backend_cls):
    class Small(fake_backend_cls):
        def context_length(self):
            return 500

        def token_count(self, item):
            return sum(len(m["content"].split()) for m in item)

    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"id": "short", "original_post": "I am Bob"}) + "\n"
                   + json.dumps({"id": "long", "original_post": "word " * 500}) + "\n")
    cfg = RephraseConfig(input=src, output_dir=tmp_path / "o", search_temperatures=(0.5, 0.7), search_sample=2,
                         embedding_model="fake")
    backend = Small(reply=lambda chat, key: "T=0.5 I am Tim")
    summary = run(cfg, specs=(FakeSpec(backend),), embedder=FakeEmbedder(best=0.5))
    records = {r["post_id"]: r for r in read_jsonl(tmp_path / "o" / "rephrased.jsonl")}
    assert records["long"]["status"] == "too_long" and "context (500 tokens)" in records["long"]["error"]
    assert all("word word" not in str(call[0]) for call in backend.generate_calls)  # never sent, not even searched
    assert summary["by_model"]["fake-model"]["not_rephrased"] == {"too_long": 1}
    assert summary["by_model"]["fake-model"]["n_records"] == 1
    assert "not rephrased: too long for the model's context: 1" in format_summary({**summary, "seconds": 0})
    with open(tmp_path / "o" / "fake-model_generated.csv", encoding="utf-8") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == ["short"]
    calls = len(backend.generate_calls)
    assert run(cfg, specs=(FakeSpec(backend),), embedder=FakeEmbedder(best=0.5))["by_model"]["fake-model"][
        "not_rephrased"] == {"too_long": 1}
    assert len(backend.generate_calls) == calls  # complete: the rerun sends nothing


def test_duplicate_ids_refused_with_the_line_or_counted(tmp_path, fake_backend_cls):
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps({"id": i, "original_post": f"post {n}"}) + "\n" for n, i in enumerate("aba")))
    with pytest.raises(InputError, match="duplicate id 'a'") as err:
        run(RephraseConfig(input=src, output_dir=tmp_path / "o"), specs=(FakeSpec(fake_backend_cls()),))
    assert err.value.line == 3
    cfg = RephraseConfig(input=src, output_dir=tmp_path / "o", skip_bad_rows=True)
    summary = run(cfg, specs=(FakeSpec(fake_backend_cls()),))
    assert summary["skipped"] == {"duplicate id": 1} and summary["n_selected"] == 2


def test_missing_text_column_names_file_and_column(tmp_path, fake_backend_cls):
    src = write_csv(tmp_path / "posts.csv", [{"id": "a", "text": "hello"}])
    cfg = RephraseConfig(input=src, output_dir=tmp_path / "o")
    with pytest.raises(InputError, match="original_post") as err:
        run(cfg, specs=(FakeSpec(fake_backend_cls()),))
    assert str(src) in str(err.value)


# -- the CLI with the tiny model ----------------------------------------------------------------------------------
def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return run_script("rephrase_posts.py", *args, timeout=timeout)


@pytest.mark.slow
def test_cli_two_models_audit_and_resume(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    args = ["--input", SAMPLE, "-e", "4", "-o", out, "-m", tiny_model_dir, "-m", tiny_model_dir]
    args += ["--max-new-tokens", "8", "--device", "cpu", "--audit", "-b", "2"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    slugs = model_slugs([str(tiny_model_dir)] * 2)
    records = read_jsonl(out / "rephrased.jsonl")
    assert len(records) == 8 and {r["model_slug"] for r in records} == set(slugs)
    for slug in slugs:
        with open(out / f"{slug}_generated.csv", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 4 and list(rows[0]) == ["id", "original_post", "generated_text"]
    meta = json.loads((out / "rephrased.meta.json").read_text())
    assert meta["complete"] and meta["n_written"] == 8 and set(meta["per_model"]) == set(slugs)
    assert "top-1" in proc.stdout and (out / "audit.json").exists()

    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(read_jsonl(out / "rephrased.jsonl")) == 8
    assert "0 records to do" in rerun.stderr


def test_cli_bad_input_exits_2(tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [{"id": "a", "post": "hello"}])
    proc = cli("--input", bad, "-o", tmp_path / "o")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error:") and str(bad) in error and "original_post" in error
    missing = cli("--input", tmp_path / "nope.csv", "-o", tmp_path / "o")
    assert missing.returncode == 2 and "file not found" in missing.stderr
