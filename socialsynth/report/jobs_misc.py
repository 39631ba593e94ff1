"""The report of the augment, cluster, response-evaluation and classifier-training runs: what their outputs already
hold, laid out to read (tables, cards, the jobs' own plots, and item lists for generated texts and predictions)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError
from socialsynth.core.outputs import RunOutputs
from socialsynth.report import page
from socialsynth.report.page import esc, fmt
from socialsynth.report.parts import Context, plots, summary_tables

ERRORS_PER_CLASS = 5  # misclassified test rows shown per true class


def read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------- augment


def augment_items(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = []
    for rec in records:
        flags = [k for k, v in (rec.get("flags") or {}).items() if v is True]
        if rec.get("status") not in (None, "ok"):
            flags.append(f"status {rec.get('status')}")
        sim = rec.get("similarity") or {}
        notes = [f"{k.replace('_', ' ')} {fmt(v)}" for k, v in sim.items() if v is not None]
        if rec.get("fidelity") is not None:
            notes.append(f"fidelity {fmt(rec['fidelity'])}")
        notes.append("passed" if rec.get("passed") else "did not pass")
        keys = {k: v for k, v in (("words", rec.get("n_words")), ("fidelity", rec.get("fidelity")),
                                  ("sim", sim.get("max_sim_real"))) if isinstance(v, (int, float))}
        example_ids = (rec.get("generation") or {}).get("example_ids") or []
        items.append({"id": str(rec.get("id")), "m": f"label {rec.get('label')}"
                      + (f" · examples {', '.join(map(str, example_ids))}" if example_ids else ""),
                      "f": flags, "k": keys,
                      "c": [{"l": "generated", "t": rec.get("text"), "n": notes, "f": flags,
                             "b": rec.get("passed") is False}]})
    return items


def ladder_table(ladder: dict[str, Any]) -> str:
    sets = ladder.get("sets") or []
    metric_names = list(dict.fromkeys(k for s in sets for k in (s.get("metrics") or {}) if k != "threshold"))
    rows = [[s.get("rate"), s.get("achieved_rate"), s.get("size"), s.get("positives"), s.get("synthetic"),
             *((s.get("metrics") or {}).get(m) for m in metric_names), s.get("note")] for s in sets]
    header = ["rate", "achieved", "size", "positives", "synthetic", *metric_names, "note"]
    caption = (f"real train {fmt(ladder.get('real_train'))}; val {fmt(ladder.get('val'))}; test "
               f"{fmt(ladder.get('test'))}; classifier {fmt(ladder.get('classifier'))}")
    return "<h3>Sparsity ladder</h3>" + page.table(header, rows, caption=caption)


def render_augment(run: RunOutputs, ctx: Context) -> str:
    data = run.file(f"{run.name}.jsonl")
    records = ctx.records(data) if data else []
    ladder = read_json(run.file("ladder.json"))
    items = augment_items(records)
    flags = sorted({f for it in items for f in it["f"]})
    sorts = [{"key": k, "label": label} for k, label in (("words", "words"), ("fidelity", "fidelity"),
                                                          ("sim", "similarity to the nearest real row"))
             if any(k in it["k"] for it in items)]
    listing = page.ItemList(items=items, columns=["generated"], flags=flags, sorts=sorts)
    html = summary_tables(run.meta.get("summary") or {})
    if isinstance(ladder, dict):
        html += ladder_table(ladder)
    html += plots(run)
    passed = sum(bool(r.get("passed")) for r in records)
    return html + (f"<h3>Generated items</h3><p class='muted'>{len(records)} items, {passed} passed every filter"
                   "</p>") + ctx.items(f"augment {run.name}", listing)


# ------------------------------------------------------------------------------------------- cluster


def cluster_folder(run: RunOutputs) -> Path | None:
    """processed_<k>_clusters/ of the run (named by the record's ``output``, else found among its files)."""
    named = run.meta.get("output")
    if named and (run.folder / Path(named).name).is_dir():
        return run.folder / Path(named).name
    reports = [p for p in run.data_files if p.name == "cluster_report.json"]
    return reports[0].parent if reports else None


def cluster_card(entry: dict[str, Any], written: dict[str, Any], ignored: dict[str, Any]) -> str:
    cid = str(entry.get("cluster"))
    terms = ", ".join(str(t[0]) if isinstance(t, (list, tuple)) else str(t) for t in entry.get("terms") or [])
    lines = [f"<h3>cluster {esc(cid)}</h3>",
             page.table(["users", "posts"], [[entry.get("size"), entry.get("n_posts")]]),
             f"<p><b>top terms:</b> {esc(terms) or '–'}</p>"]
    actions = action_shares(written.get(cid))
    if actions:
        lines.append(page.table(["action", "count", "share"], actions))
    count = ignored.get(cid) if isinstance(ignored, dict) else None
    if count is not None:
        lines.append(f"<p>ignored messages: {esc(fmt(count))}</p>")
    samples = "".join(f"<li>{esc(s)}</li>" for s in entry.get("samples") or [])
    if samples:
        lines.append(f"<p class='muted'>example posts</p><ul>{samples}</ul>")
    return f"<div class='card'>{''.join(lines)}</div>"


NOT_ACTIONS = {"users", "lines"}  # per-cluster counts of the record's ``written`` that are not action kinds


def action_shares(written: Any) -> list[list[Any]]:
    """Count and share of each action kind written for one cluster (conversation chains, likes, follows...)."""
    if not isinstance(written, dict):
        return []
    actions = {k: v for k, v in written.items() if k not in NOT_ACTIONS and isinstance(v, (int, float))}
    total = sum(actions.values())
    return [[k, v, f"{v / total:.0%}" if total else "–"] for k, v in actions.items()]


def ignored_by_cluster(ignored: Any) -> dict[str, Any]:
    """Ignored messages written per cluster, from the record's ``ignored`` block ({cluster: {"ignored": n}})."""
    if not isinstance(ignored, dict):
        return {}
    return {str(k): v.get("ignored") for k, v in ignored.items() if isinstance(v, dict) and "ignored" in v}


def render_cluster(run: RunOutputs, ctx: Context) -> str:
    folder = cluster_folder(run)
    report = read_json(folder / "cluster_report.json") if folder else None
    meta = run.meta
    written = meta.get("written") if isinstance(meta.get("written"), dict) else {}
    per_cluster = written.get("clusters") if isinstance(written.get("clusters"), dict) else written
    ignored = ignored_by_cluster(meta.get("ignored"))
    top = {"k": meta.get("k"), "users": meta.get("users"), "cluster sizes": meta.get("cluster_sizes"),
           "silhouette": meta.get("silhouette"), "skipped": meta.get("skipped"), "chains": meta.get("chains"),
           "actions written": (meta.get("written") or {}).get("actions")}
    html = summary_tables({k: v for k, v in top.items() if v is not None}) + plots(run)
    cards = [cluster_card(e, per_cluster or {}, ignored) for e in report or [] if isinstance(e, dict)]
    if cards:
        html += "<h3>Clusters</h3>" + "".join(cards)
    else:
        html += "<p class='muted'>no cluster_report.json among this run's files</p>"
    return html


# ------------------------------------------------------------------------------------------- responses


def prediction_files(run: RunOutputs, comparison: dict[str, Any]) -> dict[str, Path]:
    """method -> its predictions file: as evaluate recorded it, else beside the eval folder's parent."""
    found = {}
    for method, info in (comparison.get("inputs") or {}).items():
        path = Path(str((info or {}).get("path") or ""))
        if not path.is_file():
            path = run.folder.parent / "predictions" / f"{method}.jsonl"
        if path.is_file():
            found[method] = path
    return found


def comparison_table(comparison: dict[str, Any]) -> str:
    methods = comparison.get("methods") or []
    metrics = [k for k in (methods[0] if methods else {}) if isinstance(methods[0].get(k), dict)]
    rows = []
    for m in methods:
        cells = [m.get("method"), m.get("n"), m.get("topics")]
        for name in metrics:
            v = m.get(name) or {}
            cells.append(f"{fmt(v.get('mean'))} [{fmt(v.get('low'))}, {fmt(v.get('high'))}]"
                         if v.get("mean") is not None else None)
        rows.append(cells)
    caption = f"{comparison.get('shared_cases')} shared cases; mean [95% bootstrap interval]"
    return page.table(["method", "n", "topics", *metrics], rows, caption=caption)


def response_items(ctx: Context, files: dict[str, Path], micro: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scores = {(r.get("id"), r.get("method")): r for r in micro}
    cases: dict[str, dict[str, Any]] = defaultdict(dict)
    references: dict[str, str] = {}
    for method, path in files.items():
        for rec in ctx.records(path):
            key = str(rec.get("id"))
            cases[key][method] = rec
            references.setdefault(key, rec.get("reference"))
    items = []
    for key, by_method in cases.items():
        cells, flags, keys = [{"l": "real response", "t": references.get(key)}], [], {}
        for method, rec in by_method.items():
            row = scores.get((key, method)) or {}
            notes = [f"{n} {fmt(row[n])}" for n in ("rouge_l", "bleu", "emb_cos") if row.get(n) is not None]
            if row.get("sentiment_pred") is not None:
                notes.append(f"sentiment {row.get('sentiment_pred')} (real {row.get('sentiment_real')})")
            cell_flags = ["sentiment differs"] if row.get("sentiment_acc") == 0 else []
            if rec.get("status") not in (None, "ok") or rec.get("prediction") is None:
                cell_flags.append(f"failed: {rec.get('error') or rec.get('status')}")
            if isinstance(row.get("rouge_l"), (int, float)):
                keys[f"rouge-{method}"] = row["rouge_l"]
            flags += cell_flags
            cells.append({"l": method, "t": rec.get("prediction"), "n": notes, "f": cell_flags, "b": bool(cell_flags)})
        first = next(iter(by_method.values()))
        items.append({"id": key, "m": f"topic {first.get('topic_id')} · user {first.get('user_id')}", "k": keys,
                      "c": cells})
    return items


def render_responses(run: RunOutputs, ctx: Context) -> str:
    comparison = read_json(run.file("comparison.json")) or {}
    micro_file = run.file("micro.jsonl")
    micro = ctx.records(micro_file) if micro_file else []
    files = prediction_files(run, comparison)
    items = response_items(ctx, files, micro)
    methods = list(files)
    flags = sorted({f for it in items for c in it["c"] for f in c.get("f", [])})
    sorts = [{"key": f"rouge-{m}", "label": f"ROUGE-L of {m}"} for m in methods]
    listing = page.ItemList(items=items, columns=["real response", *methods], column_name="method", flags=flags,
                            sorts=sorts)
    html = "<h3>Comparison</h3>" + comparison_table(comparison) if comparison else ""
    return (html + plots(run) + f"<h3>Cases</h3><p class='muted'>{len(items)} cases, the real response beside "
            f"each method's prediction</p>" + ctx.items(f"responses {run.name}", listing))


# ------------------------------------------------------------------------------------------- train


def metrics_tables(split: str, metrics: dict[str, Any]) -> str:
    html = f"<h3>{esc(split)} ({esc(fmt(metrics.get('n')))} rows)</h3>"
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    html += page.mapping_table(scalars, "metric", "value")
    per_label = metrics.get("per_label")
    if isinstance(per_label, dict) and per_label:
        html += "<p class='muted'>per label</p>" + per_label_bars(per_label)
    confusion, names = metrics.get("confusion"), metrics.get("label_names") or metrics.get("labels")
    if isinstance(confusion, list) and confusion and names:
        html += confusion_table(confusion, [str(n) for n in names])
    return html


def per_label_bars(per_label: dict[str, Any]) -> str:
    """The per-label table with an F1 bar (the per-label figure, drawn in CSS)."""
    columns = list(dict.fromkeys(k for v in per_label.values() if isinstance(v, dict) for k in v))
    rows = []
    for label, values in per_label.items():
        values = values if isinstance(values, dict) else {}
        f1 = values.get("f1")
        bar = f"<span class='bar' style='width:{int(100 * f1)}px'></span>" if isinstance(f1, (int, float)) else ""
        cells = "".join(f"<td class='num'>{esc(fmt(values.get(c)))}</td>" for c in columns)
        rows.append(f"<tr><td>{esc(label)}</td>{cells}<td>{bar}</td></tr>")
    head = "".join(f"<th>{esc(c)}</th>" for c in ["label", *columns, "F1"])
    return f"<table class='t'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def confusion_table(confusion: list[list[Any]], names: list[str]) -> str:
    """Rows true, columns predicted; cells shaded by their share of the row."""
    rows = []
    for name, row in zip(names, confusion, strict=False):
        total = sum(v for v in row if isinstance(v, (int, float))) or 1
        cells = "".join(f"<td class='heat' style='background:rgba(46,90,172,{0.8 * v / total:.2f})'>{esc(fmt(v))}"
                        "</td>" for v in row)
        rows.append(f"<tr><th>{esc(name)}</th>{cells}</tr>")
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    return (f"<p class='muted'>confusion matrix (rows: true, columns: predicted)</p><table class='t'><thead><tr>"
            f"<th>true \\ predicted</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def input_texts(run: RunOutputs) -> dict[str, str]:
    """id -> text of the run's input file (the predictions hold ids only); {} when it cannot be read."""
    from socialsynth.core.io import read_records

    config = run.meta.get("config") or {}
    source = config.get("input")
    source = source[0] if isinstance(source, list) and source else source
    text_col, id_col = config.get("text_col") or "text", config.get("id_col") or "id"
    if not source or not Path(str(source)).is_file():
        return {}
    try:
        rows = read_records(str(source), on_bad_row="skip").records
    except InputError:
        return {}
    return {str(r.get(id_col)): str(r.get(text_col)) for r in rows if r.get(id_col) is not None}


def error_items(run: RunOutputs, ctx: Context) -> list[dict[str, Any]]:
    """A few misclassified test rows per true class."""
    path = run.file("predictions_test.jsonl")
    if path is None:
        return []
    texts, shown, items = input_texts(run), defaultdict(int), []
    for rec in ctx.records(path):
        label, prediction = rec.get("label"), rec.get("prediction")
        if label == prediction or label is None:
            continue
        group = json.dumps(label, ensure_ascii=False) if isinstance(label, list) else str(label)
        if shown[group] >= ERRORS_PER_CLASS:
            continue
        shown[group] += 1
        rid = str(rec.get("id"))
        notes = [f"true {fmt(label)}", f"predicted {fmt(prediction)}"]
        items.append({"id": rid, "m": f"true {group}", "f": [f"true {group}"],
                      "c": [{"l": "text", "t": texts.get(rid, "(text not found in the input)"), "n": notes}]})
    return items


def render_train(run: RunOutputs, ctx: Context) -> str:
    metrics = read_json(run.file("metrics.json")) or {}
    splits = "".join(f"<div>{metrics_tables(split, metrics[split])}</div>" for split in ("val", "test")
                     if isinstance(metrics.get(split), dict))
    html = f"<div class='tables'>{splits}</div>" if splits else ""
    comparison = read_json(run.file("comparison.json"))
    if isinstance(comparison, (dict, list)):
        html += page.details("comparison (real / synthetic / mixed)", page.pre(json.dumps(comparison, indent=1)),
                             open_=True)
    if not html:
        html = "<p class='muted'>no metrics.json among this run's files</p>"
    html += plots(run)
    items = error_items(run, ctx)
    html += "<h3>Errors on the test set</h3>"
    if not items:
        return html + "<p class='muted'>none: every test row was predicted right (or no predictions_test.jsonl)</p>"
    listing = page.ItemList(items=items, columns=["text"], flags=sorted({f for it in items for f in it["f"]}))
    return html + (f"<p class='muted'>up to {ERRORS_PER_CLASS} per true class</p>"
                   + ctx.items(f"train {run.name}", listing))
