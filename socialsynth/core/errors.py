"""Exceptions and exit codes shared by every socialsynth command.

Scripts catch :class:`InputError` at the top level and exit with
:data:`EXIT_BAD_INPUT`, so a user sees one precise line (file, line, field)
instead of a traceback when the problem is in their data or arguments.
"""

from __future__ import annotations

from os import PathLike

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Bad user input: a malformed file, a missing column, an invalid option.

    ``str(error)`` is a single line, ``"{path}:{line}: field '{field}': {message}"``,
    with the parts that are ``None`` left out, so it can be printed as is.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = " ".join(str(message).split())
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(self._format())

    def _format(self) -> str:
        """Join location, field and message into one line."""
        parts: list[str] = []
        if self.path is not None and self.line is not None:
            parts.append(f"{self.path}:{self.line}")
        elif self.path is not None:
            parts.append(self.path)
        elif self.line is not None:
            parts.append(f"line {self.line}")
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self._format()


class Interrupted(Exception):
    """The job was asked to stop (SIGTERM/SIGINT) and stopped cleanly.

    ``resume_hint`` tells the user how to continue; ``exit_code`` is 128 + the signal number, as a shell
    reports a process killed by that signal, so SLURM scripts can tell preemption from failure.
    """

    def __init__(self, message: str = "interrupted", *, resume_hint: str = "", exit_code: int = 143) -> None:
        super().__init__(message)
        self.resume_hint = resume_hint
        self.exit_code = exit_code


class StopNow(KeyboardInterrupt):
    """A second SIGTERM/SIGINT while a job was already stopping: stop at once.

    ``exit_code`` is 128 + the signal number, like :class:`Interrupted`, so that a second SIGTERM still exits 143
    (the SLURM wrapper requeues on 143; a second Ctrl-C exits 130 as a plain KeyboardInterrupt does).
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        try:
            self.signal_name = signal.Signals(signum).name
        except ValueError:
            self.signal_name = f"signal {signum}"
        super().__init__(f"stopped at once by a second {self.signal_name}")
