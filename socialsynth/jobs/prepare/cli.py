"""`socialsynth prepare`: filter raw Reddit comments into the input of generate_synthetic_data.py.

    socialsynth prepare --input RAW.jsonl -o data/askmen.jsonl     # apply the research code's comment filters
    socialsynth prepare --comments RC_2019-04.zst --submissions RS_2019-04.zst --subreddit AskMen -o data/askmen.jsonl
    socialsynth prepare --comments comments.csv --posts posts.csv --split-by-subreddit -o data/college/
    socialsynth prepare --format doccano --input AnnotationLlama2-19.jsonl -o Llama2_label.csv   # PII labels
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.core.errors import InputError
from socialsynth.core.run import JobRun, record_path
from socialsynth.jobs.prepare.config import PrepareConfig

PROG = "socialsynth prepare"


def main(argv: Sequence[str] | None = None) -> int:
    """`socialsynth prepare ...`; returns the exit code (bad input raises InputError for run_main)."""
    cfg = parse(PrepareConfig, argv, prog=PROG)
    setup_logging()
    if cfg.format == "doccano":
        return prepare_doccano(cfg)
    return prepare_pair(cfg) if cfg.pair else prepare_single(cfg)


def prepare_doccano(cfg: PrepareConfig) -> int:
    """doccano span annotations (--input) -> multi-label rows (-o) for train_classifier.py."""
    from socialsynth.core.io import atomic_write_text, read_records
    from socialsynth.jobs.prepare.doccano import OUTPUT_FORMATS, convert, render, train_hint

    with JobRun("prepare", record_file(cfg), cfg, resumable=False) as run:
        data = read_records(cfg.input, required=("text",), on_bad_row="skip" if cfg.skip_bad_rows else "error")
        if not data.records and not data.skipped:
            raise InputError("the file has no records", path=cfg.input)
        out = convert(data.records, data.line_numbers, cfg.input, categories=cfg.category_names or None,
                      layout=cfg.layout, drop_unlabelled=cfg.drop_unlabelled, skip_bad_rows=cfg.skip_bad_rows)
        out.skipped.update(data.skipped)
        kind = OUTPUT_FORMATS[cfg.output.suffix.lower()]
        atomic_write_text(cfg.output, render(out.rows, out.categories, cfg.layout, kind))
        run.meta.update(n_read=out.n_read, n_written=len(out.rows), n_unlabelled=out.n_unlabelled,
                        categories=out.categories, posts_per_category=dict(out.counts), skipped=dict(out.skipped))
        run.note_items(out.n_read)
        run.mark_complete(True)
    print(f"read {out.n_read} annotated posts from {cfg.input}")
    if out.skipped:
        print("skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(out.skipped.items())))
    width = max([len("category"), *map(len, out.categories)])
    print(f"{'category':<{width}}  posts")
    for name in out.categories:
        print(f"{name:<{width}}  {out.counts.get(name, 0):>5}")
    dropped = " (left out: --drop-unlabelled)" if cfg.drop_unlabelled else ""
    print(f"posts without any span: {out.n_unlabelled}{dropped}")
    print(f"wrote {len(out.rows)} rows ({cfg.layout} layout) -> {cfg.output}")
    print(f"train: {train_hint(cfg.output, out.categories, cfg.layout)}")
    return 0


def record_file(cfg: PrepareConfig) -> Path:
    """``prepare.meta.json`` in the output folder (--split-by-subreddit), else ``<output>.meta.json``."""
    return cfg.output / "prepare.meta.json" if cfg.split_by_subreddit else record_path(cfg.output)


def prepare_single(cfg: PrepareConfig) -> int:
    """One processed file (--input): apply the filters and write the kept comments."""
    from socialsynth.core.io import atomic_write_text, read_records
    from socialsynth.jobs.prepare.reddit import DUPLICATE, FILTER_REASONS, prepare_comments

    with JobRun("prepare", record_file(cfg), cfg, resumable=False) as run:
        data = read_records(cfg.input, allow_pickle=cfg.allow_pickle, required=("id", "comment"),
                            on_bad_row="skip" if cfg.skip_bad_rows else "error")
        if not data.records and not data.skipped:
            raise InputError("the file has no records", path=cfg.input)
        kept, dropped = prepare_comments(usable_rows(data, cfg.skip_bad_rows))
        text = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in kept)
        atomic_write_text(cfg.output, text)
        run.meta.update(n_read=len(data.records), n_kept=len(kept), dropped=dict(dropped),
                        skipped=dict(data.skipped))
        run.note_items(len(data.records))
        run.mark_complete(True)
    n_read = len(data.records)
    print(f"read {n_read} comments from {cfg.input}")
    if data.skipped:
        print("skipped unreadable rows: " + ", ".join(f"{k}: {v}" for k, v in sorted(data.skipped.items())))
    print_drop_table([*FILTER_REASONS, DUPLICATE, *sorted(set(dropped) - {*FILTER_REASONS, DUPLICATE})], dropped)
    print(f"kept {len(kept)} of {n_read} comments -> {cfg.output}")
    return 0


def usable_rows(data, skip_bad_rows: bool) -> list[dict]:
    """The rows of a processed file with a usable id and a text (or no) comment; any other row is an error naming
    its line, or with --skip-bad-rows a counted skip in ``data.skipped``."""
    from socialsynth.jobs.prepare.reddit import usable_id

    rows = []
    for row, line in zip(data.records, data.line_numbers, strict=True):
        if not usable_id(row["id"]):
            problem, name = f"not a usable id: {row['id']!r} (ids are non-empty strings or numbers)", "id"
        elif row["comment"] is not None and not isinstance(row["comment"], str):
            problem, name = f"a {type(row['comment']).__name__} is not a comment's text", "comment"
        else:
            rows.append(row)
            continue
        if not skip_bad_rows:
            raise InputError(problem, path=data.path, line=line, field=name)
        data.skipped[f"bad {name}"] += 1
    return rows


def print_drop_table(reasons: Sequence[str], dropped: Counter) -> None:
    width = max(len("dropped because"), *(len(r) for r in reasons))
    print(f"{'dropped because':<{width}}  count")
    for reason in reasons:
        print(f"{reason:<{width}}  {dropped.get(reason, 0):>5}")
    print(f"{'total dropped':<{width}}  {sum(dropped.values()):>5}")


def prepare_pair(cfg: PrepareConfig) -> int:
    """Comments joined to their submissions (--comments, --submissions), streamed."""
    from socialsynth.jobs.prepare.reddit import KeptWriter, prepare_sources
    from socialsynth.jobs.prepare.sources import COMMENT_COLUMNS, SUBMISSION_COLUMNS, RowSource

    on_bad_row = "skip" if cfg.skip_bad_rows else "error"
    comments = RowSource(cfg.comments, on_bad_row=on_bad_row)
    submissions = RowSource(cfg.submissions, on_bad_row=on_bad_row)
    with JobRun("prepare", record_file(cfg), cfg, resumable=False) as run:
        writer = KeptWriter(cfg.output, split=cfg.split_by_subreddit)
        report = prepare_sources(
            comments,
            submissions,
            writer,
            subreddits=cfg.subreddits,
            comment_columns=COMMENT_COLUMNS.with_overrides(cfg.comment_fields),
            submission_columns=SUBMISSION_COLUMNS.with_overrides(cfg.submission_fields),
        )
        run.meta.update(report.to_json())
        run.note_items(report.n_comments)
        run.mark_complete(True)
    print_pair_report(report, cfg.output, run.path)
    return 0


def _print_sources(report) -> None:
    for kind, source in (("submissions", report.submissions), ("comments", report.comments)):
        print(f"{kind}: read {source.rows_read} rows from {source.path}")
        if source.skipped:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(source.skipped.items()))
            print(f"  skipped unreadable rows: {reasons}")
        used = ", ".join(f"{name}={'|'.join(sorted(cols))}" for name, cols in source.columns_used.items())
        print(f"  columns: {used or 'none'}")


def _print_kept(report, output: Path) -> None:
    kept = dict(report.kept)
    for name in report.subreddits:  # a requested subreddit with nothing kept is shown as 0
        if not any(name.lower() == k.lower() for k in kept):
            kept[name] = 0
    if kept:
        width = max(len(name or "(none)") for name in kept)
        print("kept per subreddit:")
        for name, count in sorted(kept.items(), key=lambda item: (-item[1], item[0].lower())):
            path = report.outputs.get(name)
            where = f"  -> {path}" if path and len(report.outputs) > 1 else ""
            print(f"  {name or '(none)':<{width}}  {count:>6}{where}")
    files = f" ({len(report.outputs)} files)" if len(report.outputs) > 1 else ""
    print(f"kept {sum(kept.values())} of {report.n_comments} comments -> {output}{files}")


def print_pair_report(report, output: Path, meta: Path) -> None:
    from socialsynth.jobs.prepare.reddit import DUPLICATE, FILTER_REASONS, JOIN_REASONS

    _print_sources(report)
    not_held = ", ".join(f"{k}: {v}" for k, v in sorted(report.submissions_not_held.items()))
    print(f"held {report.submissions_held} submissions in memory" + (f" (not held: {not_held})" if not_held else ""))
    print_drop_table([*FILTER_REASONS, *JOIN_REASONS, DUPLICATE], report.dropped)
    not_checked = report.not_checked()
    if not_checked:
        print(f"not checked: {', '.join(not_checked)} (columns absent)")
    partly = [f"{r} ({report.unknown[r]})" for r in FILTER_REASONS if r not in not_checked and report.unknown[r]]
    if partly:
        print(f"unknown for some comments, which were kept: {', '.join(partly)}")
    _print_kept(report, output)
    print(f"wrote {meta}")
