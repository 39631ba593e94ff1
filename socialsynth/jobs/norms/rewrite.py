"""Seed 000 (ValueScope) normness distillation: rewrite a comment at each level of one norm dimension,
rate the original and every rewrite, and flag rewrites that fail lexical, content or fluency checks.

Prompt builders and the rating parser are pure functions; `NormRewriter` ties them to a backend.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from socialsynth.llm.base import Backend, Chat, GenerationParams, Unsupported
from socialsynth.prompts import Dimension, Template, load_template
from socialsynth.text.quality import clean_generation, lexical_flags

log = logging.getLogger(__name__)
LEVELS = (1, 2, 3, 4, 5)
RATING_METHODS = ("logits", "likelihood", "generate")
DEFAULT_RATING_TEMPLATES = {"logits": "norm_rating", "likelihood": "norm_likelihood", "generate": "norm_rating"}
# What a rater switches to when its backend cannot do a method (e.g. a server without prompt logprobs).
RATING_FALLBACK = {"likelihood": "logits", "logits": "generate"}


# -- prompts -----------------------------------------------------------------------------------------------
def _fill(text: str, **values) -> str:
    return text.format(**values)


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
    ):
        if method not in RATING_METHODS:
            raise ValueError(f"rating method must be one of {RATING_METHODS}")
        self.backend, self.dim, self.method = backend, dim, method
        self.template = template or load_template(DEFAULT_RATING_TEMPLATES[method])
        self.params = params or GenerationParams(temperature=0.0, max_new_tokens=12)
        self.fallbacks = 0  # generate answers that could not be parsed (defaulted to 3)
        self.requested_method = method
        self.method_notes: list[str] = []  # why the method changed (backend could not do it), for the run's meta

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

    def _rate(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[Rating]:
        if self.method == "likelihood":
            return self._rate_by_likelihood(items)
        chats = [rating_chat(self.dim, self.template, t, c) for t, c in items]
        if self.method == "logits":
            scores = self.backend.score_choices(chats, [str(i) for i in LEVELS])
            return [Rating(s.best + 1, s.expected(LEVELS), s.probs, s.mass) for s in scores]
        out = []
        for comp in self.backend.generate(chats, self.params, keys=keys):
            level, parsed = parse_rating(comp.text, self.dim)
            self.fallbacks += not parsed
            out.append(Rating(level, float(level), parsed=parsed, raw=comp.text))
        return out

    def _rate_by_likelihood(self, items: Sequence[tuple[str, str]]) -> list[Rating]:
        chats = [level_chat(self.dim, self.template, t, lv) for t, _ in items for lv in LEVELS]
        comments = [c for _, c in items for _ in LEVELS]
        loglik = self.backend.score_continuations(chats, comments)
        ratings = []
        for i in range(len(items)):
            row = loglik[i * len(LEVELS) : (i + 1) * len(LEVELS)]
            top = max(row)
            weights = [math.exp(v - top) for v in row]  # a uniform prior over levels
            probs = [w / sum(weights) for w in weights]
            best = max(range(len(LEVELS)), key=probs.__getitem__)
            ratings.append(Rating(best + 1, sum(p * lv for p, lv in zip(probs, LEVELS)), probs))
        return ratings


# -- the rewrite job ----------------------------------------------------------------------------------------
@dataclass
class FilterSettings:
    min_similarity: float = 0.5  # content preservation: cosine to the original (MiniLM)
    max_perplexity: float = 1000.0  # fluency: perplexity of the rewrite under the generating model


@dataclass
class NormRewriter:
    """Rewrite comments at the requested levels, rate originals and rewrites, compute quality flags."""

    backend: Backend
    dim: Dimension
    rater: Rater
    params: GenerationParams
    levels: tuple[int, ...] = LEVELS
    embedder: object | None = None  # socialsynth.text.embeddings.Embedder; None skips the content check
    filters: FilterSettings = field(default_factory=FilterSettings)
    template: Template = field(default_factory=lambda: load_template("norm_rewrite"))

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
        }

    def process(self, rows: Sequence[tuple[int, dict]]) -> list[dict]:
        """Turn (index, comment record) pairs into output records (one per comment, seed fields first)."""
        chats, keys = [], []
        for _, row in rows:
            for level in self.levels:
                chats.append(rewrite_chat(self.dim, self.template, _title(row), row["comment"], level))
                keys.append(f"{row['id']}:{level}")
        completions = self.backend.generate(chats, self.params, keys=keys)
        cleaned = [clean_generation(c.text) for c in completions]

        # Rate originals and rewrites together: one pass over the model.
        to_rate = []
        for _, row in rows:
            to_rate.append((_title(row), row["comment"]))
        for (_, row), start in zip(rows, range(0, len(cleaned), len(self.levels))):
            to_rate.extend((_title(row), cl.text or row["comment"]) for cl in cleaned[start : start + len(self.levels)])
        ratings = self.rater.rate(to_rate, keys=[f"rate:{i}" for i in range(len(to_rate))])
        perplexities = self._perplexities([c.text or " " for c in cleaned])
        originals = [row["comment"] for _, row in rows for _ in self.levels]
        similarity = (
            self.embedder.pair_similarity(originals, [c.text for c in cleaned]).tolist() if self.embedder else None
        )

        provenance = self.provenance()
        records = []
        n = len(self.levels)
        for r, (idx, row) in enumerate(rows):
            orig_rating = ratings[r]
            record = {
                "id": str(row["id"]),
                "idx": idx,
                "original_comment": row["comment"],
                "original_rating": orig_rating.level,
                "original_score": row.get("label", row.get("score")),
                "submission_title": _title(row),
            }
            filters, generation, rewrite_ratings, rewrite_expected = {}, {}, {}, {}
            for j, level in enumerate(self.levels):
                k = r * n + j
                text = cleaned[k].text
                record[str(level)] = text
                rating = ratings[len(rows) + k]
                flags = lexical_flags(text, row["comment"])
                sim = None if similarity is None else round(float(similarity[k]), 4)
                ppl = round(perplexities[k], 2) if text and perplexities[k] is not None else None
                flags["low_similarity"] = sim is not None and sim < self.filters.min_similarity
                flags["disfluent"] = not text or (ppl is not None and ppl > self.filters.max_perplexity)
                flags["truncated"] = completions[k].finish_reason == "length"
                filters[str(level)] = {
                    **flags,
                    "passed": not any(flags.values()),
                    "similarity": sim,
                    "perplexity": ppl,
                    "cut": cleaned[k].notes,
                }
                rewrite_ratings[str(level)] = rating.level if text else None
                rewrite_expected[str(level)] = round(rating.expected, 4) if text else None
                generation[str(level)] = {
                    "finish_reason": completions[k].finish_reason,
                    "new_tokens": completions[k].n_new_tokens,
                    "request_seed": completions[k].seed,
                }
            record["rewrite_ratings"] = rewrite_ratings
            record["rewrite_ratings_expected"] = rewrite_expected
            record["original_rating_detail"] = orig_rating.to_dict()
            record["filters"] = filters
            record["generation"] = generation
            failed = [
                f"level {lv}: {completions[r * n + j].error}"
                for j, lv in enumerate(self.levels)
                if completions[r * n + j].finish_reason == "error"
            ]
            record["status"] = "error" if failed else "ok"
            if failed:
                record["error"] = "; ".join(failed)
            record["provenance"] = provenance
            records.append(record)
        return records

    def _perplexities(self, texts: list[str]) -> list[float | None]:
        """Perplexities for the fluency filter; none when it is off (--max-perplexity 0) or when the backend
        cannot compute them (a server without prompt logprobs: warned once, then the filter stays off)."""
        if self.filters.max_perplexity <= 0:
            return [None] * len(texts)
        try:
            return self.backend.perplexity(texts)
        except Unsupported as e:
            log.warning("fluency filter off: %s", e.message)
            self.filters.max_perplexity = 0.0
            self.rater.method_notes.append(f"fluency filter off: {e.message}")
            return [None] * len(texts)


def _title(row: dict) -> str:
    title = row.get("submission_title")
    return "" if title is None else str(title)
