"""Tables of command-line cases written one a line, for parametrized tests of the jobs' flag validation."""

from __future__ import annotations

import shlex


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
