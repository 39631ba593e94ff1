"""The normness run (generate_synthetic_data.py) in the report: the summary by level and the plots at the top, then
one item per comment with the original beside its rewrite at every level.

Each rewrite shows its word-level difference from the original (difflib over words), every judge's rating, its
similarity and preference delta, and its quality flags; a rewrite that fails the filters is outlined. A comment
whose ladder does not rise (the primary judge rates some level no higher than the level below it), whose judges
disagree by a level or more, or whose record failed is marked. The list sorts by the original's rating, the rating
or preference delta at any level, the ladder error, judge disagreement and similarity, and filters by flag, level,
text and the range of the sort key.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from socialsynth.core.outputs import RunOutputs
from socialsynth.report import page
from socialsynth.report.parts import Context, plots, summary_tables

WORD_BREAK = re.compile(r"[ \t\n\r\f\v]+")  # the same split as the page script's
DISAGREEMENT = 1.0  # judges whose ratings of one text differ by this much (in levels) are marked
NOT_RISING = "ladder does not rise"
DISAGREE = "judges disagree"


def words(text: str | None) -> list[str]:
    return [w for w in WORD_BREAK.split(text or "") if w]


def original_matcher(original: str | None) -> difflib.SequenceMatcher:
    """A matcher holding the original's words as its second sequence: difflib indexes that side once, and each
    rewrite of the comment is compared against it (5 rewrites, one index)."""
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(words(original))
    return matcher


def word_diff(matcher: difflib.SequenceMatcher, rewrite: str | None) -> list[list[int]]:
    """difflib's non-equal opcodes between the original's words and the rewrite's, as [i1, i2, j1, j2] with i in
    the original and j in the rewrite (the page draws them: original words struck out, new words marked)."""
    matcher.set_seq1(words(rewrite))
    return [[j1, j2, i1, i2] for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def levels_of(meta: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    configured = (meta.get("config") or {}).get("levels")
    if isinstance(configured, list) and configured:
        return [str(v) for v in configured]
    found = {k for rec in records for k in (rec.get("rewrite_ratings") or {})}
    return sorted(found, key=lambda k: (len(k), k))


def rating_value(rating: Any) -> float | None:
    """A judge's number for one text: its expected rating when it has one, else the rating."""
    if not isinstance(rating, dict):
        return None
    value = rating.get("expected", rating.get("rating"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def judge_ratings(rec: dict[str, Any], levels: list[str], fallback: str) -> dict[str, dict[str, Any]]:
    """judge -> {"original" | level: rating dict or None}: the record's ``ratings`` (several judges), or the seed's
    fields as one judge."""
    ratings = rec.get("ratings")
    if isinstance(ratings, dict) and ratings:
        order = [j for j in rec.get("judges") or [] if j in ratings] + [j for j in ratings if j not in (rec.get(
            "judges") or [])]
        return {j: ratings[j] for j in order if isinstance(ratings[j], dict)}
    detail = rec.get("original_rating_detail") or {}
    plain, expected = rec.get("rewrite_ratings") or {}, rec.get("rewrite_ratings_expected") or {}
    one: dict[str, Any] = {"original": {"rating": rec.get("original_rating"), "expected": detail.get("expected")}}
    for lv in levels:
        one[lv] = {"rating": plain.get(lv), "expected": expected.get(lv)} if plain.get(lv) is not None else None
    return {fallback: one}


def rating_notes(judges: dict[str, dict[str, Any]], key: str) -> tuple[list[str], list[float]]:
    notes, values = [], []
    for judge, ratings in judges.items():
        r = ratings.get(key)
        value = rating_value(r)
        if value is None:
            continue
        values.append(value)
        level = r.get("rating")
        shown = f"{value:.2f}" + (f" (level {level})" if level is not None and level != value else "")
        notes.append(f"{judge}: {shown}" if len(judges) > 1 else f"rating {shown}")
    return notes, values


def level_cell(rec: dict[str, Any], lv: str, judges: dict, matcher) -> tuple[dict[str, Any], float]:
    """The cell of one level and the spread of its judges' ratings."""
    text = rec.get(lv)
    checks = (rec.get("filters") or {}).get(lv) or {}
    flags = [k for k, v in checks.items() if v is True and k != "passed"]
    notes, values = rating_notes(judges, lv)
    if isinstance(checks.get("similarity"), (int, float)):
        notes.append(f"similarity {checks['similarity']:.2f}")
    delta = (rec.get("preference_delta") or {}).get(lv)
    if isinstance(delta, (int, float)):
        notes.append(f"preference delta {delta:+.2f}")
    if checks.get("cut"):
        notes.append("cut: " + ", ".join(map(str, checks["cut"])))
    cell: dict[str, Any] = {"l": lv, "t": text, "n": notes, "f": flags, "b": checks.get("passed") is False}
    if isinstance(text, str):
        cell["d"] = word_diff(matcher, text)
    candidates = (rec.get("candidates") or {}).get(lv)
    if isinstance(candidates, list) and candidates:
        cell["x"] = [candidate_entry(c) for c in candidates if isinstance(c, dict)]
    return cell, (max(values) - min(values) if len(values) > 1 else 0.0)


def candidate_entry(cand: dict[str, Any]) -> dict[str, Any]:
    notes = [f"{name} {page.fmt(cand.get(key))}" for key, name in
             (("rating", "rating"), ("similarity", "similarity"), ("selection_score", "score")) if cand.get(key)
             is not None]
    if cand.get("failed_checks"):
        notes.append("fails: " + ", ".join(map(str, cand["failed_checks"])))
    return {"t": cand.get("text"), "kept": bool(cand.get("kept")), "n": notes}


def record_item(rec: dict[str, Any], levels: list[str], fallback: str) -> dict[str, Any]:
    """One comment: the original and every level, the marks and the sort keys."""
    judges = judge_ratings(rec, levels, fallback)
    primary = next(iter(judges.values()), {})
    notes, orig_values = rating_notes(judges, "original")
    cells = [{"l": "original", "t": rec.get("original_comment"), "n": notes}]
    keys: dict[str, float] = {}
    spread = max(orig_values) - min(orig_values) if len(orig_values) > 1 else 0.0
    ladder = []
    matcher = original_matcher(rec.get("original_comment"))
    for lv in levels:
        cell, cell_spread = level_cell(rec, lv, judges, matcher)
        cells.append(cell)
        spread = max(spread, cell_spread)
        value = rating_value(primary.get(lv))
        if value is not None:
            keys[f"r{lv}"] = round(value, 3)
            ladder.append((lv, value))
        delta = (rec.get("preference_delta") or {}).get(lv)
        if isinstance(delta, (int, float)):
            keys[f"d{lv}"] = round(delta, 3)
    marks = item_marks(rec, ladder, spread, len(judges))
    keys.update(summary_keys(rec, levels, primary, ladder, spread, len(judges)))
    meta_line = " · ".join(x for x in (f"score {rec['original_score']}" if rec.get("original_score") is not None
                                       else "", rec.get("error") or "") if x)
    return {"id": str(rec.get("id")), "t": rec.get("submission_title") or "", "m": meta_line, "f": marks,
            "k": keys, "c": cells}


def item_marks(rec: dict[str, Any], ladder: list[tuple[str, float]], spread: float, n_judges: int) -> list[str]:
    marks = []
    steps = sorted(ladder, key=lambda p: float(p[0]) if p[0].replace(".", "", 1).isdigit() else 0)
    if any(b[1] <= a[1] for a, b in zip(steps, steps[1:], strict=False)):
        marks.append(NOT_RISING)
    if n_judges > 1 and spread >= DISAGREEMENT:
        marks.append(DISAGREE)
    if rec.get("status") not in (None, "ok"):
        marks.append(f"status {rec.get('status')}")
    return marks


def summary_keys(rec, levels, primary, ladder, spread, n_judges) -> dict[str, float]:
    keys: dict[str, float] = {}
    original = rating_value(primary.get("original"))
    if original is not None:
        keys["orig"] = round(original, 3)
    numeric = [(float(lv), v) for lv, v in ladder if lv.replace(".", "", 1).isdigit()]
    if numeric:
        keys["ladder"] = round(sum(abs(v - lv) for lv, v in numeric) / len(numeric), 3)
    if n_judges > 1:
        keys["spread"] = round(spread, 3)
    sims = [f.get("similarity") for f in (rec.get("filters") or {}).values() if isinstance(f, dict)]
    sims = [s for s in sims if isinstance(s, (int, float))]
    if sims:
        keys["sim"] = round(min(sims), 3)
    keys["fails"] = sum(1 for lv in levels if ((rec.get("filters") or {}).get(lv) or {}).get("passed") is False)
    return keys


def sort_options(levels: list[str], items: list[dict[str, Any]]) -> list[dict[str, str]]:
    present = {k for it in items for k in it["k"]}
    options = [("orig", "rating of the original"), ("ladder", "ladder error (mean |rating - level|)"),
               ("spread", "judge disagreement"), ("sim", "lowest similarity"), ("fails", "rewrites failing filters")]
    options += [(f"r{lv}", f"rating at level {lv}") for lv in levels]
    options += [(f"d{lv}", f"preference delta at level {lv}") for lv in levels]
    return [{"key": k, "label": label} for k, label in options if k in present]


def level_table(meta: dict[str, Any], levels: list[str]) -> str:
    """Mean rating, pass rate and preference delta (with its 95% interval) per level, with the level's name."""
    summary = meta.get("summary") or {}
    names = dimension_levels(meta)
    means = summary.get("mean_rating_by_level") or {}
    passes = summary.get("pass_rate_by_level") or {}
    deltas = summary.get("preference_delta_by_level") or {}
    rows = []
    for lv in levels:
        row = [lv, names.get(lv, ""), means.get(lv), passes.get(lv)]
        if deltas:
            d = deltas.get(lv) or {}
            row += [d.get("mean"), f"[{page.fmt(d.get('low'))}, {page.fmt(d.get('high'))}]" if d else "", d.get("n")]
        rows.append(row)
    header = ["level", "name", "mean rating", "pass rate"]
    if deltas:
        header += ["preference delta", "95% CI", "n"]
    caption = f"originals' mean rating: {page.fmt(summary.get('mean_original_rating'))}"
    return page.table(header, rows, caption=caption)


def ci_text(block: Any) -> str | None:
    """``{"value"|"mean", "low", "high"}`` -> ``0.63 [0.1, 0.9]``."""
    if not isinstance(block, dict):
        return None
    value = block.get("value", block.get("mean"))
    if value is None:
        return None
    return f"{page.fmt(value)} [{page.fmt(block.get('low'))}, {page.fmt(block.get('high'))}]"


def judges_tables(judges: dict[str, Any], levels: list[str]) -> str:
    """Per judge: its methods, mean ratings by level, rank correlation with the target level and the share of
    ladders in the right order; per pair of judges: their agreement, each with its bootstrap interval."""
    per_judge = judges.get("per_judge") or {}
    rows = []
    for name, j in per_judge.items():
        j = j if isinstance(j, dict) else {}
        by_level = j.get("mean_rating_by_level") or {}
        order = j.get("right_order") or {}
        rows.append([name, page.fmt(j.get("methods")), j.get("n_rewrites"), j.get("mean_original_rating"),
                     *(by_level.get(lv) for lv in levels), ci_text(j.get("spearman_target_rating")),
                     f"{order.get('n')}/{order.get('of')}" if order else None])
    html = page.table(["judge", "methods", "rewrites", "original", *[f"level {lv}" for lv in levels],
                       "Spearman with level [95% CI]", "ladders in order"], rows) if rows else ""
    pairs = [[" × ".join(map(str, a.get("judges") or [])), a.get("n_rewrites"), ci_text(a.get("spearman")),
              ci_text(a.get("kappa"))] for a in judges.get("agreement") or [] if isinstance(a, dict)]
    if pairs:
        html += page.table(["judges", "rewrites", "Spearman [95% CI]", "Cohen's kappa [95% CI]"], pairs,
                           caption="agreement between judges")
    notes = [judges[k] for k in ("order_rule", "ci") if isinstance(judges.get(k), str)]
    html += "".join(f"<p class='muted'>{page.esc(n)}</p>" for n in notes)
    return f"<h3>Judges</h3>{html}" if html else ""


def dimension_levels(meta: dict[str, Any]) -> dict[str, str]:
    """level -> its name in the run's dimension file ({} when the file cannot be read)."""
    from socialsynth.core.errors import InputError
    from socialsynth.prompts import load_dimension

    source = meta.get("dimension_source") or meta.get("dimension")
    if not source:
        return {}
    try:
        dim = load_dimension(str(source))
    except (InputError, OSError, ValueError):
        return {}
    return {str(i): name for i, name in enumerate(dim.level_names, 1)}


def fallback_judge(meta: dict[str, Any]) -> str:
    prov = meta.get("provenance") or {}
    return ":".join(str(x) for x in ("generator", prov.get("model"), prov.get("rating_method")) if x) or "rater"


def render(run: RunOutputs, ctx: Context) -> str:
    data = [p for p in run.data_files if p.name == f"{run.name}.jsonl"]
    records = ctx.records(data[0]) if data else []
    levels = levels_of(run.meta, records)
    fallback = fallback_judge(run.meta)
    items = [record_item(rec, levels, fallback) for rec in records]
    flags = sorted({f for it in items for c in it["c"] for f in c.get("f", [])})
    marks = [m for m in (NOT_RISING, DISAGREE) if any(m in it["f"] for it in items)]
    listing = page.ItemList(items=items, columns=["original", *levels], column_name="level", flags=marks + flags,
                            sorts=sort_options(levels, items), diff=True)
    summary = run.meta.get("summary") or {}
    skip = {"mean_rating_by_level", "pass_rate_by_level", "preference_delta_by_level", "judges"}
    judges = judges_tables(summary["judges"], levels) if isinstance(summary.get("judges"), dict) else ""
    counts = f"{len(items)} comments · {sum(NOT_RISING in it['f'] for it in items)} ladders that do not rise"
    return (
        f"<h3>Summary</h3><div class='tables'><div>{level_table(run.meta, levels)}</div>{plots(run)}</div>"
        + summary_tables(summary, skip) + judges
        + f"<h3>Comments and rewrites</h3><p class='muted'>{page.esc(counts)}</p>"
        + ctx.items(f"norms {run.name}", listing)
    )
