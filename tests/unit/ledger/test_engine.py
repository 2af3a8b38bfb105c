"""`ledger.engine.apply`: the pure rules every store runs inside its write transaction.

A tiny in-memory store (`Book`) folds each call's `Effects` back into a `Snapshot`, the
way the SQL store writes them, so sequences of calls can be checked without a database.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter as Multiset
from dataclasses import fields, replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.ledger.commands import (
    ChangeAccount,
    Command,
    CreateAccount,
    CreateJournalEntry,
    CreateTransfer,
    ExpireTransfer,
    PostTransfer,
    ReverseTransfer,
    VoidTransfer,
)
from strongroom.ledger.engine import Effects, Snapshot, apply, needs_exact_balance
from strongroom.ledger.model import (
    AMOUNT_MAX,
    COUNTERS,
    EVENT_TYPES,
    Account,
    Balances,
    Leg,
    Transfer,
)
from strongroom.ledger.ports import Actor, Outcome, Unit

T1 = "00000000-0000-4000-8000-000000000001"
T2 = "00000000-0000-4000-8000-000000000002"
ACTOR = Actor("client", "c-1")
NOW = 1_800_000_000_000_000


def _id() -> str:
    return str(uuid.uuid4())


class Book:
    """An in-memory ledger: a snapshot of everything, updated from each call's effects."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.ids = (f"00000000-0000-4000-9000-{n:012d}" for n in itertools.count())
        self.last_effects = Effects()

    def run(
        self, *commands: Command, tenant: str = T1, atomic: bool = True, now: int = NOW
    ) -> list[Outcome]:
        return self.units([Unit(tenant, tuple(commands), ACTOR, atomic=atomic)], now)[0]

    def one(self, command: Command, *, tenant: str = T1, now: int = NOW) -> Outcome:
        return self.run(command, tenant=tenant, now=now)[0]

    def units(self, units: list[Unit], now: int = NOW) -> list[list[Outcome]]:
        results, effects = apply(self.snapshot, units, now, new_id=lambda: next(self.ids))
        self.last_effects = effects
        s = self.snapshot
        for account in effects.new_accounts:
            s.accounts[(account.tenant_id, account.id)] = account
            if account.code is not None:
                s.system[(account.tenant_id, account.currency, account.code)] = account.id
        for account in effects.changed_accounts:
            current = s.accounts[(account.tenant_id, account.id)]
            s.accounts[(account.tenant_id, account.id)] = replace(
                current, status=account.status, overdraft_limit=account.overdraft_limit
            )
        for (tenant, account_id), delta in effects.balance_deltas.items():
            current = s.accounts[(tenant, account_id)]
            s.accounts[(tenant, account_id)] = replace(
                current, balances=current.balances.merged(delta)
            )
        for transfer in [*effects.new_transfers, *effects.changed_transfers]:
            s.transfers[(transfer.tenant_id, transfer.id)] = transfer
        for entry in effects.new_journal_entries:
            s.journal_entries[(entry.tenant_id, entry.id)] = entry
        return results

    # -- conveniences --
    def account(self, account_id: str, tenant: str = T1) -> Account:
        return self.snapshot.accounts[(tenant, account_id)]

    def system(self, code: str, currency: str = "EUR", tenant: str = T1) -> str:
        return self.snapshot.system[(tenant, currency, code)]

    def wallet(
        self,
        currency: str = "EUR",
        *,
        funds: int = 0,
        limit: int = 0,
        tenant: str = T1,
        kind: Any = "wallet",
    ) -> str:
        account_id = _id()
        outcome = self.one(
            CreateAccount(account_id, kind, currency, overdraft_limit=limit), tenant=tenant
        )
        assert outcome.ok, outcome.error
        if funds:
            self.fund(account_id, funds, currency=currency, tenant=tenant)
        return account_id

    def fund(
        self, account_id: str, amount: int, *, currency: str = "EUR", tenant: str = T1
    ) -> Outcome:
        clearing = self.system("clearing", currency, tenant)
        return self.one(
            CreateTransfer(_id(), clearing, account_id, amount, currency), tenant=tenant
        )

    def balances(self, account_id: str, tenant: str = T1) -> Balances:
        return self.account(account_id, tenant).balances


def _transfer(
    debit: str, credit: str, amount: int, currency: str = "EUR", **kw: Any
) -> CreateTransfer:
    return CreateTransfer(_id(), debit, credit, amount, currency, **kw)


def _code(outcome: Outcome) -> str | None:
    return None if outcome.error is None else outcome.error.code


