"""The blocklist every edge worker holds in memory, and the gate that enforces it.

Addresses are integers, kept per family and per prefix length: ``{prefix: {network: entries}}``.
A lookup shifts the address once per prefix length in use and probes a dict, so it costs
O(number of distinct prefix lengths) — at most 33 for IPv4, in practice a handful — not
O(entries). Entries in force decide (``edge.blocklist_ports``): any matching allow wins;
an address allow also exempts the address from client blocks.

Expired entries stop matching at their expiry, without waiting for a sync: the matcher
knows its earliest expiry and sweeps when it passes. Decisions per address string are
cached until the next change or expiry, so a keep-alive client's requests cost one dict
probe each.

The gate refuses with 403 ``blocked`` (``close`` at connection time) and emits a
``blocklist.hit`` security event — at most one per (entry, address) per second, so a
blocked flood cannot flood the event file; the refusals folded into an event's second
are counted in the next event of that pair.
"""

from __future__ import annotations

import heapq
import math
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import structlog

from strongroom.edge.blocklist_ports import BlockEntry
from strongroom.edge.guard import GateRequest, Refusal
from strongroom.edge.security_events import BLOCKLIST_HIT, SecurityEvent, SecurityEvents

log = structlog.get_logger(__name__)

BLOCKED: Final = "blocked"
# Addresses whose decision is cached; beyond this the cache starts over (an attacker
# rotating addresses only costs the uncached lookup, a few microseconds).
DECISION_CACHE_IPS_MAX = 65_536
# (entry, address) pairs whose event second is remembered; swept of old seconds when full.
EVENT_KEYS_MAX = 65_536
# At most one event per (entry, address) per this many seconds.
EVENT_INTERVAL_S = 1.0
# Paths in events are truncated: the event is evidence, not a copy of the request.
EVENT_PATH_CHARS_MAX = 256

# Stale expiries (of removed entries) tolerated in the heap before it is rebuilt.
_HEAP_SLACK = 1024

_V4_BITS = 32
_V6_BITS = 128
# ::ffff:0:0/96 — IPv4 clients on a dual-stack socket.
_V4_MAPPED_PREFIX = 0xFFFF


def address_key(text: str) -> tuple[int, int] | None:
    """``(bits, integer)`` of an address string; IPv4-mapped IPv6 is IPv4. ``None`` if
    it is not an address (a Unix socket peer, say)."""
    try:
        if ":" in text:
            packed = socket.inet_pton(socket.AF_INET6, text.partition("%")[0])
            number = int.from_bytes(packed, "big")
            if number >> 32 == _V4_MAPPED_PREFIX:
                return _V4_BITS, number & 0xFFFFFFFF
            return _V6_BITS, number
        return _V4_BITS, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except (OSError, ValueError):
        return None


def _network_key(value: str) -> tuple[int, int, int]:
    """``(bits, prefix length, network integer)`` of a canonical ip or cidr value."""
    address, _, prefix = value.partition("/")
    key = address_key(address)
    if key is None:
        raise ValueError(f"not an address: {value!r}")
    bits, number = key
    length = int(prefix) if prefix else bits
    return bits, length, number >> (bits - length)


@dataclass(slots=True)
class _Family:
    """One address family's entries of one action."""

    bits: int
    # prefix length -> network integer (address >> (bits - length)) -> entries
    by_prefix: dict[int, dict[int, list[BlockEntry]]] = field(default_factory=dict)
    # The lengths in use, longest (most specific) first.
    lengths: list[int] = field(default_factory=list)

    def add(self, length: int, network: int, entry: BlockEntry) -> None:
        table = self.by_prefix.get(length)
        if table is None:
            table = self.by_prefix[length] = {}
            self.lengths = sorted(self.by_prefix, reverse=True)
        table.setdefault(network, []).append(entry)

    def discard(self, length: int, network: int, entry_id: int) -> None:
        table = self.by_prefix.get(length)
        if table is None:
            return
        kept = [e for e in table.get(network, ()) if e.id != entry_id]
        if kept:
            table[network] = kept
        else:
            table.pop(network, None)
            if not table:
                del self.by_prefix[length]
                self.lengths = sorted(self.by_prefix, reverse=True)

    def first(self, number: int, now: float) -> BlockEntry | None:
        """The in-force entry of the most specific network holding ``number``."""
        bits = self.bits
        for length in self.lengths:
            entries = self.by_prefix[length].get(number >> (bits - length))
            if entries:
                for entry in entries:
                    if entry.expires_at is None or entry.expires_at > now:
                        return entry
        return None


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    """An address's decision: allowed outright, or the block that refuses it (or none)."""

    allowed: bool
    block: BlockEntry | None


NO_VERDICT: Final = AddressVerdict(False, None)
_ALLOWED: Final = AddressVerdict(True, None)


