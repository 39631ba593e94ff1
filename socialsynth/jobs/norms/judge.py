"""How well does the rater agree with people? Pairwise human judgements ("which comment is more formal")
against the rater's scores of both comments.

Input schema (as `data/real/valuescope/human_pairwise_labels.csv`): topic, title1, comment1, title2,
comment2 and one column per dimension holding "1" (comment1 is more X), "2", "hard-to-tell" or empty.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import read_records
from socialsynth.core.stats import bootstrap_ci, cohen_kappa, spearman_ci
from socialsynth.jobs.norms.rewrite import Rater
from socialsynth.prompts import known_dimensions, load_dimension

PAIR_COLUMNS = ("comment1", "comment2")
TIE_TOLERANCE = 1e-6  # two expected ratings closer than this are a tie: the judge cannot tell the comments apart
# The groups of the human file that development and tuning may look at (issue 15); the others are reported untouched.
TUNING_TOPICS = ("askscience", "finance")
ENSEMBLE_RULE = ("majority vote of the judges' pair decisions: a judge that rates both comments the same abstains; "
                 "the side with more votes wins; an even vote (or every judge abstaining) is a tie, which is counted "
                 "as a tie and left out of the agreement like a single judge's tie")
TextKey = tuple[str, str]  # (title, comment): what a judge rates


@dataclass
class Agreement:
    agree: int = 0
    disagree: int = 0
    ties: int = 0  # the rater gave both comments the same score
    skipped: int = 0  # no human label, or "hard-to-tell"
    ci: tuple[float | None, float | None] | None = None  # bootstrap interval of `rate` over the labelled pairs

    @property
    def rate(self) -> float | None:
        n = self.agree + self.disagree
        return self.agree / n if n else None

    def to_dict(self) -> dict:
        out = {
            "agreement": None if self.rate is None else round(self.rate, 4),
            "agree": self.agree,
            "disagree": self.disagree,
            "ties": self.ties,
            "skipped": self.skipped,
        }
        if self.ci is not None:
            out["ci95"] = [None if v is None else round(v, 4) for v in self.ci]
        return out


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


def text_key(row: dict, side: int) -> TextKey:
    """The (title, comment) of side 1 or 2 of a pair."""
    return str(row.get(f"title{side}", "") or ""), str(row[f"comment{side}"])


def human_label(row: dict, dim: str) -> str | None:
    """People's decision on a pair: "1" or "2", or None (no label, "hard-to-tell"). A CSV read as numbers gives
    1.0 or 2; both count."""
    label = str(row.get(dim) if row.get(dim) is not None else "").strip()
    label = {"1.0": "1", "2.0": "2"}.get(label, label)
    return label if label in ("1", "2") else None


def pair_topic(row: dict) -> str:
    return str(row.get("topic") or "all")


@dataclass
class JudgeRatings:
    """One judge's expected rating of every distinct text of the pairs, per dimension, and the rating method it
    really used (after any fallback)."""

    name: str
    scores: dict[str, dict[TextKey, float]] = field(default_factory=dict)  # dim -> text -> expected rating
    methods_used: dict[str, str] = field(default_factory=dict)
    method_notes: dict[str, list[str]] = field(default_factory=dict)
    unparsed: dict[str, int] = field(default_factory=dict)  # generate: answers read as no level (rated 3)
    requested_method: str | None = None
    model: dict | str | None = None  # the backend's description


def rate_pair_texts(name: str, rater_for: callable, rows: list[dict], dims: Sequence[str],
                    ratings: JudgeRatings | None = None) -> JudgeRatings:
    """Rate each distinct (title, comment) of ``rows`` once per dimension with ``rater_for(dimension)``."""
    ratings = ratings or JudgeRatings(name)
    texts = list(dict.fromkeys(text_key(r, side) for r in rows for side in (1, 2)))
    for dim_name in dims:
        rater: Rater = rater_for(load_dimension(dim_name))
        rated = rater.rate(texts, keys=[f"judge:{dim_name}:{k}" for k in range(len(texts))])
        ratings.scores[dim_name] = {t: rt.expected for t, rt in zip(texts, rated, strict=True)}
        ratings.methods_used[dim_name] = rater.method  # after any fallback (a backend without logprobs)
        ratings.method_notes[dim_name] = list(rater.method_notes)
        ratings.unparsed[dim_name] = rater.fallbacks
    return ratings


def pair_decisions(scores: dict[TextKey, float], rows: list[dict], tie_tolerance: float = TIE_TOLERANCE) -> list[str]:
    """A judge's decision per pair: "1" (comment1 rated higher), "2", or "tie"."""
    out = []
    for r in rows:
        s1, s2 = scores[text_key(r, 1)], scores[text_key(r, 2)]
        out.append("tie" if abs(s1 - s2) <= tie_tolerance else ("1" if s1 > s2 else "2"))
    return out


