"""One supervisor per data dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strongroom.runtime.lock import PidLock, SupervisorAlreadyRunningError, is_locked, read_pid


def test_second_lock_on_the_same_file_is_refused(tmp_path: Path):
    first = PidLock(tmp_path / "supervisor.pid")
    first.acquire()
    try:
        with pytest.raises(SupervisorAlreadyRunningError, match=str(os.getpid())):
            PidLock(tmp_path / "supervisor.pid").acquire()
    finally:
        first.release()


def test_released_lock_can_be_taken_again(tmp_path: Path):
    lock = PidLock(tmp_path / "supervisor.pid")
    lock.acquire()
    lock.release()
    again = PidLock(tmp_path / "supervisor.pid")
    again.acquire()
    assert again.held
    again.release()


def test_lock_file_names_the_holder_while_held(tmp_path: Path):
    path = tmp_path / "supervisor.pid"
    lock = PidLock(path)
    lock.acquire()
    assert read_pid(path) == os.getpid()
    assert is_locked(path)
    lock.release()
    assert read_pid(path) is None
    assert not is_locked(path)


def test_missing_lock_file_means_not_locked(tmp_path: Path):
    assert not is_locked(tmp_path / "supervisor.pid")
