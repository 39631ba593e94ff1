"""Helpers shared by the tests: run a top-level script in the repository, tables of flag cases written one a
line, and small CSV/JSONL file helpers."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run_script(script: str, *args, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` in the repository, offline, one thread, outside any SLURM array; text output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO,
        env={**base, **OFFLINE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flag_cases(text: str) -> list[tuple[list[str], str]]:
    """Parse ``ARGS... [-> NAME]`` lines (shell quoting; ``#`` starts a comment) into (argv, expected name) pairs.

    Without ``->`` the expected name is the line's first word, the flag the error must name:

    >>> flag_cases('''
    ...     -b 0
    ...     --min-words 20 --max-words 10   -> --max-words
    ...     --embedding-model ' '           # blank
    ... ''')
    [(['-b', '0'], '-b'), (['--min-words', '20', '--max-words', '10'], '--max-words'), \
(['--embedding-model', ' '], '--embedding-model')]
    """
    cases = []
    for line in text.strip().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if "->" in words:
            at = words.index("->")
            cases.append((words[:at], words[at + 1]))
        else:
            cases.append((words, words[0]))
    return cases


def case_id(argv: list[str]) -> str:
    return " ".join(argv)


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write dict rows as a CSV file with a header (the first row's keys); returns the path."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSONL file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