def majority_vote(decisions_by_judge: Sequence[Sequence[str]]) -> list[str]:
    """The ensemble's decision per pair by :data:`ENSEMBLE_RULE`."""
    out = []
    for votes in zip(*decisions_by_judge, strict=True):
        count = Counter(v for v in votes if v != "tie")
        out.append("1" if count["1"] > count["2"] else "2" if count["2"] > count["1"] else "tie")
    return out


def _agreement(decisions: Sequence[str], labels: Sequence[str | None], n_boot: int, seed: int) -> Agreement:
    """Counts of one group of pairs, with a bootstrap interval over its labelled pairs when ``n_boot``."""
    counts = Agreement()
    outcome = []  # per labelled pair: 1 agree, 0 disagree, NaN tie (resampled, then left out of the rate)
    for decision, label in zip(decisions, labels, strict=True):
        if label is None:
            counts.skipped += 1
        elif decision == "tie":
            counts.ties += 1
            outcome.append(np.nan)
        elif decision == label:
            counts.agree += 1
            outcome.append(1.0)
        else:
            counts.disagree += 1
            outcome.append(0.0)
    if n_boot:
        values = np.asarray(outcome, dtype=np.float64)

        def rate(idx: np.ndarray) -> float | None:
            sample = values[idx]
            sample = sample[~np.isnan(sample)]
            return float(sample.mean()) if len(sample) else None

        _, low, high = bootstrap_ci(len(values), rate, n_boot=n_boot, seed=seed)
        counts.ci = (low, high)
    return counts


def agreement_by_topic(decisions: Sequence[str], rows: list[dict], dim: str, n_boot: int = 2000,
                       seed: int = 0) -> dict[str, Agreement]:
    """Agreement with people per topic and over all pairs ("all"), ties and skipped pairs counted; with
    ``n_boot`` each with a 95 % bootstrap interval over the topic's labelled pairs."""
    labels = [human_label(r, dim) for r in rows]
    topics = [pair_topic(r) for r in rows]
    out = {}
    for topic in sorted(set(topics) - {"all"}):
        chosen = [i for i, t in enumerate(topics) if t == topic]
        out[topic] = _agreement([decisions[i] for i in chosen], [labels[i] for i in chosen], n_boot, seed)
    out["all"] = _agreement(decisions, labels, n_boot, seed)
    return out


@dataclass
class JudgePairAgreement:
    """How far two judges agree on one dimension: on the pair decisions (1 / 2 / tie) and on the ratings."""

    judges: tuple[str, str]
    pairs: int
    agreement: float | None  # share of pairs with the same decision
    kappa: float | None  # Cohen's kappa on the decisions
    texts: int
    spearman: tuple[float | None, float | None, float | None]  # rho over the distinct texts, 95 % CI

    def to_dict(self) -> dict:
        def r4(v):
            return None if v is None else round(v, 4)

        return {"judges": list(self.judges), "pairs": self.pairs, "agreement": r4(self.agreement),
                "kappa": r4(self.kappa), "texts": self.texts, "spearman": r4(self.spearman[0]),
                "spearman_ci95": [r4(self.spearman[1]), r4(self.spearman[2])]}


def compare_two_judges(a: JudgeRatings, b: JudgeRatings, rows: list[dict], dim: str, n_boot: int = 2000,
                       seed: int = 0) -> JudgePairAgreement:
    """Pairwise agreement and Cohen's kappa of two judges' decisions over every pair (labelled or not), and
    Spearman's rho of their expected ratings over the distinct texts."""
    da, db = pair_decisions(a.scores[dim], rows), pair_decisions(b.scores[dim], rows)
    same = sum(x == y for x, y in zip(da, db, strict=True))
    texts = list(dict.fromkeys(text_key(r, side) for r in rows for side in (1, 2)))
    rho = spearman_ci([a.scores[dim][t] for t in texts], [b.scores[dim][t] for t in texts], n_boot=n_boot, seed=seed)
    return JudgePairAgreement((a.name, b.name), len(rows), same / len(rows) if rows else None,
                              cohen_kappa(da, db), len(texts), rho)


