"""The data card: ``README.md`` with YAML front matter in the Hugging Face dataset-card layout, then how the rows
were made, what failed and why, the source data and its terms, the license and the citation.

The front matter carries the Hub's keys (``license``, ``language``, ``task_categories``, ``tags``,
``size_categories``, ``pretty_name``, ``configs`` with ``data_files``, ``viewer``) and a ``socialsynth`` key with the
provenance in machine-readable form (models, templates with their hashes, seeds, row counts per subset).
``viewer: false`` hides the Hub's dataset viewer, which matters for data derived from Reddit or Bluesky users;
``--public-viewer`` turns it on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from socialsynth import __version__
from socialsynth.export.facts import Counts, Provenance, counts_of, provenance_of
from socialsynth.export.writers import Written

# job family -> the Hub's task categories
TASKS: dict[str, list[str]] = {
    "norms": ["text-generation", "text-classification"],
    "rephrase": ["text-generation"],
    "augment": ["text-classification", "text-generation"],
    "cluster": ["text-generation"],
    "instruct": ["text-generation"],
    "response": ["text-generation"],
    "train": ["text-classification"],
    "prepare": ["text-classification"],
}
PLATFORM: dict[str, str] = {"norms": "reddit", "prepare": "reddit", "rephrase": "reddit", "cluster": "bluesky",
                            "instruct": "bluesky", "response": "responses"}
TAGGED_PLATFORMS = ("reddit", "bluesky")
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))
TERMS = {
    "reddit": (
        "Rows hold or were generated from Reddit comments and posts. Reddit's User Agreement and Data API Terms "
        "apply to the source text: content deleted by its author or removed by Reddit must be deleted from this "
        "data set and from anything derived from it when you learn of it (rerun the job on the current source and "
        "export again), and the data must not be used to identify, profile or contact the people who wrote it."),
    "bluesky": (
        "Rows hold or were generated from public Bluesky (AT Protocol) posts, likes, reposts and follows. User "
        "identifiers (DIDs) are stable and linkable. Posts and accounts deleted on the network must be deleted "
        "here too (rerun the clustering on a current firehose dump and export again), users' opt-outs must be "
        "honoured, and the data must not be used to re-identify or profile people."),
    "responses": (
        "Rows hold or were generated from social-media posts and the public responses of their readers (Weibo in "
        "the SocialAlign setting, or the files given to build-dataset). The platform's terms apply to the source "
        "text: honour deletions and do not use the data to re-identify or profile the users."),
    "other": (
        "Rows hold or were generated from the input files the run record names. Their source's terms apply; "
        "when they come from social media, honour deletions and do not use the data to re-identify anyone."),
}
CITATIONS: dict[str, str] = {
    "valuescope": (
        "@inproceedings{park2024valuescope,\n  title = {ValueScope: Unveiling Implicit Norms and Values via Return "
        "Potential Model of Social Interactions},\n  author = {Park, Chan Young and Li, Shuyue Stella and Jung, "
        "Hayoung and Volkova, Svitlana and Mitra, Tanushree and Jurgens, David and Tsvetkov, Yulia},\n  booktitle "
        "= {Findings of the Association for Computational Linguistics: EMNLP 2024},\n  year = {2024}\n}"),
    "socsys": ("Synthetic Data Generation and Multi-Label Classification Using Large Language Models "
               "(privacy-preserving rephrasing with Llama 2, Llama 3 and Zephyr; publication forthcoming per its "
               "authors)."),
    "blueprint": "BluePrint: Bluesky persona clusters and instruction data (the seed repository bluesky_blueprint).",
    "capstone": ("Bajaj, A., Varshita, H., Reddy, R., Raviprakash, R. and Boral, S. Toxic Data Generation using "
                 "Large Language Models for Sparse Label Problems. MSDS Capstone Project, University of "
                 "Washington, in collaboration with Meta."),
    "socialalign": "SocialAlign: A Unified Framework for Micro- and Macro-Level Public Response Prediction.",
}
LICENSE_NOTE = (
    "`other`: socialsynth chose no license for you. The rows contain text from, or generated from, the source "
    "data, whose terms (above) limit what a license can grant; choose one that fits them (`--license NAME`, e.g. "
    "`cc-by-nc-4.0`) before you share this data set.")


@dataclass
class CardOptions:
    """The export's settings that the card reports."""

    license: str = "other"
    languages: Sequence[str] = ("en",)
    public_viewer: bool = False
    pretty_name: str | None = None
    fmt: str = "parquet"


def family(job: str) -> str:
    """``response.infer`` -> ``response``."""
    return job.split(".")[0]


def size_category(n: int) -> str:
    return next((label for limit, label in SIZES if n < limit), "n>100M")


