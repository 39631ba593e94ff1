"""What the model flags refuse before anything loads (issue 13): a device this machine does not have (a job
that ran on the CPU while its record said cuda), a local model path that does not exist, a model id that is not
in the local cache while the Hub is offline, a folder that holds no model. One InputError each, naming the flag."""

from __future__ import annotations

import pytest
import torch

from socialsynth.core.config import ConfigError
from socialsynth.core.errors import InputError
from socialsynth.llm import loading
from socialsynth.llm.args import ModelArgs, check_device
from socialsynth.llm.loading import check_model_available, device_problem, load_causal_lm, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
no_mps = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_a_gpu_that_is_not_there_is_refused_while_parsing(device):
    with pytest.raises(ConfigError, match="no CUDA GPU is visible") as caught:
        ModelArgs(device=device)
    assert caught.value.field == "--device" and "--device cpu" in str(caught.value)
    with pytest.raises(InputError, match="--device"):
        resolve_device(device)  # the loaders' own check, for callers that bypass ModelArgs


@no_mps
def test_mps_is_refused_where_it_is_not_available():
    assert "no MPS device" in device_problem("mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "cpu:0", ""])
def test_unknown_devices_are_refused(device):
    with pytest.raises(ConfigError, match="unknown device"):
        ModelArgs(device=device)


def test_auto_and_cpu_keep_working():
    assert ModelArgs(device="auto").device == "auto" and ModelArgs(device="cpu").device == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda") and resolve_device("cpu") == "cpu"
    assert device_problem("auto") is None and device_problem("cpu") is None

    class Cfg:
        device = "cpu"

    check_device(Cfg())


def test_a_local_path_that_does_not_exist(tmp_path):
    for name in (str(tmp_path / "no-model"), "./models/missing", "~/nowhere/model", "a/b/c"):
        with pytest.raises(InputError, match="no such folder") as caught:
            check_model_available(name)
        assert caught.value.field == "-m/--model" and name in str(caught.value)
    with pytest.raises(InputError, match="no such folder"):
        load_causal_lm(str(tmp_path / "no-model"))


def test_an_uncached_id_while_offline(monkeypatch):
    monkeypatch.setattr(loading, "hub_offline", lambda: True)
    with pytest.raises(InputError, match="not in the local Hugging Face cache and the hub is offline") as caught:
        check_model_available("made-up-org/not-a-real-model-13", flag="--embedding-model")
    assert caught.value.field == "--embedding-model" and "download it first" in str(caught.value)
    with pytest.raises(InputError, match="neither an existing folder nor a Hugging Face model id"):
        check_model_available("not a model id")
    monkeypatch.setattr(loading, "hub_offline", lambda: False)
    check_model_available("made-up-org/not-a-real-model-13")  # online: from_pretrained will ask the Hub


def test_hub_offline_reads_the_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading.hub_offline()


def test_a_folder_or_file_without_a_model_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"x")
    for name in ("empty", "weights.bin"):
        with pytest.raises(InputError, match="not a saved model folder") as caught:
            load_causal_lm(str(tmp_path / name))
        assert len(str(caught.value).splitlines()) == 1


def test_a_model_folder_that_transformers_cannot_read_is_one_line(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(InputError, match="cannot load model") as caught:
        load_causal_lm(str(tmp_path / "broken"))
    assert len(str(caught.value).splitlines()) == 1


def test_a_tiny_local_model_still_loads(tiny_model_dir):
    tokenizer, model = load_causal_lm(str(tiny_model_dir), device="cpu", dtype="fp32")
    assert tokenizer.pad_token_id is not None and not model.training


def test_a_bare_embedding_model_name_is_also_looked_up_under_sentence_transformers(monkeypatch):
    from socialsynth.llm.loading import check_embedding_model_available

    monkeypatch.setattr(loading, "hub_offline", lambda: True)
    cached = {"sentence-transformers/all-fake-model-13"}
    monkeypatch.setattr(loading, "_in_hub_cache", lambda repo: repo in cached)
    check_embedding_model_available("all-fake-model-13")  # found under the organisation
    with pytest.raises(InputError, match="'not-cached-13' is|not-cached-13: not in the local"):
        check_embedding_model_available("not-cached-13")
