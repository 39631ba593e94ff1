"""predict_responses.py train / infer (socialsynth/jobs/response/training.py, inference.py) on the tiny random Llama.

Training: loss on the response only (a collated batch), 3 steps on 4 records writes the adapter folder, SIGTERM
saves a checkpoint and a rerun resumes from it. Inference: one prediction per test record for PAC-LoRA, LoRA and
zero-shot, and a rerun adds nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from predict_responses import main
from socialsynth.core.config import parse
from socialsynth.core.errors import InputError, Interrupted
from socialsynth.jobs.response.config import TrainConfig
from socialsynth.jobs.response.inference import clean_prediction
from socialsynth.jobs.response.training import Collator, read_train_examples, train_adapter


def alpaca_records(n_train: int = 4, n_test: int = 2) -> list[dict]:
    rows = []
    for i in range(n_train + n_test):
        news = f"News {i}: the council voted to close the old bridge to cars."
        user = f"Name: user{i}. Posts: I walk my dog at {i} o'clock. Bridges are great."
        instruction = f"You saw this news: {news}\nAbout you: {user}\nWrite a post about #bridge{i}."
        s, u = instruction.index(news), instruction.index(user)
        rows.append(
            {
                "id": f"t{i % 2}:u{i}",
                "topic_id": f"t{i % 2}",
                "user_id": f"u{i}",
                "split": "train" if i < n_train else "test",
                "variant": "full",
                "language": "en",
                "system": "You are a social media user.",
                "instruction": instruction,
                "input": "",
                "output": f"Bridge news {i}? About time.",
                "spans": {"news": [[s, s + len(news)]], "user": [[u, u + len(user)]]},
            }
        )
    return rows


@pytest.fixture
def stage(tmp_path) -> Path:
    (tmp_path / "alpaca").mkdir()
    rows = alpaca_records()
    (tmp_path / "alpaca" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


TRAIN = ["--max-steps", "3", "--grad-accum", "2", "--lr", "1e-3", "--save-steps", "100"]
INFER = ["--max-new-tokens", "4", "--batch-size", "2"]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_collated_batch_has_labels_only_on_the_response(stage, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples, counts = read_train_examples(stage / "alpaca" / "full.jsonl", tok, 1024, with_masks=True)
    assert counts["train"] == 4 and len(examples) == 4 and counts["too_long"] == 0
    batch = Collator(tok.pad_token_id)(examples[:2])
    for row, ex in enumerate(examples[:2]):
        n = len(ex["input_ids"])
        labels, ids = batch["labels"][row], batch["input_ids"][row]
        answer = [i for i in ex["labels"] if i != -100]
        prompt_len = n - len(answer)
        assert (labels[:prompt_len] == -100).all() and (labels[n:] == -100).all()  # prompt and right padding
        assert labels[prompt_len:n].tolist() == ids[prompt_len:n].tolist() == answer
        assert tok.decode(answer).endswith("About time.<|im_end|>")
        assert batch["attention_mask"][row, :n].all() and not batch["attention_mask"][row, n:].any()
        assert not batch["news_mask"][row, prompt_len:].any() and batch["news_mask"][row, :prompt_len].any()
        assert batch["user_mask"][row, :prompt_len].any() and not (batch["news_mask"] & batch["user_mask"]).any()


@pytest.mark.parametrize("method", ["pac-lora", "lora"])
def test_train_then_infer(stage, tiny_model_dir, method):
    assert main(["train", "-o", str(stage), "-m", str(tiny_model_dir), "--method", method, *TRAIN]) == 0
    adapter = stage / "adapters" / method
    summary = json.loads((adapter / "training.json").read_text())
    assert summary["steps"] == 3 and summary["examples"] == 4 and summary["method"] == method
    assert summary["losses"] and all(math.isfinite(e["loss"]) for e in summary["losses"])
    weights = "pac_lora.safetensors" if method == "pac-lora" else "adapter_model.safetensors"
    assert (adapter / weights).exists()
    assert not list((stage / "adapters").glob(".*"))  # no temporary or checkpoint folders left
    assert main(["train", "-o", str(stage), "-m", str(tiny_model_dir), "--method", method, *TRAIN]) == 0  # no-op

    assert main(["infer", "-o", str(stage), "--adapter", str(adapter), *INFER]) == 0
    out = stage / "predictions" / f"{method}.jsonl"
    preds = lines(out)
    assert sorted(p["id"] for p in preds) == ["t0:u4", "t1:u5"]
    for p in preds:
        assert p["method"] == method and p["adapter"] == str(adapter) and p["model"] == str(tiny_model_dir)
        assert p["params"]["top_k"] == 20 and p["params"]["repetition_penalty"] == 1.2
        assert p["reference"].startswith("Bridge news") and p["finish_reason"] in ("stop", "length")
    assert main(["infer", "-o", str(stage), "--adapter", str(adapter), *INFER]) == 0
    assert len(lines(out)) == 2
    # a prompt that cannot fit --max-length is recorded as an error, not dropped
    short = ["--max-length", "10", "--method-name", f"{method}-short"]
    assert main(["infer", "-o", str(stage), "--adapter", str(adapter), *INFER, *short]) == 0
    errors = lines(stage / "predictions" / f"{method}-short.jsonl")
    assert len(errors) == 2 and all(p["status"] == "error" and "--max-length 10" in p["error"] for p in errors)


def test_bad_spans_name_the_file_line_and_field(stage, tiny_model_dir):
    path = stage / "alpaca" / "full.jsonl"
    rows = lines(path)
    rows[1]["spans"]["news"] = [[3, 100_000]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"full.jsonl:2: field 'spans.news'"):
        main(["train", "-o", str(stage), "-m", str(tiny_model_dir), *TRAIN])


def test_zero_shot_writes_one_prediction_per_test_record(stage, tiny_model_dir):
    args = ["infer", "-o", str(stage), "--zero-shot", "-m", str(tiny_model_dir), *INFER]
    assert main(args) == 0
    out = stage / "predictions" / "zero-shot.jsonl"
    assert len(lines(out)) == 2 and all(p["adapter"] is None for p in lines(out))
    assert main(args) == 0 and len(lines(out)) == 2
    meta = json.loads((stage / "predictions" / "zero-shot.meta.json").read_text())
    assert meta["written"] == 2 and meta["params"]["temperature"] == 0.7


class StopAfterFirstStep:
    """Stands in for runner.GracefulStop: as if SIGTERM arrived during the first optimizer step."""

    signum = 15
    exit_code = 143
    requested = True


def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes(stage, tiny_model_dir):
    argv = ["train", "-o", str(stage), "-m", str(tiny_model_dir), *TRAIN]
    cfg = parse(TrainConfig, argv[1:])
    with pytest.raises(Interrupted) as stopped:
        train_adapter(cfg, StopAfterFirstStep())
    assert stopped.value.exit_code == 143 and "step 1 of 3" in str(stopped.value)
    checkpoint = stage / "adapters" / ".pac-lora.work" / "checkpoints" / "checkpoint-1"
    assert (checkpoint / "pac_lora.safetensors").exists() and not (checkpoint / "model.safetensors").exists()
    assert not (stage / "adapters" / "pac-lora").exists()
    summary = train_adapter(parse(TrainConfig, argv[1:]), None)
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["steps"] == 3
    assert (stage / "adapters" / "pac-lora" / "training.json").exists()


def test_clean_prediction():
    assert clean_prediction('  "So true!"<|im_end|>\n') == "So true!"
    assert clean_prediction("“Wow.”") == "Wow."
    assert clean_prediction('"a" and "b"') == '"a" and "b"'
