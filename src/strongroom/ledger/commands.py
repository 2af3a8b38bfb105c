"""What a caller may ask of the ledger, already parsed; `validate` checks what needs no state.

Every command that creates something carries its client-chosen id: resubmitting a
command with an id that exists returns the original (same request) or is refused with
``idempotency-conflict`` (different request), as in TigerBeetle.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from strongroom.ledger.currencies import exponent
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import (
    AMOUNT_MAX,
    JOURNAL_LEGS_MAX,
    METADATA_BYTES_MAX,
    USER_ACCOUNT_KINDS,
    AccountKind,
    Leg,
)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True, slots=True)
class CreateAccount:
    id: str
    kind: AccountKind
    currency: str
    overdraft_limit: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChangeAccount:
    """Freeze, unfreeze, close, or set the overdraft limit (at most one per command)."""

    account_id: str
    action: Literal["freeze", "unfreeze", "close", "set_overdraft_limit"]
    overdraft_limit: int | None = None


@dataclass(frozen=True, slots=True)
class CreateTransfer:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending: bool = False
    expires_at_us: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PostTransfer:
    """Post a hold, fully (``amount`` None) or partially (the rest is released)."""

    transfer_id: str
    amount: int | None = None


@dataclass(frozen=True, slots=True)
class VoidTransfer:
    transfer_id: str


@dataclass(frozen=True, slots=True)
class ExpireTransfer:
    """The worker's void of a hold past its ``expires_at``."""

    transfer_id: str


@dataclass(frozen=True, slots=True)
class ReverseTransfer:
    """A compensating transfer ``id`` from the original's credit account to its debit account."""

    transfer_id: str
    id: str
    amount: int | None = None  # None: what is left to reverse
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CreateJournalEntry:
    id: str
    legs: tuple[Leg, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


Command = (
    CreateAccount
    | ChangeAccount
    | CreateTransfer
    | PostTransfer
    | VoidTransfer
    | ExpireTransfer
    | ReverseTransfer
    | CreateJournalEntry
)


def check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or _UUID.fullmatch(value) is None:
        raise LedgerError("validation-failed", f"{what} must be a lowercase UUID")


def check_amount(value: object, what: str = "amount") -> int:
    # bool is an int in Python and 10.0 == 10: neither is an amount.
    if type(value) is not int or not 0 < value <= AMOUNT_MAX:
        raise LedgerError(
            "invalid-amount", f"{what} must be an integer from 1 to {AMOUNT_MAX} (minor units)"
        )
    return value


def check_currency(code: object) -> str:
    if not isinstance(code, str) or exponent(code) is None:
        raise LedgerError("unknown-currency", f"{str(code)[:8]!r} is not an ISO 4217 currency")
    return code


def check_metadata(metadata: object) -> None:
    if not isinstance(metadata, dict):
        raise LedgerError("validation-failed", "metadata must be a JSON object")
    if not metadata:  # most commands carry none: skip the encoding
        return
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_BYTES_MAX:
        raise LedgerError(
            "validation-failed", f"metadata is {size} bytes; at most {METADATA_BYTES_MAX}"
        )


def validate(command: Command) -> None:
    """Everything checkable without the ledger's state; raises :class:`LedgerError`."""
    match command:
        case CreateAccount():
            check_id(command.id, "id")
            if command.kind not in USER_ACCOUNT_KINDS:
                raise LedgerError("validation-failed", f"kind must be one of {USER_ACCOUNT_KINDS}")
            check_currency(command.currency)
            if type(command.overdraft_limit) is not int or not (
                0 <= command.overdraft_limit <= AMOUNT_MAX
            ):
                raise LedgerError(
                    "validation-failed", "overdraft_limit must be a non-negative integer"
                )
            check_metadata(command.metadata)
        case ChangeAccount():
            if command.action == "set_overdraft_limit" and (
                type(command.overdraft_limit) is not int
                or not 0 <= command.overdraft_limit <= AMOUNT_MAX
            ):
                raise LedgerError(
                    "validation-failed", "overdraft_limit must be a non-negative integer"
                )
        case CreateTransfer():
            check_id(command.id, "id")
            check_amount(command.amount)
            check_currency(command.currency)
            if command.debit_account_id == command.credit_account_id:
                raise LedgerError("same-account", "debit and credit accounts must differ")
            if command.expires_at_us is not None and not command.pending:
                raise LedgerError("invalid-expiry", "only a pending transfer can expire")
            check_metadata(command.metadata)
        case PostTransfer():
            if command.amount is not None:
                check_amount(command.amount)
        case ReverseTransfer():
            check_id(command.id, "id")
            if command.amount is not None:
                check_amount(command.amount)
            check_metadata(command.metadata)
        case CreateJournalEntry():
            check_id(command.id, "id")
            if not 2 <= len(command.legs) <= JOURNAL_LEGS_MAX:
                raise LedgerError(
                    "validation-failed", f"a journal entry has 2 to {JOURNAL_LEGS_MAX} legs"
                )
            totals: dict[str, int] = {}
            for leg in command.legs:
                check_amount(leg.amount, "leg amount")
                check_currency(leg.currency)
                if leg.side not in ("debit", "credit"):
                    raise LedgerError("validation-failed", "leg side must be debit or credit")
                sign = 1 if leg.side == "debit" else -1
                totals[leg.currency] = totals.get(leg.currency, 0) + sign * leg.amount
            unbalanced = sorted(c for c, t in totals.items() if t != 0)
            if unbalanced:
                raise LedgerError(
                    "unbalanced-entry", f"debits differ from credits in {', '.join(unbalanced)}"
                )
            check_metadata(command.metadata)
        case _:
            pass