class Blocklist:
    """One worker's entries in force. Not thread-safe: the worker's event loop owns it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_id: dict[int, BlockEntry] = {}
        self._blocks = {_V4_BITS: _Family(_V4_BITS), _V6_BITS: _Family(_V6_BITS)}
        self._allows = {_V4_BITS: _Family(_V4_BITS), _V6_BITS: _Family(_V6_BITS)}
        self._client_blocks: dict[str, list[BlockEntry]] = {}
        self._client_allows: dict[str, list[BlockEntry]] = {}
        # (expires_at, id) of entries with an expiry; may hold removed ones (skipped).
        self._expiries: list[tuple[float, int]] = []
        self._next_expiry = math.inf
        self._cache: dict[str, AddressVerdict] = {}
        # Changes applied so far (a /healthz figure; tests wait on it).
        self.changes = 0
        self.malformed = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def entries(self) -> list[BlockEntry]:
        return sorted(self._by_id.values(), key=lambda e: e.id)

    # --- changes ---------------------------------------------------------------------
    def replace(self, entries: Iterable[BlockEntry]) -> None:
        """Hold exactly ``entries`` (those in force): a worker's start."""
        for entry_id in list(self._by_id):
            self._drop(entry_id)
        self.apply(entries)

    def apply(self, entries: Iterable[BlockEntry]) -> None:
        """Apply changed entries, oldest change first: each replaces the entry of its id;
        removed and expired ones are dropped."""
        now = self._clock()
        for entry in entries:
            self._drop(entry.id)
            if entry.in_force(now):
                try:
                    self._add(entry)
                except ValueError:
                    # A row the store's validation never saw (written by hand): one bad
                    # entry must not stop every later change from applying.
                    self._by_id.pop(entry.id, None)
                    self.malformed += 1
                    log.warning("edge.blocklist_entry_malformed", entry_id=entry.id)
            self.changes += 1
        self._cache.clear()
        self._compact_expiries()

    def sweep(self, now: float | None = None) -> int:
        """Drop entries whose expiry has passed; returns how many."""
        at = self._clock() if now is None else now
        heap = self._expiries
        dropped = 0
        while heap and heap[0][0] <= at:
            expires_at, entry_id = heapq.heappop(heap)
            entry = self._by_id.get(entry_id)
            if entry is not None and entry.expires_at == expires_at:
                self._drop(entry_id)
                dropped += 1
        self._compact_expiries()
        heap = self._expiries
        self._next_expiry = heap[0][0] if heap else math.inf
        if dropped:
            self._cache.clear()
        return dropped

    def _compact_expiries(self) -> None:
        # Removed entries leave their expiry behind; rebuild before that adds up.
        if len(self._expiries) > 2 * len(self._by_id) + _HEAP_SLACK:
            heap = [(e.expires_at, e.id) for e in self._by_id.values() if e.expires_at is not None]
            heapq.heapify(heap)
            self._expiries = heap
            self._next_expiry = heap[0][0] if heap else math.inf

    def _add(self, entry: BlockEntry) -> None:
        self._by_id[entry.id] = entry
        if entry.expires_at is not None:
            heapq.heappush(self._expiries, (entry.expires_at, entry.id))
            self._next_expiry = min(self._next_expiry, entry.expires_at)
        if entry.kind == "client":
            clients = self._client_allows if entry.action == "allow" else self._client_blocks
            clients.setdefault(entry.value, []).append(entry)
            return
        families = self._allows if entry.action == "allow" else self._blocks
        bits, length, network = _network_key(entry.value)
        families[bits].add(length, network, entry)

    def _drop(self, entry_id: int) -> None:
        entry = self._by_id.pop(entry_id, None)
        if entry is None:
            return
        if entry.kind == "client":
            clients = self._client_allows if entry.action == "allow" else self._client_blocks
            kept = [e for e in clients.get(entry.value, ()) if e.id != entry_id]
            if kept:
                clients[entry.value] = kept
            else:
                clients.pop(entry.value, None)
            return
        families = self._allows if entry.action == "allow" else self._blocks
        bits, length, network = _network_key(entry.value)
        families[bits].discard(length, network, entry_id)

    # --- decisions -------------------------------------------------------------------
    def decide(self, client_ip: str, client_id: str | None = None) -> BlockEntry | None:
        """The block entry that refuses this address (and client, when known), or None."""
        verdict = self.address_verdict(client_ip)
        if verdict.allowed:
            return None
        if verdict.block is not None:
            return verdict.block
        if client_id is None or not self._client_blocks:
            return None
        return self._client_verdict(client_id, self._clock())

    def address_verdict(self, client_ip: str) -> AddressVerdict:
        """The decision on an address alone (at connection time, before any request)."""
        if not self._by_id:
            return NO_VERDICT
        now = self._clock()
        if now >= self._next_expiry:
            self.sweep(now)
        verdict = self._cache.get(client_ip)
        if verdict is None:
            verdict = self._address_verdict(client_ip, now)
            if len(self._cache) >= DECISION_CACHE_IPS_MAX:
                self._cache.clear()
            self._cache[client_ip] = verdict
        return verdict

    def allows_address(self, client_ip: str) -> bool:
        """An allow entry in force covers this address (e.g. exempt from connection caps)."""
        return self.address_verdict(client_ip).allowed

    def _address_verdict(self, client_ip: str, now: float) -> AddressVerdict:
        key = address_key(client_ip)
        if key is None:
            return NO_VERDICT
        bits, number = key
        if self._allows[bits].lengths and self._allows[bits].first(number, now) is not None:
            return _ALLOWED
        blocks = self._blocks[bits]
        if not blocks.lengths:
            return NO_VERDICT
        block = blocks.first(number, now)
        return NO_VERDICT if block is None else AddressVerdict(False, block)

    def _client_verdict(self, client_id: str, now: float) -> BlockEntry | None:
        blocks = self._client_blocks.get(client_id)
        if not blocks:
            return None
        for allow in self._client_allows.get(client_id, ()):
            if allow.expires_at is None or allow.expires_at > now:
                return None
        for block in blocks:
            if block.expires_at is None or block.expires_at > now:
                return block
        return None


