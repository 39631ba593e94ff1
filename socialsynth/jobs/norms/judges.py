"""Judges of the normness job: which model rates the comments and their rewrites, and how.

A judge is named by a spec, ``BACKEND[:MODEL]:METHOD[,key=value...]`` (``--judge``, repeatable):

    embedded:likelihood                                   # the embedded SmolLM2, likelihood method
    hf:meta-llama/Meta-Llama-3-8B-Instruct:logits         # a Hugging Face model (id or path)
    hf:/path/to/model:logits,quantize=4                   # options after the first comma
    openai:gpt-4o-mini:logits                             # a server: the job's --api-base / --api-key-env

BACKEND is ``embedded`` (no MODEL) or an engine of ``--backend`` (hf, openai, vllm, ...); the judge uses the job's
device, server flags and batch limits. Options: ``template=NAME_OR_FILE`` (rating prompt), ``quantize=4|8`` (hf,
vllm), ``dtype=auto|bf16|fp16|fp32`` (not openai), ``parse=lenient|seed`` (how the generate method reads an
answer). A model id may hold ``/`` and ``:``: the METHOD is the last ``:``-separated part before the options.

Judges exist so that a study does not measure a model grading its own work; they are loaded one after another
(:func:`open_judge` frees each one), never two large models at once. Without ``--judge`` the generator judges,
named by :func:`generator_judge`.
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from socialsynth.jobs.norms.rewrite import RATING_METHODS, RATING_PARSERS, Rater, Rating, template_problem
from socialsynth.llm import BACKENDS
from socialsynth.llm.base import Backend
from socialsynth.llm.embedded import EMBEDDED_NAME

JUDGE_BACKENDS = ("embedded", *BACKENDS)  # embedded: the hf engine with the embedded model
JUDGE_OPTIONS = ("template", "quantize", "dtype", "parse")
JUDGE_DTYPES = ("auto", "bf16", "fp16", "fp32")
GENERATOR = "generator"  # the backend word in the generator's judge name
SPEC_FORMAT = "BACKEND[:MODEL]:METHOD[,key=value...]"


@dataclass(frozen=True)
class JudgeSpec:
    """One judge: backend, model, rating method and its options (see the module docstring)."""

    backend: str
    model: str
    method: str
    template: str | None = None
    quantize: int | None = None
    dtype: str | None = None
    parse: str = "lenient"

    @property
    def name(self) -> str:
        """The canonical spec text, e.g. ``embedded:likelihood`` or ``hf:org/model:logits,quantize=4``: the key of
        this judge's ratings in records and JSON, so two judges that differ in any option get different keys."""
        head = self.backend if self.backend == "embedded" else f"{self.backend}:{self.model}"
        options = [f"{key}={value}" for key, value in (("template", self.template), ("quantize", self.quantize),
                                                         ("dtype", self.dtype)) if value is not None]
        if self.parse != "lenient":
            options.append(f"parse={self.parse}")
        return ",".join([f"{head}:{self.method}", *options])

    @property
    def slug(self) -> str:
        """The name as a file-name part: odd characters (``/``, ``:``, ``,``) become ``_``, and then a short hash
        of the name keeps two judges apart whose names differ only there (``hf:a/b`` and ``hf:a_b``)."""
        import hashlib

        readable = "".join(c if c.isalnum() or c in "-.=" else "_" for c in self.name)
        if readable == self.name:
            return readable
        return f"{readable}-{hashlib.sha1(self.name.encode('utf-8')).hexdigest()[:8]}"

    def fields(self) -> dict:
        """The spec's fields, for the run record."""
        return {"backend": self.backend, "model": self.model, "method": self.method, "template": self.template,
                "quantize": self.quantize, "dtype": self.dtype, "parse": self.parse}


