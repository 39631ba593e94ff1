"""Assemble the report: find the runs under a folder (socialsynth.core.outputs), give each to its job's renderer,
and write one self-contained HTML file.

A renderer takes a :class:`~socialsynth.core.outputs.RunOutputs` and a :class:`Context` and returns the HTML of the
run's body (below the header every run gets). Jobs without a renderer of their own (prepare, instruct, the
response steps before evaluate) get the header, their summary fields and their plots.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from socialsynth.core.io import atomic_write_text
from socialsynth.core.outputs import RunOutputs, require_runs
from socialsynth.report import page
from socialsynth.report.page import Section, esc
from socialsynth.report.parts import COMMON_FIELDS, Context, plots, summary_tables

log = logging.getLogger(__name__)

DEFAULT_NAME = "report.html"
Renderer = Callable[[RunOutputs, Context], str]


def renderers() -> dict[str, Renderer]:
    """Job kind (the run record's ``job``) -> its renderer; imported here so that each module stays small."""
    from socialsynth.report import jobs_misc, normness, rephrase

    return {
        "norms": normness.render,
        "rephrase": rephrase.render,
        "augment": jobs_misc.render_augment,
        "cluster": jobs_misc.render_cluster,
        "response.evaluate": jobs_misc.render_responses,
        "train": jobs_misc.render_train,
    }


def build_report(folder: str | Path, output: str | Path | None = None, *, compress: bool | None = None) -> Path:
    """Write the report of every run under ``folder`` to ``output`` (default ``<folder>/report.html``)."""
    root = Path(folder)
    runs = require_runs(root)
    target = Path(output) if output is not None else (root if root.is_dir() else root.parent) / DEFAULT_NAME
    ctx = Context(root=root if root.is_dir() else root.parent, compress=compress)
    html = render_html(runs, ctx, title=f"socialsynth report: {root.resolve().name}")
    atomic_write_text(target, html)
    return target


def render_html(runs: list[RunOutputs], ctx: Context, title: str) -> str:
    table = renderers()
    sections = []
    for run in runs:
        body = render_run(table.get(run.job, render_generic), run, ctx)
        name = ctx.rel(run.record_path)[: -len(".meta.json")]
        sections.append(Section(f"{run.job}: {name}", page.slug(f"run {name}"), run_header(run, ctx) + body))
    subtitle = f"{len(runs)} run(s) under {ctx.root.resolve()}, made {time.strftime('%Y-%m-%d %H:%M')}"
    if ctx.notes:
        subtitle += " · " + "; ".join(ctx.notes)
    return page.page(title, subtitle, sections)


def render_run(renderer: Renderer, run: RunOutputs, ctx: Context) -> str:
    """One run's body; outputs it cannot read (a data file deleted since, a field of another type than the job
    writes) give a note in the page and a warning, and the other runs are still shown."""
    try:
        return renderer(run, ctx)
    except Exception as e:  # a viewer: one odd run must not cost the report of all the others
        message = f"{ctx.rel(run.record_path)}: could not show this run ({type(e).__name__}: {e})"
        log.warning("%s", message)
        ctx.notes.append(message)
        return f"<p class='badge'>{esc(message)}</p>"


# ------------------------------------------------------------------------------------------- shared parts


def run_header(run: RunOutputs, ctx: Context) -> str:
    """Status, command, time, models and tokens: what every run record holds."""
    meta = run.meta
    rows = [
        ("record", ctx.rel(run.record_path)),
        ("status", f"{meta.get('status')} ({'complete' if meta.get('complete') else 'not complete'})"),
        ("command", meta.get("command")),
        ("runs", len(meta.get("runs") or [])),
        ("seconds", meta.get("seconds")),
    ]
    provenance = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    for key in ("model", "model_source", "rewrite_template", "rating_template", "rating_method", "seed"):
        if provenance.get(key) is not None:
            rows.append((key.replace("_", " "), provenance[key]))
    html = page.table(["", ""], rows)
    tokens = meta.get("tokens") or {}
    token_rows = [(model, stage, v.get("in"), v.get("out"), v.get("seconds"))
                  for model, stages in tokens.items() if isinstance(stages, dict)
                  for stage, v in stages.items() if isinstance(v, dict)]
    if token_rows:
        html += page.details("tokens per model and stage",
                             page.table(["model", "stage", "in", "out", "seconds"], token_rows))
    html += page.details("config", page.pre(json.dumps(meta.get("config"), indent=1, ensure_ascii=False)))
    files = [ctx.rel(p) for p in run.data_files]
    if files:
        html += page.details(f"{len(files)} data files", "<br>".join(esc(f) for f in files))
    return html


def render_generic(run: RunOutputs, ctx: Context) -> str:
    """A job without a renderer of its own: its record's own fields and its plots."""
    own = {k: v for k, v in run.meta.items() if k not in COMMON_FIELDS}
    summary = own.pop("summary", None)
    html = plots(run)
    if isinstance(summary, dict):
        html += summary_tables(summary)
    if own:
        html += page.details("other fields of the run record",
                             page.pre(json.dumps(own, indent=1, ensure_ascii=False, default=str)))
    return html
