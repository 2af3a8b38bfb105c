"""What the supervisor runs: one spec per child process, and the restart backoff.

Both are pure (no I/O) so the process plan and the backoff schedule can be
tested without starting anything.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from strongroom.config import Settings

Role = Literal["edge", "pod", "worker"]

# Start order: workers first (certificate renewal, relays), then the pods the edge
# routes to, then the edge that admits traffic. Stop runs in reverse.
START_ORDER: tuple[Role, ...] = ("worker", "pod", "edge")
STOP_ORDER: tuple[Role, ...] = ("edge", "pod", "worker")

CHILD_MODULE = "strongroom.runtime.child"
# Tells a child its parent's pid, so it can exit if it was orphaned at start-up.
SUPERVISOR_PID_ENV_VAR = "STRONGROOM_SUPERVISOR_PID"


@dataclass(frozen=True)
class ProcessSpec:
    """One child process: its identity, where it listens and where to probe its health."""

    name: str
    role: Role
    index: int
    zone: str
    # The port the process serves its main traffic on (edge: the shared TLS port).
    port: int | None
    # Plain-HTTP probe target; None → alive means healthy (workers have no listener).
    health_host: str | None
    health_port: int | None
    health_path: str | None


def build_specs(settings: Settings) -> list[ProcessSpec]:
    """The full process plan, in start order."""
    specs: list[ProcessSpec] = []
    for i in range(settings.workers.count):
        specs.append(
            ProcessSpec(
                name=f"worker-{i}",
                role="worker",
                index=i,
                zone=settings.pod_zone(i),
                port=None,
                health_host=None,
                health_port=None,
                health_path=None,
            )
        )
    for i in range(settings.pods.count):
        specs.append(
            ProcessSpec(
                name=f"pod-{i}",
                role="pod",
                index=i,
                zone=settings.pod_zone(i),
                port=settings.pods.port_base + i,
                health_host=settings.pods.host,
                health_port=settings.pods.port_base + i,
                health_path="/readyz",
            )
        )
    for i in range(settings.edge.workers):
        specs.append(
            ProcessSpec(
                name=f"edge-{i}",
                role="edge",
                index=i,
                zone=settings.edge_zone(i),
                port=settings.edge.port,
                health_host=settings.edge.admin_host,
                health_port=settings.edge.admin_port + i,
                health_path="/healthz",
            )
        )
    return specs


def child_command(spec: ProcessSpec, entrypoints: Mapping[str, str] | None = None) -> list[str]:
    """argv for one child: ``python -m strongroom.runtime.child <role> --index I --zone Z``.

    ``entrypoints`` (role → ``module:function``) replaces a role's run function;
    tests use it to run small fake roles through the real process machinery.
    """
    argv = [
        sys.executable,
        "-m",
        CHILD_MODULE,
        spec.role,
        "--index",
        str(spec.index),
        "--zone",
        spec.zone,
    ]
    if entrypoints and spec.role in entrypoints:
        argv += ["--entry", entrypoints[spec.role]]
    return argv


@dataclass
class Backoff:
    """Exponential restart delay: initial, initial*factor, ... capped at ``max_s``.

    Deterministic on purpose: restarts are per process, so there is no herd to
    de-synchronise, and a fixed schedule is what an operator can reason about.
    """

    initial_s: float
    max_s: float
    factor: float = 2.0
    failures: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        sup = settings.supervisor
        return cls(
            initial_s=sup.restart_backoff_initial_s,
            max_s=sup.restart_backoff_max_s,
            factor=sup.restart_backoff_factor,
        )

    def next_delay(self) -> float:
        """The delay before the next restart; each call counts one more failure."""
        # Exponent capped so the float never overflows for a process that crashes forever.
        exponent = min(self.failures, 64)
        delay = min(self.max_s, self.initial_s * self.factor**exponent)
        self.failures += 1
        return delay

    def reset(self) -> None:
        """Forget past failures: the process stayed up long enough to count as healthy."""
        self.failures = 0
