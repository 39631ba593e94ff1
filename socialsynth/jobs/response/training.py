"""Train a PAC-LoRA or a plain LoRA adapter on the Alpaca records (loss on the response only).

Reads alpaca/<variant>.jsonl (records with split "train" only), renders each record with the model's chat template,
and trains with the Hugging Face Trainer: loss on the response tokens and the end-of-turn token only (labels -100 on
the prompt), right-padded batches, gradient accumulation, a cosine (or other) schedule with warmup, bf16 autocast
where the hardware has it (same rule as train_classifier.py). PAC-LoRA is our torch module (pac_lora.py); plain LoRA
is peft with the same rank, alpha, dropout and target modules, so the two differ only in the experts and routers.

Prompts longer than --max-length lose user-span tokens first (spans.py says how); the answer is never cut, and a
record whose template and answer alone do not fit is skipped and counted.

Long jobs: a checkpoint (adapter weights and optimizer state, never the frozen base) is saved every --save-steps
optimizer steps and on SIGTERM/SIGINT (then exit 128+signal); rerunning the same command resumes from the last one
(--restart starts over). The adapter folder adapters/<name>/ (weights, config, training.json with the arguments,
the losses and provenance) is written into a temporary folder and renamed into place, so it is either complete or
absent; a rerun once it exists does nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import time
from pathlib import Path

from socialsynth.core.cli import add_model_args, default_dir
from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.io import atomic_write_json, iter_jsonl
from socialsynth.core.provenance import command_line, versions
from socialsynth.core.runner import trainer_stop_callback
from socialsynth.jobs.response.pac_lora import DEFAULT_TARGETS, apply_pac_lora
from socialsynth.jobs.response.records import VARIANTS
from socialsynth.jobs.response.spans import encode_example

log = logging.getLogger(__name__)

METHODS = ("pac-lora", "lora")
TRAINING_FILE = "training.json"
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")


# ----------------------------------------------------------------------------------------------- arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        default=default_dir("output") / "responses",
        help="the stage folder (alpaca/ in it)",
    )
    p.add_argument("--method", choices=METHODS, default="pac-lora", help="PAC-LoRA experts or plain peft LoRA")
    p.add_argument("--variant", choices=VARIANTS, default="full", help="which alpaca/<variant>.jsonl to train on")
    p.add_argument("--train-file", type=Path, default=None, help="Alpaca JSONL (default: OUTPUT/alpaca/VARIANT.jsonl)")
    p.add_argument(
        "--name", default=None, help="adapter folder adapters/NAME (default: METHOD, or METHOD-VARIANT for ablations)"
    )
    add_model_args(p)
    t = p.add_argument_group("training (defaults: the seed's)")
    t.add_argument("--max-length", type=int, default=1024, help="tokens of prompt + answer (the prompt is cut first)")
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--batch-size", type=int, default=1, help="sequences per device step")
    t.add_argument("--grad-accum", type=int, default=16, help="gradient accumulation steps")
    t.add_argument("--lr", type=float, default=2e-5, help="peak learning rate")
    t.add_argument("--warmup", type=float, default=0.1, help="warmup: a fraction of the steps (<1) or a step count")
    t.add_argument("--scheduler", choices=SCHEDULERS, default="cosine", help="learning-rate schedule")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides --epochs)")
    t.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="autocast precision (auto: bf16 where supported, fp16 on older GPUs, else fp32)",
    )
    t.add_argument("--save-steps", type=int, default=200, help="checkpoint every N optimizer steps (and on SIGTERM)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--restart", action="store_true", help="ignore checkpoints of an interrupted run; retrain")
    t.add_argument("--keep-checkpoints", action="store_true", help="keep the checkpoints after the adapter is written")
    a = p.add_argument_group("adapter")
    a.add_argument("--experts", type=int, default=3, help="PAC-LoRA: A experts and B experts per layer")
    a.add_argument("--rank", type=int, default=8, help="LoRA rank r")
    a.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scaling alpha/r)")
    a.add_argument("--dropout", type=float, default=0.1, help="dropout on the adapter input")
    a.add_argument(
        "--target-modules",
        default=",".join(DEFAULT_TARGETS),
        help="comma-separated names of the linear layers to adapt (Llama/Qwen2 names by default)",
    )


# ----------------------------------------------------------------------------------------------- model loading


def resolve_model_path(name: str) -> str:
    """'embedded' -> the converted SmolLM2 checkpoint; anything else is a hub id or a path."""
    from socialsynth.llm.embedded import EMBEDDED_NAME, embedded_checkpoint

    return str(embedded_checkpoint()) if name == EMBEDDED_NAME else name


def load_base(name: str, device: str, dtype, quantization: int | None = None):
    """(tokenizer, causal LM) on `device` in `dtype`, frozen; pad token set for batching. `quantization` 4/8 loads
    the base through bitsandbytes (inference only: the adapters stay in full precision on top of it)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict = {"dtype": dtype}
    if quantization:
        from socialsynth.llm.hf import _bnb_config

        kwargs["quantization_config"] = _bnb_config(quantization, dtype)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not quantization:
        model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return tokenizer, model


