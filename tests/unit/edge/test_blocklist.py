"""The edge's in-memory blocklist: addresses, networks, clients, expiry, allow over block,
the gate's refusals and events, and entry validation."""

from __future__ import annotations

import ipaddress
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.edge.blocklist import (
    BLOCKED,
    DECISION_CACHE_IPS_MAX,
    Blocklist,
    BlocklistGate,
    address_key,
)
from strongroom.edge.blocklist_ports import (
    BlockEntry,
    InvalidBlockEntry,
    canonical_value,
    parse_target,
    validate_entry,
)
from strongroom.edge.guard import GateRequest, Identity
from strongroom.edge.security_events import BLOCKLIST_HIT, SecurityEvents

NOW = 1_800_000_000.0
_ids = count(1)


class Clock:
    def __init__(self, at: float = NOW) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def entry(
    target: str,
    action: str = "block",
    *,
    expires_at: float | None = None,
    removed_at: float | None = None,
    entry_id: int | None = None,
) -> BlockEntry:
    kind, value = parse_target(target)
    kind, value, checked_action = validate_entry(kind, value, action, "test", None)
    return BlockEntry(
        id=next(_ids) if entry_id is None else entry_id,
        kind=kind,
        value=value,
        action=checked_action,
        reason="test",
        created_by="operator:test",
        created_at=NOW - 10,
        expires_at=expires_at,
        removed_at=removed_at,
        version=1,
    )


def blocklist(*entries: BlockEntry, clock: Clock | None = None) -> Blocklist:
    held = Blocklist(clock or Clock())
    held.apply(entries)
    return held


def request(ip: str, client_id: str | None = None) -> GateRequest:
    return GateRequest(
        client_ip=ip,
        method=b"POST",
        target=b"/v1/transfers?x=1",
        headers=[],
        request_id="req-1",
        identity=Identity(client_id, "tenant-1") if client_id else None,
    )


# --- addresses and networks -------------------------------------------------------------


def test_a_blocked_ipv4_address_is_refused_and_its_neighbour_is_not() -> None:
    held = blocklist(entry("203.0.113.7"))
    assert held.decide("203.0.113.7") is not None
    assert held.decide("203.0.113.8") is None


def test_a_blocked_ipv4_network_covers_every_address_in_it() -> None:
    held = blocklist(entry("198.51.100.0/24"))
    assert held.decide("198.51.100.0") is not None
    assert held.decide("198.51.100.255") is not None
    assert held.decide("198.51.101.0") is None


def test_ipv6_addresses_and_networks_match_in_any_spelling() -> None:
    held = blocklist(entry("2001:db8::/32"), entry("2001:db9::1"))
    assert held.decide("2001:db8:ffff::1") is not None
    assert held.decide("2001:0db9:0000::0001") is not None
    assert held.decide("2001:db9::2") is None
    assert held.decide("fe80::1%eth0") is None


def test_an_ipv4_client_on_a_dual_stack_socket_matches_its_ipv4_entry() -> None:
    held = blocklist(entry("192.0.2.1"), entry("10.0.0.0/8"))
    assert held.decide("::ffff:192.0.2.1") is not None
    assert held.decide("::ffff:10.9.9.9") is not None


def test_the_most_specific_block_is_the_one_reported() -> None:
    wide = entry("10.0.0.0/8")
    narrow = entry("10.1.0.0/16")
    held = blocklist(wide, narrow)
    assert held.decide("10.1.2.3") == narrow
    assert held.decide("10.2.0.1") == wide


def test_a_peer_that_is_not_an_address_is_never_refused() -> None:
    held = blocklist(entry("10.0.0.0/8"))
    assert held.decide("") is None
    assert held.decide("not-an-ip") is None
    assert address_key("/run/edge.sock") is None


# --- allow wins --------------------------------------------------------------------------


def test_an_allowed_address_inside_a_blocked_network_passes() -> None:
    held = blocklist(entry("10.0.0.0/8"), entry("10.1.2.3", "allow"))
    assert held.decide("10.1.2.3") is None
    assert held.decide("10.1.2.4") is not None


