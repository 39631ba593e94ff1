"""The socialalign preset (seed 004) of predict_responses.py and the LaMP-style retrieval baseline (`infer --rag`).

Per preset file, `--preset socialalign --print-config` shows the seed's model ids and settings; `--rag` answers
each test case from its BM25-retrieved posts and the news (no persona, no profile) through any backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from predict_responses import main
from socialsynth.llm import BackendSpec

QWEN = "Qwen/Qwen2.5-7B-Instruct"


def printed(run_cli, *argv) -> dict:
    code, out, err = run_cli(main, [*argv, "--preset", "socialalign", "--print-config"])
    assert code == 0, err
    return yaml.safe_load(out)


def test_list_presets_names_socialalign_for_each_stage(run_cli):
    for stage in ("build-dataset", "extract-personas", "train", "infer"):
        code, out, _ = run_cli(main, [stage, "--list-presets"])
        assert code == 0 and out.startswith("socialalign") and "seed 004" in out


def test_train_preset_is_the_seeds_pac_lora(run_cli):
    cfg = printed(run_cli, "train")
    assert cfg["model"] == QWEN and cfg["method"] == "pac-lora" and cfg["routing"] == "token"
    assert (cfg["experts"], cfg["rank"], cfg["alpha"], cfg["dropout"]) == (3, 8, 16.0, 0.1)
    assert cfg["target_modules"] == "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
    assert (cfg["max_length"], cfg["epochs"], cfg["batch_size"], cfg["grad_accum"]) == (1024, 2.0, 1, 16)
    assert (cfg["lr"], cfg["scheduler"], cfg["warmup"], cfg["precision"]) == (2e-5, "cosine", 0.1, "bf16")
    # flags still win over the preset
    code, out, _ = run_cli(main, ["train", "--preset", "socialalign", "--routing", "span-mean", "-q", "4",
                                  "--device-map", "auto", "--print-config"])
    over = yaml.safe_load(out)
    assert code == 0 and over["routing"] == "span-mean" and over["quantization"] == 4 and over["model"] == QWEN


def test_infer_preset_has_the_seeds_sampling(run_cli):
    cfg = printed(run_cli, "infer", "--zero-shot")
    assert cfg["model"] == QWEN and cfg["max_length"] == 1024
    assert (cfg["temperature"], cfg["top_p"], cfg["top_k"], cfg["repetition_penalty"], cfg["max_new_tokens"]) == (
        0.7, 0.9, 20, 1.2, 256)


def test_persona_preset_is_gpt4_through_an_openai_server(run_cli, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    cfg = printed(run_cli, "extract-personas")
    assert cfg["model"] == "gpt-4-0125-preview" and cfg["backend"] == "openai" and cfg["persona_posts"] == 5


def test_build_preset_reads_the_weibo_crawl_with_the_seeds_retrieval(run_cli, tmp_path):
    cfg = printed(run_cli, "build-dataset", "--input", tmp_path)
    assert cfg["format"] == "weibo" and cfg["require_topics"] is True
    assert (cfg["min_history"], cfg["min_topic_chars"], cfg["top_k"], cfg["k1"], cfg["b"]) == (10, 4, 5, 1.5, 0.75)


# ------------------------------------------------------------------------------------------------ --rag


def cases(n_test: int = 2) -> list[dict]:
    rows = []
    for i in range(n_test + 1):
        rows.append({"id": f"t{i}:u{i}", "topic_id": f"t{i}", "topic": f"#bridge{i}#", "user_id": f"u{i}",
                     "news": f"News {i}: the council closed the old bridge.",
                     "history": [f"post {i}.{j} about bridges and dogs" for j in range(5)],
                     "response": f"Real answer {i}", "split": "test" if i < n_test else "train",
                     "language": "en"})
    rows.append({"id": "t9:u9", "topic_id": "t9", "topic": "#大桥#", "user_id": "u9", "news": "市政府宣布关闭老桥。",
                 "history": ["我每天走这座桥", "今天天气不错"], "response": "可惜了", "split": "test",
                 "language": "zh"})
    return rows


@pytest.fixture
def stage(tmp_path) -> Path:
    text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases())
    (tmp_path / "cases.jsonl").write_text(text, encoding="utf-8")
    return tmp_path


def test_rag_prompts_hold_the_retrieved_posts_and_the_news_only(stage, monkeypatch, fake_backend_cls):
    backend = fake_backend_cls(reply=lambda chat, key: f'"answer {key}"')
    monkeypatch.setattr(BackendSpec, "load", lambda self: backend)
    assert main(["infer", "-o", str(stage), "--rag", "--rag-k", "2", "-m", "fake"]) == 0
    chats = {key: chat for call in backend.generate_calls for chat, key in zip(call[0], call[2], strict=True)}
    assert sorted(chats) == ["t0:u0", "t1:u1", "t9:u9"]  # the test split only
    en = chats["t0:u0"]
    assert len(en) == 1 and en[0]["role"] == "user"  # no system prompt, no persona
    text = en[0]["content"]
    assert "- post 0.0 about" in text and "- post 0.1 about" in text and "post 0.2" not in text  # --rag-k 2
    assert "News 0: the council closed the old bridge." in text and "#bridge0#" in text
    assert "以下是这位用户以前发过的微博" in chats["t9:u9"][0]["content"]  # the case's language
    preds = [json.loads(x) for x in (stage / "predictions" / "rag.jsonl").read_text().splitlines()]
    assert {p["id"]: p["prediction"] for p in preds}["t0:u0"] == "answer t0:u0"
    assert all(p["method"] == "rag" and p["variant"] == "rag" and p["model"] == "fake" for p in preds)
    assert {p["id"]: p["reference"] for p in preds}["t1:u1"] == "Real answer 1"
    meta = json.loads((stage / "predictions" / "rag.meta.json").read_text())
    assert meta["adapter_method"] == "rag" and meta["rag_k"] == 2
    assert main(["infer", "-o", str(stage), "--rag", "--rag-k", "2", "-m", "fake"]) == 0  # resumed: nothing new
    assert len((stage / "predictions" / "rag.jsonl").read_text().splitlines()) == 3


def test_rag_runs_on_a_real_model_in_process(stage, tiny_model_dir):
    assert main(["infer", "-o", str(stage), "--rag", "-m", str(tiny_model_dir), "--max-new-tokens", "3"]) == 0
    preds = [json.loads(x) for x in (stage / "predictions" / "rag.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["finish_reason"] in ("stop", "length") for p in preds)


@pytest.mark.parametrize("argv, needle", [
    (["--rag", "--zero-shot"], "--adapter"),
    (["--rag", "--rag-k", "0"], "--rag-k"),
    (["--rag", "--variant", "full"], "--variant"),
    (["--rag", "--cases", "{tmp}/nope.jsonl"], "--cases"),
])
def test_rag_bad_flags(bad_flag, tmp_path, argv, needle):
    bad_flag(main, ["infer", "-o", str(tmp_path), *[a.replace("{tmp}", str(tmp_path)) for a in argv]], needle)


def test_rag_bad_case_line_names_file_line_and_field(stage, run_cli):
    rows = cases()
    rows[1]["history"] = "not a list"
    (stage / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cli(main, ["infer", "-o", stage, "--rag", "-m", "fake"])
    assert code == 2 and "cases.jsonl:2" in err and "history" in err
