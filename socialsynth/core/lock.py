"""One writer per output: an exclusive lock file beside the run record.

Two runs writing the same output (the same command started twice, or a SLURM requeue while the old task still runs)
would append every record twice. A job takes ``<name>.lock`` before it reads or writes its output; a second run
refuses, naming the holder. The lock file holds who took it (pid, host, start time) and is refreshed every
:data:`HEARTBEAT_SECONDS` while held, so a lock left by a process that died without releasing it is recognised:

* on the same host, when its pid is no longer alive;
* on another host (a requeued task on another node), when it has not been refreshed for :data:`STALE_SECONDS`.

A stale lock is taken over with a warning. Creation is atomic (``O_CREAT | O_EXCL``), which also works on NFS v3+.

Example::

    with OutputLock(out_dir / "askmen_formality.lock"):
        ...  # read and append the output
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = float(os.environ.get("SOCIALSYNTH_LOCK_STALE_SECONDS", 600))

# locks this process holds, so a job that locks its record and then its output file does not lock itself out
_HELD: dict[Path, int] = {}
_HELD_GUARD = threading.Lock()


def lock_path(record: str | Path) -> Path:
    """``out/x.meta.json`` -> ``out/x.lock`` (any other file: ``out/x.jsonl`` -> ``out/x.jsonl.lock``)."""
    record = Path(record)
    if record.name.endswith(".meta.json"):
        return record.with_name(record.name[: -len(".meta.json")] + ".lock")
    return record.with_name(record.name + ".lock")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


class OutputLock:
    """An exclusive, re-entrant (within one process) lock on an output.

    Args:
        path: the lock file (see :func:`lock_path`).
        what: the output it protects, named in the refusal.
    """

    def __init__(self, path: str | Path, what: str | Path | None = None) -> None:
        self.path = Path(path).absolute()
        self.what = str(what or self.path.with_suffix(""))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner = False

    # ------------------------------------------------------------------ taking and releasing

    def acquire(self) -> OutputLock:
        with _HELD_GUARD:
            if self.path in _HELD:
                _HELD[self.path] += 1
                return self
            self._take()
            _HELD[self.path] = 1
        self._owner = True
        self._thread = threading.Thread(target=self._heartbeat, name=f"lock {self.path.name}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        with _HELD_GUARD:
            count = _HELD.get(self.path, 0) - 1
            if count > 0:
                _HELD[self.path] = count
                return
            _HELD.pop(self.path, None)
        if not self._owner:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            if self._read() == self._mine:
                self.path.unlink()
        except OSError:
            pass
        self._owner = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    # ------------------------------------------------------------------ internals

    def _take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mine = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "token": os.urandom(8).hex()}
        for _ in range(5):
            if self._create():
                return
            holder = self._read()
            if holder is None:  # released between our attempt and the read, or being written: try again
                time.sleep(0.05)
                continue
            reason = self._stale_reason(holder)
            if reason is None:
                raise InputError(
                    f"another run is writing {self.what} ({_describe(holder)}); wait for it to finish, or if that "
                    f"process is gone delete {self.path.name}", path=self.path)
            if self._remove_stale(holder):
                log.warning("%s: taking over a stale lock (%s: %s)", self.path, _describe(holder), reason)
        raise InputError("could not take the lock: other runs keep taking it", path=self.path)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._mine, handle)
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):  # half-written by a process that died while creating it
            return {"pid": None, "host": None, "started": None, "unreadable": True}
        return holder if isinstance(holder, dict) else {"unreadable": True}

    def _stale_reason(self, holder: dict[str, Any]) -> str | None:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return "released"
        if holder.get("unreadable"):
            return "unreadable lock file" if age > 2 else None
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            return None if isinstance(pid, int) and _pid_alive(pid) else "its process is gone"
        if age > STALE_SECONDS:
            return f"not refreshed for {age:.0f} s"
        return None

    def _remove_stale(self, holder: dict[str, Any]) -> bool:
        """Move the stale lock aside and delete it, unless another run replaced it in the meantime."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return False
        try:
            moved = json.loads(aside.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            moved = {"unreadable": True}
        if moved != holder and not holder.get("unreadable"):  # a fresh lock: put it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                return
