"""What every classifier kind shares: training settings, the base class, and the saved card.

A trained model is a folder: `classifier.json` (the card: kind, task, labels, thresholds, text format, base
model, training data, headline metrics) plus the kind's own files (`model/` for a fine-tuned transformer,
`model.joblib` for a TF-IDF baseline). Which class serves which kind is in registry.py (`make_classifier`,
`load_classifier`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from socialsynth.classify.labels import LabelSpace
from socialsynth.core.errors import InputError

log = logging.getLogger(__name__)

CARD = "classifier.json"
CHECKPOINTS = "checkpoints"  # a fine-tuning run's Trainer checkpoints, inside the output folder
BASELINES = ("tfidf-logreg", "tfidf-mlp", "bow-logreg")  # scikit-learn pipelines (tfidf.py)
NN_KINDS = ("tfidf-nn",)  # a small torch network on TF-IDF features (nn.py)
T5_ENCODER = "t5-encoder"  # --model t5-encoder[:NAME]: a T5 encoder + linear head (t5_encoder.py)
T5_DEFAULT_BASE = "t5-small"


def split_model_name(name: str) -> tuple[str, str]:
    """The architecture and the checkpoint a --model names: ``t5-encoder`` -> (t5-encoder, t5-small),
    ``t5-encoder:PATH`` -> (t5-encoder, PATH), anything else -> (auto, name)."""
    if name == T5_ENCODER:
        return T5_ENCODER, T5_DEFAULT_BASE
    if name.startswith(T5_ENCODER + ":"):
        return T5_ENCODER, name.split(":", 1)[1] or T5_DEFAULT_BASE
    return "auto", name


@dataclass
class TrainSettings:
    """Hyper-parameters for every kind (each kind reads the ones that apply to it)."""

    epochs: float = 3.0
    batch_size: int = 16
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # < 1: fraction of the steps; >= 1: a number of steps
    grad_accum: int = 1
    max_length: int = 256
    class_weight: str = "balanced"  # balanced | sqrt | none
    early_stopping: int = 2  # evaluations without improvement before stopping (0: off)
    metric: str | None = None  # None: the task's default (see DEFAULT_METRIC)
    seed: int = 42
    device: str = "auto"
    precision: str = "auto"  # auto | bf16 | fp16 | fp32
    group_by_length: bool = True
    keep_checkpoints: bool = False
    resume: bool = True
    eval_steps: int | None = None  # None: evaluate once per epoch
    select_model: str = "best"  # best: the checkpoint best by `metric` on validation; last: the final weights
    raw_targets: bool = False  # regression: train on the targets as they are (True) or standardised (False)
    binary_columns: int = 1  # binary: 1 logit, or 2 columns (negative, positive) with BCE on one-hot targets
    # TF-IDF baselines
    tfidf_features: int = 100_000
    tfidf_ngrams: int = 2
    logreg_c: float = 1.0
    mlp_hidden: tuple[int, ...] = (256, 64)
    nn_lr: float = 1e-3  # tfidf-nn: Adam's learning rate (seed 003's)


# Chosen on validation: the seeds selected by F1 (003), micro F1 (001) and pairwise accuracy at gap 0.1 (000).
DEFAULT_METRIC = {
    "binary": "auprc",
    "multiclass": "macro_f1",
    "multilabel": "micro_f1",
    "regression": "pairwise_acc_0.1",
}
LOWER_IS_BETTER = {"mse", "mae", "loss", "hamming_loss"}
# What --metric may name per task: the headline numbers a validation pass reports (see metrics.headline), or the loss.
VALIDATION_METRICS = {
    "binary": ("auprc", "auroc", "f1", "f1_at_0.5", "loss"),
    "multiclass": ("macro_f1", "accuracy", "loss"),
    "multilabel": ("micro_f1", "macro_f1", "subset_accuracy", "macro_auprc", "loss"),
    "regression": ("pairwise_acc_0.1", "r2", "spearman", "mse", "loss"),
}


def scores_from_logits(task: str, logits: np.ndarray) -> np.ndarray:
    """Model outputs -> the score convention of socialsynth.classify.metrics (probabilities, or values)."""
    logits = np.asarray(logits, dtype=np.float64)
    if task in ("binary", "regression"):
        logits = logits.reshape(len(logits), -1)[:, -1]  # a 2-column binary head: the positive column
        return 1.0 / (1.0 + np.exp(-logits)) if task == "binary" else logits
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class TextClassifier:
    """A trained text model: labels, decision thresholds, and a way to score texts."""

    kind = "base"

    def __init__(self, labels: LabelSpace):
        self.labels = labels
        self.thresholds: list[float] = []
        self.card: dict = {}

    @property
    def task(self) -> str:
        return self.labels.task

    def fit(self, train_texts, y_train, val_texts, y_val, settings: TrainSettings, work_dir: Path, stop=None) -> dict:
        raise NotImplementedError

    def predict_scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        raise NotImplementedError

    def save_weights(self, directory: Path) -> None:
        raise NotImplementedError

    def card_fields(self) -> dict:
        """Kind-specific facts the card must carry to reload the model (e.g. a target scale)."""
        return {}

    def save(self, directory: Path, card: dict) -> None:
        """Write the weights, then the card last: a folder with a card is a finished model."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_weights(directory)
        self.card = {
            **card,
            **self.card_fields(),
            "kind": self.kind,
            "labels": self.labels.to_dict(),
            "thresholds": [float(t) for t in self.thresholds],
        }
        from socialsynth.core.io import atomic_write_json

        atomic_write_json(directory / CARD, self.card)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Scores -> predicted targets with the tuned thresholds (0.5 when none): 0/1, class index or value."""
        task = self.task
        if task == "regression":
            return scores
        if task == "multiclass":
            return scores.argmax(axis=1)
        thresholds = np.asarray(self.thresholds or [0.5] * (1 if task == "binary" else self.labels.size))
        if task == "binary":
            return (scores >= thresholds[0]).astype(int)
        return (scores >= thresholds[None, :]).astype(int)


def read_card(directory: str | Path) -> dict:
    path = Path(directory) / CARD
    if not path.exists():
        hint = " (training was interrupted? rerun it to resume)" if (Path(directory) / CHECKPOINTS).exists() else ""
        raise InputError(f"not a trained socialsynth classifier: {CARD} missing{hint}", path=directory)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"unreadable model card ({exc}); retrain with --overwrite", path=path) from exc
    if not isinstance(card, dict):
        raise InputError(f"not a model card (a JSON object), but a {type(card).__name__}; retrain with --overwrite",
                         path=path)
    return card
