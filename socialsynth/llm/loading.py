"""Loading a tokenizer and a causal LM: the one path shared by the hf backend and the response jobs (adapter
training and inference), so that device, dtype, quantization and padding are settled the same way everywhere."""

from __future__ import annotations

import warnings

import torch

from socialsynth.llm.embedded import EMBEDDED_NAME, embedded_checkpoint

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>")


def resolve_device(device: str) -> str:
    """The device to run on.

    Args:
        device: "auto" (a GPU when there is one, else the CPU), or a torch device name ("cpu", "cuda", "cuda:1").
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
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
        quantization: None, 4 or 8: load the weights through bitsandbytes (placed with a device_map).
        frozen: set requires_grad False on every parameter (a base model under trained adapters).
        spread: on the plain "cuda" device, spread the model over every visible GPU (device_map "auto"; a
            quantized model: on any cuda device). Default: yes unless `frozen` (a base for adapter training stays on
            the one device).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    kwargs: dict = {"dtype": dtype}
    if quantization:
        kwargs["quantization_config"] = bnb_config(quantization, dtype)
    device_map = _device_map(device, quantization, not frozen if spread is None else spread)
    if device_map is not None:
        kwargs["device_map"] = device_map
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if device_map is None:
        model.to(device)
    model.eval()
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    return tokenizer, model
