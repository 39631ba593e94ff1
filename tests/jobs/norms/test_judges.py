"""Judges of the normness job (--judge SPEC, repeatable): spec parsing, several judges in one run, the generator as
the judge by default, resuming between judge passes, and the judges' figures in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from socialsynth.jobs.norms import job as norms_job
from socialsynth.jobs.norms.cli import main
from socialsynth.jobs.norms.judges import JudgeSpec, parse_judge_spec, parse_judges, ratings_path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
ASKMEN_LINES = (REPO / "data" / "askmen.jsonl").read_text(encoding="utf-8").splitlines()


# -- specs --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, spec", [
    ("embedded:likelihood", JudgeSpec("embedded", "embedded", "likelihood")),
    ("hf:meta-llama/Meta-Llama-3-8B-Instruct:logits",
     JudgeSpec("hf", "meta-llama/Meta-Llama-3-8B-Instruct", "logits")),
    ("openai:gpt-4o-mini:logits", JudgeSpec("openai", "gpt-4o-mini", "logits")),
    ("hf:/path/to/model:logits,quantize=4", JudgeSpec("hf", "/path/to/model", "logits", quantize=4)),
    ("hf:org/m:v2:generate,parse=seed,template=norm_rating_seed,dtype=BF16",
     JudgeSpec("hf", "org/m:v2", "generate", template="norm_rating_seed", dtype="bf16", parse="seed")),
    (" Embedded:LOGITS ", JudgeSpec("embedded", "embedded", "logits")),
])
def test_judge_specs_parse(text, spec):
    assert parse_judge_spec(text) == spec
    assert parse_judge_spec(spec.name) == spec  # the name is a spec that gives the judge back


def test_judge_names_tell_judges_apart():
    specs = ["embedded:likelihood", "embedded:logits", "hf:a/b:logits", "hf:a_b:logits", "hf:a/b:logits,quantize=8"]
    names = {parse_judge_spec(s).name for s in specs}
    slugs = {parse_judge_spec(s).slug for s in specs}
    assert len(names) == len(slugs) == len(specs)
    assert all("/" not in slug and ":" not in slug for slug in slugs)


@pytest.mark.parametrize("text, reason", [
    ("", "empty judge spec"),
    ("gpt:x:logits", "unknown backend"),
    ("embedded", "no rating method"),
    ("embedded:vibes", "unknown rating method"),
    ("hf:logits", "needs a model"),
    ("embedded:other-model:logits", "takes no model"),
    ("hf:m:logits,quantize=3", "quantize must be 4 or 8"),
    ("openai:m:logits,quantize=4", "quantize applies to hf and vllm"),
    ("hf:m:logits,color=red", "bad option"),
    ("hf:m:logits,parse=strict", "parse must be one of"),
    ("embedded:likelihood,template=norm_rating", "cannot build the likelihood prompts"),
    ("embedded:logits,template=no_such_template", "unknown template"),
])
def test_bad_judge_specs_say_why_in_one_line(text, reason):
    with pytest.raises(ValueError, match=reason) as err:
        parse_judge_spec(text)
    assert "\n" not in str(err.value)


def test_the_same_judge_twice_is_refused():
    with pytest.raises(ValueError, match="given twice"):
        parse_judges(["embedded:logits", "Embedded:logits"])


@pytest.mark.parametrize("spec", ["embedded", "hf:m:logits,quantize=3", "embedded:logits,template=nope",
                                  "openai:m:logits"])
def test_bad_judge_spec_is_a_one_line_error_from_the_cli(bad_flag, tmp_path, spec, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    line = bad_flag(main, ["-r", "askmen", "-n", "formality", "-o", tmp_path, "--judge", "embedded:logits",
                           "--judge", spec], "--judge")
    assert "error" in line


# -- the job with judges ------------------------------------------------------------------------------------------
def job_argv(tmp_path: Path, model_dir: Path, *extra, n: int = 3) -> list[str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "askmen.jsonl").write_text("\n".join(ASKMEN_LINES[:n]) + "\n", encoding="utf-8")
    return ["-r", "askmen", "-n", "formality", "-d", data, "-o", tmp_path / "out", "-m", model_dir,
            "--embedding-model", "none", "--max-new-tokens", "6", "-b", "2", "--device", "cpu", "--levels", "1,3,5",
            *extra]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def assert_seed_fields_from(rec: dict, judge: str) -> None:
    """The seed's rating fields hold the ratings of ``judge`` (the primary judge)."""
    block = rec["ratings"][judge]
    assert rec["original_rating_detail"] == block["original"]
    assert rec["original_rating"] == block["original"]["rating"]
    for lv in ("1", "3", "5"):
        assert rec["rewrite_ratings"][lv] == block[lv]["rating"]
        assert rec["rewrite_ratings_expected"][lv] == block[lv]["expected"]


