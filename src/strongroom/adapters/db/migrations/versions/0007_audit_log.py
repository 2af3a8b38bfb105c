"""The audit log's Merkle tree: leaves, perfect-subtree nodes, checkpoints, the sequencer's
horizon, the log's verifier keys and the subject index for search (issue 5). Every table is
append-only, enforced by triggers like ``audit_entries``.

Revision ID: 0007_audit_log
Revises: 0006_ledger
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_audit_log"
down_revision: str | None = "0006_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = (
    "audit_subjects",
    "audit_keys",
    "audit_horizons",
    "audit_checkpoints",
    "audit_tree_nodes",
    "audit_leaves",
)

# Like audit_entries (0006): the database refuses change; the signed checkpoints are what
# make a superuser's rewrite evident.
_SQLITE_TRIGGERS = tuple(
    statement
    for table in _TABLES
    for statement in (
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""",
    )
)
_POSTGRES_TRIGGERS = (
    """CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
    *(
        statement
        for table in _TABLES
        for statement in (
            f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION audit_log_refuse()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse()""",
        )
    ),
)


def upgrade() -> None:
    # Leaf i of the tree is the audit entry entry_seq (leaf order is sequencing order).
    op.create_table(
        "audit_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("entry_seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("sequenced_at_us", sa.BigInteger, nullable=False),
    )
    # Complete perfect subtrees (level 0: leaf hashes); they never change once complete.
    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("published_at_us", sa.BigInteger, nullable=False),
    )
    # Every audit_entries row with seq <= horizon_seq is in the tree or can never commit.
    op.create_table(
        "audit_horizons",
        sa.Column("horizon_seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
    )
    # The log's C2SP verifier keys, so pods serve the key without holding the private one.
    op.create_table(
        "audit_keys",
        sa.Column("verifier_key", sa.String(512), primary_key=True),
        sa.Column("registered_at_us", sa.BigInteger, nullable=False),
    )
    # Subject search: audit_entries.subject_ids is JSON text; the sequencer writes one row
    # per (subject, entry) here.
    op.create_table(
        "audit_subjects",
        sa.Column("subject_id", sa.String(200), primary_key=True),
        sa.Column("entry_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    )
    op.create_index(
        "ix_audit_entries_tenant_id_event_type_occurred_at_us",
        "audit_entries",
        ["tenant_id", "event_type", "occurred_at_us"],
    )
    op.create_index(
        "ix_audit_entries_tenant_id_occurred_at_us",
        "audit_entries",
        ["tenant_id", "occurred_at_us"],
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION audit_log_refuse() CASCADE")
    op.drop_index("ix_audit_entries_tenant_id_occurred_at_us", "audit_entries")
    op.drop_index("ix_audit_entries_tenant_id_event_type_occurred_at_us", "audit_entries")
    for table in _TABLES:
        op.drop_table(table)