# ---- accounts ----


def test_first_account_in_a_currency_brings_the_tenants_system_accounts() -> None:
    book = Book()
    wallet = book.wallet("EUR")
    system = {a.code: a for a in book.snapshot.accounts.values() if a.kind == "system"}
    assert set(system) == {"clearing", "fees", "settlement"}
    assert (system["clearing"].normal, system["clearing"].bounded) == ("debit", False)
    for code in ("fees", "settlement"):
        assert (system[code].normal, system[code].bounded, system[code].overdraft_limit) == (
            "credit",
            True,
            0,
        )
    assert {a.currency for a in system.values()} == {"EUR"}
    assert book.account(wallet).normal == "credit" and book.account(wallet).bounded
    assert [e.type for _, e in book.last_effects.events] == ["account.created"] * 4

    book.wallet("EUR")
    assert [e.type for _, e in book.last_effects.events] == ["account.created"]
    assert len(book.snapshot.accounts) == 5
    book.wallet("JPY")
    assert len(book.snapshot.accounts) == 9


def test_system_accounts_are_per_tenant() -> None:
    book = Book()
    book.wallet("EUR", tenant=T1)
    book.wallet("EUR", tenant=T2)
    assert book.system("fees", tenant=T1) != book.system("fees", tenant=T2)


def test_failed_atomic_unit_creates_no_system_accounts() -> None:
    book = Book()
    outcomes = book.run(CreateAccount(_id(), "wallet", "EUR"), ChangeAccount(_id(), "freeze"))
    assert [_code(o) for o in outcomes] == ["batch-aborted", "account-not-found"]
    assert book.snapshot.accounts == {}
    assert book.last_effects.new_accounts == [] and book.last_effects.events == []


def test_account_replay_returns_the_original_and_a_different_body_conflicts() -> None:
    book = Book()
    account_id = _id()
    first = book.one(CreateAccount(account_id, "wallet", "EUR", metadata={"a": 1}))
    again = book.one(CreateAccount(account_id, "wallet", "EUR", metadata={"a": 1}))
    assert again.replayed and again.value == first.value
    assert book.last_effects.events == []
    assert (
        _code(book.one(CreateAccount(account_id, "merchant", "EUR", metadata={"a": 1})))
        == "idempotency-conflict"
    )
    assert (
        _code(book.one(CreateAccount(account_id, "wallet", "JPY", metadata={"a": 1})))
        == "idempotency-conflict"
    )
    assert _code(book.one(CreateAccount(account_id, "wallet", "EUR"))) == "idempotency-conflict"


def test_account_replay_with_a_different_overdraft_limit_conflicts() -> None:
    # Same id, different body: the contract says 409. Returning the original (with its
    # limit 0) as a successful replay tells the client it has a 1,000 overdraft it lacks.
    book = Book()
    account_id = _id()
    assert book.one(CreateAccount(account_id, "wallet", "EUR")).ok
    outcome = book.one(CreateAccount(account_id, "wallet", "EUR", overdraft_limit=1000))
    assert _code(outcome) == "idempotency-conflict"


def test_account_replay_after_a_runtime_limit_change_still_replays() -> None:
    # The retry carries the body first sent; the limit changed since by a legitimate
    # set_overdraft_limit. Same body, so the original must come back, not a 409.
    book = Book()
    account_id = _id()
    create = CreateAccount(account_id, "wallet", "EUR", overdraft_limit=100)
    assert book.one(create).ok
    assert book.one(ChangeAccount(account_id, "set_overdraft_limit", overdraft_limit=500)).ok
    again = book.one(create)
    assert again.ok and again.replayed, again.error
    assert book.last_effects.events == []


def test_same_account_id_in_another_tenant_is_a_different_account() -> None:
    book = Book()
    account_id = _id()
    assert book.one(CreateAccount(account_id, "wallet", "EUR"), tenant=T1).ok
    outcome = book.one(CreateAccount(account_id, "wallet", "JPY"), tenant=T2)
    assert outcome.ok and not outcome.replayed
    assert book.account(account_id, T1).currency == "EUR"
    assert book.account(account_id, T2).currency == "JPY"


def test_foreign_tenant_accounts_are_not_found() -> None:
    book = Book()
    mine = book.wallet(funds=100, tenant=T1)
    theirs = book.wallet(tenant=T2)
    assert _code(book.one(_transfer(mine, theirs, 1), tenant=T1)) == "account-not-found"
    assert _code(book.one(_transfer(theirs, mine, 1), tenant=T2)) == "account-not-found"
    assert _code(book.one(ChangeAccount(mine, "freeze"), tenant=T2)) == "account-not-found"


