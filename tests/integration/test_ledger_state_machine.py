"""Random operation sequences against `SqlLedgerStore`, checked against a model after every step.

The model is this file's own reading of the ledger's rules (ADR 0006, `ledger/engine.py`'s
docstrings): for each command it predicts the outcome (the object, a replay, or the error
code) and the counters. After every step the database must agree with it, and must keep
the invariants no model can get wrong: per tenant and currency debits equal credits
(posted and pending), each account's counters are the sums of its entries, no counter is
negative, no bounded account is past its bound, failed and replayed commands write
nothing, and every change wrote its audit entry and outbox event.

Runs on SQLite (a temp file) and PostgreSQL (a throwaway database). Each hypothesis
example uses two fresh tenants, so examples share one database without seeing each other.
"""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections import Counter as Multiset
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.engine import Engine

from strongroom.adapters.db.auth_repositories import SqlTenantRepository
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.ledger_store import SqlLedgerStore
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import (
    audit_entries,
    ledger_entries,
    ledger_journal_entries,
    ledger_transfers,
    outbox_events,
)
from strongroom.config import Settings
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
    validate,
)
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import (
    AMOUNT_MAX,
    COUNTERS,
    SYSTEM_ACCOUNT_CODES,
    Account,
    Balances,
    Counter,
    JournalEntry,
    Leg,
    Side,
    Transfer,
)
from strongroom.ledger.ports import Actor, EntryFilter, Outcome, Unit

CURRENCIES = ("EUR", "JPY")
BASE_US = 1_900_000_000_000_000
SECOND_US = 1_000_000
ACTOR = Actor("client", "state-machine")
Key = tuple[str, str]


# ---- the model -------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Model:
    accounts: dict[Key, Account] = field(default_factory=dict)
    transfers: dict[Key, Transfer] = field(default_factory=dict)
    journals: dict[Key, JournalEntry] = field(default_factory=dict)
    system: dict[tuple[str, str, str], str] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(
            dict(self.accounts), dict(self.transfers), dict(self.journals), dict(self.system)
        )


Event = tuple[str, str, str]  # (tenant, type, first subject id)