def parse_judge_spec(text: str) -> JudgeSpec:
    """``BACKEND[:MODEL]:METHOD[,key=value...]`` -> JudgeSpec; ValueError with a one-line reason for bad text (an
    unknown backend, method or option, a missing model, a template that cannot build the method's prompts)."""
    raw = str(text).strip()
    if not raw:
        raise ValueError(f"empty judge spec; expected {SPEC_FORMAT}, e.g. embedded:likelihood")
    head, _, tail = raw.partition(",")
    parts = head.split(":")
    backend = parts[0].strip().lower()
    if backend not in JUDGE_BACKENDS:
        raise ValueError(f"{raw!r}: unknown backend {parts[0]!r}; expected one of {', '.join(JUDGE_BACKENDS)} "
                         f"({SPEC_FORMAT})")
    if len(parts) < 2:
        raise ValueError(f"{raw!r}: no rating method; expected {SPEC_FORMAT}, e.g. {backend}:"
                         f"{'' if backend == 'embedded' else 'MODEL:'}likelihood")
    method = parts[-1].strip().lower()
    if method not in RATING_METHODS:
        raise ValueError(f"{raw!r}: unknown rating method {parts[-1]!r}; expected one of {', '.join(RATING_METHODS)}")
    model = ":".join(parts[1:-1]).strip()
    if backend == "embedded":
        if model and model != EMBEDDED_NAME:
            raise ValueError(f"{raw!r}: the embedded backend takes no model (write embedded:{method}, or "
                             f"hf:{model}:{method} for another model)")
        model = EMBEDDED_NAME
    elif not model:
        raise ValueError(f"{raw!r}: backend {backend} needs a model: {backend}:MODEL:{method}")
    spec = JudgeSpec(backend, model, method, **_options(raw, backend, tail))
    problem = _template_problem(spec)
    if problem:
        raise ValueError(f"{raw!r}: {problem}")
    return spec


def _options(raw: str, backend: str, tail: str) -> dict:
    """The ``key=value`` options after the first comma, checked (ValueError naming the bad one)."""
    options: dict = {}
    for item in (part.strip() for part in tail.split(",")) if tail.strip() else ():
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in JUDGE_OPTIONS or not value:
            known = ", ".join(k + "=..." for k in JUDGE_OPTIONS)
            raise ValueError(f"{raw!r}: bad option {item!r}; options are {known}")
        if key in options:
            raise ValueError(f"{raw!r}: option {key} given twice")
        options[key] = value
    if "quantize" in options:
        if backend not in ("hf", "vllm"):
            raise ValueError(f"{raw!r}: quantize applies to hf and vllm judges only")
        if options["quantize"] not in ("4", "8"):
            raise ValueError(f"{raw!r}: quantize must be 4 or 8, got {options['quantize']!r}")
        options["quantize"] = int(options["quantize"])
    if "dtype" in options:
        if backend == "openai":
            raise ValueError(f"{raw!r}: dtype does not apply to an openai judge (the server chooses)")
        if options["dtype"].lower() not in JUDGE_DTYPES:
            raise ValueError(f"{raw!r}: dtype must be one of {', '.join(JUDGE_DTYPES)}, got {options['dtype']!r}")
        options["dtype"] = options["dtype"].lower()
    if "parse" in options:
        options["parse"] = options["parse"].lower()
        if options["parse"] not in RATING_PARSERS:
            raise ValueError(f"{raw!r}: parse must be one of {', '.join(RATING_PARSERS)}, got {options['parse']!r}")
    return options


def _template_problem(spec: JudgeSpec) -> str | None:
    """Why the spec's template cannot rate with its method (it does not load, or lacks a field), or None."""
    if spec.template is None:
        return None
    from socialsynth.core.errors import InputError
    from socialsynth.prompts import load_template

    try:
        template = load_template(spec.template)
    except InputError as e:
        return f"template: {e}"
    except OSError as e:
        return f"template {spec.template}: cannot read it ({e.strerror or e})"
    problem = template_problem(template, "likelihood" if spec.method == "likelihood" else "rating")
    return f"template {template.name!r} cannot build the {spec.method} prompts: {problem}" if problem else None


