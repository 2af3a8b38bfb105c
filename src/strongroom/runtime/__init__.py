"""Process runtime: the supervisor, child process specs and entry, run-dir state files."""

from strongroom.runtime.lock import SupervisorAlreadyRunningError
from strongroom.runtime.process import Backoff, ProcessSpec, build_specs
from strongroom.runtime.state import ProcessState, RunState, read_state
from strongroom.runtime.supervisor import ProcessInfo, Supervisor

__all__ = [
    "Backoff",
    "ProcessInfo",
    "ProcessSpec",
    "ProcessState",
    "RunState",
    "Supervisor",
    "SupervisorAlreadyRunningError",
    "build_specs",
    "read_state",
]
