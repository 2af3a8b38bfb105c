"""Block and allow entries for the edge, and the store operators and the SIEM write them to.

An entry names an IPv4/IPv6 address (``ip``), a network (``cidr``) or an OAuth client id
(``client``); its ``action`` blocks or allows it. Entries may expire; removal is soft (the
row stays, with ``removed_at``), so every edge worker sees it as a change. Every change
carries a ``version`` from one sequence that only grows: a worker that has applied every
change up to version N asks for what came after N (:class:`BlocklistFeed`).

How entries decide (``edge.blocklist``): a request is refused when a *block* entry matches
it and no *allow* entry does. An IP/CIDR allow exempts the address from every block,
client blocks included; a client allow exempts the client from client blocks only,
because an address is refused at connection time, before any client is known.

Values are validated and put in one canonical form here, before anything stores them,
so the CLI, the API and the SIEM cannot disagree on what ``10.0.0.1/8`` means.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast

if TYPE_CHECKING:
    from strongroom.ledger.ports import Actor

BlockKind = Literal["ip", "cidr", "client"]
BlockAction = Literal["block", "allow"]
BLOCK_KINDS: tuple[BlockKind, ...] = ("ip", "cidr", "client")
BLOCK_ACTIONS: tuple[BlockAction, ...] = ("block", "allow")

# A *block* wider than this would cut off a sixteenth of a continent (IPv4 /8) or more:
# a typo or a runaway rule must not take the platform off the internet. Allows may be
# wider (an allow never refuses anyone).
BLOCK_PREFIX_MIN_V4 = 8
BLOCK_PREFIX_MIN_V6 = 16
# The oauth_clients.client_id column's width.
CLIENT_ID_CHARS_MAX = 64
# Reasons are free text from operators and SIEM rules: bounded like the column.
REASON_CHARS_MAX = 200
# Who added an entry ("operator:alice", "client:ops-console", "system:siem").
CREATED_BY_CHARS_MAX = 200
# A longer block is a permanent one and should say so (no TTL); the cap also keeps
# expiry times far from any float or timestamp overflow.
TTL_S_MAX = 10 * 366 * 86_400
# RFC 6749 §A.1: client_id = *VSCHAR (printable ASCII), less the space: Strongroom never
# issues one with a space, and a pasted id with one is a mistake.
_CLIENT_ID = re.compile(r"[\x21-\x7e]+")


class InvalidBlockEntry(ValueError):
    """An entry that cannot be stored: unknown kind or action, malformed value, too wide."""


class BlockNotFound(LookupError):
    """No entry with this id is in force (never existed, or already removed)."""


class BlocklistFull(Exception):
    """The store already holds its maximum of entries in force."""


@dataclass(frozen=True, slots=True)
class BlockEntry:
    id: int
    kind: BlockKind
    # Canonical: "203.0.113.7", "2001:db8::/32", or the client id itself.
    value: str
    action: BlockAction
    reason: str
    created_by: str
    # Epoch seconds.
    created_at: float
    expires_at: float | None
    removed_at: float | None
    # This entry's last change in the store's change sequence.
    version: int

    def in_force(self, now: float) -> bool:
        return self.removed_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def target(self) -> str:
        """The form the CLI takes: an address, a network, or ``client:<id>``."""
        return f"client:{self.value}" if self.kind == "client" else self.value


def actor_label(actor: Actor) -> str:
    """``created_by`` for an audit actor: its kind and id."""
    return f"{actor.kind}:{actor.id}"[:CREATED_BY_CHARS_MAX]


def canonical_value(kind: str, value: str, action: str) -> str:
    """``value`` in canonical form for ``kind``; raises :class:`InvalidBlockEntry`.

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) become IPv4: a dual-stack socket
    reports IPv4 clients that way, and the entry must match them either way.
    """
    if action not in BLOCK_ACTIONS:
        raise InvalidBlockEntry(f"action must be one of {', '.join(BLOCK_ACTIONS)}")
    text = value.strip()
    if kind == "client":
        if not text or len(text) > CLIENT_ID_CHARS_MAX or not _CLIENT_ID.fullmatch(text):
            raise InvalidBlockEntry(
                f"a client id is 1 to {CLIENT_ID_CHARS_MAX} printable ASCII characters, no spaces"
            )
        return text
    if kind == "ip":
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise InvalidBlockEntry(f"{text[:64]!r} is not an IPv4 or IPv6 address") from None
        return str(_unmapped(address))
    if kind == "cidr":
        return _canonical_network(text, action)
    raise InvalidBlockEntry(f"kind must be one of {', '.join(BLOCK_KINDS)}")


def _unmapped(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _canonical_network(text: str, action: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        # Host bits set ("10.1.2.3/8") is refused, not rounded: the operator probably
        # meant another prefix, and silently blocking 16M addresses is the worse guess.
        raise InvalidBlockEntry(f"{text[:64]!r} is not a network: {exc}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            network = ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    minimum = BLOCK_PREFIX_MIN_V4 if network.version == 4 else BLOCK_PREFIX_MIN_V6
    if action == "block" and network.prefixlen < minimum:
        raise InvalidBlockEntry(
            f"refusing to block {network}: IPv{network.version} blocks must be /{minimum} "
            "or narrower"
        )
    return str(network)


def parse_target(target: str) -> tuple[BlockKind, str]:
    """The CLI's one-word form: ``203.0.113.7``, ``10.0.0.0/8`` or ``client:<id>``.

    Returns ``(kind, value)`` as given (not yet canonical); raises
    :class:`InvalidBlockEntry` for anything else.
    """
    text = target.strip()
    if text.startswith("client:"):
        return "client", text.removeprefix("client:")
    if "/" in text:
        return "cidr", text
    if not text:
        raise InvalidBlockEntry("empty target: give an address, a network or client:<id>")
    return "ip", text


def validate_entry(
    kind: str, value: str, action: str, reason: str, ttl_s: float | None
) -> tuple[BlockKind, str, BlockAction]:
    """Check everything about a new entry a store needs; the canonical kind, value, action."""
    canonical = canonical_value(kind, value, action)
    if len(reason) > REASON_CHARS_MAX:
        raise InvalidBlockEntry(f"reason is longer than {REASON_CHARS_MAX} characters")
    if ttl_s is not None and not 0 < ttl_s <= TTL_S_MAX:
        raise InvalidBlockEntry(f"ttl must be between 1 second and {TTL_S_MAX} seconds")
    return cast(BlockKind, kind), canonical, cast(BlockAction, action)


class BlocklistStore(Protocol):
    """What operators (CLI, API) and the SIEM's "block" action use."""

    def add(
        self,
        kind: BlockKind,
        value: str,
        action: BlockAction,
        *,
        reason: str,
        ttl_s: float | None,
        actor: Actor,
        request_id: str | None = None,
    ) -> BlockEntry:
        """Store an entry (audited) and return it. An entry in force with the same kind,
        value and action that lasts at least as long is returned instead of a new one.
        Raises :class:`InvalidBlockEntry`, :class:`BlocklistFull`."""

    def remove(self, entry_id: int, actor: Actor, *, request_id: str | None = None) -> BlockEntry:
        """Soft-remove an entry in force (audited); raises :class:`BlockNotFound`."""

    def get(self, entry_id: int) -> BlockEntry | None: ...

    def list(self, include_expired: bool = False) -> list[BlockEntry]:
        """Entries in force, or every entry ever stored (expired and removed too)."""


class BlocklistFeed(Protocol):
    """What edge workers poll."""

    def snapshot(self) -> tuple[int, list[BlockEntry]]:
        """The latest version and every entry in force at it (a worker's start)."""

    def changes_since(self, version: int) -> tuple[int, list[BlockEntry]]:
        """Entries changed after ``version``, oldest change first, in bounded batches,
        with the version of the last one (``version`` itself when nothing changed)."""
