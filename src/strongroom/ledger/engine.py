"""Applying commands to a snapshot of the ledger: pure, deterministic, storage-free.

The store locks what a group of units touches, loads it into a :class:`Snapshot`, calls
:func:`apply`, and writes the returned :class:`Effects` in the same transaction. So every
balance check here runs on values no one else can change before the commit: the check
is inside the write, with no read-then-write race, on SQLite and PostgreSQL alike.

Units are independent: a failed unit (or, in a non-atomic unit, a failed item) leaves
no trace. Within a unit, later commands see earlier ones (a batch may fund a wallet and
spend from it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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
    Entry,
    JournalEntry,
    LedgerEvent,
    Leg,
    NormalSide,
    Side,
    Transfer,
)
from strongroom.ledger.ports import Outcome, Unit

Key = tuple[str, str]  # (tenant_id, id)


@dataclass
class Snapshot:
    """What the store loaded (and locked) for a group; keyed by (tenant_id, id).

    ``system`` maps (tenant_id, currency, code) to the system account's id for every
    currency a tenant already uses.
    """

    accounts: dict[Key, Account] = field(default_factory=dict)
    transfers: dict[Key, Transfer] = field(default_factory=dict)
    journal_entries: dict[Key, JournalEntry] = field(default_factory=dict)
    system: dict[tuple[str, str, str], str] = field(default_factory=dict)
    # The room (see ``Account.room``) of a system account created in this transaction.
    new_system_room: int | None = None


@dataclass
class Effects:
    """What to write: final values of new/changed rows, entries, and events per unit."""

    new_accounts: list[Account] = field(default_factory=list)
    changed_accounts: list[Account] = field(default_factory=list)  # status / limit only
    balance_deltas: dict[Key, Balances] = field(default_factory=dict)
    new_transfers: list[Transfer] = field(default_factory=list)
    changed_transfers: list[Transfer] = field(default_factory=list)
    new_journal_entries: list[JournalEntry] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    entry_tenants: list[str] = field(default_factory=list)  # parallel to entries
    events: list[tuple[int, LedgerEvent]] = field(default_factory=list)  # (unit index, event)


def needs_exact_balance(account: Account, side: Side) -> bool:
    """Whether moving money on ``side`` of ``account`` must be checked against its balance.

    Credits to a credit-normal account (and debits to a debit-normal one) can only grow it,
    and an unbounded account has nothing to check: those never need the exact balance, so
    a hot account that only receives money need not be locked whole.
    """
    return side_shrinks_headroom(account.bounded, account.normal, side)


def side_shrinks_headroom(bounded: bool, normal: NormalSide, side: Side) -> bool:
    """``needs_exact_balance`` for a store that has the columns but no ``Account`` yet."""
    return bounded and (normal == "credit") == (side == "debit")


class _Scope:
    """Changes of one unit or item, undone by dropping the scope."""

    __slots__ = (
        "accounts",
        "entries",
        "events",
        "journal_entries",
        "parent",
        "snapshot",
        "system",
        "transfers",
    )

    def __init__(self, parent: _Scope | None, snapshot: Snapshot) -> None:
        self.parent = parent
        self.snapshot = snapshot
        self.accounts: dict[Key, Account] = {}
        self.transfers: dict[Key, Transfer] = {}
        self.journal_entries: dict[Key, JournalEntry] = {}
        self.system: dict[tuple[str, str, str], str] = {}
        self.entries: list[tuple[str, Entry]] = []  # (tenant_id, entry)
        self.events: list[LedgerEvent] = []

    def _find(self, table: str, key: Any) -> Any:
        """``key`` in this scope's ``table``, else its parents', else the snapshot's."""
        scope: _Scope | None = self
        while scope is not None:
            rows = getattr(scope, table)
            if key in rows:
                return rows[key]
            scope = scope.parent
        return getattr(self.snapshot, table).get(key)

    # accounts and transfers, looked up for every transfer of a group, spelled out:
    # _find's attribute lookup by name costs more than the dictionary lookups.
    def account(self, key: Key) -> Account | None:
        scope: _Scope | None = self
        while scope is not None:
            found = scope.accounts.get(key)
            if found is not None:
                return found
            scope = scope.parent
        return self.snapshot.accounts.get(key)

    def transfer(self, key: Key) -> Transfer | None:
        scope: _Scope | None = self
        while scope is not None:
            found = scope.transfers.get(key)
            if found is not None:
                return found
            scope = scope.parent
        return self.snapshot.transfers.get(key)

    def journal_entry(self, key: Key) -> JournalEntry | None:
        found: JournalEntry | None = self._find("journal_entries", key)
        return found

    def system_account(self, key: tuple[str, str, str]) -> str | None:
        found: str | None = self._find("system", key)
        return found

    def merge_into(self, parent: _Scope) -> None:
        parent.accounts.update(self.accounts)
        parent.transfers.update(self.transfers)
        parent.journal_entries.update(self.journal_entries)
        parent.system.update(self.system)
        parent.entries.extend(self.entries)
        parent.events.extend(self.events)