@dataclass(slots=True)
class _EventWindow:
    second: int
    event_id: str
    folded: int = 0


class BlocklistGate:
    """``Gate`` and ``ConnectionGate`` over one worker's :class:`Blocklist`."""

    name = "blocklist"

    def __init__(
        self,
        blocklist: Blocklist,
        events: SecurityEvents,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.blocklist = blocklist
        self._events = events
        self._monotonic = monotonic
        self._windows: dict[tuple[int, str], _EventWindow] = {}
        self.refused_requests = 0
        self.refused_connections = 0

    def check(self, request: GateRequest) -> Refusal | None:
        identity = request.identity
        entry = self.blocklist.decide(
            request.client_ip, identity.client_id if identity is not None else None
        )
        if entry is None:
            return None
        self.refused_requests += 1
        event_id = self._event(entry, request.client_ip, request)
        if entry.kind == "client":
            # Other clients' requests may share the connection (a pooling intermediary).
            return Refusal(403, BLOCKED, "This client is blocked.", event_id=event_id)
        # The address was blocked while the connection was open: end it too.
        return Refusal(403, BLOCKED, "This address is blocked.", close=True, event_id=event_id)

    async def check_async(self, request: GateRequest) -> Refusal | None:
        # ``check`` never defers; answering here too keeps the gate correct if asked.
        return self.check(request)

    def admit_connection(self, client_ip: str) -> Refusal | None:
        verdict = self.blocklist.address_verdict(client_ip)
        if verdict.block is None:
            return None
        self.refused_connections += 1
        event_id = self._event(verdict.block, client_ip, None)
        return Refusal(403, BLOCKED, "This address is blocked.", close=True, event_id=event_id)

    def connection_closed(self, client_ip: str) -> None:
        """Nothing is held per connection."""

    def _event(self, entry: BlockEntry, client_ip: str, request: GateRequest | None) -> str:
        second = int(self._monotonic() // EVENT_INTERVAL_S)
        key = (entry.id, client_ip)
        window = self._windows.get(key)
        if window is not None and window.second == second:
            window.folded += 1
            return window.event_id
        folded = 0 if window is None else window.folded
        identity = request.identity if request is not None else None
        event = SecurityEvent(
            kind=BLOCKLIST_HIT,
            client_ip=client_ip,
            request_id=request.request_id if request is not None else "",
            method=request.method.decode("latin-1") if request is not None else "",
            path=request.path.decode("latin-1")[:EVENT_PATH_CHARS_MAX] if request else "",
            client_id=identity.client_id if identity is not None else None,
            tenant_id=identity.tenant_id if identity is not None else None,
            action="block",
            details={
                "entry_id": entry.id,
                "kind": entry.kind,
                "value": entry.value,
                "reason": entry.reason,
                "expires_at": entry.expires_at,
                "stage": "request" if request is not None else "connection",
                # Refusals of this entry and address in the previous event's second that
                # got no event of their own.
                "folded": folded,
            },
        )
        event_id = self._events.emit(event)
        if window is None and len(self._windows) >= EVENT_KEYS_MAX:
            self._windows = {k: w for k, w in self._windows.items() if w.second == second}
            if len(self._windows) >= EVENT_KEYS_MAX:
                self._windows.clear()
        self._windows[key] = _EventWindow(second, event_id)
        return event_id

    def snapshot(self) -> dict[str, object]:
        return {
            "entries": len(self.blocklist),
            "refused_requests": self.refused_requests,
            "refused_connections": self.refused_connections,
        }
