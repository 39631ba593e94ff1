"""What every long job shares: stop cleanly on SIGTERM/SIGINT, process in chunks, write as it goes.

A job gives a list of items still to do and a function that turns a chunk of items into records; the runner
writes each chunk's records with the resumable writer (flushed and fsynced per chunk), shows progress, and
stops between chunks when asked. A second signal stops at once; what was written stays valid.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tqdm import tqdm

from socialsynth.core.errors import Interrupted, StopNow


class GracefulStop:
    """Catch SIGTERM (SLURM preemption, `kill`) and SIGINT (Ctrl-C) and turn them into a flag.

    The first signal asks the job to stop after the chunk in flight; a second one raises `StopNow` (a
    KeyboardInterrupt carrying the signal) at once, so that run_main still exits 128 + that signal: 143 for a second
    SIGTERM, which the SLURM wrapper requeues. Previous handlers are restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, _frame):
        if self.signum is not None:
            raise StopNow(signum)
        self.signum = signum
        name = signal.Signals(signum).name
        print(
            f"\n{name} received: finishing the chunk in flight, then stopping (send again to stop now)", file=sys.stderr
        )

    def __enter__(self):
        for s in self.SIGNALS:
            try:
                self._previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGTERM)


@dataclass
class RunCounts:
    done: int = 0  # items processed in this run
    written: int = 0  # records written in this run
    seconds: float = 0.0
    stopped: bool = False


def chunked(seq: Sequence, size: int):
    for start in range(0, len(seq), max(1, size)):
        yield seq[start : start + size]


def run_chunks(
    items: Sequence,
    process: Callable[[Sequence], list[dict]],
    writer,
    chunk_size: int,
    stop: GracefulStop,
    desc: str = "items",
    resume_hint: str = "",
) -> RunCounts:
    """Process `items` chunk by chunk, writing each chunk's records before the next chunk starts.

    Raises `Interrupted` (with `resume_hint`) when a stop was requested; everything processed so far is on disk.
    """
    counts = RunCounts()
    t0 = time.perf_counter()
    with tqdm(total=len(items), desc=desc, unit=" " + desc, dynamic_ncols=True, file=sys.stderr) as bar:
        for chunk in chunked(items, chunk_size):
            if stop.requested:
                break
            records = process(chunk)
            counts.written += writer.write(records)
            counts.done += len(chunk)
            bar.update(len(chunk))
    counts.seconds = time.perf_counter() - t0
    if stop.requested:
        counts.stopped = True
        name = signal.Signals(stop.signum).name if stop.signum else "signal"
        message = f"stopped by {name} after {counts.done} of {len(items)} items of this run, all written"
        raise Interrupted(message, resume_hint=resume_hint, exit_code=stop.exit_code)
    return counts


def trainer_stop_callback(stop: GracefulStop | None):
    """A transformers TrainerCallback that turns a requested stop (SIGTERM/SIGINT) into "save a checkpoint at the
    end of this optimizer step and stop training", so that a rerun resumes from it."""
    from transformers import TrainerCallback

    class StopOnSignal(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop is not None and stop.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopOnSignal()
