"""A pod's lifecycle state: who it is, whether it is draining, and how to check readiness.

Draining is a plain attribute flipped from a signal handler (no locks, no I/O there):
after it flips, ``/readyz`` answers 503 and every response carries ``Connection: close``
so the edge stops routing here and its pooled connections go away one by one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from strongroom.adapters.db.migrate import Readiness

ReadinessCheck = Callable[[], Awaitable[Readiness]]


@dataclass(frozen=True, slots=True)
class PodIdentity:
    name: str
    zone: str
    version: str
    service: str


@dataclass
class PodState:
    identity: PodIdentity
    readiness: ReadinessCheck
    draining: bool = False
    # Called once when draining starts (e.g. to flip a metric); must be signal-safe.
    on_drain: list[Callable[[], None]] = field(default_factory=list)

    def start_draining(self) -> None:
        if self.draining:
            return
        self.draining = True
        for callback in self.on_drain:
            callback()
