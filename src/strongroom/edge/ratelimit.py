"""Rate limits and concurrency caps at the edge: policies, GCRA, keys, RateLimit headers.

Every request is checked against every matching policy (per client address, OAuth
client, tenant or route) and the most restrictive decides. A request is admitted only
when *all* its policies admit it, and only then is quota consumed: a client throttled
by one policy does not also drain the others.

The limiter is GCRA (the ATM Forum's generic cell rate algorithm, ITU-T I.371
"virtual scheduling"): one integer per key, the theoretical arrival time (TAT) of the
next request, advanced by the emission interval ``T = window / limit`` per admitted
request; a request arriving at ``now`` conforms while ``TAT - now <= tolerance`` with
``tolerance = (burst - 1) * T``. Over any interval of length ``d`` at most
``burst + d / T`` requests are admitted, and a client spacing requests by ``T`` is never
refused. Times are integers (nanoseconds here, microseconds in Redis): no float drift.

Where the TATs live is a *store*: a shared-memory table exact across one host's edge
workers (``ratelimit_shared``), Redis for limits across hosts (``ratelimit_redis``), or
this module's in-process :class:`LocalStore` (Redis's fail-open fallback).

Responses of limited routes carry the ``RateLimit-Policy`` and ``RateLimit`` fields of
draft-ietf-httpapi-ratelimit-headers-11 for the most restrictive policy; refusals are
429 ``rate-limited`` problems with ``Retry-After``, and each is a security event,
aggregated to one event per (policy, key) per second that carries the refusal count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast
from urllib.parse import unquote_to_bytes

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from strongroom.edge.guard import DEFER, Defer, GateRequest, Refusal
from strongroom.edge.security_events import RATE_LIMITED, SecurityEvent, SecurityEvents

if TYPE_CHECKING:
    from strongroom.config import (
        ConcurrencyPolicy,
        RateLimitPolicy,
        RateLimitSettings,
        Settings,
    )

NS_PER_S = 1_000_000_000
US_PER_S = 1_000_000
NS_PER_US = 1_000

# Stable problem types (https://strongroom.dev/problems/<id>), documented in the API docs.
RATE_LIMITED_PROBLEM = "rate-limited"
CONCURRENCY_LIMITED_PROBLEM = "too-many-concurrent-requests"
LIMITER_UNAVAILABLE_PROBLEM = "rate-limiter-unavailable"

# Aggregated events are emitted once their second is over; the background task looks
# this often, so an event reaches the SIEM at most ~1.25 s after its first refusal.
EVENT_SWEEP_INTERVAL_S = 0.25
# Address → limiter key memo per worker (IPv6 prefixes cost an ipaddress parse);
# cleared whole when full, which bounds it under a spoofed-address flood.
IP_KEYS_MAX = 65_536
# A refused client is told to come back after at least this long: Retry-After has a
# one-second resolution, and 0 would invite an immediate retry storm.
RETRY_AFTER_MIN_S = 1
# A refusal by the concurrency cap: in-flight requests finish in well under a second.
CONCURRENCY_RETRY_AFTER_S = 1

_GLOB_CHARS = frozenset(b"*?[")


# --- GCRA -------------------------------------------------------------------------------


def gcra(
    tats: Sequence[int], now: int, intervals: Sequence[int], tolerances: Sequence[int]
) -> tuple[int, list[int]]:
    """GCRA over one request's policies at once, all or nothing.

    Returns ``(refused, tats)``: ``refused`` is the index of the policy that refuses for
    longest (-1 when every policy conforms); ``tats`` are the TATs to store when admitted
    (every one advanced) or the current ones when refused (nothing is stored).

    A TAT in the past is the same as no state (a full burst). A TAT further ahead than
    any admission can have left it (``tolerance + interval``) means the clock went back
    (or the host rebooted under a monotonic clock): it counts as no state rather than
    refusing everyone until the clock catches up.
    """
    refused = -1
    wait_max = -1
    current: list[int] = []
    advanced: list[int] = []
    for i, stored in enumerate(tats):
        interval, tolerance = intervals[i], tolerances[i]
        tat = now if stored < now or stored > now + tolerance + interval else stored
        wait = tat - now - tolerance
        if wait > 0 and wait > wait_max:
            wait_max, refused = wait, i
        current.append(tat)
        advanced.append(tat + interval)
    return (refused, current) if refused >= 0 else (-1, advanced)


# --- policies and matching ----------------------------------------------------------------


def _glob_regex(glob: str) -> re.Pattern[bytes]:
    """``*`` = one path segment (or part of one), ``**`` = any depth, ``?`` = one char."""
    out: list[str] = []
    i = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(("".join(out) + r"\Z").encode())


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Which requests a policy applies to: methods and a path prefix or glob."""

    methods: frozenset[bytes]
    prefix: bytes | None
    pattern: re.Pattern[bytes] | None

    @classmethod
    def of(cls, methods: Iterable[str], path: str) -> RouteMatch:
        wanted = frozenset(m.upper().encode() for m in methods)
        raw = path.encode()
        if _GLOB_CHARS.intersection(raw):
            return cls(wanted, None, _glob_regex(path))
        return cls(wanted, raw.rstrip(b"/") if raw != b"/" else b"/", None)

    def matches(self, method: bytes, path: bytes) -> bool:
        if self.methods and method not in self.methods:
            return False
        prefix = self.prefix
        if prefix is not None:
            if prefix == b"/":
                return True
            # Segment boundaries: /oauth2/token matches /oauth2/token/x, not /oauth2/tokens.
            return path.startswith(prefix) and (
                len(path) == len(prefix) or path[len(prefix)] == 0x2F
            )
        assert self.pattern is not None
        return self.pattern.match(path) is not None