def test_two_judges_rate_every_text_and_are_named(tmp_path, tiny_model_dir, run_cli):
    judges = [f"hf:{tiny_model_dir}:logits", f"hf:{tiny_model_dir}:likelihood"]
    code, out, err = run_cli(main, job_argv(tmp_path, tiny_model_dir, "--judge", judges[0], "--judge", judges[1]))
    assert code == 0, err[-3000:]
    records = read_jsonl(tmp_path / "out" / "askmen_formality.jsonl")
    assert len(records) == 3
    names = [parse_judge_spec(j).name for j in judges]
    for rec in records:
        assert rec["judges"] == names
        assert list(rec["ratings"]) == names  # the generator did not rate: only the judges' ratings
        assert rec["ratings"][names[0]]["method"] == "logits"
        assert rec["ratings"][names[1]]["method"] == "likelihood"
        for name in names:
            block = rec["ratings"][name]
            assert 1 <= block["original"]["expected"] <= 5
            assert all(1 <= block[lv]["expected"] <= 5 for lv in ("1", "3", "5") if rec[lv])
        assert_seed_fields_from(rec, names[0])
        assert rec["provenance"]["rating_method"] is None and rec["provenance"]["judges"] == names
        assert list(rec)[-1] == "provenance"
    meta = json.loads((tmp_path / "out" / "askmen_formality.meta.json").read_text(encoding="utf-8"))
    assert meta["complete"] is True
    assert [j["name"] for j in meta["judges"]] == names
    assert [j["method_used"] for j in meta["judges"]] == ["logits", "likelihood"]
    assert all(j["provenance"]["model"] == str(tiny_model_dir) for j in meta["judges"])
    assert set(meta["summary"]["judges"]["per_judge"]) == set(names)
    assert "Spearman(target level, rating)" in out and "Cohen's kappa" in out


def test_generator_only_run_keeps_the_seed_fields_and_names_the_generator(tmp_path, tiny_model_dir, run_cli):
    code, _, err = run_cli(main, job_argv(tmp_path, tiny_model_dir, "--rating-method", "logits", n=2))
    assert code == 0, err[-3000:]
    name = f"generator:{tiny_model_dir}:logits"
    for rec in read_jsonl(tmp_path / "out" / "askmen_formality.jsonl"):
        assert rec["judges"] == [name]
        assert list(rec["ratings"]) == [name] and rec["ratings"][name]["method"] == "logits"
        assert rec["original_rating"] in (1, 2, 3, 4, 5)
        assert_seed_fields_from(rec, name)
        assert rec["provenance"]["rating_method"] == "logits"
    meta = json.loads((tmp_path / "out" / "askmen_formality.meta.json").read_text(encoding="utf-8"))
    assert [j["name"] for j in meta["judges"]] == [name] and meta["judges"][0]["method_used"] == "logits"
    assert not list((tmp_path / "out").glob("*.ratings.*"))


def test_a_run_stopped_between_judges_resumes_without_duplicates(tmp_path, tiny_model_dir, run_cli, monkeypatch):
    judges = [f"hf:{tiny_model_dir}:logits", f"hf:{tiny_model_dir}:generate"]
    argv = job_argv(tmp_path, tiny_model_dir, "--judge", judges[0], "--judge", judges[1], n=5)
    loaded, real_open = [], norms_job.open_judge
    real_rate = norms_job.rate_records

    def open_then_stop(spec, cfg):
        loaded.append(spec.name)
        return real_open(spec, cfg)

    calls = []

    def rate_then_die(rater, records, *args, **kwargs):  # the second judge dies after its first chunk
        calls.append(rater.method)
        if rater.method == "generate" and calls.count("generate") == 2:
            raise KeyboardInterrupt
        return real_rate(rater, records, *args, **kwargs)

    monkeypatch.setattr(norms_job, "open_judge", open_then_stop)
    monkeypatch.setattr(norms_job, "rate_records", rate_then_die)
    with pytest.raises(KeyboardInterrupt):
        main([str(a) for a in argv])
    out = tmp_path / "out" / "askmen_formality.jsonl"
    names = [parse_judge_spec(j).name for j in judges]
    assert len(read_jsonl(ratings_path(out, parse_judge_spec(judges[0])))) == 5
    assert len(read_jsonl(ratings_path(out, parse_judge_spec(judges[1])))) == 2  # one chunk of -b 2
    meta = json.loads(out.with_suffix(".meta.json").read_text(encoding="utf-8"))
    assert meta["complete"] is False
    assert all(rec["ratings"] == {} and rec["original_rating"] is None for rec in read_jsonl(out))  # not joined yet

    loaded.clear()
    monkeypatch.setattr(norms_job, "rate_records", real_rate)
    code, _, err = run_cli(main, argv)
    assert code == 0, err[-3000:]
    assert loaded == [names[1]]  # the generator had nothing to do, the first judge neither
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == sorted(json.loads(line)["id"] for line in ASKMEN_LINES[:5])
    for judge in judges:
        side = read_jsonl(ratings_path(out, parse_judge_spec(judge)))
        assert len(side) == len({r["id"] for r in side}) == 5
    for rec in records:
        assert list(rec["ratings"]) == names
        assert rec["ratings"][names[1]]["original"]["raw"] is not None  # generate: the answer is kept
        assert_seed_fields_from(rec, names[0])
    meta = json.loads(out.with_suffix(".meta.json").read_text(encoding="utf-8"))
    assert meta["complete"] is True and meta["judges"][1]["methods"] == {"generate": 5}


