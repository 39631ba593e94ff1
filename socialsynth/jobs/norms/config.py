"""The settings of the normness job (`generate_synthetic_data.py`, `socialsynth norms`): one declared config.

Two modes share it: the rewrite job (``-r SUBREDDIT -n DIMENSION``: rewrite, rate and filter every comment) and
``--judge-agreement FILE`` (rate both comments of human-labelled pairs and report agreement). Every flag keeps the
research code's spelling; a bad value is one line naming the flag (exit 2) before any model loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from socialsynth.core.config import (
    ConfigError,
    RangeArgs,
    check_choice,
    check_min,
    check_output_folder,
    check_range,
    comma_list,
    default_dir,
    flag,
    group,
    overwrite_flag,
    report_flag,
)
from socialsynth.core.errors import InputError
from socialsynth.llm.args import ModelArgs, SamplingArgs
from socialsynth.prompts import known_dimensions, load_dimension, load_template

LEVELS = (1, 2, 3, 4, 5)
MAX_SEED = 2**31 - 1  # numpy and torch take seeds below 2**32; each request's seed derives from the job seed
RATING_METHODS = ("likelihood", "logits", "generate")
RATING_PARSERS = ("lenient", "seed")
RATING_SAMPLING = ("greedy", "rewrite")
CONTENT_METRICS = ("cosine", "bertscore")
MEAN_SD = "mean+sd"


def level_list(text: str) -> tuple[int, ...]:
    """'1,5' -> (1, 5), sorted and without repeats (ValueError on anything that is not a whole number)."""
    try:
        return tuple(sorted({int(part) for part in comma_list(text)}))
    except ValueError:
        raise ValueError(f"expected comma-separated levels like 1,5, got {text!r}") from None


def model_or_none(text: str) -> str | None:
    """'none' -> None (skip the step), anything else as given."""
    return None if str(text).strip().lower() == "none" else str(text)


@dataclass
class NormsConfig:
    """Normness distillation (ValueScope): rewrite each Reddit comment at levels of one norm dimension with an
    LLM, rate the original and every rewrite, and flag bad rewrites; or, with --judge-agreement, measure how often
    the rater agrees with people."""

    subreddit: str | None = flag(None, "subreddit to rewrite; reads <data_dir>/<subreddit>.jsonl|.csv|.parquet "
                                 "(required unless --judge-agreement)", names=("-r", "--subreddit"))
    norm_dimension: str | None = flag(None, f"dimension to vary: {', '.join(known_dimensions())}, or a YAML file "
                                      "defining one (required unless --judge-agreement)",
                                      names=("-n", "--norm_dimension"))
    data_dir: Path = flag(help="folder of processed comment files", names=("-d", "--data_dir"),
                          default_factory=lambda: default_dir("data"))
    output_dir: Path = flag(help="folder the outputs go to", names=("-o", "--output_dir"),
                            default_factory=lambda: default_dir("output"))
    upvote_dir: Path | None = flag(None, "upvote-model folder (train_classifier.py --task regression --preset upvote "
                                   "-o DIR): only the ids in its inference_sample_ids.txt are rewritten, and every "
                                   "rewrite gets predicted upvotes and the preference delta (rewrite minus original)",
                                   names=("-u", "--upvote_dir"))
    batch_size: int = flag(16, "comments per chunk: generated together and written together",
                           names=("-b", "--batch_size"))
    sub_batch_size: int = flag(64, "most sequences in one forward batch", names=("-sb", "--sub_batch_size"))
    input: Path | None = flag(None, "read this file instead of <data_dir>/<subreddit>.*")
    allow_pickle: bool = flag(False, "allow the research code's .pkl input (pickle can run code: only for files you "
                              "trust)", names=("--allow-pickle",))
    skip_bad_rows: bool = flag(False, "count and skip malformed input rows instead of stopping at the first",
                               names=("--skip-bad-rows",))
    max_comment_chars: int = flag(10_000, "skip (and count) comments longer than this; 10,000 is Reddit's own limit",
                                  names=("--max-comment-chars",))
    levels: tuple[int, ...] = flag(LEVELS, "target levels to rewrite to, e.g. 1,5", names=("--levels",),
                                   convert=level_list, metavar="LEVELS")
    max_batch_tokens: int = flag(65536, "token budget of one forward batch", names=("--max-batch-tokens",))
    rewrite_template: str = flag("norm_rewrite", "rewrite prompt: norm_rewrite (compact, for small models), "
                                 "norm_rewrite_full (the research code's prompt with all definitions and the post "
                                 "title), or a YAML file", names=("--rewrite-template",))
    rating_method: str = flag("likelihood", "likelihood: probability of the comment under each level's description "
                              "(5 teacher-forced passes; the embedded model sees style shifts this way); logits: one "
                              "forward pass, probabilities of the answers 1-5 to a rating question; generate: answer "
                              "in words and parse (the research code's way)", names=("--rating-method",),
                              choices=RATING_METHODS)
    rating_template: str | None = flag(None, "rating prompt (default: the method's own): norm_rating (rubric + "
                                       "examples, answer starts with the level digit), norm_likelihood, "
                                       "norm_rating_seed (the research code's prompt, for --rating-method generate), "
                                       "or a YAML file", names=("--rating-template",))
    rating_parse: str = flag("lenient", "how --rating-method generate reads an answer: lenient (level names longest "
                             "first, 'in between', a digit anywhere) or seed (the research code's order: level names "
                             "1-5 with 'neutral'/'in-between' for 3, 'NO RATING', the whole answer a digit, else 3)",
                             names=("--rating-parse",), choices=RATING_PARSERS)
    rating_sampling: str = flag("greedy", "sampling of generated ratings: greedy (12 new tokens) or rewrite (the "
                                "rewrites' own settings, as the research code did)", names=("--rating-sampling",),
                                choices=RATING_SAMPLING)
    candidates: int = flag(1, "best of N: sample N rewrites per comment and level and keep one, chosen by the "
                           "selection judge (the generator rating with --rating-method): candidates that are empty, "
                           "refused, unchanged, degenerate, echo the instruction, below --min-similarity, truncated "
                           "or failed rank last; then the highest score = -|expected rating - target level| + W * "
                           "content similarity (--selection-weight W; similarity 0 without a content model); ties: "
                           "the lowest k. Every candidate stays in the record. 1 = one sample, as without the flag",
                           names=("--candidates",), metavar="N")
    selection_weight: float = flag(0.0, "--candidates: weight W of content similarity against closeness to the "
                                   "target level in the selection score (0: similarity only as the --min-similarity "
                                   "gate)", names=("--selection-weight",), metavar="W")
    min_similarity: float = flag(0.5, "flag rewrites whose content score against the original (--content-metric) is "
                                 "below this (content preservation)", names=("--min-similarity",))
    content_metric: str = flag("cosine", "content preservation: cosine (sentence embeddings, --embedding-model) or "
                               "bertscore (BERTScore F1 of token embeddings, --content-model; the research code's "
                               "filter)", names=("--content-metric",), choices=CONTENT_METRICS)
    content_model: str | None = flag(None, "--content-metric bertscore: any Hugging Face encoder id or path "
                                     "(default microsoft/deberta-xlarge-mnli); cosine: a sentence-transformers "
                                     "model (default --embedding-model)", names=("--content-model",))
    content_layer: int | None = flag(None, "bertscore: hidden layer whose token embeddings are matched (default: "
                                     "BERTScore's layer for the models it knows, e.g. 40 for deberta-xlarge-mnli; "
                                     "else the last)", names=("--content-layer",))
    fluency_model: str = flag("generator", "causal LM whose perplexity judges fluency: generator (the generating "
                              "model) or any Hugging Face causal LM id or path (the research code: "
                              "microsoft/DialoGPT-medium)", names=("--fluency-model",))
    fluency_cut: str | None = flag(None, "fluency cut, overriding --max-perplexity: a perplexity, or mean+sd (mean + "
                                   "one standard deviation of the originals' perplexities over the comments this run "
                                   "selects: the research code's rule, about 9,607 there)", names=("--fluency-cut",))
    max_perplexity: float = flag(1000.0, "flag rewrites whose perplexity under the generating model is above this "
                                 "(fluency); 0 = off", names=("--max-perplexity",))
    embedding_model: str | None = flag("embedded", "sentence-transformers model for the content check ('embedded' "
                                       "= all-MiniLM-L6-v2; 'none' = skip)", names=("--embedding-model",),
                                       convert=model_or_none)
    idx_to_id: Path | None = flag(None, "the research code's <subreddit>_idx_to_id.pkl (or a JSON object "
                                  "position -> id): rows without an id get theirs by list position (.pkl needs "
                                  "--allow-pickle)", names=("--idx-to-id",), metavar="FILE")
    filter_originals: bool = flag(False, "-u: rewrite only the originals the upvote model ranks well: per-item "
                                  "pairwise accuracy above --filter-accuracy (the research code's --filter)",
                                  names=("--filter",))
    filter_accuracy: float = flag(0.9, "--filter: keep originals whose per-item pairwise accuracy is above this",
                                  names=("--filter-accuracy",))
    filter_gap: float = flag(0.1, "--filter: pairs count only when their log2 targets differ by at least this",
                             names=("--filter-gap",))
    filter_block: int = flag(5000, "--filter: originals compared with each other at a time, in input order (the "
                             "research code's 5k evaluation batches)", names=("--filter-block",))
    predictions_file: bool = flag(False, "-u: also write <output_dir>/upvote_predictions/predictions_<subreddit>_"
                                  "<dimension>.jsonl as the research code did (<id>-0 original, <id>-1..5 rewrites: "
                                  "comment, upvote_log, upvote)", names=("--predictions-file",))
    judge: list[str] = flag(help="a judge that rates the originals and rewrites instead of the generator: "
                            "BACKEND[:MODEL]:METHOD[,key=value...], BACKEND embedded or an engine of --backend, METHOD "
                            "likelihood|logits|generate, options template=NAME_OR_FILE, quantize=4|8 (hf, vllm), "
                            "dtype=..., parse=lenient|seed; e.g. embedded:likelihood, hf:meta-llama/Meta-Llama-3-8B-"
                            "Instruct:logits,quantize=4, openai:MODEL:logits (the job's --api-base). Repeatable: the "
                            "first is the primary judge (it fills original_rating and rewrite_ratings); each judge is "
                            "loaded after the generator is freed, one at a time. Default: the generator judges",
                            names=("--judge",), append=True, metavar="SPEC", default_factory=list)
    judge_agreement: Path | None = flag(None, "rate both comments of each human-labelled pair and report agreement "
                                        "per dimension", names=("--judge-agreement",), metavar="FILE")
    judge_topics: list[str] | None = flag(None, "only pairs of these topics, e.g. askscience,finance",
                                          names=("--judge-topics",), convert=comma_list)
    max_pairs: int | None = flag(None, "--judge-agreement: at most N pairs of each topic, drawn at random with --seed "
                                 "(a quick run with a slow judge)", names=("--max-pairs",), metavar="N")
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()
    range: RangeArgs = group(RangeArgs)
    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs)
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        self.levels = tuple(self.levels)
        self._check_counts()
        check_choice(self, "rating_method", RATING_METHODS)
        check_range(self, "min_similarity", -1, 1)
        check_min(self, "max_perplexity", 0)
        check_choice(self, "rating_parse", RATING_PARSERS)
        check_choice(self, "rating_sampling", RATING_SAMPLING)
        self._check_candidates()
        check_choice(self, "content_metric", CONTENT_METRICS)
        self._check_filters()
        if not self.levels or any(level not in LEVELS for level in self.levels):
            raise ConfigError("levels", f"levels must be among 1-5, got {list(self.levels)}")
        if self.embedding_model is not None and not self.embedding_model.strip():
            raise ConfigError("embedding_model", "must not be empty (use 'none' to skip the content check)")
        self._check_templates()
        self._check_judges()
        check_min(self, "max_pairs", 1)
        self._check_mode()
        self._check_places()

    def _check_filters(self) -> None:
        """The fluency cut, the content and fluency models, the --filter settings, the idx_to_id map."""
        if self.fluency_cut is not None:
            self.fluency_cut = str(self.fluency_cut).strip().lower().replace(" ", "")
            if self.fluency_cut != MEAN_SD:
                try:
                    cut = float(self.fluency_cut)
                except ValueError:
                    raise ConfigError("fluency_cut",
                                      f"expected a perplexity or {MEAN_SD}, got {self.fluency_cut!r}") from None
                if not math.isfinite(cut) or cut < 0:
                    raise ConfigError("fluency_cut", f"must be a finite perplexity >= 0, got {self.fluency_cut}")
        for name in ("fluency_model", "content_model"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(name, "must not be empty")
        if self.content_layer is not None:
            check_min(self, "content_layer", 0)
        check_range(self, "filter_accuracy", 0, 1)
        check_min(self, "filter_gap", 0)
        check_min(self, "filter_block", 2)
        if self.idx_to_id is not None:
            path = Path(self.idx_to_id)
            if not path.is_file():
                raise ConfigError("idx_to_id", f"no such file: {path}")
            if path.suffix == ".pkl" and not self.allow_pickle:
                raise ConfigError("idx_to_id", f"{path}: pickle can run code; pass --allow-pickle to read it")

    def _check_candidates(self) -> None:
        """--candidates N is a whole number >= 1 and, above 1, needs sampling (greedy decoding gives N copies)."""
        check_min(self, "candidates", 1)
        check_min(self, "selection_weight", 0)
        if self.candidates > 1 and self.sampling.temperature == 0:
            raise ConfigError("candidates", f"{self.candidates} candidates need sampling: with --temperature 0 "
                              "(greedy) all of them are the same text")

    @property
    def fluency_number(self) -> float | None:
        """The fixed perplexity cut (--fluency-cut NUMBER, else --max-perplexity); None for mean+sd."""
        if self.fluency_cut == MEAN_SD:
            return None
        return float(self.fluency_cut) if self.fluency_cut is not None else self.max_perplexity

    def _check_templates(self) -> None:
        """Each template loads and fills the prompts it is used for (a bad {field} would crash at the first comment)."""
        from socialsynth.jobs.norms.rewrite import template_problem

        uses = {"rewrite_template": "rewrite",
                "rating_template": "likelihood" if self.rating_method == "likelihood" else "rating"}
        for name, use in uses.items():
            if getattr(self, name) is not None:
                template = _check_loads(self, name, load_template)
                problem = template_problem(template, use)
                if problem:
                    raise ConfigError(name, f"template {template.name!r} cannot build the {use} prompts: {problem}")

    def _check_judges(self) -> None:
        """Every --judge spec parses (its template builds its method's prompts); an openai judge has a server."""
        from socialsynth.jobs.norms.judges import parse_judges

        self.judge = [str(text).strip() for text in self.judge or ()]
        try:
            specs = parse_judges(self.judge)
        except ValueError as e:
            raise ConfigError("judge", str(e)) from None
        if any(spec.backend == "openai" for spec in specs) and not self.model.api_base:
            raise ConfigError("judge", "an openai judge needs the server's URL: --api-base http://HOST:PORT/v1 (or "
                              "set OPENAI_BASE_URL)")

    @property
    def judge_specs(self):
        """The parsed --judge specs, in order (empty: the generator judges)."""
        from socialsynth.jobs.norms.judges import parse_judges

        return parse_judges(self.judge)

    def _check_places(self) -> None:
        """Names that become file names stay inside the output folder, and the folders are folders."""
        if self.subreddit is not None:
            check_file_name(self, "subreddit", self.subreddit)
        if self.norm_dimension is not None:
            dim = load_dimension(self.norm_dimension)
            problem = file_name_problem(dim.name)
            if problem:
                raise ConfigError("norm_dimension", f"{dim.source}: dimension name {dim.name!r} {problem}")
        data = Path(self.data_dir)
        if self.input is None and self.judge_agreement is None and data.exists() and not data.is_dir():
            raise ConfigError("data_dir", f"{data} is a file, not a folder (give a file with --input)")
        check_output_folder(self, "output_dir")

    def _check_mode(self) -> None:
        if self.judge_agreement is not None:
            if not Path(self.judge_agreement).is_file():
                raise ConfigError("judge_agreement", f"no such file: {self.judge_agreement}")
        elif not self.subreddit or not self.norm_dimension:
            missing = "subreddit" if not self.subreddit else "norm_dimension"
            raise ConfigError(missing, "-r/--subreddit and -n/--norm_dimension are required (unless "
                              "--judge-agreement)")
        if self.norm_dimension is not None:
            _check_loads(self, "norm_dimension", load_dimension)
        if self.input is not None and not Path(self.input).is_file():
            raise ConfigError("input", f"no such file: {self.input}")
        if self.upvote_dir is not None and not Path(self.upvote_dir).is_dir():
            raise ConfigError("upvote_dir", f"no such folder: {self.upvote_dir}")
        if self.filter_originals and self.upvote_dir is None and self.judge_agreement is None:
            raise ConfigError("filter_originals", "--filter needs the upvote model: -u/--upvote_dir DIR")

    def _check_counts(self) -> None:
        for name in ("batch_size", "sub_batch_size", "max_batch_tokens", "max_comment_chars"):
            check_min(self, name, 1)
        for part in (self, self.sampling, self.model):  # nan passes every comparison; inf is no setting either
            for f in fields(part):
                value = getattr(part, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f.name, f"must be a finite number, got {value}")
        check_range(self.sampling, "seed", 0, MAX_SEED)

    # ------------------------------------------------------------------ derived values

    @property
    def shard(self) -> tuple[int, int] | None:
        """(I, N) from --shard or the SLURM array environment, or None."""
        return self.range.parsed_shard()

    def engine(self):
        """The BackendSpec: -m and the model group, the job seed, and -sb / --max-batch-tokens as batch limits."""
        return self.model.spec(seed=self.sampling.seed, max_batch_size=self.sub_batch_size,
                               max_batch_tokens=self.max_batch_tokens)

    def params(self):
        """The GenerationParams of the rewrites."""
        return self.sampling.params()


def _check_loads(cfg: NormsConfig, name: str, load):
    """A dimension or template that does not load is a ConfigError naming its flag (the loader's reason)."""
    value = getattr(cfg, name)
    try:
        return load(value)
    except InputError as e:
        raise ConfigError(name, str(e)) from None
    except OSError as e:  # a folder or an unreadable file named like a YAML file
        raise ConfigError(name, f"{value}: cannot read it ({e.strerror or e})") from None


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be part of an output file name (it would leave the output folder), or None."""
    if not name.strip():
        return "is empty"
    if any(sep in name for sep in ("/", "\\", "\0")) or name in (".", ".."):
        return "must be a plain name, without path separators or '..' (it becomes part of the output file name)"
    return None


def check_file_name(cfg, name: str, value: str) -> None:
    """Raise ConfigError naming the flag when ``value`` cannot be part of an output file name."""
    problem = file_name_problem(value)
    if problem:
        raise ConfigError(name, f"{value!r} {problem}")
