"""The `socialsynth` umbrella command (also `python -m socialsynth`).

    socialsynth prepare --input RAW.jsonl -o data/askmen.jsonl     # apply the research code's comment filters
    socialsynth merge output/askmen_formality.jsonl                 # join the shards of an array job

The research jobs themselves are the top-level scripts (`python generate_synthetic_data.py ...`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .cli import HelpFormatter, run_main, setup_logging

PROG = "socialsynth"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    prepare = commands.add_parser(
        "prepare",
        help="filter raw Reddit comments into the input of generate_synthetic_data.py",
        description="Keep top-level comments whose score means something (the research code's filters: "
        "not top-level, removed/deleted, edited, a single link, media posts, posted more than 24 h after "
        "the post, crawled less than 24 h after posting) and write them as JSON lines.",
        formatter_class=HelpFormatter,
    )
    prepare.add_argument(
        "--input",
        "-i",
        type=Path,
        required=True,
        metavar="RAW",
        help="raw comments: .jsonl, .csv, .tsv or .parquet (needs fields id and comment)",
    )
    prepare.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUT.jsonl",
        help="where to write the kept comments, one JSON object per line",
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

    # Only listed here for `socialsynth --help`; `merge` is dispatched to socialsynth.io.main_merge before parsing.
    commands.add_parser(
        "merge",
        help="merge OUT.shard-I-of-N.jsonl files into OUT.jsonl, checking nothing is missing or doubled "
        "(socialsynth merge OUT.jsonl [--key id] [--expected N] [--allow-duplicates])",
        add_help=False,
    )
    return parser


def run_prepare(args: argparse.Namespace) -> int:
    from .io import atomic_write_text, read_records
    from .reddit import FILTER_REASONS, prepare_comments

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
    reasons = list(FILTER_REASONS) + sorted(set(dropped) - set(FILTER_REASONS))
    width = max(len("dropped because"), *(len(r) for r in reasons))
    print(f"{'dropped because':<{width}}  count")
    for reason in reasons:
        print(f"{reason:<{width}}  {dropped.get(reason, 0):>5}")
    print(f"{'total dropped':<{width}}  {sum(dropped.values()):>5}")
    print(f"kept {len(kept)} of {n_read} comments -> {args.output}")
    return 0


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        from .io import main_merge

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
