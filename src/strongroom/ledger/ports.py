"""What the ledger needs from storage. SQL adapters implement it for SQLite and PostgreSQL.

A store applies *units* of commands, each all-or-nothing (``atomic``) or item by item, and
several units in one database transaction (group commit): the postings, the counters, the
outbox events, the audit entries and any idempotency-key response commit together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from strongroom.ledger.commands import Command
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import Account, AccountKind, Counter, Entry, JournalEntry, Transfer

ActorKind = Literal["client", "user", "operator", "system"]


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str


SYSTEM_ACTOR = Actor("system", "strongroom")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One command's result: the object it made or changed, or why it was refused.

    ``replayed`` marks a resubmitted id that returned the original object unchanged.
    """

    value: Account | Transfer | JournalEntry | None = None
    error: LedgerError | None = None
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """An Idempotency-Key this request holds (``token`` proves it); ``respond`` renders the
    unit's outcomes into the response stored with the key, inside the same transaction."""

    key: str
    token: str
    respond: Callable[[list[Outcome]], StoredResponse]


@dataclass(frozen=True, slots=True)
class Unit:
    tenant_id: str
    commands: tuple[Command, ...]
    actor: Actor
    request_id: str | None = None
    atomic: bool = True
    claim: Claim | None = None


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """``state``: ``claimed`` (go on, with ``token``), ``replay`` (``response`` is the first
    answer), ``in_flight`` (a concurrent request holds it) or ``mismatch`` (different body)."""

    state: Literal["claimed", "replay", "in_flight", "mismatch"]
    token: str | None = None
    response: StoredResponse | None = None


@dataclass(frozen=True, slots=True)
class EntryFilter:
    counters: frozenset[Counter] = field(default_factory=frozenset)  # empty: all
    from_us: int | None = None
    to_us: int | None = None  # exclusive
    transfer_id: str | None = None


class LedgerStore(Protocol):
    def execute(self, units: Sequence[Unit], now_us: int) -> list[list[Outcome]]:
        """Apply ``units`` in one transaction; one list of outcomes per unit, in order.

        A unit that fails (atomic) or an item that fails (non-atomic) writes nothing of its
        own; other units are unaffected. Raises only for infrastructure failures, in which
        case nothing at all was written.
        """
        ...

    def account(
        self, tenant_id: str, account_id: str, *, as_of_us: int | None = None
    ) -> Account | None: ...

    def accounts(
        self,
        tenant_id: str,
        *,
        after: str | None,
        limit: int,
        kind: AccountKind | None = None,
        currency: str | None = None,
    ) -> list[Account]: ...

    def transfer(self, tenant_id: str, transfer_id: str) -> Transfer | None: ...

    def journal_entry(self, tenant_id: str, entry_id: str) -> JournalEntry | None: ...

    def entries(
        self, tenant_id: str, account_id: str, *, after_seq: int, limit: int, where: EntryFilter
    ) -> list[Entry]: ...

    def due_holds(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        """(tenant_id, transfer_id) of pending transfers whose expiry has passed."""
        ...

    def claim_key(
        self,
        tenant_id: str,
        key: str,
        request_hash: str,
        now_us: int,
        *,
        lease_us: int,
        ttl_us: int,
    ) -> ClaimResult:
        """Take an Idempotency-Key for this request (its own short transaction).

        A key whose holder's lease ran out (the pod died) can be taken over: its unit never
        committed, because committing needs the still-valid token.
        """
        ...

    def release_key(self, tenant_id: str, key: str, token: str) -> None:
        """Give up a claim before execution began (e.g. the body failed validation)."""
        ...

    def purge_keys(self, now_us: int) -> int:
        """Delete expired keys; returns how many."""
        ...
