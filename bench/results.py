"""bench/results.json: every bench script adds its figures under its own key (the file is git-ignored: the
figures belong to the machine that measured them)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from socialsynth.core.io import atomic_write_json  # noqa: E402


def update_results(path: str | Path, key: str, figures: dict) -> None:
    """Replace `key` in the results file with `figures` (plus when they were measured), keeping the rest."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = {**figures, "measured_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    atomic_write_json(path, results)
