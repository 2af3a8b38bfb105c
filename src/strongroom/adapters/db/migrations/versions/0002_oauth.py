"""OAuth 2.0: clients, signing keys, token revocations and the pods' deny-list stream.

Revision ID: 0002_oauth
Revises: 0001_tenants
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_oauth"
down_revision: str | None = "0001_tenants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("dpop_required", sa.Boolean(), nullable=False),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'suspended')", name=op.f("ck_oauth_clients_status")
        ),
        sa.CheckConstraint(
            "length(client_id) > 0", name=op.f("ck_oauth_clients_client_id_not_empty")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_oauth_clients_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_oauth_clients")),
        sa.UniqueConstraint(
            "client_id", "tenant_id", name=op.f("uq_oauth_clients_client_id_tenant_id")
        ),
    )
    op.create_index(
        op.f("ix_oauth_clients_tenant_id"), "oauth_clients", ["tenant_id"], unique=False
    )

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("private_key_enc", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("activated_at", sa.Double(), nullable=True),
        sa.Column("retired_at", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "state IN ('next', 'active', 'retired')", name=op.f("ck_signing_keys_state")
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_index(
        "uq_signing_keys_one_active",
        "signing_keys",
        ["state"],
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    )

    op.create_table(
        "token_revocations",
        sa.Column("jti", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id", "tenant_id"],
            ["oauth_clients.client_id", "oauth_clients.tenant_id"],
            name=op.f("fk_token_revocations_client_id_tenant_id_oauth_clients"),
        ),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_token_revocations")),
    )
    op.create_index(
        op.f("ix_token_revocations_tenant_id"), "token_revocations", ["tenant_id"], unique=False
    )
    op.create_index(
        op.f("ix_token_revocations_expires_at"), "token_revocations", ["expires_at"], unique=False
    )

    op.create_table(
        "deny_list_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("kind IN ('token', 'client')", name=op.f("ck_deny_list_events_kind")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_deny_list_events")),
        # seq is the pods' cursor: SQLite must never hand out a pruned top value again.
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_deny_list_events_expires_at"), "deny_list_events", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_table("deny_list_events")
    op.drop_table("token_revocations")
    op.drop_table("signing_keys")
    op.drop_table("oauth_clients")