@dataclass
class MultiJudgeReport:
    """Agreement of several judges with people and with each other, per dimension."""

    judges: list[JudgeRatings]
    dims: list[str]
    people: dict[str, dict[str, dict[str, Agreement]]] = field(default_factory=dict)  # judge -> dim -> topic
    ensemble: dict[str, dict[str, Agreement]] | None = None  # dim -> topic; None with a single judge
    between: dict[str, list[JudgePairAgreement]] = field(default_factory=dict)  # dim -> every two judges

    def topics(self) -> list[str]:
        found = {t for by_dim in self.people.values() for by_topic in by_dim.values() for t in by_topic}
        return sorted(found - {"all"}) + ["all"]

    def to_dict(self) -> dict:
        def agreements(by_dim):
            return {d: {t: a.to_dict() for t, a in topics.items()} for d, topics in by_dim.items()}

        return {
            "tuning_topics": [t for t in TUNING_TOPICS if t in self.topics()],
            "judges": [
                {"name": j.name, "model": j.model, "rating_method": j.requested_method,
                 "rating_method_used": j.methods_used, "rating_method_notes": j.method_notes,
                 "unparsed_answers": j.unparsed,
                 "report": agreements(self.people[j.name])}
                for j in self.judges
            ],
            "ensemble": None if self.ensemble is None else {
                "rule": ENSEMBLE_RULE, "judges": [j.name for j in self.judges], "report": agreements(self.ensemble)},
            "between_judges": {d: [p.to_dict() for p in pairs] for d, pairs in self.between.items()},
        }


def compare_judges(judges: list[JudgeRatings], rows: list[dict], dims: Sequence[str], n_boot: int = 2000,
                   seed: int = 0) -> MultiJudgeReport:
    """Every judge against people (with bootstrap CIs), every two judges against each other, and with two or more
    judges their majority-vote ensemble against people."""
    report = MultiJudgeReport(list(judges), list(dims))
    for j in judges:
        report.people[j.name] = {d: agreement_by_topic(pair_decisions(j.scores[d], rows), rows, d, n_boot, seed)
                                 for d in dims}
    if len(judges) > 1:
        report.ensemble = {}
        for d in dims:
            votes = majority_vote([pair_decisions(j.scores[d], rows) for j in judges])
            report.ensemble[d] = agreement_by_topic(votes, rows, d, n_boot, seed)
        for d in dims:
            report.between[d] = [compare_two_judges(a, b, rows, d, n_boot, seed)
                                 for a, b in itertools.combinations(judges, 2)]
    return report


def judge_agreement(
    rater_for: callable, rows: list[dict], dims: Sequence[str], tie_tolerance: float = TIE_TOLERANCE
) -> JudgeReport:
    """`rater_for(dimension) -> Rater`. Each distinct (title, comment) is rated once per dimension."""
    ratings = rate_pair_texts("judge", rater_for, rows, dims)
    report = JudgeReport(methods_used=ratings.methods_used, method_notes=ratings.method_notes)
    for dim_name in dims:
        decided = pair_decisions(ratings.scores[dim_name], rows, tie_tolerance)
        report.by_dimension[dim_name] = agreement_by_topic(decided, rows, dim_name, n_boot=0)
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


def _cell(a: Agreement | None) -> str:
    """"61.2% [52%,70%]": the agreement with its 95 % interval; "-" with no labelled, untied pair."""
    if a is None or a.rate is None:
        return "-"
    if a.ci is None or a.ci[0] is None:
        return f"{a.rate:.1%}"
    return f"{a.rate:.1%} [{a.ci[0]:.0%},{a.ci[1]:.0%}]"


