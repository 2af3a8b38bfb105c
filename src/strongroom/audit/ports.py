"""What the audit log's adapters implement: the read side (API, verifier) and the sequencer's store.

The SQL adapter (``adapters/db/audit_store.py``) implements both on SQLite and PostgreSQL.
Indexes are Merkle leaf indexes (0-based, gap-free, assigned by the sequencer); ``seq``
is the row number of ``audit_entries`` (assigned at insert, may have gaps and may commit
out of order on PostgreSQL, which is why the sequencer, not ``seq``, orders the log).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from strongroom.audit.canonical import AuditRecord
from strongroom.audit.rfc9162_merkle import NodeCoordinate, NodeHash


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A published checkpoint: its tree size and root, and the signed note as served."""

    size: int
    root_hash: bytes
    note: str
    published_at_us: int


@dataclass(frozen=True, slots=True)
class SequencedEntry:
    """An audit entry with its place in the log (``index`` None: not sequenced yet)."""

    seq: int
    index: int | None
    record: AuditRecord


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Search filters (all optional; ``tenant_id`` None means every tenant: operators)."""

    tenant_id: str | None = None
    subject_id: str | None = None
    event_type: str | None = None
    from_us: int | None = None
    to_us: int | None = None  # exclusive
    after_seq: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SequencerState:
    """Where a sequencer resumes: the tree's size, the persisted commit horizon (every
    ``seq`` ≤ ``horizon_seq`` is in the tree or will never exist) and the ``seq`` of every
    entry already in the tree above it (out-of-order commits). See ``audit.commit_horizon``."""

    tree_size: int
    horizon_seq: int
    sequenced_above: frozenset[int]


class AppendConflictError(RuntimeError):
    """``append`` found the tree at another size than the caller's: another sequencer ran.

    Nothing was written; the caller reloads its state from the store.
    """


class AuditReader(Protocol):
    """The log as the API and verifiers read it."""

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def public_key(self) -> str | None:
        """The log's newest C2SP verifier key (``name+keyhash+base64``), once registered."""
        ...

    def tree_size(self) -> int: ...

    def checkpoints(self, *, after_size: int, limit: int) -> list[StoredCheckpoint]:
        """Published checkpoints with ``size > after_size``, oldest first."""
        ...

    def leaves(self, start: int, end: int) -> list[bytes]:
        """The exact leaf bytes of indexes ``start`` ≤ i < ``end`` (fewer at the log's end)."""
        ...

    def nodes(self, coordinates: Sequence[NodeCoordinate]) -> Mapping[NodeCoordinate, bytes]:
        """Stored perfect-subtree hashes (one query, whatever the count)."""
        ...

    def search(self, query: EntryQuery) -> list[SequencedEntry]: ...


class SequencerStore(Protocol):
    """What the sequencer reads and writes; each call is one transaction."""

    def state(self) -> SequencerState: ...

    def node(self, level: int, index: int) -> bytes:
        """One stored perfect-subtree hash (to restore the compact range at start)."""
        ...

    def unsequenced(
        self, *, after_seq: int, gaps: Sequence[int], limit: int
    ) -> list[SequencedEntry]:
        """Committed entries not yet in the tree whose ``seq`` is above ``after_seq`` or
        one of ``gaps``, oldest ``seq`` first, at most ``limit``."""
        ...

    def append(
        self,
        first_index: int,
        entries: Sequence[SequencedEntry],
        nodes: Sequence[NodeHash],
        *,
        horizon_seq: int,
    ) -> None:
        """Give ``entries`` the indexes from ``first_index`` on, store the new nodes (and
        whatever search needs) and the new horizon, atomically; raises
        :class:`AppendConflictError` if the tree no longer has ``first_index`` leaves."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    def publish(self, checkpoint: StoredCheckpoint) -> None: ...

    def register_key(self, verifier_key: str) -> None:
        """Record the log's verifier key (idempotent), so pods can serve it."""
        ...
