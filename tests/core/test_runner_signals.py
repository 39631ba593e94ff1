"""GracefulStop and run_main on signals: the first SIGTERM/SIGINT asks for a clean stop (128 + signal after the
chunk in flight), a second one stops at once but still exits 128 + that signal, so that a second SIGTERM exits 143
(what the SLURM wrapper requeues) and a second Ctrl-C 130."""

from __future__ import annotations

import os
import signal

import pytest

from socialsynth.core.cli import run_main
from socialsynth.core.errors import Interrupted, StopNow
from socialsynth.core.runner import GracefulStop, run_chunks


class ListWriter:
    def __init__(self):
        self.records = []

    def write(self, records):
        self.records += records
        return len(records)


def signalled(first: int, second: int | None):
    """A main that gets `first` during its chunk (and `second` during the next one, if any)."""

    def main() -> int:
        writer = ListWriter()

        def process(chunk):
            os.kill(os.getpid(), first if not writer.records else second)
            return [{"id": i} for i in chunk]

        with GracefulStop() as stop:
            if second is None:
                run_chunks(list(range(4)), process, writer, 1, stop, resume_hint="rerun to resume")
            else:  # a chunk that never looks at the flag: only a second signal gets it out
                process([0])
                writer.records.append({"id": 0})
                process([1])
                raise AssertionError("the second signal should have stopped the job")
        return 0

    return main


@pytest.mark.parametrize(
    ("first", "second", "code"),
    [
        (signal.SIGTERM, None, 143),
        (signal.SIGTERM, signal.SIGTERM, 143),  # was 130: the SLURM task was not requeued
        (signal.SIGINT, None, 130),
        (signal.SIGINT, signal.SIGINT, 130),
        (signal.SIGINT, signal.SIGTERM, 143),  # the last signal decides
    ],
)
def test_exit_code_of_one_and_two_signals(first, second, code, capsys):
    assert run_main(signalled(first, second)) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("stopped at once by a second" in err) == (second is not None)
    assert "resume" in err.strip().splitlines()[-1]


def test_the_second_signal_raises_stop_now_carrying_it():
    with pytest.raises(StopNow) as caught, GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.exit_code == 143
        os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(caught.value, KeyboardInterrupt)  # code that catches KeyboardInterrupt still sees it
    assert caught.value.exit_code == 143 and caught.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not stop._handle  # handlers restored


def test_a_clean_stop_is_still_interrupted_with_the_signal():
    with pytest.raises(Interrupted) as caught, GracefulStop() as stop:
        run_chunks([1, 2, 3], lambda c: os.kill(os.getpid(), signal.SIGTERM) or list(c), ListWriter(), 1, stop)
    assert caught.value.exit_code == 143 and "1 of 3" in str(caught.value)
