"""Readable plain-text reports of classifier metrics (the tables `train_classifier.py` prints and writes to
report.txt), and the one-table comparison of several runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from socialsynth.classify.metrics import _check_task


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Aligned columns: the first column left-aligned, the others right-aligned."""
    cells = [[_fmt(v) if i else str(v) for i, v in enumerate(row)] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [values[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=False)]
        return (indent + "  ".join(parts)).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([line(list(headers)), rule] + [line(r) for r in cells])


def _pairs(items: Sequence[tuple[str, Any]], indent: str = "  ") -> str:
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{indent}{k.ljust(width)}  {_fmt(v)}" for k, v in items)


def _per_label_table(block: dict, with_threshold: bool) -> str:
    headers = ["label", "precision", "recall", "F1", "support"]
    if with_threshold:
        headers += ["threshold", "AUPRC"]
    rows = []
    for name, m in block.get("per_label", {}).items():
        row = [name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support")]
        if with_threshold:
            row += [m.get("threshold"), m.get("auprc")]
        rows.append(row)
    return _table(headers, rows)


def _confusion_table(confusion: list, names: Sequence[str]) -> str:
    headers = ["true \\ predicted"] + list(names)
    return _table(headers, [[name] + list(row) for name, row in zip(names, confusion, strict=False)])


def _binary_block(block: dict) -> str:
    names = block.get("label_names") or ["negative", "positive"]
    summary = [
        ("accuracy", block.get("accuracy")),
        (f"precision ({names[1]})", block.get("precision")),
        (f"recall ({names[1]})", block.get("recall")),
        (f"F1 ({names[1]})", block.get("f1")),
        ("AUROC", block.get("auroc")),
        ("AUPRC", block.get("auprc")),
        ("support pos / neg", f"{block.get('support_pos')} / {block.get('support_neg')}"),
    ]
    parts = [_per_label_table(block, False), "", _pairs(summary)]
    if block.get("confusion"):
        parts += ["", _confusion_table(block["confusion"], names)]
    return "\n".join(parts)


def _multilabel_block(block: dict) -> str:
    summary = [
        ("micro precision", block.get("micro_precision")),
        ("micro recall", block.get("micro_recall")),
        ("micro F1", block.get("micro_f1")),
        ("macro F1", block.get("macro_f1")),
        ("samples F1", block.get("samples_f1")),
        ("subset accuracy", block.get("subset_accuracy")),
        ("hamming loss", block.get("hamming_loss")),
        ("macro AUROC", block.get("macro_auroc")),
        ("macro AUPRC", block.get("macro_auprc")),
    ]
    return "\n".join([_per_label_table(block, True), "", _pairs(summary)])


def format_report(task: str, metrics: dict, title: str | None = None) -> str:
    """A plain-text report of evaluate() (or classification_metrics / regression_metrics) output."""
    _check_task(task)
    lines: list[str] = []
    if title:
        lines += [title, "=" * len(title)]
    if metrics.get("n") is not None:
        lines.append(f"task: {task}   items: {metrics['n']}")
    else:
        lines.append(f"task: {task}")
    if task in ("binary", "multilabel"):
        render = _binary_block if task == "binary" else _multilabel_block
        blocks = []
        if "at_0.5" in metrics:
            blocks.append(("threshold 0.5", metrics["at_0.5"]))
            if metrics.get("tuned"):
                blocks.append(("tuned threshold", metrics["tuned"]))
        else:
            blocks.append(("given thresholds", metrics))
        for heading, block in blocks:
            if task == "binary" and heading != "threshold 0.5":
                heading += f" ({_fmt(block.get('threshold'))})"
            lines += ["", f"-- {heading} --", render(block)]
    elif task == "multiclass":
        summary = [
            ("accuracy", metrics.get("accuracy")),
            ("macro F1", metrics.get("macro_f1")),
            ("micro F1", metrics.get("micro_f1")),
            ("weighted F1", metrics.get("weighted_f1")),
        ]
        lines += ["", _per_label_table(metrics, False), "", _pairs(summary)]
        if metrics.get("confusion"):
            names = metrics.get("label_names") or list(metrics.get("per_label", {}))
            lines += ["", _confusion_table(metrics["confusion"], names)]
    else:
        target = metrics.get("target")
        summary = [
            ("MSE", metrics.get("mse")),
            ("MAE", metrics.get("mae")),
            ("R²", metrics.get("r2")),
            ("Pearson r", metrics.get("pearson")),
            ("Spearman ρ", metrics.get("spearman")),
        ]
        if target:
            lines.append(f"target: {target}")
        accuracy = metrics.get("pairwise_accuracy") or {}
        pairs = metrics.get("pairwise_pairs") or {}
        rows = [[f"> {gap}", accuracy.get(gap), pairs.get(gap)] for gap in accuracy]
        lines += ["", _pairs(summary), "", "  pairwise ranking accuracy (pairs with |true difference| > gap):"]
        lines.append(_table(["gap", "accuracy", "pairs"], rows))
    return "\n".join(lines) + "\n"


def format_comparison(rows: dict[str, dict[str, float]]) -> str:
    """Runs as rows, metric names as columns (union in first-seen order), '-' where a run lacks a metric."""
    columns: list[str] = []
    for metrics in rows.values():
        for key in metrics:
            if key not in columns:
                columns.append(key)
    table_rows = [[name] + [metrics.get(key) for key in columns] for name, metrics in rows.items()]
    return _table(["run"] + columns, table_rows, indent="") + "\n"
