"""Train a PAC-LoRA or a plain LoRA adapter on the Alpaca records (loss on the response only).

Reads alpaca/<variant>.jsonl (records with split "train" only), renders each record with the model's chat template,
and trains with the Hugging Face Trainer: loss on the response tokens and the end-of-turn token only (labels -100 on
the prompt), right-padded batches, gradient accumulation, a cosine (or other) schedule with warmup, bf16 autocast
where the hardware has it (same rule as train_classifier.py). PAC-LoRA is our torch module (pac_lora.py); plain LoRA
is peft with the same rank, alpha, dropout and target modules, so the two differ only in the experts and routers.

QLoRA: -q 4 (or 8) loads the base through bitsandbytes (nf4, double quantization, bf16 compute) and prepares it
with peft's prepare_model_for_kbit_training (norms in fp32, input gradients, gradient checkpointing) for PAC-LoRA
and LoRA alike. --device-map auto spreads the base over every visible GPU (a 7B base on small GPUs); the experts
are created on their layer's device. --routing token gives the seed's per-token routing (pac_lora.py).

Prompts longer than --max-length lose user-span tokens first (spans.py says how); the answer is never cut, and a
record whose template and answer alone do not fit is skipped and counted.

Long jobs: a checkpoint (adapter weights and optimizer state, never the frozen base) is saved every --save-steps
optimizer steps and on SIGTERM/SIGINT (then exit 128+signal); rerunning the same command resumes from the last whole
one: a checkpoint torn by a kill while it was saved is removed with a warning (counted in the record) and the run
falls back to the one before (--restart starts over). Checkpoints are only resumed by the settings that made them
(adapters/.<name>.work/settings.json); other settings are refused with the differences listed. The adapter folder
adapters/<name>/ (weights, config, training.json with the arguments, the losses and provenance) is written into a
temporary folder and renamed into place, so it is either complete or absent; a rerun once it exists does nothing
(also after a kill between that rename and the run record), unless its settings differ (refused, as above). Records
are checked before the model loads (types, repeated ids); --max-length past the model's context is lowered to it. The
run record (command, config, status, time per run, what was skipped) is adapters/<name>.meta.json, beside the folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.config import flat_values
from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.io import atomic_write_json, iter_jsonl
from socialsynth.core.provenance import command_line, versions
from socialsynth.core.run import RESUME_SAFE, JobRun, setting_differences
from socialsynth.core.runner import GracefulStop, trainer_stop_callback
from socialsynth.jobs.response.config import METHODS, SCHEDULERS, TrainConfig  # noqa: F401  (re-exported)
from socialsynth.jobs.response.context import model_context
from socialsynth.jobs.response.pac_lora import CONFIG_FILE, WEIGHTS_FILE, apply_pac_lora
from socialsynth.jobs.response.records import RepeatedIds, check_prompt_record
from socialsynth.jobs.response.spans import encode_example

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# settings that do not change what an adapter is: a rerun may change them and still find its adapter done
NOT_ADAPTER_SETTINGS = RESUME_SAFE | {"restart", "keep_checkpoints", "save_steps", "name", "precision", "device_map",
                                      "gradient_checkpointing"}


# ----------------------------------------------------------------------------------------------- data


def read_train_records(path: Path) -> tuple[list[tuple[int, dict]], dict]:
    """(line, record) of the records with split 'train', checked before any model loads (types, repeated ids),
    and counts (records read, train records, variants)."""
    if not path.exists():
        raise InputError("file not found (run extract-personas first, or pass --train-file)", path=path)
    rows, counts = [], {"records": 0, "train": 0, "too_long": 0, "truncated": 0, "variants": {}}
    ids = RepeatedIds(path, "record id")
    for line, record in iter_jsonl(path, required=("id", "instruction", "output", "split")):
        counts["records"] += 1
        if record["split"] != "train":
            continue
        check_prompt_record(record, path, line)
        if not isinstance(record["output"], str) or not record["output"].strip():
            raise InputError("empty response", path=path, line=line, field="output")
        if ids.seen(record["id"], line):
            continue
        counts["train"] += 1
        variant = record.get("variant", "?")
        counts["variants"][variant] = counts["variants"].get(variant, 0) + 1
        rows.append((line, record))
    ids.check("each record would be trained on twice; rebuild the file with extract-personas")
    if not rows:
        raise InputError("no records with split 'train'", path=path)
    return rows, counts


def encode_examples(rows: list[tuple[int, dict]], counts: dict, path: Path, tokenizer, max_length: int,
                    with_masks: bool) -> list[dict]:
    """Tokenised training examples; a record whose template and answer alone exceed max_length is counted in
    counts["too_long"] and left out, a prompt shortened to fit in counts["truncated"]."""
    examples = []
    for line, record in rows:
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
        log.warning("%d records skipped: the template and the answer alone exceed --max-length %d",
                    counts["too_long"], max_length)
    if counts["truncated"]:
        log.info("%d prompts shortened to fit --max-length %d (user span first)", counts["truncated"], max_length)
    if not examples:
        raise InputError(f"no usable records with split 'train': all {counts['train']} are longer than --max-length "
                         f"{max_length} even with the prompt cut", path=path)
    return examples


def read_train_examples(path: Path, tokenizer, max_length: int, with_masks: bool) -> tuple[list[dict], dict]:
    """Tokenised training examples from the records with split 'train', and counts (read, used, skipped...)."""
    rows, counts = read_train_records(path)
    return encode_examples(rows, counts, path, tokenizer, max_length, with_masks), counts


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


def build_model(cfg: TrainConfig, base, model_name: str):
    """The base wrapped with PAC-LoRA experts or a peft LoRA adapter (only the adapter trains)."""
    targets = cfg.targets
    if cfg.method == "pac-lora":
        try:
            return apply_pac_lora(base, targets, cfg.experts, cfg.rank, cfg.alpha, cfg.dropout, model_name,
                                  routing=cfg.routing)
        except ValueError as e:
            raise InputError(str(e), field="--target-modules") from e
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
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


@dataclass
class AdapterPaths:
    """adapters/<name>/ (the result), adapters/.<name>.work/checkpoints (while training) and the train file."""

    final: Path
    work: Path
    train_file: Path

    @classmethod
    def of(cls, cfg: TrainConfig) -> AdapterPaths:
        out = Path(cfg.output_dir)
        adapters = out / "adapters"
        name = cfg.adapter_name
        train_file = Path(cfg.train_file) if cfg.train_file else out / "alpaca" / f"{cfg.variant}.jsonl"
        return cls(adapters / name, adapters / f".{name}.work", train_file)

    @property
    def checkpoints(self) -> Path:
        return self.work / "checkpoints"


@dataclass
class Hardware:
    device: str
    precision: str  # autocast: bf16, fp16 or fp32
    base_dtype: object  # torch dtype of the frozen base


def load_base(cfg: TrainConfig, hw: Hardware):
    """(tokenizer, frozen base): on one device, or spread over the GPUs (--device-map); with -q 4/8 loaded through
    bitsandbytes and prepared by peft for k-bit training (QLoRA: norms and embeddings in fp32, input gradients on,
    gradient checkpointing unless --gradient-checkpointing false)."""
    from socialsynth.llm.loading import load_causal_lm

    spread = cfg.device_map != "none"
    tokenizer, base = load_causal_lm(cfg.model.model, hw.device, hw.base_dtype, cfg.model.quantization,
                                     frozen=True, spread=spread)
    checkpointing = cfg.gradient_checkpointing
    if cfg.model.quantization:
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(
            base, use_gradient_checkpointing=checkpointing is not False,
            gradient_checkpointing_kwargs={"use_reentrant": False})
        for p in base.parameters():  # the k-bit preparation leaves nothing of the base to train
            p.requires_grad_(False)
    elif checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    return tokenizer, base


def pick_hardware(cfg: TrainConfig) -> Hardware:
    """Device, autocast precision and the base's dtype (--dtype, or the precision's) for training."""
    from socialsynth.classify.transformer import pick_precision
    from socialsynth.llm.loading import DTYPES, resolve_device

    device = resolve_device(cfg.model.device)
    precision = pick_precision(cfg.precision, device)
    return Hardware(device, precision, DTYPES[cfg.model.dtype if cfg.model.dtype != "auto" else precision])


def training_arguments(cfg: TrainConfig, checkpoints: Path, hw: Hardware):
    """The Trainer's arguments: the seed's schedule, checkpoints every --save-steps, one log line per step."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup if cfg.warmup < 1 else int(cfg.warmup),
        lr_scheduler_type=cfg.scheduler,
        bf16=hw.precision == "bf16",
        fp16=hw.precision == "fp16",
        use_cpu=hw.device == "cpu",
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=1,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        disable_tqdm=not log.isEnabledFor(logging.INFO),
    )


