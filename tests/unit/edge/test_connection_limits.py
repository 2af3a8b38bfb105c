"""Per-address connection caps: one address cannot hold an edge worker's connections."""

from __future__ import annotations

from pathlib import Path

from strongroom.config import Settings
from strongroom.edge.connection_limits import (
    TOO_MANY_CONNECTIONS,
    ConnectionLimits,
    build_connection_limits,
)
from strongroom.edge.security_events import CONNECTION_LIMITED, SecurityEvents


class Clock:
    def __init__(self, at: float = 100.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def limits(per_ip_max: int = 3, **options: object) -> tuple[ConnectionLimits, SecurityEvents]:
    events = SecurityEvents(None, 0)
    return ConnectionLimits(per_ip_max, events, **options), events  # type: ignore[arg-type]


def test_an_address_gets_its_cap_and_one_more_is_refused_with_429() -> None:
    gate, events = limits(3)
    assert [gate.admit_connection("192.0.2.1") for _ in range(3)] == [None, None, None]
    refusal = gate.admit_connection("192.0.2.1")
    assert refusal is not None
    assert (refusal.status, refusal.type_id, refusal.close) == (429, TOO_MANY_CONNECTIONS, True)
    assert refusal.retry_after_s == 1
    [event] = events.drain()
    assert event["kind"] == CONNECTION_LIMITED
    assert event["event_id"] == refusal.event_id
    assert event["details"]["limit"] == 3


def test_other_addresses_are_not_affected() -> None:
    gate, _ = limits(1)
    assert gate.admit_connection("192.0.2.1") is None
    assert gate.admit_connection("192.0.2.2") is None


def test_a_closed_connection_frees_its_slot_and_idle_addresses_are_forgotten() -> None:
    gate, _ = limits(2)
    gate.admit_connection("192.0.2.1")
    gate.admit_connection("192.0.2.1")
    assert gate.admit_connection("192.0.2.1") is not None
    gate.connection_closed("192.0.2.1")
    assert gate.admit_connection("192.0.2.1") is None
    gate.connection_closed("192.0.2.1")
    gate.connection_closed("192.0.2.1")
    assert gate.open_connections("192.0.2.1") == 0
    assert gate.snapshot()["addresses"] == 0


def test_a_refused_connection_holds_no_slot() -> None:
    gate, _ = limits(1)
    gate.admit_connection("192.0.2.1")
    for _ in range(5):
        assert gate.admit_connection("192.0.2.1") is not None
    gate.connection_closed("192.0.2.1")  # the one admitted
    assert gate.admit_connection("192.0.2.1") is None


def test_ipv6_addresses_of_one_slash_64_share_a_cap() -> None:
    gate, _ = limits(2)
    assert gate.admit_connection("2001:db8:1:2::1") is None
    assert gate.admit_connection("2001:db8:1:2::ffff") is None
    assert gate.admit_connection("2001:db8:1:2:abcd::9") is not None
    assert gate.admit_connection("2001:db8:1:3::1") is None
    assert gate.key("2001:db8:1:2::1") == "2001:db8:1:2::/64"


def test_an_ipv4_client_on_a_dual_stack_socket_is_counted_as_ipv4() -> None:
    gate, _ = limits(1)
    assert gate.admit_connection("::ffff:192.0.2.1") is None
    assert gate.admit_connection("192.0.2.1") is not None


def test_exempt_addresses_are_never_capped_but_still_counted() -> None:
    gate, _ = limits(1, exempt=lambda ip: ip == "192.0.2.1")
    for _ in range(10):
        assert gate.admit_connection("192.0.2.1") is None
    assert gate.open_connections("192.0.2.1") == 10


def test_events_are_folded_to_one_per_address_per_second() -> None:
    clock = Clock()
    gate, events = limits(1, monotonic=clock)
    gate.admit_connection("192.0.2.1")
    ids = {gate.admit_connection("192.0.2.1").event_id for _ in range(20)}  # type: ignore[union-attr]
    assert len(ids) == 1
    clock.at += 1
    assert gate.admit_connection("192.0.2.1").event_id not in ids  # type: ignore[union-attr]
    assert len(events.drain()) == 2
    assert gate.snapshot()["refused"] == 21


def test_the_factory_takes_the_cap_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, edge={"blocklist": {"connections_per_ip_max": 2, "ipv6_prefix_len": 48}}
    )
    gate = build_connection_limits(settings, 0, SecurityEvents(None, 0))
    assert gate.snapshot()["per_ip_max"] == 2
    assert gate.key("2001:db8:1:2::1") == "2001:db8:1::/48"
