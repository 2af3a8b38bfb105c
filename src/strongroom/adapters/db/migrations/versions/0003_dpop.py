"""DPoP (RFC 9449): proof identifiers already seen, shared by every pod (§11.1).

Revision ID: 0003_dpop
Revises: 0002_oauth
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_dpop"
down_revision: str | None = "0002_oauth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dpop_jti",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_dpop_jti")),
    )
    op.create_index(op.f("ix_dpop_jti_expires_at"), "dpop_jti", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("dpop_jti")
