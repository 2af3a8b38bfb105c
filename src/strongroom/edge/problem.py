"""RFC 9457 problem documents the edge produces itself.

The edge answers some requests without a pod (limits, smuggling attempts, no healthy
pod, saturation). Those answers use the same stable problem ``type`` URIs as the pods so
a client handles one error format whoever produced it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus

PROBLEM_BASE = "https://strongroom.dev/problems/"

# Stable identifiers: clients match on these, so they never change once published.
BAD_REQUEST = "bad-request"
REQUEST_SMUGGLING = "ambiguous-request-framing"
HEADERS_TOO_LARGE = "request-headers-too-large"
URI_TOO_LONG = "uri-too-long"
BODY_TOO_LARGE = "body-too-large"
REQUEST_TIMEOUT = "request-timeout"
NOT_IMPLEMENTED = "not-implemented"
NO_HEALTHY_UPSTREAM = "no-healthy-upstream"
UPSTREAM_SATURATED = "upstream-saturated"
BAD_GATEWAY = "bad-gateway"
GATEWAY_TIMEOUT = "gateway-timeout"
OVERLOADED = "edge-overloaded"
METHOD_NOT_ALLOWED = "method-not-allowed"
NOT_FOUND = "not-found"


def problem_body(
    status: int,
    type_id: str,
    detail: str,
    request_id: str,
    instance: str = "",
    *,
    extensions: Mapping[str, object] | None = None,
) -> bytes:
    doc: dict[str, object] = {
        "type": PROBLEM_BASE + type_id,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    }
    if instance:
        doc["instance"] = instance
    if extensions:
        # RFC 9457 §3.2 extension members (e.g. the security event id of a block).
        doc.update(extensions)
    return json.dumps(doc, separators=(",", ":")).encode()


def problem_response(
    status: int,
    type_id: str,
    detail: str,
    request_id: str,
    *,
    instance: str = "",
    close: bool = False,
    retry_after_s: int | None = None,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    extensions: Mapping[str, object] | None = None,
) -> bytes:
    """A complete HTTP/1.1 response, ready to write to the client transport."""
    body = problem_body(status, type_id, detail, request_id, instance, extensions=extensions)
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
        b"content-type: application/problem+json",
        b"content-length: " + str(len(body)).encode(),
        b"cache-control: no-store",
        b"x-request-id: " + request_id.encode(),
    ]
    if retry_after_s is not None:
        lines.append(b"retry-after: " + str(retry_after_s).encode())
    if close:
        lines.append(b"connection: close")
    for name, value in extra_headers or ():
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