def test_system_accounts_cannot_be_changed() -> None:
    book = Book()
    book.wallet()
    for action in ("freeze", "close"):
        assert _code(book.one(ChangeAccount(book.system("fees"), action))) == "account-immutable"  # type: ignore[arg-type]
    change = ChangeAccount(book.system("clearing"), "set_overdraft_limit", overdraft_limit=5)
    assert _code(book.one(change)) == "account-immutable"


def test_close_needs_a_zero_balance_and_no_holds() -> None:
    book = Book()
    wallet = book.wallet(funds=10)
    other = book.wallet()
    assert _code(book.one(ChangeAccount(wallet, "close"))) == "account-not-empty"
    hold = _transfer(wallet, other, 10, pending=True)
    assert book.one(hold).ok
    assert _code(book.one(ChangeAccount(other, "close"))) == "account-not-empty"  # incoming hold
    assert book.one(VoidTransfer(hold.id)).ok
    assert book.one(_transfer(wallet, other, 10)).ok
    assert book.one(ChangeAccount(wallet, "close")).ok
    assert book.account(wallet).status == "closed"
    assert _code(book.one(_transfer(other, wallet, 1))) == "account-closed"
    assert _code(book.one(ChangeAccount(wallet, "unfreeze"))) == "account-closed"


def test_frozen_accounts_neither_pay_nor_receive_until_unfrozen() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet(funds=100)
    assert book.one(ChangeAccount(a, "freeze")).ok
    assert _code(book.one(_transfer(a, b, 1))) == "account-frozen"
    assert _code(book.one(_transfer(b, a, 1))) == "account-frozen"
    assert book.one(ChangeAccount(a, "unfreeze")).ok
    assert book.one(_transfer(a, b, 1)).ok


def test_a_frozen_accounts_hold_can_be_voided_but_not_posted() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    first, second = _transfer(a, b, 30, pending=True), _transfer(a, b, 20, pending=True)
    assert book.run(first, second, ChangeAccount(a, "freeze"))[2].ok
    assert _code(book.one(PostTransfer(first.id))) == "account-frozen"
    assert book.one(VoidTransfer(second.id)).ok
    assert book.balances(a).debits_pending == 30


def test_lowering_an_overdraft_below_what_is_drawn_is_refused() -> None:
    book = Book()
    a, b = book.wallet(limit=100), book.wallet()
    assert book.one(_transfer(a, b, 60)).ok
    assert (
        _code(book.one(ChangeAccount(a, "set_overdraft_limit", overdraft_limit=59)))
        == "insufficient-funds"
    )
    assert book.one(ChangeAccount(a, "set_overdraft_limit", overdraft_limit=60)).ok
    assert book.account(a).overdraft_limit == 60
    assert _code(book.one(_transfer(a, b, 1))) == "insufficient-funds"


# ---- transfers and balances ----


def test_money_enters_by_debiting_the_unbounded_clearing_account() -> None:
    book = Book()
    wallet = book.wallet(funds=500)
    clearing = book.account(book.system("clearing"))
    assert clearing.balances == Balances(debits_posted=500)
    assert clearing.balances.balance("debit") == 500
    assert book.balances(wallet) == Balances(credits_posted=500)
    # ...and leaves by crediting it, however far.
    assert book.one(_transfer(wallet, clearing.id, 500)).ok
    assert book.one(_transfer(book.wallet(funds=1), clearing.id, 1)).ok


def test_a_wallet_cannot_spend_more_than_it_holds() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    assert _code(book.one(_transfer(a, b, 101))) == "insufficient-funds"
    assert book.one(_transfer(a, b, 100)).ok  # exactly all of it
    assert book.balances(a).balance("credit") == 0
    assert _code(book.one(_transfer(a, b, 1))) == "insufficient-funds"


def test_overdraft_limit_extends_spending_exactly_by_the_limit() -> None:
    book = Book()
    a, b = book.wallet(funds=100, limit=50), book.wallet()
    assert _code(book.one(_transfer(a, b, 151))) == "insufficient-funds"
    assert book.one(_transfer(a, b, 150)).ok
    assert book.balances(a).balance("credit") == -50


def test_holds_count_against_the_available_balance() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    assert book.one(_transfer(a, b, 70, pending=True)).ok
    assert book.balances(a).available("credit") == 30
    assert _code(book.one(_transfer(a, b, 31))) == "insufficient-funds"
    assert _code(book.one(_transfer(a, b, 31, pending=True))) == "insufficient-funds"
    assert book.one(_transfer(a, b, 30)).ok


