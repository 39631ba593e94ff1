"""The case types of the hostile-input corpus (see conftest.py): kept apart from conftest so that test modules and
the fixture share one copy of each class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Error:
    """Exit 2 with one stderr line naming ``needle``."""

    needle: str
    code: int = 2


@dataclass(frozen=True)
class Skip:
    """Exit 0 with ``needle`` (the reason of a counted skip) in stdout, stderr or ``record`` (a file in tmp_path)."""

    needle: str
    record: str | None = None


@dataclass(frozen=True)
class Case:
    id: str
    argv: Sequence[str]
    expect: Error | Skip
    setup: Callable[[Path], dict] | None = field(default=None, compare=False)


def case_params(cases: Sequence[Case]) -> list:
    """``pytest.mark.parametrize`` values with readable ids."""
    return [pytest.param(c, id=c.id) for c in cases]
