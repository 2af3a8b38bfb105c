"""Ledger housekeeping the worker runs: expiring holds and forgetting old idempotency keys."""

from __future__ import annotations

from itertools import groupby

from strongroom.ledger.commands import ExpireTransfer
from strongroom.ledger.ports import SYSTEM_ACTOR, LedgerStore, Unit

EXPIRY_BATCH = 1000


def expire_due_holds(store: LedgerStore, now_us: int, *, limit: int = EXPIRY_BATCH) -> int:
    """Void every hold whose ``expires_at`` has passed; returns how many were expired.

    Each hold is its own item: one that a client posted or voided meanwhile is refused
    (``transfer-not-pending``) without stopping the others, so a hold resolves once.
    """
    expired = 0
    while True:
        due = store.due_holds(now_us, limit)
        if not due:
            return expired
        units = [
            Unit(
                tenant_id=tenant,
                commands=tuple(ExpireTransfer(transfer_id) for _, transfer_id in holds),
                actor=SYSTEM_ACTOR,
                atomic=False,
            )
            for tenant, holds in groupby(sorted(due), key=lambda pair: pair[0])
        ]
        results = store.execute(units, now_us)
        expired += sum(outcome.ok for outcomes in results for outcome in outcomes)
        if len(due) < limit:
            return expired
