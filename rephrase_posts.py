#!/usr/bin/env python
"""Privacy-preserving rephrasing (socsys/synthetic): rewrite each post with one or more LLMs so that names,
ages, places, jobs and other personal details are replaced by plausible alternatives, then (optionally) audit
how linkable the synthetic posts still are to their originals.

    python rephrase_posts.py --input data/posts_sample.csv --audit
    python rephrase_posts.py --input posts.csv -q 4 --audit --search-temperatures 0.5:1.0:0.1 --search-sample 50 \\
        -m meta-llama/Llama-2-7b-chat-hf -m meta-llama/Meta-Llama-3-8B-Instruct -m HuggingFaceH4/zephyr-7b-beta

The flags, the job file (--config) and the job live in socialsynth/jobs/rephrase/ (`socialsynth rephrase` runs it
too).
"""

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.rephrase.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