def test_models_load_one_after_another(tmp_path, tiny_model_dir, run_cli, monkeypatch):
    """The generator is gone before the first judge loads, and each judge before the next one."""
    import gc
    import weakref
    from contextlib import contextmanager

    alive, seen, real_load, real_open = [], [], norms_job.load_models, norms_job.open_judge

    def load_models(*args, **kwargs):
        models = real_load(*args, **kwargs)
        alive.append(weakref.ref(models.backend))
        return models

    @contextmanager
    def open_judge(spec, cfg):
        gc.collect()
        seen.append([ref() is not None for ref in alive])
        with real_open(spec, cfg) as backend:
            alive.append(weakref.ref(backend))
            yield backend

    monkeypatch.setattr(norms_job, "load_models", load_models)
    monkeypatch.setattr(norms_job, "open_judge", open_judge)
    code, _, err = run_cli(main, job_argv(tmp_path, tiny_model_dir, "--judge", f"hf:{tiny_model_dir}:logits",
                                          "--judge", f"hf:{tiny_model_dir}:likelihood", n=1))
    assert code == 0, err[-3000:]
    assert seen == [[False], [False, False]]  # nothing else alive when a judge loads


def test_a_judge_without_its_method_falls_back_and_says_so(tmp_path, tiny_model_dir, run_cli, monkeypatch,
                                                           fake_backend_cls):
    from contextlib import contextmanager

    from socialsynth.llm.base import Unsupported

    class NoPromptLogprobs(fake_backend_cls):  # a server that returns no prompt log-probabilities
        def score_continuations(self, chats, continuations):
            raise Unsupported("the server returns no prompt logprobs")

    @contextmanager
    def fake_judge(spec, cfg):
        yield NoPromptLogprobs(choice_probs=lambda chat: [0.0, 0.1, 0.2, 0.3, 0.4])

    monkeypatch.setattr(norms_job, "open_judge", fake_judge)
    code, _, err = run_cli(main, job_argv(tmp_path, tiny_model_dir, "--judge", "openai:m:likelihood",
                                          "--api-base", "http://127.0.0.1:9/v1", n=2))
    assert code == 0, err[-3000:]
    for rec in read_jsonl(tmp_path / "out" / "askmen_formality.jsonl"):
        block = rec["ratings"]["openai:m:likelihood"]
        assert block["method"] == "logits"  # what was really used, not what was asked
        assert block["original"]["expected"] == pytest.approx(4.0)
    meta = json.loads((tmp_path / "out" / "askmen_formality.meta.json").read_text(encoding="utf-8"))
    entry = meta["judges"][0]
    assert entry["method"] == "likelihood" and entry["method_used"] == "logits"
    assert "no prompt logprobs" in entry["notes"][0]


def test_candidates_selected_by_the_generator_are_judged_by_another_judge(tmp_path, tiny_model_dir, run_cli):
    judge = parse_judge_spec(f"hf:{tiny_model_dir}:likelihood").name
    code, _, err = run_cli(main, job_argv(tmp_path, tiny_model_dir, "--candidates", "2", "--rating-method", "logits",
                                          "--judge", judge, n=2))
    assert code == 0, err[-3000:]
    generator = f"generator:{tiny_model_dir}:logits"
    for rec in read_jsonl(tmp_path / "out" / "askmen_formality.jsonl"):
        assert rec["judges"] == [judge]
        assert list(rec["ratings"]) == [judge, generator]  # the selector's ratings are kept, after the judges'
        assert rec["selection"]["judge"] == generator
        assert rec["ratings"][generator]["method"] == "logits" and rec["ratings"][judge]["method"] == "likelihood"
        assert_seed_fields_from(rec, judge)


