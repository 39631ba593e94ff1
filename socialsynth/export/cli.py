"""`socialsynth export OUTPUT_DIR -o DIR [--format parquet|jsonl|hf]`: publish a job's outputs with a data card.

    socialsynth export output/ -o export/askmen                    # Parquet, one subset per run, README.md card
    socialsynth export output/ -o export/askmen --format hf        # datasets.load_from_disk("export/askmen")
    socialsynth export output/ -o export/askmen --license cc-by-nc-4.0 --push-to-hub me/askmen-formality

Every row of every record file is exported, failed ones with their status and reason; the card's counts are the
exported row counts. Nothing touches the network unless --push-to-hub is given (the repository is private unless
--public).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.core.io import atomic_write_text
from socialsynth.core.provenance import mask_secrets
from socialsynth.export.card import CardOptions, render_card
from socialsynth.export.config import ExportConfig
from socialsynth.export.tables import EXPORT_MARKER, plan_subsets
from socialsynth.export.writers import Written, write_hf, writer

PROG = "socialsynth export"
log = logging.getLogger(__name__)


def _positional_input(argv: Sequence[str]) -> list[str]:
    """``export OUTPUT_DIR ...`` -> ``export --input OUTPUT_DIR ...`` (the folder may come first, without a flag)."""
    args = [str(a) for a in argv]
    if args and not args[0].startswith("-"):
        return ["--input", args[0], *args[1:]]
    return args


def write_export(cfg: ExportConfig, folder: Path) -> list[Written]:
    """Write every subset of ``cfg.input`` into ``folder`` in ``cfg.format``; returns what was written."""
    subsets = plan_subsets(cfg.input, exclude=cfg.output)
    written = []
    for subset in subsets:
        if cfg.format == "hf":
            written.append(write_hf(subset, folder, cfg.max_rows_per_file, alone=len(subsets) == 1))
        else:
            written.append(writer(cfg.format)(subset, folder, cfg.max_rows_per_file))
    return written


def card_options(cfg: ExportConfig, fmt: str | None = None) -> CardOptions:
    return CardOptions(license=cfg.license, languages=cfg.language, public_viewer=cfg.public_viewer,
                       pretty_name=cfg.pretty_name, fmt=fmt or cfg.format)


def _hub_layout(written: list[Written]) -> list[Written]:
    """The subsets as ``push_to_hub`` lays them out on the Hub: ``<subset>/<split>-*.parquet``."""
    return [replace(w, patterns={s: f"{w.subset.name}/{s}-*" for s in w.rows}) for w in written]


def run_export(cfg: ExportConfig) -> dict:
    """Write the export (into a temporary folder beside ``cfg.output``, moved into place when complete, so a
    failed export leaves no half-written folder), then push it when asked. Returns a summary."""
    target = cfg.output
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        written = write_export(cfg, staging)
        card = render_card(written, card_options(cfg))
        atomic_write_text(staging / "README.md", card)
        (staging / EXPORT_MARKER).write_text("written by socialsynth export; not uploaded\n", encoding="utf-8")
        _replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = {"output": str(target), "format": cfg.format, "card": str(target / "README.md"),
               "subsets": {w.subset.name: dict(w.rows) for w in written}, "pushed": None}
    if cfg.push_to_hub:
        from socialsynth.export.hub import push

        try:
            summary["pushed"] = push(target, cfg.push_to_hub, written, fmt=cfg.format, private=cfg.hub_private,
                                     parquet_card=lambda: render_card(_hub_layout(written),
                                                                      card_options(cfg, "parquet")))
        except Exception as e:  # the network, the token, the Hub: the export itself is complete
            summary["push_error"] = mask_secrets(f"{type(e).__name__}: {e}".splitlines()[0])
    return summary


def _replace_folder(staging: Path, target: Path) -> None:
    """Move the finished export into place; an existing folder (allowed by --overwrite) is replaced."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def format_summary(summary: dict) -> str:
    lines = [f"{'subset':<32} {'split':<20} {'rows':>8}"]
    for subset, rows in summary["subsets"].items():
        lines += [f"{subset:<32} {split:<20} {n:>8}" for split, n in rows.items()]
    total = sum(n for rows in summary["subsets"].values() for n in rows.values())
    lines += [f"{total} rows exported as {summary['format']} to {summary['output']}", f"data card: {summary['card']}"]
    if summary["pushed"]:
        lines.append(f"pushed to {summary['pushed']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse(ExportConfig, _positional_input(sys.argv[1:] if argv is None else argv), prog=PROG,
                description=__doc__)
    setup_logging(cfg.verbose)
    summary = run_export(cfg)
    print(format_summary(summary))
    if summary.get("push_error"):
        print(f"error: the push to {cfg.push_to_hub} failed ({summary['push_error']}); the export in "
              f"{summary['output']} is complete: fix the cause and push it again", file=sys.stderr)
        return 1
    return 0
