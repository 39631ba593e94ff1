#!/usr/bin/env python
"""Rare-class augmentation (Capstone-Meta): generate synthetic examples of a sparse label (e.g. toxic) with an
LLM from few-shot prompts of real examples, flag bad ones, and build training sets at several positive rates
(the sparsity ladder), optionally training a classifier on each.

    python augment_labels.py --input data/comments_labelled.csv --label-col toxic --target-label 1 \\
        --label-name toxic --definition-file data/label_definitions.yaml --n 50

`--help` has more examples. The job lives in socialsynth/jobs/augment (config.py: the flags; job.py: run).
"""

from __future__ import annotations

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.augment import cli


def main(argv=None) -> int:
    """Run the job; bad input prints one line and returns 2 (``run_main``)."""
    return run_main(lambda: cli.main(argv))


if __name__ == "__main__":
    sys.exit(main())
