"""Seed 000 (ValueScope) normness distillation: rewrite a comment at each level of one norm dimension,
rate the original and every rewrite, and flag rewrites that fail lexical, content or fluency checks.

Prompt builders and the rating parser are pure functions; `NormRewriter` ties them to a backend.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from socialsynth.llm.base import Backend, Chat, Completion, GenerationParams, Unsupported
from socialsynth.prompts import Dimension, Template, load_template
from socialsynth.text.quality import Cleaned, clean_generation, lexical_flags

log = logging.getLogger(__name__)
LEVELS = (1, 2, 3, 4, 5)
RATING_METHODS = ("logits", "likelihood", "generate")
DEFAULT_RATING_TEMPLATES = {"logits": "norm_rating", "likelihood": "norm_likelihood", "generate": "norm_rating"}
# What a rater switches to when its backend cannot do a method (e.g. a server without prompt logprobs).
RATING_FALLBACK = {"likelihood": "logits", "logits": "generate"}


# -- prompts -----------------------------------------------------------------------------------------------
def _fill(text: str, **values) -> str:
    return text.format(**values)


# The fields each prompt builder below gives each part of a template (sample values to check a template with).
_RATING_COMMON = {"dimension": "d", "definitions": "1. a: b", "level3_name": "c"}
_LEVEL = {"level": 3, "level_name": "c", "level_rubric": "r"}
TEMPLATE_FIELDS = {
    "rewrite": {"system": {**_RATING_COMMON, **_LEVEL, "title": "t", "comment": "x"}},
    "rating": {"system": _RATING_COMMON, "user": {**_RATING_COMMON, "title": "t", "comment": "x"},
               "assistant": {"level": 3, "level_name": "c"}},
    "likelihood": {"system": {"dimension": "d", **_LEVEL, "title": "t"}},
}
LEVEL_FIELDS = {"level", "level_name", "level_rubric"}


def field_names(text: str) -> list[str]:
    """The names of a format string's {fields}, one per use (ValueError on a broken brace)."""
    return [re.split(r"[.\[]", name, maxsplit=1)[0] for _, name, _, _ in string.Formatter().parse(text)
            if name is not None]


def template_problem(template: Template, use: str) -> str | None:
    """Why ``template`` cannot build the ``use`` prompts ("rewrite", "rating" or "likelihood"), or None: an unknown
    {field} or a broken brace (a crash at the first comment), or no {comment} or no level field (every prompt
    would lack the comment, or be the same at every level)."""
    fields = TEMPLATE_FIELDS[use]
    used: set[str] = set()
    for part in ("system", "user", "assistant"):
        text = getattr(template, part)
        if not text or (part == "assistant" and use != "rating"):
            continue
        values = fields.get(part, fields["system"])
        try:
            used.update(field_names(text))
            text.format(**values)
        except KeyError as e:
            return f"{part}: unknown field {{{e.args[0]}}} (fields: {', '.join(sorted(values))})"
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            return f"{part}: not a valid format string ({e})"
    if use != "likelihood" and "comment" not in used:
        return "no {comment} field: the comment would not be in the prompt"
    if use != "rating" and not used & LEVEL_FIELDS:
        return "no {level}, {level_name} or {level_rubric} field: every level would get the same prompt"
    return None


def _uses(template: Template, name: str, parts: Sequence[str] = ("system", "user")) -> int:
    """How many times the prompt parts of a template insert the field ``name``."""
    return sum(field_names(getattr(template, part)).count(name) for part in parts)


# -- token budget -------------------------------------------------------------------------------------------
TOKEN_MARGIN = 16  # an inserted text may merge with the tokens around it differently than alone


@dataclass(frozen=True)
class PromptCost:
    """The tokens one prompt of a comment holds at once: ``base`` (the prompt with an empty title and comment,
    plus its answer), and how many times the comment's and the title's tokens add to that."""

    base: int
    comments: int
    titles: int

    def tokens(self, n_comment: int, n_title: int) -> int:
        return self.base + self.comments * n_comment + self.titles * n_title


