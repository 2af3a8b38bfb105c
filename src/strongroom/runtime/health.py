"""A minimal HTTP/1.1 GET for loopback health probes.

The supervisor only needs a status code from its own children, so a few lines
of asyncio replace an HTTP client dependency in the control plane.
"""

from __future__ import annotations

import asyncio
import contextlib

# A status line longer than this is not from one of our children.
STATUS_LINE_BYTES_MAX = 1024


async def probe_status(host: str, port: int, path: str, timeout_s: float) -> int | None:
    """The HTTP status of ``GET path``, or None if the listener is absent or too slow."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
            writer.write(request.encode("ascii"))
            await writer.drain()
            line = await reader.readuntil(b"\r\n")
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    if len(line) > STATUS_LINE_BYTES_MAX:
        return None
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])