def generator_judge(cfg) -> JudgeSpec:
    """The generator as a judge (no ``--judge``): its model, the job's --rating-method, --rating-template and
    --rating-parse. Its name starts with ``generator:`` (e.g. ``generator:embedded:likelihood``) so a record says
    that the model judged its own rewrites."""
    return JudgeSpec(GENERATOR, str(cfg.model.model), cfg.rating_method, template=cfg.rating_template,
                     parse=cfg.rating_parse)


def backend_spec(spec: JudgeSpec, cfg):
    """The BackendSpec that loads this judge: the job's device, server flags and batch limits; the judge's own
    model, quantization and dtype (the job's --dtype when the spec gives none)."""
    base = cfg.engine()
    if spec.backend == GENERATOR:
        return base
    backend = "hf" if spec.backend == "embedded" else spec.backend
    return replace(base, backend=backend, model=spec.model, quantization=spec.quantize,
                   dtype=spec.dtype or cfg.model.dtype)


@contextmanager
def open_judge(spec: JudgeSpec, cfg) -> Iterator[Backend]:
    """Load the judge's backend for the block; at exit drop it and give its memory back (garbage collection and
    the CUDA cache), so the next judge does not load beside it. Callers must not keep references to it (or to
    raters holding it) past the block."""
    holder = [backend_spec(spec, cfg).load()]
    try:
        yield holder[0]
    finally:
        holder.clear()
        free_memory()


def free_memory() -> None:
    """Collect garbage and empty the CUDA cache (when torch is loaded and has a GPU): a freed model's memory goes
    back before the next one loads."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def judge_rater(spec: JudgeSpec, backend: Backend, dim, cfg) -> Rater:
    """A Rater for one dimension with the spec's method, template and parser; generated ratings sample as the
    job's --rating-sampling says (greedy, or the rewrites' settings)."""
    from socialsynth.prompts import load_template

    template = load_template(spec.template) if spec.template else None
    params = cfg.params() if getattr(cfg, "rating_sampling", "greedy") == "rewrite" else None
    return Rater(backend, dim, spec.method, template, params, parse=spec.parse)


def parse_judges(texts) -> list[JudgeSpec]:
    """Every ``--judge`` spec, in order (ValueError on a bad one or on the same judge twice)."""
    specs = [parse_judge_spec(t) for t in texts or ()]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"judge given twice: {', '.join(twice)}")
    return specs


# -- the judges' ratings in the rewrite job's records ---------------------------------------------------------------
SEED_RATING_FIELDS = ("original_rating", "rewrite_ratings", "rewrite_ratings_expected", "original_rating_detail")


def ratings_path(output: Path, spec: JudgeSpec) -> Path:
    """A judge's side file beside the output, ``<stem>.ratings.<slug>.jsonl``: its ratings keyed by comment id, so
    an interrupted judge resumes where it stopped and the output is rewritten only once every judge is done."""
    output = Path(output)
    return output.with_name(f"{output.stem}.ratings.{spec.slug}.jsonl")


def ratings_block(method: str, original: Rating | None, rewrites: Sequence[tuple[int, Rating | None]]) -> dict:
    """One judge's ratings of one comment as the record keeps them: the method really used, the original's
    rating and each level's (None: an empty rewrite, or a text longer than the judge's context)."""
    block = {"method": method, "original": None if original is None else original.to_dict()}
    block.update({str(level): None if rating is None else rating.to_dict() for level, rating in rewrites})
    return block


def rate_records(rater: Rater, records: Sequence[dict], levels: Sequence[int], name: str,
                 limit: int | None = None) -> list[dict]:
    """A judge's side records for written output records: the original and every non-empty rewrite rated in one
    ``rater.rate`` call (batched by the backend). A text longer than the judge's context (``limit`` tokens) is
    not rated: its rating is None and its key is listed in ``too_long``."""
    items, slots, blocks = [], [], []
    for rec in records:
        title = str(rec.get("submission_title") or "")
        block = {"id": rec["id"], "judge": name, "method": None, "original": None}
        block.update({str(level): None for level in levels})
        for key in ("original", *map(str, levels)):
            text = rec.get("original_comment") if key == "original" else rec.get(key)
            if not text:
                continue
            if limit and rater.over_context(title, str(text), limit):
                block.setdefault("too_long", []).append(key)
                continue
            items.append((title, str(text)))
            slots.append((block, key))
        blocks.append(block)
    ratings = rater.rate(items, keys=[f"judge:{block['id']}:{key}" for block, key in slots]) if items else []
    for (block, key), rating in zip(slots, ratings, strict=True):
        block[key] = rating.to_dict()
    for block in blocks:
        block["method"] = rater.method  # after any fallback during this call
    return blocks


def clear_seed_ratings(record: dict) -> dict:
    """Empty the seed's rating fields of a record the generator did not rate (the judges fill them later)."""
    levels = list(record.get("rewrite_ratings") or {})
    record["original_rating"] = None
    record["rewrite_ratings"] = {lv: None for lv in levels}
    record["rewrite_ratings_expected"] = {lv: None for lv in levels}
    record["original_rating_detail"] = None
    return record


