"""The augment job's declared config: every flag of ``augment_labels.py`` is a field of :class:`AugmentConfig`.

Groups: ``model`` (:class:`ModelArgs`), ``sampling`` (:class:`SamplingArgs`), ``filters``
(:class:`~socialsynth.jobs.augment.text.TextFilters`) and ``ladder`` (:class:`LadderArgs`, the sparsity ladder).
The job runs in up to two modes: generation (``--n N``) and the ladder (``--positive-rates``, on the generated
file or on ``--synthetic FILE``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from socialsynth.core.config import (
    ConfigError,
    check_choice,
    check_min,
    check_range,
    default_dir,
    flag,
    group,
    missing_folder,
    overwrite_flag,
    report_flag,
)
from socialsynth.core.errors import InputError
from socialsynth.jobs.augment.text import TextFilters
from socialsynth.llm.args import ModelArgs, SamplingArgs
from socialsynth.prompts import load_template

TEMPLATE = "augment_fewshot"
PROMPT_FORMATS = ("chat", "raw")
ITEM_PARSERS = ("list", "quoted")


def rates_list(text: str) -> list[float] | None:
    """'0.0025,0.01' -> [0.0025, 0.01]: fractions in [0, 1) (ValueError otherwise); 'none' -> None (no ladder, e.g.
    to leave out the rates of a preset)."""
    from socialsynth.jobs.augment.ladder import parse_rates

    if str(text).strip().lower() == "none":
        return None
    try:
        return parse_rates(text)
    except InputError as e:
        raise ValueError(e.message) from None


def none_word(text: str) -> str | None:
    """'none' -> None (any other text is kept)."""
    return None if str(text).strip().lower() == "none" else str(text)


def _default_output_dir() -> Path:
    return default_dir("output") / "augment"


MAX_SEED = 2**31 - 1  # numpy and scikit-learn take seeds below 2**32 (the ladder's split and classifier use it)
# --classifier names that are not a model id or folder (with the capstone seed's bow-logreg, tfidf-nn, t5-encoder)
BASELINES = ("tfidf-logreg", "tfidf-mlp", "bow-logreg", "tfidf-nn", "embedded", "t5-encoder")


def bundled_definitions() -> Path | None:
    """data/label_definitions.yaml of the source checkout (toxic, offensive, hate), where there is one; absolute,
    so that the recorded config is the same from any working directory."""
    path = (default_dir("data") / "label_definitions.yaml").absolute()
    return path if path.is_file() else None


def _check_finite(*parts: object) -> None:
    """nan passes every comparison and inf every lower bound: neither is a setting."""
    for part in parts:
        for f in fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f.name, f"must be a finite number, got {value}")


def _check_exists(cfg: object, names: tuple[str, ...]) -> None:
    for name in names:
        path = getattr(cfg, name)
        if path is not None and not Path(path).exists():
            raise ConfigError(name, f"not found: {path}")


@dataclass(kw_only=True)
class LadderArgs:
    """Sparsity ladder: training sets at several positive rates, optionally a classifier trained on each."""

    positive_rates: list[float] | None = flag(
        None, "e.g. 0.0025,0.01,0.03,0.05: build training sets at these positive rates ('none': no ladder)",
        convert=rates_list,
    )
    synthetic: Path | None = flag(
        None, "use this synthetic file (augment JSONL or a table) for the ladder instead of generating"
    )
    train: Path | None = flag(None, "real training file (instead of splitting --input by --val-fraction and "
                              "--test-fraction)")
    val: Path | None = flag(None, "real validation file (with --train)")
    test: Path | None = flag(None, "real test file (with --train)")
    val_fraction: float = flag(0.1, "share of --input held out as the real validation set (the seed: 0.15)")
    test_fraction: float = flag(0.1, "share of --input held out as the real test set (the seed: 0.15)")
    strict_rates: bool = flag(
        False, "error (instead of capping) when a rate needs more synthetic positives than exist"
    )
    evaluate: bool = flag(False, "train and test --classifier on each ladder set")
    classifier: str = flag(
        "tfidf-logreg", "any train_classifier.py model: tfidf-logreg, tfidf-mlp, embedded, a HF encoder"
    )
    epochs: float = flag(3.0, "epochs for transformer classifiers")

    def __post_init__(self) -> None:
        self._check_rates()
        _check_finite(self)
        check_min(self, "epochs", 0, inclusive=False)
        check_range(self, "val_fraction", 0, 1, low_open=True, high_open=True)
        check_range(self, "test_fraction", 0, 1, low_open=True, high_open=True)
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("test_fraction", f"--val-fraction + --test-fraction must leave rows to train on, got "
                              f"{self.val_fraction} + {self.test_fraction}")
        if not str(self.classifier).strip():
            raise ConfigError("classifier", "must not be empty")
        if self.train is not None and (self.val is None or self.test is None):
            raise ConfigError("train", "--train needs --val and --test (or give --input to split it)")
        if self.train is None and (self.val is not None or self.test is not None):
            raise ConfigError("val" if self.val is not None else "test", "--val and --test go with --train")
        if self.evaluate and self.positive_rates is None:
            raise ConfigError("evaluate", "--evaluate trains on the ladder's sets: add --positive-rates")
        _check_exists(self, ("synthetic", "train", "val", "test"))
        if (self.evaluate and self.classifier not in BASELINES and not self.classifier.startswith("t5-encoder:")
                and missing_folder(self.classifier)):
            raise ConfigError("classifier", f"no such model folder: {self.classifier} (or one of "
                              f"{', '.join(BASELINES)}, or a Hugging Face encoder id)")

    def _check_rates(self) -> None:
        from socialsynth.jobs.augment.ladder import rate_name

        rates = self.positive_rates
        if rates is None:
            return
        if not rates or any(not (math.isfinite(r) and 0 <= r < 1) for r in rates):
            raise ConfigError("positive_rates", f"rates must be fractions in [0, 1), got {rates}")
        names = [rate_name(r) for r in rates]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:  # one file per rate: a repeat would build and report the same set twice
            raise ConfigError("positive_rates", f"rate {', '.join(repeated)} is given more than once")
        if self.evaluate and 0 in rates:
            raise ConfigError("positive_rates", "a rate of 0 leaves no positives to train --evaluate's classifier "
                              "on: leave it out (or --evaluate)")


@dataclass(kw_only=True)
class AugmentConfig:
    """Rare-class augmentation: generate examples of a sparse label, flag bad ones, build the sparsity ladder."""

    # data
    input: Path | None = flag(None, "labelled file (CSV, TSV, JSONL, Parquet)", names=("--input", "-i"))
    text_col: str = flag("text", "text column", names=("--text-col",))
    label_col: str = flag("label", "label column", names=("--label-col",))
    target_label: str = flag(help="the rare label to generate, e.g. 1 or toxic (required)")
    output_dir: Path = flag(
        help="output folder (default: output/augment)",
        names=("-o", "--output-dir"),
        default_factory=_default_output_dir,
    )
    skip_bad_rows: bool = flag(False, "count and skip malformed rows")
    # generation
    n: int | None = flag(
        None,
        "passing examples to make (the job stops when this many passed every filter, or after --max-requests); "
        "0 or left out with --synthetic: no generation",
    )
    label_name: str | None = flag(
        None, "the label's name in the prompt and definition file (default: --target-label)"
    )
    definition: str | None = flag(None, "definition of the label shown in every prompt (default: the --label-name "
                                  "entry of --definition-file)")
    definition_file: Path | None = flag(
        help="a .yaml/.yml file of label name -> definition (picked by --label-name; the bundled one defines toxic, "
        "offensive and hate), or a plain-text file with the definition",
        default_factory=bundled_definitions,
    )
    examples_per_prompt: int = flag(2, "real examples in each prompt (the seed: 2)")
    per_call: int = flag(5, "examples asked for in each request (the seed: 5)")
    samples_per_prompt: int = flag(1, "requests sent with the same real examples, each with its own seed (the "
                                   "seed: 5 per pair)")
    prompt_format: str = flag("chat", "chat: the prompt goes through the model's chat template; raw: the seed's "
                              "plain '### Instruction: ... ### Response:' text, no chat template (the answer is "
                              "cut at the next '### ')", choices=PROMPT_FORMATS)
    item_parser: str = flag("list", "how an answer becomes items: list (numbered, bulleted, quoted or plain lines; "
                            "preambles and notes cut) or quoted (the seed's: every double-quoted span is one item, "
                            "nothing else)", choices=ITEM_PARSERS)
    max_input_tokens: int | None = flag(None, "shorten the real examples until each prompt is at most this many "
                                        "tokens (the seed cut its input to 512; needs a backend that counts "
                                        "tokens: hf or vllm)")
    target_groups: str | None = flag(None, "the identity-group variant: each request (or set of "
                                     "--samples-per-prompt requests) asks for comments aimed at the next group: "
                                     "'capstone' (the seed's 14 groups), a comma-separated list, or a .txt file with "
                                     "one group a line")
    max_requests: int | None = flag(
        None, "stop after this many requests in all (default: 10 x the requests --n needs)"
    )
    batch_size: int = flag(8, "requests per chunk, generated and written together", names=("-b", "--batch-size"))
    template: str = flag(TEMPLATE, "prompt template name or YAML file")
    shard: str | None = flag(
        None,
        "I/N: make the I-th of N parts of --n (and of --max-requests), with request numbers I, I+N, ... so "
        "shards never repeat a request, into synthetic_<label>.shard-I-of-N.jsonl; join them with "
        "`python -m socialsynth merge` (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT)",
        metavar="I/N",
    )
    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs)
    # filters (flag, never drop)
    filters: TextFilters = group(TextFilters)
    embedding_model: str | None = flag("embedded", "for --near-dup ('none' = skip)", convert=none_word)
    keep_flagged: bool = flag(False, "count every parsed item as passing (its flags are still recorded): the seed "
                              "kept every quoted comment it parsed")
    fidelity_model: Path | None = flag(
        None,
        "classifier folder from train_classifier.py: flag items it gives the target label a probability below "
        "--fidelity-threshold",
    )
    ladder: LadderArgs = group(LadderArgs)
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        self._check_values()
        self._check_mode()
        _check_exists(self, ("input", "definition_file", "fidelity_model"))
        self._check_definition()

    def _check_values(self) -> None:
        for name in ("n",):
            check_min(self, name, 0)
        for name in ("examples_per_prompt", "per_call", "max_requests", "batch_size", "samples_per_prompt",
                     "max_input_tokens"):
            check_min(self, name, 1)
        check_choice(self, "prompt_format", PROMPT_FORMATS)
        check_choice(self, "item_parser", ITEM_PARSERS)
        if self.target_groups is not None:
            try:
                self.groups()
            except InputError as e:
                raise ConfigError("target_groups", f"{e.path}: {e.message}" if e.path else e.message) from None
        for name in ("target_label", "text_col", "label_col", "template"):
            if not str(getattr(self, name)).strip():
                raise ConfigError(name, "must not be empty")
        if self.embedding_model is not None and not str(self.embedding_model).strip():
            raise ConfigError("embedding_model", "must not be empty (use 'none' to skip the near-duplicate check)")
        if self.generate and self.embedding_model and missing_folder(self.embedding_model):
            raise ConfigError("embedding_model", f"no such model folder: {self.embedding_model}")
        if self.generate and missing_folder(self.model.model) and self.model.backend != "openai":
            raise ConfigError("model", f"no such model folder: {self.model.model}")
        _check_finite(self, self.sampling, self.model, self.filters)
        check_range(self.sampling, "seed", 0, MAX_SEED)
        if self.generate:
            try:
                load_template(self.template)
            except InputError as e:
                raise ConfigError("template", str(e)) from None

    def _check_mode(self) -> None:
        rates = self.ladder.positive_rates
        if not self.generate and self.ladder.synthetic is None:
            raise ConfigError("n", "give --n N (examples to generate) or --synthetic FILE with --positive-rates")
        if not self.generate and rates is None:
            raise ConfigError("synthetic", "--synthetic is used by the ladder: add --positive-rates")
        if self.source is None:
            raise ConfigError("input", "give --input FILE (or --train/--val/--test for the ladder)")
        if self.generate and self.ladder.synthetic is not None:
            raise ConfigError("synthetic", "--synthetic replaces generation: leave out --n (or --synthetic to build "
                              "the ladder on what this run generates)")
        if self.parsed_shard() is not None and rates is not None:
            raise ConfigError(
                "positive_rates",
                "a sharded run only generates (add --positive-rates none): merge the shards, then run the ladder "
                "once with --synthetic MERGED",
            )

    def _check_definition(self) -> None:
        """The definition a generating run shows in every prompt: --definition, else the definitions file's entry
        for --label-name (default: the target label); refused here, before any data or model is read."""
        if not self.generate:
            return
        if self.definition is not None and not self.definition.strip():
            raise ConfigError("definition", "must not be empty")
        if self.definition:
            return
        if self.definition_file is None:
            raise ConfigError("definition", "give --definition TEXT or --definition-file FILE (no bundled "
                              "data/label_definitions.yaml here)")
        self.definition_text()

    def definition_text(self) -> str:
        """The label's definition (InputError naming the file and the flag when it cannot be had)."""
        from socialsynth.classify.labels import label_key
        from socialsynth.jobs.augment.text import load_definition

        return load_definition(self.definition, self.definition_file, self.label_name or label_key(self.target_label))

    # ------------------------------------------------------------------ derived values

    def groups(self) -> list[str]:
        """The --target-groups in order ([] without the variant); InputError for a file or list without a group."""
        from socialsynth.jobs.augment.text import parse_groups

        return parse_groups(self.target_groups)

    @property
    def generate(self) -> bool:
        """Whether this run generates examples (``--n`` above 0)."""
        return self.n is not None and self.n > 0

    @property
    def source(self) -> Path | None:
        """The labelled file generation reads: --input, else the ladder's --train."""
        return self.input or self.ladder.train

    @property
    def engine(self):
        """The BackendSpec of the model flags."""
        return self.model.spec(seed=self.sampling.seed)

    @property
    def params(self):
        """The GenerationParams of the sampling flags."""
        return self.sampling.params()

    def parsed_shard(self) -> tuple[int, int] | None:
        """(I, N) of a sharded generation run (--shard, or the SLURM array), or None (also when not generating)."""
        if not self.generate:
            return None
        from socialsynth.core.io import parse_shard

        try:
            return parse_shard(self.shard)
        except InputError as e:
            raise ConfigError("shard", e.message) from None

    def ladder_config(self):
        """The LadderConfig of the ladder flags (None without --positive-rates)."""
        from socialsynth.jobs.augment.ladder import LadderConfig

        lad = self.ladder
        if lad.positive_rates is None:
            return None
        return LadderConfig(
            output_dir=self.output_dir,
            target_label=self.target_label,
            rates=list(lad.positive_rates),
            input=self.input if lad.train is None else None,
            train=lad.train,
            val=lad.val,
            test=lad.test,
            text_col=self.text_col,
            label_col=self.label_col,
            seed=self.sampling.seed,
            strict=lad.strict_rates,
            val_fraction=lad.val_fraction,
            test_fraction=lad.test_fraction,
            skip_bad_rows=self.skip_bad_rows,
            evaluate=lad.evaluate,
            classifier=lad.classifier,
            epochs=lad.epochs,
        )