def _front_matter(written: Sequence[Written], facts: list[tuple[Provenance, Counts]], opts: CardOptions) -> str:
    jobs = sorted({family(w.subset.job) for w in written})
    tasks = sorted({t for j in jobs for t in TASKS.get(j, ["text-generation"])})
    platforms = sorted({PLATFORM[j] for j in jobs if PLATFORM.get(j) in TAGGED_PLATFORMS})
    total = sum(sum(w.rows.values()) for w in written)
    meta: dict[str, Any] = {
        "license": opts.license,
        "language": list(opts.languages),
        "task_categories": tasks,
        "tags": ["synthetic", "socialsynth", *jobs, *platforms],
        "size_categories": [size_category(total)],
        "pretty_name": opts.pretty_name or "socialsynth " + ", ".join(jobs),
        "viewer": bool(opts.public_viewer),
        "configs": [{"config_name": w.subset.name,
                     "data_files": [{"split": s, "path": p} for s, p in w.patterns.items()],
                     **({"default": True} if i == 0 else {})} for i, w in enumerate(written)],
        "socialsynth": {
            "version": __version__,
            "format": opts.fmt,
            "subsets": {w.subset.name: {"job": w.subset.job, "rows": dict(w.rows), "failed_rows": c.n_failed,
                                        "models": list(dict.fromkeys(m["model"] for m in p.models)),
                                        "model_roles": [f"{m['role']}: {m['model']}" for m in p.models],
                                        "model_revisions": [m["model_revision"] for m in p.models
                                                            if "model_revision" in m],
                                        "templates": p.templates, "seeds": p.seeds, "judges": p.judges,
                                        "presets": p.presets}
                        for w, (p, c) in zip(written, facts, strict=True)},
        },
    }
    if opts.license == "other":
        meta["license_name"] = "see-card"
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000) + "---\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _subsets_section(written: Sequence[Written], facts: list[tuple[Provenance, Counts]]) -> str:
    rows = []
    for w in written:
        for split, n in w.rows.items():
            rows.append([w.subset.name, w.subset.job, split, n, len(w.files.get(split, []))])
    total = sum(sum(w.rows.values()) for w in written)
    failed = sum(c.n_failed for _, c in facts)
    text = ["## Subsets and splits", "",
            f"{total} rows in all, {failed} of them failed rows kept with their status and reason.", "",
            _table(["subset", "job", "split", "rows", "files"], rows)]
    return "\n".join(text)


def _how_made(w: Written, prov: Provenance, exported: set[Path]) -> list[str]:
    out = [f"### `{w.subset.name}`", ""]
    for run in w.subset.runs:
        meta = run.meta
        out.append(f"- run record `{run.record_path.name}`: job `{meta.get('job')}`, status `{meta.get('status')}`, "
                   f"complete: {meta.get('complete')}, {len(meta.get('runs') or [])} run(s), "
                   f"{meta.get('seconds')} s")
        out.append(f"- command: `{meta.get('command')}`")
        versions = meta.get("versions") or {}
        if versions:
            out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if prov.presets:
        out.append("- preset: " + ", ".join(f"`{p}`" for p in prov.presets))
    left_out = sorted(str(p.relative_to(run.folder)) for run in w.subset.runs for p in run.data_files
                      if p not in exported)
    if left_out:
        out.append("- files of the run not exported (not record tables, or a second view of exported records): "
                   + ", ".join(f"`{p}`" for p in left_out))
    if prov.models:
        out += ["", _table(["role", "model", "revision", "backend", "dtype", "quantization"],
                           [[m["role"], m["model"], m.get("model_revision", "not recorded"), m.get("backend", ""),
                             m.get("dtype", ""), m.get("quantization") or ""] for m in prov.models])]
    if prov.templates:
        out += ["", "Templates (name@hash): " + ", ".join(f"`{t}`" for t in prov.templates)]
    if prov.judges:
        out += ["", "Judges (the first is the primary one): " + ", ".join(f"`{j}`" for j in prov.judges)]
    for chosen in prov.selections:
        out += ["", f"Best of {chosen.get('n')} candidates, chosen by `{chosen.get('judge')}`: {chosen.get('rule')} "
                "(every candidate is in the `candidates.*` columns, the kept one marked)"]
    for sampling in prov.sampling:
        out += ["", "Sampling: " + ", ".join(f"{k} {v}" for k, v in sampling.items())]
    if prov.seeds:
        out += ["", "Seeds: " + ", ".join(str(s) for s in prov.seeds) +
                " (where a job samples, each request's own seed is in its row: `request_seed` columns)"]
    return out + [""]


