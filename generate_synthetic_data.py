#!/usr/bin/env python
"""Normness distillation (ValueScope): rewrite each Reddit comment at five levels of one norm dimension
(formality, politeness, ...) with an LLM, rate the original and every rewrite, and flag bad rewrites.

    python generate_synthetic_data.py -r askmen -n formality
    python generate_synthetic_data.py --judge-agreement pairs.csv      # rater vs human pairwise labels

The job lives in socialsynth.jobs.norms (config.py: the flags; job.py: the run; cli.py: this command).
"""

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.norms.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(run_main(main))
