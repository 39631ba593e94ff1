"""The judges' figures in the normness summary: does each judge see the rewrite ladder rise (mean rating per
target level, Spearman(target level, rating) with a cluster-bootstrap CI, the share of comments rated in the right
order), and how far two judges agree on the rewrites (Spearman, Cohen's kappa on levels). Read from the output's
``ratings`` blocks while :func:`socialsynth.jobs.norms.job.summarise` streams it."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ORDER_RULE = ("a comment's rewrites are in the right order when the judge's expected ratings strictly increase with "
              "the target level; a tie counts as out of order; comments with an unrated rewrite are left out")
CI_RULE = ("95% percentile bootstrap CI resampling comments (a cluster bootstrap: the rewrites of one comment "
           "share its content, so they are not independent)")
MAX_BOOTSTRAP_CELLS = 20_000_000  # resamples x rated rewrites: beyond this the summary draws fewer resamples


def _expected(rating: dict | None) -> float:
    """A rating's expected value, NaN for none (an empty rewrite, a text the judge could not take)."""
    value = rating.get("expected") if isinstance(rating, dict) else None
    return float("nan") if value is None else float(value)


def bootstrap_size(n_cells: int, wanted: int = 2000) -> int:
    """Resamples for a bootstrap over ``n_cells`` rated rewrites: ``wanted`` unless that would take minutes on a
    huge output (then fewer, never under 200)."""
    return max(200, min(wanted, MAX_BOOTSTRAP_CELLS // max(1, n_cells)))


def _rounded(values: np.ndarray) -> list[int]:
    """Expected ratings rounded half up to the nearest level 1-5 (for Cohen's kappa on levels)."""
    return np.clip(np.floor(values + 0.5), 1, 5).astype(int).tolist()


def _ci(values: tuple, places: int = 4) -> dict:
    point, low, high = values
    return {"value": None if point is None else round(point, places),
            "low": None if low is None else round(low, places), "high": None if high is None else round(high, places)}


@dataclass
class LadderRatings:
    """Every judge's expected ratings, comment by comment (original first, then the levels), gathered while the
    summary streams the output; ``summary()`` turns them into the ladder figures per judge and the agreement
    between judges."""

    keys: list[str]
    order: dict[str, None] = field(default_factory=dict)  # judge names, primary first
    rows: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # judge -> id -> [original, levels...]
    methods: dict[str, Counter] = field(default_factory=dict)

    def add(self, rec: dict) -> None:
        for name in rec.get("judges") or ():
            self.order.setdefault(str(name))
        for name, block in (rec.get("ratings") or {}).items():
            if not isinstance(block, dict):
                continue
            self.order.setdefault(name)
            row = [_expected(block.get("original"))] + [_expected(block.get(lv)) for lv in self.keys]
            self.rows.setdefault(name, {})[str(rec["id"])] = row
            self.methods.setdefault(name, Counter())[str(block.get("method"))] += 1

    def summary(self) -> dict | None:
        names = [name for name in self.order if name in self.rows]
        if not names:
            return None
        levels = [int(lv) for lv in self.keys]
        per_judge = {}
        for name in names:
            matrix = np.asarray(list(self.rows[name].values()), dtype=np.float64)
            per_judge[name] = {"methods": dict(self.methods[name]), **ladder_stats(matrix, levels)}
        agreement = [judge_agreement(a, b, self.rows[a], self.rows[b]) for a, b in itertools.combinations(names, 2)]
        return {"per_judge": per_judge, "agreement": agreement, "order_rule": ORDER_RULE, "ci": CI_RULE}


def ladder_stats(matrix: np.ndarray, levels: Sequence[int]) -> dict:
    """Does the rewrite ladder rise, by one judge? ``matrix``: one row per comment, [original, rating at each
    level] (NaN: not rated). Mean rating per target level, Spearman(target level, rating) over all rated rewrites
    with a cluster-bootstrap CI over comments, and the share of comments whose rewrites are in the right order."""
    from socialsynth.core.stats import bootstrap_ci, spearman

    originals, rewrites = matrix[:, 0], matrix[:, 1:]
    target = np.broadcast_to(np.asarray(levels, dtype=np.float64), rewrites.shape)
    rated = ~np.isnan(rewrites)

    def rho(idx: np.ndarray) -> float | None:
        keep = rated[idx]
        return spearman(target[idx][keep], rewrites[idx][keep])

    n_boot = bootstrap_size(int(rated.sum()))
    counts = rated.sum(axis=0)
    means = [round(float(np.nansum(rewrites[:, j]) / counts[j]), 3) if counts[j] else None for j in range(len(levels))]
    complete = rated.all(axis=1)
    in_order = int((np.diff(rewrites[complete], axis=1) > 0).all(axis=1).sum()) if len(levels) > 1 else None
    n_complete = int(complete.sum())
    return {
        "n_comments": int(len(matrix)),
        "n_rewrites": int(rated.sum()),
        "mean_original_rating": round(float(np.nanmean(originals)), 3) if (~np.isnan(originals)).any() else None,
        "mean_rating_by_level": {str(lv): m for lv, m in zip(levels, means, strict=True)},
        "spearman_target_rating": {**_ci(bootstrap_ci(len(matrix), rho, n_boot=n_boot)), "n_boot": n_boot},
        "right_order": {"n": in_order, "of": n_complete,
                        "share": round(in_order / n_complete, 4) if in_order is not None and n_complete else None},
    }


def judge_agreement(a: str, b: str, rows_a: dict[str, list[float]], rows_b: dict[str, list[float]]) -> dict:
    """Two judges' agreement on the rewrites of the comments both rated: Spearman between their expected ratings
    and Cohen's kappa on the levels those round to, each with a cluster-bootstrap CI over comments."""
    from socialsynth.core.stats import bootstrap_ci, cohen_kappa, spearman

    ids = [i for i in rows_a if i in rows_b]
    x = np.asarray([rows_a[i][1:] for i in ids], dtype=np.float64).reshape(len(ids), -1)
    y = np.asarray([rows_b[i][1:] for i in ids], dtype=np.float64).reshape(len(ids), -1)
    both = ~np.isnan(x) & ~np.isnan(y)

    def rho(idx: np.ndarray) -> float | None:
        return spearman(x[idx][both[idx]], y[idx][both[idx]])

    def kappa(idx: np.ndarray) -> float | None:
        return cohen_kappa(_rounded(x[idx][both[idx]]), _rounded(y[idx][both[idx]]))

    n_boot = bootstrap_size(int(both.sum()) * 4)  # kappa is the slower statistic
    return {"judges": [a, b], "n_comments": len(ids), "n_rewrites": int(both.sum()),
            "spearman": _ci(bootstrap_ci(len(ids), rho, n_boot=n_boot)),
            "kappa": _ci(bootstrap_ci(len(ids), kappa, n_boot=n_boot)), "n_boot": n_boot}


def _interval(figure: dict) -> str:
    if figure.get("value") is None:
        return "-"
    if figure.get("low") is None:
        return f"{figure['value']:+.3f}"
    return f"{figure['value']:+.3f} [{figure['low']:+.3f}, {figure['high']:+.3f}]"


def format_judges(judges: dict) -> list[str]:
    """The summary's lines per judge (the primary, which fills the table above, first) and between judges."""
    lines = ["judges (the first is the primary judge, whose ratings the table above shows):"]
    for name, figures in judges["per_judge"].items():
        methods = ", ".join(f"{m} ({n})" if len(figures["methods"]) > 1 else m for m, n in figures["methods"].items())
        by_level = ", ".join(f"{lv}: {'-' if v is None else f'{v:.2f}'}"
                             for lv, v in figures["mean_rating_by_level"].items())
        order = figures["right_order"]
        share = "-" if order["share"] is None else f"{order['share']:.0%}"
        in_order = "- (one level)" if order["n"] is None else f"{order['n']}/{order['of']} comments ({share})"
        lines += [
            f"  {name} (method used: {methods}; {figures['n_comments']} comments, {figures['n_rewrites']} rewrites)",
            f"    mean rating by target level: {by_level}; originals {figures['mean_original_rating']}",
            f"    Spearman(target level, rating): {_interval(figures['spearman_target_rating'])}",
            f"    rewrites in the right order: {in_order}",
        ]
    for pair in judges["agreement"]:
        a, b = pair["judges"]
        lines.append(f"  {a} vs {b} on {pair['n_rewrites']} rewrites: Spearman {_interval(pair['spearman'])}, "
                     f"Cohen's kappa (rounded levels) {_interval(pair['kappa'])}")
    lines.append(f"  [..]: {judges['ci']}")
    lines.append(f"  right order: {judges['order_rule']}")
    return lines
