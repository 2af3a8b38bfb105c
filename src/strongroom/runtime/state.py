"""The run directory's files: state.json, upstreams.json, settings.json.

They are the contracts between the supervisor and everything else (edge
workers, ``strongroom status``), so each is written atomically: a reader sees
the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from strongroom.config import Settings, dump_settings

Health = Literal["starting", "healthy", "unhealthy", "restarting", "stopped"]

STATE_FILE = "state.json"
UPSTREAMS_FILE = "upstreams.json"
SETTINGS_FILE = "settings.json"
LOCK_FILE = "supervisor.pid"

# The run dir holds the settings with secrets: owner only.
RUN_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644


class ProcessState(BaseModel):
    name: str
    role: str
    index: int
    pid: int | None
    zone: str
    version: str
    port: int | None
    health: Health
    restarts: int
    started_at: float | None


class RunState(BaseModel):
    supervisor_pid: int
    started_at: float
    version: str
    edge_url: str
    ca_cert: str | None
    processes: list[ProcessState]


class Upstream(BaseModel):
    name: str
    host: str
    port: int
    zone: str
    weight: int
    version: str


class UpstreamList(BaseModel):
    generation: int
    upstreams: list[Upstream]


def ensure_run_dir(settings: Settings) -> Path:
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True, mode=RUN_DIR_MODE)
    return run_dir


def write_text_atomic(path: Path, text: str, mode: int = PUBLIC_FILE_MODE) -> None:
    """Write to a temporary file in the same directory, then rename over ``path``.

    The temporary file is created with ``mode`` from the start, so a secret is
    never readable by others, not even for a moment.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_json_atomic(path: Path, data: Any, mode: int = PUBLIC_FILE_MODE) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def write_state(run_dir: Path, state: RunState) -> None:
    write_json_atomic(run_dir / STATE_FILE, state.model_dump(mode="json"))


def read_state(run_dir: Path) -> RunState | None:
    """The last state the supervisor wrote, or None if it never wrote one."""
    try:
        text = (run_dir / STATE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return RunState.model_validate_json(text)


def read_upstreams(run_dir: Path) -> UpstreamList | None:
    try:
        text = (run_dir / UPSTREAMS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return UpstreamList.model_validate_json(text)


def write_upstreams(run_dir: Path, upstreams: list[Upstream]) -> UpstreamList:
    """Publish a new upstream list with a generation above any previous one."""
    previous = read_upstreams(run_dir)
    doc = UpstreamList(
        generation=(previous.generation + 1) if previous else 1,
        upstreams=upstreams,
    )
    write_json_atomic(run_dir / UPSTREAMS_FILE, doc.model_dump(mode="json"))
    return doc


def write_settings(run_dir: Path, settings: Settings) -> Path:
    """Freeze the effective settings (with secrets) for the children; 0600."""
    path = run_dir / SETTINGS_FILE
    write_text_atomic(path, dump_settings(settings) + "\n", SECRET_FILE_MODE)
    return path


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (it may belong to another user)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