def test_system_fees_account_is_bounded() -> None:
    book = Book()
    payer = book.wallet(funds=10)
    fees = book.system("fees")
    assert book.one(_transfer(payer, fees, 10)).ok
    assert _code(book.one(_transfer(fees, payer, 11))) == "insufficient-funds"
    assert book.one(_transfer(fees, payer, 10)).ok


def test_currencies_must_match_on_both_accounts() -> None:
    book = Book()
    eur, jpy = book.wallet("EUR", funds=100), book.wallet("JPY", funds=100)
    assert _code(book.one(_transfer(eur, jpy, 1, "EUR"))) == "currency-mismatch"
    assert _code(book.one(_transfer(eur, jpy, 1, "JPY"))) == "currency-mismatch"
    assert _code(book.one(_transfer(eur, book.wallet("EUR"), 1, "JPY"))) == "currency-mismatch"


def test_stateless_checks_run_inside_apply_too() -> None:
    # A store must not rely on its caller having validated: apply refuses bad commands.
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    assert _code(book.one(_transfer(a, b, 0))) == "invalid-amount"
    assert _code(book.one(_transfer(a, a, 1))) == "same-account"
    assert _code(book.one(CreateAccount(_id(), "system", "EUR"))) == "validation-failed"
    assert book.balances(a).credits_posted == 100


def test_counters_never_pass_amount_max() -> None:
    book = Book()
    a = book.wallet(funds=AMOUNT_MAX)
    b = book.wallet()
    assert _code(book.fund(a, 1)) == "overflow"
    assert book.balances(a).credits_posted == AMOUNT_MAX
    # Clearing was debited AMOUNT_MAX: it overflows too, unbounded or not.
    assert _code(book.fund(b, 1)) == "overflow"


def test_transfer_replay_returns_the_current_transfer_and_a_different_body_conflicts() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    command = _transfer(a, b, 40, metadata={"order": 7})
    assert book.one(command).ok
    again = book.one(command)
    assert again.ok and again.replayed
    assert book.last_effects.entries == [] and book.last_effects.events == []
    assert book.balances(a).debits_posted == 40
    for changed in (
        replace(command, amount=41),
        replace(command, metadata={}),
        replace(command, credit_account_id=book.wallet()),
        replace(command, pending=True),
    ):
        assert _code(book.one(changed)) == "idempotency-conflict"
    assert book.balances(a).debits_posted == 40


def test_replay_wins_over_checks_that_would_now_fail() -> None:
    # The original was accepted; a retry after the world changed must still get it back.
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 100, pending=True, expires_at_us=NOW + 10)
    assert book.one(hold).ok
    assert book.one(ChangeAccount(a, "freeze")).ok
    again = book.one(hold, now=NOW + 20)
    assert again.ok and again.replayed


def test_replay_inside_the_same_unit_applies_once() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    command = _transfer(a, b, 60)
    first, second = book.run(command, command)
    assert first.ok and not first.replayed
    assert second.ok and second.replayed
    assert book.balances(a).debits_posted == 60


def test_transfer_ids_are_per_tenant() -> None:
    book = Book()
    a1, b1 = book.wallet(funds=10, tenant=T1), book.wallet(tenant=T1)
    a2, b2 = book.wallet(funds=10, tenant=T2), book.wallet(tenant=T2)
    transfer_id = _id()
    assert book.one(CreateTransfer(transfer_id, a1, b1, 5, "EUR"), tenant=T1).ok
    theirs = book.one(CreateTransfer(transfer_id, a2, b2, 5, "EUR"), tenant=T2)
    assert theirs.ok and not theirs.replayed
    assert _code(book.one(PostTransfer(transfer_id), tenant=T2)) == "transfer-not-pending"
    assert _code(book.one(VoidTransfer(_id()), tenant=T2)) == "transfer-not-found"


# ---- two-phase ----


def test_full_post_moves_the_hold_to_posted() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 70, pending=True)
    assert book.one(hold).ok
    assert book.balances(a) == Balances(credits_posted=100, debits_pending=70)
    assert book.balances(b) == Balances(credits_pending=70)
    posted = book.one(PostTransfer(hold.id))
    assert isinstance(posted.value, Transfer)
    assert (posted.value.status, posted.value.posted_amount) == ("posted", 70)
    assert book.balances(a) == Balances(credits_posted=100, debits_posted=70)
    assert book.balances(b) == Balances(credits_posted=70)


