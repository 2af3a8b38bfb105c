"""How ledger objects look on the wire: JSON views, RFC 3339 times, problems from errors.

Views are built as plain dicts (the hot path renders one per transfer, up to a batch of
8,190, and once more for the Idempotency-Key store); the pydantic models beside them
exist to document the shape in OpenAPI, and the tests hold every response to them.
Amounts and counters are JSON integers in minor units, never strings or floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from strongroom.api.problems import ProblemType, problem_body, problem_type, register_problem
from strongroom.ledger.currencies import exponent
from strongroom.ledger.errors import LEDGER_ERRORS, LedgerError
from strongroom.ledger.model import (
    Account,
    AccountKind,
    AccountStatus,
    Counter,
    Entry,
    JournalEntry,
    NormalSide,
    Side,
    Transfer,
    TransferStatus,
)

# Every ledger error code is a problem type clients branch on (`insufficient-funds`, …).
LEDGER_PROBLEMS: dict[str, ProblemType] = {
    code: register_problem(code, title, status) for code, (status, title) in LEDGER_ERRORS.items()
}

# --- time ---------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# RFC 3339 §5.6 date-time, offset required; fractions past microseconds are truncated.
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def rfc3339(us: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC timestamp with microseconds."""
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def rfc3339_or_none(us: int | None) -> str | None:
    return None if us is None else rfc3339(us)


def parse_rfc3339(text: str) -> int:
    """An RFC 3339 date-time as microseconds since the epoch; ``ValueError`` otherwise.

    Stricter than ``datetime.fromisoformat``, which also takes dates without a time or
    times without an offset: an instant that depends on the server's zone is refused.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2025-01-31T12:00:00Z")
    date, time_, fraction, offset = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if offset in ("Z", "z") else offset
    moment = datetime.fromisoformat(f"{date}T{time_}.{micros}{zone}")
    return (moment - _EPOCH) // _MICROSECOND


# --- problems -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProblemRenderer:
    """Problem bodies for one request, so a stored response names the request that made it."""

    instance: str
    request_id: str

    def __call__(self, error: LedgerError, **extensions: Any) -> tuple[int, dict[str, Any]]:
        problem = problem_type(error.code)
        body = problem_body(
            problem,
            detail=error.detail,
            instance=self.instance,
            request_id=self.request_id,
            extensions=extensions,
        )
        return problem.status, body


def problem_summary(error: LedgerError) -> dict[str, Any]:
    """A problem inside another document (a batch item): no instance or request id."""
    problem = problem_type(error.code)
    return {
        "type": problem.uri,
        "title": problem.title,
        "status": problem.status,
        "detail": error.detail,
    }


# --- views --------------------------------------------------------------------------------


class AccountView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: AccountKind
    code: str | None = Field(description="A system account's role: clearing, fees, settlement.")
    currency: str
    currency_exponent: int = Field(description="Minor-unit digits: 1050 EUR is 10.50.")
    status: AccountStatus
    normal_balance: NormalSide
    overdraft_limit: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    balance: int = Field(description="Posted balance on the account's normal side.")
    available: int = Field(description="Posted balance less outgoing holds.")
    metadata: dict[str, Any]
    created_at: str


class TransferView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    status: TransferStatus
    pending: bool = Field(description="Created as a hold (two-phase).")
    expires_at: str | None
    posted_amount: int | None = Field(description="For a resolved hold: what was posted.")
    reversed_amount: int
    reverses: str | None = Field(description="On a reversal: the transfer it compensates.")
    metadata: dict[str, Any]
    created_at: str
    resolved_at: str | None


class LegView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: str
    side: Side
    amount: int
    currency: str


class JournalEntryView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    legs: list[LegView]
    metadata: dict[str, Any]
    created_at: str


class EntryView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seq: int = Field(description="Position in the account's entries: the `after` cursor.")
    account_id: str
    counter: Counter
    side: Side
    status: Literal["posted", "pending"]
    delta: int = Field(description="Signed change to the counter (negative releases a hold).")
    transfer_id: str | None
    journal_entry_id: str | None
    created_at: str


class AccountList(BaseModel):
    accounts: list[AccountView]
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page; null at the end."
    )


class EntryList(BaseModel):
    entries: list[EntryView]
    next_cursor: int | None = Field(
        description="Pass as `after` for the next page; null at the end."
    )


class ProblemSummary(BaseModel):
    type: str
    title: str
    status: int
    detail: str


class BatchItemResult(BaseModel):
    index: int
    status: Literal["ok", "error"]
    transfer: TransferView | None = None
    problem: ProblemSummary | None = None


class BatchResult(BaseModel):
    results: list[BatchItemResult]


def account_view(account: Account) -> dict[str, Any]:
    b = account.balances
    return {
        "id": account.id,
        "kind": account.kind,
        "code": account.code,
        "currency": account.currency,
        "currency_exponent": exponent(account.currency),
        "status": account.status,
        "normal_balance": account.normal,
        "overdraft_limit": account.overdraft_limit,
        "debits_posted": b.debits_posted,
        "credits_posted": b.credits_posted,
        "debits_pending": b.debits_pending,
        "credits_pending": b.credits_pending,
        "balance": b.balance(account.normal),
        "available": b.available(account.normal),
        "metadata": account.metadata,
        "created_at": rfc3339(account.created_at_us),
    }


def transfer_view(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.id,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "status": transfer.status,
        "pending": transfer.pending,
        "expires_at": rfc3339_or_none(transfer.expires_at_us),
        "posted_amount": transfer.posted_amount,
        "reversed_amount": transfer.reversed_amount,
        "reverses": transfer.reverses_id,
        "metadata": transfer.metadata,
        "created_at": rfc3339(transfer.created_at_us),
        "resolved_at": rfc3339_or_none(transfer.resolved_at_us),
    }


def journal_entry_view(entry: JournalEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "legs": [
            {
                "account_id": leg.account_id,
                "side": leg.side,
                "amount": leg.amount,
                "currency": leg.currency,
            }
            for leg in entry.legs
        ],
        "metadata": entry.metadata,
        "created_at": rfc3339(entry.created_at_us),
    }


def entry_view(entry: Entry) -> dict[str, Any]:
    side, _, status = entry.counter.partition("_")
    return {
        "seq": entry.seq,
        "account_id": entry.account_id,
        "counter": entry.counter,
        "side": side.removesuffix("s"),
        "status": status,
        "delta": entry.delta,
        "transfer_id": entry.transfer_id,
        "journal_entry_id": entry.journal_entry_id,
        "created_at": rfc3339(entry.created_at_us),
    }


def object_view(value: Account | Transfer | JournalEntry) -> dict[str, Any]:
    if isinstance(value, Account):
        return account_view(value)
    if isinstance(value, Transfer):
        return transfer_view(value)
    return journal_entry_view(value)
