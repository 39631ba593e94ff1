"""PAC-LoRA module (socialsynth/jobs/response/pac_lora.py) and span masks (spans.py), on the tiny random Llama.

What the issue asks to show: each router depends only on its span; cached decoding gives the logits of one full
forward pass; adapter save/load reproduces outputs without merging (PAC-LoRA and the peft LoRA baseline); a fresh
PAC-LoRA model is the base model (B experts start at zero).
"""

from __future__ import annotations

import json

import pytest
import torch

from socialsynth.core.errors import InputError
from socialsynth.jobs.response.pac_lora import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    PACLoRALinear,
    apply_pac_lora,
    load_pac_lora,
)
from socialsynth.jobs.response.records import prompt_text
from socialsynth.jobs.response.spans import EncodedPrompt, answer_ids, encode_example, encode_prompt, fit_length

SEQ = 24
NEWS = slice(3, 9)
USER = slice(11, 18)


def load_base(path):
    """The tiny Llama in fp32, with residual branches scaled up so that every position matters (see conftest)."""
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.mul_(30.0)
            layer.mlp.down_proj.weight.mul_(30.0)
        model.model.norm.weight.mul_(4.0)
    return model


def randomize(model, seed: int = 1) -> None:
    """Trained-looking adapter weights: non-zero B experts, routers that really discriminate."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in model.adapted_modules():
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=g) * 0.3)
            module.lora_A.mul_(3.0)
            for router in (module.router_a, module.router_b):
                for p in router.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 2.0)


def batch(vocab: int, rows: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(100, vocab - 100, (rows, SEQ), generator=g)
    news = torch.zeros_like(ids, dtype=torch.bool)
    user = torch.zeros_like(ids, dtype=torch.bool)
    news[:, NEWS] = True
    user[:, USER] = True
    return ids, news, user


@pytest.fixture(scope="module")
def pac(tiny_model_dir):
    model = apply_pac_lora(load_base(tiny_model_dir), dropout=0.0, base_model_name=str(tiny_model_dir))
    randomize(model)
    return model.eval()


def gates(model, ids, news, user):
    model.set_routing(ids, news, user)
    found = model.gates()
    return torch.stack([a for a, _ in found.values()]), torch.stack([b for _, b in found.values()])


def test_every_target_linear_is_wrapped(pac):
    names = [name for name, _ in pac.adapted_modules()]
    assert len(names) == 2 * 7  # 2 layers x q k v o gate up down
    assert all(isinstance(m, PACLoRALinear) for _, m in pac.adapted_modules())
    trainable = {n.split(".")[-1] for n, p in pac.named_parameters() if p.requires_grad}
    assert "lora_A" in trainable and "lora_B" in trainable and "weight" in trainable  # router weights
    assert not any(p.requires_grad for n, p in pac.named_parameters() if ".base." in n or "embed" in n)


def test_routers_depend_only_on_their_span(pac):
    vocab = pac.config.vocab_size
    ids, news, user = batch(vocab)
    a0, b0 = gates(pac, ids, news, user)
    assert (a0 - 1 / 3).abs().max() > 0.05 and (b0 - 1 / 3).abs().max() > 0.05  # routers are not uniform
    assert not torch.allclose(a0[:, 0], a0[:, 1])  # the two rows are routed differently

    def changed(where):
        other = ids.clone()
        other[:, where] = (other[:, where] + 17) % vocab
        return gates(pac, other, news, user)

    outside = [i for i in range(SEQ) if not news[0, i] and not user[0, i]]
    a, b = changed(outside)
    assert torch.equal(a, a0) and torch.equal(b, b0)
    a, b = changed(NEWS)  # news tokens move the A-gates only
    assert not torch.allclose(a, a0, atol=1e-4) and torch.equal(b, b0)
    a, b = changed(USER)  # user tokens move the B-gates only
    assert torch.equal(a, a0) and not torch.allclose(b, b0, atol=1e-4)
    # an empty span gives uniform gates
    a, b = gates(pac, ids, torch.zeros_like(news), user)
    assert torch.allclose(a, torch.full_like(a, 1 / 3)) and torch.equal(b, b0)


def test_cached_decoding_matches_full_forward(pac):
    from transformers import DynamicCache

    ids, news, user = batch(pac.config.vocab_size, seed=3)
    k = 5
    with torch.no_grad():
        cache = DynamicCache(config=pac.config)
        out = pac(input_ids=ids, news_mask=news, user_mask=user, past_key_values=cache, use_cache=True)
        step_logits = [out.logits[:, -1]]
        generated = []
        for _ in range(k):
            token = step_logits[-1].argmax(-1, keepdim=True)
            generated.append(token)
            out = pac(input_ids=token, past_key_values=cache, use_cache=True)  # no masks: routing kept
            step_logits.append(out.logits[:, -1])
        full_ids = torch.cat([ids] + generated, dim=1)
        pad = torch.zeros((ids.shape[0], k), dtype=torch.bool)
        full = pac(input_ids=full_ids, news_mask=torch.cat([news, pad], 1), user_mask=torch.cat([user, pad], 1))
        swapped = pac(input_ids=full_ids, news_mask=torch.cat([user, pad], 1), user_mask=torch.cat([news, pad], 1))
    expected = full.logits[:, SEQ - 1 :]
    got = torch.stack(step_logits, dim=1)
    assert (got - expected).abs().max().item() < 1e-4
    assert (swapped.logits[:, SEQ - 1 :] - expected).abs().max().item() > 1e-2  # the routing does matter
    # and through HF generate(), whose every step reuses the routing computed from the prompt
    res = pac.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        news_mask=news,
        user_mask=user,
        do_sample=False,
        max_new_tokens=k,
        output_logits=True,
        return_dict_in_generate=True,
        pad_token_id=0,
        eos_token_id=None,
    )
    assert torch.equal(res.sequences[:, SEQ:], full_ids[:, SEQ:])
    assert (torch.stack(res.logits, 1) - expected[:, :k]).abs().max().item() < 1e-4


def test_generate_repeats_rows_for_several_samples(pac):
    ids, news, user = batch(pac.config.vocab_size, seed=4)
    out = pac.generate(
        ids, news_mask=news, user_mask=user, do_sample=True, num_return_sequences=2, max_new_tokens=3, pad_token_id=0
    )
    assert out.shape == (4, SEQ + 3)


def test_fresh_pac_lora_is_the_base_model(tiny_model_dir):
    ids, news, user = batch(1000)
    base = load_base(tiny_model_dir)
    with torch.no_grad():
        expected = base(input_ids=ids).logits
    model = apply_pac_lora(load_base(tiny_model_dir)).eval()
    for _, module in model.adapted_modules():
        assert torch.count_nonzero(module.lora_B) == 0 and torch.count_nonzero(module.lora_A) > 0
    with torch.no_grad():
        got = model(input_ids=ids, news_mask=news, user_mask=user).logits
    assert torch.equal(got, expected)


def _train_a_little(model, ids, mask_kwargs, steps: int = 3):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids, **mask_kwargs).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_pac_lora_save_load_round_trip(tiny_model_dir, tmp_path):
    ids, news, user = batch(1000, seed=5)
    model = apply_pac_lora(load_base(tiny_model_dir), base_model_name="tiny")
    _train_a_little(model, ids, {"news_mask": news, "user_mask": user})
    assert all(torch.count_nonzero(m.lora_B) > 0 for _, m in model.adapted_modules())
    with torch.no_grad():
        expected = model(input_ids=ids, news_mask=news, user_mask=user).logits
    model.save_adapter(tmp_path)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / WEIGHTS_FILE))
    assert saved and not any(".base." in k or "embed" in k for k in saved)
    assert sum(v.numel() for v in saved.values()) == model.trainable_parameters()
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["experts"] == 3 and config["rank"] == 8 and config["base_model"] == "tiny"
    loaded = load_pac_lora(load_base(tiny_model_dir), tmp_path).eval()
    with torch.no_grad():
        got = loaded(input_ids=ids, news_mask=news, user_mask=user).logits
    assert torch.equal(got, expected)
    base_weight = loaded.base_model.model.layers[0].self_attn.q_proj.base.weight
    assert torch.equal(base_weight, load_base(tiny_model_dir).model.layers[0].self_attn.q_proj.weight)  # not merged


def test_peft_lora_save_load_round_trip(tiny_model_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    ids, _, _ = batch(1000, seed=6)
    config = LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = get_peft_model(load_base(tiny_model_dir), config)
    _train_a_little(model, ids, {})
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    model.save_pretrained(str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 200_000  # the adapter only
    loaded = PeftModel.from_pretrained(load_base(tiny_model_dir), str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, expected)


def test_missing_routing_is_an_error(tiny_model_dir):
    model = apply_pac_lora(load_base(tiny_model_dir))
    with pytest.raises(RuntimeError, match="routing is not set"):
        model(input_ids=torch.tensor([[5, 6, 7]]))
    with pytest.raises(ValueError, match="no nn.Linear named"):
        apply_pac_lora(load_base(tiny_model_dir), target_modules=["c_attn"])


# ----------------------------------------------------------------------------------------------- spans


def record(news="The council banned cars downtown.", user="Name: bob. Posts: I cycle daily. Cars are loud."):
    instruction = f"News: {news}\nYou are: {user}\nWrite your post about #carfree."
    s, u = instruction.index(news), instruction.index(user)
    return {
        "id": "t1:bob",
        "system": "You are a social media user.",
        "instruction": instruction,
        "input": "",
        "output": "Finally, bikes win!",
        "split": "train",
        "spans": {"news": [[s, s + len(news)]], "user": [[u, u + len(user)]]},
    }


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_span_masks_cover_the_span_text(tokenizer):
    rec = record()
    enc = encode_prompt(tokenizer, rec)
    assert enc.ids == list(
        tokenizer.apply_chat_template(
            [{"role": "system", "content": rec["system"]}, {"role": "user", "content": prompt_text(rec)}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
    )
    news = tokenizer.decode([i for i, f in zip(enc.ids, enc.news, strict=False) if f]).strip()
    user = tokenizer.decode([i for i, f in zip(enc.ids, enc.user, strict=False) if f]).strip()
    assert news == "The council banned cars downtown."
    assert user == "Name: bob. Posts: I cycle daily. Cars are loud."
    assert tokenizer.decode(answer_ids(tokenizer, rec)) == "Finally, bikes win!<|im_end|>"


def test_bad_spans_and_templates_are_input_errors(tokenizer):
    rec = record()
    rec["spans"]["news"] = [[5, 10_000]]
    with pytest.raises(InputError, match="spans.news"):
        encode_prompt(tokenizer, rec, path="a.jsonl", line=3)
    rec = record()
    del rec["spans"]
    with pytest.raises(InputError, match="spans"):
        encode_prompt(tokenizer, rec)


def test_truncation_cuts_the_user_span_first_and_keeps_the_answer(tokenizer):
    rec = record(user="Name: bob. Posts: " + " ".join(f"post number {i} about bikes." for i in range(40)))
    full = encode_prompt(tokenizer, rec)
    answer = answer_ids(tokenizer, rec)
    limit = len(full) - 50 + len(answer)
    ex = encode_example(tokenizer, rec, limit)
    assert len(ex["input_ids"]) == limit and ex["truncated"] == 50
    assert ex["input_ids"][-len(answer) :] == answer and ex["labels"][-len(answer) :] == answer
    assert sum(ex["news_mask"]) == sum(full.news)  # news untouched
    assert sum(ex["user_mask"]) == sum(full.user) - 50
    # longest runs first: two user runs of 10 and 4 tokens, cut 8 -> 3 + 3
    p = EncodedPrompt(list(range(20)), [False] * 20, [False] * 2 + [True] * 10 + [False] * 2 + [True] * 4 + [False] * 2)
    cut = fit_length(p, 12)
    assert len(cut) == 12 and cut.ids[:2] == [0, 1] and sum(cut.user) == 6
    assert fit_length(EncodedPrompt([1, 2, 3], [False] * 3, [False] * 3), 2) is None
    assert encode_example(tokenizer, rec, len(answer) + 5) is None  # template + answer cannot fit


def test_mixed_experts_equal_the_formula():
    """y = base(x) + alpha/r * (sum_j gB_j B_j) @ (sum_i gA_i A_i) @ x, computed row by row the slow way."""
    torch.manual_seed(0)
    layer = PACLoRALinear(torch.nn.Linear(12, 10), experts=3, rank=4, alpha=8, dropout=0.0, d_model=6)
    with torch.no_grad():
        layer.lora_B.normal_()
    news, user = torch.randn(2, 6), torch.randn(2, 6)
    layer.state.set(news, user, torch.tensor([True, False]), torch.tensor([True, True]))
    x = torch.randn(2, 5, 12)
    g_a, g_b = layer.gates()
    assert torch.allclose(g_a[1], torch.full((3,), 1 / 3))  # empty news span -> uniform A-gates
    expected = []
    for b in range(2):
        a = sum(g_a[b, i] * layer.lora_A[i] for i in range(3))
        bb = sum(g_b[b, j] * layer.lora_B[j] for j in range(3))
        expected.append(layer.base(x[b]) + 2.0 * x[b] @ a.T @ bb.T)
    assert torch.allclose(layer(x), torch.stack(expected), atol=1e-5)


def test_spans_survive_a_template_that_trims_the_message(tokenizer):
    rec = record()
    rec["instruction"] = "  " + rec["instruction"] + "\n"
    rec["spans"] = {k: [[s + 2, e + 2] for s, e in v] for k, v in rec["spans"].items()}
    trimmed = tokenizer.chat_template.replace("message['content']", "message['content'] | trim")
    assert trimmed != tokenizer.chat_template
    original, tokenizer.chat_template = tokenizer.chat_template, trimmed
    try:
        enc = encode_prompt(tokenizer, rec)
    finally:
        tokenizer.chat_template = original
    news_ids = [i for i, f in zip(enc.ids, enc.news, strict=True) if f]
    assert tokenizer.decode(news_ids).strip() == "The council banned cars downtown."


def test_left_padded_batch_generates_like_single_prompts(pac):
    """Rows of different lengths, left-padded with False masks, get the logits they get alone."""
    ids, news, user = batch(pac.config.vocab_size, seed=7)
    short = slice(3, SEQ)  # row 1 loses its first 3 tokens (outside both spans), padded on the left instead
    padded_ids = ids.clone()
    padded_ids[1, :3] = 0
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    kw = {"do_sample": False, "max_new_tokens": 3, "output_logits": True, "return_dict_in_generate": True}
    kw.update(pad_token_id=0, eos_token_id=None)
    both = pac.generate(padded_ids, attention_mask=mask, news_mask=news, user_mask=user, **kw)
    alone = [
        pac.generate(ids[:1], news_mask=news[:1], user_mask=user[:1], **kw),
        pac.generate(ids[1:, short], news_mask=news[1:, short], user_mask=user[1:, short], **kw),
    ]
    for row, single in enumerate(alone):
        assert torch.equal(both.sequences[row, SEQ:], single.sequences[0, -3:])
        diff = (torch.stack(both.logits, 1)[row] - torch.stack(single.logits, 1)[0]).abs().max().item()
        assert diff < 1e-3