def test_partial_post_releases_the_rest() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 70, pending=True)
    assert book.one(hold).ok
    assert _code(book.one(PostTransfer(hold.id, amount=71))) == "exceeds-hold"
    posted = book.one(PostTransfer(hold.id, amount=25))
    assert isinstance(posted.value, Transfer) and posted.value.posted_amount == 25
    assert book.balances(a) == Balances(credits_posted=100, debits_posted=25)
    assert book.balances(b) == Balances(credits_posted=25)
    assert book.balances(a).available("credit") == 75


def test_a_hold_resolves_at_most_once() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 10, pending=True)
    assert book.one(hold).ok
    assert book.one(VoidTransfer(hold.id)).ok
    for again in (PostTransfer(hold.id), VoidTransfer(hold.id), ExpireTransfer(hold.id)):
        assert _code(book.one(again)) == "transfer-not-pending"
    assert book.balances(a) == Balances(credits_posted=100)
    assert _code(book.one(PostTransfer(_transfer(a, b, 1).id))) == "transfer-not-found"


def test_posting_and_voiding_a_hold_in_one_unit_fails_whole() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 10, pending=True)
    assert book.one(hold).ok
    outcomes = book.run(PostTransfer(hold.id), VoidTransfer(hold.id))
    assert [_code(o) for o in outcomes] == ["batch-aborted", "transfer-not-pending"]
    assert book.snapshot.transfers[(T1, hold.id)].status == "pending"


def test_expiry_voids_only_after_expires_at() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 10, pending=True, expires_at_us=NOW + 1_000)
    assert book.one(hold).ok
    assert _code(book.one(ExpireTransfer(hold.id), now=NOW + 999)) == "transfer-not-pending"
    assert book.one(PostTransfer(hold.id, amount=1), now=NOW + 999).ok is True
    hold2 = _transfer(a, b, 10, pending=True, expires_at_us=NOW + 1_000)
    assert book.one(hold2).ok
    assert _code(book.one(PostTransfer(hold2.id), now=NOW + 1_000)) == "hold-expired"
    expired = book.one(ExpireTransfer(hold2.id), now=NOW + 1_000)
    assert isinstance(expired.value, Transfer)
    assert (expired.value.status, expired.value.posted_amount) == ("expired", 0)
    assert book.balances(a) == Balances(credits_posted=100, debits_posted=1)


def test_expiry_must_be_in_the_future() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    assert _code(book.one(_transfer(a, b, 1, pending=True, expires_at_us=NOW))) == "invalid-expiry"
    assert (
        _code(book.one(_transfer(a, b, 1, pending=True, expires_at_us=NOW - 1))) == "invalid-expiry"
    )
    assert book.one(_transfer(a, b, 1, pending=True, expires_at_us=NOW + 1)).ok


def test_a_hold_without_expiry_never_expires() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 10, pending=True)
    assert book.one(hold).ok
    assert _code(book.one(ExpireTransfer(hold.id), now=NOW + 10**12)) == "transfer-not-pending"
    assert book.one(PostTransfer(hold.id), now=NOW + 10**12).ok


# ---- reversal ----


def test_reversal_is_a_compensating_transfer() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    original = _transfer(a, b, 60)
    assert book.one(original).ok
    reversal_id = _id()
    outcome = book.one(ReverseTransfer(original.id, reversal_id, amount=20))
    assert isinstance(outcome.value, Transfer)
    reversal = outcome.value
    assert (reversal.debit_account_id, reversal.credit_account_id, reversal.amount) == (b, a, 20)
    assert reversal.reverses_id == original.id and reversal.status == "posted"
    assert book.snapshot.transfers[(T1, original.id)].reversed_amount == 20
    assert {e.type for _, e in book.last_effects.events} == {
        "transfer.created",
        "transfer.reversed",
    }
    assert _code(book.one(ReverseTransfer(original.id, _id(), amount=41))) == "exceeds-reversible"
    rest = book.one(ReverseTransfer(original.id, _id()))
    assert isinstance(rest.value, Transfer) and rest.value.amount == 40
    assert _code(book.one(ReverseTransfer(original.id, _id()))) == "exceeds-reversible"
    assert book.balances(a).balance("credit") == 100
    assert book.balances(b).balance("credit") == 0