def tokens_over(costs: Sequence[PromptCost], count: Callable[[str], int | None], title: str, comment: str,
                limit: int) -> int | None:
    """The tokens the longest prompt of (title, comment) needs when that is more than ``limit``, else None.

    A token holds at least one byte, so the texts are tokenized only when their byte lengths say they might not
    fit (a 2 MB comment is tokenized once, never put in a prompt)."""
    if not costs:
        return None
    n_comment, n_title = len(comment.encode("utf-8")), len(title.encode("utf-8"))
    if max(c.tokens(n_comment, n_title) for c in costs) + TOKEN_MARGIN <= limit:
        return None
    n_comment, n_title = count(comment) or 0, count(title) or 0
    need = max(c.tokens(n_comment, n_title) for c in costs) + TOKEN_MARGIN
    return need if need > limit else None


def rewrite_chat(dim: Dimension, template: Template, title: str, comment: str, level: int) -> Chat:
    values = dict(
        dimension=dim.name,
        definitions=dim.definitions(),
        title=title or "(no title)",
        comment=comment,
        level=level,
        level_name=dim.levels[level - 1].name,
        level_rubric=dim.levels[level - 1].rubric,
    )
    return [
        {"role": "system", "content": _fill(template.system, **values)},
        {"role": "user", "content": _fill(template.user, **values)},
    ]


def rating_chat(dim: Dimension, template: Template, title: str, comment: str, shots: int | None = None) -> Chat:
    """A rating prompt with the dimension's examples as earlier turns (a 135M judge needs them)."""
    common = dict(dimension=dim.name, definitions=dim.definitions(), level3_name=dim.levels[2].name)
    chat: Chat = [{"role": "system", "content": _fill(template.system, **common)}]
    shots = dim.rating_shots if shots is None else shots
    examples = dim.examples if shots is None else dim.examples[:shots]
    if not template.assistant:  # a template without an answer format takes no examples
        examples = ()
    for ex in examples:
        chat.append(
            {
                "role": "user",
                "content": _fill(template.user, title=ex.title or "(no title)", comment=ex.comment, **common),
            }
        )
        chat.append(
            {
                "role": "assistant",
                "content": _fill(template.assistant, level=ex.level, level_name=dim.levels[ex.level - 1].name),
            }
        )
    chat.append(
        {"role": "user", "content": _fill(template.user, title=title or "(no title)", comment=comment, **common)}
    )
    return chat


def level_chat(dim: Dimension, template: Template, title: str, level: int) -> Chat:
    """The request "write a comment at this level" whose answer's likelihood rates a comment (likelihood method)."""
    lv = dim.levels[level - 1]
    values = dict(dimension=dim.name, level=level, level_name=lv.name, level_rubric=lv.rubric, title=title or "")
    chat: Chat = [{"role": "system", "content": _fill(template.system, **values)}] if template.system else []
    return chat + [{"role": "user", "content": _fill(template.user, **values)}]


# -- ratings ------------------------------------------------------------------------------------------------
@dataclass
class Rating:
    """A 1-5 rating. `expected` is the probability-weighted level (forward-pass method; equals `level`
    for generate-and-parse); `probs` are the level probabilities; `parsed` is False when the generate
    method fell back to the default level 3."""

    level: int
    expected: float
    probs: list[float] | None = None
    mass: float | None = None
    parsed: bool = True
    raw: str | None = None

    def to_dict(self) -> dict:
        out = {"rating": self.level, "expected": round(self.expected, 4)}
        if self.probs is not None:
            out["probs"] = [round(p, 4) for p in self.probs]
            out["mass"] = round(self.mass or 0.0, 4)
        if self.raw is not None:
            out["raw"] = self.raw
            out["parsed"] = self.parsed
        return out