def _failures(w: Written, counts: Counts) -> list[str]:
    out = [f"### `{w.subset.name}`", ""]
    if counts.status:
        out.append("Status: " + ", ".join(f"{k} {v}" for k, v in counts.status.most_common()))
    if counts.failures:
        out += ["", _table(["reason", "rows"], counts.failures.most_common(20))]
        if counts.failed_ids:
            ids = ", ".join(f"`{i}`" for i in counts.failed_ids)
            more = "; the first ones here, select `status` != `ok` for all" if counts.n_failed > len(
                counts.failed_ids) else ""
            out += ["", f"Failed rows ({counts.n_failed} in all{more}): {ids}"]
    else:
        out.append("No row failed.")
    if counts.passed:
        passed = ", ".join(f"{k} {v}" for k, v in counts.passed.items())
        out += ["", f"Quality filters (over rewrites or items): {passed}"]
    if counts.flags:
        out += ["", _table(["flag", "times raised"], counts.flags.most_common())]
    if counts.skipped:
        out += ["", "Input counts from the run record: " + ", ".join(f"{k} {v}" for k, v in counts.skipped.items())]
    return out + [""]


def _columns(written: Sequence[Written], fmt: str) -> list[str]:
    if fmt == "jsonl":
        return ["## Columns", "", "Each line is one record exactly as the job wrote it (a line that was not an "
                "object is wrapped under one key: `chain` for cluster files, `messages` for instruct files).", ""]
    out = ["## Columns", "",
           "Nested objects are flattened into one column per key path joined with `.` (`rewrite_ratings.3`, "
           "`filters.3.passed`, `ratings.<judge>.original.expected`); lists stay list columns; objects whose keys "
           "vary too much, or values without one common type, are JSON text (marked below). Null and a missing key "
           "are one thing. `socialsynth.export.flatten.unflatten` rebuilds the records from the Parquet metadata. Read "
           "with `pandas.read_parquet(path, dtype_backend='pyarrow')` to keep 64-bit integers (request seeds) exact "
           "in columns that also hold nulls.", ""]
    for w in written:
        rows = [[c.name, w.arrow_types.get(c.name, ""), "JSON text" if c.json else ""] for c in w.columns]
        out += [f"<details><summary><code>{w.subset.name}</code>: {len(rows)} columns</summary>", "",
                _table(["column", "type", "note"], rows), "", "</details>", ""]
    return out


def _loading(written: Sequence[Written], fmt: str) -> list[str]:
    lines = ["## Loading", "", "```python"]
    for w in written:
        if fmt == "hf":
            where = "path/to/this/folder" + (f"/{w.load_path}" if w.load_path else "")
            lines.append(f"datasets.load_from_disk({where!r})")
        elif fmt == "parquet":
            split = next(iter(w.patterns))
            lines.append(f"pandas.read_parquet({w.files[split][0]!r}, dtype_backend='pyarrow')  "
                         f"# split {split!r} of {w.subset.name}")
        else:
            split = next(iter(w.patterns))
            lines.append(f"pandas.read_json({w.files[split][0]!r}, lines=True)  # split {split!r}")
    return [*lines, "```", ""]


def render_card(written: Sequence[Written], opts: CardOptions) -> str:
    """The whole README.md for the exported subsets."""
    facts = [(provenance_of(w.subset), counts_of(w.subset)) for w in written]
    jobs = sorted({family(w.subset.job) for w in written})
    platforms = sorted({PLATFORM.get(j, "other") for j in jobs})
    presets = sorted({p for prov, _ in facts for p in prov.presets})
    body = [_front_matter(written, facts, opts), f"# {opts.pretty_name or 'socialsynth ' + ', '.join(jobs)}", "",
            f"Synthetic social-media data made with socialsynth {__version__} (jobs: {', '.join(jobs)}), exported as "
            f"{opts.fmt}.", "", _subsets_section(written, facts), "", "## How it was made", ""]
    exported = {s.path for w in written for sources in w.subset.splits.values() for s in sources}
    for w, (prov, _) in zip(written, facts, strict=True):
        body += _how_made(w, prov, exported)
    body += ["## Failed rows, filters and skips", ""]
    for w, (_, counts) in zip(written, facts, strict=True):
        body += _failures(w, counts)
    body += _columns(written, opts.fmt)
    body += ["## Source data and its terms", ""] + [TERMS[p] + "\n" for p in platforms]
    body += ["## License", "", f"`{opts.license}`." if opts.license != "other" else LICENSE_NOTE, ""]
    if presets:
        body += ["## Citation", "", "The runs replay a paper's method (`--preset`); cite it:", ""]
        body += [f"```\n{CITATIONS[p]}\n```\n" if p in CITATIONS else f"- preset `{p}`\n" for p in presets]
    body += _loading(written, opts.fmt)
    return "\n".join(body)


def front_matter_of(card: str) -> dict[str, Any]:
    """The YAML front matter of a card (for tests and for the Hub push)."""
    _, head, _ = card.split("---\n", 2)
    return yaml.safe_load(head)
