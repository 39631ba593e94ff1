"""``--report`` on every job: when the process ends, write ``<name>.report.html`` beside the record of each run that
finished with ``report`` set in its config.

:func:`note_finished` is registered with socialsynth.core.run.on_finish by socialsynth.jobs (so core never imports
the report). It only notes the record: several jobs draw their plots or build more outputs after the run record
closes (the normness shift plot, the augment ladder), so the page is built at process exit (``atexit``), when every
output is on disk. The build's own imports wait until then.
"""

from __future__ import annotations

import atexit
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_pending: list[Path] = []


def report_file(record: Path) -> Path:
    """``x.meta.json`` -> ``x.report.html``."""
    return record.with_name(record.name[: -len(".meta.json")] + ".report.html")


def note_finished(run: Any) -> None:
    """The JobRun hook: remember the record of a finished run whose config asks for ``--report``."""
    if not getattr(run.config, "report", False):
        return
    record = Path(run.path)
    if not _pending:
        atexit.register(write_pending)
    if record not in _pending:
        _pending.append(record)


def write_pending() -> list[Path]:
    """Write the report of every noted run (called at exit); a report that cannot be written (unreadable output,
    no space) is a warning: the run itself finished."""
    from socialsynth.core.errors import InputError
    from socialsynth.report.build import build_report

    written = []
    while _pending:
        record = _pending.pop(0)
        target = report_file(record)
        try:
            build_report(record, target)
        except (InputError, OSError) as e:
            log.warning("--report: the report of %s was not written: %s", record, e)
            continue
        print(f"report: {target}", flush=True)
        written.append(target)
    return written


def register() -> None:
    from socialsynth.core.run import on_finish

    on_finish(note_finished)
