"""End users, client types and redirect URIs, authorization codes, refresh-token families.

Revision ID: 0004_users_codes_refresh
Revises: 0003_dpop
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_users_codes_refresh"
down_revision: str | None = "0003_dpop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One statement both backends accept (SQLite's ALTER TABLE takes a column CHECK; a
    # batch table rebuild would have to juggle the foreign keys pointing at the table).
    op.execute(
        "ALTER TABLE oauth_clients ADD COLUMN client_type VARCHAR(16) "
        "DEFAULT 'confidential' NOT NULL "
        "CONSTRAINT ck_oauth_clients_client_type "
        "CHECK (client_type IN ('confidential', 'public'))"
    )

    op.create_table(
        "oauth_client_redirects",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["oauth_clients.client_id"],
            name=op.f("fk_oauth_client_redirects_client_id_oauth_clients"),
        ),
        sa.PrimaryKeyConstraint(
            "client_id", "redirect_uri", name=op.f("pk_oauth_client_redirects")
        ),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("is_operator", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.CheckConstraint("status IN ('active', 'disabled')", name=op.f("ck_users_status")),
        sa.CheckConstraint("length(username) > 0", name=op.f("ck_users_username_not_empty")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_users_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("tenant_id", "username", name=op.f("uq_users_tenant_id_username")),
        sa.UniqueConstraint("id", "tenant_id", name=op.f("uq_users_id_tenant_id")),
    )

    op.create_table(
        "oauth_authorization_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("auth_time", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.Column("reused_at", sa.Double(), nullable=True),
        sa.Column("access_jti", sa.String(128), nullable=True),
        sa.Column("access_exp", sa.Double(), nullable=True),
        sa.Column("family_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id", "tenant_id"],
            ["oauth_clients.client_id", "oauth_clients.tenant_id"],
            name=op.f("fk_oauth_authorization_codes_client_id_tenant_id_oauth_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "tenant_id"],
            ["users.id", "users.tenant_id"],
            name=op.f("fk_oauth_authorization_codes_user_id_tenant_id_users"),
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oauth_authorization_codes")),
    )
    op.create_index(
        op.f("ix_oauth_authorization_codes_expires_at"),
        "oauth_authorization_codes",
        ["expires_at"],
        unique=False,
    )

    op.create_table(
        "oauth_refresh_families",
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("auth_time", sa.Double(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("dpop_jkt", sa.String(128), nullable=True),
        sa.Column("rotated_at", sa.Double(), nullable=True),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.Column("revoked_reason", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id", "tenant_id"],
            ["oauth_clients.client_id", "oauth_clients.tenant_id"],
            name=op.f("fk_oauth_refresh_families_client_id_tenant_id_oauth_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id", "tenant_id"],
            ["users.id", "users.tenant_id"],
            name=op.f("fk_oauth_refresh_families_user_id_tenant_id_users"),
        ),
        sa.PrimaryKeyConstraint("family_id", name=op.f("pk_oauth_refresh_families")),
    )
    op.create_index(
        op.f("ix_oauth_refresh_families_expires_at"),
        "oauth_refresh_families",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_oauth_refresh_families_user_id"),
        "oauth_refresh_families",
        ["user_id"],
        unique=False,
    )

    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.Column("replaced_by", sa.String(64), nullable=True),
        sa.Column("access_jti", sa.String(128), nullable=False),
        sa.Column("access_iat", sa.Double(), nullable=False),
        sa.Column("access_exp", sa.Double(), nullable=False),
        sa.Column("access_scope", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["oauth_refresh_families.family_id"],
            name=op.f("fk_oauth_refresh_tokens_family_id_oauth_refresh_families"),
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_oauth_refresh_tokens")),
    )
    op.create_index(
        op.f("ix_oauth_refresh_tokens_family_id"),
        "oauth_refresh_tokens",
        ["family_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("oauth_refresh_tokens")
    op.drop_table("oauth_refresh_families")
    op.drop_table("oauth_authorization_codes")
    op.drop_table("users")
    op.drop_table("oauth_client_redirects")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_oauth_clients_client_type"), "oauth_clients", type_="check")
    op.drop_column("oauth_clients", "client_type")
