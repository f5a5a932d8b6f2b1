"""One writer at a time per state directory (fcntl.flock), so no reader ever sees a mix of two runs.

Writers (put-file, delete-file, run, demo) hold the lock for their whole update; readers (list-*, inspect-*) do not
need it because every record is replaced atomically. The kernel drops the lock when its holder dies, even by
SIGKILL, so a killed runner never leaves the state locked. Whoever takes the lock next runs recovery first.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from localpach.errors import StateLocked


class StateLock:
    """Exclusive lock on `<state>/LOCK`; the file's content says who holds it (for the waiting message)."""

    def __init__(self, state_dir: Path, purpose: str) -> None:
        self.path = state_dir / "LOCK"
        self.purpose = purpose
        self._fd: int | None = None

    def holder(self) -> str:
        """A human description of the current holder, read from the lock file."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return "another localpach process"
        if not info:
            return "another localpach process"
        since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
        return f"localpach pid {info.get('pid')} ({info.get('purpose')}, since {since})"

    def acquire(self, wait: bool = True, on_wait: Callable[[str], None] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            if not wait:
                os.close(fd)
                raise StateLocked(
                    f"{self.path.parent} is in use by {holder}; try again when it finishes (or drop --no-wait)"
                ) from None
            if on_wait is not None:
                on_wait(f"{self.path.parent} is in use by {holder}; waiting for it to finish...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "purpose": self.purpose, "since": time.time(), "argv": sys.argv[:4]}
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
