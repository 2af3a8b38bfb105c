"""Where `strongroom audit verify|witness` read the log: the database, or the HTTP API.

Both sources hand :class:`~strongroom.audit.verify.LogVerifier` the same things: the signed
checkpoints they hold, the leaves in index order (with the stored level-0 hashes where the
source has them: the database does, the API does not), and consistency proofs to narrow a
root mismatch. The API is spoken exactly as issue 5 fixes it, so these are also what an
independent verifier does; the client is the standard library's ``urllib`` (no HTTP client is
a runtime dependency), trusting the platform's local CA like `strongroom token`.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from strongroom.audit.rfc9162_merkle import HASH_BYTES, consistency_nodes, consistency_proof
from strongroom.audit.verify import LogVerifier, VerifyReport

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# Leaves per database read: one indexed range scan each, a few MiB of rows.
DB_CHUNK_LEAVES = 5000
# Leaves asked for per API request (the API may answer fewer; the verifier asks again).
HTTP_CHUNK_LEAVES = 1000
# Checkpoints per database read.
DB_CHECKPOINT_PAGE = 1000
# One API request; a hung server must not hang the verifier or the witness.
HTTP_TIMEOUT_S = 30.0
# Bounds what one API answer may make the client read (1,000 leaves of ≤ 64 KiB, base64).
HTTP_BODY_BYTES_MAX = 96 * 1024 * 1024
# An exported-checkpoints file: a year of one checkpoint a second is ~10 GB; refuse more
# than this rather than read an unbounded file (split or rotate it).
CHECKPOINT_FILE_BYTES_MAX = 1024 * 1024 * 1024


class SourceError(RuntimeError):
    """The source could not be read (network, HTTP status, malformed answer, database)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Leaves from ``start`` on; ``missing`` is the index the source skipped, if any."""

    start: int
    leaves: list[bytes]
    stored_hashes: list[bytes | None] | None
    missing: int | None = None


class LogSource(Protocol):
    """What verification reads from a log."""

    def verifier_key(self) -> str | None:
        """The log's verifier key as the source publishes it (not a trust anchor)."""
        ...

    def checkpoint_notes(self) -> Iterator[tuple[str, str]]:
        """``(label, signed note)`` of every checkpoint the source holds."""
        ...

    def size(self) -> int:
        """How many leaves the source says the log has."""
        ...

    def chunks(self, start: int) -> Iterator[Chunk]:
        """Consecutive chunks of leaves from ``start`` until the log (or a gap) ends."""
        ...

    def consistency_proof(self, old: int, new: int) -> list[bytes]: ...


