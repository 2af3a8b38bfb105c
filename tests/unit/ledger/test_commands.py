"""`ledger.commands.validate`: everything refused before the ledger's state is looked at.

Each refusal has a stable code (the API's problem type); a command that passes here may
still be refused by the engine, but one refused here never reaches the database.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.ledger.commands import (
    ChangeAccount,
    CreateAccount,
    CreateJournalEntry,
    CreateTransfer,
    ExpireTransfer,
    PostTransfer,
    ReverseTransfer,
    VoidTransfer,
    check_amount,
    validate,
)
from strongroom.ledger.currencies import CURRENCY_EXPONENTS, exponent
from strongroom.ledger.errors import LEDGER_ERRORS, LedgerError
from strongroom.ledger.model import AMOUNT_MAX, JOURNAL_LEGS_MAX, METADATA_BYTES_MAX, Leg


def _id() -> str:
    return str(uuid.uuid4())


A, B, C = _id(), _id(), _id()


def _code(command: Any) -> str | None:
    try:
        validate(command)
    except LedgerError as exc:
        return exc.code
    return None


def _transfer(**changes: Any) -> CreateTransfer:
    fields: dict[str, Any] = {
        "id": _id(),
        "debit_account_id": A,
        "credit_account_id": B,
        "amount": 100,
        "currency": "EUR",
    }
    fields.update(changes)
    return CreateTransfer(**fields)


def _metadata_of_bytes(size: int) -> dict[str, str]:
    # {"k":"…"} is 8 bytes of framing around the value.
    metadata = {"k": "x" * (size - 8)}
    assert len(json.dumps(metadata, separators=(",", ":")).encode()) == size
    return metadata


# ---- accounts ----


def test_a_well_formed_account_passes() -> None:
    assert _code(CreateAccount(id=_id(), kind="wallet", currency="EUR")) is None
    assert (
        _code(CreateAccount(id=_id(), kind="merchant", currency="JPY", overdraft_limit=5)) is None
    )


@pytest.mark.parametrize(
    "account_id",
    [
        "",
        "not-a-uuid",
        "9F57F608-15B8-4E36-AD3A-4051C353D5E6",
        "{d512ea15-f631-4a3d-92d5-131159e2cd41}",
        "5a8e785adb2d41d281b70593be59c75f",
    ],
)
def test_account_id_must_be_a_lowercase_hyphenated_uuid(account_id: str) -> None:
    assert _code(CreateAccount(id=account_id, kind="wallet", currency="EUR")) == "validation-failed"


def test_account_id_with_trailing_newline_is_refused() -> None:
    # `re.match`-with-`$` would let "\n" through; ids end up in URLs and SQL keys.
    assert (
        _code(CreateAccount(id=_id() + "\n", kind="wallet", currency="EUR")) == "validation-failed"
    )


def test_clients_cannot_create_system_accounts() -> None:
    # System accounts (clearing, fees, settlement) are the ledger's own, made per currency.
    assert _code(CreateAccount(id=_id(), kind="system", currency="EUR")) == "validation-failed"
    assert _code(CreateAccount(id=_id(), kind="savings", currency="EUR")) == "validation-failed"  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EURO", "", "XAU", "XDR", "ZZZ", "EU"])
def test_account_currency_must_be_a_held_iso_4217_code(currency: str) -> None:
    assert _code(CreateAccount(id=_id(), kind="wallet", currency=currency)) == "unknown-currency"


@pytest.mark.parametrize("limit", [-1, True, 1.0, "5", None, AMOUNT_MAX + 1])
def test_overdraft_limit_must_be_a_non_negative_64_bit_integer(limit: Any) -> None:
    command = CreateAccount(id=_id(), kind="wallet", currency="EUR", overdraft_limit=limit)
    assert _code(command) == "validation-failed"


def test_overdraft_limit_bounds_are_inclusive() -> None:
    for limit in (0, AMOUNT_MAX):
        assert (
            _code(CreateAccount(id=_id(), kind="wallet", currency="EUR", overdraft_limit=limit))
            is None
        )


def test_account_metadata_is_limited_in_utf8_bytes() -> None:
    ok = CreateAccount(
        id=_id(), kind="wallet", currency="EUR", metadata=_metadata_of_bytes(METADATA_BYTES_MAX)
    )
    big = CreateAccount(
        id=_id(), kind="wallet", currency="EUR", metadata=_metadata_of_bytes(METADATA_BYTES_MAX + 1)
    )
    assert _code(ok) is None
    assert _code(big) == "validation-failed"


def test_metadata_size_counts_bytes_not_characters() -> None:
    # 2,000 "é" are 2,000 characters but 4,000 UTF-8 bytes (+ framing): over the limit.
    metadata = {"k": "é" * (METADATA_BYTES_MAX // 2)}
    assert len(json.dumps(metadata, ensure_ascii=False)) < METADATA_BYTES_MAX
    assert (
        _code(CreateAccount(id=_id(), kind="wallet", currency="EUR", metadata=metadata))
        == "validation-failed"
    )


@pytest.mark.parametrize("metadata", [[], "x", None, 1])
def test_metadata_must_be_an_object(metadata: Any) -> None:
    assert (
        _code(CreateAccount(id=_id(), kind="wallet", currency="EUR", metadata=metadata))
        == "validation-failed"
    )
    assert _code(_transfer(metadata=metadata)) == "validation-failed"


def test_set_overdraft_limit_needs_a_valid_limit() -> None:
    assert _code(ChangeAccount(A, "set_overdraft_limit", overdraft_limit=0)) is None
    assert _code(ChangeAccount(A, "set_overdraft_limit", overdraft_limit=AMOUNT_MAX)) is None
    for bad in (None, -1, True, 2.5, AMOUNT_MAX + 1):
        assert (
            _code(ChangeAccount(A, "set_overdraft_limit", overdraft_limit=bad))
            == "validation-failed"
        )


@pytest.mark.parametrize("action", ["freeze", "unfreeze", "close"])
def test_status_changes_need_no_limit(action: Any) -> None:
    assert _code(ChangeAccount(A, action)) is None


# ---- transfers ----


def test_a_well_formed_transfer_passes() -> None:
    assert _code(_transfer()) is None
    assert _code(_transfer(pending=True, expires_at_us=1)) is None
    assert _code(_transfer(amount=AMOUNT_MAX, currency="JPY")) is None


@pytest.mark.parametrize(
    "amount", [0, -1, -AMOUNT_MAX, AMOUNT_MAX + 1, 2**64, True, False, 10.0, 1.5, "10", None]
)
def test_transfer_amount_must_be_a_positive_64_bit_integer(amount: Any) -> None:
    assert _code(_transfer(amount=amount)) == "invalid-amount"


def test_transfer_between_one_account_and_itself_is_refused() -> None:
    assert _code(_transfer(debit_account_id=A, credit_account_id=A)) == "same-account"


def test_only_a_pending_transfer_may_carry_an_expiry() -> None:
    assert _code(_transfer(pending=False, expires_at_us=10**15)) == "invalid-expiry"
    assert _code(_transfer(pending=True, expires_at_us=None)) is None


@pytest.mark.parametrize("currency", ["eur", "XAU", "", "USDT"])
def test_transfer_currency_must_be_known(currency: str) -> None:
    assert _code(_transfer(currency=currency)) == "unknown-currency"


def test_transfer_id_must_be_a_uuid() -> None:
    assert _code(_transfer(id="t-1")) == "validation-failed"


def test_oversized_transfer_metadata_is_refused() -> None:
    assert (
        _code(_transfer(metadata=_metadata_of_bytes(METADATA_BYTES_MAX + 1))) == "validation-failed"
    )


def test_post_amount_is_optional_but_positive_when_given() -> None:
    assert _code(PostTransfer(A)) is None
    assert _code(PostTransfer(A, amount=1)) is None
    for bad in (0, -5, True, 1.0, AMOUNT_MAX + 1):
        assert _code(PostTransfer(A, amount=bad)) == "invalid-amount"


def test_void_and_expire_need_no_stateless_check() -> None:
    assert _code(VoidTransfer(A)) is None
    assert _code(ExpireTransfer(A)) is None


def test_reversal_needs_its_own_uuid_and_a_positive_amount_if_any() -> None:
    assert _code(ReverseTransfer(A, id=_id())) is None
    assert _code(ReverseTransfer(A, id=_id(), amount=7)) is None
    assert _code(ReverseTransfer(A, id="r-1")) == "validation-failed"
    assert _code(ReverseTransfer(A, id=_id(), amount=0)) == "invalid-amount"
    assert _code(ReverseTransfer(A, id=_id(), metadata=[])) == "validation-failed"  # type: ignore[arg-type]


# ---- journal entries ----


def _legs(*spec: tuple[str, str, int, str]) -> tuple[Leg, ...]:
    return tuple(Leg(account, side, amount, currency) for account, side, amount, currency in spec)  # type: ignore[arg-type]


def test_a_balanced_multi_leg_entry_passes() -> None:
    legs = _legs((A, "debit", 300, "EUR"), (B, "credit", 200, "EUR"), (C, "credit", 100, "EUR"))
    assert _code(CreateJournalEntry(_id(), legs)) is None


def test_a_multi_currency_entry_must_balance_in_each_currency() -> None:
    balanced = _legs(
        (A, "debit", 100, "EUR"),
        (B, "credit", 100, "EUR"),
        (A, "debit", 5, "JPY"),
        (C, "credit", 5, "JPY"),
    )
    assert _code(CreateJournalEntry(_id(), balanced)) is None
    # The totals across currencies balance (105 = 105), each currency does not.
    crossed = _legs(
        (A, "debit", 100, "EUR"),
        (B, "credit", 5, "EUR"),
        (A, "debit", 5, "JPY"),
        (C, "credit", 100, "JPY"),
    )
    assert _code(CreateJournalEntry(_id(), crossed)) == "unbalanced-entry"


def test_unbalanced_entry_names_every_unbalanced_currency() -> None:
    legs = _legs((A, "debit", 100, "EUR"), (B, "credit", 100, "JPY"))
    with pytest.raises(LedgerError) as raised:
        validate(CreateJournalEntry(_id(), legs))
    assert raised.value.code == "unbalanced-entry"
    assert "EUR" in raised.value.detail
    assert "JPY" in raised.value.detail


def test_journal_entry_leg_count_is_bounded() -> None:
    def entry(n: int) -> CreateJournalEntry:
        half = n // 2
        legs = [Leg(A, "debit", 1, "EUR") for _ in range(half)]
        legs += [Leg(B, "credit", 1, "EUR") for _ in range(n - half)]
        return CreateJournalEntry(_id(), tuple(legs))

    assert _code(entry(0)) == "validation-failed"
    assert _code(CreateJournalEntry(_id(), _legs((A, "debit", 1, "EUR")))) == "validation-failed"
    assert _code(entry(2)) is None
    assert _code(entry(JOURNAL_LEGS_MAX)) is None
    assert _code(entry(JOURNAL_LEGS_MAX + 2)) == "validation-failed"


@pytest.mark.parametrize("amount", [0, -1, True, 1.0, AMOUNT_MAX + 1])
def test_every_leg_amount_must_be_valid(amount: Any) -> None:
    legs = (Leg(A, "debit", amount, "EUR"), Leg(B, "credit", amount, "EUR"))
    assert _code(CreateJournalEntry(_id(), legs)) == "invalid-amount"


def test_leg_side_and_currency_are_checked() -> None:
    sideways = (Leg(A, "left", 1, "EUR"), Leg(B, "credit", 1, "EUR"))  # type: ignore[arg-type]
    assert _code(CreateJournalEntry(_id(), sideways)) == "validation-failed"
    unknown = (Leg(A, "debit", 1, "ABC"), Leg(B, "credit", 1, "ABC"))
    assert _code(CreateJournalEntry(_id(), unknown)) == "unknown-currency"


def test_journal_entry_id_is_checked() -> None:
    legs = _legs((A, "debit", 1, "EUR"), (B, "credit", 1, "EUR"))
    assert _code(CreateJournalEntry("je-1", legs)) == "validation-failed"


# ---- properties ----

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.decimals(allow_nan=False),
)


@given(anything)
def test_check_amount_accepts_exactly_the_ints_from_1_to_amount_max(value: Any) -> None:
    expected = type(value) is int and 1 <= value <= AMOUNT_MAX
    try:
        check_amount(value)
        accepted = True
    except LedgerError as exc:
        assert exc.code == "invalid-amount"
        accepted = False
    assert accepted == expected


@given(
    amount=anything,
    currency=st.one_of(st.sampled_from(sorted(CURRENCY_EXPONENTS)), st.text(max_size=4)),
    pending=st.booleans(),
    expires=st.one_of(st.none(), st.integers(min_value=0, max_value=2**62)),
    same=st.booleans(),
)
def test_validate_only_ever_raises_a_known_ledger_error(
    amount: Any, currency: str, pending: bool, expires: int | None, same: bool
) -> None:
    command = _transfer(
        amount=amount,
        currency=currency,
        pending=pending,
        expires_at_us=expires,
        credit_account_id=A if same else B,
    )
    code = _code(command)
    assert code is None or code in LEDGER_ERRORS
    valid = (
        type(amount) is int
        and 1 <= amount <= AMOUNT_MAX
        and exponent(currency) is not None
        and not same
        and (pending or expires is None)
    )
    assert (code is None) == valid


@given(
    st.lists(
        st.tuples(
            st.sampled_from([A, B, C]),
            st.sampled_from(["debit", "credit"]),
            st.integers(min_value=1, max_value=10**6),
            st.sampled_from(["EUR", "JPY", "KWD"]),
        ),
        min_size=2,
        max_size=JOURNAL_LEGS_MAX,
    )
)
def test_a_journal_entry_passes_exactly_when_every_currency_balances(
    spec: list[tuple[str, str, int, str]],
) -> None:
    totals: dict[str, int] = {}
    for _, side, amount, currency in spec:
        totals[currency] = totals.get(currency, 0) + (amount if side == "debit" else -amount)
    expected = None if all(t == 0 for t in totals.values()) else "unbalanced-entry"
    assert _code(CreateJournalEntry(_id(), _legs(*spec))) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from([A, B, C]),
            st.integers(min_value=1, max_value=10**6),
            st.sampled_from(["EUR", "JPY"]),
        ),
        min_size=1,
        max_size=JOURNAL_LEGS_MAX // 2,
    )
)
def test_mirrored_legs_always_balance(debits: list[tuple[str, int, str]]) -> None:
    legs = [Leg(a, "debit", n, c) for a, n, c in debits] + [
        Leg(B, "credit", n, c) for _, n, c in debits
    ]
    assert _code(CreateJournalEntry(_id(), tuple(legs))) is None


# ---- errors ----


def test_ledger_error_codes_are_closed_and_map_to_statuses() -> None:
    with pytest.raises(ValueError, match="unknown ledger error code"):
        LedgerError("not-a-code", "x")
    assert LedgerError("insufficient-funds", "x").status == 422
    assert LedgerError("idempotency-conflict", "x").status == 409
    assert LedgerError("account-not-found", "x").status == 404
    assert all(400 <= status < 500 for status, _ in LEDGER_ERRORS.values())


def test_ledger_errors_compare_by_code_and_detail() -> None:
    assert LedgerError("same-account", "d") == LedgerError("same-account", "d")
    assert LedgerError("same-account", "d") != LedgerError("same-account", "e")
    assert len({LedgerError("same-account", "d"), LedgerError("same-account", "d")}) == 1
