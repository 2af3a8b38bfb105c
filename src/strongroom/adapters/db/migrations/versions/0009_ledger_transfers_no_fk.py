"""Ledger transfers without per-row foreign keys to their accounts (ADR 0009).

The store already proves both accounts exist: it reads them, and locks their balance
rows, in the transaction that inserts the transfer, and accounts are never deleted.
The two foreign keys repeated that proof in a trigger per key per row, which was more
than half of PostgreSQL's cost of inserting a transfer (16 → 7.5 µs a row, measured).

Revision ID: 0009_ledger_transfers_no_fk
Revises: 0008_edge_blocks
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009_ledger_transfers_no_fk"
down_revision: str | None = "0008_edge_blocks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEYS = {
    "fk_ledger_transfers_tenant_id_debit_account_id_ledger_accounts": "debit_account_id",
    "fk_ledger_transfers_tenant_id_credit_account_id_ledger_accounts": "credit_account_id",
}


def upgrade() -> None:
    with op.batch_alter_table("ledger_transfers") as batch:
        for name in _KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("ledger_transfers") as batch:
        for name, column in _KEYS.items():
            batch.create_foreign_key(
                name, "ledger_accounts", ["tenant_id", column], ["tenant_id", "id"]
            )
