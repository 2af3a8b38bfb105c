"""Why a ledger command was refused. ``code`` is stable: the API turns it into the
problem type URI (``https://strongroom.dev/problems/<code>``) clients branch on."""

from __future__ import annotations

# code -> (HTTP status the API answers with, fixed title)
LEDGER_ERRORS: dict[str, tuple[int, str]] = {
    "validation-failed": (422, "Request validation failed"),
    "unknown-currency": (422, "Not an ISO 4217 currency"),
    "currency-mismatch": (422, "Currencies do not match"),
    "invalid-amount": (422, "Amount must be a positive integer in minor units"),
    "same-account": (422, "Debit and credit accounts are the same"),
    "account-not-found": (404, "No such account"),
    "transfer-not-found": (404, "No such transfer"),
    "insufficient-funds": (422, "Insufficient funds"),
    "account-frozen": (422, "Account is frozen"),
    "account-closed": (422, "Account is closed"),
    "account-not-empty": (422, "Account still holds money"),
    "account-immutable": (422, "System accounts cannot be changed this way"),
    "idempotency-conflict": (409, "Same id or key, different request"),
    "transfer-not-pending": (409, "The transfer is not a pending hold"),
    "hold-expired": (409, "The hold has expired"),
    "exceeds-hold": (422, "Amount exceeds the held amount"),
    "not-reversible": (409, "The transfer cannot be reversed"),
    "exceeds-reversible": (422, "Amount exceeds what is left to reverse"),
    "unbalanced-entry": (422, "Debits and credits differ in some currency"),
    "overflow": (422, "A balance would exceed the ledger's integer range"),
    "batch-aborted": (409, "Not applied: another item of the atomic batch failed"),
    "invalid-expiry": (422, "expires_at must be in the future and only on pending transfers"),
}


class LedgerError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        if code not in LEDGER_ERRORS:
            raise ValueError(f"unknown ledger error code {code!r}")
        super().__init__(detail)
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return LEDGER_ERRORS[self.code][0]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LedgerError) and (self.code, self.detail) == (
            other.code,
            other.detail,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.detail))

    def __repr__(self) -> str:
        return f"LedgerError({self.code!r}, {self.detail!r})"
