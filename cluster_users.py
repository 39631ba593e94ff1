#!/usr/bin/env python
"""Bluesky persona clustering (BluePrint): parse Jetstream events, keep users who post in English, embed their
posts, cluster users into personas, and write one file of conversation chains and actions per cluster.

    python cluster_users.py --data-root /data/bluesky-2025-03 --start-date 1 --end-date 7 --n-clusters 25
    python cluster_users.py --data-root events.jsonl --auto-cluster --min-cluster-size 5 --n-workers 1
"""

import sys

from socialsynth.core.cli import run_main
from socialsynth.jobs.bluesky.cli import main_cluster as main

if __name__ == "__main__":
    sys.exit(run_main(main))
