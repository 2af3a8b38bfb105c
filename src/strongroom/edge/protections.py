"""Builds one edge worker's protections from settings, in the order they run.

Head gates decide on the request line and headers: the blocklist first (a blocked client
costs nothing more), then rate limits (a throttled client never costs an inspection).
The WAF is the one body gate: it needs the whole body. Connection gates (blocked IPs,
per-IP connection caps) run once per connection, before any request is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.registry import Collector

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
    # Prometheus collectors of the protections, registered on the worker's registry.
    collectors: list[Collector] = field(default_factory=list)

    def snapshot(self) -> dict[str, object]:
        return {name: part.snapshot() for name, part in self.parts.items()}


def build_protections(settings: Settings, worker: int, events: SecurityEvents) -> Protections:
    """The enabled protections of edge worker ``worker``.

    The blocklist is loaded from its store before this returns, so a restarted worker
    enforces every block before it accepts its first connection.
    """
    from strongroom.edge.blocklist_sync import build_blocklist  # noqa: PLC0415
    from strongroom.edge.connection_limits import build_connection_limits  # noqa: PLC0415
    from strongroom.edge.ratelimit import build_rate_limits  # noqa: PLC0415
    from strongroom.edge.waf.gate import build_waf  # noqa: PLC0415

    edge = settings.edge
    built = Protections()
    exempt = None
    if edge.blocklist.enabled:
        blocklist = build_blocklist(settings, worker, events)
        built.parts["blocklist"] = blocklist
        built.head_gates.append(blocklist.gate)
        built.connection_gates.append(blocklist.connection_gate)
        built.collectors.append(blocklist.collector())
        exempt = blocklist.blocklist.allows_address
    # Per-address connection caps hold with or without block entries; allow-listed
    # addresses (a partner's NAT gateway) are exempt.
    built.connection_gates.append(build_connection_limits(settings, worker, events, exempt=exempt))
    # Allow-listed addresses skip the per-address limits (their clients still count).
    rate_limits = build_rate_limits(settings, worker, events, exempt=exempt)
    if rate_limits is not None:
        built.parts["rate_limits"] = rate_limits
        built.head_gates.append(rate_limits.gate)
        built.collectors.append(rate_limits.collector())
    waf = build_waf(settings, worker, events)
    if waf is not None:
        built.parts["waf"] = waf
        built.body_gates.append(waf.gate)
        built.collectors.append(waf.collector())
        built.inspect_body_bytes_max = min(
            edge.waf.inspect_body_bytes_max, edge.limits.body_bytes_max
        )
    return built
