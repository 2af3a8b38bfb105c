"""The supervisor's loopback health probe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from strongroom.runtime.health import probe_status

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def with_server(handler: Handler, test: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await test(port)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def answering(status_line: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    return handler


def test_probe_returns_the_status_code():
    async def test(port: int) -> None:
        assert await probe_status("127.0.0.1", port, "/readyz", 1.0) == 503

    with_server(answering(b"HTTP/1.1 503 Service Unavailable"), test)


def test_probe_sends_the_requested_path():
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writer.close()

    async def test(port: int) -> None:
        assert await probe_status("127.0.0.1", port, "/healthz", 1.0) == 200

    with_server(handler, test)
    assert seen == [b"GET /healthz HTTP/1.1\r\n"]


def test_probe_of_a_closed_port_is_none():
    async def test(port: int) -> None:
        pass

    async def main() -> int:
        server = await asyncio.start_server(answering(b""), "127.0.0.1", 0)
        port: int = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        return port

    port = asyncio.run(main())
    assert asyncio.run(probe_status("127.0.0.1", port, "/readyz", 1.0)) is None


def test_probe_of_a_silent_server_gives_up_after_the_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def test(port: int) -> None:
        started = time.monotonic()
        assert await probe_status("127.0.0.1", port, "/readyz", 0.2) is None
        assert time.monotonic() - started < 1.0

    with_server(silent, test)


def test_probe_of_a_non_http_answer_is_none():
    async def test(port: int) -> None:
        assert await probe_status("127.0.0.1", port, "/readyz", 1.0) is None

    with_server(answering(b"SSH-2.0-OpenSSH_9.6"), test)
