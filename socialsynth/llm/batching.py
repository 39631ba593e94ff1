"""Plan batches: sort requests by length into buckets and cut them by a token budget.

Sorting keeps padding small; the budget bounds memory (rows x (prefix + prompt + new tokens)) so one long
prompt cannot blow up a batch of 64.
"""

from __future__ import annotations

from typing import Sequence


def plan_batches(
    lengths: Sequence[int],
    max_batch_size: int,
    max_batch_tokens: int,
    extra_per_row: int = 0,
) -> list[list[int]]:
    """Group request indices into batches of similar length.

    A batch costs `rows * (longest length in it + extra_per_row)` tokens and holds at most `max_batch_size`
    rows; a single request over the budget still gets a batch of its own. Longest batches come first so an
    out-of-memory error shows up at once, not at the end of a long job.
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], lengths[current[-1]] if current else 0)
        cost = (len(current) + 1) * (longest + extra_per_row)
        if current and (len(current) >= max_batch_size or cost > max_batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    batches.reverse()
    return batches


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences (0 for fewer than two)."""
    if len(sequences) < 2:
        return 0
    first = sequences[0]
    n = min(len(s) for s in sequences)
    for seq in sequences[1:]:
        k = 0
        while k < n and seq[k] == first[k]:
            k += 1
        n = k
        if n == 0:
            break
    return n