class _Apply:
    __slots__ = ("new_id", "now", "scope", "tenant")

    def __init__(self, scope: _Scope, tenant: str, now_us: int, new_id: Callable[[], str]) -> None:
        self.scope = scope
        self.tenant = tenant
        self.now = now_us
        self.new_id = new_id

    # -- helpers -------------------------------------------------------------------------
    def event(self, type_: str, subjects: Iterable[str], data: dict[str, Any]) -> None:
        self.scope.events.append(LedgerEvent(type_, self.tenant, tuple(subjects), data, self.now))

    def account(self, account_id: str) -> Account:
        found = self.scope.account((self.tenant, account_id))
        if found is None:
            raise LedgerError("account-not-found", f"No account {account_id}.")
        return found

    def transfer(self, transfer_id: str) -> Transfer:
        found = self.scope.transfer((self.tenant, transfer_id))
        if found is None:
            raise LedgerError("transfer-not-found", f"No transfer {transfer_id}.")
        return found

    def move(
        self,
        account: Account,
        counter: Counter,
        delta: int,
        *,
        transfer_id: str | None = None,
        journal_entry_id: str | None = None,
    ) -> Account:
        value = getattr(account.balances, counter) + delta
        room = account.room
        if value > AMOUNT_MAX or (room is not None and delta > getattr(room, counter)):
            raise LedgerError(
                "overflow", f"{counter} of account {account.id} would exceed the integer range"
            )
        updated = account.moved(
            account.balances.plus(counter, delta),
            None if room is None else room.plus(counter, -delta),
        )
        self.scope.accounts[(self.tenant, account.id)] = updated
        self.scope.entries.append(
            (
                self.tenant,
                Entry(
                    account_id=account.id,
                    counter=counter,
                    delta=delta,
                    created_at_us=self.now,
                    transfer_id=transfer_id,
                    journal_entry_id=journal_entry_id,
                ),
            )
        )
        return updated

    def usable(self, account: Account, currency: str) -> None:
        if account.status == "frozen":
            raise LedgerError("account-frozen", f"Account {account.id} is frozen.")
        if account.status == "closed":
            raise LedgerError("account-closed", f"Account {account.id} is closed.")
        if account.currency != currency:
            raise LedgerError(
                "currency-mismatch",
                f"Account {account.id} holds {account.currency}, not {currency}.",
            )

    def check_headroom(self, account: Account, *sides: Side) -> None:
        """Refuse if ``account`` is past its bound after money moved on ``sides`` of it.

        Only sides that can shrink the headroom are checked (`needs_exact_balance`): the
        store locks exactly those balances, so a check never reads an unlocked value.
        """
        if sides:
            # A plain loop: this runs twice for every transfer of a group.
            for side in sides:
                if side_shrinks_headroom(account.bounded, account.normal, side):
                    break
            else:
                return
        headroom = account.headroom()
        if headroom is not None and headroom < 0:
            raise LedgerError(
                "insufficient-funds",
                f"Account {account.id} would exceed its available balance"
                + (" and overdraft limit." if account.overdraft_limit else "."),
            )

    # -- accounts ------------------------------------------------------------------------
    def create_account(self, command: CreateAccount) -> Outcome:
        existing = self.scope.account((self.tenant, command.id))
        if existing is not None:
            same = (
                existing.kind == command.kind
                and existing.currency == command.currency
                and existing.initial_overdraft_limit == command.overdraft_limit
                and existing.metadata == command.metadata
            )
            if not same:
                raise LedgerError(
                    "idempotency-conflict", f"Account {command.id} exists with other values."
                )
            return Outcome(existing, replayed=True)
        self.ensure_system_accounts(command.currency)
        account = Account(
            id=command.id,
            tenant_id=self.tenant,
            currency=command.currency,
            kind=command.kind,
            normal="credit",
            bounded=True,
            overdraft_limit=command.overdraft_limit,
            status="active",
            metadata=command.metadata,
            created_at_us=self.now,
            initial_overdraft_limit=command.overdraft_limit,
        )
        self.scope.accounts[(self.tenant, account.id)] = account
        self.event("account.created", [account.id], _account_data(account))
        return Outcome(account)

    def ensure_system_accounts(self, currency: str) -> None:
        room = self.scope.snapshot.new_system_room
        for code in SYSTEM_ACCOUNT_CODES:
            key = (self.tenant, currency, code)
            if self.scope.system_account(key) is not None:
                continue
            account = Account(
                id=self.new_id(),
                tenant_id=self.tenant,
                currency=currency,
                kind="system",
                normal="debit" if code == "clearing" else "credit",
                bounded=code != "clearing",
                overdraft_limit=0,
                status="active",
                metadata={},
                created_at_us=self.now,
                code=code,
                room=None if room is None else Balances(room, room, room, room),
            )
            self.scope.accounts[(self.tenant, account.id)] = account
            self.scope.system[key] = account.id
            self.event("account.created", [account.id], _account_data(account))

    def change_account(self, command: ChangeAccount) -> Outcome:
        account = self.account(command.account_id)
        if account.kind == "system":
            raise LedgerError("account-immutable", f"Account {account.id} is a system account.")
        if account.status == "closed":
            raise LedgerError("account-closed", f"Account {account.id} is closed.")
        match command.action:
            case "freeze":
                updated, event = replace(account, status="frozen"), "account.frozen"
            case "unfreeze":
                updated, event = replace(account, status="active"), "account.unfrozen"
            case "close":
                b = account.balances
                if b.balance(account.normal) != 0 or b.debits_pending or b.credits_pending:
                    raise LedgerError(
                        "account-not-empty", f"Account {account.id} has a balance or open holds."
                    )
                updated, event = replace(account, status="closed"), "account.closed"
            case "set_overdraft_limit":
                assert command.overdraft_limit is not None  # validate() guarantees it
                updated = replace(account, overdraft_limit=command.overdraft_limit)
                event = "account.limit_changed"
                # Lowering the limit below what is already used would leave the account in
                # breach: refuse, like a credit line that cannot be cut below the drawn sum.
                self.check_headroom(updated)
        self.scope.accounts[(self.tenant, account.id)] = updated
        self.event(
            event,
            [account.id],
            {"status": updated.status, "overdraft_limit": updated.overdraft_limit},
        )
        return Outcome(updated)

    # -- transfers -----------------------------------------------------------------------
    def create_transfer(self, command: CreateTransfer) -> Outcome:
        existing = self.scope.transfer((self.tenant, command.id))
        if existing is not None:
            if _same_transfer(existing, command):
                return Outcome(existing, replayed=True)
            raise LedgerError(
                "idempotency-conflict", f"Transfer {command.id} exists with other values."
            )
        if command.expires_at_us is not None and command.expires_at_us <= self.now:
            raise LedgerError("invalid-expiry", "expires_at must be in the future")
        debit = self.account(command.debit_account_id)
        credit = self.account(command.credit_account_id)
        self.usable(debit, command.currency)
        self.usable(credit, command.currency)
        transfer = Transfer(
            id=command.id,
            tenant_id=self.tenant,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=command.amount,
            currency=command.currency,
            status="pending" if command.pending else "posted",
            pending=command.pending,
            metadata=command.metadata,
            created_at_us=self.now,
            expires_at_us=command.expires_at_us,
        )
        kind = "pending" if command.pending else "posted"
        debit = self.move(debit, _counter("debit", kind), command.amount, transfer_id=transfer.id)
        credit = self.move(
            credit, _counter("credit", kind), command.amount, transfer_id=transfer.id
        )
        self.check_headroom(debit, "debit")
        self.check_headroom(credit, "credit")
        self.scope.transfers[(self.tenant, transfer.id)] = transfer
        self.event(
            "transfer.pending" if command.pending else "transfer.created",
            [transfer.id, debit.id, credit.id],
            _transfer_data(transfer),
        )
        return Outcome(transfer)

    def resolve(self, transfer_id: str, posted: int | None, status: str) -> Outcome:
        """Post (``posted`` > 0) or void/expire (0) a hold; a hold resolves at most once."""
        transfer = self.transfer(transfer_id)
        if transfer.status != "pending":
            raise LedgerError(
                "transfer-not-pending", f"Transfer {transfer.id} is {transfer.status}, not pending."
            )
        expired = transfer.expires_at_us is not None and transfer.expires_at_us <= self.now
        if status == "posted" and expired:
            raise LedgerError("hold-expired", f"The hold {transfer.id} expired.")
        if status == "expired" and not expired:
            raise LedgerError("transfer-not-pending", f"The hold {transfer.id} has not expired.")
        amount = transfer.amount if posted is None else posted
        if amount > transfer.amount:
            raise LedgerError("exceeds-hold", f"{amount} exceeds the held {transfer.amount}.")
        debit = self.account(transfer.debit_account_id)
        credit = self.account(transfer.credit_account_id)
        if status == "posted":
            # Frozen accounts keep their holds: nothing moves until they are unfrozen.
            for account in (debit, credit):
                if account.status != "active":
                    raise LedgerError(
                        f"account-{account.status}", f"Account {account.id} is {account.status}."
                    )
        ids = {"transfer_id": transfer.id}
        self.move(debit, "debits_pending", -transfer.amount, **ids)
        self.move(credit, "credits_pending", -transfer.amount, **ids)
        if amount:
            self.move(self.account(debit.id), "debits_posted", amount, **ids)
            self.move(self.account(credit.id), "credits_posted", amount, **ids)
        resolved = replace(transfer, status=status, posted_amount=amount, resolved_at_us=self.now)  # type: ignore[arg-type]
        self.scope.transfers[(self.tenant, transfer.id)] = resolved
        self.event(
            f"transfer.{status}",
            [transfer.id, debit.id, credit.id],
            {"posted_amount": amount, "released_amount": transfer.amount - amount},
        )
        return Outcome(resolved)

    def reverse(self, command: ReverseTransfer) -> Outcome:
        existing = self.scope.transfer((self.tenant, command.id))
        if existing is not None:
            same = (
                existing.reverses_id == command.transfer_id
                and (command.amount is None or command.amount == existing.amount)
                and existing.metadata == command.metadata
            )
            if same:
                return Outcome(existing, replayed=True)
            raise LedgerError(
                "idempotency-conflict", f"Transfer {command.id} exists with other values."
            )
        original = self.transfer(command.transfer_id)
        posted = original.posted_amount if original.pending else original.amount
        if original.status != "posted" or original.reverses_id is not None or not posted:
            raise LedgerError("not-reversible", f"Transfer {original.id} is not a posted transfer.")
        left = posted - original.reversed_amount
        amount = left if command.amount is None else command.amount
        if left <= 0 or amount > left:
            raise LedgerError("exceeds-reversible", f"{amount} exceeds the {left} left to reverse.")
        outcome = self.create_transfer(
            CreateTransfer(
                id=command.id,
                debit_account_id=original.credit_account_id,
                credit_account_id=original.debit_account_id,
                amount=amount,
                currency=original.currency,
                metadata=command.metadata,
            )
        )
        assert isinstance(outcome.value, Transfer)
        reversal = replace(outcome.value, reverses_id=original.id)
        self.scope.transfers[(self.tenant, reversal.id)] = reversal
        self.scope.transfers[(self.tenant, original.id)] = replace(
            original, reversed_amount=original.reversed_amount + amount
        )
        self.event("transfer.reversed", [original.id, reversal.id], {"amount": amount})
        return Outcome(reversal)

    def journal(self, command: CreateJournalEntry) -> Outcome:
        existing = self.scope.journal_entry((self.tenant, command.id))
        if existing is not None:
            if existing.legs == command.legs and existing.metadata == command.metadata:
                return Outcome(existing, replayed=True)
            raise LedgerError(
                "idempotency-conflict", f"Journal entry {command.id} exists with other values."
            )
        touched: dict[str, set[Side]] = {}
        for leg in command.legs:
            account = self.account(leg.account_id)
            self.usable(account, leg.currency)
            counter: Counter = "debits_posted" if leg.side == "debit" else "credits_posted"
            self.move(account, counter, leg.amount, journal_entry_id=command.id)
            touched.setdefault(account.id, set()).add(leg.side)
        for account_id, sides in touched.items():
            self.check_headroom(self.account(account_id), *sides)
        entry = JournalEntry(command.id, self.tenant, command.legs, command.metadata, self.now)
        self.scope.journal_entries[(self.tenant, entry.id)] = entry
        self.event(
            "journal_entry.created",
            [entry.id, *touched],
            {"legs": [_leg_data(leg) for leg in entry.legs], "metadata": entry.metadata},
        )
        return Outcome(entry)

    def run(self, command: Command) -> Outcome:
        validate(command)
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
        raise AssertionError(f"unknown command {command!r}")  # pragma: no cover