class Step:
    """One command applied to a model (a copy: a refusal just drops it)."""

    def __init__(self, model: Model, tenant: str, now: int) -> None:
        self.m = model
        self.t = tenant
        self.now = now
        self.events: list[Event] = []

    def run(self, command: Command) -> tuple[str, Any]:
        try:
            validate(command)
        except LedgerError as exc:
            raise Refused(exc.code) from None
        match command:
            case CreateAccount():
                return self.create_account(command)
            case ChangeAccount():
                return self.change_account(command)
            case CreateTransfer():
                return self.create_transfer(command)
            case PostTransfer():
                return self.resolve(command.transfer_id, command.amount, "posted")
            case VoidTransfer():
                return self.resolve(command.transfer_id, 0, "voided")
            case ExpireTransfer():
                return self.resolve(command.transfer_id, 0, "expired")
            case ReverseTransfer():
                return self.reverse(command)
            case CreateJournalEntry():
                return self.journal(command)
        raise AssertionError(command)

    def account(self, account_id: str) -> Account:
        found = self.m.accounts.get((self.t, account_id))
        if found is None:
            raise Refused("account-not-found")
        return found

    def move(self, account_id: str, counter: Counter, delta: int) -> None:
        account = self.account(account_id)
        # A system account's balance is spread over shard rows, each holding at most its
        # share of the integer range (ADR 0006): a little less than AMOUNT_MAX in all.
        limit = capacity(MACHINE_SHARDS) if account.kind == "system" else AMOUNT_MAX
        if getattr(account.balances, counter) + delta > limit:
            raise Refused("overflow")
        self.m.accounts[(self.t, account_id)] = replace(
            account, balances=account.balances.plus(counter, delta)
        )

    def within_bound(self, account_id: str, sides: tuple[Side, ...] = ()) -> None:
        a = self.account(account_id)
        if not a.bounded:
            return
        b = a.balances
        if a.normal == "credit":
            over = b.debits_posted + b.debits_pending > b.credits_posted + a.overdraft_limit
            checked = not sides or "debit" in sides
        else:
            over = b.credits_posted + b.credits_pending > b.debits_posted + a.overdraft_limit
            checked = not sides or "credit" in sides
        if checked and over:
            raise Refused("insufficient-funds")

    @staticmethod
    def usable(account: Account, currency: str) -> None:
        if account.status in ("frozen", "closed"):
            raise Refused(f"account-{account.status}")
        if account.currency != currency:
            raise Refused("currency-mismatch")

    def create_account(self, c: CreateAccount) -> tuple[str, Any]:
        existing = self.m.accounts.get((self.t, c.id))
        if existing is not None:
            if (existing.kind, existing.currency, existing.metadata) != (
                c.kind,
                c.currency,
                c.metadata,
            ):
                raise Refused("idempotency-conflict")
            return "replay", existing
        for code in SYSTEM_ACCOUNT_CODES:
            if (self.t, c.currency, code) in self.m.system:
                continue
            placeholder = f"?{self.t}:{c.currency}:{code}"
            self.m.system[(self.t, c.currency, code)] = placeholder
            self.m.accounts[(self.t, placeholder)] = Account(
                id=placeholder,
                tenant_id=self.t,
                currency=c.currency,
                kind="system",
                normal="debit" if code == "clearing" else "credit",
                bounded=code != "clearing",
                overdraft_limit=0,
                status="active",
                metadata={},
                created_at_us=self.now,
                code=code,
            )
            self.events.append((self.t, "account.created", placeholder))
        account = Account(
            id=c.id,
            tenant_id=self.t,
            currency=c.currency,
            kind=c.kind,
            normal="credit",
            bounded=True,
            overdraft_limit=c.overdraft_limit,
            status="active",
            metadata=c.metadata,
            created_at_us=self.now,
        )
        self.m.accounts[(self.t, c.id)] = account
        self.events.append((self.t, "account.created", c.id))
        return "ok", account

    def change_account(self, c: ChangeAccount) -> tuple[str, Any]:
        a = self.account(c.account_id)
        if a.kind == "system":
            raise Refused("account-immutable")
        if a.status == "closed":
            raise Refused("account-closed")
        b = a.balances
        if c.action == "close" and (
            b.credits_posted != b.debits_posted or b.debits_pending or b.credits_pending
        ):
            raise Refused("account-not-empty")
        status = {"freeze": "frozen", "unfreeze": "active", "close": "closed"}.get(
            c.action, a.status
        )
        limit = c.overdraft_limit if c.action == "set_overdraft_limit" else a.overdraft_limit
        assert limit is not None
        self.m.accounts[(self.t, a.id)] = replace(a, status=status, overdraft_limit=limit)  # type: ignore[arg-type]
        self.within_bound(a.id)
        kind = {"freeze": "frozen", "unfreeze": "unfrozen", "close": "closed"}.get(
            c.action, "limit_changed"
        )
        self.events.append((self.t, f"account.{kind}", a.id))
        return "ok", self.m.accounts[(self.t, a.id)]

    def new_transfer(self, c: CreateTransfer, reverses: str | None = None) -> Transfer:
        if c.expires_at_us is not None and c.expires_at_us <= self.now:
            raise Refused("invalid-expiry")
        debit, credit = self.account(c.debit_account_id), self.account(c.credit_account_id)
        self.usable(debit, c.currency)
        self.usable(credit, c.currency)
        kind = "pending" if c.pending else "posted"
        self.move(debit.id, f"debits_{kind}", c.amount)  # type: ignore[arg-type]
        self.move(credit.id, f"credits_{kind}", c.amount)  # type: ignore[arg-type]
        self.within_bound(debit.id, ("debit",))
        self.within_bound(credit.id, ("credit",))
        transfer = Transfer(
            id=c.id,
            tenant_id=self.t,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=c.amount,
            currency=c.currency,
            status=kind,  # type: ignore[arg-type]
            pending=c.pending,
            metadata=c.metadata,
            created_at_us=self.now,
            expires_at_us=c.expires_at_us,
            reverses_id=reverses,
        )
        self.m.transfers[(self.t, c.id)] = transfer
        self.events.append((self.t, "transfer.pending" if c.pending else "transfer.created", c.id))
        return transfer

    def create_transfer(self, c: CreateTransfer) -> tuple[str, Any]:
        existing = self.m.transfers.get((self.t, c.id))
        if existing is not None:
            same = (
                existing.reverses_id is None
                and (existing.debit_account_id, existing.credit_account_id, existing.amount)
                == (c.debit_account_id, c.credit_account_id, c.amount)
                and (existing.currency, existing.pending, existing.expires_at_us, existing.metadata)
                == (c.currency, c.pending, c.expires_at_us, c.metadata)
            )
            if not same:
                raise Refused("idempotency-conflict")
            return "replay", existing
        return "ok", self.new_transfer(c)

    def resolve(self, transfer_id: str, amount: int | None, status: str) -> tuple[str, Any]:
        x = self.m.transfers.get((self.t, transfer_id))
        if x is None:
            raise Refused("transfer-not-found")
        if x.status != "pending":
            raise Refused("transfer-not-pending")
        expired = x.expires_at_us is not None and x.expires_at_us <= self.now
        if status == "posted" and expired:
            raise Refused("hold-expired")
        if status == "expired" and not expired:
            raise Refused("transfer-not-pending")
        posted = x.amount if amount is None else amount
        if posted > x.amount:
            raise Refused("exceeds-hold")
        if status == "posted":
            for account_id in (x.debit_account_id, x.credit_account_id):
                self.usable(self.account(account_id), x.currency)
        self.move(x.debit_account_id, "debits_pending", -x.amount)
        self.move(x.credit_account_id, "credits_pending", -x.amount)
        if posted:
            self.move(x.debit_account_id, "debits_posted", posted)
            self.move(x.credit_account_id, "credits_posted", posted)
        resolved = replace(x, status=status, posted_amount=posted, resolved_at_us=self.now)  # type: ignore[arg-type]
        self.m.transfers[(self.t, x.id)] = resolved
        self.events.append((self.t, f"transfer.{status}", x.id))
        return "ok", resolved

    def reverse(self, c: ReverseTransfer) -> tuple[str, Any]:
        existing = self.m.transfers.get((self.t, c.id))
        if existing is not None:
            same = (
                existing.reverses_id == c.transfer_id
                and c.amount in (None, existing.amount)
                and existing.metadata == c.metadata
            )
            if not same:
                raise Refused("idempotency-conflict")
            return "replay", existing
        original = self.m.transfers.get((self.t, c.transfer_id))
        if original is None:
            raise Refused("transfer-not-found")
        posted = original.posted_amount if original.pending else original.amount
        if original.status != "posted" or original.reverses_id is not None or not posted:
            raise Refused("not-reversible")
        left = posted - original.reversed_amount
        amount = left if c.amount is None else c.amount
        if left <= 0 or amount > left:
            raise Refused("exceeds-reversible")
        reversal = self.new_transfer(
            CreateTransfer(
                c.id,
                original.credit_account_id,
                original.debit_account_id,
                amount,
                original.currency,
                metadata=c.metadata,
            ),
            reverses=original.id,
        )
        self.m.transfers[(self.t, original.id)] = replace(
            original, reversed_amount=original.reversed_amount + amount
        )
        self.events.append((self.t, "transfer.reversed", original.id))
        return "ok", reversal

    def journal(self, c: CreateJournalEntry) -> tuple[str, Any]:
        existing = self.m.journals.get((self.t, c.id))
        if existing is not None:
            if (existing.legs, existing.metadata) != (c.legs, c.metadata):
                raise Refused("idempotency-conflict")
            return "replay", existing
        sides: dict[str, set[Side]] = {}
        for leg in c.legs:
            self.usable(self.account(leg.account_id), leg.currency)
            self.move(
                leg.account_id,
                "debits_posted" if leg.side == "debit" else "credits_posted",
                leg.amount,
            )
            sides.setdefault(leg.account_id, set()).add(leg.side)
        for account_id, touched in sides.items():
            self.within_bound(account_id, tuple(sorted(touched)))
        entry = JournalEntry(c.id, self.t, c.legs, c.metadata, self.now)
        self.m.journals[(self.t, c.id)] = entry
        self.events.append((self.t, "journal_entry.created", c.id))
        return "ok", entry


# ---- strategies ------------------------------------------------------------------------

