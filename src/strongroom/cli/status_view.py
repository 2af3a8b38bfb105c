"""``strongroom status``: what state.json says, checked against the live system.

The supervisor rewrites state.json every health poll, but a file can outlive
its writer: each pid is checked for life, and the supervisor counts as running
only while it holds the data dir's lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from strongroom.runtime.lock import is_locked
from strongroom.runtime.state import LOCK_FILE, RunState, pid_alive, read_state

_HEALTH_STYLE = {
    "healthy": "green",
    "starting": "yellow",
    "restarting": "yellow",
    "unhealthy": "red",
    "dead": "red",
    "stopped": "dim",
}


@dataclass(frozen=True)
class StatusReport:
    data_dir: Path
    supervisor_running: bool
    state: RunState | None

    def effective_health(self, pid: int | None, health: str) -> str:
        """``dead`` when the recorded pid no longer exists, else what the supervisor saw."""
        if pid is not None and not pid_alive(pid):
            return "dead"
        return health

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "supervisor_running": self.supervisor_running,
        }
        if self.state is not None:
            state = self.state.model_dump(mode="json")
            for process in state["processes"]:
                process["alive"] = pid_alive(process["pid"])
                process["health"] = self.effective_health(process["pid"], process["health"])
            data.update(state)
        return data


def load_status(data_dir: Path) -> StatusReport:
    run_dir = data_dir / "run"
    return StatusReport(
        data_dir=data_dir,
        supervisor_running=is_locked(run_dir / LOCK_FILE),
        state=read_state(run_dir),
    )


def status_table(report: StatusReport) -> Table:
    table = Table(title=f"Strongroom processes ({report.data_dir})")
    for column in ("name", "role", "pid", "zone", "version", "health", "restarts", "port"):
        table.add_column(column, justify="right" if column in {"pid", "restarts"} else "left")
    if report.state is None:
        return table
    for process in report.state.processes:
        health = report.effective_health(process.pid, process.health)
        style = _HEALTH_STYLE.get(health, "")
        table.add_row(
            process.name,
            process.role,
            "-" if process.pid is None else str(process.pid),
            process.zone,
            process.version,
            f"[{style}]{health}[/]" if style else health,
            str(process.restarts),
            "-" if process.port is None else str(process.port),
        )
    return table