def apply(
    snapshot: Snapshot,
    units: Sequence[Unit],
    now_us: int,
    *,
    new_id: Callable[[], str],
) -> tuple[list[list[Outcome]], Effects]:
    """Apply ``units`` in order; one outcome list per unit, and what to write."""
    root = _Scope(None, snapshot)
    results: list[list[Outcome]] = []
    unit_events: list[tuple[int, list[LedgerEvent]]] = []
    for index, unit in enumerate(units):
        unit_scope = _Scope(root, snapshot)
        outcomes: list[Outcome] = []
        failed: int | None = None
        for position, command in enumerate(unit.commands):
            item_scope = _Scope(unit_scope, snapshot)
            try:
                outcome = _Apply(item_scope, unit.tenant_id, now_us, new_id).run(command)
            except LedgerError as error:
                outcomes.append(Outcome(error=error))
                if unit.atomic:
                    failed = position
                    break
                continue
            item_scope.merge_into(unit_scope)
            outcomes.append(outcome)
        if failed is not None:
            reason = outcomes[failed].error
            assert reason is not None
            aborted = LedgerError(
                "batch-aborted", f"Item {failed} failed ({reason.code}); nothing applied."
            )
            outcomes = [
                outcomes[i] if i == failed else Outcome(error=aborted)
                for i in range(len(unit.commands))
            ]
            results.append(outcomes)
            continue
        events_before = len(root.events)
        unit_scope.merge_into(root)
        unit_events.append((index, root.events[events_before:]))
        results.append(outcomes)
    return results, _effects(snapshot, root, unit_events)


