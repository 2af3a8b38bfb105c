"""Client key sets for ``private_key_jwt`` client authentication (RFC 7523 §2.2).

Revision ID: 0005_client_jwks
Revises: 0004_users_codes_refresh
Create Date: 2025-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_client_jwks"
down_revision: str | None = "0004_users_codes_refresh"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: a plain ALTER TABLE on both backends, no
    # table rebuild (existing clients keep authenticating with their secrets).
    op.add_column("oauth_clients", sa.Column("jwks", sa.Text(), nullable=True))


def downgrade() -> None:
    # SQLite (>= 3.35) drops a column without constraints in place, like PostgreSQL; a
    # batch rebuild would have to juggle the foreign keys pointing at the table.
    op.drop_column("oauth_clients", "jwks")