# -- the summary's judge figures ----------------------------------------------------------------------------------
def block(values, method="logits"):
    """A ratings block with these expected ratings for levels 1-5 (None: not rated) and original 3."""
    out = {"method": method, "original": {"rating": 3, "expected": 3.0}}
    out.update({str(lv): None if v is None else {"rating": round(v), "expected": v}
                for lv, v in zip(range(1, 6), values, strict=True)})
    return out


A = {"c1": [1.0, 2.0, 3.0, 4.0, 5.0],   # in order
     "c2": [1.0, 2.0, 2.0, 4.0, 5.0],   # a tie: out of order
     "c3": [5.0, 4.0, 3.0, 2.0, 1.0],   # reversed
     "c4": [1.0, 2.0, None, 4.0, 5.0]}  # level 3 not rated: left out of the order share, in Spearman
B = {"c1": [1.4, 2.4, 3.4, 3.6, 4.6],   # rounds to 1 2 3 4 5
     "c2": [2.0, 2.0, 2.0, 4.0, 4.0],
     "c3": [5.0, 4.0, 3.0, 2.0, 1.0],
     "c4": [1.0, 1.0, 3.0, 4.0, 5.0]}


def test_summary_judge_figures_equal_hand_computed_values(tmp_path):
    path = tmp_path / "out.jsonl"
    lines = []
    for cid in A:
        rec = {"id": cid, "judges": ["a", "b"], "ratings": {"a": block(A[cid]), "b": block(B[cid], "likelihood")},
               "rewrite_ratings_expected": {str(lv): v for lv, v in zip(range(1, 6), A[cid], strict=True)}}
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    judges = norms_job.summarise(path, (1, 2, 3, 4, 5))["judges"]
    a = judges["per_judge"]["a"]
    assert list(judges["per_judge"]) == ["a", "b"]
    assert a["right_order"] == {"n": 1, "of": 3, "share": round(1 / 3, 4)}
    assert a["mean_rating_by_level"] == {"1": 2.0, "2": 2.5, "3": round(8 / 3, 3), "4": 3.5, "5": 4.0}
    assert a["n_rewrites"] == 19 and judges["per_judge"]["b"]["methods"] == {"likelihood": 4}
    # Spearman over the 19 rated (level, rating) pairs by hand: ranks of the levels (4 comments' 1s, 2s, ...)
    level = [1, 2, 3, 4, 5] * 3 + [1, 2, 4, 5]
    rating = A["c1"] + A["c2"] + A["c3"] + [1.0, 2.0, 4.0, 5.0]
    rho = float(np.corrcoef(rank(level), rank(rating))[0, 1])
    spear = a["spearman_target_rating"]
    assert spear["value"] == pytest.approx(rho, abs=1e-4)
    assert spear["low"] <= spear["value"] <= spear["high"]
    b = judges["per_judge"]["b"]
    assert b["right_order"] == {"n": 1, "of": 4, "share": 0.25}  # only c1 strictly rises (c2 and c4 have ties)
    pair = judges["agreement"][0]
    assert pair["judges"] == ["a", "b"] and pair["n_rewrites"] == 19
    # kappa on rounded levels, by hand: a's and b's levels on the 19 rewrites both rated
    a_levels = [1, 2, 3, 4, 5, 1, 2, 2, 4, 5, 5, 4, 3, 2, 1, 1, 2, 4, 5]
    b_levels = [1, 2, 3, 4, 5, 2, 2, 2, 4, 4, 5, 4, 3, 2, 1, 1, 1, 4, 5]
    assert pair["kappa"]["value"] == pytest.approx(kappa(a_levels, b_levels), abs=1e-4)
    a_vals = [v for cid in A for v in A[cid] if v is not None]
    b_vals = [B[cid][i] for cid in A for i, v in enumerate(A[cid]) if v is not None]
    assert pair["spearman"]["value"] == pytest.approx(float(np.corrcoef(rank(a_vals), rank(b_vals))[0, 1]),
                                                      abs=1e-4)


def rank(values) -> list[float]:
    """Average ranks (ties share the mean of their places), 1-based."""
    order = sorted(values)
    return [sum(i + 1 for i, v in enumerate(order) if v == x) / order.count(x) for x in values]


def kappa(a, b) -> float:
    """Cohen's kappa from its definition: (observed - chance agreement) / (1 - chance agreement)."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    chance = sum((a.count(k) / n) * (b.count(k) / n) for k in set(a) | set(b))
    return (observed - chance) / (1 - chance)