def test_an_allowed_network_wins_over_a_narrower_block_inside_it() -> None:
    held = blocklist(entry("10.0.0.0/8", "allow"), entry("10.1.2.3"))
    assert held.decide("10.1.2.3") is None


def test_an_allowed_address_is_exempt_from_client_blocks_too() -> None:
    held = blocklist(entry("client:mallory"), entry("192.0.2.0/24", "allow"))
    assert held.decide("192.0.2.9", "mallory") is None
    assert held.decide("198.51.100.1", "mallory") is not None


def test_a_client_allow_wins_over_a_client_block_but_not_over_an_address_block() -> None:
    held = blocklist(entry("client:partner"), entry("client:partner", "allow"), entry("192.0.2.1"))
    assert held.decide("198.51.100.1", "partner") is None
    assert held.decide("192.0.2.1", "partner") is not None


# --- clients -----------------------------------------------------------------------------


def test_a_blocked_client_is_refused_from_any_address_once_it_is_known() -> None:
    held = blocklist(entry("client:mallory"))
    assert held.decide("198.51.100.1", "mallory") is not None
    assert held.decide("198.51.100.1", "alice") is None
    assert held.decide("198.51.100.1") is None  # anonymous: the pod decides


# --- expiry and removal --------------------------------------------------------------------


def test_an_entry_stops_matching_at_its_expiry_without_a_sync() -> None:
    clock = Clock()
    held = blocklist(entry("192.0.2.1", expires_at=NOW + 60), clock=clock)
    assert held.decide("192.0.2.1") is not None
    clock.at = NOW + 59.999
    assert held.decide("192.0.2.1") is not None
    clock.at = NOW + 60
    assert held.decide("192.0.2.1") is None
    assert len(held) == 0


def test_an_expired_allow_stops_exempting_its_address() -> None:
    clock = Clock()
    held = blocklist(
        entry("10.0.0.0/8"), entry("10.1.2.3", "allow", expires_at=NOW + 5), clock=clock
    )
    assert held.decide("10.1.2.3") is None
    clock.at = NOW + 5
    assert held.decide("10.1.2.3") is not None


def test_an_entry_already_expired_or_removed_is_not_applied() -> None:
    held = blocklist(entry("192.0.2.1", expires_at=NOW - 1), entry("192.0.2.2", removed_at=NOW))
    assert len(held) == 0
    assert held.decide("192.0.2.1") is None


def test_a_removal_replaces_the_entry_of_its_id() -> None:
    clock = Clock()
    blocked = entry("192.0.2.1")
    held = blocklist(blocked, clock=clock)
    held.apply([entry("192.0.2.1", removed_at=NOW, entry_id=blocked.id)])
    assert held.decide("192.0.2.1") is None
    assert len(held) == 0


def test_replace_holds_exactly_the_given_entries() -> None:
    held = blocklist(entry("192.0.2.1"), entry("client:x"))
    held.replace([entry("192.0.2.2")])
    assert held.decide("192.0.2.1") is None
    assert held.decide("192.0.2.2") is not None
    assert held.decide("192.0.2.3", "x") is None


def test_a_malformed_stored_value_is_skipped_and_later_changes_still_apply() -> None:
    bad = BlockEntry(99_001, "cidr", "10.0.0.0/99", "block", "", "x", NOW, None, None, 1)
    held = blocklist(bad, entry("192.0.2.1"))
    assert held.malformed == 1
    assert held.decide("192.0.2.1") is not None


