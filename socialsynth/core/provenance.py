"""What every job records about how it ran: the command line, package versions and a JSON-safe config (the run
record itself is socialsynth.core.run.JobRun)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from socialsynth import __version__


def versions() -> dict:
    import torch
    import transformers

    return {
        "socialsynth": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def jsonable(value):
    """Dataclass dicts with Paths and tuples -> plain JSON values."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def command_line() -> str:
    """The command as the user typed it (script name without its folder), for the meta file and resume hints."""
    return " ".join([Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else sys.argv[0], *sys.argv[1:]])
