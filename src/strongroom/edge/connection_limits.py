"""Per-client-address connection caps: one address cannot hold a worker's connections.

A ``ConnectionGate``: each edge worker counts the connections open per client address
and refuses one more beyond ``edge.blocklist.connections_per_ip_max`` with 429
``too-many-connections`` (the edge writes it and closes) and a ``connection.limit``
security event, at most one per address per second. IPv6 clients are counted per
``/ipv6_prefix_len`` network (a /64 by default): one host is routinely given a whole
/64, so counting single IPv6 addresses would cap nobody. Addresses an allow entry covers
can be exempted (a partner's NAT gateway carries many real users).

The count is per worker, not per host: with SO_REUSEPORT the kernel spreads one
address's connections over the workers, so a host admits up to (workers) times the cap.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Final

from strongroom.config import Settings
from strongroom.edge.guard import Refusal
from strongroom.edge.security_events import CONNECTION_LIMITED, SecurityEvent, SecurityEvents

TOO_MANY_CONNECTIONS: Final = "too-many-connections"
# A refused client may try again once one of its connections has closed; a second is
# the shortest Retry-After HTTP can say.
RETRY_AFTER_S = 1
# At most one event per address per this many seconds.
EVENT_INTERVAL_S = 1.0
# Addresses whose event second is remembered; forgotten wholesale beyond this.
EVENT_KEYS_MAX = 65_536


class ConnectionLimits:
    """``ConnectionGate``: at most ``per_ip_max`` open connections per address key."""

    name = "connection_limits"

    def __init__(
        self,
        per_ip_max: int,
        events: SecurityEvents,
        *,
        ipv6_prefix_len: int = 64,
        exempt: Callable[[str], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_ip_max < 1:
            raise ValueError("per_ip_max must be at least 1")
        if not 1 <= ipv6_prefix_len <= 128:
            raise ValueError("ipv6_prefix_len must be between 1 and 128")
        self._max = per_ip_max
        self._events = events
        self._v6_shift = 128 - ipv6_prefix_len
        self._v6_prefix_len = ipv6_prefix_len
        self._exempt = exempt
        self._monotonic = monotonic
        self._open: dict[str, int] = {}
        self._event_seconds: dict[str, tuple[int, str]] = {}
        self.refused = 0

    def key(self, client_ip: str) -> str:
        """What connections are counted under: the address, or its IPv6 network."""
        if ":" not in client_ip:
            return client_ip
        try:
            address = ipaddress.IPv6Address(client_ip.partition("%")[0])
        except ValueError:
            return client_ip
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        network = (int(address) >> self._v6_shift) << self._v6_shift
        return f"{ipaddress.IPv6Address(network)}/{self._v6_prefix_len}"

    def admit_connection(self, client_ip: str) -> Refusal | None:
        key = self.key(client_ip)
        count = self._open.get(key, 0)
        if count >= self._max and not (self._exempt is not None and self._exempt(client_ip)):
            self.refused += 1
            return Refusal(
                429,
                TOO_MANY_CONNECTIONS,
                f"At most {self._max} open connections per client address.",
                retry_after_s=RETRY_AFTER_S,
                close=True,
                event_id=self._event(client_ip, key),
            )
        self._open[key] = count + 1
        return None

    def connection_closed(self, client_ip: str) -> None:
        key = self.key(client_ip)
        count = self._open.get(key, 0) - 1
        if count > 0:
            self._open[key] = count
        else:
            self._open.pop(key, None)

    def open_connections(self, client_ip: str) -> int:
        return self._open.get(self.key(client_ip), 0)

    def _event(self, client_ip: str, key: str) -> str:
        second = int(self._monotonic() // EVENT_INTERVAL_S)
        seen = self._event_seconds.get(key)
        if seen is not None and seen[0] == second:
            return seen[1]
        event_id = self._events.emit(
            SecurityEvent(
                kind=CONNECTION_LIMITED,
                client_ip=client_ip,
                action="block",
                details={"limit": self._max, "counted_as": key, "open": self._open.get(key, 0)},
            )
        )
        if seen is None and len(self._event_seconds) >= EVENT_KEYS_MAX:
            self._event_seconds.clear()
        self._event_seconds[key] = (second, event_id)
        return event_id

    def snapshot(self) -> dict[str, object]:
        return {
            "per_ip_max": self._max,
            "addresses": len(self._open),
            "refused": self.refused,
        }


def build_connection_limits(
    settings: Settings,
    worker: int,
    events: SecurityEvents,
    *,
    exempt: Callable[[str], bool] | None = None,
) -> ConnectionLimits:
    """Edge worker ``worker``'s per-address connection caps; ``exempt`` is typically
    ``BlocklistProtection.blocklist.allows_address`` (allow-listed addresses are exempt)."""
    del worker  # every worker counts its own connections with the same cap
    config = settings.edge.blocklist
    return ConnectionLimits(
        config.connections_per_ip_max,
        events,
        ipv6_prefix_len=config.ipv6_prefix_len,
        exempt=exempt,
    )
