"""Plan batches: sort requests by length into buckets and cut them by a token budget.

Sorting keeps padding small; the budget bounds memory (rows x (prefix + prompt + new tokens)) so one long
prompt cannot blow up a batch of 64.
"""

from __future__ import annotations

from collections.abc import Sequence

PADDING_CUT_MIN_TOKENS = 512  # smaller batches lose more to small matmuls than padding costs


def plan_batches(
    lengths: Sequence[int],
    max_batch_size: int,
    max_batch_tokens: int,
    extra_per_row: int = 0,
    max_padding: float | None = None,
) -> list[list[int]]:
    """Group request indices into batches of similar length.

    A batch costs `rows * (longest length in it + extra_per_row)` tokens and holds at most `max_batch_size`
    rows; a single request over the budget still gets a batch of its own. Longest batches come first so an
    out-of-memory error shows up at once, not at the end of a long job.

    `max_padding` (for single forward passes: scoring, perplexity) also cuts a batch before its padded size
    (rows x longest) would exceed (1 + max_padding) x its real tokens, once it holds PADDING_CUT_MIN_TOKENS real
    tokens: Reddit comments range from 3 to 300 tokens, and one long comment in a batch of short ones made a
    perplexity pass 4.5x as large as its text. Decoding does not want this: its batches refill their rows.
    """
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        longest = max(lengths[i], lengths[current[-1]] if current else 0)
        cost = (len(current) + 1) * (longest + extra_per_row)
        padded = (
            max_padding is not None
            and real >= PADDING_CUT_MIN_TOKENS
            and (len(current) + 1) * longest > (1 + max_padding) * (real + lengths[i])
        )
        if current and (len(current) >= max_batch_size or cost > max_batch_tokens or padded):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
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


def group_by_prefix(sequences: Sequence[Sequence[int]], min_shared: int) -> list[list[int]]:
    """Split request indices into groups whose members share at least `min_shared` leading tokens.

    A job mixes prompt families (rewrite prompts, rating prompts with few-shot turns); each family has its
    own long shared head, and the head is only worth caching within a family. Sequences are sorted so that
    members of a family sit next to each other; a group ends where the shared head would drop below the
    threshold. Indices that share nothing with their neighbours form groups of one.
    """
    order = sorted(range(len(sequences)), key=lambda i: tuple(sequences[i]))
    groups: list[list[int]] = []
    shared = 0
    for i in order:
        if groups:
            first = sequences[groups[-1][0]]
            k = common_prefix_length([first, sequences[i]])
            if min(shared, k) >= min_shared:
                groups[-1].append(i)
                shared = min(shared, k)
                continue
        groups.append([i])
        shared = len(sequences[i])
    return groups


def group_by_identical(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """Request indices grouped by identical sequence, in order of first appearance.

    Likelihood rating asks the same few prompts ("write a comment at level k") of every text: requests with the
    same prompt can share the prompt's whole key/value cache, which `group_by_prefix` (one group per family,
    cut to the head all members share) cannot give, since the five level prompts differ after a short head.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, seq in enumerate(sequences):
        groups.setdefault(tuple(seq), []).append(i)
    return list(groups.values())
