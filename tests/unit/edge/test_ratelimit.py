"""Rate limits at the edge: GCRA, policy matching, keys, RateLimit headers, events, caps."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.config import (
    ConcurrencyPolicy,
    RateLimitPolicy,
    RateLimitSettings,
    Settings,
)
from strongroom.edge.guard import GateRequest, Identity, Refusal
from strongroom.edge.ratelimit import (
    NS_PER_S,
    ConcurrencyLimit,
    KeyMaker,
    LocalStore,
    RateLimitGate,
    RateLimitProtection,
    RatePolicy,
    RefusalEvents,
    RouteMatch,
    build_rate_limits,
    compile_policies,
    gcra,
    normalized_path,
)
from strongroom.edge.ratelimit_shared import SharedMemoryStore
from strongroom.edge.security_events import RATE_LIMITED, SecurityEvents

# RFC 8941 shapes of draft-ietf-httpapi-ratelimit-headers-11 §3 and §4 as this edge emits
# them: a String item naming the policy, then integer parameters.
POLICY_FIELD = re.compile(rb'^"[a-z0-9._-]+";q=\d+;w=\d+;strongroom-burst=\d+$')
RATELIMIT_FIELD = re.compile(rb'^"[a-z0-9._-]+";r=\d+;t=\d+$')


class Clock:
    def __init__(self, now: int = 1_000 * NS_PER_S) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance_s(self, seconds: float) -> None:
        self.now += int(seconds * NS_PER_S)


class WallClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def policy(
    name: str = "p",
    key: str = "ip",
    limit: int = 10,
    window_s: int = 1,
    burst: int = 5,
    methods: list[str] | None = None,
    path: str = "/",
    index: int = 0,
) -> RatePolicy:
    spec = RateLimitPolicy(
        name=name,
        key=key,  # type: ignore[arg-type]
        limit=limit,
        window_s=window_s,
        burst=burst,
        methods=methods or [],
        path=path,
    )
    return RatePolicy.compile(index, spec)


def request(
    ip: str = "203.0.113.7",
    method: bytes = b"GET",
    target: bytes = b"/v1/accounts",
    identity: Identity | None = None,
    request_id: str = "req-1",
) -> GateRequest:
    return GateRequest(ip, method, target, [], request_id, identity=identity)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def shared(tmp_path: Path, clock: Clock) -> Iterator[SharedMemoryStore]:
    store = SharedMemoryStore(
        tmp_path / "rl.shm",
        rate_slots=1024,
        concurrency_slots=1024,
        workers=2,
        worker=0,
        clock=clock,
    )
    yield store
    store.close()


def make_gate(
    store: object,
    policies: list[RatePolicy],
    events: SecurityEvents,
    *,
    wall: WallClock | None = None,
    concurrency: list[ConcurrencyLimit] | None = None,
    event_keys_max: int = 100,
) -> RateLimitGate:
    return RateLimitGate(
        policies,
        concurrency or [],
        store,  # type: ignore[arg-type]
        concurrency_store=store if concurrency else None,  # type: ignore[arg-type]
        events=RefusalEvents(events, event_keys_max, clock=wall or WallClock()),
        keys=KeyMaker(64),
    )


# --- GCRA -------------------------------------------------------------------------------


def run_arrivals(p: RatePolicy, arrivals: list[int]) -> list[bool]:
    tat = 0
    out = []
    for now in arrivals:
        refused, after = gcra([tat], now, [p.interval_ns], [p.tolerance_ns])
        if refused < 0:
            tat = after[0]
        out.append(refused < 0)
    return out


def test_a_fresh_key_gets_its_burst_at_once_then_one_request_per_interval() -> None:
    p = policy(limit=10, burst=5)
    t0 = 5 * NS_PER_S
    assert run_arrivals(p, [t0] * 7) == [True] * 5 + [False] * 2
    # 100 ms later one interval (1/10 s) has passed: exactly one more.
    assert run_arrivals(p, [t0] * 5 + [t0 + NS_PER_S // 10] * 2) == [True] * 6 + [False]


def test_a_refused_request_consumes_no_quota() -> None:
    p = policy(limit=10, burst=1)
    t0 = 5 * NS_PER_S
    # Hammering while refused does not push the next admission further away.
    arrivals = [t0] + [t0 + i for i in range(1, 1000)] + [t0 + NS_PER_S // 10]
    assert run_arrivals(p, arrivals) == [True] + [False] * 999 + [True]


def test_all_policies_of_a_request_consume_together_or_not_at_all() -> None:
    loose, tight = policy("loose", limit=100, burst=100), policy("tight", limit=1, burst=1)
    now = 10 * NS_PER_S
    refused, tats = gcra([0, now + 5], now, [loose.interval_ns, tight.interval_ns], [0, 0])
    assert refused == 1
    assert tats == [now, now + 5]  # nothing advanced


def test_the_policy_refusing_longest_is_the_one_reported() -> None:
    now = 10 * NS_PER_S
    refused, _ = gcra([now + 50, now + 900], now, [100, 1000], [0, 0])
    assert refused == 1


def test_a_tat_from_the_future_is_a_clock_step_not_a_ban() -> None:
    p = policy(limit=10, burst=2)
    now = 10 * NS_PER_S
    # A TAT an hour ahead cannot come from an admission (at most tolerance + interval).
    refused, tats = gcra([now + 3600 * NS_PER_S], now, [p.interval_ns], [p.tolerance_ns])
    assert refused == -1
    assert tats == [now + p.interval_ns]


def test_intervals_round_up_so_odd_rates_never_admit_more_than_the_policy() -> None:
    p = policy(limit=3, window_s=7, burst=1)
    assert p.interval_ns == -(-7 * NS_PER_S // 3)
    assert p.interval_ns * 3 >= 7 * NS_PER_S


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 1000),
    window_s=st.integers(1, 60),
    burst=st.integers(1, 50),
    gaps=st.lists(st.integers(0, 3 * NS_PER_S), min_size=1, max_size=120),
)
def test_no_interval_admits_more_than_burst_plus_elapsed_times_rate(
    limit: int, window_s: int, burst: int, gaps: list[int]
) -> None:
    p = policy(limit=limit, window_s=window_s, burst=burst)
    arrivals = []
    now = 1_000 * NS_PER_S
    for gap in gaps:
        now += gap
        arrivals.append(now)
    admitted = [t for t, ok in zip(arrivals, run_arrivals(p, arrivals), strict=True) if ok]
    window_ns = window_s * NS_PER_S
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            count = j - i + 1
            elapsed = admitted[j] - admitted[i]
            # count <= burst + elapsed * limit / window, in integers.
            assert (count - burst) * window_ns <= elapsed * limit


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(1, 10_000),
    window_s=st.integers(1, 3600),
    burst=st.integers(1, 50),
    extra=st.lists(st.integers(0, 10**9), min_size=1, max_size=100),
)
def test_a_client_at_or_below_the_rate_is_never_refused(
    limit: int, window_s: int, burst: int, extra: list[int]
) -> None:
    p = policy(limit=limit, window_s=window_s, burst=burst)
    # Integer-nanosecond arrivals spaced at least window/limit apart.
    spacing = -(-window_s * NS_PER_S // limit)
    arrivals = []
    now = 1_000 * NS_PER_S
    for e in extra:
        arrivals.append(now)
        now += spacing + e
    assert all(run_arrivals(p, arrivals))


# --- matching ---------------------------------------------------------------------------


def test_a_path_prefix_matches_on_segment_boundaries() -> None:
    m = RouteMatch.of([], "/oauth2/token")
    assert m.matches(b"POST", b"/oauth2/token")
    assert m.matches(b"POST", b"/oauth2/token/")
    assert not m.matches(b"POST", b"/oauth2/tokens")
    assert not m.matches(b"POST", b"/v1/oauth2/token")
    assert RouteMatch.of([], "/").matches(b"GET", b"/anything/at/all")


def test_methods_restrict_a_policy() -> None:
    m = RouteMatch.of(["post"], "/oauth2/token")
    assert m.matches(b"POST", b"/oauth2/token")
    assert not m.matches(b"GET", b"/oauth2/token")


def test_globs_match_one_segment_with_a_star_and_any_depth_with_two() -> None:
    one = RouteMatch.of([], "/v1/accounts/*/transfers")
    assert one.matches(b"GET", b"/v1/accounts/acc_1/transfers")
    assert not one.matches(b"GET", b"/v1/accounts/a/b/transfers")
    deep = RouteMatch.of([], "/v1/**/holds")
    assert deep.matches(b"GET", b"/v1/accounts/a/b/holds")
    assert not deep.matches(b"GET", b"/v1/accounts/a/b/holds/x")
    chars = RouteMatch.of([], "/v[12]/?x")
    assert chars.matches(b"GET", b"/v2/ax")
    assert not chars.matches(b"GET", b"/v3/ax")


@pytest.mark.parametrize(
    "raw",
    [b"/oauth2/%74oken", b"//oauth2/token", b"/v1/../oauth2/token", b"/oauth2/./token"],
)
def test_policies_match_the_path_the_pod_will_route(raw: bytes) -> None:
    assert normalized_path(raw) == b"/oauth2/token"


def test_plain_paths_are_not_rewritten() -> None:
    path = b"/v1/accounts/acc_1"
    assert normalized_path(path) is path


# --- keys -------------------------------------------------------------------------------


def test_ipv6_clients_share_a_limit_per_64_network() -> None:
    keys = KeyMaker(64)
    a = keys.ip_key("2001:db8:1:2::1")
    assert a == keys.ip_key("2001:db8:1:2:ffff::9")
    assert a != keys.ip_key("2001:db8:1:3::1")
    assert keys.ip_key("::ffff:198.51.100.4") == b"198.51.100.4"
    assert keys.ip_key("198.51.100.4") == b"198.51.100.4"


def test_client_and_tenant_policies_skip_anonymous_requests(
    shared: SharedMemoryStore,
) -> None:
    events = SecurityEvents(None, 0)
    policies = [
        policy("ip", "ip", limit=1000, burst=1000, index=0),
        policy("client", "client", limit=1, burst=1, index=1),
        policy("tenant", "tenant", limit=1, burst=1, index=2),
    ]
    gate = make_gate(shared, policies, events)
    for i in range(5):
        assert gate.check(request(request_id=f"a{i}")) is None
    assert gate.check(request(identity=Identity("c1", None))) is None
    # Second request of client c1: the client policy refuses; no tenant is known.
    refusal = gate.check(request(identity=Identity("c1", None)))
    assert isinstance(refusal, Refusal)
    assert refusal.headers[0][1].startswith(b'"client"')


def test_an_exempt_address_skips_per_address_policies_only(shared: SharedMemoryStore) -> None:
    gate = RateLimitGate(
        [
            policy("ip", "ip", limit=1, burst=1, index=0),
            policy("client", "client", limit=1, burst=1, index=1),
        ],
        [],
        shared,
        concurrency_store=None,
        events=RefusalEvents(SecurityEvents(None, 0), 100, clock=WallClock()),
        keys=KeyMaker(64, exempt=lambda ip: ip == "192.0.2.1"),
    )
    for _ in range(5):
        assert gate.check(request(ip="192.0.2.1")) is None
    assert gate.check(request(ip="192.0.2.1", identity=Identity("c9"))) is None
    refusal = gate.check(request(ip="192.0.2.1", identity=Identity("c9")))
    assert isinstance(refusal, Refusal)
    assert refusal.headers[0][1].startswith(b'"client"')
    assert gate.check(request(ip="192.0.2.2")) is None
    assert isinstance(gate.check(request(ip="192.0.2.2")), Refusal)


def test_exempt_networks_skip_per_address_policies(shared: SharedMemoryStore) -> None:
    keys = KeyMaker(64, exempt_networks=["10.0.0.0/8", "::1/128"])
    assert keys.key("ip", request(ip="10.1.2.3")) is None
    assert keys.key("ip", request(ip="::ffff:10.1.2.3")) is None
    assert keys.key("ip", request(ip="::1")) is None
    assert keys.key("ip", request(ip="192.0.2.1")) == b"192.0.2.1"
    assert keys.key("client", request(ip="10.1.2.3", identity=Identity("c1"))) == b"c1"


def test_exempt_networks_are_validated_with_the_settings() -> None:
    with pytest.raises(ValueError, match="exempt_networks"):
        RateLimitSettings(exempt_networks=["10.0.0.0/33"])


# --- the gate: headers and refusals -----------------------------------------------------


def test_admitted_requests_carry_the_most_restrictive_policys_fields(
    shared: SharedMemoryStore,
) -> None:
    events = SecurityEvents(None, 0)
    gate = make_gate(
        shared,
        [
            policy("wide", limit=100, burst=50, index=0),
            policy("narrow", limit=10, burst=3, index=1),
        ],
        events,
    )
    req = request()
    assert gate.check(req) is None
    fields = dict(req.response_headers)
    assert fields[b"ratelimit-policy"] == b'"narrow";q=10;w=1;strongroom-burst=3'
    assert fields[b"ratelimit"] == b'"narrow";r=2;t=1'
    assert POLICY_FIELD.match(fields[b"ratelimit-policy"])
    assert RATELIMIT_FIELD.match(fields[b"ratelimit"])


def test_a_refusal_is_a_429_with_retry_after_matching_the_effective_window(
    shared: SharedMemoryStore, clock: Clock
) -> None:
    events = SecurityEvents(None, 0)
    gate = make_gate(shared, [policy("slow", limit=1, window_s=10, burst=1)], events)
    assert gate.check(request()) is None
    clock.advance_s(2.5)
    refusal = gate.check(request())
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.type_id) == (429, "rate-limited")
    assert refusal.retry_after_s == 8  # 7.5 s left, rounded up
    fields = dict(refusal.headers)
    assert fields[b"ratelimit"] == b'"slow";r=0;t=8'
    assert POLICY_FIELD.match(fields[b"ratelimit-policy"])
    assert refusal.event_id


def test_retry_after_is_at_least_one_second(shared: SharedMemoryStore) -> None:
    gate = make_gate(shared, [policy(limit=1000, burst=1)], SecurityEvents(None, 0))
    assert gate.check(request()) is None
    refusal = gate.check(request())
    assert isinstance(refusal, Refusal)
    assert refusal.retry_after_s == 1


def test_requests_outside_every_policy_pass_without_fields(shared: SharedMemoryStore) -> None:
    gate = make_gate(
        shared,
        [policy(limit=1, burst=1, methods=["POST"], path="/oauth2/token")],
        SecurityEvents(None, 0),
    )
    req = request(method=b"GET", target=b"/oauth2/token")
    for _ in range(3):
        assert gate.check(req) is None
    assert req.response_headers == []


# --- security events --------------------------------------------------------------------


def test_refusals_of_one_key_in_one_second_are_one_event_with_their_count(
    shared: SharedMemoryStore,
) -> None:
    events = SecurityEvents(None, 0)
    wall = WallClock(1_800_000_000.2)
    gate = make_gate(shared, [policy(limit=1, window_s=60, burst=1)], events, wall=wall)
    assert gate.check(request()) is None
    ids = set()
    for i in range(1000):
        refusal = gate.check(request(request_id=f"r{i}"))
        assert isinstance(refusal, Refusal)
        ids.add(refusal.event_id)
    assert len(ids) == 1
    assert events.drain() == []  # the second is not over yet
    wall.now += 1.0
    gate.events.sweep()
    (event,) = events.drain()
    assert event["event_id"] == ids.pop()
    assert event["kind"] == RATE_LIMITED
    assert event["action"] == "throttle"
    assert event["request_id"] == "r0"
    details = event["details"]
    assert details["refused"] == 1000
    assert (details["policy"], details["key_kind"], details["limit"], details["window_s"]) == (
        "p",
        "ip",
        1,
        60,
    )


def test_the_next_second_starts_a_new_event(shared: SharedMemoryStore) -> None:
    events = SecurityEvents(None, 0)
    wall = WallClock()
    gate = make_gate(shared, [policy(limit=1, window_s=60, burst=1)], events, wall=wall)
    gate.check(request())
    first = gate.check(request())
    wall.now += 1.0
    second = gate.check(request())
    assert isinstance(first, Refusal) and isinstance(second, Refusal)
    assert first.event_id != second.event_id
    # The first second's event went out when the second one began.
    assert [e["event_id"] for e in events.drain()] == [first.event_id]


def test_a_flood_from_many_keys_is_capped_to_one_shared_event_per_policy(
    shared: SharedMemoryStore,
) -> None:
    events = SecurityEvents(None, 0)
    gate = make_gate(shared, [policy(limit=1, window_s=60, burst=1)], events, event_keys_max=3)
    for i in range(10):
        ip = f"198.51.100.{i}"
        gate.check(request(ip=ip))
        gate.check(request(ip=ip))
    gate.events.sweep(everything=True)
    emitted = events.drain()
    assert len(emitted) == 4
    overflow = [e for e in emitted if e["details"]["key"] == "*"]
    assert overflow[0]["details"]["refused"] == 7


def test_cancelled_run_emits_pending_events(shared: SharedMemoryStore) -> None:
    events = SecurityEvents(None, 0)
    gate = make_gate(shared, [policy(limit=1, window_s=60, burst=1)], events)
    gate.check(request())
    gate.check(request())
    protection = RateLimitProtection(gate)

    async def run_briefly() -> None:
        task = asyncio.ensure_future(protection.run())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_briefly())
    assert len(events.drain()) == 1


# --- concurrency ------------------------------------------------------------------------


def cap(max_: int, key: str = "client") -> ConcurrencyLimit:
    return ConcurrencyLimit.compile(
        0,
        ConcurrencyPolicy(name="inflight", key=key, concurrent_max=max_),  # type: ignore[arg-type]
    )


def test_a_concurrency_slot_is_released_when_the_exchange_ends(shared: SharedMemoryStore) -> None:
    gate = make_gate(shared, [], SecurityEvents(None, 0), concurrency=[cap(2)])
    who = Identity("c1", "t1")
    first, second, third = (request(identity=who) for _ in range(3))
    assert gate.check(first) is None
    assert gate.check(second) is None
    refusal = gate.check(third)
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.type_id) == (429, "too-many-concurrent-requests")
    assert dict(refusal.headers)[b"ratelimit-policy"] == b'"inflight";q=2;qu="concurrent-requests"'
    (release,) = first.on_done
    release(200)  # type: ignore[operator]
    release(499)  # type: ignore[operator]  # called twice: released once
    assert shared.in_flight(b"inflight|c1") == 1
    assert gate.check(request(identity=who)) is None


def test_concurrency_is_counted_across_workers_and_reset_by_a_replacement(
    tmp_path: Path, clock: Clock
) -> None:
    def worker(index: int) -> SharedMemoryStore:
        return SharedMemoryStore(
            tmp_path / "rl.shm", rate_slots=1024, concurrency_slots=1024, workers=2, worker=index
        )

    w0, w1 = worker(0), worker(1)
    limit = [cap(3)]
    key = [b"inflight|c1"]
    assert isinstance(w0.enter(limit, key), list)
    assert isinstance(w0.enter(limit, key), list)
    assert isinstance(w1.enter(limit, key), list)
    assert w1.enter(limit, key) == 0  # the fourth anywhere on the host is refused
    # Worker 0 crashes with two requests in flight; its replacement starts clean.
    w0.close()
    w0 = worker(0)
    assert w1.in_flight(b"inflight|c1") == 1
    w0.close()
    w1.close()


# --- stores -------------------------------------------------------------------------------


def test_two_workers_share_one_budget(tmp_path: Path, clock: Clock) -> None:
    stores = [
        SharedMemoryStore(
            tmp_path / "rl.shm",
            rate_slots=1024,
            concurrency_slots=1024,
            workers=2,
            worker=i,
            clock=clock,
        )
        for i in range(2)
    ]
    p = [policy(limit=10, burst=4)]
    admitted = sum(stores[i % 2].acquire(p, [b"p|k"]).refused < 0 for i in range(20))
    assert admitted == 4
    for store in stores:
        store.close()


def test_a_full_table_evicts_expired_entries_first_then_the_least_limited(
    tmp_path: Path, clock: Clock
) -> None:
    store = SharedMemoryStore(
        tmp_path / "rl.shm",
        rate_slots=1024,
        concurrency_slots=1024,
        workers=1,
        worker=0,
        clock=clock,
    )
    p = [policy(limit=1, window_s=3600, burst=1)]
    # A quarter full: probe windows (32 slots) never run out.
    for i in range(256):
        assert store.acquire(p, [f"p|{i}".encode()]).refused < 0
    assert store.evictions == 0
    # Twice as many keys as slots, each holding an hour of back-pressure: new keys evict
    # (and are admitted, never refused for the table's sake).
    for i in range(256, 2048):
        assert store.acquire(p, [f"p|{i}".encode()]).refused < 0
    evicted = store.evictions
    assert evicted > 0
    clock.advance_s(3601)  # everything expired: slots are reused without eviction
    for i in range(256):
        assert store.acquire(p, [f"q|{i}".encode()]).refused < 0
    assert store.evictions == evicted
    store.close()


def test_a_table_of_another_geometry_is_never_reused(tmp_path: Path) -> None:
    SharedMemoryStore(
        tmp_path / "rl.shm", rate_slots=1024, concurrency_slots=1024, workers=1, worker=0
    ).close()
    with pytest.raises(ValueError, match="expected"):
        SharedMemoryStore(
            tmp_path / "rl.shm", rate_slots=2048, concurrency_slots=1024, workers=1, worker=0
        )


def test_the_local_store_stays_bounded(clock: Clock) -> None:
    store = LocalStore(keys_max=100, clock=clock)
    p = [policy(limit=1, window_s=3600, burst=1)]
    for i in range(1000):
        store.acquire(p, [f"p|{i}".encode()])
    assert len(store) <= 100
    assert store.evictions > 0


def test_a_workers_share_divides_rate_and_burst() -> None:
    share = policy(limit=100, burst=200).share(4)
    assert (share.limit, share.burst) == (25, 50)
    assert share.interval_ns == 4 * policy(limit=100, burst=200).interval_ns
    assert b"q=25" in share.policy_field


# --- wiring -----------------------------------------------------------------------------


def test_defaults_cover_ip_client_tenant_and_the_token_endpoint() -> None:
    rates, caps = compile_policies(RateLimitSettings())
    kinds = {p.key for p in rates}
    assert kinds == {"ip", "client", "tenant"}
    token = next(p for p in rates if p.name == "token-ip")
    assert token.match.matches(b"POST", b"/oauth2/token")
    assert not token.match.matches(b"GET", b"/v1/accounts")
    # Client authentication is limited far below the general per-address rate.
    ip = next(p for p in rates if p.name == "ip")
    assert token.limit * ip.window_s * 10 < ip.limit * token.window_s
    assert caps and caps[0].key == "client"


def test_policy_names_must_be_unique() -> None:
    config = RateLimitSettings(
        policies=[
            RateLimitPolicy(name="x", key="ip", limit=1, burst=1),
            RateLimitPolicy(name="x", key="client", limit=1, burst=1),
        ]
    )
    with pytest.raises(ValueError, match="unique"):
        compile_policies(config)


def test_disabled_rate_limits_build_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, edge={"rate_limits": {"enabled": False}})
    assert build_rate_limits(settings, 0, SecurityEvents(None, 0)) is None


def test_the_embedded_profile_uses_the_shared_memory_table(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, edge={"workers": 2})
    protection = build_rate_limits(settings, 1, SecurityEvents(None, 1))
    assert protection is not None
    assert protection.gate.store.name == "shared_memory"
    snapshot = protection.snapshot()
    assert snapshot["store"] == "shared_memory"
    assert str(snapshot["shared_file"]).startswith(str(tmp_path / "run"))


def test_the_production_profile_uses_redis(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        profile="production",
        database={"url": "postgresql+psycopg://x@127.0.0.1/x"},
        secrets={"edge_secret": "s" * 32, "key_encryption_key": "k" * 32},
    )
    protection = build_rate_limits(settings, 0, SecurityEvents(None, 0))
    assert protection is not None
    assert protection.gate.store.name == "redis"
    assert protection.snapshot()["redis_up"] is True
