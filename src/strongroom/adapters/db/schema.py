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
