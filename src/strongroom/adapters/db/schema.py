"""Table definitions (SQLAlchemy Core) shared by repositories and Alembic autogenerate.

Migrations never import this module: each revision is a frozen copy of the DDL it
applies, so editing a table here cannot rewrite history.
"""

from __future__ import annotations

import sqlalchemy as sa

# Deterministic constraint names: Alembic can only drop or alter what it can name, and
# SQLite's batch mode needs names to recreate tables.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

TENANT_STATUSES = ("active", "suspended", "closed")

# Every other object belongs to a tenant: it is the unit of isolation and of suspension.
tenants = sa.Table(
    "tenants",
    metadata,
    # A UUID as its canonical 36-character text: the same on SQLite and PostgreSQL.
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column(
        "created_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.current_timestamp(),
    ),
    sa.CheckConstraint("status IN ('active', 'suspended', 'closed')", name="status"),
    sa.CheckConstraint("length(name) > 0", name="name_not_empty"),
)

# OAuth 2.0 clients (RFC 6749 §2). The id is global (the token endpoint finds a client by
# it before it knows the tenant); everything else about a client belongs to its tenant.
oauth_clients = sa.Table(
    "oauth_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    # argon2id PHC string; NULL for a client that authenticates without a shared secret.
    sa.Column("secret_hash", sa.Text, nullable=True),
    # Space-separated scope tokens (RFC 6749 §3.3), sorted.
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("dpop_required", sa.Boolean, nullable=False),
    sa.Column("is_operator", sa.Boolean, nullable=False),
    # Epoch seconds, like every time the auth domain handles.
    sa.Column("created_at", sa.Double, nullable=False),
    sa.CheckConstraint("status IN ('active', 'suspended')", name="status"),
    sa.CheckConstraint("length(client_id) > 0", name="client_id_not_empty"),
    # Target of token_revocations' foreign key: a revocation's tenant is its client's.
    sa.UniqueConstraint("client_id", "tenant_id"),
)

# Token signing keys, private halves encrypted at rest (AES-256-GCM under the KEK).
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(64), primary_key=True),
    sa.Column("alg", sa.String(16), nullable=False),
    sa.Column("private_key_enc", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("activated_at", sa.Double, nullable=True),
    sa.Column("retired_at", sa.Double, nullable=True),
    sa.CheckConstraint("state IN ('next', 'active', 'retired')", name="state"),
    # Two active keys would make "which key signs" depend on row order.
    sa.Index(
        "uq_signing_keys_one_active",
        "state",
        unique=True,
        sqlite_where=sa.text("state = 'active'"),
        postgresql_where=sa.text("state = 'active'"),
    ),
)

# Revoked access tokens (RFC 7009): the introspection endpoint's source of truth.
token_revocations = sa.Table(
    "token_revocations",
    metadata,
    sa.Column("jti", sa.String(128), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False, index=True),
    sa.Column("client_id", sa.String(64), nullable=False),
    # The token's own exp: after it the row may be pruned, the token being dead anyway.
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("revoked_at", sa.Double, nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    # The pair, not each column alone: the database refuses a revocation filed under
    # another tenant than the one the token's client belongs to.
    sa.ForeignKeyConstraint(
        ["client_id", "tenant_id"], ["oauth_clients.client_id", "oauth_clients.tenant_id"]
    ),
)

# The embedded stream every pod polls: revocations and suspensions in commit order.
# seq is the pods' cursor, so it must only grow: AUTOINCREMENT stops SQLite from reusing
# the highest rowid after a prune, and writers serialise on the table (see
# auth_repositories) so on PostgreSQL a smaller seq never commits after a larger one.
deny_list_events = sa.Table(
    "deny_list_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    # NULL: never expires (a client suspension kept until the client is reactivated).
    sa.Column("expires_at", sa.Double, nullable=True, index=True),
    # Why the entry exists (the only record of a suspension's reason).
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.CheckConstraint("kind IN ('token', 'client')", name="kind"),
    sqlite_autoincrement=True,
)
