"""The edge's request gates: blocklist, rate limits and WAF, run before routing.

Each protection is a *gate*: it looks at a :class:`GateRequest` and either lets it pass
(``None``) or refuses it with a :class:`Refusal` the edge turns into a problem+json answer.
Gates run in a fixed order, cheapest and most decisive first — blocklist, then rate
limits, then the WAF (which needs the body) — so a blocked or throttled client never
costs an inspection.

Most gates decide in memory and answer synchronously, which keeps the edge's callback
fast path (no coroutine per request). A gate that needs I/O (rate limits held in Redis)
answers :data:`DEFER` from :meth:`Gate.check`; the edge then awaits
:meth:`Gate.check_async` on the exchange's coroutine path.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

# A pod names the client and tenant it verified for a request's token in these response
# headers (``api.middleware``); the edge strips them and remembers them (IdentityCache).
IDENTITY_CLIENT_HEADER = b"x-strongroom-client"
IDENTITY_TENANT_HEADER = b"x-strongroom-tenant"


class Defer:
    """The type of :data:`DEFER`, the one instance gates return to ask for ``check_async``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFER"


DEFER: Final = Defer()


@dataclass(slots=True)
class Identity:
    """Who a bearer token belongs to, as a pod verified it (learned from its response)."""

    client_id: str
    tenant_id: str | None = None


@dataclass(slots=True)
class GateRequest:
    """What gates see of one request. Header names are lower-case bytes."""

    client_ip: str
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    request_id: str
    # The client and tenant behind the request's bearer token, when a pod has answered a
    # request with that token before (see ``IdentityCache``); None for anonymous requests.
    identity: Identity | None = None
    # The whole request body once it has been read (None while it is still streaming or
    # when it is larger than the edge buffers); b"" for requests without a body.
    body: bytes | None = b""
    # Headers the gates want on the eventual response (RateLimit, RateLimit-Policy).
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # Set by the edge after the request: called with the response status by gates that
    # hold a resource for the request's duration (concurrency limits).
    on_done: list[Callable[[int], None]] = field(default_factory=list)

    @property
    def path(self) -> bytes:
        return self.target.split(b"?", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Refusal:
    """A gate's answer in place of the pod's."""

    status: int
    type_id: str
    detail: str
    retry_after_s: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False
    # The security event recorded for this refusal; clients quote it to support.
    event_id: str | None = None


class Gate(Protocol):
    """One protection at the edge."""

    name: str

    def check(self, request: GateRequest) -> Refusal | Defer | None:
        """Decide in memory, or answer DEFER to be asked again with ``check_async``."""

    async def check_async(self, request: GateRequest) -> Refusal | None:
        """Decide with I/O; only called after ``check`` answered DEFER."""


def token_fingerprint(authorization: bytes | None) -> bytes | None:
    """A short digest of the bearer/DPoP token: the identity cache's key, never the token."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(b" ")
    if not token or scheme.lower() not in (b"bearer", b"dpop"):
        return None
    return hashlib.blake2b(token.strip(), digest_size=16).digest()


class IdentityCache:
    """Bearer token fingerprint → the client and tenant a pod verified for it.

    The edge does not verify tokens (pods do, with JWKS, DPoP and revocation): a pod
    names the verified client and tenant in ``x-strongroom-client`` /
    ``x-strongroom-tenant`` response headers, which the edge strips and remembers here.
    Later requests with the same token are then limited and blocked by client and tenant
    *before* they reach a pod. A forged token never gets an entry, so nobody can spend
    another client's quota; the first request of a new token is limited by IP only.
    """

    def __init__(self, entries_max: int = 100_000) -> None:
        self._entries: OrderedDict[bytes, Identity] = OrderedDict()
        self._entries_max = entries_max

    def get(self, fingerprint: bytes | None) -> Identity | None:
        if fingerprint is None:
            return None
        return self._entries.get(fingerprint)

    def learn(self, fingerprint: bytes | None, client_id: str, tenant_id: str | None) -> None:
        if fingerprint is None or not client_id:
            return
        entries = self._entries
        known = entries.get(fingerprint)
        if known is not None and known.client_id == client_id and known.tenant_id == tenant_id:
            entries.move_to_end(fingerprint)
            return
        entries[fingerprint] = Identity(client_id, tenant_id)
        entries.move_to_end(fingerprint)
        while len(entries) > self._entries_max:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class ConnectionGate(Protocol):
    """A protection that can refuse a client connection before any request is read."""

    def admit_connection(self, client_ip: str) -> Refusal | None:
        """Refuse (the edge answers and closes) or admit; admitted ones are released."""

    def connection_closed(self, client_ip: str) -> None:
        """An admitted connection from ``client_ip`` closed."""


class EdgeProtection(Protocol):
    """One protection as the edge worker wires it: a gate plus its background work."""

    @property
    def gate(self) -> Gate:
        """The request gate (read-only here, so any Gate implementation fits)."""

    async def run(self) -> None:
        """Background work until cancelled: rule reloads, blocklist sync, key expiry."""

    def snapshot(self) -> dict[str, object]:
        """A small JSON-able status for the worker's /healthz (counts, versions, mode)."""
