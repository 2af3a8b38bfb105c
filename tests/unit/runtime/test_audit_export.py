"""Checkpoint export to an external sink: each note POSTed as text/plain; a dead sink never
holds up the caller."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest

from strongroom.audit.ports import StoredCheckpoint
from strongroom.runtime.audit_export import CheckpointExporter

NOTE = "strongroom.test/audit\n3\nAAAA\n\n— strongroom.test/audit abcd\n"


class _Sink(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.headers["content-type"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/checkpoints"
    server.shutdown()
    server.server_close()


def checkpoint(size: int) -> StoredCheckpoint:
    return StoredCheckpoint(size=size, root_hash=b"\0" * 32, note=NOTE, published_at_us=1)


def test_each_checkpoint_is_posted_to_the_sink_as_its_signed_note(sink: str) -> None:
    exporter = CheckpointExporter(None, sink, 2.0)
    exporter(checkpoint(3))
    exporter.close()
    assert _Sink.received == [("text/plain; charset=utf-8", NOTE.encode())]


def test_an_unreachable_sink_is_logged_and_never_blocks_publishing() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = CheckpointExporter(None, f"http://127.0.0.1:{port}/", 0.5)
    started = time.monotonic()
    for size in range(1, 200):  # more than the queue holds: the oldest are dropped
        exporter(checkpoint(size))
    assert time.monotonic() - started < 1.0
    exporter.close()
