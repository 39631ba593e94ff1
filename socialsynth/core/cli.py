"""What every command shares when it runs: logging set up the same way, and one exit path (bad input -> one line
and exit 2, a clean stop -> how to resume and 128+signal, a place that cannot be written -> one line naming it and
exit 2, a full disk -> one line and exit 1 with the resume hint). Secrets registered with
socialsynth.core.provenance.register_secret are masked in all of it. The flags themselves come from the jobs'
declared configs (socialsynth.core.config)."""

from __future__ import annotations

import errno
import io
import logging
import os
import sys
import traceback
from collections.abc import Callable
from types import TracebackType

from socialsynth.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, InputError, Interrupted
from socialsynth.core.provenance import mask_secrets, register_secret

RESUME_HINT = "rerun the same command to resume"
SECRET_VARIABLES = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# What the user can do about an OSError of the environment (not a bug): errno -> (what happened, what to do)
_PLACE = "choose another place (-o/--output-dir)"
_ENVIRONMENT_ERRORS = {
    errno.EACCES: ("permission denied", f"make it writable (readable, for an input) or {_PLACE}"),
    errno.EPERM: ("operation not permitted", f"check its owner and permissions or {_PLACE}"),
    errno.EROFS: ("read-only file system", f"{_PLACE} on a writable file system"),
    errno.ENOTDIR: ("a file is in the way where a folder is needed", f"move that file away or {_PLACE}"),
    errno.EEXIST: ("exists and is not a folder", f"move it away or {_PLACE}"),
    errno.EISDIR: ("is a folder where a file is needed", "move that folder away or choose another name"),
}
_FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in (
        "httpx",
        "httpx2",
        "openai",
        "urllib3",
        "filelock",
        "huggingface_hub",
        "transformers",
        "sentence_transformers",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # peft imports bitsandbytes, which warns on CPU that an optional kernel package (fetched from the Hub) is missing
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _MaskSecrets) for f in handler.filters):
            handler.addFilter(_MaskSecrets())


class _MaskSecrets(logging.Filter):
    """Hide registered secrets (API keys, URL passwords) in every log line, whatever code logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def _say(text: str) -> None:
    print(mask_secrets(text), file=sys.stderr)


def run_main(fn: Callable[[], int]) -> int:
    """Run a script's main: bad input → one line and exit 2; interruption → how to resume and 128+signal; an
    output place that cannot be written → one line naming it, exit 2; a full disk → one line, exit 1."""
    for name in SECRET_VARIABLES:  # whatever echoes them (a server, the Hub client) is masked in what is printed
        register_secret(os.environ.get(name))
    try:
        return fn()
    except (Exception, KeyboardInterrupt) as e:
        return _report(_full_disk_behind(e) or e)


def _report(e: BaseException) -> int:
    """Print what ended the run (one line, or a traceback for a bug) and return the exit code."""
    if isinstance(e, InputError):
        _say(f"error: {e}")
        return EXIT_BAD_INPUT
    if isinstance(e, Interrupted):
        _say(f"{e}; {e.resume_hint}" if e.resume_hint else str(e))
        return getattr(e, "exit_code", EXIT_FAILURE)
    if isinstance(e, KeyboardInterrupt):  # a second signal (StopNow: 128 + that signal) or a Ctrl-C outside
        _say(f"{e or 'stopped at once'}; what was written stays valid: {RESUME_HINT}")
        return getattr(e, "exit_code", 130)
    if isinstance(e, OSError):
        code = environment_error(e)
        if code is not None:
            return code
    # a bug: keep the traceback for the report (secrets masked)
    _say("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
    return EXIT_FAILURE


def _full_disk_behind(error: BaseException) -> OSError | None:
    """A full disk that an error was raised while handling (a job's cleanup reading the half-written output, or
    writing its record, fails in turn): that is the one to report, with its resume hint."""
    seen: set[int] = set()
    current: BaseException | None = error.__context__
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL:
            return current
        current = current.__cause__ or current.__context__
    return None


def environment_error(error: OSError) -> int | None:
    """Print one line for an OSError that the environment caused (an unwritable place, a full disk) and return
    the exit code (2; 1 for a full disk, which a rerun resumes), or None for any other OSError (a bug)."""
    path = _path_of(error)
    where = f"{path}: " if path else ""
    if error.errno in _FULL:
        _say(f"error: {where}{_FULL[error.errno]}; free space and {RESUME_HINT}")
        return EXIT_FAILURE
    if error.errno in _ENVIRONMENT_ERRORS:
        what, todo = _ENVIRONMENT_ERRORS[error.errno]
        _say(f"error: {where}{what}; {todo}")
        return EXIT_BAD_INPUT
    return None


def _path_of(error: OSError) -> str | None:
    """The path the failed call was about: the exception's filename, or else (a write() on an open file has
    none) the writable file or ``path`` nearest to where it was raised."""
    for name in (error.filename, error.filename2):
        if name not in (None, ""):
            return os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)
    frames = []
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        names = frame.f_locals
        for value in names.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
        candidates = [names.get(k) for k in ("path", "tmp", "target", "out")]
        for value in [*candidates, getattr(names.get("self"), "path", None)]:  # (a writer's own path)
            if isinstance(value, (str, os.PathLike)):
                return os.fspath(value)
    return None
