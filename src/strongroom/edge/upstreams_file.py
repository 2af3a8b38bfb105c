"""``<data_dir>/run/upstreams.json``: the supervisor's list of pods, read by every edge
worker (format in docs/architecture.md, "Runtime contracts").

The supervisor replaces the file atomically (temporary file + rename), so a reader
sees the old list or the new one, never half of one; workers poll its stat because
polling one small file per second is cheaper and more portable than inotify.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from strongroom.edge.balancer import Upstream

logger = logging.getLogger(__name__)

# The file names a few dozen pods; anything far larger is not ours.
UPSTREAMS_FILE_BYTES_MAX = 1024 * 1024


class UpstreamsFileError(ValueError):
    """The upstream list is missing fields, mistyped or inconsistent."""

    code = "invalid-upstreams-file"


_MISSING = object()


def _text(entry: dict[str, object], key: str, default: object = _MISSING) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str):
        raise UpstreamsFileError(f"upstream field {key!r} must be a string: {value!r}")
    return value


def _integer(entry: dict[str, object], key: str, default: object = _MISSING) -> int:
    value = entry.get(key, default)
    # bool is an int subclass; a port of `true` is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise UpstreamsFileError(f"upstream field {key!r} must be an integer: {value!r}")
    return value


def parse_upstreams(data: object) -> tuple[int, list[Upstream]]:
    """Validate the decoded JSON document; unknown keys are ignored for forward compatibility."""
    if not isinstance(data, dict):
        raise UpstreamsFileError("upstreams file must hold a JSON object")
    generation = data.get("generation")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise UpstreamsFileError(f"generation must be a non-negative integer: {generation!r}")
    entries = data.get("upstreams")
    if not isinstance(entries, list):
        raise UpstreamsFileError("upstreams must be a list")
    upstreams: list[Upstream] = []
    names: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise UpstreamsFileError(f"each upstream must be an object: {entry!r}")
        try:
            upstream = Upstream(
                name=_text(entry, "name"),
                host=_text(entry, "host"),
                port=_integer(entry, "port"),
                zone=_text(entry, "zone"),
                weight=_integer(entry, "weight", 100),
                version=_text(entry, "version", ""),
            )
        except UpstreamsFileError:
            raise
        except ValueError as exc:
            raise UpstreamsFileError(str(exc)) from exc
        if upstream.name in names:
            raise UpstreamsFileError(f"duplicate upstream name {upstream.name!r}")
        names.add(upstream.name)
        upstreams.append(upstream)
    return generation, upstreams


def read_upstreams_file(path: Path) -> tuple[int, list[Upstream]]:
    """(generation, upstreams) from ``path``; raises OSError or ``UpstreamsFileError``."""
    with path.open("rb") as handle:
        raw = handle.read(UPSTREAMS_FILE_BYTES_MAX + 1)
    if len(raw) > UPSTREAMS_FILE_BYTES_MAX:
        raise UpstreamsFileError(f"{path} is larger than {UPSTREAMS_FILE_BYTES_MAX} bytes")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UpstreamsFileError(f"{path} is not valid JSON: {exc}") from exc
    return parse_upstreams(data)


def write_upstreams_file(path: Path, generation: int, upstreams: Sequence[Upstream]) -> None:
    """Replace ``path`` atomically: readers see the old list or the new one, never a mix.

    The temporary file sits in the same directory (rename is only atomic within one
    file system) and is fsynced first, so a crash cannot leave an empty list behind.
    """
    document = {"generation": generation, "upstreams": [asdict(u) for u in upstreams]}
    payload = json.dumps(document, indent=2).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class UpstreamsWatcher:
    """Polls the upstream file's stat and hands each new list to ``on_change``.

    ``on_change`` is typically ``Balancer.set_upstreams``. A missing or invalid file
    keeps the last good list (logged once per change of the file), so a bad write by
    an operator never empties the pool.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[list[Upstream]], None],
        *,
        poll_s: float,
    ) -> None:
        self.path = path
        self.poll_s = poll_s
        self.generation: int | None = None
        self._on_change = on_change
        self._signature: tuple[int, int, int] | None = None
        self._applied: tuple[int, list[Upstream]] | None = None

    def poll(self) -> bool:
        """Look once; True when ``on_change`` was called with a new list."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._signature = None
            return False
        # The inode changes on every atomic replace, so a same-mtime rewrite is seen too.
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            generation, upstreams = read_upstreams_file(self.path)
        except (OSError, UpstreamsFileError) as exc:
            logger.warning("upstreams file %s ignored, keeping the last list: %s", self.path, exc)
            return False
        if self._applied == (generation, upstreams):
            return False
        try:
            self._on_change(upstreams)
        except BaseException:
            self._signature = None  # try again at the next poll
            raise
        self._applied = (generation, upstreams)
        self.generation = generation
        return True

    async def run(self) -> None:
        """Poll every ``poll_s`` until cancelled."""
        while True:
            try:
                self.poll()
            except Exception:
                # A failing callback must not stop reloads: the next list may be fine.
                logger.exception("applying upstreams file %s failed", self.path)
            await asyncio.sleep(self.poll_s)
