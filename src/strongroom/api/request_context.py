"""Who sent this request, and under which id: decided once per request from its headers.

Pods sit behind the edge on a private network, but anything that can reach a pod could
forge ``Forwarded``, ``X-Forwarded-For`` or ``X-Request-Id``. They are believed only
when ``X-Strongroom-Edge`` carries the shared edge secret (compared in constant time);
otherwise the socket peer is the client and the pod makes up its own request id.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.requests import Request

SCOPE_KEY = "strongroom.request"
# The client and tenant a request's access token was verified for, set by authentication;
# the middleware names them to the edge (which strips them) so the edge can rate-limit and
# block by client and tenant before later requests with the same token reach a pod.
PRINCIPAL_SCOPE_KEY = "strongroom.principal"
IDENTITY_CLIENT_HEADER = b"x-strongroom-client"
IDENTITY_TENANT_HEADER = b"x-strongroom-tenant"

EDGE_PROOF_HEADER = b"x-strongroom-edge"
REQUEST_ID_HEADER = b"x-request-id"
FORWARDED_HEADER = b"forwarded"
X_FORWARDED_FOR_HEADER = b"x-forwarded-for"

# Request ids end up in logs and response headers: a bounded, boring alphabet keeps
# both safe from injection and from unbounded size.
REQUEST_ID_BYTES_MAX = 128
_REQUEST_ID_RE = re.compile(rb"[A-Za-z0-9._:\-]{1,%d}" % REQUEST_ID_BYTES_MAX)
# RFC 7239 obfuscated node names ("_hidden") and "unknown" are tokens, not addresses.
_OBFUSCATED_RE = re.compile(r"(_[A-Za-z0-9._\-]{1,64}|unknown)")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Per-request identity, stored in the ASGI scope under :data:`SCOPE_KEY`."""

    request_id: str
    client_host: str
    client_port: int
    peer_host: str
    peer_port: int
    # True when the edge proof matched and forwarded identity was honoured.
    from_edge: bool
    # Scheme and host the client used, when the edge said so (RFC 7239 proto/host).
    forwarded_proto: str | None = None
    forwarded_host: str | None = None


def new_request_id() -> str:
    """128 random bits in hex: unique enough to grep for across every process's logs."""
    return os.urandom(16).hex()


def is_valid_request_id(value: bytes) -> bool:
    return _REQUEST_ID_RE.fullmatch(value) is not None


def edge_proof_matches(presented: bytes | None, secret: bytes) -> bool:
    """Constant-time comparison so response timing cannot leak the secret byte by byte."""
    if presented is None or not secret:
        return False
    return hmac.compare_digest(presented, secret)


def parse_node(node: str) -> tuple[str, int] | None:
    """An RFC 7239 node (``192.0.2.1``, ``"[2001:db8::1]:4711"``, ``_hidden``) → (host, port).

    Returns ``None`` for anything that is neither an IP address nor an obfuscated token,
    so a malformed header degrades to "use the socket peer" instead of an error.
    """
    node = node.strip().strip('"')
    port = 0
    if node.startswith("["):
        end = node.find("]")
        if end < 0:
            return None
        host, rest = node[1:end], node[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif node.count(":") == 1:
        host, _, port_text = node.partition(":")
        if port_text.isdigit():
            port = int(port_text)
        elif not _OBFUSCATED_RE.fullmatch(port_text):
            return None
    else:
        host = node
    if port > 65535:
        return None
    if _OBFUSCATED_RE.fullmatch(host):
        return host, port
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None


def parse_forwarded(value: str) -> dict[str, str]:
    """The last element of an RFC 7239 ``Forwarded`` header: the one our edge added."""
    element = value.rsplit(",", 1)[-1]
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        name, sep, raw = pair.partition("=")
        if not sep:
            continue
        pairs[name.strip().lower()] = raw.strip().strip('"')
    return pairs


def resolve_request_context(
    headers: Iterable[tuple[bytes, bytes]],
    peer: tuple[str, int] | None,
    edge_secret: bytes,
) -> RequestContext:
    """Decide request id and client address from raw ASGI headers (lower-cased names)."""
    proof = request_id = forwarded = x_forwarded_for = None
    for name, value in headers:
        if name == EDGE_PROOF_HEADER:
            proof = value
        elif name == REQUEST_ID_HEADER:
            request_id = value
        elif name == FORWARDED_HEADER:
            forwarded = value
        elif name == X_FORWARDED_FOR_HEADER:
            x_forwarded_for = value
    peer_host, peer_port = peer if peer is not None else ("", 0)

    if not edge_proof_matches(proof, edge_secret):
        return RequestContext(
            request_id=new_request_id(),
            client_host=peer_host,
            client_port=peer_port,
            peer_host=peer_host,
            peer_port=peer_port,
            from_edge=False,
        )

    rid = request_id.decode("ascii") if request_id and is_valid_request_id(request_id) else None
    client: tuple[str, int] | None = None
    proto = host = None
    if forwarded is not None:
        pairs = parse_forwarded(forwarded.decode("latin-1"))
        if "for" in pairs:
            client = parse_node(pairs["for"])
        proto = pairs.get("proto", "").lower() or None
        host = pairs.get("host") or None
        if proto not in (None, "http", "https"):
            proto = None
    if client is None and x_forwarded_for is not None:
        # The edge appends the address it saw, so the last entry is the trustworthy one.
        client = parse_node(x_forwarded_for.decode("latin-1").rsplit(",", 1)[-1])
    client_host, client_port = client if client is not None else (peer_host, peer_port)
    return RequestContext(
        request_id=rid or new_request_id(),
        client_host=client_host,
        client_port=client_port,
        peer_host=peer_host,
        peer_port=peer_port,
        from_edge=True,
        forwarded_proto=proto,
        forwarded_host=host,
    )


def request_context(request: Request) -> RequestContext:
    """FastAPI dependency: the context the pod middleware resolved for this request."""
    context = request.scope.get(SCOPE_KEY)
    if not isinstance(context, RequestContext):
        # Only reachable if the app runs without its middleware (a wiring bug).
        raise TypeError("request context missing: PodMiddleware is not installed")
    return context