def test_cached_decisions_follow_changes_and_the_cache_stays_bounded() -> None:
    held = blocklist(entry("10.0.0.0/8"))
    assert held.decide("10.0.0.1") is not None
    held.apply([entry("10.0.0.1", "allow")])
    assert held.decide("10.0.0.1") is None
    for i in range(DECISION_CACHE_IPS_MAX + 10):
        held.decide(f"11.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(held._cache) <= DECISION_CACHE_IPS_MAX


def test_many_expiring_entries_leave_nothing_behind() -> None:
    clock = Clock()
    held = Blocklist(clock)
    for i in range(3000):
        blocked = entry(f"10.0.{i >> 8}.{i & 255}", expires_at=NOW + 1 + i % 50)
        held.apply([blocked])
        held.apply([entry(blocked.value, removed_at=NOW, entry_id=blocked.id)])
    assert len(held) == 0
    assert len(held._expiries) <= 1025  # stale expiries compacted past the slack
    clock.at = NOW + 100
    assert held.decide("10.0.0.1") is None


# --- the gate ------------------------------------------------------------------------------


def gate(*entries: BlockEntry, clock: Clock | None = None) -> tuple[BlocklistGate, SecurityEvents]:
    events = SecurityEvents(None, 0)
    mono = clock or Clock(1000.0)
    return BlocklistGate(blocklist(*entries), events, monotonic=mono), events


def test_the_gate_refuses_with_403_blocked_and_an_event_naming_the_entry() -> None:
    blocked = entry("client:mallory", expires_at=NOW + 3600)
    g, events = gate(blocked)
    refusal = g.check(request("198.51.100.1", "mallory"))
    assert refusal is not None
    assert (refusal.status, refusal.type_id) == (403, BLOCKED)
    assert refusal.event_id and refusal.event_id.startswith("sev-")
    [event] = events.drain()
    assert event["event_id"] == refusal.event_id
    assert event["kind"] == BLOCKLIST_HIT
    assert event["client_id"] == "mallory"
    assert event["tenant_id"] == "tenant-1"
    assert event["path"] == "/v1/transfers"
    assert event["details"]["entry_id"] == blocked.id
    assert event["details"]["kind"] == "client"
    assert event["details"]["value"] == "mallory"
    assert event["details"]["expires_at"] == NOW + 3600
    assert "test" not in refusal.detail  # the reason is for operators, not the client


def test_a_request_from_an_address_blocked_mid_connection_also_ends_the_connection() -> None:
    g, _ = gate(entry("10.0.0.0/8"), entry("client:mallory"))
    by_address = g.check(request("10.0.0.1"))
    by_client = g.check(request("192.0.2.1", "mallory"))
    assert by_address is not None and by_address.close
    assert by_client is not None and not by_client.close


def test_the_gate_passes_requests_nothing_blocks() -> None:
    g, events = gate(entry("10.0.0.0/8"))
    assert g.check(request("192.0.2.1")) is None
    assert events.drain() == []


def test_events_are_folded_to_one_per_entry_and_address_per_second() -> None:
    mono = Clock(1000.0)
    g, events = gate(entry("10.0.0.0/8"), clock=mono)
    first = [g.check(request("10.0.0.1")) for _ in range(50)]
    assert len({r.event_id for r in first if r}) == 1
    other = g.check(request("10.0.0.2"))
    assert other is not None and other.event_id != first[0].event_id  # type: ignore[union-attr]
    mono.at = 1001.0
    later = g.check(request("10.0.0.1"))
    assert later is not None and later.event_id != first[0].event_id  # type: ignore[union-attr]
    emitted = events.drain()
    assert len(emitted) == 3
    assert emitted[-1]["details"]["folded"] == 49


def test_a_blocked_address_is_refused_at_connection_time_and_closed() -> None:
    g, events = gate(entry("192.0.2.0/24"), entry("client:mallory"))
    refusal = g.admit_connection("192.0.2.77")
    assert refusal is not None and refusal.close and refusal.status == 403
    assert g.admit_connection("198.51.100.1") is None  # clients are unknown at connect
    [event] = events.drain()
    assert event["details"]["stage"] == "connection"


# --- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kind", "value"),
    [
        ("203.0.113.7", "ip", "203.0.113.7"),
        ("::ffff:203.0.113.7", "ip", "203.0.113.7"),
        ("2001:0DB8::0001", "ip", "2001:db8::1"),
        ("10.0.0.0/8", "cidr", "10.0.0.0/8"),
        ("2001:db8::/32", "cidr", "2001:db8::/32"),
        ("::ffff:10.0.0.0/104", "cidr", "10.0.0.0/8"),
        ("client:ops-console", "client", "ops-console"),
    ],
)
def test_targets_are_stored_in_one_canonical_form(target: str, kind: str, value: str) -> None:
    parsed_kind, parsed = parse_target(target)
    assert parsed_kind == kind
    assert canonical_value(parsed_kind, parsed, "block") == value


