"""The hostile-input corpus: table-driven cases per script, each run in-process through ``run_main`` (as the
script runs it) and judged the same way:

* ``Error(needle)``: exit 2 and exactly one stderr line that contains ``needle`` (the file, line, field or flag);
* ``Skip(needle)``: exit 0 and ``needle`` (the counted skip's reason) in the output or the run record;
* never the word ``Traceback``.

A case is a ``Case(id, argv, expect, setup)``: ``setup(tmp_path)`` writes the files the case needs and returns a
mapping used to format ``argv`` (``"{data}"`` -> the file it wrote).
"""

from __future__ import annotations

import pytest

from tests.hostile.corpus import Case, Error, Skip, case_params

__all__ = ["Case", "Error", "Skip", "case_params", "hostile"]


@pytest.fixture
def hostile(run_cli, tmp_path, monkeypatch):
    """``hostile(main, case)``: run the case in tmp_path and assert its outcome; returns (code, out, err)."""
    monkeypatch.chdir(tmp_path)

    def check(main, case: Case):
        values = {"tmp": str(tmp_path)}
        if case.setup is not None:
            values.update({k: str(v) for k, v in (case.setup(tmp_path) or {}).items()})
        argv = [str(a).format(**values) for a in case.argv]
        code, out, err = run_cli(main, argv)
        assert "Traceback" not in err, err
        expect = case.expect
        if isinstance(expect, Error):
            lines = [line for line in err.strip().splitlines() if line.strip()]
            assert code == expect.code, f"exit {code}, stderr:\n{err}"
            assert len(lines) == 1, f"expected one line, got:\n{err}"
            assert expect.needle.format(**values) in lines[0], lines[0]
        else:
            assert code == 0, f"exit {code}, stderr:\n{err}"
            text = out + err
            if expect.record is not None:
                text += (tmp_path / expect.record.format(**values)).read_text(encoding="utf-8")
            assert expect.needle in text, text[-3000:]
        return code, out, err

    return check
