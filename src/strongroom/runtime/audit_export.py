"""Checkpoints out of the database: appended to a file, and POSTed to an external sink.

A checkpoint only anchors trust if a copy lives where a database superuser cannot rewrite
it. The file gets one JSON line per checkpoint (``size``, ``root_hash`` base64,
``published_at_us``, ``note``: the signed note exactly as served), fsynced. The URL gets
each note as ``text/plain`` from a background thread with a bounded timeout and a bounded
queue: a slow or dead sink is logged and skipped, it never holds up sequencing (the next
checkpoint, which covers everything before it, follows within a second).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import threading
import urllib.error
import urllib.request
from pathlib import Path

import structlog

from strongroom.audit.ports import StoredCheckpoint

log = structlog.get_logger("strongroom.audit.export")

# Checkpoints waiting for the sink; past this the oldest are dropped (each new checkpoint
# supersedes them, being consistent with all of them).
EXPORT_QUEUE_MAX = 64


class CheckpointExporter:
    """Called with each published checkpoint (the sequencer's ``on_publish``)."""

    def __init__(self, path: Path | None, url: str | None, timeout_s: float) -> None:
        self._path = path
        self._url = url
        self._timeout_s = timeout_s
        self._queue: queue.Queue[StoredCheckpoint | None] = queue.Queue(EXPORT_QUEUE_MAX)
        self._thread: threading.Thread | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        if url is not None:
            self._thread = threading.Thread(target=self._post_forever, daemon=True)
            self._thread.start()

    def __call__(self, checkpoint: StoredCheckpoint) -> None:
        if self._path is not None:
            self._append(checkpoint)
        if self._url is not None:
            while True:
                try:
                    self._queue.put_nowait(checkpoint)
                    break
                except queue.Full:
                    dropped = self._queue.get_nowait()
                    if dropped is not None:
                        log.warning("audit checkpoint export dropped", size=dropped.size)

    def _append(self, checkpoint: StoredCheckpoint) -> None:
        assert self._path is not None
        line = json.dumps(
            {
                "size": checkpoint.size,
                "root_hash": base64.b64encode(checkpoint.root_hash).decode(),
                "published_at_us": checkpoint.published_at_us,
                "note": checkpoint.note,
            },
            separators=(",", ":"),
        )
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _post_forever(self) -> None:
        # The standard library's client: the product has no HTTP client dependency, and
        # one small POST per checkpoint needs no pooling.
        assert self._url is not None
        while (checkpoint := self._queue.get()) is not None:
            request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
                self._url,
                data=checkpoint.note.encode(),
                headers={"content-type": "text/plain; charset=utf-8"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                    response.read()
            except (urllib.error.URLError, OSError) as exc:
                log.warning("audit checkpoint export failed", size=checkpoint.size, error=repr(exc))

    def close(self) -> None:
        """Stop the sink thread after what is queued (bounded by one timeout per item)."""
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=self._timeout_s)
            self._thread.join(self._timeout_s * 2)