@pytest.mark.parametrize(
    ("kind", "value", "action", "message"),
    [
        ("ip", "300.1.1.1", "block", "not an IPv4 or IPv6 address"),
        ("cidr", "10.1.2.3/8", "block", "not a network"),
        ("cidr", "0.0.0.0/0", "block", "/8 or narrower"),
        ("cidr", "::/0", "block", "/16 or narrower"),
        ("client", "", "block", "client id"),
        ("client", "a b\n", "block", "client id"),
        ("client", "x" * 65, "block", "client id"),
        ("host", "example.com", "block", "kind must be"),
        ("ip", "192.0.2.1", "deny", "action must be"),
    ],
)
def test_invalid_entries_are_refused(kind: str, value: str, action: str, message: str) -> None:
    with pytest.raises(InvalidBlockEntry, match=message):
        canonical_value(kind, value, action)


def test_a_wide_allow_is_accepted_where_a_wide_block_is_not() -> None:
    assert canonical_value("cidr", "0.0.0.0/0", "allow") == "0.0.0.0/0"


def test_reason_and_ttl_are_bounded() -> None:
    with pytest.raises(InvalidBlockEntry, match="reason"):
        validate_entry("ip", "192.0.2.1", "block", "x" * 201, None)
    with pytest.raises(InvalidBlockEntry, match="ttl"):
        validate_entry("ip", "192.0.2.1", "block", "", 0)
    with pytest.raises(InvalidBlockEntry, match="ttl"):
        validate_entry("ip", "192.0.2.1", "block", "", 11 * 366 * 86_400)


# --- property: the matcher agrees with a naive ipaddress reference ---------------------


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if draw(st.booleans()):
        prefix = draw(st.integers(8, 32))
        address = draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix)
        return ipaddress.IPv4Network((address, prefix))
    prefix = draw(st.integers(16, 128))
    address = draw(st.integers(0, 2**128 - 1)) >> (128 - prefix) << (128 - prefix)
    network = ipaddress.IPv6Network((address, prefix))
    if network.network_address.ipv4_mapped is not None:
        return ipaddress.IPv6Network((1 << 127 | address, prefix), strict=False)
    return network


def _near(draw: st.DrawFn, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """An address inside the network or just outside it (the boundaries matter most)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    top = 2**network.max_prefixlen - 1
    number = draw(st.sampled_from([first, last, max(first - 1, 0), min(last + 1, top)]))
    factory = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
    return str(factory(number))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), nets=st.lists(st.tuples(networks(), st.booleans()), min_size=1, max_size=8))
def test_decisions_match_a_naive_reference(
    data: st.DataObject,
    nets: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bool]],
) -> None:
    entries = [
        BlockEntry(i, "cidr", str(n), "allow" if allow else "block", "", "x", NOW, None, None, i)
        for i, (n, allow) in enumerate(nets, start=1)
    ]
    held = blocklist(*entries)
    for _ in range(6):
        network = data.draw(st.sampled_from([n for n, _ in nets]))
        address = data.draw(st.one_of(st.just(_near(data.draw, network)), st.ip_addresses()))
        parsed = ipaddress.ip_address(address)
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped  # a dual-stack socket's spelling of an IPv4 client
        allowed = any(parsed in n for n, allow in nets if allow and n.version == parsed.version)
        blocking = [n for n, allow in nets if not allow and n.version == parsed.version]
        expected_blocked = not allowed and any(parsed in n for n in blocking)
        found = held.decide(str(parsed))
        assert (found is not None) == expected_blocked, (address, nets)
        if found is not None:
            assert parsed in ipaddress.ip_network(found.value)
            assert found.action == "block"
