"""extract-personas (socialsynth/jobs/response/persona.py) and the Alpaca records (alpaca.py): persona parsing, resume,
provenance, --no-personas, and character spans that are exactly the inserted fields in both languages."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest

from socialsynth.jobs.response import alpaca
from socialsynth.jobs.response.persona import PersonaConfig, parse_persona, persona_history, run_personas, split_echoes
from socialsynth.jobs.response.records import SPAN_NEWS, SPAN_USER, VARIANTS, chat_for, prompt_text
from socialsynth.llm.args import SamplingArgs


def case(uid: str, tid: str, language: str = "en", n_history: int = 5, split: str = "train", profile=None) -> dict:
    zh = language == "zh"
    return {
        "id": f"{tid}:{uid}",
        "topic_id": tid,
        "topic": "山姆10天翻车3次" if zh else f"Topic{tid}",
        "news": "山姆超市10天已翻车3次。\n顾客发现异物。" if zh else f"News about {tid}: the council votes today.",
        "user_id": uid,
        "user_name": f"用户{uid}" if zh else f"user_{uid}",
        "profile": profile if profile is not None else ({"description": "吃货", "location": "北京"} if zh else {}),
        "history": [f"{'历史博文' if zh else 'post'} {uid}-{tid}-{i}" for i in range(n_history)],
        "response": f"{'回复' if zh else 'reply'} {uid} {tid}",
        "split": split,
        "language": language,
    }


def write_cases(path: Path, cases) -> Path:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases), encoding="utf-8")
    return path


PERSONA_ANSWER = (
    "1. Interests: cycling, coffee\n2. Language style: upbeat\n3. Emotional tone: positive\n"
    "4. Personality: outgoing\n5. Values: community"
)


# -- parsing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,expected",
    [
        (
            PERSONA_ANSWER,
            [
                "Interests: cycling, coffee",
                "Language style: upbeat",
                "Emotional tone: positive",
                "Personality: outgoing",
                "Values: community",
            ],
        ),
        (
            "Sure! Here it is:\n**1. Interests:** tech\n2) Tone: calm\n\nHope this helps",
            ["Interests: tech", "Tone: calm"],
        ),
        (
            "1、兴趣话题：美食、探店\n2、语言风格：随意\n（3）情感基调：积极",
            ["兴趣话题：美食、探店", "语言风格：随意", "情感基调：积极"],
        ),
        ("- likes bikes\n- sarcastic", ["likes bikes", "sarcastic"]),
        ("1. Interests:\n   bikes and trains\n2. Tone: dry", ["Interests: bikes and trains", "Tone: dry"]),
        ("\n".join(f"{i}. item {i}" for i in range(1, 9)), [f"item {i}" for i in range(1, 6)]),
        ("1. same\n2. same\n3. other", ["same", "other"]),
        ("I cannot describe this user.", []),
        ("", []),
        (None, []),
    ],
)
def test_parse_persona(raw, expected):
    assert parse_persona(raw) == expected


def test_long_items_are_cut():
    item = parse_persona("1. " + "word " * 60)[0]
    assert len(item) <= 121 and item.endswith("…")


def test_items_copied_from_the_prompt_are_set_aside():
    prompt = "4. Personality: e.g. optimistic, pessimistic, independent, sarcastic."
    items = ["Personality: optimistic, pessimistic", "Values: fair pay for all", "Tone: ok"]
    assert split_echoes(items, prompt) == (["Values: fair pay for all", "Tone: ok"], items[:1])


def test_persona_history_merges_cases_by_rank():
    a = {"history": ["a1", "shared", "a3"]}
    b = {"history": ["b1", "b2", "shared"]}
    assert persona_history([a, b], 10) == ["a1", "b1", "shared", "b2", "a3"]
    assert persona_history([a, b], 3) == ["a1", "b1", "shared"]


# -- the job -----------------------------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def test_resume_after_a_crash_adds_the_rest_without_duplicates(tmp_path, fake_backend_cls):
    users = [f"u{i}" for i in range(5)]
    cases = [case(u, t) for u in users for t in ("t1", "t2")]
    write_cases(tmp_path / "cases.jsonl", cases)
    cfg = PersonaConfig(output_dir=tmp_path, batch_size=2, sampling=SamplingArgs(seed=3, max_new_tokens=40))

    calls = {"n": 0}

    def crashing(chat, key):
        calls["n"] += 1
        if calls["n"] > 2:  # the second batch dies, as if the job was killed
            raise Boom
        return PERSONA_ANSWER

    first = fake_backend_cls(reply=crashing)
    with pytest.raises(Boom):
        run_personas(cfg, backend=first)
    lines = (tmp_path / "personas.jsonl").read_text().splitlines()
    assert [json.loads(x)["user_id"] for x in lines] == ["u0", "u1"]
    meta = json.loads((tmp_path / "personas.meta.json").read_text())
    assert meta["complete"] is False and meta["n_written"] == 2

    second = fake_backend_cls(reply=lambda chat, key: "1. Interests: trains\n2. Tone: dry")
    summary = run_personas(cfg, backend=second)
    asked = [k for _, _, keys in second.generate_calls for k in keys]
    assert asked == ["u2", "u3", "u4"]
    records = [json.loads(x) for x in (tmp_path / "personas.jsonl").read_text().splitlines()]
    assert [r["user_id"] for r in records] == users  # each once
    assert records[0]["persona"][0] == "Interests: cycling, coffee" and records[4]["persona"] == [
        "Interests: trains",
        "Tone: dry",
    ]
    for r in records:  # provenance on every record
        assert r["model"] == "fake-model" and r["template"].startswith("response_persona_en@")
        assert r["params"]["seed"] == 3 and r["params"]["max_new_tokens"] == 40 and isinstance(r["seed"], int)
    assert summary["personas_total"] == 5 and summary["personas_this_run"] == 3
    assert json.loads((tmp_path / "personas.meta.json").read_text())["complete"] is True

    # a third run has nothing to do and never touches the backend, but rebuilds the Alpaca files
    third = fake_backend_cls()
    run_personas(cfg, backend=third)
    assert third.generate_calls == []
    full = [json.loads(x) for x in (tmp_path / "alpaca" / "full.jsonl").read_text().splitlines()]
    assert len(full) == 10 and "Interests: trains" in prompt_text(full[-1])


def test_prompt_shows_name_and_history_in_the_case_language(tmp_path, fake_backend_cls):
    write_cases(tmp_path / "cases.jsonl", [case("a", "t1", "zh", n_history=3), case("b", "t1", "en", n_history=7)])
    backend = fake_backend_cls(reply=lambda chat, key: "1、兴趣话题：美食\n2、语言风格：随意")
    run_personas(PersonaConfig(output_dir=tmp_path, persona_posts=5), backend=backend)
    chats = {k: c for chats, _, keys in backend.generate_calls for k, c in zip(keys, chats, strict=False)}
    zh_user = chats["a"][-1]["content"]
    assert "用户名：用户a" in zh_user and "3. 历史博文 a-t1-2" in zh_user and "不要使用Markdown" in zh_user
    en_user = chats["b"][-1]["content"]
    assert "Username: user_b" in en_user and "5. post b-t1-4" in en_user and "6. post" not in en_user


def test_unparsable_answers_are_kept_and_counted(tmp_path, fake_backend_cls):
    write_cases(tmp_path / "cases.jsonl", [case("a", "t1"), case("b", "t1")])
    backend = fake_backend_cls(reply=lambda chat, key: "I am a small model." if key == "a" else "")
    summary = run_personas(PersonaConfig(output_dir=tmp_path), backend=backend)
    assert summary["status"] == {"unparsed": 1, "empty": 1}
    recs = [json.loads(x) for x in (tmp_path / "personas.jsonl").read_text().splitlines()]
    assert recs[0]["raw"] == "I am a small model." and recs[0]["persona"] == []
    assert summary["alpaca"]["cases_without_persona"] == 2


def test_no_personas_writes_alpaca_without_a_model(tmp_path):
    write_cases(tmp_path / "cases.jsonl", [case("a", "t1"), case("a", "t2", split="test")])
    summary = run_personas(PersonaConfig(output_dir=tmp_path, no_personas=True))
    assert not (tmp_path / "personas.jsonl").exists()
    assert "only alpaca/without_persona.jsonl is meaningful" in summary["note"]
    for variant in VARIANTS:
        recs = [json.loads(x) for x in (tmp_path / "alpaca" / f"{variant}.jsonl").read_text().splitlines()]
        assert [r["split"] for r in recs] == ["train", "test"]
        assert "Here is your persona" not in prompt_text(recs[0])


# -- Alpaca records and spans --------------------------------------------------------------------------------------


def _inserted(tpl, c, persona, variant) -> dict[str, list[str]]:
    """The field texts the template inserts, in order, by span kind (independent of the offsets)."""
    values = alpaca.field_values(tpl, c, persona, variant)
    expect = {SPAN_NEWS: [], SPAN_USER: []}
    for section in tpl.variants[variant]:
        field = alpaca.OPTIONAL_FIELDS.get(section)
        if field and not values[field]:
            continue
        for _, name, _, _ in string.Formatter().parse(tpl.sections[section]):
            if name and alpaca.FIELD_SPANS[name] and values[name]:
                expect[alpaca.FIELD_SPANS[name]].append(values[name])
    return expect


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n_history", [0, 1, 5, 8])
def test_spans_are_exactly_the_inserted_fields(language, variant, n_history):
    c = case("u1", "t1", language, n_history=n_history, profile={"description": "bio text", "gender": "f"})
    persona = ["Interests: x", "Tone: y"] if n_history != 1 else []
    tpl = alpaca.load_instruction_template(alpaca.template_name(language))
    rec = alpaca.alpaca_record(tpl, c, persona, variant)
    text = prompt_text(rec)
    expected = _inserted(tpl, c, persona, variant)
    got = {kind: [text[s:e] for s, e in spans] for kind, spans in rec["spans"].items()}
    assert got == expected
    assert got[SPAN_NEWS][0] == c["news"] and got[SPAN_NEWS][1:] == [c["topic"]] * 2
    assert got[SPAN_USER][0] == c["user_name"]
    if n_history:
        assert all((h in text) == (variant != "without_history") for h in c["history"])
    if persona:
        assert all((p in text) == (variant != "without_persona") for p in persona)
    spans = sorted(s for kind in rec["spans"].values() for s in kind)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # no overlaps
    assert rec["output"] == c["response"] and rec["input"] == "" and rec["variant"] == variant
    assert chat_for(rec)[0] == {
        "role": "system",
        "content": "你是一个微博用户。" if language == "zh" else "You are a social media user.",
    }


def test_zh_instruction_follows_the_seed():
    c = case("u1", "t1", "zh", n_history=6)
    tpl = alpaca.load_instruction_template("response_instruction_zh")
    text = prompt_text(alpaca.alpaca_record(tpl, c, ["兴趣话题：美食"], "full"))
    assert text.startswith("你的用户名为用户u1。")
    assert "以下是你的6条历史博文：\n1. 历史博文 u1-t1-0" in text
    assert "以下是你的用户画像：\n1. 兴趣话题：美食" in text
    assert "现在你看到了一则新闻：\n山姆超市" in text
    assert (
        "关于这个新闻的hashtag #山姆10天翻车3次# 登上了微博热搜，请发一条关于hashtag #山姆10天翻车3次# 的微博" in text
    )
    assert text.endswith("    - 仅输出你发表的微博内容")


def test_command_line_with_a_real_backend(tmp_path, tiny_model_dir, capsys):
    """The flags end to end: build the bundled sample, then personas with a tiny random Llama through HFBackend."""
    from predict_responses import main

    sample = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
    sample = sample / "data" / "responses_sample"
    assert main(["build-dataset", "--input", str(sample), "-o", str(tmp_path), "--top-k", "3"]) == 0
    args = (
        ["-o", str(tmp_path), "-m", str(tiny_model_dir), "--device", "cpu", "--dtype", "fp32"]
        + ["--max-new-tokens", "6", "--batch-size", "5", "--persona-posts", "2", "--seed", "1"]
    )
    assert main(["extract-personas", *args]) == 0
    out = capsys.readouterr().out
    assert "personas: 10" in out and "alpaca: full 41, without_persona 41, without_history 41" in out
    records = [json.loads(x) for x in (tmp_path / "personas.jsonl").read_text().splitlines()]
    assert len(records) == 10 and all(r["model"] == str(tiny_model_dir) for r in records)
    assert all(r["params"]["max_new_tokens"] == 6 and r["n_history_posts"] == 2 for r in records)
    full = [json.loads(x) for x in (tmp_path / "alpaca" / "full.jsonl").read_text().splitlines()]
    assert all(prompt_text(r).count("\n1. ") >= 1 for r in full)
