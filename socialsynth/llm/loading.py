"""Loading a tokenizer and a causal LM: the one path shared by the hf backend and the response jobs (adapter
training and inference), so that device, dtype, quantization and padding are settled the same way everywhere."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch

from socialsynth.core.config import looks_like_path
from socialsynth.core.errors import InputError
from socialsynth.llm.embedded import EMBEDDED_NAME, embedded_checkpoint

log = logging.getLogger(__name__)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>")


def device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here (unknown, or no such GPU on this machine), or None when it can.

    "auto" and "cpu" always can; "cuda", "cuda:N", "mps" and "xpu" only when torch sees that device, so that a job
    never silently runs on the CPU while recording a GPU (accelerate's device_map does fall back to the CPU)."""
    name = str(device).strip().lower()
    if name in ("auto", "cpu"):
        return None
    kind, colon, index = name.partition(":")
    if kind not in ("cuda", "mps", "xpu") or (colon and not index.isdigit()):
        return f"unknown device {device!r}: expected auto, cpu, cuda, cuda:N or mps"
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            return (f"{device}: no CUDA GPU is visible on this machine{build}; use --device cpu, or --device auto "
                    "to use a GPU only where there is one")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            return f"{device}: only {count} CUDA GPU(s) are visible (cuda:0 to cuda:{count - 1})"
        return None
    backend = getattr(torch, kind, None) if kind == "xpu" else getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_available():
        return f"{device}: no {kind.upper()} device is available on this machine; use --device cpu or auto"
    return None


def resolve_device(device: str) -> str:
    """The device to run on; InputError naming --device when it is unknown or not on this machine.

    Args:
        device: "auto" (a GPU when there is one, else the CPU), or a torch device name ("cpu", "cuda", "cuda:1").
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(device)
    if problem:
        raise InputError(problem, field="--device")
    return device


def resolve_dtype(dtype: str | torch.dtype, device: str) -> torch.dtype:
    """The torch dtype of the weights.

    Args:
        dtype: "auto", "bf16", "fp16" or "fp32" (a torch.dtype is returned as it is). "auto" is bf16, or fp16 on
            a GPU without bf16.
        device: the resolved device (see `resolve_device`).
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype != "auto":
        return DTYPES[dtype]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16  # 2x faster than fp32 on AVX-512-BF16 CPUs, same answers to ~1e-3


def resolve_model_path(name: str) -> str:
    """What to hand to `from_pretrained`.

    Args:
        name: "embedded" (the converted SmolLM2 checkpoint, see llm/embedded.py, converted on first use), or a
            Hugging Face model id or local path (returned as given).
    """
    return str(embedded_checkpoint()) if name == EMBEDDED_NAME else name