def parse_rating(text: str, dim: Dimension) -> tuple[int, bool]:
    """The seed's parsing rules, in order: a level name anywhere (longest names first, any case) → that
    level; "neutral" or "in-between" → 3; "NO RATING" → 3; a bare digit 1-5 → that digit; else 3 with
    parsed=False so the caller can count the fallback."""
    lowered = text.lower()
    by_length = sorted(enumerate(dim.level_names, 1), key=lambda x: -len(x[1]))
    for level, name in by_length:
        if name.lower() in lowered:
            return level, True
    if "neutral" in lowered or "in-between" in lowered or "in between" in lowered:
        return 3, True
    if "no rating" in lowered:
        return 3, True
    m = re.search(r"(?<![\d.])([1-5])(?!\d|\.\d)", text)  # "4" or "4." but not "4.5" or "10"
    if m:
        return int(m.group(1)), True
    return 3, False


def parse_rating_seed(text: str, dim: Dimension) -> tuple[int, bool]:
    """The research code's parser, in its order: drop "RATING:"; levels 1, 2, 4, 5 by their name anywhere (any
    case) and level 3 by "in-between" or "neutral", checked level by level from 1 up; "NO RATING" (as written) ->
    3; the last word of level 2's and of level 4's name, as written, in the lowercased answer -> 1 and 3 (the
    seed's own quirk: with capitalised names it never matches); the whole answer one number 1-5; else 3 with
    parsed=False."""
    answer = text.strip().replace("RATING:", "").strip()
    lowered = answer.lower()
    names = dim.level_names
    for level, name in enumerate(names, 1):
        if level != 3 and name.lower() in lowered:
            return level, True
        if level == 3 and ("in-between" in lowered or "neutral" in lowered):
            return 3, True
    if "NO RATING" in answer:
        return 3, True
    if len(names) >= 4:
        for name, level in ((names[1], 1), (names[3], 3)):
            if name.split(" ")[-1] in lowered:
                return level, True
    digits = answer.replace(".", "").strip()
    if digits.isascii() and digits.isdigit() and 0 < int(digits) < 6:
        return int(digits), True
    return 3, False


RATING_PARSERS = {"lenient": parse_rating, "seed": parse_rating_seed}


