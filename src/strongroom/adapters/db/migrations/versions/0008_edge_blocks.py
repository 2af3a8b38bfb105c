"""Edge blocklist: IP/CIDR and OAuth-client block and allow entries with a change
sequence (``version``) every edge worker polls (issue 6).

Revision ID: 0008_edge_blocks
Revises: 0007_audit_log
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_edge_blocks"
down_revision: str | None = "0007_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "edge_blocks",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("removed_at", sa.Double(), nullable=True),
        sa.Column("removed_by", sa.String(length=200), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("kind IN ('ip', 'cidr', 'client')", name=op.f("ck_edge_blocks_kind")),
        sa.CheckConstraint("action IN ('block', 'allow')", name=op.f("ck_edge_blocks_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_edge_blocks")),
        sa.UniqueConstraint("version", name=op.f("uq_edge_blocks_version")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_edge_blocks_kind_value", "edge_blocks", ["kind", "value"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_edge_blocks_kind_value", "edge_blocks")
    op.drop_table("edge_blocks")
