"""Byte streams of possibly compressed files (gzip, zstd), shared by every streaming reader (Reddit dumps,
Bluesky Jetstream files, JSONL inputs).

A corrupt or truncated compressed file raises one of :func:`stream_read_errors` while it is read (never a silent
short read): gzip raises EOFError or ``BadGzipFile`` itself, and the zstd reader here raises EOFError when the file
ends inside a frame (zstandard's own stream reader returns what it decoded and stops, which made an incomplete
download look like a shorter file). Readers turn these into an InputError naming the file.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import IO, Any

from socialsynth.core.errors import InputError

ZSTD_MAX_WINDOW = 2**31  # Pushshift dumps are compressed with --long=31: the default window limit refuses them
ZSTD_READ_SIZE = 1 << 16  # compressed bytes fed to the decoder at a time (bounds the decoded bytes held at once)


class ZstdFrameReader(io.RawIOBase):
    """The decompressed bytes of a file of one or more zstd frames, read frame after frame.

    Raises EOFError when the file ends inside a frame (truncated) and ``zstandard.ZstdError`` for bytes that are
    not zstd (from the decoder).
    """

    def __init__(self, raw: IO[bytes], decompressor: Any) -> None:
        super().__init__()
        self._raw = raw
        self._dctx = decompressor
        self._frame: Any = None  # the decoder of the frame being read; None between frames
        self._tail = b""  # compressed bytes read past the end of the last frame (the next frame's start)
        self._out = memoryview(b"")
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._out):
            if not self._decode_more():
                return 0
        n = min(len(buffer), len(self._out) - self._offset)
        buffer[:n] = self._out[self._offset : self._offset + n]
        self._offset += n
        return n

    def _decode_more(self) -> bool:
        """Decode the next piece of input into ``_out``; False at a clean end of the file."""
        chunk, self._tail = self._tail or self._raw.read(ZSTD_READ_SIZE), b""
        if not chunk:
            if self._frame is not None:
                raise EOFError("the file ends inside a zstd frame (truncated, e.g. an incomplete download)")
            return False
        if self._frame is None:
            self._frame = self._dctx.decompressobj()
        self._out, self._offset = memoryview(self._frame.decompress(chunk)), 0
        if self._frame.eof:
            self._tail, self._frame = self._frame.unused_data, None
        return True

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


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
        raw = ZstdFrameReader(open(path, "rb"), zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW))
        return io.BufferedReader(raw, buffer_size=1 << 20)
    return open(path, "rb")


def stream_read_errors(compression: str | None) -> tuple[type[BaseException], ...]:
    """The exceptions a truncated or corrupt stream from :func:`open_binary_stream` can raise while reading."""
    if compression == "zst":
        import zstandard

        return (OSError, EOFError, zstandard.ZstdError)
    if compression == "gz":
        return (OSError, EOFError, zlib.error)  # a damaged deflate block raises zlib.error, not an OSError
    return (OSError, EOFError)