def verify_log(
    source: LogSource,
    verifier: LogVerifier,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Feed ``verifier`` (checkpoints already added) every leaf of ``source``, then narrow.

    ``on_progress(done, total)`` is called after each chunk.
    """
    total = max(source.size(), verifier.target_size)
    for chunk in source.chunks(0):
        if chunk.leaves and not verifier.feed(chunk.leaves, chunk.stored_hashes):
            break
        if chunk.missing is not None:
            verifier.missing(chunk.missing)
            break
        if on_progress is not None:
            on_progress(verifier.size, max(total, verifier.size))
    return verifier.narrow(_proof_or_nothing(source))


def _proof_or_nothing(source: LogSource) -> Callable[[int, int], Sequence[bytes]]:
    """A proof the source cannot give counts as none: the prefix is then not proven."""

    def proof(old: int, new: int) -> Sequence[bytes]:
        try:
            return source.consistency_proof(old, new)
        except (SourceError, LookupError):
            return []

    return proof


def read_checkpoint_file(path: Path) -> list[tuple[str, str]]:
    """``(label, note)`` of the checkpoints in ``path``.

    Two formats: the sequencer's export (``audit.export_path``: one JSON object a line with
    the signed note under ``"note"``), or one signed note as it is (the witness's state file,
    a note saved from ``GET /v1/audit/checkpoint``).
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(CHECKPOINT_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > CHECKPOINT_FILE_BYTES_MAX:
        raise SourceError(f"{path} is over {CHECKPOINT_FILE_BYTES_MAX} bytes: split it")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{path} is not UTF-8") from None
    if not text.lstrip().startswith("{"):
        return [(str(path), text)]
    found: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            note = json.loads(line)["note"]
        except (ValueError, KeyError, TypeError):
            raise SourceError(f"{path}:{number} is not an exported checkpoint line") from None
        if not isinstance(note, str):
            raise SourceError(f"{path}:{number}: the note is not a string")
        found.append((f"{path}:{number}", note))
    return found


# -- the database ------------------------------------------------------------------------------


class DatabaseLogSource:
    """The log as the database holds it (``SqlAuditStore``), with the stored leaf hashes."""

    def __init__(self, engine: Engine, *, chunk_leaves: int = DB_CHUNK_LEAVES) -> None:
        from strongroom.adapters.db.audit_store import SqlAuditStore  # noqa: PLC0415

        self._engine = engine
        self._store = SqlAuditStore(engine)
        self._chunk = chunk_leaves

    def verifier_key(self) -> str | None:
        return self._store.public_key()

    def checkpoint_notes(self) -> Iterator[tuple[str, str]]:
        after = -1
        while page := self._store.checkpoints(after_size=after, limit=DB_CHECKPOINT_PAGE):
            for stored in page:
                yield f"database checkpoint {stored.size}", stored.note
            after = page[-1].size

    def size(self) -> int:
        return self._store.tree_size()

    def chunks(self, start: int) -> Iterator[Chunk]:
        size = self.size()
        while True:
            leaves = self._store.leaves(start, start + self._chunk)
            hashes = self._leaf_hashes(start, start + len(leaves))
            end = start + len(leaves)
            short = len(leaves) < self._chunk
            # The store stops at the first index without a leaf row or entry row: inside
            # the tree that is a deleted row, not the end of the log.
            missing = end if short and end < size else None
            yield Chunk(start, leaves, hashes, missing)
            if short:
                return
            start = end

    def _leaf_hashes(self, start: int, end: int) -> list[bytes | None]:
        import sqlalchemy as sa  # noqa: PLC0415

        from strongroom.adapters.db.schema import audit_tree_nodes  # noqa: PLC0415

        if end <= start:
            return []
        n = audit_tree_nodes.c
        query = (
            sa.select(n.idx, n.hash)
            .where(n.level == 0, n.idx >= start, n.idx < end)
            .order_by(n.idx)
        )
        with self._engine.connect() as connection:
            found = {int(r.idx): bytes(r.hash) for r in connection.execute(query)}
        return [found.get(i) for i in range(start, end)]

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        nodes = self._store.nodes(consistency_nodes(old, new))
        return consistency_proof(old, new, lambda level, index: nodes[level, index])


# -- the HTTP API ------------------------------------------------------------------------------


class HttpLogSource:
    """The log as ``/v1/audit/*`` serves it, with a bearer token (scope ``audit:read``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        context: ssl.SSLContext,
        *,
        chunk_leaves: int = HTTP_CHUNK_LEAVES,
        timeout_s: float = HTTP_TIMEOUT_S,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._context = context
        self._chunk = chunk_leaves
        self._timeout_s = timeout_s
        self._latest: str | None = None

    def _get(self, path: str, **params: int) -> bytes:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(  # noqa: S310 - https URL the operator gave
            f"{self._base}{path}{query}",
            headers={"Authorization": f"Bearer {self._token}"},
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self._context, timeout=self._timeout_s
            ) as response:
                body: bytes = response.read(HTTP_BODY_BYTES_MAX + 1)
        except urllib.error.HTTPError as exc:
            detail = exc.read(4096).decode(errors="replace").strip()
            raise SourceError(f"GET {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(f"GET {self._base}{path}: {reason}") from None
        if len(body) > HTTP_BODY_BYTES_MAX:
            raise SourceError(f"GET {path}: answer over {HTTP_BODY_BYTES_MAX} bytes")
        return body

    def _json(self, path: str, **params: int) -> dict[str, Any]:
        try:
            value = json.loads(self._get(path, **params))
        except ValueError:
            raise SourceError(f"GET {path}: the answer is not JSON") from None
        if not isinstance(value, dict):
            raise SourceError(f"GET {path}: the answer is not a JSON object")
        return value

    def latest_note(self) -> str:
        """``GET /v1/audit/checkpoint``: the log's latest signed note."""
        try:
            return self._get("/v1/audit/checkpoint").decode("utf-8")
        except UnicodeDecodeError:
            raise SourceError("GET /v1/audit/checkpoint: the note is not UTF-8") from None

    def verifier_key(self) -> str | None:
        try:
            return self._get("/v1/audit/public-key").decode("ascii").strip()
        except UnicodeDecodeError:
            raise SourceError("GET /v1/audit/public-key: not a key string") from None

    def checkpoint_notes(self) -> Iterator[tuple[str, str]]:
        if self._latest is None:
            self._latest = self.latest_note()
        yield "the API's latest checkpoint", self._latest

    def size(self) -> int:
        if self._latest is None:
            self._latest = self.latest_note()
        lines = self._latest.split("\n")
        return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0

    def chunks(self, start: int) -> Iterator[Chunk]:
        size = self.size()
        while start < size:
            want = min(size, start + self._chunk)
            body = self._json("/v1/audit/entries", start=start, end=want)
            leaves, missing = _entries(body, start)
            yield Chunk(start, leaves, None, missing)
            if missing is not None or not leaves:
                return  # a gap, or the API ended early: the verifier reports either
            start += len(leaves)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        body = self._json("/v1/audit/proofs/consistency", old=old, new=new)
        if body.get("old") != old or body.get("new") != new:
            raise SourceError("the consistency proof is for other sizes than asked")
        return _hashes(body.get("hashes"))

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        body = self._json("/v1/audit/proofs/inclusion", index=index, tree_size=tree_size)
        if body.get("index") != index or body.get("tree_size") != tree_size:
            raise SourceError("the inclusion proof is for another leaf than asked")
        return _hashes(body.get("hashes"))


def _entries(body: dict[str, Any], start: int) -> tuple[list[bytes], int | None]:
    """The leaves of an entries answer from ``start`` on, and the first skipped index."""
    entries = body.get("entries")
    if not isinstance(entries, list):
        raise SourceError("the entries answer has no entries list")
    leaves: list[bytes] = []
    for expected, item in enumerate(entries, start):
        if not isinstance(item, dict) or not isinstance(item.get("index"), int):
            raise SourceError("an entry is not {index, data}")
        if item["index"] != expected:
            return leaves, expected
        leaves.append(_b64(item.get("data")))
    return leaves, None


def _hashes(value: object) -> list[bytes]:
    if not isinstance(value, list):
        raise SourceError("a proof answer has no hashes list")
    hashes = [_b64(h) for h in value]
    if any(len(h) != HASH_BYTES for h in hashes):
        raise SourceError(f"a proof hash is not {HASH_BYTES} bytes")
    return hashes


def _b64(value: object) -> bytes:
    if not isinstance(value, str):
        raise SourceError("a base64 field is not a string")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SourceError("a base64 field is not standard base64") from None