def normalized_path(path: bytes) -> bytes:
    """The path as a pod routes it: percent-decoded, dot segments and ``//`` removed.

    Policies must match what the pod will serve: ``/oauth2/%74oken`` and
    ``/v1//../oauth2/token`` reach the token endpoint too. Plain paths pass untouched.
    """
    if b"%" not in path and b"//" not in path and b"/." not in path:
        return path
    decoded = unquote_to_bytes(path) if b"%" in path else path
    segments: list[bytes] = []
    for segment in decoded.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = b"/" if decoded.endswith(b"/") and segments else b""
    return b"/" + b"/".join(segments) + trailing


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """A rate policy compiled for the request path (integer GCRA parameters)."""

    index: int
    name: str
    key: str
    limit: int
    window_s: int
    burst: int
    match: RouteMatch
    interval_ns: int
    tolerance_ns: int
    interval_us: int
    tolerance_us: int
    # Pre-rendered RateLimit-Policy item: the same bytes on every response.
    policy_field: bytes
    # Store keys are this prefix + the key value (see ``full_key``).
    key_prefix: bytes
    # The RateLimit item up to its remaining quota: b'"name";r='.
    field_prefix: bytes

    @classmethod
    def compile(cls, index: int, spec: RateLimitPolicy) -> RatePolicy:
        return cls._build(
            index,
            name=spec.name,
            key=spec.key,
            limit=spec.limit,
            window_s=spec.window_s,
            burst=spec.burst,
            match=RouteMatch.of(spec.methods, spec.path),
            parts=1,
        )

    def share(self, parts: int) -> RatePolicy:
        """One of ``parts`` equal shares: a worker's local limit while Redis is down."""
        return self._build(
            self.index,
            name=self.name,
            key=self.key,
            limit=self.limit,
            window_s=self.window_s,
            burst=self.burst,
            match=self.match,
            parts=parts,
        )

    @classmethod
    def _build(
        cls,
        index: int,
        *,
        name: str,
        key: str,
        limit: int,
        window_s: int,
        burst: int,
        match: RouteMatch,
        parts: int,
    ) -> RatePolicy:
        window_ns = window_s * NS_PER_S * parts
        # Rounding the interval up never admits more than the policy; a client whose
        # (integer-nanosecond) spacing is at least window/limit still always conforms.
        interval_ns = -(-window_ns // limit)
        interval_us = -(-window_ns // NS_PER_US // limit)
        burst = max(1, burst // parts)
        quota = max(1, limit // parts)
        field_value = f'"{name}";q={quota};w={window_s};strongroom-burst={burst}'
        return cls(
            index=index,
            name=name,
            key=key,
            limit=quota,
            window_s=window_s,
            burst=burst,
            match=match,
            interval_ns=interval_ns,
            tolerance_ns=(burst - 1) * interval_ns,
            interval_us=interval_us,
            tolerance_us=(burst - 1) * interval_us,
            policy_field=field_value.encode(),
            key_prefix=full_key(name, b""),
            field_prefix=f'"{name}";r='.encode(),
        )

    def remaining(self, offset_ns: int) -> int:
        """Requests still admissible now, given ``TAT - now`` after this request."""
        room = self.tolerance_ns + self.interval_ns - max(offset_ns, 0)
        return max(0, min(self.burst, room // self.interval_ns))


@dataclass(frozen=True, slots=True)
class ConcurrencyLimit:
    index: int
    name: str
    key: str
    concurrent_max: int
    match: RouteMatch
    policy_field: bytes
    key_prefix: bytes

    @classmethod
    def compile(cls, index: int, spec: ConcurrencyPolicy) -> ConcurrencyLimit:
        value = f'"{spec.name}";q={spec.concurrent_max};qu="concurrent-requests"'
        return cls(
            index,
            spec.name,
            spec.key,
            spec.concurrent_max,
            RouteMatch.of(spec.methods, spec.path),
            value.encode(),
            full_key(spec.name, b""),
        )


# --- keys -------------------------------------------------------------------------------


class KeyMaker:
    """A request's limiter key per key kind; IPv6 addresses are keyed by network.

    Exempt addresses (``exempt_networks`` from settings, or the ``exempt`` test — an
    allowlist's) skip the per-address policies only: a partner's NAT gateway or a local
    load balancer is not limited as one client, while OAuth clients and tenants behind
    it still are.
    """

    def __init__(
        self,
        ipv6_prefix_len: int,
        exempt: Callable[[str], bool] | None = None,
        exempt_networks: Iterable[str] = (),
    ) -> None:
        self._v6_shift = 128 - ipv6_prefix_len
        # Address → its key, or b"" when it is in an exempt network (fixed at start).
        self._ip_keys: dict[str, bytes] = {}
        self._exempt = exempt
        self._exempt_networks = [ipaddress.ip_network(n, strict=False) for n in exempt_networks]

    def ip_key(self, client_ip: str) -> bytes:
        """The address's key; b"" when the address is exempt from per-address limits."""
        known = self._ip_keys.get(client_ip)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(client_ip.split("%", 1)[0])
        except ValueError:
            key = client_ip.encode()
        else:
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if any(address in network for network in self._exempt_networks):
                key = b""
            elif isinstance(address, ipaddress.IPv4Address):
                key = str(address).encode()
            else:
                network = int(address) >> self._v6_shift
                key = f"{network:x}/{128 - self._v6_shift}".encode()
        if len(self._ip_keys) >= IP_KEYS_MAX:
            self._ip_keys.clear()
        self._ip_keys[client_ip] = key
        return key

    def key(self, kind: str, request: GateRequest) -> bytes | None:
        """None when the key does not apply (no known client or tenant for the token)."""
        if kind == "ip":
            key = self.ip_key(request.client_ip)
            exempt = self._exempt
            if not key or (exempt is not None and exempt(request.client_ip)):
                return None
            return key
        identity = request.identity
        if kind == "client":
            return identity.client_id.encode() if identity is not None else None
        if kind == "tenant":
            if identity is None or not identity.tenant_id:
                return None
            return identity.tenant_id.encode()
        return b"*"  # route: one budget for every caller


def full_key(name: str, value: bytes) -> bytes:
    """The store key: the policy name scopes the key value (two policies never share)."""
    return name.encode() + b"|" + value


def key_hash(key: bytes) -> int:
    """A 64-bit hash equal in every process (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") or 1


# --- stores -------------------------------------------------------------------------------


@dataclass(slots=True)
class Verdict:
    """A store's answer for one request's policies.

    ``offsets_ns[i]`` is ``TAT - now`` for ``policies[i]`` after the decision (advanced
    when admitted). ``policies`` are the ones actually applied (a fallback applies each
    worker's share). ``unavailable``: no store could decide and the mode is fail-closed.
    """

    refused: int
    offsets_ns: list[int]
    policies: Sequence[RatePolicy]
    unavailable: bool = False


class RateStore(Protocol):
    """Where TATs live. ``acquire`` may answer DEFER; then ``acquire_async`` decides."""

    name: str

    def acquire(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict | Defer:
        """Decide and (when admitted) consume quota for every policy at once."""

    async def acquire_async(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        """Decide with I/O; only called after ``acquire`` answered DEFER."""

    def snapshot(self) -> dict[str, object]:
        """Counters for /healthz and metrics."""


_Limit = TypeVar("_Limit", RatePolicy, ConcurrencyLimit)


class ConcurrencyStore(Protocol):
    def enter(self, limits: Sequence[ConcurrencyLimit], keys: Sequence[bytes]) -> int | list[int]:
        """Admit (returns a release token) or refuse (returns the refusing limit's index)."""

    def leave(self, token: list[int]) -> None:
        """The request admitted with ``token`` ended."""

    def snapshot(self) -> dict[str, object]:
        """Counters for /healthz and metrics."""


class LocalStore:
    """TATs in a dict: one process's view (the fail-open fallback when Redis is down).

    Bounded: beyond ``keys_max`` keys, expired TATs (equivalent to no state) are dropped,
    then the oldest keys — which lets those clients burst again, never refuses anyone.
    """

    name = "local"

    def __init__(self, keys_max: int, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._tats: dict[bytes, int] = {}
        self._keys_max = keys_max
        self._clock = clock
        self.evictions = 0

    def acquire(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        now = self._clock()
        tats = self._tats
        current = [tats.get(k, 0) for k in keys]
        refused, after = gcra(
            current, now, [p.interval_ns for p in policies], [p.tolerance_ns for p in policies]
        )
        if refused < 0:
            for key, tat in zip(keys, after, strict=True):
                tats[key] = tat
            if len(tats) > self._keys_max:
                self._prune(now)
        return Verdict(refused, [tat - now for tat in after], policies)

    async def acquire_async(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        return self.acquire(policies, keys)

    def _prune(self, now: int) -> None:
        """Drop expired TATs; if that frees too little, the oldest keys down to half.

        Leaving room (a quarter at least) keeps the O(n) sweep rare: amortised O(1).
        """
        tats = self._tats
        for key in [k for k, tat in tats.items() if tat <= now]:
            del tats[key]
        if len(tats) > self._keys_max * 3 // 4:
            excess = len(tats) - self._keys_max // 2
            for key in list(tats)[:excess]:
                del tats[key]
            self.evictions += excess

    def __len__(self) -> int:
        return len(self._tats)

    def snapshot(self) -> dict[str, object]:
        return {"keys": len(self._tats), "evictions": self.evictions}


# --- RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-11) --------------------


def ratelimit_fields(
    policy_field: bytes, name: str, remaining: int, reset_s: int | None
) -> list[tuple[bytes, bytes]]:
    """§3 RateLimit-Policy (a String item with q, w, …) and §4 RateLimit (r, t)."""
    item = f'"{name}";r={remaining}' if reset_s is None else f'"{name}";r={remaining};t={reset_s}'
    return [(b"ratelimit-policy", policy_field), (b"ratelimit", item.encode())]


def ceil_s(ns: int) -> int:
    return -(-max(ns, 0) // NS_PER_S)


# --- security events ------------------------------------------------------------------


@dataclass(slots=True)
class _Window:
    second: int
    event: SecurityEvent
    refused: int = 1


class RefusalEvents:
    """One RATE_LIMITED event per (policy, key) per second, carrying the refusal count.

    The first refusal of a second reserves the event's id (quoted to that client and to
    every later one of the same second); the event itself is emitted once its second is
    over, with the final count. An attack at 10k r/s from one key is one event a second.
    """

    def __init__(
        self,
        events: SecurityEvents,
        keys_max: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._events = events
        self._keys_max = keys_max
        self._clock = clock
        self._windows: dict[tuple[str, bytes], _Window] = {}
        self._swept_second = 0
        self.emitted = 0

    def refused(
        self, policy: str, key: bytes, request: GateRequest, details: dict[str, Any]
    ) -> str:
        now = self._clock()
        second = int(now)
        if second != self._swept_second:
            self.sweep(now)
        windows = self._windows
        slot = (policy, key)
        window = windows.get(slot)
        if window is None and len(windows) >= self._keys_max:
            # A spread-out flood: every further key of this second shares one event.
            slot = (policy, b"*")
            window = windows.get(slot)
            details = {**details, "key": "*", "aggregated_keys": True}
        if window is not None:
            window.refused += 1
            return window.event.event_id
        identity = request.identity
        event = SecurityEvent(
            kind=RATE_LIMITED,
            client_ip=request.client_ip,
            request_id=request.request_id,
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            client_id=identity.client_id if identity is not None else None,
            tenant_id=identity.tenant_id if identity is not None else None,
            action="throttle",
            details=details,
            at=now,
        )
        event.event_id = self._events.reserve_id()
        windows[slot] = _Window(second, event)
        return event.event_id

    def sweep(self, now: float | None = None, *, everything: bool = False) -> int:
        """Emit the events whose second is over (all of them when ``everything``)."""
        second = int(self._clock() if now is None else now)
        self._swept_second = second
        done = [slot for slot, w in self._windows.items() if everything or w.second < second]
        for slot in done:
            window = self._windows.pop(slot)
            details = dict(window.event.details)
            details["refused"] = window.refused
            details["second"] = window.second
            window.event.details = details
            self._events.emit(window.event)
        self.emitted += len(done)
        return len(done)

    def __len__(self) -> int:
        return len(self._windows)


# --- the gate ---------------------------------------------------------------------------


@dataclass(slots=True)
class Counters:
    admitted: int = 0
    refused: int = 0
    concurrency_refused: int = 0
    unavailable: int = 0
    by_policy: dict[str, int] = field(default_factory=dict)


class RateLimitGate:
    """The edge gate: rate policies through a store, then concurrency caps."""

    name = "ratelimit"

    def __init__(
        self,
        policies: Sequence[RatePolicy],
        concurrency: Sequence[ConcurrencyLimit],
        store: RateStore,
        *,
        concurrency_store: ConcurrencyStore | None,
        events: RefusalEvents,
        keys: KeyMaker,
        unavailable_retry_after_s: int = 1,
    ) -> None:
        self.policies = tuple(policies)
        self.concurrency = tuple(concurrency)
        self.store = store
        self.concurrency_store = concurrency_store
        self.events = events
        self.keys = keys
        self.counters = Counters()
        self._unavailable_retry_after_s = unavailable_retry_after_s

    # Matching is a few byte comparisons per policy; it runs again in check_async
    # (GateRequest has no room for it), which costs less than a round trip's jitter.
    def _matching(
        self, request: GateRequest, path: bytes, items: Sequence[_Limit]
    ) -> tuple[list[_Limit], list[bytes]]:
        method = request.method
        key = self.keys.key
        matched: list[_Limit] = []
        keys: list[bytes] = []
        for item in items:
            if item.match.matches(method, path):
                value = key(item.key, request)
                if value is not None:
                    matched.append(item)
                    keys.append(item.key_prefix + value)
        return matched, keys

    def check(self, request: GateRequest) -> Refusal | Defer | None:
        path = normalized_path(request.path)
        policies, keys = self._matching(request, path, self.policies)
        if policies:
            verdict = self.store.acquire(policies, keys)
            if isinstance(verdict, Defer):
                return DEFER
            refusal = self._apply(request, verdict, keys)
            if refusal is not None:
                return refusal
        return self._enter_concurrency(request, path)

    async def check_async(self, request: GateRequest) -> Refusal | None:
        path = normalized_path(request.path)
        policies, keys = self._matching(request, path, self.policies)
        if policies:
            verdict = await self.store.acquire_async(policies, keys)
            refusal = self._apply(request, verdict, keys)
            if refusal is not None:
                return refusal
        return self._enter_concurrency(request, path)

    def _apply(
        self, request: GateRequest, verdict: Verdict, keys: Sequence[bytes]
    ) -> Refusal | None:
        counters = self.counters
        if verdict.unavailable:
            counters.unavailable += 1
            return Refusal(
                503,
                LIMITER_UNAVAILABLE_PROBLEM,
                "The rate limiter is unavailable; retry shortly.",
                retry_after_s=self._unavailable_retry_after_s,
            )
        policies = verdict.policies
        offsets = verdict.offsets_ns
        refused = verdict.refused
        if refused >= 0:
            policy = policies[refused]
            retry_ns = offsets[refused] - policy.tolerance_ns
            retry_s = max(RETRY_AFTER_MIN_S, ceil_s(retry_ns))
            counters.refused += 1
            counters.by_policy[policy.name] = counters.by_policy.get(policy.name, 0) + 1
            key_value = keys[refused].split(b"|", 1)[1]
            event_id = self.events.refused(
                policy.name,
                key_value,
                request,
                {
                    "policy": policy.name,
                    "key_kind": policy.key,
                    "key": key_value.decode("utf-8", "replace"),
                    "limit": policy.limit,
                    "window_s": policy.window_s,
                    "burst": policy.burst,
                    "store": self.store.name,
                },
            )
            return Refusal(
                429,
                RATE_LIMITED_PROBLEM,
                f"Rate limit {policy.name!r} exceeded: {policy.limit} requests per "
                f"{policy.window_s} s per {policy.key}; retry after {retry_s} s.",
                retry_after_s=retry_s,
                headers=ratelimit_fields(policy.policy_field, policy.name, 0, retry_s),
                event_id=event_id,
            )
        counters.admitted += 1
        # The most restrictive policy: fewest requests left, then longest until full.
        best = -1
        best_remaining = best_offset = 0
        for i, policy in enumerate(policies):
            offset = offsets[i]
            remaining = policy.remaining(offset)
            if (
                best < 0
                or remaining < best_remaining
                or (remaining == best_remaining and offset > best_offset)
            ):
                best, best_remaining, best_offset = i, remaining, offset
        policy = policies[best]
        request.response_headers += (
            (b"ratelimit-policy", policy.policy_field),
            (
                b"ratelimit",
                b"%s%d;t=%d" % (policy.field_prefix, best_remaining, ceil_s(best_offset)),
            ),
        )
        return None

    def _enter_concurrency(self, request: GateRequest, path: bytes) -> Refusal | None:
        store = self.concurrency_store
        if store is None or not self.concurrency:
            return None
        limits, keys = self._matching(request, path, self.concurrency)
        if not limits:
            return None
        token = store.enter(limits, keys)
        if isinstance(token, int):
            limit = limits[token]
            self.counters.concurrency_refused += 1
            name = limit.name
            self.counters.by_policy[name] = self.counters.by_policy.get(name, 0) + 1
            key_value = keys[token].split(b"|", 1)[1]
            event_id = self.events.refused(
                name,
                key_value,
                request,
                {
                    "policy": name,
                    "key_kind": limit.key,
                    "key": key_value.decode("utf-8", "replace"),
                    "concurrent_max": limit.concurrent_max,
                    "store": "shared_memory",
                },
            )
            return Refusal(
                429,
                CONCURRENCY_LIMITED_PROBLEM,
                f"Concurrency limit {name!r} reached: at most {limit.concurrent_max} "
                f"requests in flight per {limit.key}.",
                retry_after_s=CONCURRENCY_RETRY_AFTER_S,
                headers=[
                    (b"ratelimit-policy", limit.policy_field),
                    (b"ratelimit", f'"{name}";r=0'.encode()),
                ],
                event_id=event_id,
            )
        request.on_done.append(_Release(store, token))
        return None


class _Release:
    """Called by the edge with the response status when the exchange ends; runs once."""

    __slots__ = ("_store", "_token")

    def __init__(self, store: ConcurrencyStore, token: list[int]) -> None:
        self._store: ConcurrencyStore | None = store
        self._token = token

    def __call__(self, status: int) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.leave(self._token)


# --- the protection ---------------------------------------------------------------------


class RateLimitProtection:
    """Rate limits as the edge worker wires them: the gate plus its event sweeper."""

    def __init__(self, gate: RateLimitGate, stores: Sequence[object] = ()) -> None:
        self.gate = gate
        self._stores = stores

    async def run(self) -> None:
        """Warm the store; emit aggregated events as their seconds end (all on cancel)."""
        try:
            for store in self._stores:
                warm = getattr(store, "warm", None)
                if warm is not None:
                    await warm()
            while True:
                await asyncio.sleep(EVENT_SWEEP_INTERVAL_S)
                self.gate.events.sweep()
        finally:
            self.gate.events.sweep(everything=True)
            for store in self._stores:
                aclose = getattr(store, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    def snapshot(self) -> dict[str, object]:
        gate = self.gate
        c = gate.counters
        snap: dict[str, object] = {
            "store": gate.store.name,
            "policies": [p.name for p in gate.policies],
            "concurrency_policies": [p.name for p in gate.concurrency],
            "admitted": c.admitted,
            "refused": c.refused,
            "concurrency_refused": c.concurrency_refused,
            "unavailable": c.unavailable,
            "refused_by_policy": dict(c.by_policy),
            "events_emitted": gate.events.emitted,
            **gate.store.snapshot(),
        }
        caps = gate.concurrency_store
        if caps is not None and caps is not cast(object, gate.store):
            snap["concurrency_store"] = caps.snapshot()
        return snap

    def collector(self) -> Collector:
        """Prometheus families from the snapshot (register on the worker's registry)."""
        return _RateLimitCollector(self)


class _RateLimitCollector(Collector):
    def __init__(self, protection: RateLimitProtection) -> None:
        self._protection = protection

    def collect(self) -> Iterable[Metric]:
        snap = self._protection.snapshot()
        decisions = CounterMetricFamily(
            "strongroom_edge_ratelimit_decisions",
            "Rate-limit decisions of this edge worker by outcome",
            labels=["outcome"],
        )
        for outcome in ("admitted", "refused", "concurrency_refused", "unavailable"):
            decisions.add_metric([outcome], float(str(snap.get(outcome, 0))))
        yield decisions
        by_policy = CounterMetricFamily(
            "strongroom_edge_ratelimit_refused_by_policy",
            "Requests refused, by the policy that refused them",
            labels=["policy"],
        )
        refused = snap.get("refused_by_policy")
        if isinstance(refused, dict):
            for name, count in refused.items():
                by_policy.add_metric([str(name)], float(count))
        yield by_policy
        if "redis_up" in snap:
            yield GaugeMetricFamily(
                "strongroom_edge_ratelimit_redis_up",
                "1 while the Redis rate-limit store answers",
                value=1.0 if snap["redis_up"] else 0.0,
            )
            yield CounterMetricFamily(
                "strongroom_edge_ratelimit_fallback_decisions",
                "Decisions taken without Redis (local limiter or fail-closed)",
                value=float(str(snap.get("fallback_decisions", 0))),
            )
        if "evictions" in snap:
            yield CounterMetricFamily(
                "strongroom_edge_ratelimit_evictions",
                "Limiter keys evicted from a full table before their state expired",
                value=float(str(snap["evictions"])),
            )


def compile_policies(
    settings: RateLimitSettings,
) -> tuple[list[RatePolicy], list[ConcurrencyLimit]]:
    names = [p.name for p in settings.policies] + [p.name for p in settings.concurrency]
    if len(set(names)) != len(names):
        raise ValueError("rate limit policy names must be unique")
    rates = [RatePolicy.compile(i, p) for i, p in enumerate(settings.policies)]
    caps = [ConcurrencyLimit.compile(i, p) for i, p in enumerate(settings.concurrency)]
    return rates, caps


def build_rate_limits(
    settings: Settings,
    worker: int,
    events: SecurityEvents,
    *,
    exempt: Callable[[str], bool] | None = None,
) -> RateLimitProtection | None:
    """The worker's rate-limit protection, or None when rate limiting is off.

    ``exempt``: addresses not limited per address (e.g. the blocklist's allow entries).

    Concurrency caps always use the host's shared-memory table: an in-flight count must
    be released by the worker that holds it, and a per-host table does that with no
    second write per request (see ``ratelimit_shared``).
    """
    config = settings.edge.rate_limits
    if not config.enabled or (not config.policies and not config.concurrency):
        return None
    from strongroom.edge.ratelimit_shared import SharedMemoryStore  # noqa: PLC0415

    rates, caps = compile_policies(config)
    store_kind = config.store
    if store_kind == "auto":
        store_kind = "redis" if settings.profile == "production" else "shared_memory"
    shared = None
    if caps or store_kind == "shared_memory":
        shared = SharedMemoryStore.open(
            settings.run_dir,
            rate_slots=config.shared_slots,
            concurrency_slots=config.concurrency_slots,
            workers=settings.edge.workers,
            worker=worker,
        )
    store: RateStore
    if store_kind == "redis":
        from strongroom.edge.ratelimit_redis import RedisRateStore  # noqa: PLC0415

        store = RedisRateStore.from_settings(config, workers=settings.edge.workers)
    else:
        assert shared is not None
        store = shared
    gate = RateLimitGate(
        rates,
        caps,
        store,
        concurrency_store=shared if caps else None,
        events=RefusalEvents(events, config.event_keys_max),
        keys=KeyMaker(config.ipv6_prefix_len, exempt, config.exempt_networks),
        unavailable_retry_after_s=max(1, ceil_s(int(config.redis_retry_s * NS_PER_S))),
    )
    return RateLimitProtection(gate, [store])
