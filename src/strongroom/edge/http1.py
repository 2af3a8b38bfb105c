"""HTTP/1.1 framing rules the edge enforces before anything reaches a pod.

httptools (llhttp in strict mode) already rejects Content-Length together with
Transfer-Encoding, duplicate or malformed Content-Length, obs-fold, bare LF and bad
chunk sizes. This module adds what llhttp lets through but a smuggling-proof edge
must not: transfer codings other than exactly ``chunked``, Transfer-Encoding on
HTTP/1.0, missing or repeated Host, targets that are not origin-form, and it decides
which headers are hop-by-hop (RFC 9110 §7.6.1) and never forwarded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from strongroom.edge import problem

# RFC 9110 §7.6.1 hop-by-hop fields, plus framing headers the edge re-creates itself
# and identity headers only the edge may set.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
        b"x-request-id",
        b"x-strongroom-edge",
        b"x-real-ip",
        # The edge negotiates content coding itself (cache stores identity copies).
        b"accept-encoding",
    }
)

# Response headers not passed to clients: framing is re-created, and the pod's
# connection management is its own business.
RESPONSE_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"strict-transport-security",
        b"x-request-id",
    }
)

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# Methods retried automatically: safe ones. PUT/DELETE are idempotent by RFC but
# the platform's money-moving semantics only promise it with an Idempotency-Key.
RETRYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
SUPPORTED_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"POST", b"PUT", b"PATCH", b"DELETE"})

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{8,128}$")


class FramingError(Exception):
    """A request the edge refuses; carries the status and stable problem type."""

    def __init__(self, status: int, type_id: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.type_id = type_id
        self.detail = detail


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    host: bytes = b""
    content_length: int | None = None
    chunked: bool = False
    keep_alive: bool = True
    expect_continue: bool = False
    client_request_id: bytes = b""
    idempotency_key: bool = False
    authorization: bool = False
    connection_tokens: set[bytes] = field(default_factory=set)

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def retryable(self) -> bool:
        return self.method in RETRYABLE_METHODS or self.idempotency_key


_FRAMING_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"expect",
        b"x-request-id",
        b"idempotency-key",
        b"authorization",
        b"upgrade",
    }
)


def validate_request(
    method: bytes, target: bytes, version: str, headers: list[tuple[bytes, bytes]]
) -> RequestHead:
    """Build a RequestHead from parsed fields, refusing anything ambiguous.

    `headers` have lower-cased names (the parser callback lowers them once), so later
    code compares bytes directly; the list is kept, not copied.
    """
    if method not in SUPPORTED_METHODS:
        raise FramingError(501, problem.NOT_IMPLEMENTED, "method not supported by the edge")
    if version not in ("1.1", "1.0"):
        raise FramingError(505, problem.BAD_REQUEST, "only HTTP/1.1 and HTTP/1.0 are served")
    if not target.startswith(b"/") and not (method == b"OPTIONS" and target == b"*"):
        raise FramingError(400, problem.BAD_REQUEST, "request target must be origin-form")
    head = RequestHead(method, target, version, headers)
    host_seen = 0
    te_seen = 0
    upgrade = False
    for name, value in headers:
        if name not in _FRAMING_HEADERS:
            continue
        if name == b"host":
            host_seen += 1
            head.host = value
        elif name == b"content-length":
            # llhttp has rejected duplicates and non-digits already; keep the value.
            head.content_length = int(value)
        elif name == b"transfer-encoding":
            te_seen += 1
            if value.strip().lower() != b"chunked":
                raise FramingError(
                    400, problem.REQUEST_SMUGGLING, "only 'Transfer-Encoding: chunked' is accepted"
                )
            head.chunked = True
        elif name == b"connection":
            for token in value.lower().split(b","):
                head.connection_tokens.add(token.strip())
        elif name == b"expect":
            if value.strip().lower() != b"100-continue":
                raise FramingError(417, problem.BAD_REQUEST, "unsupported Expect value")
            head.expect_continue = True
        elif name == b"x-request-id":
            head.client_request_id = value
        elif name == b"idempotency-key":
            head.idempotency_key = True
        elif name == b"authorization":
            head.authorization = True
        else:
            upgrade = True
    if te_seen > 1:
        raise FramingError(400, problem.REQUEST_SMUGGLING, "repeated Transfer-Encoding")
    if head.chunked and version == "1.0":
        raise FramingError(400, problem.REQUEST_SMUGGLING, "Transfer-Encoding on HTTP/1.0")
    if head.chunked and head.content_length is not None:
        raise FramingError(
            400, problem.REQUEST_SMUGGLING, "both Content-Length and Transfer-Encoding"
        )
    if host_seen != 1 and version == "1.1":
        raise FramingError(400, problem.BAD_REQUEST, "exactly one Host header is required")
    if upgrade or b"upgrade" in head.connection_tokens:
        raise FramingError(501, problem.NOT_IMPLEMENTED, "protocol upgrades are not supported")
    if version == "1.0":
        head.keep_alive = b"keep-alive" in head.connection_tokens
    else:
        head.keep_alive = b"close" not in head.connection_tokens
    return head


def usable_request_id(candidate: bytes) -> bool:
    """A client's own X-Request-Id is kept only when it is safe to log and forward."""
    return bool(candidate) and _REQUEST_ID.match(candidate) is not None


def forwarded_for(client_ip: str) -> bytes:
    """RFC 7239 §6: IPv6 node names are quoted and bracketed."""
    if ":" in client_ip:
        return f'for="[{client_ip}]";proto=https'.encode()
    return f"for={client_ip};proto=https".encode()
