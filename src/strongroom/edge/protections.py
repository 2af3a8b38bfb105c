"""Builds one edge worker's protections from settings, in the order they run.

Head gates decide on the request line and headers: the blocklist first (a blocked client
costs nothing more), then rate limits (a throttled client never costs an inspection).
The WAF is the one body gate: it needs the whole body. Connection gates (blocked IPs,
per-IP connection caps) run once per connection, before any request is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strongroom.config import Settings
from strongroom.edge.guard import ConnectionGate, EdgeProtection, Gate
from strongroom.edge.security_events import SecurityEvents


@dataclass
class Protections:
    head_gates: list[Gate] = field(default_factory=list)
    body_gates: list[Gate] = field(default_factory=list)
    connection_gates: list[ConnectionGate] = field(default_factory=list)
    # Everything with background work and a /healthz snapshot, by name.
    parts: dict[str, EdgeProtection] = field(default_factory=dict)
    inspect_body_bytes_max: int = 0

    def snapshot(self) -> dict[str, object]:
        return {name: part.snapshot() for name, part in self.parts.items()}


def build_protections(settings: Settings, worker: int, events: SecurityEvents) -> Protections:
    """The enabled protections of edge worker ``worker``."""
    built = Protections()
    return built
