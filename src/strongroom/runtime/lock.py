"""One supervisor per data dir, enforced with an advisory lock on run/supervisor.pid.

``flock`` is released by the kernel when the holder dies, so a crashed
supervisor never leaves a stale lock behind; the pid inside is for humans.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class SupervisorAlreadyRunningError(RuntimeError):
    """Another live supervisor holds the data dir (stable id: ``supervisor-already-running``)."""


class PidLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_pid(self.path)
            raise SupervisorAlreadyRunningError(
                f"a supervisor (pid {holder}) already runs on {self.path.parent.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Truncate rather than unlink: unlinking would let a newcomer lock a fresh file
        # while a racing opener still locks the old inode, giving two supervisors.
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def is_locked(path: Path) -> bool:
    """True if some process holds the supervisor lock at ``path`` right now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # A shared probe never blocks a holder; it fails only if an exclusive lock is held.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
