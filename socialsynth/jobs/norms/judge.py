"""How well does the rater agree with people? Pairwise human judgements ("which comment is more formal")
against the rater's scores of both comments.

Input schema (as `data/real/valuescope/human_pairwise_labels.csv`): topic, title1, comment1, title2,
comment2 and one column per dimension holding "1" (comment1 is more X), "2", "hard-to-tell" or empty.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from socialsynth.core.errors import InputError
from socialsynth.core.io import read_records
from socialsynth.jobs.norms.rewrite import Rater
from socialsynth.prompts import known_dimensions, load_dimension

PAIR_COLUMNS = ("comment1", "comment2")


@dataclass
class Agreement:
    agree: int = 0
    disagree: int = 0
    ties: int = 0  # the rater gave both comments the same score
    skipped: int = 0  # no human label, or "hard-to-tell"

    @property
    def rate(self) -> float | None:
        n = self.agree + self.disagree
        return self.agree / n if n else None

    def to_dict(self) -> dict:
        return {
            "agreement": None if self.rate is None else round(self.rate, 4),
            "agree": self.agree,
            "disagree": self.disagree,
            "ties": self.ties,
            "skipped": self.skipped,
        }


@dataclass
class JudgeReport:
    by_dimension: dict[str, dict[str, Agreement]] = field(default_factory=dict)  # dim -> topic -> counts
    methods_used: dict[str, str] = field(default_factory=dict)  # dim -> the rating method the judge really used
    method_notes: dict[str, list[str]] = field(default_factory=dict)  # dim -> why it differs from the one asked

    def to_dict(self) -> dict:
        return {d: {t: a.to_dict() for t, a in topics.items()} for d, topics in self.by_dimension.items()}


def load_pairs(path: Path, topics: Sequence[str] | None = None,
               skipped: Counter | None = None) -> tuple[list[dict], list[str]]:
    """The labelled pairs (of ``topics``) and the dimensions with a label column; pairs with an empty comment are
    left out and counted in ``skipped``."""
    data = read_records(path, required=PAIR_COLUMNS, nonempty=PAIR_COLUMNS)
    if skipped is not None:
        skipped.update(data.skipped)
    rows = data.records
    if topics:
        rows = [r for r in rows if str(r.get("topic", "")) in set(topics)]
        if not rows:
            raise InputError(f"no pairs with topic in {list(topics)}", path=path, field="topic")
    if not rows:
        raise InputError("no pair has both comments", path=path)
    dims = [d for d in known_dimensions() if d in rows[0]]
    if not dims:
        raise InputError(f"no dimension columns; expected some of {known_dimensions()}", path=path)
    return rows, dims


def drop_long_pairs(rows: list[dict], dims: Sequence[str], rater_for: callable, limit: int | None,
                    skipped: Counter) -> list[dict]:
    """The pairs whose comments fit in the model's context (``limit`` tokens) with every dimension's rating
    prompt; the others are counted in ``skipped``."""
    if not limit:
        return rows
    raters = [rater_for(load_dimension(d)) for d in dims]
    kept = []
    for r in rows:
        texts = [(str(r.get(f"title{i}", "") or ""), str(r[f"comment{i}"])) for i in (1, 2)]
        if any(rater.over_context(title, comment, limit) for rater in raters for title, comment in texts):
            skipped[f"a comment longer than the model's context ({limit} tokens)"] += 1
        else:
            kept.append(r)
    return kept


def judge_agreement(
    rater_for: callable, rows: list[dict], dims: Sequence[str], tie_tolerance: float = 1e-6
) -> JudgeReport:
    """`rater_for(dimension) -> Rater`. Each distinct (title, comment) is rated once per dimension."""
    report = JudgeReport()
    for dim_name in dims:
        rater: Rater = rater_for(load_dimension(dim_name))
        texts = list(
            dict.fromkeys((str(r.get(f"title{i}", "") or ""), str(r[f"comment{i}"])) for r in rows for i in (1, 2))
        )
        ratings = rater.rate(texts, keys=[f"judge:{dim_name}:{k}" for k in range(len(texts))])
        score = {t: rt.expected for t, rt in zip(texts, ratings, strict=True)}
        counts: dict[str, Agreement] = defaultdict(Agreement)
        for r in rows:
            label = str(r.get(dim_name) or "").strip()
            topic = str(r.get("topic") or "all")
            for bucket in (counts[topic], counts["all"]) if topic != "all" else (counts["all"],):
                if label not in ("1", "2"):
                    bucket.skipped += 1
                    continue
                s1 = score[(str(r.get("title1", "") or ""), str(r["comment1"]))]
                s2 = score[(str(r.get("title2", "") or ""), str(r["comment2"]))]
                if abs(s1 - s2) <= tie_tolerance:
                    bucket.ties += 1
                elif (s1 > s2) == (label == "1"):
                    bucket.agree += 1
                else:
                    bucket.disagree += 1
        report.by_dimension[dim_name] = dict(counts)
        report.methods_used[dim_name] = rater.method  # after any fallback (a backend without logprobs)
        report.method_notes[dim_name] = list(rater.method_notes)
    return report


def format_report(report: JudgeReport) -> str:
    topics = sorted({t for d in report.by_dimension.values() for t in d if t != "all"}) + ["all"]
    header = f"{'dimension':<15}" + "".join(f"{t:>12}" for t in topics) + "   ties  skipped"
    lines = [header, "-" * len(header)]
    for dim, by_topic in report.by_dimension.items():
        cells = []
        for t in topics:
            a = by_topic.get(t)
            cells.append(f"{'-' if not a or a.rate is None else f'{a.rate:.1%}':>12}")
        total = by_topic["all"]
        lines.append(f"{dim:<15}" + "".join(cells) + f"   {total.ties:>4}  {total.skipped:>7}")
    lines.append(
        "agreement = pairs where the rater's higher score is the comment people judged more X, "
        "over pairs with a label and no tie (random = 50%)"
    )
    return "\n".join(lines)
