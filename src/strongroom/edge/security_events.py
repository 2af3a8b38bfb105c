"""Security events the edge emits for the SIEM: WAF hits, rate-limit hits, blocks.

An event is a flat JSON object (one schema for every kind, so detection rules can match
on the same field names) written as one line to the edge worker's event file under
``<data_dir>/security-events/``; the SIEM tails those files (and the stream, once events
flow through it). Emitting never blocks or fails a request: events queue in memory and a
background task appends them in batches; when the queue is full the oldest are dropped
and counted, because an attacker must not be able to slow the edge by making it log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from strongroom import json_codec

log = structlog.get_logger("strongroom.edge.security")

# Events held in memory between flushes; beyond this the oldest are dropped (counted).
QUEUE_EVENTS_MAX = 50_000
# How often queued events are appended to the file.
FLUSH_INTERVAL_S = 0.2
# One file grows to this size, then is renamed to `.1` (one generation kept).
FILE_BYTES_MAX = 64 * 1024 * 1024

# Stable event kinds; SIEM rules match on these.
WAF_BLOCK = "waf.block"
WAF_DETECT = "waf.detect"
RATE_LIMITED = "ratelimit.hit"
BLOCKLIST_HIT = "blocklist.hit"
CONNECTION_LIMITED = "connection.limit"
PROTOCOL_ANOMALY = "protocol.anomaly"


@dataclass(slots=True)
class SecurityEvent:
    kind: str
    client_ip: str
    request_id: str = ""
    method: str = ""
    path: str = ""
    client_id: str | None = None
    tenant_id: str | None = None
    action: str = "block"  # block | detect | throttle
    # Kind-specific details: rule ids, matched locations, score, policy, block entry.
    details: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    event_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "at": round(self.at, 6),
            "action": self.action,
            "client_ip": self.client_ip,
            "client_id": self.client_id,
            "tenant_id": self.tenant_id,
            "request_id": self.request_id,
            "method": self.method,
            "path": self.path,
            "details": dict(self.details),
        }


class SecurityEvents:
    """One edge worker's event emitter. ``emit`` is synchronous and O(1)."""

    def __init__(self, directory: Path | None, worker: int) -> None:
        self._path = directory / f"edge-{worker}.jsonl" if directory is not None else None
        self._queue: deque[SecurityEvent] = deque()
        self._prefix = f"{worker:02x}{os.urandom(4).hex()}"
        self._counter = 0
        self.emitted: dict[str, int] = {}
        self.dropped = 0
        self.recent: deque[dict[str, Any]] = deque(maxlen=256)

    def reserve_id(self) -> str:
        """An id for an event emitted later: an aggregated event (one per key and second)
        is quoted to the first refused client before its count is final."""
        self._counter += 1
        return f"sev-{self._prefix}-{self._counter:08x}"

    def emit(self, event: SecurityEvent) -> str:
        """Queue ``event``; returns its id (quoted in the client's problem document).

        An event that already carries an id from :meth:`reserve_id` keeps it.
        """
        if not event.event_id:
            event.event_id = self.reserve_id()
        self.emitted[event.kind] = self.emitted.get(event.kind, 0) + 1
        if len(self._queue) >= QUEUE_EVENTS_MAX:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(event)
        return event.event_id

    def drain(self) -> list[dict[str, Any]]:
        """Take the queued events as dicts (also kept in ``recent`` for /healthz)."""
        out = [e.as_dict() for e in self._queue]
        self._queue.clear()
        self.recent.extend(out)
        return out

    def flush(self) -> int:
        events = self.drain()
        if not events:
            return 0
        for event in events:
            log.warning("edge.security_event", **event)
        if self._path is None:
            return len(events)
        data = b"".join(json_codec.dumps_bytes(e) + b"\n" for e in events)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if self._path.stat().st_size + len(data) > FILE_BYTES_MAX:
                self._path.replace(self._path.with_suffix(".jsonl.1"))
        with self._path.open("ab") as f:
            f.write(data)
        return len(events)

    async def run(self) -> None:
        """Flush forever (one task per edge worker); a final flush on cancellation."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                try:
                    self.flush()
                except OSError:
                    log.exception("edge.security_events_write_failed")
        finally:
            with contextlib.suppress(OSError):
                self.flush()
