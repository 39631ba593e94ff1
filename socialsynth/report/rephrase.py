"""The rephrase run (rephrase_posts.py) in the report: the temperature search (table and plot), the audit per
model, then one item per post with the original beside each model's rephrasings.

In each rephrasing the names, numbers and rare word 3-grams it repeats from its original are highlighted (and the
original's repeated items too), found with the audit's own text rules (socialsynth.jobs.rephrase.audit.replay: pure
text, no model). The re-identification rank of each rephrasing is shown when the run recorded it per record
(``reid_rank`` in the record, or ``ranks`` {record id: rank} under the model in ``audit.json``); otherwise the
audit's per-model top-1 / top-5 / mean rank are in the table above the list.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from socialsynth.core.outputs import RunOutputs
from socialsynth.report import page
from socialsynth.report.parts import Context, plots, summary_tables

REPLAYED = "replays details"


def search_table(search: dict[str, Any]) -> str:
    """Mean similarity to the originals per temperature (rows) and model (columns); the chosen one starred."""
    by_model = (search or {}).get("by_model") or {}
    if not by_model:
        return ""
    temps = sorted({float(t) for res in by_model.values() for t in (res.get("means") or {})})
    rows = []
    for t in temps:
        row: list[Any] = [t]
        for res in by_model.values():
            means = {float(k): v for k, v in (res.get("means") or {}).items()}
            value = means.get(t)
            star = " ★" if res.get("chosen") is not None and float(res["chosen"]) == t else ""
            row.append(None if value is None else f"{page.fmt(value)}{star}")
        rows.append(row)
    settings = search.get("settings") or {}
    caption = (f"mean similarity to the original on {settings.get('sample_size', '?')} posts; ★ the chosen "
               "temperature (lowest mean)")
    return "<h3>Temperature search</h3>" + page.table(["temperature", *by_model], rows, caption=caption)


def audit_table(audit: dict[str, Any]) -> str:
    rows = []
    for slug, res in (audit or {}).items():
        if not isinstance(res, dict):
            continue
        rp = res.get("replay") or {}
        rows.append([slug, res.get("n"), res.get("top1"), res.get("top5"), res.get("chance_top1"),
                     res.get("mean_rank"), rp.get("posts_names"), rp.get("posts_numbers"), rp.get("posts_ngrams")])
    header = ["model", "n", "top-1", "top-5", "chance top-1", "mean rank", "posts replaying names", "numbers",
              "rare 3-grams"]
    return "<h3>Linkability audit</h3>" + page.table(header, rows) if rows else ""


def per_record_ranks(run: RunOutputs) -> dict[str, Any]:
    """record id -> re-identification rank, when audit.json recorded them per model."""
    audit_file = run.file("audit.json")
    if audit_file is None:
        return {}
    try:
        audit = json.loads(audit_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ranks: dict[str, Any] = {}
    for res in (audit.get("by_model") or {}).values():
        if isinstance(res, dict) and isinstance(res.get("ranks"), dict):
            ranks.update(res["ranks"])
    return ranks


def post_items(records: list[dict[str, Any]], ranks: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """One item per post: the original, then each model's rephrasings (label ``model`` or ``model #k``)."""
    from socialsynth.jobs.rephrase.audit import ngram_document_frequency, replay

    by_post: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_post[str(rec.get("post_id"))].append(rec)
    originals = {pid: recs[0].get("original") or "" for pid, recs in by_post.items()}
    doc_freq = ngram_document_frequency(originals.values())
    many = any(str(r.get("id", "")).rsplit(":", 1)[-1] not in ("0", "") for r in records)
    items, columns = [], []
    for pid, recs in by_post.items():
        cells, replayed_in_original, keys = [], set(), {}
        for rec in recs:
            label = rec.get("model_slug") or rec.get("model") or "?"
            if many:
                label = f"{label} #{str(rec.get('id', '')).rsplit(':', 1)[-1]}"
            if label not in columns:
                columns.append(label)
            cell, terms = rephrasing_cell(rec, label, originals[pid], doc_freq, ranks, replay)
            replayed_in_original |= set(terms)
            cells.append(cell)
            rank = ranks.get(str(rec.get("id")), rec.get("reid_rank"))
            if isinstance(rank, (int, float)):
                keys["rank"] = min(keys.get("rank", rank), rank)
        keys["replayed"] = len(replayed_in_original)
        marks = [REPLAYED] if replayed_in_original else []
        original = {"l": "original", "t": originals[pid], "h": sorted(replayed_in_original)}
        items.append({"id": pid, "f": marks, "k": keys, "c": [original, *cells]})
    return items, columns


def rephrasing_cell(rec, label, original, doc_freq, ranks, replay) -> tuple[dict[str, Any], list[str]]:
    text = rec.get("generated_text")
    found = replay(original, text or "", doc_freq) if text else {}
    terms = [*found.get("replayed_names", []), *found.get("replayed_numbers", []), *found.get("replayed_ngrams", [])]
    flags = [k for k, v in (rec.get("flags") or {}).items() if v is True]
    notes = []
    rank = ranks.get(str(rec.get("id")), rec.get("reid_rank"))
    if rank is not None:
        notes.append(f"re-identification rank {rank}")
    if terms:
        notes.append("replays: " + "; ".join(terms))
    temperature = ((rec.get("provenance") or {}).get("sampling") or {}).get("temperature")
    if temperature is not None:
        notes.append(f"temperature {temperature}")
    if rec.get("status") not in (None, "ok"):
        flags.append(f"status {rec.get('status')}")
    cell = {"l": label, "t": text, "n": notes, "f": flags, "b": rec.get("passed") is False, "h": terms}
    return cell, terms


def render(run: RunOutputs, ctx: Context) -> str:
    data = run.file(f"{run.name}.jsonl")
    records = ctx.records(data) if data else []
    ranks = per_record_ranks(run)
    items, columns = post_items(records, ranks)
    flags = sorted({f for it in items for c in it["c"] for f in c.get("f", [])})
    sorts = [{"key": "replayed", "label": "replayed details"}]
    if any("rank" in it["k"] for it in items):
        sorts.insert(0, {"key": "rank", "label": "best re-identification rank"})
    listing = page.ItemList(items=items, columns=["original", *columns], column_name="model",
                            flags=[REPLAYED, *flags], sorts=sorts)
    summary = run.meta.get("summary") or {}
    rank_note = "" if ranks or any("reid_rank" in r for r in records) else (
        "<p class='muted'>This run's audit records re-identification per model (table above), not per "
        "rephrasing.</p>")
    return (
        search_table(run.meta.get("temperature_search") or {}) + plots(run)
        + audit_table(run.meta.get("audit") or {})
        + summary_tables(summary, {"output", "meta", "csv"})
        + f"<h3>Posts and rephrasings</h3><p class='muted'>{len(items)} posts, {len(records)} rephrasings; "
        "replayed names, numbers and rare 3-grams are highlighted.</p>" + rank_note
        + ctx.items(f"rephrase {run.name}", listing)
    )