def test_reversal_replays_by_its_own_id() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    original = _transfer(a, b, 60)
    assert book.one(original).ok
    command = ReverseTransfer(original.id, _id(), amount=10)
    assert book.one(command).ok
    again = book.one(command)
    assert again.ok and again.replayed
    assert book.snapshot.transfers[(T1, original.id)].reversed_amount == 10
    assert _code(book.one(replace(command, amount=11))) == "idempotency-conflict"
    assert _code(book.one(CreateTransfer(command.id, b, a, 10, "EUR"))) == "idempotency-conflict"


def test_reversal_needs_a_posted_original_that_is_not_itself_a_reversal() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 10, pending=True)
    assert book.one(hold).ok
    assert _code(book.one(ReverseTransfer(hold.id, _id()))) == "not-reversible"
    assert book.one(VoidTransfer(hold.id)).ok
    assert _code(book.one(ReverseTransfer(hold.id, _id()))) == "not-reversible"
    original = _transfer(a, b, 10)
    reversal = ReverseTransfer(original.id, _id())
    assert book.run(original, reversal)[1].ok
    assert _code(book.one(ReverseTransfer(reversal.id, _id()))) == "not-reversible"
    assert _code(book.one(ReverseTransfer(_id(), _id()))) == "transfer-not-found"


def test_reversal_of_a_partially_posted_hold_is_bounded_by_what_was_posted() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    hold = _transfer(a, b, 50, pending=True)
    assert book.run(hold, PostTransfer(hold.id, amount=30))[1].ok
    assert _code(book.one(ReverseTransfer(hold.id, _id(), amount=31))) == "exceeds-reversible"
    assert book.one(ReverseTransfer(hold.id, _id(), amount=30)).ok


def test_reversal_needs_the_money_back() -> None:
    book = Book()
    a, b, c = book.wallet(funds=100), book.wallet(), book.wallet()
    original = _transfer(a, b, 60)
    assert book.run(original, _transfer(b, c, 50))[1].ok
    assert _code(book.one(ReverseTransfer(original.id, _id()))) == "insufficient-funds"
    assert book.snapshot.transfers[(T1, original.id)].reversed_amount == 0
    assert book.one(ReverseTransfer(original.id, _id(), amount=10)).ok


# ---- journal entries ----


def test_journal_entry_posts_every_leg() -> None:
    book = Book()
    payer, payee = book.wallet(funds=1000), book.wallet()
    fees = book.system("fees")
    legs = (
        Leg(payer, "debit", 110, "EUR"),
        Leg(payee, "credit", 100, "EUR"),
        Leg(fees, "credit", 10, "EUR"),
    )
    outcome = book.one(CreateJournalEntry(_id(), legs))
    assert outcome.ok
    assert book.balances(payer).debits_posted == 110
    assert book.balances(payee).credits_posted == 100
    assert book.balances(fees).credits_posted == 10
    assert [e.type for _, e in book.last_effects.events] == ["journal_entry.created"]
    assert {e.journal_entry_id for e in book.last_effects.entries} == {outcome.value.id}  # type: ignore[union-attr]


def test_multi_currency_journal_entry_is_all_or_nothing() -> None:
    book = Book()
    eur_a, eur_b = book.wallet("EUR", funds=100), book.wallet("EUR")
    jpy_a, jpy_b = book.wallet("JPY", funds=5), book.wallet("JPY")
    legs = (
        Leg(eur_a, "debit", 100, "EUR"),
        Leg(eur_b, "credit", 100, "EUR"),
        Leg(jpy_a, "debit", 6, "JPY"),  # one more than it has
        Leg(jpy_b, "credit", 6, "JPY"),
    )
    assert _code(book.one(CreateJournalEntry(_id(), legs))) == "insufficient-funds"
    assert book.balances(eur_b) == Balances()
    fixed = (*legs[:2], Leg(jpy_a, "debit", 5, "JPY"), Leg(jpy_b, "credit", 5, "JPY"))
    assert book.one(CreateJournalEntry(_id(), fixed)).ok
    assert book.balances(jpy_b).credits_posted == 5


def test_journal_leg_currency_must_match_its_account() -> None:
    book = Book()
    eur, jpy = book.wallet("EUR", funds=100), book.wallet("JPY")
    legs = (Leg(eur, "debit", 1, "JPY"), Leg(jpy, "credit", 1, "JPY"))
    assert _code(book.one(CreateJournalEntry(_id(), legs))) == "currency-mismatch"


def test_journal_entry_replay_and_conflict() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    command = CreateJournalEntry(_id(), (Leg(a, "debit", 5, "EUR"), Leg(b, "credit", 5, "EUR")))
    assert book.one(command).ok
    again = book.one(command)
    assert again.ok and again.replayed and book.last_effects.entries == []
    other = replace(command, legs=(Leg(a, "debit", 6, "EUR"), Leg(b, "credit", 6, "EUR")))
    assert _code(book.one(other)) == "idempotency-conflict"
    assert book.balances(b).credits_posted == 5


