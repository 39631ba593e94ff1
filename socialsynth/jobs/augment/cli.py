"""``augment_labels.py``: flags (or ``--config job.yaml``) -> :class:`AugmentConfig` -> :func:`run`."""

from __future__ import annotations

from collections.abc import Sequence

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.augment.config import AugmentConfig

DESCRIPTION = (
    "Rare-class augmentation (Capstone-Meta): generate synthetic examples of a sparse label (e.g. toxic) with an\n"
    "LLM from few-shot prompts of real examples, flag bad ones, and build training sets at several positive rates\n"
    "(the sparsity ladder), optionally training a classifier on each."
)

EPILOG = """Examples:
  python augment_labels.py --input data/comments_labelled.csv --label-col toxic --target-label 1 \\
      --label-name toxic --definition-file data/label_definitions.yaml --n 50
  python augment_labels.py --input jigsaw.csv --text-col comment_text --label-col is_bad --target-label 1 \\
      --label-name toxic --definition-file data/label_definitions.yaml --n 200 \\
      --positive-rates 0.0025,0.01,0.03,0.05 --evaluate
  python augment_labels.py --input jigsaw.csv ... --synthetic output/augment/synthetic_1.jsonl --positive-rates 0.05
  python augment_labels.py --preset capstone --input combined.csv --text-col message --label-col label \\
      --target-label 1 --n 13500     # the seed's Falcon-7B GPTQ, raw prompts, 70/15/15, 0.25/1/3/5 %
  python augment_labels.py --preset capstone ... --target-groups capstone --max-requests 14   # 14 identity groups
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, print the summary; bad input raises InputError (``run_main`` prints one line, exit 2)."""
    cfg = parse(AugmentConfig, argv, prog="augment_labels.py", description=DESCRIPTION, epilog=EPILOG)
    setup_logging(cfg.verbose)
    from socialsynth.jobs.augment.job import format_result, run

    print(format_result(run(cfg)))
    return 0