def _effects(
    snapshot: Snapshot, root: _Scope, unit_events: list[tuple[int, list[LedgerEvent]]]
) -> Effects:
    effects = Effects()
    for key, account in root.accounts.items():
        before = snapshot.accounts.get(key)
        if before is None:
            effects.new_accounts.append(replace(account, balances=Balances()))
        elif (before.status, before.overdraft_limit) != (account.status, account.overdraft_limit):
            effects.changed_accounts.append(account)
    for key, transfer in root.transfers.items():
        if key in snapshot.transfers:
            effects.changed_transfers.append(transfer)
        else:
            effects.new_transfers.append(transfer)
    effects.new_journal_entries = list(root.journal_entries.values())
    for tenant, entry in root.entries:
        key = (tenant, entry.account_id)
        effects.balance_deltas[key] = effects.balance_deltas.get(key, Balances()).plus(
            entry.counter, entry.delta
        )
        effects.entries.append(entry)
        effects.entry_tenants.append(tenant)
    for index, events in unit_events:
        effects.events.extend((index, event) for event in events)
    return effects


_COUNTER_OF: dict[tuple[str, str], Counter] = {
    (counter.split("s_")[0], counter.split("s_")[1]): counter for counter in COUNTERS
}


def _counter(side: Side, kind: str) -> Counter:
    return _COUNTER_OF[(side, kind)]


def _same_transfer(existing: Transfer, command: CreateTransfer) -> bool:
    return (
        existing.debit_account_id == command.debit_account_id
        and existing.credit_account_id == command.credit_account_id
        and existing.amount == command.amount
        and existing.currency == command.currency
        and existing.pending == command.pending
        and existing.expires_at_us == command.expires_at_us
        and existing.metadata == command.metadata
        and existing.reverses_id is None
    )


def _account_data(account: Account) -> dict[str, Any]:
    return {
        "kind": account.kind,
        "code": account.code,
        "currency": account.currency,
        "overdraft_limit": account.overdraft_limit,
        "metadata": account.metadata,
    }


def _transfer_data(transfer: Transfer) -> dict[str, Any]:
    return {
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "amount": transfer.amount,
        "currency": transfer.currency,
        "pending": transfer.pending,
        "expires_at_us": transfer.expires_at_us,
        "metadata": transfer.metadata,
    }


def _leg_data(leg: Leg) -> dict[str, Any]:
    return {
        "account_id": leg.account_id,
        "side": leg.side,
        "amount": leg.amount,
        "currency": leg.currency,
    }