picks = st.integers(min_value=0, max_value=10**6)  # an index into whatever list, modulo
small_amounts = st.integers(min_value=1, max_value=3_000)
amounts = st.one_of(
    small_amounts,
    small_amounts,
    small_amounts,
    st.integers(min_value=1, max_value=10**7),
    # Near the 64-bit ceiling: overflow must be refused, never wrapped.
    st.integers(min_value=AMOUNT_MAX // 3, max_value=AMOUNT_MAX),
)
overdrafts = st.sampled_from([0, 0, 0, 500, 100_000, AMOUNT_MAX])
metadatas = st.sampled_from([{}, {}, {"order": 42}, {"note": "café ☕"}])
expiries = st.sampled_from([None, 1 * SECOND_US, 1 * SECOND_US, 3 * SECOND_US, -1])
MACHINE_SHARDS = 4


def capacity(shards: int) -> int:
    """What a system account with ``shards`` balance rows can hold per counter."""
    return AMOUNT_MAX // shards * shards


OPS = (
    "transfer",
    "hold",
    "post",
    "void",
    "fund",
    "account",
    "overspend",
    "reverse",
    "fee",
    "refund",
)
op_specs = st.tuples(st.sampled_from(OPS), picks, picks, small_amounts)


class LedgerMachine(RuleBasedStateMachine):
    engine: Engine

    def __init__(self) -> None:
        super().__init__()
        # Seeded: which balance shard a hot account's credit lands on must replay too.
        # So are ids (they order the store's locks and shard picks): ours and the store's.
        # They need only be unique per tenant, and every example has fresh tenants.
        self.ids = itertools.count(1)
        store_ids = itertools.count(1)
        self.store = SqlLedgerStore(
            self.engine,
            hot_account_shards=MACHINE_SHARDS,
            rng=random.Random(0),
            new_id=lambda: f"ffffffff-0000-4000-8000-{next(store_ids):012x}",
        )
        self.model = Model()
        self.tenants: list[str] = []
        self.now = BASE_US
        self.events: list[Event] = []  # expected since the last audit check
        self.audit_seq = 0
        self.outbox_seq = 0
        # Commands that created something, by type: (tenant index, command).
        self.creations: dict[type, list[tuple[int, Command]]] = {}
        self.history: list[tuple[int, dict[Key, Balances]]] = []
        self.requests = 0
        # False while the store may be ahead of the model (a step or check failed midway):
        # teardown's checks would then only mask the original failure.
        self.consistent = True

    def new_id(self) -> str:
        return f"00000000-0000-4000-8000-{next(self.ids):012x}"

    # -- running commands -------------------------------------------------------------------
    def execute(self, units: list[tuple[int, list[Command], bool]]) -> list[list[Outcome]]:
        now = self.now
        self.consistent = False
        working = self.model.copy()
        expected: list[list[tuple[str, Any]]] = []
        events: list[Event] = []
        for tenant_index, commands, atomic in units:
            tenant = self.tenants[tenant_index]
            unit_model = working.copy()
            results: list[tuple[str, Any]] = []
            unit_events: list[Event] = []
            failed: int | None = None
            for position, command in enumerate(commands):
                item = unit_model.copy()
                step = Step(item, tenant, now)
                try:
                    results.append(step.run(command))
                except Refused as refused:
                    results.append(("error", refused.code))
                    if atomic:
                        failed = position
                        break
                    continue
                unit_model = item
                unit_events += step.events
            if failed is not None:
                results = [
                    results[failed] if i == failed else ("error", "batch-aborted")
                    for i in range(len(commands))
                ]
            else:
                working = unit_model
                events += unit_events
            expected.append(results)

        store_units = []
        for tenant_index, commands, atomic in units:
            self.requests += 1
            store_units.append(
                Unit(
                    self.tenants[tenant_index],
                    tuple(commands),
                    ACTOR,
                    request_id=f"req-{self.requests}",
                    atomic=atomic,
                )
            )
        actual = self.store.execute(store_units, now)

        assert len(actual) == len(units)
        for (tenant_index, commands, _), want, got in zip(units, expected, actual, strict=True):
            assert len(got) == len(commands)
            for command, (kind, value), outcome in zip(commands, want, got, strict=True):
                context = f"{command!r} at {now}"
                if kind == "error":
                    assert outcome.error is not None, f"{context}: expected {value}, got {outcome}"
                    assert outcome.error.code == value, (
                        f"{context}: expected {value}, got {outcome.error}"
                    )
                    assert outcome.value is None
                    continue
                assert outcome.error is None, f"{context}: expected {kind}, got {outcome.error!r}"
                assert outcome.replayed == (kind == "replay"), f"{context}: {outcome}"
                if not str(getattr(value, "id", "")).startswith("?"):
                    assert outcome.value == value, (
                        f"{context}:\n store {outcome.value}\n model {value}"
                    )
                if kind == "ok" and isinstance(
                    command, CreateAccount | CreateTransfer | ReverseTransfer | CreateJournalEntry
                ):
                    self.creations.setdefault(type(command), []).append((tenant_index, command))

        self.resolve_system_accounts(working, events)
        self.model = working
        self.events += events
        self.history.append((now, {k: a.balances for k, a in working.accounts.items()}))
        # Strictly later than anything written: `as_of` reads between steps are exact.
        self.now += 2
        self.consistent = True
        return actual

    def resolve_system_accounts(self, working: Model, events: list[Event]) -> None:
        """Learn the ids the store gave the system accounts the model only knows by role."""
        renames: dict[str, str] = {}
        for (tenant, currency, code), account_id in list(working.system.items()):
            if not account_id.startswith("?"):
                continue
            found = [
                a
                for a in self.store.accounts(
                    tenant, after=None, limit=50, kind="system", currency=currency
                )
                if a.code == code
            ]
            assert len(found) == 1, f"{tenant} {currency} {code}: {found}"
            renames[account_id] = found[0].id
            working.system[(tenant, currency, code)] = found[0].id
            working.accounts[(tenant, found[0].id)] = replace(
                working.accounts.pop((tenant, account_id)), id=found[0].id
            )
        events[:] = [(t, kind, renames.get(subject, subject)) for t, kind, subject in events]

    def one(self, tenant_index: int, command: Command) -> Outcome:
        return self.execute([(tenant_index, [command], True)])[0][0]

    # -- picking things -----------------------------------------------------------------------
    def accounts_of(self, tenant_index: int, *, user_only: bool = False) -> list[Account]:
        tenant = self.tenants[tenant_index]
        # Creation order, not id order: the store's ids are random, picks must replay.
        found = [a for (t, _), a in self.model.accounts.items() if t == tenant]
        return [a for a in found if a.kind != "system"] if user_only else found

    def pick_account(self, tenant_index: int, pick: int, *, user_only: bool = False) -> Account:
        choices = self.accounts_of(tenant_index, user_only=user_only)
        return choices[pick % len(choices)]

    def pick_transfer(self, pick: int, *, holds_only: bool = False) -> tuple[int, Transfer] | None:
        choices = [x for x in self.model.transfers.values() if x.pending or not holds_only]
        if holds_only:
            # Mostly open holds, sometimes resolved ones (which must be refused).
            open_ = [x for x in choices if x.status == "pending"]
            if open_ and pick % 4:
                choices = open_
        if not choices:
            return None
        chosen = choices[pick % len(choices)]
        return self.tenants.index(chosen.tenant_id), chosen

    def clearing(self, tenant_index: int, currency: str) -> str:
        return self.model.system[(self.tenants[tenant_index], currency, "clearing")]

    def spec_commands(self, tenant_index: int, spec: tuple[str, int, int, int]) -> list[Command]:
        """Commands for a batch: sometimes ones that must fail, so atomicity is exercised."""
        command = self.spec_command(tenant_index, spec)
        if command is None:
            return []
        if spec[0] == "refund":
            # A payment reversed within the same unit (before any of it is committed).
            assert isinstance(command, CreateTransfer)
            return [
                command,
                ReverseTransfer(command.id, self.new_id(), amount=None if spec[2] % 2 else 1),
            ]
        return [command]

    def spec_command(self, tenant_index: int, spec: tuple[str, int, int, int]) -> Command | None:
        op, i, j, amount = spec
        a = self.pick_account(tenant_index, i)
        peers = [
            x for x in self.accounts_of(tenant_index) if x.currency == a.currency and x.id != a.id
        ]
        b = peers[j % len(peers)] if peers else a
        match op:
            case "transfer" | "hold":
                return CreateTransfer(
                    self.new_id(), a.id, b.id, amount, a.currency, pending=op == "hold"
                )
            case "overspend":
                return CreateTransfer(self.new_id(), a.id, b.id, AMOUNT_MAX, a.currency)
            case "fund":
                user = self.pick_account(tenant_index, i, user_only=True)
                return CreateTransfer(
                    self.new_id(),
                    self.clearing(tenant_index, user.currency),
                    user.id,
                    amount,
                    user.currency,
                )
            case "fee" | "refund":
                fees = self.model.system[(self.tenants[tenant_index], a.currency, "fees")]
                return (
                    CreateTransfer(self.new_id(), a.id, fees, amount, a.currency)
                    if fees != a.id
                    else None
                )
            case "account":
                return CreateAccount(
                    self.new_id(), "wallet", CURRENCIES[i % 2], overdraft_limit=amount % 2 * 1000
                )
            case "post" | "void" | "reverse":
                picked = self.pick_transfer(i, holds_only=op != "reverse")
                if picked is None or picked[0] != tenant_index:
                    return None
                x = picked[1]
                if op == "post":
                    return PostTransfer(x.id, amount=None if j % 2 else max(1, x.amount // 2))
                if op == "void":
                    return VoidTransfer(x.id)
                return ReverseTransfer(x.id, self.new_id(), amount=None if j % 2 else 1)
        raise AssertionError(op)

    # -- rules --------------------------------------------------------------------------------
    @initialize()
    def setup(self) -> None:
        repository = SqlTenantRepository(self.engine)
        self.tenants = sorted(str(uuid.uuid4()) for _ in range(2))
        for n, tenant in enumerate(self.tenants):
            repository.create(tenant, f"state machine tenant {n}")
        # Creating a tenant is an administration event: one audit entry each, no outbox event.
        # The ledger events checked below start after them.
        a = audit_entries.c
        with self.engine.connect() as connection:
            created = connection.execute(
                sa.select(a.seq, a.tenant_id, a.event_type)
                .where(a.tenant_id.in_(self.tenants))
                .order_by(a.seq)
            ).all()
        assert [(r.tenant_id, r.event_type) for r in created] == [
            (tenant, "tenant.created") for tenant in self.tenants
        ]
        self.audit_seq = created[-1].seq
        # Every tenant starts with funded wallets in both currencies and a merchant, so most
        # moves can succeed; accounts made later start empty, so others fail.
        for n in range(2):
            eur, jpy = self.new_id(), self.new_id()
            opened: list[Command] = [
                CreateAccount(eur, "wallet", "EUR", overdraft_limit=500),
                CreateAccount(jpy, "wallet", "JPY"),
                CreateAccount(self.new_id(), "merchant", "EUR"),
            ]
            assert all(o.ok for o in self.execute([(n, opened, True)])[0])
            funding: list[Command] = [
                CreateTransfer(self.new_id(), self.clearing(n, "EUR"), eur, 1_000_000, "EUR"),
                CreateTransfer(self.new_id(), self.clearing(n, "JPY"), jpy, 100_000, "JPY"),
            ]
            assert all(o.ok for o in self.execute([(n, funding, True)])[0])

    @rule(
        tenant=st.integers(0, 1),
        currency=st.sampled_from(CURRENCIES),
        kind=st.sampled_from(["wallet", "merchant"]),
        limit=overdrafts,
        metadata=metadatas,
    )
    def create_account(
        self, tenant: int, currency: str, kind: Any, limit: int, metadata: dict[str, Any]
    ) -> None:
        self.one(
            tenant,
            CreateAccount(self.new_id(), kind, currency, overdraft_limit=limit, metadata=metadata),
        )

    @rule(tenant=st.integers(0, 1), pick=picks, amount=amounts)
    def fund(self, tenant: int, pick: int, amount: int) -> None:
        account = self.pick_account(tenant, pick, user_only=True)
        clearing = self.clearing(tenant, account.currency)
        self.one(
            tenant, CreateTransfer(self.new_id(), clearing, account.id, amount, account.currency)
        )

    @rule(
        tenant=st.integers(0, 1),
        i=picks,
        j=picks,
        amount=amounts,
        pending=st.booleans(),
        expiry=expiries,
        currency=st.sampled_from([None, None, None, "EUR", "JPY"]),
        metadata=metadatas,
    )
    def transfer(
        self,
        tenant: int,
        i: int,
        j: int,
        amount: int,
        pending: bool,
        expiry: int | None,
        currency: str | None,
        metadata: dict[str, Any],
    ) -> None:
        debit = self.pick_account(tenant, i)
        same_currency = [a for a in self.accounts_of(tenant) if a.currency == debit.currency]
        # Mostly the same currency (may be `debit` itself: same-account), sometimes any.
        credit = (
            same_currency[j % len(same_currency)] if j % 5 else self.pick_account(tenant, j // 5)
        )
        expires = None if expiry is None or not pending else self.now + expiry
        self.one(
            tenant,
            CreateTransfer(
                self.new_id(),
                debit.id,
                credit.id,
                amount,
                currency or debit.currency,
                pending=pending,
                expires_at_us=expires,
                metadata=metadata,
            ),
        )

    @rule(i=picks, j=picks, amount=small_amounts)
    def cross_tenant_transfer(self, i: int, j: int, amount: int) -> None:
        mine = self.pick_account(0, i)
        theirs = self.pick_account(1, j)
        if (self.tenants[0], theirs.id) in self.model.accounts:
            return  # a replay in the other tenant made the same id there too
        outcome = self.one(
            0, CreateTransfer(self.new_id(), mine.id, theirs.id, amount, mine.currency)
        )
        assert outcome.error is not None and outcome.error.code == "account-not-found"
        outcome = self.one(0, ChangeAccount(theirs.id, "freeze"))
        assert outcome.error is not None and outcome.error.code == "account-not-found"

    @rule(
        tenant=st.integers(0, 1),
        i=picks,
        j=picks,
        amount=small_amounts,
        expires=st.sampled_from([None, SECOND_US]),
        wait=st.sampled_from([0, 0, 2 * SECOND_US]),
        then=st.sampled_from(["post", "partial", "void", "expire", "worker"]),
    )
    def hold_and_resolve(
        self, tenant: int, i: int, j: int, amount: int, expires: int | None, wait: int, then: str
    ) -> None:
        """A hold's whole life in one rule, so every resolution is exercised every run."""
        debit = self.pick_account(tenant, i)
        peers = [
            a for a in self.accounts_of(tenant) if a.currency == debit.currency and a.id != debit.id
        ]
        credit = peers[j % len(peers)]
        hold = CreateTransfer(
            self.new_id(),
            debit.id,
            credit.id,
            amount,
            debit.currency,
            pending=True,
            expires_at_us=None if expires is None else self.now + expires,
        )
        if not self.one(tenant, hold).ok:
            return
        self.now += wait
        if then == "worker":
            self.the_worker_expires_due_holds()
            return
        resolution: Command = {
            "post": PostTransfer(hold.id),
            "partial": PostTransfer(hold.id, amount=max(1, amount // 2)),
            "void": VoidTransfer(hold.id),
            "expire": ExpireTransfer(hold.id),
        }[then]
        self.one(tenant, resolution)

    @rule(
        tenant=st.integers(0, 1),
        i=picks,
        j=picks,
        amount=small_amounts,
        parts=st.lists(st.sampled_from([None, 1, 7, 100, 5_000]), min_size=1, max_size=3),
    )
    def transfer_and_reverse(
        self, tenant: int, i: int, j: int, amount: int, parts: list[int | None]
    ) -> None:
        debit = self.pick_account(tenant, i)
        peers = [
            a for a in self.accounts_of(tenant) if a.currency == debit.currency and a.id != debit.id
        ]
        credit = peers[j % len(peers)]
        original = CreateTransfer(self.new_id(), debit.id, credit.id, amount, debit.currency)
        if not self.one(tenant, original).ok:
            return
        for part in parts:
            self.one(tenant, ReverseTransfer(original.id, self.new_id(), amount=part))

    @rule(pick=picks, mode=st.sampled_from(["full", "partial", "exceed"]))
    def post(self, pick: int, mode: str) -> None:
        picked = self.pick_transfer(pick, holds_only=True)
        if picked is None:
            return
        tenant, hold = picked
        amount = {"full": None, "partial": max(1, hold.amount // 3), "exceed": hold.amount + 1}[
            mode
        ]
        self.one(
            tenant,
            PostTransfer(
                hold.id, amount=amount if amount is None or amount <= AMOUNT_MAX else None
            ),
        )

    @rule(pick=picks, expire=st.booleans())
    def void(self, pick: int, expire: bool) -> None:
        picked = self.pick_transfer(pick, holds_only=True)
        if picked is None:
            return
        tenant, hold = picked
        self.one(tenant, ExpireTransfer(hold.id) if expire else VoidTransfer(hold.id))

    @rule(pick=picks, tenant=st.integers(0, 1))
    def resolve_someone_elses_hold(self, pick: int, tenant: int) -> None:
        picked = self.pick_transfer(pick, holds_only=True)
        if (
            picked is None
            or picked[0] == tenant
            or (self.tenants[tenant], picked[1].id) in self.model.transfers
        ):
            return
        outcome = self.one(tenant, PostTransfer(picked[1].id))
        assert outcome.error is not None and outcome.error.code == "transfer-not-found"

    @rule(seconds_us=st.integers(min_value=1, max_value=4 * SECOND_US))
    def time_passes(self, seconds_us: int) -> None:
        # Holds may now be past expiry without the worker having run: posting them must be
        # refused (hold-expired), voiding them still works.
        self.now += seconds_us

    @rule()
    def the_worker_expires_due_holds(self) -> None:
        mine = set(self.tenants)
        due = {(t, x) for t, x in self.store.due_holds(self.now, 100_000) if t in mine}
        expected = {
            (x.tenant_id, x.id)
            for x in self.model.transfers.values()
            if x.status == "pending" and x.expires_at_us is not None and x.expires_at_us <= self.now
        }
        assert due == expected
        units = [
            (n, [ExpireTransfer(x) for t, x in sorted(due) if t == tenant], False)
            for n, tenant in enumerate(self.tenants)
            if any(t == tenant for t, _ in due)
        ]
        if units:
            for outcomes in self.execute(units):
                assert all(o.ok for o in outcomes)

    @rule(
        pick=picks,
        mode=st.sampled_from(["rest", "rest", "one", "half", "exceed"]),
        metadata=metadatas,
    )
    def reverse(self, pick: int, mode: str, metadata: dict[str, Any]) -> None:
        picked = self.pick_transfer(pick)
        if picked is None:
            return
        tenant, x = picked
        left = (x.posted_amount or 0) if x.pending else x.amount
        left -= x.reversed_amount
        amount = {"rest": None, "one": 1, "half": max(1, left // 2), "exceed": left + 1}[mode]
        if amount is not None and not 0 < amount <= AMOUNT_MAX:
            amount = None
        self.one(tenant, ReverseTransfer(x.id, self.new_id(), amount=amount, metadata=metadata))

    @rule(
        tenant=st.integers(0, 1),
        pick=picks,
        action=st.sampled_from(
            [
                "freeze",
                "freeze",
                "unfreeze",
                "close",
                "set_overdraft_limit",
                "set_overdraft_limit",
            ]
        ),
        limit=overdrafts,
        system=st.booleans(),
    )
    def change_account(self, tenant: int, pick: int, action: Any, limit: int, system: bool) -> None:
        account = self.pick_account(tenant, pick, user_only=not system)
        self.one(
            tenant,
            ChangeAccount(
                account.id,
                action,
                overdraft_limit=limit if action == "set_overdraft_limit" else None,
            ),
        )

    @rule(
        tenant=st.integers(0, 1),
        legs=st.lists(
            st.tuples(picks, st.sampled_from(["debit", "credit"]), small_amounts),
            min_size=1,
            max_size=5,
        ),
        second_currency=st.booleans(),
        unbalance=st.sampled_from([0, 0, 0, 0, 1]),
        with_fee=st.booleans(),
    )
    def journal_entry(
        self,
        tenant: int,
        legs: list[tuple[int, str, int]],
        second_currency: bool,
        unbalance: int,
        with_fee: bool,
    ) -> None:
        built: list[Leg] = []
        currencies = CURRENCIES if second_currency else (CURRENCIES[0],)
        for currency in currencies:
            accounts = [a for a in self.accounts_of(tenant) if a.currency == currency]
            if len(accounts) < 2:
                continue
            user = [a for a in accounts if a.kind != "system"]
            total = 0
            for pick, side, amount in legs:
                account = accounts[pick % len(accounts)]
                built.append(Leg(account.id, side, amount, currency))  # type: ignore[arg-type]
                total += amount if side == "debit" else -amount
            # Balance the currency on an account of it (a fee to `fees`, or a wallet).
            target = (
                self.model.system[(self.tenants[tenant], currency, "fees")]
                if with_fee or not user
                else user[0].id
            )
            if total:
                built.append(Leg(target, "credit" if total > 0 else "debit", abs(total), currency))
        if len(built) < 2:
            return
        if unbalance:
            first = built[0]
            built[0] = replace(first, amount=first.amount + unbalance)
        self.one(
            tenant, CreateJournalEntry(self.new_id(), tuple(built), metadata={"legs": len(built)})
        )

    @rule(
        tenant=st.integers(0, 1),
        atomic=st.booleans(),
        specs=st.lists(op_specs, min_size=2, max_size=6),
    )
    def batch(self, tenant: int, atomic: bool, specs: list[tuple[str, int, int, int]]) -> None:
        commands = [c for spec in specs for c in self.spec_commands(tenant, spec)]
        if commands:
            self.execute([(tenant, commands, atomic)])

    @rule(
        units=st.lists(
            st.tuples(st.integers(0, 1), st.lists(op_specs, min_size=1, max_size=3), st.booleans()),
            min_size=2,
            max_size=5,
        )
    )
    def group_commit(self, units: list[tuple[int, list[tuple[str, int, int, int]], bool]]) -> None:
        """Several units, of both tenants, in one transaction: each stands or falls alone."""
        built = []
        for tenant, specs, atomic in units:
            commands = [c for spec in specs for c in self.spec_commands(tenant, spec)]
            if commands:
                built.append((tenant, commands, atomic))
        if built:
            self.execute(built)

    @rule(
        kind=st.sampled_from(
            [CreateTransfer, CreateTransfer, CreateAccount, ReverseTransfer, CreateJournalEntry]
        ),
        pick=picks,
        change=st.sampled_from([None, None, "amount", "metadata", "kind", "account", "pending"]),
    )
    def replay(self, kind: type, pick: int, change: str | None) -> None:
        done = self.creations.get(kind, [])
        if not done:
            return
        tenant, command = done[pick % len(done)]
        if change is not None:
            match command:
                case CreateAccount():
                    command = (
                        replace(command, kind="merchant" if command.kind == "wallet" else "wallet")
                        if change == "kind"
                        else replace(command, metadata={"changed": True})
                    )
                case CreateTransfer():
                    command = {
                        "amount": replace(command, amount=command.amount % AMOUNT_MAX + 1),
                        "pending": replace(
                            command, pending=not command.pending, expires_at_us=None
                        ),
                    }.get(change, replace(command, metadata={"changed": True}))
                case ReverseTransfer():
                    command = replace(command, metadata={"changed": True})
                case CreateJournalEntry():
                    command = replace(command, legs=tuple(reversed(command.legs)))
                    if command.legs == tuple(reversed(command.legs)):
                        return
        audit_before = self.count(audit_entries)
        outcome = self.one(tenant, command)
        if change is None:
            assert outcome.ok and outcome.replayed, outcome
            assert self.count(audit_entries) == audit_before  # a replay writes nothing
        else:
            assert outcome.error is not None and outcome.error.code == "idempotency-conflict", (
                outcome
            )

    @rule(
        kind=st.sampled_from([CreateTransfer, CreateAccount, ReverseTransfer, CreateJournalEntry]),
        pick=picks,
    )
    def replay_in_the_other_tenant(self, kind: type, pick: int) -> None:
        # The same id in another tenant is that tenant's business: never a replay of ours.
        done = self.creations.get(kind, [])
        if not done:
            return
        tenant, command = done[pick % len(done)]
        ident = command.id  # type: ignore[union-attr]
        theirs = (self.tenants[1 - tenant], ident)
        existed = (
            theirs in self.model.accounts
            or theirs in self.model.transfers
            or theirs in self.model.journals
        )
        outcome = self.one(1 - tenant, command)
        if not existed:
            assert not outcome.replayed

    @rule(
        tenant=st.integers(0, 1),
        pick=picks,
        bad=st.sampled_from(
            ["zero", "negative", "same", "currency", "bool", "huge", "expiry", "legs", "post0"]
        ),
    )
    def invalid_command(self, tenant: int, pick: int, bad: str) -> None:
        a = self.pick_account(tenant, pick)
        b = self.pick_account(tenant, pick + 1)
        command: Command = {
            "zero": CreateTransfer(self.new_id(), a.id, b.id, 0, a.currency),
            "negative": CreateTransfer(self.new_id(), a.id, b.id, -5, a.currency),
            "same": CreateTransfer(self.new_id(), a.id, a.id, 5, a.currency),
            "currency": CreateTransfer(self.new_id(), a.id, b.id, 5, "XAU"),
            "bool": CreateTransfer(self.new_id(), a.id, b.id, True, a.currency),
            "huge": CreateTransfer(self.new_id(), a.id, b.id, AMOUNT_MAX + 1, a.currency),
            "expiry": CreateTransfer(
                self.new_id(), a.id, b.id, 5, a.currency, expires_at_us=self.now + SECOND_US
            ),
            "legs": CreateJournalEntry(self.new_id(), (Leg(a.id, "debit", 5, a.currency),)),
            "post0": PostTransfer(self.new_id(), amount=0),
        }[bad]
        outcome = self.one(tenant, command)
        assert outcome.error is not None and outcome.error.code in {
            "invalid-amount",
            "same-account",
            "unknown-currency",
            "invalid-expiry",
            "validation-failed",
        }

    @precondition(lambda self: len(self.history) > 1)
    @rule(pick=picks, step=picks)
    def balance_as_of_an_earlier_step(self, pick: int, step: int) -> None:
        at, balances = self.history[step % len(self.history)]
        tenant = pick % 2
        account = self.pick_account(tenant, pick // 2)
        found = self.store.account(self.tenants[tenant], account.id, as_of_us=at + 1)
        key = (self.tenants[tenant], account.id)
        if key not in balances:
            assert found is None  # did not exist yet
            return
        assert found is not None and found.balances == balances[key]
        # The entries up to then, read page by page through a time filter, say the same.
        upto = Balances()
        after = 0
        while page := self.store.entries(
            key[0], account.id, after_seq=after, limit=7, where=EntryFilter(to_us=at + 1)
        ):
            for entry in page:
                assert entry.created_at_us <= at
                upto = upto.plus(entry.counter, entry.delta)
            after = page[-1].seq
        assert upto == balances[key]
        # And a transfer's entries on this account are exactly its own.
        mine = [
            x
            for x in self.model.transfers.values()
            if x.tenant_id == key[0] and account.id in (x.debit_account_id, x.credit_account_id)
        ]
        if mine:
            x = mine[step % len(mine)]
            entries = self.store.entries(
                key[0], account.id, after_seq=0, limit=1000, where=EntryFilter(transfer_id=x.id)
            )
            assert entries and all(e.transfer_id == x.id for e in entries)

    # -- invariants ---------------------------------------------------------------------------
    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.tenant_id.in_(self.tenants))
                ).scalar_one()
            )

    def store_accounts(self) -> dict[Key, Account]:
        found: dict[Key, Account] = {}
        for tenant in self.tenants:
            after: str | None = None
            while page := self.store.accounts(tenant, after=after, limit=7):
                for account in page:
                    assert account.tenant_id == tenant
                    found[(tenant, account.id)] = account
                after = page[-1].id
        return found

    @invariant()
    def the_books_balance_and_match_the_model(self) -> None:
        if not self.tenants:
            return
        self.consistent = False
        accounts = self.store_accounts()
        assert set(accounts) == set(self.model.accounts), (
            "the store's accounts differ from the model's"
        )
        for key, account in accounts.items():
            assert account == self.model.accounts[key], (
                f"\n store {account}\n model {self.model.accounts[key]}"
            )

        totals: Multiset[tuple[str, str, str]] = Multiset()
        for (tenant, _), account in accounts.items():
            b = account.balances
            for counter in COUNTERS:
                assert getattr(b, counter) >= 0, f"{counter} negative: {account}"
                assert getattr(b, counter) <= AMOUNT_MAX, f"{counter} past AMOUNT_MAX: {account}"
                totals[(tenant, account.currency, counter)] += getattr(b, counter)
            if account.bounded and account.normal == "credit":
                assert (
                    b.debits_posted + b.debits_pending <= b.credits_posted + account.overdraft_limit
                ), account
            if account.status == "closed":
                assert (
                    b.balance(account.normal) == 0
                    and not b.debits_pending
                    and not b.credits_pending
                )
        for tenant in self.tenants:
            for currency in CURRENCIES:
                assert (
                    totals[(tenant, currency, "debits_posted")]
                    == totals[(tenant, currency, "credits_posted")]
                )
                assert (
                    totals[(tenant, currency, "debits_pending")]
                    == totals[(tenant, currency, "credits_pending")]
                )

        # Each account's counters are the sums of its entries (read straight from the table).
        e = ledger_entries.c
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(e.tenant_id, e.account_id, e.counter, sa.func.sum(e.delta).label("total"))
                .where(e.tenant_id.in_(self.tenants))
                .group_by(e.tenant_id, e.account_id, e.counter)
            ).all()
            transfer_rows = connection.execute(
                sa.select(ledger_transfers).where(ledger_transfers.c.tenant_id.in_(self.tenants))
            ).all()
            journal_rows = connection.execute(
                sa.select(ledger_journal_entries.c.tenant_id, ledger_journal_entries.c.id).where(
                    ledger_journal_entries.c.tenant_id.in_(self.tenants)
                )
            ).all()
        sums: dict[Key, Balances] = {}
        for row in rows:
            key = (row.tenant_id, row.account_id)
            sums[key] = sums.get(key, Balances()).plus(row.counter, int(row.total))
        for key, account in accounts.items():
            assert sums.get(key, Balances()) == account.balances, (
                f"entries {sums.get(key)} != counters of {account}"
            )
        assert set(sums) <= set(accounts)

        # Transfers and journal entries: exactly the model's, in the model's state.
        stored = {(r.tenant_id, r.id): r for r in transfer_rows}
        assert set(stored) == set(self.model.transfers)
        for key, x in self.model.transfers.items():
            r = stored[key]
            got = (
                r.status,
                int(r.amount),
                r.posted_amount,
                int(r.reversed_amount),
                r.reverses_id,
                r.debit_account_id,
                r.credit_account_id,
                r.expires_at_us,
            )
            want = (
                x.status,
                x.amount,
                x.posted_amount,
                x.reversed_amount,
                x.reverses_id,
                x.debit_account_id,
                x.credit_account_id,
                x.expires_at_us,
            )
            assert got == want, key
        assert {(r.tenant_id, r.id) for r in journal_rows} == set(self.model.journals)
        self.consistent = True

    @invariant()
    def every_change_wrote_its_audit_entry_and_outbox_event(self) -> None:
        if not self.tenants:
            return
        self.consistent = False
        a, o = audit_entries.c, outbox_events.c
        with self.engine.connect() as connection:
            audit = connection.execute(
                sa.select(audit_entries)
                .where(a.tenant_id.in_(self.tenants), a.seq > self.audit_seq)
                .order_by(a.seq)
            ).all()
            outbox = connection.execute(
                sa.select(outbox_events)
                .where(o.tenant_id.in_(self.tenants), o.seq > self.outbox_seq)
                .order_by(o.seq)
            ).all()
        expected = Multiset(self.events)
        assert (
            Multiset((r.tenant_id, r.event_type, json.loads(r.subject_ids)[0]) for r in audit)
            == expected
        )
        published = [json.loads(r.payload) for r in outbox]
        assert (
            Multiset(
                (r.tenant_id, p["type"], p["subject_ids"][0])
                for r, p in zip(outbox, published, strict=True)
            )
            == expected
        )
        for row in audit:
            assert (row.actor_kind, row.actor_id) == (ACTOR.kind, ACTOR.id)
            assert row.request_id is not None and row.request_id.startswith("req-")
        if audit:
            self.audit_seq = audit[-1].seq
        if outbox:
            self.outbox_seq = outbox[-1].seq
        self.events = []
        self.consistent = True

    def teardown(self) -> None:
        if not self.tenants or not self.consistent:
            return
        # The read paths clients use: entries page by page, transfers and entries by id.
        for (tenant, account_id), account in self.model.accounts.items():
            walked = Balances()
            seqs: list[int] = []
            after = 0
            while page := self.store.entries(
                tenant, account_id, after_seq=after, limit=5, where=EntryFilter()
            ):
                for entry in page:
                    assert entry.account_id == account_id
                    assert (entry.transfer_id is None) != (entry.journal_entry_id is None)
                    if entry.transfer_id is not None:
                        assert (tenant, entry.transfer_id) in self.model.transfers
                    else:
                        assert (tenant, entry.journal_entry_id) in self.model.journals
                    walked = walked.plus(entry.counter, entry.delta)
                    seqs.append(entry.seq)
                after = page[-1].seq
            assert walked == account.balances
            assert seqs == sorted(set(seqs))
            posted_only = self.store.entries(
                tenant,
                account_id,
                after_seq=0,
                limit=1000,
                where=EntryFilter(counters=frozenset({"credits_posted"})),
            )
            assert {x.counter for x in posted_only} <= {"credits_posted"}
            if len(seqs) < 1000:
                assert sum(x.delta for x in posted_only) == account.balances.credits_posted
            assert self.store.account(tenant, account_id) == account
            other = self.tenants[1 - self.tenants.index(tenant)]
            if (other, account_id) not in self.model.accounts:
                assert self.store.account(other, account_id) is None
        for (tenant, transfer_id), x in self.model.transfers.items():
            assert self.store.transfer(tenant, transfer_id) == x
            other = self.tenants[1 - self.tenants.index(tenant)]
            if (other, transfer_id) not in self.model.transfers:
                assert self.store.transfer(other, transfer_id) is None
        for (tenant, entry_id), j in self.model.journals.items():
            assert self.store.journal_entry(tenant, entry_id) == j


# ---- running it on both backends -------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        config = Settings(data_dir=tmp_path / "data")
    else:
        config = Settings(
            data_dir=tmp_path / "data", database={"url": request.getfixturevalue("postgres_url")}
        )
    upgrade(config)
    engine = make_engine(config)
    yield engine
    engine.dispose()


# No shrinking: each shrink attempt replays a whole run against the database, and a failing
# run would shrink past pytest's 300 s timeout and lose the report. A run is at most 30
# steps and prints in full; the minimal reproductions of what it found are below.
_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)
BUDGET = {
    "sqlite": settings(
        max_examples=50,
        stateful_step_count=30,
        deadline=None,
        phases=_PHASES,
        suppress_health_check=list(HealthCheck),
    ),
    "postgresql": settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        phases=_PHASES,
        suppress_health_check=list(HealthCheck),
    ),
}


def test_random_operation_sequences_keep_every_invariant(migrated_engine: Engine) -> None:
    machine = type(
        "LedgerMachineOn" + migrated_engine.dialect.name.title(),
        (LedgerMachine,),
        {"engine": migrated_engine},
    )
    run_state_machine_as_test(machine, settings=BUDGET[migrated_engine.dialect.name])


# ---- what the machine found, as minimal reproductions ----------------------------------

ACTOR_ONE = Actor("client", "reproduction")


def _fresh(engine: Engine, seed: int = 0) -> tuple[SqlLedgerStore, str, dict[str, str], str]:
    """A store (seeded shard picks), a tenant with one EUR wallet, its system accounts."""
    store = SqlLedgerStore(engine, hot_account_shards=8, rng=random.Random(seed))
    tenant, wallet = str(uuid.uuid4()), str(uuid.uuid4())
    SqlTenantRepository(engine).create(tenant, "reproduction")
    assert store.execute(
        [Unit(tenant, (CreateAccount(wallet, "wallet", "EUR"),), ACTOR_ONE)], BASE_US
    )[0][0].ok
    system = {
        a.code or "": a.id for a in store.accounts(tenant, after=None, limit=10, kind="system")
    }
    return store, tenant, system, wallet


def _run(store: SqlLedgerStore, tenant: str, *commands: Command) -> list[Outcome]:
    return store.execute([Unit(tenant, commands, ACTOR_ONE)], BASE_US)[0]


def test_a_hot_accounts_counter_total_never_passes_amount_max(migrated_engine: Engine) -> None:
    # Each funding debits the clearing account by AMOUNT_MAX: the second must be refused,
    # whichever balance shard it would land on, and the total must stay readable.
    store, tenant, system, _ = _fresh(migrated_engine)
    outcomes = []
    for _ in range(4):
        wallet = str(uuid.uuid4())
        assert _run(store, tenant, CreateAccount(wallet, "wallet", "EUR"))[0].ok
        outcomes += _run(
            store,
            tenant,
            CreateTransfer(str(uuid.uuid4()), system["clearing"], wallet, capacity(8), "EUR"),
        )
    assert [o.error.code if o.error else None for o in outcomes] == [
        None,
        "overflow",
        "overflow",
        "overflow",
    ]
    clearing = store.account(tenant, system["clearing"])
    assert clearing is not None and clearing.balances.debits_posted == capacity(8)


def test_paying_a_hot_account_and_reversing_it_in_one_unit(migrated_engine: Engine) -> None:
    # fees holds 0 (1,000 in, 1,000 out), receives 100 and gives them back in one unit:
    # always affordable, whichever shard each movement used.
    refused = []
    for seed in range(16):
        store, tenant, system, wallet = _fresh(migrated_engine, seed)
        fees = system["fees"]
        assert _run(
            store,
            tenant,
            CreateTransfer(str(uuid.uuid4()), system["clearing"], wallet, 10_000, "EUR"),
        )[0].ok
        assert _run(store, tenant, CreateTransfer(str(uuid.uuid4()), wallet, fees, 1_000, "EUR"))[
            0
        ].ok
        assert _run(store, tenant, CreateTransfer(str(uuid.uuid4()), fees, wallet, 1_000, "EUR"))[
            0
        ].ok
        pay = CreateTransfer(str(uuid.uuid4()), wallet, fees, 100, "EUR")
        outcomes = _run(store, tenant, pay, ReverseTransfer(pay.id, str(uuid.uuid4())))
        if not all(o.ok for o in outcomes):
            refused.append((seed, [o.error for o in outcomes]))
    assert refused == []


def test_retrying_account_creation_after_a_limit_change_replays(migrated_engine: Engine) -> None:
    # The retry carries the body first sent; the limit changed since, legitimately.
    store, tenant, _, _ = _fresh(migrated_engine)
    create = CreateAccount(str(uuid.uuid4()), "wallet", "EUR", overdraft_limit=100)
    assert _run(store, tenant, create)[0].ok
    assert _run(
        store, tenant, ChangeAccount(create.id, "set_overdraft_limit", overdraft_limit=500)
    )[0].ok
    again = _run(store, tenant, create)[0]
    assert again.ok and again.replayed, again.error