# ---- units ----


def test_later_commands_in_a_unit_see_earlier_ones() -> None:
    book = Book()
    a, b = book.wallet(), book.wallet()
    clearing = book.system("clearing")
    outcomes = book.run(_transfer(clearing, a, 50), _transfer(a, b, 50))
    assert all(o.ok for o in outcomes)


def test_atomic_unit_failure_aborts_every_item() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    outcomes = book.run(_transfer(a, b, 10), _transfer(a, b, 1000), _transfer(a, b, 10))
    assert [_code(o) for o in outcomes] == ["batch-aborted", "insufficient-funds", "batch-aborted"]
    assert book.last_effects.entries == [] and book.last_effects.events == []
    assert book.last_effects.new_transfers == []
    assert book.balances(a) == Balances(credits_posted=100)


def test_non_atomic_unit_applies_each_item_that_succeeds() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    outcomes = book.run(_transfer(a, b, 60), _transfer(a, b, 60), _transfer(a, b, 40), atomic=False)
    assert [_code(o) for o in outcomes] == [None, "insufficient-funds", None]
    assert book.balances(a).debits_posted == 100
    assert len(book.last_effects.new_transfers) == 2


def test_units_in_one_call_are_independent() -> None:
    book = Book()
    a, b = book.wallet(funds=100), book.wallet()
    good = Unit(T1, (_transfer(a, b, 30),), ACTOR)
    bad = Unit(T1, (_transfer(a, b, 30), _transfer(a, b, 1000)), ACTOR)
    later = Unit(T1, (_transfer(a, b, 70),), ACTOR)
    results = book.units([good, bad, later])
    assert [[_code(o) for o in r] for r in results] == [
        [None],
        ["batch-aborted", "insufficient-funds"],
        [None],
    ]
    assert {index for index, _ in book.last_effects.events} == {0, 2}
    assert book.balances(a).debits_posted == 100


def test_events_carry_the_unit_index_and_tenant() -> None:
    book = Book()
    a1, b1 = book.wallet(funds=10, tenant=T1), book.wallet(tenant=T1)
    a2, b2 = book.wallet(funds=10, tenant=T2), book.wallet(tenant=T2)
    book.units([Unit(T1, (_transfer(a1, b1, 1),), ACTOR), Unit(T2, (_transfer(a2, b2, 1),), ACTOR)])
    assert [(i, e.tenant_id, e.type) for i, e in book.last_effects.events] == [
        (0, T1, "transfer.created"),
        (1, T2, "transfer.created"),
    ]


def test_needs_exact_balance_only_where_money_can_run_out() -> None:
    book = Book()
    wallet = book.account(book.wallet())
    clearing = book.account(book.system("clearing"))
    fees = book.account(book.system("fees"))
    assert needs_exact_balance(wallet, "debit") and not needs_exact_balance(wallet, "credit")
    assert needs_exact_balance(fees, "debit") and not needs_exact_balance(fees, "credit")
    assert not needs_exact_balance(clearing, "debit") and not needs_exact_balance(
        clearing, "credit"
    )


# ---- properties over random command sequences ----

_MAX_STEPS = 40


@st.composite
def _scripts(draw: st.DrawFn) -> list[tuple[str, int, int, int, int]]:
    ops = st.sampled_from(
        ["fund", "move", "hold", "post", "void", "reverse", "journal", "freeze", "limit"]
    )
    return draw(
        st.lists(
            st.tuples(
                ops, st.integers(0, 5), st.integers(0, 5), st.integers(1, 300), st.integers(0, 3)
            ),
            max_size=_MAX_STEPS,
        )
    )


