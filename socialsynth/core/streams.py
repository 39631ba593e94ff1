"""Byte streams of possibly compressed files (gzip, zstd), shared by every streaming reader (Reddit dumps,
Bluesky Jetstream files, JSONL inputs)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import IO

from socialsynth.core.errors import InputError

ZSTD_MAX_WINDOW = 2**31  # Pushshift dumps are compressed with --long=31: the default window limit refuses them


def open_binary_stream(path: Path, compression: str | None) -> IO[bytes]:
    """A binary stream of the decompressed bytes of ``path`` (``compression``: None, "gz" or "zst").

    zstd is streamed with a window large enough for Pushshift's ``--long=31`` dumps, never decompressed whole.
    Shared by every streaming reader (Reddit dumps, Bluesky events, JSONL inputs).
    """
    if compression == "gz":
        return gzip.open(path, "rb")
    if compression == "zst":
        try:
            import zstandard
        except ImportError as exc:
            raise InputError("reading .zst needs the zstandard package (pip install zstandard)") from exc
        raw = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).stream_reader(
            open(path, "rb"), read_across_frames=True
        )
        return io.BufferedReader(raw, buffer_size=1 << 20)
    return open(path, "rb")


def stream_read_errors(compression: str | None) -> tuple[type[BaseException], ...]:
    """The exceptions a truncated or corrupt stream from :func:`open_binary_stream` can raise while reading."""
    if compression == "zst":
        import zstandard

        return (OSError, EOFError, zstandard.ZstdError)
    return (OSError, EOFError)