def adapter_name(method: str, variant: str, name: str | None) -> str:
    if name:
        if "/" in name or name.startswith("."):
            raise InputError("must be a plain folder name", field="--name")
        return name
    return method if variant == "full" else f"{method}-{variant}"


def _check_backend(args) -> None:
    if getattr(args, "backend", "hf") != "hf":
        raise InputError(
            f"train runs the model in this process: --backend {args.backend} cannot train", field="backend"
        )
    if getattr(args, "quantization", None):
        raise InputError("training a quantized base (QLoRA) is not supported; drop -q", field="quantization")


# ----------------------------------------------------------------------------------------------- data


def read_train_examples(path: Path, tokenizer, max_length: int, with_masks: bool) -> tuple[list[dict], dict]:
    """Tokenised training examples from the records with split 'train', and counts (read, used, skipped...)."""
    if not path.exists():
        raise InputError("file not found (run extract-personas first, or pass --train-file)", path=path)
    examples, counts = [], {"records": 0, "train": 0, "too_long": 0, "truncated": 0, "variants": {}}
    for line, record in iter_jsonl(path, required=("id", "instruction", "output", "split")):
        counts["records"] += 1
        if record["split"] != "train":
            continue
        if not isinstance(record["output"], str) or not record["output"].strip():
            raise InputError("empty response", path=path, line=line, field="output")
        counts["train"] += 1
        variant = record.get("variant", "?")
        counts["variants"][variant] = counts["variants"].get(variant, 0) + 1
        ex = encode_example(tokenizer, record, max_length, path=path, line=line, need_spans=with_masks)
        if ex is None:
            counts["too_long"] += 1
            continue
        counts["truncated"] += ex.pop("truncated") > 0
        if not with_masks:
            ex.pop("news_mask")
            ex.pop("user_mask")
        examples.append(ex)
    if counts["too_long"]:
        log.warning(
            "%d records skipped: the template and the answer alone exceed --max-length %d",
            counts["too_long"],
            max_length,
        )
    if counts["truncated"]:
        log.info("%d prompts shortened to fit --max-length %d (user span first)", counts["truncated"], max_length)
    if not examples:
        raise InputError("no usable records with split 'train'", path=path)
    return examples, counts