@settings(max_examples=60, deadline=None)
@given(_scripts(), st.booleans())
def test_random_sequences_keep_the_books_balanced(
    script: list[tuple[str, int, int, int, int]], atomic: bool
) -> None:
    book = Book()
    wallets = [book.wallet(limit=50 if n == 0 else 0) for n in range(6)]
    clearing, fees = book.system("clearing"), book.system("fees")
    transfers: list[str] = []
    entries_by_account: dict[str, Balances] = {}
    for account in book.snapshot.accounts.values():
        entries_by_account[account.id] = Balances()
    for op, i, j, amount, extra in script:
        a, b = wallets[i], wallets[j if j != i else (i + 1) % 6]
        commands: list[Command]
        match op:
            case "fund":
                commands = [_transfer(clearing, a, amount * 3)]
            case "move":
                commands = [_transfer(a, b, amount), _transfer(b, fees, max(1, amount // 10))]
            case "hold":
                commands = [_transfer(a, b, amount, pending=True)]
            case "post":
                commands = (
                    [PostTransfer(transfers[i % len(transfers)], amount=amount)]
                    if transfers
                    else []
                )
            case "void":
                commands = [VoidTransfer(transfers[i % len(transfers)])] if transfers else []
            case "reverse":
                commands = (
                    [ReverseTransfer(transfers[i % len(transfers)], _id(), amount=amount)]
                    if transfers
                    else []
                )
            case "journal":
                commands = [
                    CreateJournalEntry(
                        _id(),
                        (Leg(a, "debit", amount + extra, "EUR"), Leg(b, "credit", amount, "EUR"))
                        + ((Leg(fees, "credit", extra, "EUR"),) if extra else ()),
                    )
                ]
                if not extra:
                    commands = [
                        CreateJournalEntry(
                            _id(), (Leg(a, "debit", amount, "EUR"), Leg(b, "credit", amount, "EUR"))
                        )
                    ]
            case "freeze":
                commands = [ChangeAccount(a, "freeze" if extra < 2 else "unfreeze")]
            case _:
                commands = [ChangeAccount(a, "set_overdraft_limit", overdraft_limit=extra * 40)]
        if not commands:
            continue
        before = {key: account.balances for key, account in book.snapshot.accounts.items()}
        outcomes = book.run(*commands, atomic=atomic)
        effects = book.last_effects
        for command, outcome in zip(commands, outcomes, strict=True):
            if outcome.ok and isinstance(command, CreateTransfer):
                transfers.append(command.id)
        # Effects are consistent with outcomes: nothing from failures, an event per success.
        succeeded = [o for o in outcomes if o.ok and not o.replayed]
        assert bool(effects.events) == bool(succeeded)
        assert {e.type for _, e in effects.events} <= EVENT_TYPES
        if not succeeded:
            assert effects.entries == [] and effects.balance_deltas == {}
        # The deltas written are exactly the sums of the entries written.
        sums: dict[str, Balances] = {}
        for entry in effects.entries:
            sums[entry.account_id] = sums.get(entry.account_id, Balances()).plus(
                entry.counter, entry.delta
            )
            entries_by_account[entry.account_id] = entries_by_account[entry.account_id].plus(
                entry.counter, entry.delta
            )
        assert sums == {aid: delta for (_, aid), delta in effects.balance_deltas.items()}
        # Double entry: every call moves as much to debits as to credits.
        deltas = list(effects.balance_deltas.values())
        assert sum(d.debits_posted for d in deltas) == sum(d.credits_posted for d in deltas)
        assert sum(d.debits_pending for d in deltas) == sum(d.credits_pending for d in deltas)
        # Counters are never negative, bounded accounts stay within their bound, and an
        # account's counters are the sums of all its entries so far.
        for key, account in book.snapshot.accounts.items():
            b = account.balances
            assert min(getattr(b, c) for c in COUNTERS) >= 0
            if account.bounded and account.normal == "credit":
                assert (
                    b.debits_posted + b.debits_pending <= b.credits_posted + account.overdraft_limit
                )
            assert b == entries_by_account[account.id]
            if key not in effects.balance_deltas:
                assert b == before[key]
        totals = Multiset[str]()
        for account in book.snapshot.accounts.values():
            totals["d"] += account.balances.debits_posted
            totals["c"] += account.balances.credits_posted
        assert totals["d"] == totals["c"]


def test_account_moved_is_dataclass_replace_of_balances_and_room() -> None:
    """``Account.moved`` spells ``replace`` out for speed: it must keep every other field."""
    account = Account(
        id="a",
        tenant_id="t",
        currency="EUR",
        kind="system",
        normal="debit",
        bounded=False,
        overdraft_limit=7,
        status="frozen",
        metadata={"k": 1},
        created_at_us=5,
        code="fees",
        balances=Balances(1, 2, 3, 4),
        initial_overdraft_limit=6,
        room=Balances(9, 9, 9, 9),
    )
    new, room = Balances(5, 6, 7, 8), Balances(1, 1, 1, 1)
    expected = replace(account, balances=new, room=room)
    moved = account.moved(new, room)
    for f in fields(Account):
        assert getattr(moved, f.name) == getattr(expected, f.name), f.name
