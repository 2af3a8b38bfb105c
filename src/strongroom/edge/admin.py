"""Loopback admin listener of one edge worker: liveness and Prometheus metrics.

Kept off the public TLS port so metrics and health are never reachable from the
internet, and so a saturated public listener does not hide the worker's health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# Admin requests are tiny GETs; anything bigger is not ours.
ADMIN_REQUEST_BYTES_MAX = 8192
ADMIN_READ_TIMEOUT_S = 5.0


async def serve_admin(
    host: str,
    port: int,
    registry: CollectorRegistry,
    health: Callable[[], dict[str, object]],
) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ADMIN_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > ADMIN_REQUEST_BYTES_MAX:
                return
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if path == b"/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST.encode(), generate_latest(registry)
            elif path == b"/healthz":
                status, ctype = 200, b"application/json"
                body = json.dumps(health()).encode()
            else:
                status, ctype, body = (
                    404,
                    b"application/problem+json",
                    json.dumps(
                        {
                            "type": "https://strongroom.dev/problems/not-found",
                            "status": 404,
                            "title": "Not Found",
                        }
                    ).encode(),
                )
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s"
                % (status, b"OK" if status == 200 else b"Not Found", ctype, len(body), body)
            )
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)
