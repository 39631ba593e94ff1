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


def fake_generators(monkeypatch, fake_backend_cls, context: int, reply: Callable[[object, str], str]) -> None:
    """Make ``-m fake-*`` load a fake backend with a ``context``-token context (one token a word) that answers
    ``reply(chat, key)``; any other model name loads (or fails to load) as it really would. SLURM and OpenAI
    variables of the calling shell are cleared so a case runs the same everywhere."""
    from socialsynth.llm import BackendSpec, loading

    real_load, real_check = BackendSpec.load, loading.check_model_available

    class Fake(fake_backend_cls):
        def context_length(self):
            return context

        def token_count(self, item):
            text = item if isinstance(item, str) else " ".join(m["content"] for m in item)
            return len(text.split())

    def load(self):
        if not str(self.model).startswith("fake"):
            return real_load(self)
        backend = Fake(reply=reply)
        backend.name = self.model
        return backend

    monkeypatch.setattr(BackendSpec, "load", load)
    monkeypatch.setattr(loading, "check_model_available",
                        lambda name, flag="-m/--model", backend="hf": (
                            None if name.startswith("fake") else real_check(name, flag, backend)))
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def raw(content: bytes, name: str):
    """setup: an input file of exactly these bytes, as ``{data}``."""

    def setup(tmp: Path) -> dict:
        (tmp / name).write_bytes(content)
        return {"data": tmp / name}

    return setup


def run_with_read_only_output(hostile, main, argv: Sequence[str], setup: Callable[[Path], dict], tmp: Path) -> None:
    """``main(argv)`` with ``tmp/out`` a folder nobody may write: one line naming it, exit 2."""

    def read_only(tmp: Path) -> dict:
        values = setup(tmp)
        (tmp / "out").mkdir()
        (tmp / "out").chmod(0o500)
        return values

    try:
        hostile(main, Case("read-only output folder", argv, Error("out"), read_only))
    finally:
        (tmp / "out").chmod(0o700)