def hub_offline() -> bool:
    """Whether the Hugging Face Hub may not be reached (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return True
    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())  # downloaded at a pinned revision


def check_model_available(name: str, flag: str = "-m/--model", backend: str = "hf") -> None:
    """Refuse, before anything loads, a model that cannot be found: a local path that does not exist or holds no
    model (no config.json), a name that is neither a folder nor a Hugging Face model id, or an id that is not in
    the local cache while the Hub is offline. InputError names the model, the flag and what to do; anything else
    is left to from_pretrained. With ``backend="llamacpp"`` a GGUF file is a model too."""
    local = Path(name).expanduser() if name else None
    if backend == "llamacpp" and local is not None and local.is_file() and local.suffix.lower() == ".gguf":
        return
    if local is not None and local.exists():
        if not local.is_dir() or not any((local / f).is_file() for f in ("config.json", "modules.json")):
            raise InputError(f"{name}: not a saved model folder (no config.json in it); give the folder that "
                             "save_pretrained wrote, or a Hugging Face model id", field=flag)
        return
    if not name:
        return
    if looks_like_path(name):
        raise InputError(f"{name}: no such folder; give the folder of a saved model or a Hugging Face model id",
                         field=flag)
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise InputError(f"{name!r} is neither an existing folder nor a Hugging Face model id (org/name)",
                         field=flag) from None
    if hub_offline() and not _in_hub_cache(name):
        raise InputError(
            f"{name}: not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1): download it "
            f"first (hf download {name}, on a machine with internet) or give a local path", field=flag)


def check_embedding_model_available(name: str, flag: str = "--embedding-model") -> None:
    """:func:`check_model_available` for a sentence-transformers model, which also looks a bare name
    ("all-MiniLM-L6-v2") up under the sentence-transformers organisation."""
    try:
        check_model_available(name, flag=flag)
    except InputError as first:
        if "/" in name or Path(name).expanduser().exists():
            raise
        try:
            check_model_available(f"sentence-transformers/{name}", flag=flag)
        except InputError:
            raise first from None


def _pretrained(loader, name: str, path: str, **kwargs):
    """``loader.from_pretrained(path)``, with transformers' "cannot find or read this model" errors (an OSError
    without errno, a ValueError about the files) turned into one InputError naming the model (the traceback is
    logged at debug level, -v); an OSError with an errno (a full disk, a permission) is left to run_main."""
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        log.debug("loading %s failed", path, exc_info=True)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"cannot load model {name}: {first}", field="-m/--model") from None


def bnb_config(bits: int, compute_dtype: torch.dtype):
    """A transformers BitsAndBytesConfig for `-q/--quantization`.

    Args:
        bits: 4 (nf4 with double quantization) or 8 (LLM.int8).
        compute_dtype: dtype of the 4-bit matmuls.

    Raises RuntimeError when bitsandbytes is not installed, ValueError for other bit widths.
    """
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as e:
        raise RuntimeError("-q/--quantization needs bitsandbytes: pip install bitsandbytes") from e
    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
        )
    if bits == 8:
        # bitsandbytes warns once per layer and call that it casts bf16 inputs to fp16; that is expected here.
        warnings.filterwarnings("ignore", message="MatMul8bitLt: inputs will be cast")
        return BitsAndBytesConfig(load_in_8bit=True)
    raise ValueError(f"quantization must be 4 or 8, not {bits}")


GPTQ_INSTALL = "pip install optimum gptqmodel"


def checkpoint_quantization(config) -> str | None:
    """The quantization a checkpoint was saved with (``quant_method`` of its config's quantization_config, e.g.
    "gptq", "awq", "bitsandbytes"), or None for plain weights."""
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return None
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    return str(getattr(method, "value", method)).lower() if method else None


def gptq_problem(name: str) -> str | None:
    """Why the GPTQ checkpoint ``name`` cannot be loaded here (a missing package: what to install), or None.

    transformers loads GPTQ weights through optimum and gptqmodel (auto-gptq is no longer supported by
    transformers 5); without them it raises an ImportError deep inside from_pretrained."""
    import importlib.util

    missing = [pkg for pkg in ("optimum", "gptqmodel") if importlib.util.find_spec(pkg) is None]
    if not missing:
        return None
    return (f"{name} is a GPTQ-quantized checkpoint: loading it needs {' and '.join(missing)}: {GPTQ_INSTALL} "
            "(gptqmodel builds its fast kernels on CUDA machines; on a CPU it runs its slower torch kernel)")


def _cached_file(path: str, filename: str) -> str | None:
    """``filename`` of a local model folder, or of a Hub model already in the local cache (no download), or None."""
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local / filename) if (local / filename).is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(path, filename)
    except Exception:  # not a repo id, or no cache: nothing to say
        return None
    return found if isinstance(found, str) else None


def _check_prequantized(name: str, path: str, quantization: int | None) -> str | None:
    """The checkpoint's own quantization; InputError when it cannot be loaded here or clashes with -q."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None  # from_pretrained below says what is wrong, in one line
    method = checkpoint_quantization(config)
    if method is None and _cached_file(path, "quantize_config.json"):
        raise InputError(f"{name} is an AutoGPTQ checkpoint in the old layout (quantize_config.json, and no "
                         "quantization_config in its config.json), which transformers does not load: use --backend "
                         "vllm (or --backend openai with `vllm serve`), which reads it", field="-m/--model")
    if method and quantization:
        raise InputError(f"{name} is already quantized ({method}): leave out -q/--quantization",
                         field="-q/--quantization")
    if method == "gptq":
        problem = gptq_problem(name)
        if problem:
            raise InputError(problem, field="-m/--model")
    return method


def eos_ids(model, tokenizer) -> list[int]:
    """Every token id that ends an answer: the model's and generation config's eos ids, the tokenizer's eos,
    and the end-of-turn markers of common chat templates that the vocabulary has.

    Args:
        model: a transformers causal LM (its `generation_config` and `config` are read).
        tokenizer: its tokenizer.
    """
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    for marker in END_OF_TURN_MARKERS:
        tid = tokenizer.convert_tokens_to_ids(marker)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)


def _device_map(device: str, quantization: int | None, spread: bool):
    """`device_map` for from_pretrained, or None when the model is to be moved with `.to(device)`."""
    if quantization:
        return "auto" if spread and device.startswith("cuda") else {"": device}
    if spread and device == "cuda":
        return "auto"  # spread a large model over every visible GPU
    return None


def load_causal_lm(
    name: str,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    quantization: int | None = None,
    *,
    frozen: bool = False,
    spread: bool | None = None,
):
    """Load a tokenizer and a causal LM, ready for batched inference (eval mode). Returns (tokenizer, model).

    A tokenizer without a pad token gets its eos token as pad token (batches are padded).

    Args:
        name: "embedded", a Hugging Face model id or a local path (see `resolve_model_path`).
        device: "auto", "cpu", "cuda", "cuda:1", ... (see `resolve_device`).
        dtype: "auto", "bf16", "fp16", "fp32" or a torch.dtype (see `resolve_dtype`).
        quantization: None, 4 or 8: load the weights through bitsandbytes (placed with a device_map). A checkpoint
            saved quantized (GPTQ, e.g. TheBloke/*-GPTQ) loads as it is, through transformers' own support (GPTQ:
            optimum + gptqmodel); -q is refused for it.
        frozen: set requires_grad False on every parameter (a base model under trained adapters).
        spread: on the plain "cuda" device, spread the model over every visible GPU (device_map "auto"; a
            quantized model: on any cuda device). Default: yes unless `frozen` (a base for adapter training stays on
            the one device).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name)
    check_model_available(path)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    _check_prequantized(name, path, quantization)
    kwargs: dict = {"dtype": dtype}
    if quantization:
        kwargs["quantization_config"] = bnb_config(quantization, dtype)
    device_map = _device_map(device, quantization, not frozen if spread is None else spread)
    if device_map is not None:
        kwargs["device_map"] = device_map
    tokenizer = _pretrained(AutoTokenizer, name, path)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _pretrained(AutoModelForCausalLM, name, path, **kwargs)
    if device_map is None:
        model.to(device)
    model.eval()
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    return tokenizer, model
