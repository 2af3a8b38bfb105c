"""The double-entry ledger: accounts, balance shards, transfers, journal entries, entries,
the outbox, the append-only audit table and Idempotency-Key records (ADR 0006).

Revision ID: 0006_ledger
Revises: 0005_client_jwks
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_ledger"
down_revision: str | None = "0005_client_jwks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: rowid alias

_TABLES = (
    "idempotency_keys",
    "audit_entries",
    "outbox_events",
    "ledger_entries",
    "ledger_journal_entries",
    "ledger_transfers",
    "ledger_balances",
    "ledger_accounts",
)

# The audit table refuses change at the database too (a superuser can still disable the
# trigger: the Merkle log of the audit issue is what makes tampering evident).
_SQLITE_TRIGGERS = (
    """CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
    """CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
    BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END""",
)
_POSTGRES_TRIGGERS = (
    """CREATE FUNCTION audit_entries_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_entries is append-only'; END $$""",
    """CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_entries_refuse()""",
    """CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_refuse()""",
)


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column(
            "tenant_id",
            sa.String(36),
            sa.ForeignKey("tenants.id", name="fk_ledger_accounts_tenant_id_tenants"),
            primary_key=True,
        ),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("code", sa.String(16), nullable=True),
        sa.Column("normal", sa.String(6), nullable=False),
        sa.Column("bounded", sa.Boolean, nullable=False),
        sa.Column("overdraft_limit", sa.BigInteger, nullable=False),
        sa.Column("initial_overdraft_limit", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("shards", sa.SmallInteger, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("kind IN ('wallet', 'merchant', 'system')", name="kind"),
        sa.CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status"),
        sa.CheckConstraint("normal IN ('credit', 'debit')", name="normal"),
        sa.CheckConstraint("overdraft_limit >= 0", name="overdraft_limit"),
        sa.CheckConstraint("shards >= 1", name="shards"),
        sa.Index(
            "uq_ledger_accounts_system",
            "tenant_id",
            "currency",
            "code",
            unique=True,
            sqlite_where=sa.text("code IS NOT NULL"),
            postgresql_where=sa.text("code IS NOT NULL"),
        ),
    )

    # An account's counters, split over `shards` rows so that concurrent credits to a hot
    # account land on different rows; the account's counters are the sums.
    op.create_table(
        "ledger_balances",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["ledger_accounts.tenant_id", "ledger_accounts.id"]
        ),
    )

    op.create_table(
        "ledger_transfers",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("debit_account_id", sa.String(36), nullable=False),
        sa.Column("credit_account_id", sa.String(36), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("pending", sa.Boolean, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("posted_amount", sa.BigInteger, nullable=True),
        sa.Column("resolved_at_us", sa.BigInteger, nullable=True),
        sa.Column("reversed_amount", sa.BigInteger, nullable=False),
        sa.Column("reverses_id", sa.String(36), nullable=True),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("status IN ('posted', 'pending', 'voided', 'expired')", name="status"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        sa.ForeignKeyConstraint(
            ["tenant_id", "debit_account_id"], ["ledger_accounts.tenant_id", "ledger_accounts.id"]
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "credit_account_id"], ["ledger_accounts.tenant_id", "ledger_accounts.id"]
        ),
        # The expiry worker's scan: only open holds with an expiry are in the index.
        sa.Index(
            "ix_ledger_transfers_due",
            "expires_at_us",
            sqlite_where=sa.text("status = 'pending' AND expires_at_us IS NOT NULL"),
            postgresql_where=sa.text("status = 'pending' AND expires_at_us IS NOT NULL"),
        ),
    )

    op.create_table(
        "ledger_journal_entries",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("legs", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )

    # Every change to a counter: an account's counters always equal the sums of its entries.
    op.create_table(
        "ledger_entries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("counter", sa.String(16), nullable=False),
        sa.Column("delta", sa.BigInteger, nullable=False),
        sa.Column("transfer_id", sa.String(36), nullable=True),
        sa.Column("journal_entry_id", sa.String(36), nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Index("ix_ledger_entries_account", "tenant_id", "account_id", "seq"),
        sqlite_autoincrement=True,
    )

    # Written with the change it announces; a relay publishes it to the stream.
    op.create_table(
        "outbox_events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )

    # Append-only (triggers refuse UPDATE, DELETE and TRUNCATE): the audit issue's Merkle log
    # sequences these rows.
    op.create_table(
        "audit_entries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(36), nullable=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(200), nullable=True),
        sa.Column("subject_ids", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("occurred_at_us", sa.BigInteger, nullable=False),
        sqlite_autoincrement=True,
    )

    # Stripe-style Idempotency-Key records: the first response, replayed to any retry.
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.String(36), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("lease_until_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=False),
        sa.Column("response_status", sa.SmallInteger, nullable=True),
        sa.Column("response_body", sa.LargeBinary, nullable=True),
        sa.CheckConstraint("state IN ('started', 'done')", name="state"),
        sa.Index("ix_idempotency_keys_expires", "expires_at_us"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_entries_refuse() CASCADE")
    for table in _TABLES:
        op.drop_table(table)
