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
