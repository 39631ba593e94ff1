#!/usr/bin/env python
"""Instruction-tuning data from Bluesky persona clusters (BluePrint instruct_dataset): turn each cluster file of
cluster_users.py into needle-in-a-haystack, keyword-post and completion examples (plus LLM-written summarise and
paraphrase examples with --llm-fraction > 0).

    python build_instruct_dataset.py -i output/bluesky/processed_10_clusters -o output/bluesky/instruct_10
    python build_instruct_dataset.py -i processed_10_clusters --llm-fraction 0.2 -m Qwen/Qwen2.5-1.5B-Instruct

Each output line is a JSON list of messages: system (the instruction), optionally context (a JSON list of
{user_id, text}), and assistant, always a JSON string {"text": ...} (the seed's keyword task wrote raw text).
Dolly-15k is mixed in from a local file with --dolly-path (--dolly-fraction, 0.2 as the seed);
--preset blueprint replays BluePrint's settings and file names:

    python build_instruct_dataset.py --preset blueprint -i processed_25_clusters -o instruct --dolly-path dolly.jsonl
"""

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.bluesky.cli import main_instruct as main

if __name__ == "__main__":
    sys.exit(run_main(main))
