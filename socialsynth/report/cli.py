"""Command line of ``socialsynth report``: one HTML page to read every run under an output folder.

    socialsynth report output/                      # writes output/report.html
    socialsynth report output/askmen_formality.meta.json -o ~/askmen.html
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from socialsynth.core.config import OneLineParser
from socialsynth.core.errors import InputError

PROG = "socialsynth report"
DESCRIPTION = """Write one self-contained HTML file (no server, no network: scripts, styles and plots inlined) that
shows every run under OUTPUT_DIR, found through the run records (*.meta.json): normness rewrites beside their
originals with word diffs, ratings and flags; rephrasings with replayed details highlighted; augmented items; cluster
cards; response predictions; classifier metrics. Lists are paged, sortable and filterable in the browser.

    socialsynth report output/
    socialsynth report output/ -o ~/report.html
"""


def parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("output_dir", metavar="OUTPUT_DIR",
                   help="a job's output folder (searched recursively for run records), or one *.meta.json")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="where to write the page (default: OUTPUT_DIR/report.html)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(None if argv is None else [str(a) for a in argv])
    out = Path(args.output) if args.output else None
    if out is not None and out.is_dir():
        raise InputError("is a folder; give the file to write (e.g. report.html)", path=out, field="-o")
    from socialsynth.report.build import build_report

    start = time.perf_counter()
    target = build_report(args.output_dir, out)
    size = target.stat().st_size
    print(f"report: {target} ({size / 1e6:.2f} MB, {time.perf_counter() - start:.1f} s)")
    return 0
