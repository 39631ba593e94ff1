"""Seed-004 (SocialAlign) modes of predict_responses.py: QLoRA training (-q 4), the seed's token-level routing beside
ours, on the tiny random Llama. Presets, the Chinese sentiment scorer and the BM25 prompting baseline are in
test_response_socialalign.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from predict_responses import main
from socialsynth.jobs.response.pac_lora import apply_pac_lora

TRAIN = ["--max-steps", "1", "--grad-accum", "1", "--lr", "1e-3", "--save-steps", "100"]


def alpaca_records(n_train: int = 2, n_test: int = 1) -> list[dict]:
    rows = []
    for i in range(n_train + n_test):
        news = f"News {i}: the council voted to close the old bridge to cars."
        user = f"Name: user{i}. Posts: I walk my dog at {i} o'clock. Bridges are great."
        instruction = f"You saw this news: {news}\nAbout you: {user}\nWrite a post about #bridge{i}."
        s, u = instruction.index(news), instruction.index(user)
        rows.append({"id": f"t0:u{i}", "topic_id": "t0", "user_id": f"u{i}",
                     "split": "train" if i < n_train else "test", "variant": "full", "language": "en",
                     "system": "You are a social media user.", "instruction": instruction, "input": "",
                     "output": f"Bridge news {i}? About time.",
                     "spans": {"news": [[s, s + len(news)]], "user": [[u, u + len(user)]]}})
    return rows


@pytest.fixture
def stage(tmp_path) -> Path:
    (tmp_path / "alpaca").mkdir()
    (tmp_path / "alpaca" / "full.jsonl").write_text("".join(json.dumps(r) + "\n" for r in alpaca_records()))
    return tmp_path


def bnb_4bit_problem(model_dir: Path) -> str | None:
    """Why bitsandbytes cannot run a 4-bit forward and backward here (None when it can)."""
    try:
        from socialsynth.llm.loading import load_causal_lm

        _, model = load_causal_lm(str(model_dir), "cpu", "bf16", 4, frozen=True)
        ids = torch.tensor([[1, 2, 3]])
        model.get_input_embeddings().weight.requires_grad_(True)
        model(input_ids=ids, labels=ids).loss.backward()
    except Exception as e:  # any failure of the library or its CPU kernels means: skip, with the reason
        return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None


@pytest.mark.parametrize("method", ["pac-lora", "lora"])
def test_qlora_trains_a_step_on_a_4bit_base(stage, tiny_model_dir, method):
    problem = bnb_4bit_problem(tiny_model_dir)
    if problem:
        print(f"bitsandbytes 4-bit on this CPU fails: {problem}")
        pytest.skip(f"bitsandbytes cannot train 4-bit here: {problem}")
    args = ["train", "-o", str(stage), "-m", str(tiny_model_dir), "--method", method, "-q", "4", "--device", "cpu",
            *TRAIN]
    assert main(args) == 0
    summary = json.loads((stage / "adapters" / method / "training.json").read_text())
    assert summary["quantization"] == 4 and summary["steps"] == 1
    assert all(math.isfinite(e["loss"]) for e in summary["losses"])
    if method == "pac-lora":  # the experts really sit on 4-bit layers, and only they train
        from socialsynth.core.config import parse
        from socialsynth.jobs.response.config import TrainConfig
        from socialsynth.jobs.response.training import build_model, load_base, pick_hardware

        cfg = parse(TrainConfig, ["-m", str(tiny_model_dir), "-q", "4", "--device", "cpu"])
        model = build_model(cfg, load_base(cfg, pick_hardware(cfg))[1], "tiny")
        assert {type(m.base).__name__ for _, m in model.adapted_modules()} == {"Linear4bit"}
        assert all("lora_" in n or "router_" in n for n, p in model.named_parameters() if p.requires_grad)
    # the adapter loads and answers on the 4-bit base too
    assert main(["infer", "-o", str(stage), "--adapter", str(stage / "adapters" / method), "-q", "4",
                 "--device", "cpu", "--max-new-tokens", "3"]) == 0
    assert len((stage / "predictions" / f"{method}.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("routing", ["span-mean", "token"])
def test_both_routings_train_and_answer(stage, tiny_model_dir, routing):
    name = f"pac-{routing}"
    extra = ["--gradient-checkpointing"] if routing == "token" else []  # recomputed layers route the same way
    assert main(["train", "-o", str(stage), "-m", str(tiny_model_dir), "--routing", routing, "--name", name,
                 *extra, *TRAIN]) == 0
    adapter = stage / "adapters" / name
    assert json.loads((adapter / "pac_lora_config.json").read_text())["routing"] == routing
    assert json.loads((adapter / "training.json").read_text())["routing"] == routing
    assert main(["infer", "-o", str(stage), "--adapter", str(adapter), "--max-new-tokens", "3"]) == 0
    assert len((stage / "predictions" / f"{name}.jsonl").read_text().splitlines()) == 1


def _routed_model(tiny_model_dir: Path, routing: str):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return apply_pac_lora(base, ["q_proj"], experts=3, rank=4, dropout=0.0, routing=routing)


def test_token_routing_gates_each_token_and_span_mean_gates_each_sequence(tiny_model_dir):
    ids = torch.randint(5, 500, (1, 12))
    news = torch.zeros(1, 12, dtype=torch.bool)
    news[0, 2:6] = True
    user = torch.zeros(1, 12, dtype=torch.bool)
    user[0, 7:10] = True
    span = _routed_model(tiny_model_dir, "span-mean")
    span(input_ids=ids, news_mask=news, user_mask=user)
    g_a, _ = next(iter(span.gates().values()))
    assert g_a.shape == (1, 3)  # one gate per sequence, whatever the token

    token = _routed_model(tiny_model_dir, "token")
    layer = next(m for _, m in token.adapted_modules())
    seen = {}
    layer.register_forward_hook(lambda mod, inp, out: seen.setdefault("x", inp[0]))
    token(input_ids=ids, news_mask=news, user_mask=user)
    g_a, g_b = layer.token_gates(seen["x"])
    assert g_a.shape == g_b.shape == (1, 12, 3)
    inside = g_a[0, 2:6]
    assert not torch.allclose(inside[0], inside[1])  # each news token routed by its own hidden state
    outside = g_a[0, [0, 1, 6, 11]]
    assert torch.allclose(outside, outside[:1].expand_as(outside))  # zero input outside the span: one fixed gate
    assert torch.allclose(g_b[0, 2:6], g_b[0, :1].expand(4, 3))  # the B-router ignores news tokens


def test_token_routing_computes_the_per_token_mixture():
    from torch import nn

    from socialsynth.jobs.response.pac_lora import PACLoRALinear, RoutingState

    torch.manual_seed(0)
    state = RoutingState()
    layer = PACLoRALinear(nn.Linear(16, 24), experts=3, rank=4, dropout=0.0, state=state, routing="token")
    nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 5, 16)
    news, user = torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.bool)
    news[:, 1:3], user[:, 3:] = True, True
    state.set(None, None, None, None, news, user)
    g_a, g_b = layer.token_gates(x)
    expected = layer.base(x).clone()
    for b in range(2):
        for t in range(5):
            a = sum(g_a[b, t, i] * layer.lora_A[i] for i in range(3))
            bb = sum(g_b[b, t, j] * layer.lora_B[j] for j in range(3))
            expected[b, t] += layer.scaling * (bb @ (a @ x[b, t]))
    assert torch.allclose(layer(x), expected, atol=1e-5)
    # a cached decoding step (one new token) is outside both spans
    g_a1, g_b1 = layer.token_gates(torch.randn(2, 1, 16))
    assert torch.allclose(g_a1[0, 0], g_a[0, 0]) and torch.allclose(g_b1[0, 0], g_b[0, 0])
