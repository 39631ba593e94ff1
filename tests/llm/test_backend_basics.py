"""Small pieces of the backend layer: request seeds, choice scores, backend lookup, the embedded model's cache."""

from __future__ import annotations

import pytest

from socialsynth.llm import BACKENDS, load_backend
from socialsynth.llm.base import ChoiceScores, GenerationParams, request_seed
from socialsynth.llm.embedded import cache_root, embedded_checkpoint, gguf_path


def test_request_seed_is_stable_and_depends_on_seed_and_key():
    assert request_seed(0, "abc:1") == request_seed(0, "abc:1")
    assert request_seed(0, "abc:1") != request_seed(0, "abc:2")
    assert request_seed(0, "abc:1") != request_seed(1, "abc:1")
    assert 0 <= request_seed(123, "x") < 2**63


def test_choice_scores_best_and_expected():
    s = ChoiceScores([0.1, 0.2, 0.5, 0.1, 0.1], mass=0.8)
    assert s.best == 2
    assert s.expected([1, 2, 3, 4, 5]) == pytest.approx(0.1 + 0.4 + 1.5 + 0.4 + 0.5)


def test_generation_params_to_dict_round_trips():
    p = GenerationParams(temperature=0.3, top_p=0.8, top_k=5, repetition_penalty=1.2, max_new_tokens=9, seed=4)
    assert GenerationParams(**p.to_dict()) == p


def test_load_backend_unknown_name_lists_available():
    with pytest.raises(ValueError) as e:
        load_backend("vllm-but-not-installed")
    for name in BACKENDS:
        assert name in str(e.value)


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SOCIALSYNTH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "socialsynth"
    monkeypatch.setenv("SOCIALSYNTH_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"


def test_embedded_checkpoint_reuses_a_converted_copy(isolated_cache):
    """A finished conversion (config.json present) is returned as is: no second conversion."""
    target = isolated_cache / f"smollm2-135m-instruct-{gguf_path().stat().st_size}"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}", encoding="utf-8")
    assert embedded_checkpoint() == target
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]


def test_tiny_backend_describes_itself(tiny_backend, tiny_model_dir):
    info = tiny_backend.describe()
    assert info["backend"] == "hf"
    assert info["model"] == str(tiny_model_dir)
    assert info["device"] == "cpu"
    assert info["dtype"] == "float32"


@pytest.mark.parametrize("bits, layer_class", [(4, "Linear4bit"), (8, "Linear8bitLt")])
def test_quantized_loading_replaces_linear_layers_and_still_generates(tiny_model_dir, bits, layer_class):
    """-q 4 / -q 8 go through bitsandbytes (it runs on CPU too): the linear layers are swapped and the model answers."""
    pytest.importorskip("bitsandbytes")
    from socialsynth.llm.base import GenerationParams
    from socialsynth.llm.hf import HFBackend

    backend = HFBackend(model=str(tiny_model_dir), quantization=bits, device="cpu")
    mlp = backend.model.model.layers[0].mlp.up_proj
    assert type(mlp).__name__ == layer_class
    out = backend.generate(
        [[{"role": "user", "content": "Say hi."}]], GenerationParams(temperature=0, max_new_tokens=4)
    )
    assert out[0].n_new_tokens >= 1 and backend.describe()["quantization"] == bits


def test_stats_snapshot_sums_tokens_in_and_out_and_seconds():
    from socialsynth.llm.base import GenerationStats

    st = GenerationStats(prompt_tokens=10, new_tokens=4, seconds=1.5, scoring_seconds=0.5, scored_tokens=7)
    assert st.snapshot() == {"tokens_in": 17, "tokens_out": 4, "seconds": 2.0}
    assert GenerationStats().snapshot() == {"tokens_in": 0, "tokens_out": 0, "seconds": 0.0}


def test_hf_stats_count_generated_and_scored_tokens(tiny_backend):
    """prompt/new tokens are those of the completions; every scoring call adds what it ran through the model."""
    b = tiny_backend
    chats = [[{"role": "user", "content": "Say hi."}], [{"role": "user", "content": "What is two plus two?"}]]
    before, st0 = b.stats.snapshot(), (b.stats.prompt_tokens, b.stats.new_tokens, b.stats.scored_tokens)
    out = b.generate(chats, GenerationParams(temperature=0, max_new_tokens=5))
    assert b.stats.prompt_tokens - st0[0] == sum(c.n_prompt_tokens for c in out) > 0
    assert b.stats.new_tokens - st0[1] == sum(c.n_new_tokens for c in out) > 0
    assert b.stats.scored_tokens == st0[2]  # generation is not scoring
    b.score_choices(chats, ["1", "2"])
    scored = sum(len(b.encode_chat(c)) for c in chats)
    assert b.stats.scored_tokens - st0[2] == scored
    b.score_continuations(chats, ["hello", "four"])
    scored += sum(
        len(b.encode_chat(c)) + len(b.tokenizer.encode(t, add_special_tokens=False))
        for c, t in zip(chats, ["hello", "four"], strict=True)
    )
    assert b.stats.scored_tokens - st0[2] == scored
    b.perplexity(["The cat sat on the mat."])
    ids = b.tokenizer.encode("The cat sat on the mat.", add_special_tokens=True)
    scored += len(ids) + (0 if ids and ids[0] == b.tokenizer.bos_token_id else 1)
    assert b.stats.scored_tokens - st0[2] == scored
    # generation and scoring did not mix: prompt/new tokens are still exactly the completions'
    assert b.stats.prompt_tokens - st0[0] == sum(c.n_prompt_tokens for c in out)
    after = b.stats.snapshot()
    assert after["tokens_in"] - before["tokens_in"] == sum(c.n_prompt_tokens for c in out) + scored
    assert after["tokens_out"] - before["tokens_out"] == sum(c.n_new_tokens for c in out)
    assert after["seconds"] > before["seconds"]


def test_load_causal_lm_frozen_eval_and_pad_token(tiny_model_dir):
    import torch

    from socialsynth.llm.loading import load_causal_lm

    tokenizer, model = load_causal_lm(str(tiny_model_dir), device="cpu", dtype="fp32", frozen=True)
    assert not model.training and model.dtype == torch.float32 and model.device.type == "cpu"
    assert tokenizer.pad_token_id is not None
    assert not any(p.requires_grad for p in model.parameters())
    _, trainable = load_causal_lm(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)
    assert trainable.dtype == torch.bfloat16 and all(p.requires_grad for p in trainable.parameters())


def test_loading_names_are_exported_lazily_and_old_names_still_import():
    import subprocess
    import sys

    code = (
        "import sys, socialsynth.llm as llm; assert 'torch' not in sys.modules; "
        "from socialsynth.llm import load_causal_lm, resolve_model_path; "
        "from socialsynth.llm.loading import load_causal_lm as f; assert f is load_causal_lm; "
        "from socialsynth.llm.hf import _bnb_config, _eos_ids, resolve_device, resolve_dtype; "
        "from socialsynth.llm.loading import bnb_config, eos_ids; "
        "assert _eos_ids is eos_ids and _bnb_config is bnb_config"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from socialsynth.llm.embedded import EMBEDDED_NAME
    from socialsynth.llm.loading import resolve_model_path

    assert resolve_model_path("org/model") == "org/model"
    assert resolve_model_path(EMBEDDED_NAME) == str(embedded_checkpoint())
