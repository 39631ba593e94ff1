"""The `socialsynth` command (also `python -m socialsynth`): every job, plus merge.

    socialsynth norms -r askmen -n formality              # = python generate_synthetic_data.py -r askmen -n formality
    socialsynth rephrase --input posts.csv                # = python rephrase_posts.py ...
    socialsynth prepare --input RAW.jsonl -o data/askmen.jsonl
    socialsynth merge output/askmen_formality.jsonl       # join the shards of an array job
    socialsynth norms --config job.yaml                   # any job from a job file (--print-config writes one)

`socialsynth JOB --help` lists a job's flags. The research code's commands (the top-level scripts) run the same
jobs.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from socialsynth import __version__
from socialsynth.core.cli import run_main

PROG = "socialsynth"

# name -> (module:function, what it does, the research script it replaces)
JOBS: dict[str, tuple[str, str, str]] = {
    "norms": ("socialsynth.jobs.norms.cli:main", "rewrite comments at levels of a norm dimension, rate and filter",
              "generate_synthetic_data.py"),
    "prepare": ("socialsynth.jobs.prepare.cli:main", "filter raw Reddit comments into the normness job's input", ""),
    "rephrase": ("socialsynth.jobs.rephrase.cli:main", "privacy-preserving rephrasing by several LLMs, audit",
                 "rephrase_posts.py"),
    "augment": ("socialsynth.jobs.augment.cli:main", "rare-class generation and training sets at set positive rates",
                "augment_labels.py"),
    "train": ("socialsynth.jobs.train.cli:main", "text classifiers: multi-label, binary/multi-class, regression",
              "train_classifier.py"),
    "cluster": ("socialsynth.jobs.bluesky.cli:main_cluster", "Bluesky events -> users -> persona clusters",
                "cluster_users.py"),
    "instruct": ("socialsynth.jobs.bluesky.cli:main_instruct", "instruction data per persona cluster",
                 "build_instruct_dataset.py"),
    "respond": ("socialsynth.jobs.response.cli:main", "persona-conditioned response prediction (PAC-LoRA)",
                "predict_responses.py"),
    "report": ("socialsynth.report.cli:main", "one offline HTML page to read any job's outputs", ""),
    "export": ("socialsynth.export.cli:main", "publish outputs: Parquet, JSONL or a datasets folder with a data card",
               ""),
    "rate-sheet": ("socialsynth.jobs.norms.ratesheet:main", "a blind sheet of rewrite pairs for people to rate", ""),
    "merge": ("socialsynth.core.merge:main_merge", "join the shards of an array job, checking nothing is missing or "
              "doubled", ""),
}
ALIASES = {"generate": "norms", "predict": "respond"}


def usage() -> str:
    lines = [f"usage: {PROG} JOB [flags]   ({PROG} JOB --help for a job's flags)", "", "jobs:"]
    for name, (_, what, script) in JOBS.items():
        also = f" (= {script})" if script else ""
        lines.append(f"  {name:<10} {what}{also}")
    return "\n".join(lines)


def job_main(name: str):
    """The ``main(argv)`` of a job, imported only when that job runs (start-up stays fast)."""
    target = JOBS[ALIASES.get(name, name)][0]
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\n" + usage())
        return 0
    if argv[0] == "--version":
        print(f"{PROG} {__version__}")
        return 0
    name = argv[0]
    if ALIASES.get(name, name) not in JOBS:
        print(f"{PROG}: error: unknown job {name!r}; jobs: {', '.join(JOBS)}", file=sys.stderr)
        return 2
    if name == "merge":  # merge parses its own "merge" word
        return job_main(name)(argv)
    return job_main(name)(argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `socialsynth` and `python -m socialsynth`; returns the exit code."""
    return run_main(lambda: _main(argv))


if __name__ == "__main__":
    sys.exit(main())
