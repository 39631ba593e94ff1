"""Command line of the normness job: `generate_synthetic_data.py` and `socialsynth norms` call :func:`main`.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.norms.config import NormsConfig

PROG = "generate_synthetic_data.py"
DESCRIPTION = """Normness distillation (ValueScope): rewrite each Reddit comment at five levels of one norm dimension
(formality, politeness, ...) with an LLM, rate the original and every rewrite, and flag bad rewrites.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels
"""


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse(NormsConfig, argv, prog=PROG, description=DESCRIPTION)
    setup_logging(cfg.verbose)
    if cfg.judge_agreement is not None:
        return run_judge(cfg)
    from socialsynth.jobs.norms.job import format_summary, run

    summary = run(cfg, command=_command(argv))
    print(format_summary(summary))
    return 0


def _command(argv: Sequence[str] | None) -> str:
    """The command a rerun repeats (in the run record and the resume hint)."""
    if argv is None:
        return "python " + " ".join(sys.argv)
    return f"python {PROG} " + " ".join(argv)


def run_judge(cfg: NormsConfig) -> int:
    """--judge-agreement: rate both comments of each labelled pair per dimension; print and write the agreement."""
    from collections import Counter

    from socialsynth.core.io import atomic_write_json
    from socialsynth.jobs.norms.judge import drop_long_pairs, format_report, judge_agreement, load_pairs
    from socialsynth.jobs.norms.rewrite import Rater
    from socialsynth.prompts import load_template

    skipped: Counter = Counter()
    rows, dims = load_pairs(cfg.judge_agreement, cfg.judge_topics, skipped)
    backend = cfg.engine().load()
    rating_params = cfg.sampling.params(temperature=0.0, max_new_tokens=12)  # answers, not prose: greedy and brief
    if cfg.rating_sampling == "rewrite":  # the research code rated with its rewriting settings
        rating_params = cfg.params()
    template = load_template(cfg.rating_template) if cfg.rating_template else None

    def rater_for(dim):
        return Rater(backend, dim, cfg.rating_method, template, rating_params, parse=cfg.rating_parse)

    rows = drop_long_pairs(rows, dims, rater_for, backend.context_length(), skipped)
    report = judge_agreement(rater_for, rows, dims)
    print(f"{len(rows)} pairs from {cfg.judge_agreement}; model {cfg.model.model}; rating method {cfg.rating_method}")
    if skipped:
        print("skipped pairs: " + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())))
    print(format_report(report))
    out = Path(cfg.output_dir) / f"judge_agreement_{Path(cfg.judge_agreement).stem}_{cfg.rating_method}.json"
    atomic_write_json(
        out,
        {
            "input": str(cfg.judge_agreement),
            "topics": cfg.judge_topics,
            "model": backend.describe(),
            "rating_method": cfg.rating_method,
            "rating_method_used": report.methods_used,
            "rating_method_notes": report.method_notes,
            "skipped": dict(skipped),
            "report": report.to_dict(),
        },
    )
    print(f"written: {out}")
    return 0
