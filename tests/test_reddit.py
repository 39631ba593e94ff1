"""The research code's comment filters (socialsynth.reddit)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from socialsynth.reddit import FILTER_REASONS, filter_reason, prepare_comments


@pytest.fixture(scope="module")
def raw_rows(askmen_raw_file):
    return [json.loads(line) for line in askmen_raw_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_each_raw_row_gets_exactly_its_expected_reason(raw_rows):
    assert len(raw_rows) == 52
    for row in raw_rows:
        assert filter_reason(row) == row.get("_expected_filter"), row["id"]


def test_prepare_comments_counts_reasons_and_drops_private_fields(raw_rows, askmen_file):
    kept, dropped = prepare_comments(raw_rows)
    expected = Counter(r["_expected_filter"] for r in raw_rows if "_expected_filter" in r)
    assert dropped == expected
    assert set(dropped) <= set(FILTER_REASONS)
    assert len(kept) == 40
    assert all(not k.startswith("_") for rec in kept for k in rec)
    # Same records, in the same order, as the prepared sample shipped in data/.
    prepared = [json.loads(line) for line in askmen_file.read_text(encoding="utf-8").splitlines()]
    assert kept == prepared


BASE = {
    "id": "x",
    "parent_id": "t3_a",
    "link_id": "t3_a",
    "comment": "A fine comment.",
    "edited": False,
    "submission_has_media": False,
    "created_submission": 1_000_000,
    "created_comment": 1_000_100,
    "retrieved_on": 1_000_100 + 3 * 86400,
}


@pytest.mark.parametrize(
    "change,reason",
    [
        ({}, None),
        ({"parent_id": "t1_b"}, "not_top_level"),
        ({"parent_id": "t1_b", "link_id": None}, "not_top_level"),
        ({"comment": "[deleted]"}, "removed_or_deleted"),
        ({"comment": "  [removed] "}, "removed_or_deleted"),
        ({"comment": ""}, "removed_or_deleted"),
        ({"edited": 1_000_500}, "edited"),
        ({"edited": "false"}, None),
        ({"edited": 0}, None),
        ({"comment": "https://example.com/x?y=1"}, "single_link"),
        ({"comment": "see https://example.com for details"}, None),
        ({"submission_has_media": True}, "media_post"),
        ({"created_comment": 1_000_000 + 86400 + 1, "retrieved_on": 1_000_000 + 10 * 86400}, "late_comment"),
        ({"retrieved_on": 1_000_100 + 3600}, "retrieved_too_soon"),
        ({"created_comment": None}, None),  # unknown times: nothing to judge by
    ],
)
def test_filter_reason_rules(change, reason):
    assert filter_reason({**BASE, **change}) == reason
