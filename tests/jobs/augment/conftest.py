"""Fixtures shared by the augmentation tests."""

from __future__ import annotations

import pytest

from tests.helpers import write_csv


@pytest.fixture
def labelled(tmp_path):
    """26 labelled comments: 20 ordinary (bad=0) and 6 insults (bad=1)."""
    rows = [
        {"id": f"r{i}", "comment": f"ordinary friendly comment number {i} about things", "bad": 0} for i in range(20)
    ]
    rows += [{"id": f"t{i}", "comment": f"you are a total idiot number {i}", "bad": 1} for i in range(6)]
    return write_csv(tmp_path / "real.csv", rows)
