"""Ledger objects as the domain sees them: immutable values, integer minor units only.

Balances are four counters per account, as in TigerBeetle: ``debits_posted``,
``credits_posted``, ``debits_pending``, ``credits_pending``. Every change to a counter is
an :class:`Entry` (a signed delta), so an account's counters always equal the sum of its
entries, and a balance at any past instant is the sum of the entries made up to then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

AccountKind = Literal["wallet", "merchant", "system"]
AccountStatus = Literal["active", "frozen", "closed"]
NormalSide = Literal["credit", "debit"]
Side = Literal["debit", "credit"]
TransferStatus = Literal["posted", "pending", "voided", "expired"]
Counter = Literal["debits_posted", "credits_posted", "debits_pending", "credits_pending"]

ACCOUNT_KINDS: tuple[AccountKind, ...] = ("wallet", "merchant", "system")
USER_ACCOUNT_KINDS: tuple[AccountKind, ...] = ("wallet", "merchant")
COUNTERS: tuple[Counter, ...] = (
    "debits_posted",
    "credits_posted",
    "debits_pending",
    "credits_pending",
)

# Counters and amounts are 64-bit signed on both backends: 9.2e18 minor units (92
# quadrillion in a 2-decimal currency). An amount or a counter past it is refused, never
# wrapped or rounded (ADR 0006).
AMOUNT_MAX = 2**63 - 1

# Every tenant has these per currency (created with its first account in that currency).
# `clearing` is debit-normal and unbounded: money enters the ledger by debiting it and
# leaves by crediting it. `fees` and `settlement` are credit-normal and bounded.
SYSTEM_ACCOUNT_CODES: tuple[str, ...] = ("clearing", "fees", "settlement")

METADATA_BYTES_MAX = 4096


def now_us() -> int:
    """The ledger's clock: integer microseconds since the epoch (exact and ordered)."""
    return time.time_ns() // 1000


BATCH_MAX = 8190
JOURNAL_LEGS_MAX = 64


@dataclass(frozen=True, slots=True)
class Balances:
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def plus(self, counter: Counter, delta: int) -> Balances:
        # Written out rather than dataclasses.replace: this runs for every entry of a
        # group, and replace costs several times more.
        dp, cp, dq, cq = (
            self.debits_posted,
            self.credits_posted,
            self.debits_pending,
            self.credits_pending,
        )
        if counter == "debits_posted":
            dp += delta
        elif counter == "credits_posted":
            cp += delta
        elif counter == "debits_pending":
            dq += delta
        else:
            cq += delta
        return Balances(dp, cp, dq, cq)

    def merged(self, other: Balances) -> Balances:
        return Balances(
            self.debits_posted + other.debits_posted,
            self.credits_posted + other.credits_posted,
            self.debits_pending + other.debits_pending,
            self.credits_pending + other.credits_pending,
        )

    def most(self) -> int:
        """The largest counter: how close the account is to the integer limit."""
        return max(
            self.debits_posted, self.credits_posted, self.debits_pending, self.credits_pending
        )

    def balance(self, normal: NormalSide) -> int:
        """Posted balance on the account's normal side."""
        if normal == "credit":
            return self.credits_posted - self.debits_posted
        return self.debits_posted - self.credits_posted

    def available(self, normal: NormalSide) -> int:
        """Posted balance less outgoing holds: what may still be spent."""
        if normal == "credit":
            return self.credits_posted - self.debits_posted - self.debits_pending
        return self.debits_posted - self.credits_posted - self.credits_pending


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    tenant_id: str
    currency: str
    kind: AccountKind
    normal: NormalSide
    # False only for clearing accounts: nothing limits how far they go.
    bounded: bool
    overdraft_limit: int
    status: AccountStatus
    metadata: dict[str, Any]
    created_at_us: int
    code: str | None = None  # the system account's role, e.g. "fees"
    balances: Balances = field(default_factory=Balances)
    # What the creating request asked for: a retry of it must replay even after the limit
    # was changed since (not part of equality: it is history, not state).
    initial_overdraft_limit: int = field(default=0, compare=False)
    # Set by the store on a sharded (system) account: how much each counter may still grow
    # in this transaction, so that no shard passes its share of the integer range.
    room: Balances | None = field(default=None, compare=False)

    def moved(self, balances: Balances, room: Balances | None) -> Account:
        """This account with new counters (and room): ``dataclasses.replace`` spelled out,
        as the engine calls it for every entry (a test pins it to ``replace``)."""
        return Account(
            self.id,
            self.tenant_id,
            self.currency,
            self.kind,
            self.normal,
            self.bounded,
            self.overdraft_limit,
            self.status,
            self.metadata,
            self.created_at_us,
            self.code,
            balances,
            self.initial_overdraft_limit,
            room,
        )

    def headroom(self) -> int | None:
        """How much more may be debited (credit-normal) or credited (debit-normal), pending
        included; ``None`` when unbounded."""
        if not self.bounded:
            return None
        b = self.balances
        if self.normal == "credit":
            return b.credits_posted + self.overdraft_limit - b.debits_posted - b.debits_pending
        return b.debits_posted + self.overdraft_limit - b.credits_posted - b.credits_pending


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    tenant_id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    status: TransferStatus
    pending: bool  # created as a hold (two-phase)
    metadata: dict[str, Any]
    created_at_us: int
    expires_at_us: int | None = None
    posted_amount: int | None = None  # for a resolved hold: what was posted (0 if voided)
    resolved_at_us: int | None = None
    reversed_amount: int = 0
    reverses_id: str | None = None  # set on a reversal: the transfer it compensates


@dataclass(frozen=True, slots=True)
class Leg:
    account_id: str
    side: Side
    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
class JournalEntry:
    id: str
    tenant_id: str
    legs: tuple[Leg, ...]
    metadata: dict[str, Any]
    created_at_us: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One signed change to one counter of one account, caused by a transfer or journal entry."""

    account_id: str
    counter: Counter
    delta: int
    created_at_us: int
    transfer_id: str | None = None
    journal_entry_id: str | None = None
    seq: int = 0  # assigned by the store: the account's entries in order


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """A state change, written in the same transaction as the change to the outbox (for the
    stream) and to the audit log (for proof). ``type`` is one of ``EVENT_TYPES``."""

    type: str
    tenant_id: str
    subject_ids: tuple[str, ...]
    data: dict[str, Any]
    occurred_at_us: int


EVENT_TYPES: frozenset[str] = frozenset(
    {
        "account.created",
        "account.frozen",
        "account.unfrozen",
        "account.closed",
        "account.limit_changed",
        "transfer.created",
        "transfer.pending",
        "transfer.posted",
        "transfer.voided",
        "transfer.expired",
        "transfer.reversed",
        "journal_entry.created",
    }
)