def _agreement_table(title: str, by_dim: dict[str, dict[str, Agreement]], topics: list[str]) -> list[str]:
    """One block: a row per dimension, a column per topic (tuning topics starred), then ties and skips of all."""
    heads = [f"{t}*" if t in TUNING_TOPICS else t for t in topics]
    width = max(20, *(len(h) + 2 for h in heads))  # "100.0% [100%,100%]" and a gap
    header = f"{'dimension':<15}" + "".join(f"{h:>{width}}" for h in heads) + "   ties  skipped"
    lines = [title, header, "-" * len(header)]
    for dim, by_topic in by_dim.items():
        total = by_topic["all"]
        lines.append(f"{dim:<15}" + "".join(f"{_cell(by_topic.get(t)):>{width}}" for t in topics)
                     + f"   {total.ties:>4}  {total.skipped:>7}")
    return lines


def _between_table(report: MultiJudgeReport) -> list[str]:
    """Every two judges per dimension: same decision, Cohen's kappa, Spearman of the ratings with its CI."""
    width = max(len(f"{p.judges[0]} ~ {p.judges[1]}") for pairs in report.between.values() for p in pairs)
    header = (f"{'dimension':<15}{'judges':<{width + 2}}{'same decision':>14}{'kappa':>8}"
              f"{'spearman [95% CI]':>24}{'texts':>7}")
    lines = ["between judges (decisions 1 / 2 / tie on every pair of the file; Spearman on the ratings of every "
             "distinct comment)", header, "-" * len(header)]

    def num(v, fmt="+.3f"):
        return "-" if v is None else format(v, fmt)

    for dim, pairs in report.between.items():
        for p in pairs:
            rho, low, high = p.spearman
            rho_text = num(rho) + ("" if low is None else f" [{low:+.2f},{high:+.2f}]")
            lines.append(f"{dim:<15}{p.judges[0] + ' ~ ' + p.judges[1]:<{width + 2}}"
                         f"{num(p.agreement, '.1%'):>14}{num(p.kappa):>8}{rho_text:>24}{p.texts:>7}")
    return lines


def format_multi_report(report: MultiJudgeReport) -> str:
    """The print-out of --judge-agreement: per judge (and the ensemble) agreement with people per dimension and
    topic with 95 % CIs; then every two judges against each other."""
    topics = report.topics()
    lines = []
    for j in report.judges:
        used = sorted(set(j.methods_used.values()))
        method = f"rating method {', '.join(used)}" + (
            f" (asked {j.requested_method})" if j.requested_method and used != [j.requested_method] else "")
        unparsed = sum(j.unparsed.values())
        if unparsed:
            method += f"; {unparsed} generated answers named no level (rated 3)"
        lines += _agreement_table(f"judge {j.name}: {method}", report.people[j.name], topics) + [""]
    if report.ensemble is not None:
        lines += _agreement_table(f"ensemble of {len(report.judges)} judges (majority vote; its agreement is over the "
                                  "pairs it decides: compare its ties with the judges')", report.ensemble,
                                  topics) + [f"ensemble rule: {ENSEMBLE_RULE}", ""]
        lines += _between_table(report) + [""]
    lines.append("agreement = pairs where the judge's higher rating is the comment people judged more X, over pairs "
                 "with a label and no tie (random = 50%); [95% bootstrap CI over the labelled pairs]; ties and "
                 "skipped (no label or hard-to-tell) are over all topics")
    tuning = [t for t in TUNING_TOPICS if t in topics]
    if tuning:
        lines.append(f"* tuning groups ({', '.join(tuning)}): methods were developed and tuned on these only; the "
                     "other groups are reported untouched")
    return "\n".join(lines)


def sample_pairs(rows: list[dict], per_topic: int | None, seed: int = 0) -> list[dict]:
    """At most ``per_topic`` pairs of each topic, drawn at random with ``seed`` (a quick run with a slow judge keeps
    every topic's figure); the pairs keep their file order. All pairs when ``per_topic`` is None."""
    if not per_topic:
        return rows
    rng = np.random.default_rng(seed)
    by_topic: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_topic.setdefault(pair_topic(r), []).append(i)
    chosen = set()
    for topic in sorted(by_topic):
        idx = by_topic[topic]
        chosen.update(idx if len(idx) <= per_topic else rng.choice(idx, size=per_topic, replace=False).tolist())
    return [r for i, r in enumerate(rows) if i in chosen]