class Collator:
    """Right-pads a list of examples: ids with the pad token, labels with -100, masks with False/0."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        n = len(examples)
        batch = {
            "input_ids": torch.full((n, width), self.pad_id, dtype=torch.long),
            "attention_mask": torch.zeros((n, width), dtype=torch.long),
            "labels": torch.full((n, width), -100, dtype=torch.long),
        }
        masks = [k for k in ("news_mask", "user_mask") if k in examples[0]]
        for k in masks:
            batch[k] = torch.zeros((n, width), dtype=torch.bool)
        for i, e in enumerate(examples):
            m = len(e["input_ids"])
            batch["input_ids"][i, :m] = torch.tensor(e["input_ids"])
            batch["attention_mask"][i, :m] = 1
            batch["labels"][i, :m] = torch.tensor(e["labels"])
            for k in masks:
                batch[k][i, :m] = torch.tensor(e[k])
        return batch


# ----------------------------------------------------------------------------------------------- training


def _pac_lora_trainer_class():
    """Trainer that checkpoints only the PAC-LoRA experts and routers (not the frozen base) and resumes them."""
    from transformers import Trainer

    class PACLoRATrainer(Trainer):
        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            if self.args.should_save:
                self.model.save_adapter(output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            (model or self.model).load_adapter_weights(resume_from_checkpoint)

    return PACLoRATrainer


def build_model(args, base, model_name: str):
    targets = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    if not targets:
        raise InputError("no target modules given", field="--target-modules")
    if args.method == "pac-lora":
        try:
            return apply_pac_lora(base, targets, args.experts, args.rank, args.alpha, args.dropout, model_name)
        except ValueError as e:
            raise InputError(str(e), field="--target-modules") from e
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        bias="none",
    )
    try:
        return get_peft_model(base, config)
    except ValueError as e:
        raise InputError(str(e), field="--target-modules") from e


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def train_adapter(args, stop=None) -> dict:
    """Train and write adapters/<name>/; returns the training summary (also saved as training.json)."""
    import torch
    from transformers import TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from socialsynth.classify.transformer import pick_device, pick_precision

    _check_backend(args)
    out = Path(args.output_dir)
    name = adapter_name(args.method, args.variant, args.name)
    adapters = out / "adapters"
    final = adapters / name
    work = adapters / f".{name}.work"
    checkpoints = work / "checkpoints"
    if final.exists() and not args.restart:
        log.info("%s exists: nothing to do (--restart to train again)", final)
        return {"adapter": str(final), "skipped": "exists"}
    if args.restart and work.exists():
        shutil.rmtree(work)
    train_file = Path(args.train_file) if args.train_file else out / "alpaca" / f"{args.variant}.jsonl"
    for flag in ("max_length", "batch_size", "grad_accum", "rank", "experts", "save_steps"):
        if getattr(args, flag) < 1:
            raise InputError("must be >= 1", field="--" + flag.replace("_", "-"))
    set_seed(args.seed)
    device = pick_device(args.device)
    precision = pick_precision(args.precision, device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    base_dtype = dtype[args.dtype] if args.dtype != "auto" else dtype[precision]
    tokenizer, base = load_base(args.model, device, base_dtype)
    examples, counts = read_train_examples(train_file, tokenizer, args.max_length, args.method == "pac-lora")
    other = sorted(v for v in counts["variants"] if v not in (args.variant, "?"))
    if other:
        log.warning("%s holds records of variant(s) %s; the adapter is labelled %s", train_file, other, args.variant)
    model = build_model(args, base, args.model)
    trainable, total = count_parameters(model)
    log.info("%s: %d trainable parameters (%.3f%% of %d)", args.method, trainable, 100 * trainable / total, total)

    targs = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps else -1,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup if args.warmup < 1 else int(args.warmup),
        lr_scheduler_type=args.scheduler,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=args.seed,
        data_seed=args.seed,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        disable_tqdm=not log.isEnabledFor(logging.INFO),
    )

    if args.method == "pac-lora":
        trainer_cls = _pac_lora_trainer_class()
    else:
        from transformers import Trainer as trainer_cls
    trainer = trainer_cls(
        model=model,
        args=targs,
        train_dataset=examples,
        data_collator=Collator(tokenizer.pad_token_id),
        callbacks=[trainer_stop_callback(stop)],
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.exists() else None
    if last:
        log.info("resuming from %s", last)
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    state = trainer.state
    if stop is not None and stop.requested and state.global_step < state.max_steps:
        raise Interrupted(
            f"training stopped at step {state.global_step} of {state.max_steps}; checkpoint saved in {checkpoints}",
            resume_hint="rerun the same command to resume from it",
            exit_code=stop.exit_code,
        )
    losses = [
        {k: e[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in e}
        for e in state.log_history
        if "loss" in e
    ]
    final_loss = losses[-1]["loss"] if losses else None
    if final_loss is not None and not math.isfinite(final_loss):
        raise RuntimeError(f"training diverged (loss {final_loss}); lower --lr")
    summary = {
        "method": args.method,
        "variant": args.variant,
        "name": name,
        "base_model": args.model,
        "train_file": str(train_file),
        "data": counts,
        "examples": len(examples),
        "steps": state.global_step,
        "epochs": state.epoch,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_seconds": round(time.perf_counter() - t0, 2),
        "train_runtime": result.metrics.get("train_runtime"),
        "losses": losses,
        "final_loss": final_loss,
        "resumed_from": last,
        "precision": precision,
        "base_dtype": str(base_dtype).replace("torch.", ""),
        "device": device,
        "seed": args.seed,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "stage"},
        "command": command_line(),
        "versions": _versions(args.method),
    }
    _write_adapter(model, tokenizer, args.method, final, summary)
    if not args.keep_checkpoints:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def _versions(method: str) -> dict:
    found = versions()
    if method == "lora":
        import peft

        found["peft"] = peft.__version__
    return found


def _write_adapter(model, tokenizer, method: str, final: Path, summary: dict) -> None:
    """Write the adapter into a temporary sibling folder, then rename it into place (replacing an old one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if method == "pac-lora":
        model.save_adapter(tmp)
    else:
        model.save_pretrained(str(tmp))  # peft: adapter_config.json + adapter_model.safetensors only
    atomic_write_json(tmp / TRAINING_FILE, summary)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(args) -> int:
    from socialsynth.core.runner import GracefulStop

    with GracefulStop() as stop:
        summary = train_adapter(args, stop)
    if summary.get("skipped"):
        print(f"{summary['adapter']} already exists; nothing to do (--restart to train again)")
        return 0
    print(
        f"{summary['method']} ({summary['variant']}): {summary['steps']} steps on {summary['examples']} examples, "
        f"final loss {summary['final_loss']}, {summary['trainable_parameters']:,} trainable parameters, "
        f"{summary['train_seconds']} s -> {Path(summary['args']['output_dir']) / 'adapters' / summary['name']}"
    )
    return 0