class Rater:
    """Rate comments on one dimension with a backend.

    Methods: `logits`, one forward pass and the probabilities of the answers 1-5 to a rating question;
    `likelihood`, the probability of the comment itself as the answer to "write a comment at level k", one
    teacher-forced pass per level, normalised over the five levels; `generate`, answer in words and parse
    (the research code's method).
    """

    def __init__(
        self,
        backend: Backend,
        dim: Dimension,
        method: str = "logits",
        template: Template | None = None,
        params: GenerationParams | None = None,
        parse: str = "lenient",
    ):
        if method not in RATING_METHODS:
            raise ValueError(f"rating method must be one of {RATING_METHODS}")
        self.parse = RATING_PARSERS[parse]  # how a generated answer becomes a level
        self.backend, self.dim, self.method = backend, dim, method
        self.template = template or load_template(DEFAULT_RATING_TEMPLATES[method])
        self.params = params or GenerationParams(temperature=0.0, max_new_tokens=12)
        self.fallbacks = 0  # generate answers that could not be parsed (defaulted to 3)
        self.requested_method = method
        self.method_notes: list[str] = []  # why the method changed (backend could not do it), for the run's meta
        self._costs: dict = {}  # prompt_costs per (method, template)

    def rate(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[Rating]:
        """Rate (title, comment) pairs. When the backend cannot do the method (`Unsupported`), switch for good to
        the next one (likelihood -> logits -> generate), with a warning and a note in `method_notes`."""
        while True:
            try:
                return self._rate(items, keys)
            except Unsupported as e:
                nxt = RATING_FALLBACK.get(self.method)
                if nxt is None:
                    raise
                note = f"rating method {self.method} not available ({e.message}); using {nxt}"
                log.warning(note)
                self.method_notes.append(note)
                if DEFAULT_RATING_TEMPLATES[nxt] != DEFAULT_RATING_TEMPLATES[self.method]:
                    self.template = load_template(DEFAULT_RATING_TEMPLATES[nxt])
                self.method = nxt

    def prompt_costs(self) -> list[PromptCost] | None:
        """The token costs of rating one comment with the current method (None: the backend cannot count)."""
        key = (self.method, self.template)
        if key not in self._costs:
            self._costs[key] = self._prompt_costs()
        return self._costs[key]

    def _prompt_costs(self) -> list[PromptCost] | None:
        count = self.backend.token_count
        if self.method == "likelihood":  # the comment is the scored continuation of each level's request
            sizes = [count(level_chat(self.dim, self.template, "", lv)) for lv in LEVELS]
            if None in sizes:
                return None
            titles = _uses(self.template, "title")
            return [PromptCost(n + 1, 1, titles) for n in sizes]
        size = count(rating_chat(self.dim, self.template, "", ""))
        if size is None:
            return None
        answer = self.params.max_new_tokens if self.method == "generate" else 0
        return [PromptCost(size + answer, _uses(self.template, "comment", ("user",)),
                           _uses(self.template, "title", ("user",)))]

    def over_context(self, title: str, comment: str, limit: int) -> int | None:
        """The tokens rating (title, comment) needs when that is more than ``limit``, else None."""
        return tokens_over(self.prompt_costs() or [], self.backend.token_count, title, comment, limit)

    def _rate(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[Rating]:
        if self.method == "likelihood":
            return self._rate_by_likelihood(items)
        chats = [rating_chat(self.dim, self.template, t, c) for t, c in items]
        if self.method == "logits":
            scores = self.backend.score_choices(chats, [str(i) for i in LEVELS])
            return [Rating(s.best + 1, s.expected(LEVELS), s.probs, s.mass) for s in scores]
        out = []
        for comp in self.backend.generate(chats, self.params, keys=keys):
            level, parsed = self.parse(comp.text, self.dim)
            self.fallbacks += not parsed
            out.append(Rating(level, float(level), parsed=parsed, raw=comp.text))
        return out

    def _rate_by_likelihood(self, items: Sequence[tuple[str, str]]) -> list[Rating]:
        chats = [level_chat(self.dim, self.template, t, lv) for t, _ in items for lv in LEVELS]
        comments = [c for _, c in items for _ in LEVELS]
        loglik = self.backend.score_continuations(chats, comments)
        ratings = []
        for row in _per_comment(loglik, len(LEVELS)):  # one row of level log-likelihoods per item
            top = max(row)
            weights = [math.exp(v - top) for v in row]  # a uniform prior over levels
            probs = [w / sum(weights) for w in weights]
            best = max(range(len(LEVELS)), key=probs.__getitem__)
            ratings.append(Rating(best + 1, sum(p * lv for p, lv in zip(probs, LEVELS, strict=True)), probs))
        return ratings


# -- the rewrite job ----------------------------------------------------------------------------------------
@dataclass
class RewriteFilters:
    """Thresholds of the quality filters of norm rewrites (content preservation and fluency)."""

    min_similarity: float = 0.5  # content preservation: cosine to the original (MiniLM) or BERTScore F1
    max_perplexity: float = 1000.0  # fluency: perplexity of the rewrite (generating or --fluency-model); 0 = off


@dataclass
class Rewrite:
    """One rewrite of one comment at one level, with everything measured about it."""

    level: int
    completion: Completion
    cleaned: Cleaned
    rating: Rating
    similarity: float | None  # content score against the original; None without a content model
    perplexity: float | None  # under the fluency model; None when the fluency filter is off (nan: undefined)

    @property
    def text(self) -> str:
        return self.cleaned.text

    def flags(self, original: str, filters: RewriteFilters) -> dict:
        """The filter block of this rewrite: lexical flags, content, fluency, truncation, and whether it passed."""
        sim = None if self.similarity is None else round(float(self.similarity), 4)
        ppl = self.perplexity if self.text and self.perplexity is not None else None
        ppl = None if ppl is None or math.isnan(ppl) else round(ppl, 2)  # nan: not measured (a failed request)
        flags = lexical_flags(self.text, original)
        flags["low_similarity"] = sim is not None and sim < filters.min_similarity
        flags["disfluent"] = not self.text or (ppl is not None and ppl > filters.max_perplexity)
        flags["truncated"] = self.completion.finish_reason == "length"
        return {**flags, "passed": not any(flags.values()), "similarity": sim, "perplexity": ppl,
                "cut": self.cleaned.notes}

    def generation(self) -> dict:
        return {
            "finish_reason": self.completion.finish_reason,
            "new_tokens": self.completion.n_new_tokens,
            "request_seed": self.completion.seed,
        }


# -- best of n (--candidates N) -------------------------------------------------------------------------------
DEFAULT_SELECTION_WEIGHT = 0.0
SELECTION_RULE = (
    "candidates that are empty, refused, unchanged, degenerate, echo the instruction, below --min-similarity "
    "{min_similarity:g} in content similarity to the original, cut at --max-new-tokens or failed rank after all "
    "others; then the highest score = -|expected rating - target level| + {weight:g} * content similarity (0 "
    "without a content model), the rating by the selection judge; ties: the lowest k"
)


def candidate_key(comment_id, level: int, k: int) -> str:
    """The request key of candidate k of a comment at a level: "<id>:<level>" for k = 0 (the key, and so the seed, of
    a run without --candidates, whose records stay as they were), "<id>:<level>:<k>" after it. Each candidate gets
    its own seed, and a resumed run draws the same ones."""
    return f"{comment_id}:{level}" if k == 0 else f"{comment_id}:{level}:{k}"


@dataclass
class Candidate:
    """One of the N samples of a comment at one level, with what the selection judge measured about it."""

    k: int
    level: int
    completion: Completion
    cleaned: Cleaned
    rating: Rating  # an empty candidate is rated as its original; that rating is never reported or used
    similarity: float | None
    failed: list[str]  # the checks it fails (see failed_checks); any of them ranks it after every clean candidate
    score: float | None = None  # None: empty, nothing to rate
    kept: bool = False

    @property
    def text(self) -> str:
        return self.cleaned.text

    def to_dict(self) -> dict:
        sim = None if self.similarity is None or math.isnan(self.similarity) else round(float(self.similarity), 4)
        out = {
            "text": self.text,
            "kept": self.kept,
            "rating": round(self.rating.expected, 4) if self.text else None,
            "similarity": sim,
            "selection_score": None if self.score is None else round(self.score, 4),
            "failed_checks": self.failed,
            "finish_reason": self.completion.finish_reason,
            "request_seed": self.completion.seed,
        }
        if self.completion.error:
            out["error"] = self.completion.error
        return out


def failed_checks(completion: Completion, text: str, original: str, similarity: float | None,
                  min_similarity: float) -> list[str]:
    """The checks a candidate fails before any score is looked at: the lexical ones (empty, refusal, unchanged,
    degenerate, instruction echo), content similarity below the content filter's threshold ("low_similarity"), cut
    at the token limit ("truncated") and a failed request ("error").

    Content similarity is a gate (the content filter's own threshold) rather than only a reward: a reward favours
    the candidates that changed least, and without the gate the kept rewrites passed the filters far less often
    (embedded model, 12 demo comments x 5 levels, best of 4: 60 % instead of 82 %)."""
    failed = [name for name, bad in lexical_flags(text, original).items() if bad]
    if similarity is not None and not math.isnan(similarity) and similarity < min_similarity:
        failed.append("low_similarity")
    if completion.finish_reason == "length":
        failed.append("truncated")
    if completion.finish_reason == "error":
        failed.append("error")
    return failed


def selection_score(candidate: Candidate, weight: float) -> float | None:
    """The rule's score (SELECTION_RULE): closeness of the selection judge's expected rating to the target level,
    plus ``weight`` times the content similarity; None for an empty candidate (nothing was rated)."""
    if not candidate.text:
        return None
    sim = candidate.similarity
    content = 0.0 if sim is None or math.isnan(sim) else float(sim)
    return -abs(candidate.rating.expected - candidate.level) + weight * content


def choose_candidate(group: Sequence[Candidate], weight: float) -> Candidate:
    """Score every candidate of one comment and level, mark the one the rule keeps and return it: clean candidates
    first, then the highest score (None last), then the lowest k."""
    for cand in group:
        cand.score = selection_score(cand, weight)
    best = min(group, key=lambda c: (bool(c.failed), c.score is None, -(c.score or 0.0), c.k))
    best.kept = True
    return best


@dataclass
class CommentResult:
    """One input comment, its rating and its rewrites (in the order of the requested levels); with --candidates N
    (N > 1) every level's candidates too, and how the kept one was chosen."""

    idx: int
    row: dict
    rating: Rating
    rewrites: list[Rewrite]
    candidates: list[list[Candidate]] | None = None  # per level, in the order of `rewrites`; None when N = 1
    selection: dict | None = None  # {"judge", "rule", "n", "weight"} when N > 1

    def record(self, filters: RewriteFilters, provenance: dict) -> dict:
        """The output record: the seed's fields first, then one text per level, ratings, filters, generation."""
        row = self.row
        record = {
            "id": str(row["id"]),
            "idx": self.idx,
            "original_comment": row["comment"],
            "original_rating": self.rating.level,
            "original_score": row.get("label", row.get("score")),
            "submission_title": _title(row),
        }
        record.update({str(rw.level): rw.text for rw in self.rewrites})
        record["rewrite_ratings"] = {str(rw.level): rw.rating.level if rw.text else None for rw in self.rewrites}
        record["rewrite_ratings_expected"] = {
            str(rw.level): round(rw.rating.expected, 4) if rw.text else None for rw in self.rewrites
        }
        record["original_rating_detail"] = self.rating.to_dict()
        record["filters"] = {str(rw.level): rw.flags(row["comment"], filters) for rw in self.rewrites}
        record["generation"] = {str(rw.level): rw.generation() for rw in self.rewrites}
        failed = [f"level {rw.level}: {rw.completion.error}" for rw in self.rewrites
                  if rw.completion.finish_reason == "error"]
        record["status"] = "error" if failed else "ok"
        if failed:
            record["error"] = "; ".join(failed)
        if self.candidates is not None:
            record["candidates"] = {str(rw.level): [c.to_dict() for c in group]
                                    for rw, group in zip(self.rewrites, self.candidates, strict=True)}
            record["selection"] = self.selection
        record["provenance"] = provenance
        return record


def _per_comment(values: Sequence, n: int) -> list[list]:
    """A flat list laid out comment by comment (n values each) -> one list per comment."""
    return [list(values[start : start + n]) for start in range(0, len(values), n)]


def _track_nothing(stage: str) -> AbstractContextManager:
    return nullcontext()


@dataclass
class NormRewriter:
    """Rewrite comments at the requested levels, rate originals and rewrites, compute quality flags.

    With ``candidates`` N > 1 each comment gets N samples per level; the rater (the selection judge) rates them all
    in the same call as the originals, and SELECTION_RULE keeps one per level, which is then measured (fluency)
    and reported as that level's rewrite; the record keeps every candidate with its scores.

    ``stage(name)`` wraps each group of backend calls ("rewrite", "rate", "fluency"); the job passes its run
    record's token counter there. When the backend cannot compute perplexities the fluency filter is turned off
    for good by :meth:`turn_off_fluency`, whose note is in ``fluency_off`` (the thresholds are not changed).
    """

    backend: Backend
    dim: Dimension
    rater: Rater
    params: GenerationParams
    levels: tuple[int, ...] = LEVELS
    embedder: object | None = None  # Embedder or BertScorer (pair_similarity); None skips the content check
    filters: RewriteFilters = field(default_factory=RewriteFilters)
    template: Template = field(default_factory=lambda: load_template("norm_rewrite"))
    stage: Callable[[str], AbstractContextManager] = _track_nothing
    fluency_off: str | None = None  # why the fluency filter was turned off during the run, if it was
    fluency: object | None = None  # socialsynth.text.fluency.FluencyScorer; None: the generating model's perplexity
    candidates: int = 1  # --candidates N: samples per comment and level, the selection rule keeps one
    selection_weight: float = DEFAULT_SELECTION_WEIGHT  # w of SELECTION_RULE (content similarity against closeness)
    selection_judge: str | None = None  # the selection judge's name (default: "generator:<model>:<rating method>")
    _costs: dict = field(default_factory=dict, init=False, repr=False)  # prompt_costs per rating method

    def provenance(self) -> dict:
        return {
            **self.backend.describe(),
            "dimension": self.dim.name,
            "dimension_hash": self.dim.fingerprint(),
            "rewrite_template": f"{self.template.name}@{self.template.hash}",
            "rating_template": f"{self.rater.template.name}@{self.rater.template.hash}",
            "rating_method": self.rater.method,
            "sampling": self.params.to_dict(),
            "seed": self.params.seed,
            "embedding_model": getattr(self.embedder, "name", None),
            "content_metric": getattr(self.embedder, "metric", "cosine") if self.embedder else None,
            "fluency_model": getattr(self.fluency, "name", "generator") if self.fluency_on else None,
            "max_perplexity": self.filters.max_perplexity,
            **({"candidates": self.candidates, "selection_judge": self.selection_judge_name}
               if self.candidates > 1 else {}),
        }

    @property
    def selection_judge_name(self) -> str:
        return self.selection_judge or f"generator:{self.backend.name}:{self.rater.method}"

    def selection(self) -> dict:
        """The record's ``selection`` block: who chose, by which rule, among how many."""
        rule = SELECTION_RULE.format(weight=self.selection_weight, min_similarity=self.filters.min_similarity)
        return {"judge": self.selection_judge_name, "rule": rule, "n": self.candidates,
                "weight": self.selection_weight}

    def prompt_costs(self) -> list[PromptCost] | None:
        """The token costs of one comment: its rewrite prompts with their answers, its rating, and the rating of a
        rewrite (at most --max-new-tokens long). None when the backend cannot count tokens."""
        key = (self.rater.method, self.rater.template)
        if key not in self._costs:
            rating = self.rater.prompt_costs()
            sizes = [self.backend.token_count(rewrite_chat(self.dim, self.template, "", "", lv)) for lv in self.levels]
            if rating is None or None in sizes:
                self._costs[key] = None
            else:
                answer = self.params.max_new_tokens
                comments, titles = _uses(self.template, "comment"), _uses(self.template, "title")
                self._costs[key] = [PromptCost(n + answer, comments, titles) for n in sizes] + rating + [
                    PromptCost(c.base + c.comments * answer, 0, c.titles) for c in rating
                ]
        return self._costs[key]

    def over_context(self, row: dict, limit: int) -> int | None:
        """The tokens this comment needs at once (its longest prompt and answer) when more than ``limit``, else
        None (also when the backend cannot count tokens)."""
        return tokens_over(self.prompt_costs() or [], self.backend.token_count, _title(row), row["comment"], limit)

    @property
    def fluency_on(self) -> bool:
        return self.filters.max_perplexity > 0 and self.fluency_off is None

    @property
    def fluency_on_by_rule(self) -> bool:
        """The filter runs but its cut is still to be set from the originals (--fluency-cut mean+sd)."""
        return self.fluency_off is None

    def original_perplexities(self, texts: list[str]) -> list[float]:
        """Perplexities of originals under the fluency model (for a cut relative to them); [] when unsupported."""
        if self.fluency is not None:
            return self.fluency.perplexity(texts)
        try:
            return self.backend.perplexity(texts)
        except Unsupported as e:
            self.turn_off_fluency(e.message)
            return []

    def process(self, rows: Sequence[tuple[int, dict]]) -> list[dict]:
        """Turn (index, comment record) pairs into output records (one per comment, seed fields first)."""
        results = self.run(rows)
        provenance = self.provenance()
        return [result.record(self.filters, provenance) for result in results]

    def run(self, rows: Sequence[tuple[int, dict]]) -> list[CommentResult]:
        """Rewrite (N candidates per level), rate, measure content, keep one candidate per level by the selection
        rule, measure its fluency: one CommentResult per row."""
        completions = self._rewrite(rows)
        cleaned = [clean_generation(c.text) for c in completions]
        original_ratings, candidate_ratings = self._rate(rows, cleaned)
        similarities = self._similarities(rows, cleaned)
        per_level = len(self.levels) * self.candidates
        originals = [row["comment"] for _, row in rows for _ in range(per_level)]
        slots = [(level, k) for _ in rows for level in self.levels for k in range(self.candidates)]  # flat layout
        candidates = [
            Candidate(k, level, completion, clean, rating, sim,
                      failed_checks(completion, clean.text, original, sim, self.filters.min_similarity))
            for (level, k), completion, clean, rating, sim, original in zip(
                slots, completions, cleaned, candidate_ratings, similarities, originals, strict=True
            )
        ]
        groups = _per_comment(candidates, self.candidates)  # one group per comment and level
        kept = [choose_candidate(group, self.selection_weight) for group in groups]
        perplexities = self._perplexities([c.text or " " for c in kept])
        rewrites = [
            Rewrite(level=c.level, completion=c.completion, cleaned=c.cleaned, rating=c.rating, similarity=c.similarity,
                    perplexity=ppl)
            for c, ppl in zip(kept, perplexities, strict=True)
        ]
        several = self.candidates > 1
        return [
            CommentResult(idx=idx, row=row, rating=rating, rewrites=group, candidates=cands if several else None,
                          selection=self.selection() if several else None)
            for (idx, row), rating, group, cands in zip(
                rows, original_ratings, _per_comment(rewrites, len(self.levels)),
                _per_comment(groups, len(self.levels)), strict=True
            )
        ]

    def _rewrite(self, rows: Sequence[tuple[int, dict]]) -> list[Completion]:
        """N requests per comment and level (see candidate_key: per-request seeds survive resumes)."""
        chats, keys = [], []
        for _, row in rows:
            for level in self.levels:
                chat = rewrite_chat(self.dim, self.template, _title(row), row["comment"], level)
                for k in range(self.candidates):
                    chats.append(chat)
                    keys.append(candidate_key(row["id"], level, k))
        with self.stage("rewrite"):
            return self.backend.generate(chats, self.params, keys=keys)

    def _rate(self, rows: Sequence[tuple[int, dict]], cleaned: list[Cleaned]) -> tuple[list[Rating], list[Rating]]:
        """Rate originals and every candidate rewrite together (one call, batched by the backend): (originals,
        rewrites in layout order). An empty rewrite is rated as its original (its rating is not reported)."""
        originals = [(_title(row), row["comment"]) for _, row in rows]
        rewrites = [
            (_title(row), cl.text or row["comment"])
            for (_, row), texts in zip(rows, _per_comment(cleaned, len(self.levels) * self.candidates), strict=True)
            for cl in texts
        ]
        items = originals + rewrites
        with self.stage("rate"):
            ratings = self.rater.rate(items, keys=[f"rate:{i}" for i in range(len(items))])
        return ratings[: len(originals)], ratings[len(originals) :]

    def _similarities(self, rows: Sequence[tuple[int, dict]], cleaned: list[Cleaned]) -> list[float | None]:
        if not self.embedder:
            return [None] * len(cleaned)
        originals = [row["comment"] for _, row in rows for _ in range(len(self.levels) * self.candidates)]
        return self.embedder.pair_similarity(originals, [c.text for c in cleaned]).tolist()

    def _perplexities(self, texts: list[str]) -> list[float | None]:
        """Perplexities for the fluency filter; none when it is off (--max-perplexity 0, or turned off earlier)."""
        if not self.fluency_on:
            return [None] * len(texts)
        if self.fluency is not None:
            return self.fluency.perplexity(texts)
        try:
            with self.stage("fluency"):
                return self.backend.perplexity(texts)
        except Unsupported as e:
            self.turn_off_fluency(e.message)
            return [None] * len(texts)

    def turn_off_fluency(self, reason: str) -> str:
        """The backend cannot compute perplexities (a server without prompt logprobs): no fluency filter for the
        rest of the run. Warns once and returns the note (also kept in ``fluency_off`` for the run record)."""
        log.warning("fluency filter off: %s", reason)
        self.fluency_off = f"fluency filter off: {reason}"
        return self.fluency_off

    @property
    def notes(self) -> list[str]:
        """What changed during the run and why: the rater's method switches, then the fluency filter's."""
        return [*self.rater.method_notes, *([self.fluency_off] if self.fluency_off else [])]


def _title(row: dict) -> str:
    title = row.get("submission_title")
    return "" if title is None else str(title)