def fill_seed_ratings(record: dict, block: dict) -> dict:
    """The primary judge's ratings into the seed's fields (original_rating, rewrite_ratings, ...), as the seed
    wrote them: the level, and the expected rating rounded to 4 places."""
    levels = list(record.get("rewrite_ratings") or {})
    original = block.get("original")
    record["original_rating"] = None if original is None else original["rating"]
    record["rewrite_ratings"] = {lv: (block.get(lv) or {}).get("rating") for lv in levels}
    record["rewrite_ratings_expected"] = {lv: (block.get(lv) or {}).get("expected") for lv in levels}
    record["original_rating_detail"] = original
    return record


def with_judges(record: dict, judges: Sequence[str], ratings: dict) -> dict:
    """The record with ``judges`` (primary first) and ``ratings`` (those judges' in order, then any other judge's
    kept from before) placed before its provenance, which stays last."""
    provenance = record.pop("provenance", None)
    ordered = {name: ratings[name] for name in judges if name in ratings}
    ordered.update({name: block for name, block in ratings.items() if name not in ordered})
    record["judges"] = list(judges)
    record["ratings"] = ordered
    if provenance is not None:
        record["provenance"] = provenance
    return record


def join_ratings(output: Path, specs: Sequence[JudgeSpec]) -> int:
    """Rewrite the output (atomically) with every judge's side-file ratings joined in; the primary judge (the
    first) fills the seed's rating fields. Ratings a record already holds from other judges are kept. Returns how
    many records lack a rating from some judge (0 once every judge has rated everything)."""
    from socialsynth.core.io import atomic_write_text, iter_jsonl

    names = [spec.name for spec in specs]
    sides = {}
    for spec in specs:
        path = ratings_path(output, spec)
        sides[spec.name] = {str(rec["id"]): rec for _, rec in iter_jsonl(path)} if path.exists() else {}
    lines, missing = [], 0
    for _, record in iter_jsonl(output):
        ratings = dict(record.get("ratings") or {})
        for name in names:
            side = sides[name].get(str(record["id"]))
            if side is None:
                missing += 1
                continue
            ratings[name] = {key: value for key, value in side.items() if key not in ("id", "judge")}
        if names[0] in ratings:
            fill_seed_ratings(record, ratings[names[0]])
        lines.append(json.dumps(with_judges(record, names, ratings), ensure_ascii=False) + "\n")
    atomic_write_text(output, "".join(lines))
    return missing


def methods_used(path: Path) -> dict[str, int]:
    """How many comments a side file's judge rated with each method (one entry unless it fell back part way)."""
    from collections import Counter

    from socialsynth.core.io import iter_jsonl

    if not Path(path).exists():
        return {}
    return dict(Counter(str(rec.get("method")) for _, rec in iter_jsonl(path)))
