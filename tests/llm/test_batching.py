"""plan_batches and common_prefix_length."""

from __future__ import annotations

import random

import pytest

from socialsynth.llm.batching import common_prefix_length, plan_batches


def cost(batch, lengths, extra):
    return len(batch) * (max(lengths[i] for i in batch) + extra)


CASES = [
    # (lengths, max_batch_size, max_batch_tokens, extra_per_row)
    ([5, 3, 9, 1, 7, 7, 2], 3, 10_000, 0),
    ([5, 3, 9, 1, 7, 7, 2], 64, 20, 0),
    ([100, 1, 1, 1, 50, 2], 4, 120, 10),
    ([500, 3, 4], 8, 100, 0),  # one request over the budget still gets a batch
    ([7] * 10, 3, 1000, 5),  # ties
    ([1], 1, 1, 0),
]
rng = random.Random(1234)
for _ in range(30):
    n = rng.randint(1, 60)
    CASES.append(
        ([rng.randint(1, 300) for _ in range(n)], rng.randint(1, 16), rng.randint(50, 4000), rng.randint(0, 64))
    )


@pytest.mark.parametrize("lengths,max_rows,budget,extra", CASES)
def test_plan_batches_properties(lengths, max_rows, budget, extra):
    batches = plan_batches(lengths, max_rows, budget, extra)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths))), "every request exactly once"
    for b in batches:
        assert 1 <= len(b) <= max_rows
        if len(b) > 1:
            assert cost(b, lengths, extra) <= budget
    # Sorted by length: batches are contiguous runs of the length order, longest batch first.
    for a, b in zip(batches, batches[1:], strict=False):
        assert min(lengths[i] for i in a) >= max(lengths[i] for i in b)


def test_plan_batches_longest_first_and_small_padding():
    lengths = [10, 200, 11, 199, 12, 198]
    batches = plan_batches(lengths, max_batch_size=3, max_batch_tokens=10_000)
    assert [sorted(b) for b in batches] == [[1, 3, 5], [0, 2, 4]]


def test_plan_batches_over_budget_request_alone():
    batches = plan_batches([1000, 5, 5], max_batch_size=8, max_batch_tokens=50)
    assert [0] in batches
    assert sorted(sum(batches, [])) == [0, 1, 2]


def test_plan_batches_edge_cases():
    assert plan_batches([], 4, 100) == []
    with pytest.raises(ValueError):
        plan_batches([1, 2], 0, 100)


@pytest.mark.parametrize(
    "seqs,expected",
    [
        ([], 0),
        ([[1, 2, 3]], 0),
        ([[1, 2, 3], [1, 2, 3]], 3),
        ([[1, 2, 3], [4, 2, 3]], 0),
        ([[1, 2, 3, 4], [1, 2, 9], [1, 2, 3]], 2),
        ([[1, 2, 3], [1, 2]], 2),
        ([(5, 6, 7), (5, 6, 8)], 2),
        ([[1, 2], []], 0),
    ],
)
def test_common_prefix_length(seqs, expected):
    assert common_prefix_length(seqs) == expected


def test_group_by_identical_keeps_first_appearance_order():
    from socialsynth.llm.batching import group_by_identical

    seqs = [[1, 2], [3], [1, 2], [], [3], [1, 2, 3], []]
    assert group_by_identical(seqs) == [[0, 2], [1, 4], [3, 6], [5]]
    assert group_by_identical([]) == []


@pytest.mark.parametrize("lengths,max_rows,budget,extra", CASES)
def test_plan_batches_with_a_padding_cap_keeps_the_other_properties(lengths, max_rows, budget, extra):
    batches = plan_batches([n * 20 for n in lengths], max_rows, budget * 20, extra, max_padding=0.5)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for a, b in zip(batches, batches[1:], strict=False):
        assert min(lengths[i] for i in a) >= max(lengths[i] for i in b)


def test_plan_batches_padding_cap_keeps_one_long_text_from_padding_many_short_ones():
    from socialsynth.llm.batching import PADDING_CUT_MIN_TOKENS

    lengths = [40] * 29 + [300]  # comments: many short ones and one long one, as in data/askmen.jsonl
    assert 30 * 300 > 1.5 * sum(lengths)
    assert plan_batches(lengths, 64, 100_000) == [list(range(30))]  # without a cap: one batch, 4.9x padded
    capped = plan_batches(lengths, 64, 100_000, max_padding=0.5)
    assert capped == [[29], list(range(29))]
    for batch in capped:
        real = sum(lengths[i] for i in batch)
        assert len(batch) * max(lengths[i] for i in batch) <= 1.5 * real
    # Small batches are not cut: their matmuls are too small for padding to matter.
    assert plan_batches([5] * 10 + [50], 64, 100_000, max_padding=0.5) == [list(range(11))]
    assert sum([5] * 10) < PADDING_CUT_MIN_TOKENS
