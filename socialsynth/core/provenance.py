"""What every job records about how it ran: the command line, package versions and a JSON-safe config (the run
record itself is socialsynth.core.run.JobRun), and what it must never record or print: credentials in URLs
(``http://user:password@host``), the values of secret flags (``--api-key VALUE``) and API keys a server echoes
back (:func:`register_secret`, :func:`mask_secrets`)."""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from socialsynth import __version__

MASK = "***"
# scheme://userinfo@ : userinfo runs to the last "@" before the path, so a password holding "@" is covered too
_URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s?#]*)@")
# the value of --api-key, --hf-token, --password, --secret... (never --api-key-env: that names a variable)
_SECRET_FLAG = re.compile(r"((?<!\S)--?[\w-]*?(?:api[-_]?key|token|password|passwd|secret)(?:=|\s+))(\S+)",
                          re.IGNORECASE)
MIN_SECRET = 6  # shorter values (EMPTY, a local server's dummy key) are not worth masking in every message
MIN_RUN = 8  # a run of this many characters of a secret counts as a leak (servers echo truncated keys)

_secrets: set[str] = set()


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
    """Dataclass dicts with Paths and tuples -> plain JSON values (credentials in URLs redacted)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact_url(value)
    return value


def command_line() -> str:
    """The command as the user typed it (script name without its folder), for the meta file and resume hints;
    credentials and secret flag values are masked (see :func:`redact_command`)."""
    words = [Path(sys.argv[0]).name if sys.argv[0].endswith(".py") else sys.argv[0], *sys.argv[1:]]
    return redact_command(" ".join(words))


# ------------------------------------------------------------------------------------------- redaction


def has_credentials(url: str) -> bool:
    """Whether a URL carries ``user[:password]@`` (already redacted ones do not count)."""
    match = _URL_CREDENTIALS.search(str(url))
    return bool(match) and match.group(2) != MASK


def redact_url(url: str) -> str:
    """``http://user:pw@host/v1`` -> ``http://***@host/v1``; any text without credentials is returned as it is.

    Call it on every URL that is recorded or shown (run records, saved configs, messages)."""
    if not isinstance(url, str) or "@" not in url or "://" not in url:
        return url
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{MASK}@", url)


def redact_command(command: str | Iterable[str]) -> str:
    """A command line (text or argv) with URL credentials and the values of secret flags (``--api-key X``,
    ``--hf-token=X``) masked, and registered secrets hidden: what a run record or resume hint may show."""
    text = command if isinstance(command, str) else " ".join(map(str, command))
    text = _SECRET_FLAG.sub(lambda m: m.group(1) + MASK, redact_url(text))
    return mask_secrets(text)


def redact(value):
    """A JSON-like value (dicts, lists, strings) with credentials in every URL string redacted."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return redact_url(value) if isinstance(value, str) else value


def register_secret(value: str | None) -> None:
    """Remember a secret (an API key, a URL password) so that :func:`mask_secrets` hides it in every message
    this process relays: server errors, the one-line errors of run_main, log lines."""
    if value and len(str(value)) >= MIN_SECRET:
        _secrets.add(str(value))


def registered_secrets() -> frozenset[str]:
    return frozenset(_secrets)


def mask_secrets(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every secret (default: the registered ones) replaced by ``***``: whole, and any run of at
    least 8 of its characters (a server that echoes a truncated key)."""
    secrets = [s for s in (registered_secrets() if secrets is None else secrets) if s and len(s) >= MIN_SECRET]
    if not secrets or not text:
        return text
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        spans += _leaks(text, secret)
    if not spans:
        return text
    out, last = [], 0
    for start, end in sorted(_merge(spans)):
        out += [text[last:start], MASK]
        last = end
    return "".join(out) + text[last:]


def _leaks(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that repeat the secret, or at least MIN_RUN consecutive characters of it."""
    if len(secret) < MIN_RUN:
        return [(m.start(), m.end()) for m in re.finditer(re.escape(secret), text)]
    spans = []
    for i in range(len(secret) - MIN_RUN + 1):
        piece = secret[i : i + MIN_RUN]
        start = text.find(piece)
        while start >= 0:
            spans.append((start, start + MIN_RUN))
            start = text.find(piece, start + 1)
    return spans


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
