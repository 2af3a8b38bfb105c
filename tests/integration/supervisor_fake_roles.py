"""Fake edge/pod/worker roles for tests/integration/test_supervisor.py.

They run inside real child processes (``--entry tests.integration.supervisor_fake_roles:...``),
so this module imports only the standard library: every restart pays its import time.
Each role answers 200 on its health port and logs ``start``/``term``/``exit`` lines
to the file named by ``STRONGROOM_TEST_EVENTS_FILE``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strongroom.config import Settings

EVENTS_ENV = "STRONGROOM_TEST_EVENTS_FILE"
# The named process ignores SIGTERM, to exercise the supervisor's SIGKILL fallback.
STUBBORN_ENV = "STRONGROOM_TEST_STUBBORN"
# Linger this long after SIGTERM, so a supervisor that did not wait for one role before
# signalling the next would interleave their lines in the events file.
DRAIN_S = 0.2


def _record(event: str) -> None:
    with open(os.environ[EVENTS_ENV], "a", encoding="utf-8") as handle:
        handle.write(event + "\n")


def _serve(name: str, host: str | None, port: int | None) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if os.environ.get(STUBBORN_ENV) == name:
            loop.add_signal_handler(signal.SIGTERM, lambda: None)
        else:
            loop.add_signal_handler(signal.SIGTERM, stop.set)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = None
        if host is not None and port is not None:
            server = await asyncio.start_server(answer, host, port, reuse_address=True)
        _record(f"start {name} {os.getpid()}")
        await stop.wait()
        _record(f"term {name}")
        await asyncio.sleep(DRAIN_S)
        if server is not None:
            server.close()
        _record(f"exit {name}")

    asyncio.run(main())


def edge(settings: Settings, index: int, zone: str) -> None:
    _serve(f"edge-{index}", settings.edge.admin_host, settings.edge.admin_port + index)


def pod(settings: Settings, index: int, zone: str) -> None:
    _serve(f"pod-{index}", settings.pods.host, settings.pods.port_base + index)


def worker(settings: Settings, index: int) -> None:
    _serve(f"worker-{index}", None, None)
