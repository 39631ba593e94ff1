"""GPTQ checkpoints (seed 003's generator was TheBloke/WizardLM-Uncensored-Falcon-7B-GPTQ): loaded through
transformers' GPTQ support (optimum + gptqmodel). A tiny random Llama is quantized here and loaded by the hf
backend; without the packages, or with an old AutoGPTQ layout, loading stops with one line saying what to do."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from socialsynth.core.errors import InputError
from socialsynth.llm import GenerationParams
from socialsynth.llm.loading import checkpoint_quantization, load_causal_lm

HAVE_GPTQ = all(importlib.util.find_spec(p) is not None for p in ("optimum", "gptqmodel"))
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": False, "sym": True}


def with_config(src, dst, **extra):
    """A copy of the model folder ``src`` with ``extra`` merged into its config.json."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(extra)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


@pytest.fixture
def no_gptqmodel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gptqmodel" else real(name, *a))


def test_a_gptq_checkpoint_without_gptqmodel_says_what_to_install(tiny_model_dir, tmp_path, no_gptqmodel):
    folder = with_config(tiny_model_dir, tmp_path / "gptq", quantization_config=GPTQ)
    with pytest.raises(InputError) as e:
        load_causal_lm(str(folder), device="cpu")
    assert "GPTQ" in e.value.message and "pip install optimum gptqmodel" in e.value.message
    assert e.value.field == "-m/--model" and "\n" not in str(e.value)


def test_a_gptq_checkpoint_refuses_bitsandbytes_on_top(tiny_model_dir, tmp_path):
    folder = with_config(tiny_model_dir, tmp_path / "gptq", quantization_config=GPTQ)
    with pytest.raises(InputError, match="already quantized \\(gptq\\): leave out -q"):
        load_causal_lm(str(folder), device="cpu", quantization=4)


def test_an_old_autogptq_layout_points_to_vllm(tiny_model_dir, tmp_path):
    folder = with_config(tiny_model_dir, tmp_path / "old")
    (folder / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 64, "desc_act": False}))
    with pytest.raises(InputError, match="old layout.*--backend vllm"):
        load_causal_lm(str(folder), device="cpu")


def test_plain_checkpoints_have_no_quantization(tiny_backend):
    assert checkpoint_quantization(tiny_backend.model.config) is None
    assert "checkpoint_quantization" not in tiny_backend.describe()


@pytest.fixture(scope="module")
def gptq_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model quantized to 4-bit GPTQ here (about 10 s on a CPU, after gptqmodel's first start)."""
    if not HAVE_GPTQ:
        pytest.skip("GPTQ loading needs optimum and gptqmodel, not installed here (pip install optimum gptqmodel)")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPTQConfig

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    calibration = ["people write short comments about the weather, food, sports and their neighbours"] * 2
    config = GPTQConfig(bits=4, group_size=32, desc_act=False, dataset=calibration, tokenizer=tok)
    try:
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=config,
                                                     dtype=torch.float16, device_map="cpu")
    except (RuntimeError, ImportError, NotImplementedError) as e:  # no CPU kernel for this machine
        pytest.skip(f"gptqmodel cannot quantize or run its kernels on this CPU: {str(e).splitlines()[0]}")
    path = tmp_path_factory.mktemp("tiny_gptq")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_gptq_checkpoint_loads_and_generates(gptq_dir, tiny_model_dir):
    from socialsynth.llm.hf import HFBackend

    backend = HFBackend(str(gptq_dir), device="cpu", dtype="fp16")
    layer = backend.model.model.layers[0].self_attn.q_proj
    assert type(layer).__module__.startswith("gptqmodel")  # the packed 4-bit layer, not a plain Linear
    assert backend.describe()["checkpoint_quantization"] == "gptq"
    raw = "### Instruction: Write one comment.\n### Response:"
    params = GenerationParams(temperature=0.8, top_p=1.0, top_k=50, repetition_penalty=1.0, max_new_tokens=5)
    out = backend.generate([raw, [{"role": "user", "content": "hi"}]], params, keys=["a", "b"])
    assert [c.n_new_tokens for c in out] == [5, 5] and all(c.text for c in out)
    assert out == backend.generate([raw, [{"role": "user", "content": "hi"}]], params, keys=["a", "b"])
    # the quantized model is the same model: its next-token scores follow the float weights'
    _, plain = load_causal_lm(str(tiny_model_dir), device="cpu", dtype="fp32")
    ids = torch.tensor([backend.encode_chat(raw)])
    with torch.no_grad():
        q = backend.model(input_ids=ids).logits[0, -1].float()
        f = plain(input_ids=ids).logits[0, -1].float()
    assert torch.corrcoef(torch.stack([q, f]))[0, 1] > 0.9