def make_trainer(cfg: TrainConfig, model, tokenizer, examples: list[dict], checkpoints: Path, hw: Hardware, stop):
    """A Trainer (PAC-LoRA's checkpoints only its experts and routers) that stops on SIGTERM/SIGINT."""
    if cfg.method == "pac-lora":
        trainer_cls = _pac_lora_trainer_class()
    else:
        from transformers import Trainer as trainer_cls
    return trainer_cls(
        model=model,
        args=training_arguments(cfg, checkpoints, hw),
        train_dataset=examples,
        data_collator=Collator(tokenizer.pad_token_id),
        callbacks=[trainer_stop_callback(stop)],
    )


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file cannot be read whole (missing, cut short, a broken header), or None."""
    from safetensors import safe_open

    if not path.is_file():
        return f"{path.name} missing"
    try:
        with safe_open(str(path), framework="pt"):  # checks that the header's tensors cover the file exactly
            pass
    except Exception as e:  # safetensors raises its own error type for every kind of damage
        return f"{path.name} is unreadable ({' '.join(str(e).split())[:80]})"
    return None


def checkpoint_problem(folder: Path, method: str) -> str | None:
    """Why a checkpoint cannot be resumed from (a kill tore it while it was being saved), or None when it is whole.

    The Trainer writes the adapter weights, then the optimizer, scheduler and RNG states, and trainer_state.json
    last: a checkpoint is whole when all of them are there and readable."""
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json missing"
    except (OSError, ValueError) as e:
        return f"trainer_state.json unreadable ({type(e).__name__})"
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        return "trainer_state.json holds no global_step"
    weights, config = (WEIGHTS_FILE, CONFIG_FILE) if method == "pac-lora" else (
        "adapter_model.safetensors", "adapter_config.json")
    if not (folder / config).is_file():
        return f"{config} missing"
    problem = safetensors_problem(folder / weights)
    if problem:
        return problem
    for name in ("optimizer.pt", "scheduler.pt"):  # torch.save writes zip archives: a cut one has no directory
        if not zipfile.is_zipfile(folder / name):
            return f"{name} missing or cut short"
    return None


def usable_checkpoint(checkpoints: Path, method: str) -> tuple[str | None, list[str]]:
    """The newest whole checkpoint (None: start from scratch), and the torn ones passed over on the way.

    A torn checkpoint is removed with a warning (it cannot be resumed from, and the Trainer would write the same
    step's folder again), so the run falls back to the checkpoint before it."""
    if not checkpoints.is_dir():
        return None, []
    found = [(int(m.group(1)), p) for p in checkpoints.iterdir() if p.is_dir() and (m := _CHECKPOINT.fullmatch(p.name))]
    torn = []
    for _, folder in sorted(found, reverse=True):
        problem = checkpoint_problem(folder, method)
        if problem is None:
            return str(folder), torn
        log.warning("%s is incomplete (%s; killed while it was saved?): removed; falling back to the checkpoint "
                    "before it", folder, problem)
        torn.append(f"{folder.name}: {problem}")
        shutil.rmtree(folder, ignore_errors=True)
    if torn:
        log.warning("no whole checkpoint left in %s: training starts over", checkpoints)
    return None, torn


def run_trainer(trainer, checkpoints: Path, stop, method: str) -> tuple[object, str | None, float, list[str]]:
    """Train (resuming from the last whole checkpoint); Interrupted when a stop came before the last step.

    Returns (the train result, the checkpoint resumed from, seconds, the torn checkpoints passed over)."""
    last, torn = usable_checkpoint(checkpoints, method)
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
    return result, last, time.perf_counter() - t0, torn


def logged_losses(state) -> tuple[list[dict], float | None]:
    """The per-step log entries with a loss, and the last loss (RuntimeError when it is not finite)."""
    losses = [
        {k: e[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in e}
        for e in state.log_history
        if "loss" in e
    ]
    final_loss = losses[-1]["loss"] if losses else None
    if final_loss is not None and not math.isfinite(final_loss):
        raise RuntimeError(f"training diverged (loss {final_loss}); lower --lr")
    return losses, final_loss


def _settings_differences(cfg: TrainConfig, path: Path) -> list[str]:
    """How `cfg` differs from the settings saved in `path` (a training.json's "args", or the work folder's
    settings.json), leaving out what does not change the adapter; InputError when the file is damaged."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable ({type(e).__name__}); pass --restart to train again", path=path) from None
    saved = saved.get("args", saved) if isinstance(saved, dict) else None
    if not isinstance(saved, dict):
        raise InputError("not a JSON object of settings; pass --restart to train again", path=path)
    return setting_differences(saved, flat_values(cfg), NOT_ADAPTER_SETTINGS)


def _refuse_other_settings(what: str, folder: Path, changed: list[str]) -> None:
    if changed:
        raise InputError(f"holds {what} made with other settings ({'; '.join(changed)}); pass --restart to train "
                         "again, or --name to train a second adapter", path=folder)


def finished_adapter(cfg: TrainConfig, paths: AdapterPaths) -> dict | None:
    """The summary of an adapter this very config already wrote (a rerun, or a run killed after the adapter was
    renamed into place but before its record said so), or None when training is needed. An adapter of other
    settings is refused; leftovers of killed runs (temporary folders, checkpoints) are cleaned up."""
    for leftover in paths.final.parent.glob(f".{paths.final.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)  # a kill while the adapter was written: never renamed
    for leftover in paths.final.parent.glob(f".{paths.final.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)  # a kill while an older adapter was replaced
    if cfg.restart or not paths.final.exists():
        return None
    training = paths.final / TRAINING_FILE
    if training.exists():
        _refuse_other_settings("an adapter", paths.final, _settings_differences(cfg, training))
    if paths.work.exists() and not cfg.keep_checkpoints:
        shutil.rmtree(paths.work, ignore_errors=True)
    log.info("%s exists: nothing to do (--restart to train again)", paths.final)
    return {"adapter": str(paths.final), "skipped": "exists"}


def prepare_work(cfg: TrainConfig, paths: AdapterPaths) -> None:
    """The work folder of this run: emptied with --restart; otherwise its checkpoints are resumed from, and so they
    must come from the same settings (settings.json, written when training first starts)."""
    settings = paths.work / "settings.json"
    if cfg.restart and paths.work.exists():
        shutil.rmtree(paths.work)
    elif settings.exists():
        _refuse_other_settings("checkpoints", paths.work, _settings_differences(cfg, settings))
    paths.work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(settings, flat_values(cfg))


def fit_max_length(max_length: int, model, tokenizer) -> int:
    """--max-length, or the model's context when that is shorter (positions past it were never trained)."""
    context = model_context(model, tokenizer)
    if context is not None and max_length > context:
        log.warning("--max-length %d is past the model's context of %d tokens: using %d", max_length, context, context)
        return context
    return max_length


def train_adapter(cfg: TrainConfig, stop=None) -> dict:
    """Train and write adapters/<name>/; returns the training summary (also saved as training.json)."""
    from transformers import set_seed

    paths = AdapterPaths.of(cfg)
    done = finished_adapter(cfg, paths)
    if done is not None:
        return done
    rows, counts = read_train_records(paths.train_file)  # bad data stops here, before the model loads
    prepare_work(cfg, paths)
    set_seed(cfg.seed)
    hw = pick_hardware(cfg)
    tokenizer, base = load_base(cfg, hw)
    max_length = fit_max_length(cfg.max_length, base, tokenizer)
    examples = encode_examples(rows, counts, paths.train_file, tokenizer, max_length, cfg.method == "pac-lora")
    other = sorted(v for v in counts["variants"] if v not in (cfg.variant, "?"))
    if other:
        log.warning("%s holds records of variant(s) %s; the adapter is labelled %s", paths.train_file, other,
                    cfg.variant)
    model = build_model(cfg, base, cfg.model.model)
    trainable, total = count_parameters(model)
    log.info("%s: %d trainable parameters (%.3f%% of %d)", cfg.method, trainable, 100 * trainable / total, total)
    trainer = make_trainer(cfg, model, tokenizer, examples, paths.checkpoints, hw, stop)
    result, last, seconds, torn = run_trainer(trainer, paths.checkpoints, stop, cfg.method)
    losses, final_loss = logged_losses(trainer.state)
    summary = {
        "method": cfg.method,
        "routing": cfg.routing if cfg.method == "pac-lora" else None,
        "quantization": cfg.model.quantization,
        "variant": cfg.variant,
        "name": cfg.adapter_name,
        "base_model": cfg.model.model,
        "train_file": str(paths.train_file),
        "data": counts,
        "examples": len(examples),
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "train_seconds": round(seconds, 2),
        "train_runtime": result.metrics.get("train_runtime"),
        "losses": losses,
        "final_loss": final_loss,
        "resumed_from": last,
        "torn_checkpoints": torn,
        "max_length": max_length,
        "precision": hw.precision,
        "base_dtype": str(hw.base_dtype).replace("torch.", ""),
        "device": hw.device,
        "seed": cfg.seed,
        "args": flat_values(cfg),
        "command": command_line(),
        "versions": _versions(cfg.method),
    }
    _write_adapter(model, tokenizer, cfg.method, paths.final, summary)
    if not cfg.keep_checkpoints:
        shutil.rmtree(paths.work, ignore_errors=True)
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


def record_file(cfg: TrainConfig) -> Path:
    """The run record of an adapter: adapters/<name>.meta.json, beside the folder (which is replaced whole)."""
    return Path(cfg.output_dir) / "adapters" / f"{cfg.adapter_name}.meta.json"


def run_train(cfg: TrainConfig, stop=None) -> dict:
    """train_adapter under the run record adapters/<name>.meta.json; stops cleanly on SIGTERM/SIGINT."""
    with JobRun("response.train", record_file(cfg), cfg) as run, GracefulStop() as signals:
        summary = train_adapter(cfg, signals if stop is None else stop)
        run.meta["adapter"] = str(AdapterPaths.of(cfg).final)
        run.meta["skipped"] = skipped_counts(summary)
        for key in ("examples", "steps", "final_loss", "train_seconds", "resumed_from", "trainable_parameters"):
            if key in summary:
                run.meta[key] = summary[key]
        run.note_items(summary.get("examples", 0))
        run.mark_complete(True)
    return summary


def skipped_counts(summary: dict) -> dict[str, int]:
    """What training passed over, by reason (the run record's "skipped")."""
    counts = {}
    if summary.get("skipped") == "exists":
        counts["adapter already written (nothing to do)"] = 1
    if (summary.get("data") or {}).get("too_long"):
        counts["record longer than --max-length"] = summary["data"]["too_long"]
    if summary.get("torn_checkpoints"):
        counts["torn checkpoint removed"] = len(summary["torn_checkpoints"])
    return counts


def format_summary(summary: dict) -> str:
    if summary.get("skipped"):
        return f"{summary['adapter']} already exists; nothing to do (--restart to train again)"
    lines = [
        f"{summary['method']} ({summary['variant']}): {summary['steps']} steps on {summary['examples']} examples, "
        f"final loss {summary['final_loss']}, {summary['trainable_parameters']:,} trainable parameters, "
        f"{summary['train_seconds']} s -> {Path(summary['args']['output_dir']) / 'adapters' / summary['name']}"
    ]
    for reason, n in skipped_counts(summary).items():
        lines.append(f"skipped ({reason}): {n}")
    for torn in summary.get("torn_checkpoints") or []:
        start = summary["resumed_from"] or "scratch"
        lines.append(f"warning: torn checkpoint {torn} was removed; resumed from {start}")
    return "\n".join(lines)
