"""Privacy-preserving rephrasing (socsys/synthetic): rewrite each post with one or more LLMs so that names,
ages, places, jobs and other personal details are replaced by plausible alternatives, then (optionally) audit
how linkable the synthetic posts still are to their originals.

    python rephrase_posts.py --input data/posts_sample.csv --audit
    python rephrase_posts.py --input posts.csv -q 4 --audit --search-temperatures 0.5:1.0:0.1 --search-sample 50 \\
        -m meta-llama/Llama-2-7b-chat-hf -m meta-llama/Meta-Llama-3-8B-Instruct -m HuggingFaceH4/zephyr-7b-beta
"""

from __future__ import annotations

from collections.abc import Sequence

from socialsynth.core.cli import setup_logging
from socialsynth.core.config import parse
from socialsynth.jobs.rephrase.config import RephraseConfig

PROG = "rephrase_posts.py"


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse(RephraseConfig, argv, prog=PROG, description=__doc__)
    setup_logging(cfg.verbose)
    from socialsynth.jobs.rephrase.job import format_summary, run

    command = None if argv is None else " ".join([PROG, *map(str, argv)])
    print(format_summary(run(cfg, command=command)))
    return 0
