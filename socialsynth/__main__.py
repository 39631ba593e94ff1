"""The `socialsynth` umbrella command (also `python -m socialsynth`).

    socialsynth prepare --input RAW.jsonl -o data/askmen.jsonl     # apply the research code's comment filters
    socialsynth prepare --comments RC_2019-04.zst --submissions RS_2019-04.zst --subreddit AskMen -o data/askmen.jsonl
    socialsynth prepare --comments comments.csv --posts posts.csv --split-by-subreddit -o data/college/
    socialsynth merge output/askmen_formality.jsonl                 # join the shards of an array job

The research jobs themselves are the top-level scripts (`python generate_synthetic_data.py ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from socialsynth import __version__
from socialsynth.core.cli import HelpFormatter, run_main, setup_logging
from socialsynth.core.errors import InputError

PROG = "socialsynth"


def build_parser() -> argparse.ArgumentParser:
    from socialsynth.jobs.prepare.sources import COMMENT_COLUMNS, SUBMISSION_COLUMNS

    COMMENT_FIELDS, SUBMISSION_FIELDS = list(COMMENT_COLUMNS.candidates), list(SUBMISSION_COLUMNS.candidates)
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    prepare = commands.add_parser(
        "prepare",
        help="filter raw Reddit comments into the input of generate_synthetic_data.py",
        description="Keep top-level comments whose score means something (the research code's filters: "
        "not top-level, removed/deleted, edited, a single link, media posts, posted more than 24 h after "
        "the post, crawled less than 24 h after posting) and write them as JSON lines.\n\n"
        "Input is either one file already in the processed form (--input), or a comments file and a submissions "
        "file (--comments and --submissions): Pushshift dumps (JSON lines, .zst as downloaded) or flat tables "
        "(CSV/TSV/Parquet). Each comment is joined to its post by id. Column names are detected (comment text "
        "from body/text/comment, score from score/upvotes/label, ...); pin others with --comment-column and "
        "--submission-column. A filter whose input column is absent keeps every comment and the report says so.",
        formatter_class=HelpFormatter,
    )
    sources = prepare.add_argument_group("input")
    sources.add_argument(
        "--input",
        "-i",
        type=Path,
        default=None,
        metavar="RAW",
        help="comments already joined to their posts: .jsonl, .csv, .tsv or .parquet (needs fields id and comment)",
    )
    sources.add_argument(
        "--comments",
        type=Path,
        default=None,
        metavar="FILE",
        help="comments: a Pushshift dump (.zst, .jsonl, .jsonl.gz) or a table (.csv, .tsv, .parquet)",
    )
    sources.add_argument(
        "--submissions",
        "--posts",
        type=Path,
        default=None,
        metavar="FILE",
        help="the posts the comments belong to, in the same kinds of file",
    )
    sources.add_argument(
        "--comment-column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read our comment FIELD from COLUMN (fields: " + ", ".join(COMMENT_FIELDS) + "); repeatable",
    )
    sources.add_argument(
        "--submission-column",
        "--post-column",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="read our submission FIELD from COLUMN (fields: " + ", ".join(SUBMISSION_FIELDS) + "); repeatable",
    )
    sources.add_argument(
        "--subreddit",
        action="append",
        default=[],
        metavar="NAME",
        help="keep only these subreddits (case-insensitive; repeatable or comma-separated; with --comments)",
    )
    prepare.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT",
        help="the JSONL file to write; with --split-by-subreddit a folder receiving <subreddit>.jsonl each",
    )
    prepare.add_argument(
        "--split-by-subreddit",
        action="store_true",
        help="write one <subreddit>.jsonl per subreddit into the folder -o (the layout generate_synthetic_data.py "
        "-d DIR -r SUB reads)",
    )
    prepare.add_argument(
        "--allow-pickle",
        "--allow_pickle",
        action="store_true",
        help="allow the research code's .pkl input (pickle can run code: only for files you trust)",
    )
    prepare.add_argument(
        "--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of stopping at the first"
    )

    # Only listed here for `socialsynth --help`; `merge` is dispatched to socialsynth.core.io.main_merge before parsing.
    commands.add_parser(
        "merge",
        help="merge OUT.shard-I-of-N.jsonl files into OUT.jsonl, checking nothing is missing or doubled "
        "(socialsynth merge OUT.jsonl [--key id] [--expected N] [--allow-duplicates])",
        add_help=False,
    )
    return parser


def run_prepare(args: argparse.Namespace) -> int:
    """`socialsynth prepare`: one processed file (--input), or comments joined to submissions (--comments)."""
    pair = args.comments is not None or args.submissions is not None
    if args.input is not None and pair:
        raise InputError("give either --input RAW or --comments FILE --submissions FILE, not both")
    if pair:
        if args.comments is None or args.submissions is None:
            missing = "--comments" if args.comments is None else "--submissions"
            raise InputError(f"--comments and --submissions go together: {missing} is missing")
        return _prepare_pair(args)
    if args.input is None:
        raise InputError("give --input RAW, or --comments FILE and --submissions FILE")
    only_pair = [name for name, on in _pair_only_options(args).items() if on]
    if only_pair:
        raise InputError(f"{', '.join(only_pair)} only work with --comments/--submissions, not with --input")
    return _prepare_single(args)


def _pair_only_options(args: argparse.Namespace) -> dict[str, bool]:
    return {
        "--subreddit": bool(args.subreddit),
        "--split-by-subreddit": args.split_by_subreddit,
        "--comment-column": bool(args.comment_column),
        "--submission-column": bool(args.submission_column),
    }


def _prepare_single(args: argparse.Namespace) -> int:
    from socialsynth.core.io import atomic_write_text, read_records
    from socialsynth.jobs.prepare.reddit import FILTER_REASONS, prepare_comments

    data = read_records(
        args.input,
        allow_pickle=args.allow_pickle,
        required=("id", "comment"),
        on_bad_row="skip" if args.skip_bad_rows else "error",
    )
    kept, dropped = prepare_comments(data.records)
    text = "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in kept)
    atomic_write_text(args.output, text)

    n_read = len(data.records)
    print(f"read {n_read} comments from {args.input}")
    if data.skipped:
        print("skipped unreadable rows: " + ", ".join(f"{k}: {v}" for k, v in sorted(data.skipped.items())))
    _print_drop_table(list(FILTER_REASONS) + sorted(set(dropped) - set(FILTER_REASONS)), dropped)
    print(f"kept {len(kept)} of {n_read} comments -> {args.output}")
    return 0


def _print_drop_table(reasons: Sequence[str], dropped: Counter) -> None:
    width = max(len("dropped because"), *(len(r) for r in reasons))
    print(f"{'dropped because':<{width}}  count")
    for reason in reasons:
        print(f"{reason:<{width}}  {dropped.get(reason, 0):>5}")
    print(f"{'total dropped':<{width}}  {sum(dropped.values()):>5}")


def _column_overrides(values: Sequence[str], option: str) -> dict[str, str]:
    """``["label=ups", ...]`` -> ``{"label": "ups"}``; a malformed item is an InputError naming the option."""
    out = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise InputError(f"expected FIELD=COLUMN, got {value!r}", field=option)
        out[name.strip()] = column.strip()
    return out


def _subreddit_names(values: Sequence[str]) -> list[str]:
    """``--subreddit AskMen --subreddit r/college,GradSchool`` -> ["AskMen", "college", "GradSchool"]."""
    names = []
    for value in values:
        for name in value.split(","):
            name = name.strip().removeprefix("/").removeprefix("r/")
            if name and name.lower() not in {n.lower() for n in names}:
                names.append(name)
    return names


def _prepare_pair(args: argparse.Namespace) -> int:
    from socialsynth.core.io import atomic_write_json, meta_path
    from socialsynth.jobs.prepare.reddit import KeptWriter, prepare_sources
    from socialsynth.jobs.prepare.sources import COMMENT_COLUMNS, SUBMISSION_COLUMNS, RowSource

    comment_columns = COMMENT_COLUMNS.with_overrides(_column_overrides(args.comment_column, "--comment-column"))
    submission_columns = SUBMISSION_COLUMNS.with_overrides(
        _column_overrides(args.submission_column, "--submission-column")
    )
    on_bad_row = "skip" if args.skip_bad_rows else "error"
    comments = RowSource(args.comments, on_bad_row=on_bad_row)
    submissions = RowSource(args.submissions, on_bad_row=on_bad_row)
    writer = KeptWriter(args.output, split=args.split_by_subreddit)
    report = prepare_sources(
        comments,
        submissions,
        writer,
        subreddits=_subreddit_names(args.subreddit),
        comment_columns=comment_columns,
        submission_columns=submission_columns,
    )
    meta = args.output / "prepare.meta.json" if args.split_by_subreddit else meta_path(args.output)
    atomic_write_json(meta, report.to_json())
    _print_pair_report(report, args.output, meta)
    return 0


def _print_pair_report(report, output: Path, meta: Path) -> None:
    from socialsynth.jobs.prepare.reddit import FILTER_REASONS, JOIN_REASONS

    for kind, source in (("submissions", report.submissions), ("comments", report.comments)):
        print(f"{kind}: read {source.rows_read} rows from {source.path}")
        if source.skipped:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(source.skipped.items()))
            print(f"  skipped unreadable rows: {reasons}")
        used = ", ".join(f"{name}={'|'.join(sorted(cols))}" for name, cols in source.columns_used.items())
        print(f"  columns: {used or 'none'}")
    not_held = ", ".join(f"{k}: {v}" for k, v in sorted(report.submissions_not_held.items()))
    print(f"held {report.submissions_held} submissions in memory" + (f" (not held: {not_held})" if not_held else ""))
    _print_drop_table([*FILTER_REASONS, *JOIN_REASONS], report.dropped)
    not_checked = report.not_checked()
    if not_checked:
        print(f"not checked: {', '.join(not_checked)} (columns absent)")
    partly = [f"{r} ({report.unknown[r]})" for r in FILTER_REASONS if r not in not_checked and report.unknown[r]]
    if partly:
        print(f"unknown for some comments, which were kept: {', '.join(partly)}")
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
    print(f"wrote {meta}")


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        from socialsynth.core.io import main_merge

        return main_merge(argv)
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.command == "prepare":
        return run_prepare(args)
    raise AssertionError(f"unhandled command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `socialsynth` and `python -m socialsynth`; returns the exit code."""
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
