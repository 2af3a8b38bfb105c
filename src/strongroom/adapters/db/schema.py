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

# DPoP proofs already presented (RFC 9449 §11.1), shared by every pod so a proof replayed
# to another pod is refused too. The key is a digest of the proof's jwk thumbprint and jti
# (fixed width whatever the client sends); rows may be pruned once expires_at has passed,
# the proof being outside the iat window by then anyway.
dpop_jti = sa.Table(
    "dpop_jti",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
)

# --- end users, authorization codes, refresh-token families (migration 0004) -----------

# RFC 6749 §2.1 client type: a public client holds no secret and may only use the
# authorization-code grant with PKCE. Appended here rather than above so each
# migration's additions stay together.
oauth_clients.append_column(
    sa.Column("client_type", sa.String(16), nullable=False, server_default="confidential")
)
oauth_clients.append_constraint(
    sa.CheckConstraint("client_type IN ('confidential', 'public')", name="client_type")
)

# Registered redirection endpoints (RFC 6749 §3.1.2), compared as exact strings.
oauth_client_redirects = sa.Table(
    "oauth_client_redirects",
    metadata,
    sa.Column(
        "client_id", sa.String(64), sa.ForeignKey("oauth_clients.client_id"), primary_key=True
    ),
    sa.Column("redirect_uri", sa.String(2000), primary_key=True),
)

# Resource owners: wallet holders and operators, each of one tenant.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), nullable=False),
    # Normalised (auth.users.normalize_username): unique per tenant, not globally.
    sa.Column("username", sa.String(64), nullable=False),
    # argon2id PHC string.
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("is_operator", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.CheckConstraint("status IN ('active', 'disabled')", name="status"),
    sa.CheckConstraint("length(username) > 0", name="username_not_empty"),
    sa.UniqueConstraint("tenant_id", "username"),
    # Target of the composite foreign keys below: a code's or family's user is of its tenant.
    sa.UniqueConstraint("id", "tenant_id"),
)

# Authorization codes (RFC 6749 §4.1.2), stored by SHA-256 only. used_at makes them
# single-use (claimed by one conditional UPDATE); access_jti and family_id record what was
# issued from the code so a second presentation can revoke it (§4.1.2, RFC 9700 §4.2.4).
oauth_authorization_codes = sa.Table(
    "oauth_authorization_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=False),
    # As the authorization request gave it (NULL: omitted); the token request must match.
    sa.Column("redirect_uri", sa.String(2000), nullable=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("auth_time", sa.Double, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    sa.Column("used_at", sa.Double, nullable=True),
    sa.Column("reused_at", sa.Double, nullable=True),
    sa.Column("access_jti", sa.String(128), nullable=True),
    sa.Column("access_exp", sa.Double, nullable=True),
    sa.Column("family_id", sa.String(64), nullable=True),
    sa.ForeignKeyConstraint(
        ["client_id", "tenant_id"], ["oauth_clients.client_id", "oauth_clients.tenant_id"]
    ),
    sa.ForeignKeyConstraint(["user_id", "tenant_id"], ["users.id", "users.tenant_id"]),
)

# Refresh-token families: every token rotated from one code. revoked_at ends them all.
oauth_refresh_families = sa.Table(
    "oauth_refresh_families",
    metadata,
    sa.Column("family_id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(36), nullable=False, index=True),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("auth_time", sa.Double, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    # Absolute: rotation never extends a family.
    sa.Column("expires_at", sa.Double, nullable=False, index=True),
    # RFC 9449 §5: refresh tokens of a DPoP-bound family need proofs with this key.
    sa.Column("dpop_jkt", sa.String(128), nullable=True),
    # Written by every rotation: the row lock that orders rotations against revocation.
    sa.Column("rotated_at", sa.Double, nullable=True),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Column("revoked_reason", sa.String(200), nullable=True),
    sa.ForeignKeyConstraint(
        ["client_id", "tenant_id"], ["oauth_clients.client_id", "oauth_clients.tenant_id"]
    ),
    sa.ForeignKeyConstraint(["user_id", "tenant_id"], ["users.id", "users.tenant_id"]),
)

# Refresh tokens by SHA-256, each with the access token issued beside it (to revoke it
# with its family, or to sign the same claims again within the reuse grace window).
oauth_refresh_tokens = sa.Table(
    "oauth_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column(
        "family_id",
        sa.String(64),
        sa.ForeignKey("oauth_refresh_families.family_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("issued_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("used_at", sa.Double, nullable=True),
    sa.Column("replaced_by", sa.String(64), nullable=True),
    sa.Column("access_jti", sa.String(128), nullable=False),
    sa.Column("access_iat", sa.Double, nullable=False),
    sa.Column("access_exp", sa.Double, nullable=False),
    sa.Column("access_scope", sa.Text, nullable=False),
)

# --- client key sets (migration 0005) --------------------------------------------------

# RFC 7523 §2.2 private_key_jwt: the client's registered JWK set (RFC 7517 §5), public keys
# only, as compact JSON. NULL for a client that authenticates otherwise. Appended for the
# same reason as client_type above.
oauth_clients.append_column(sa.Column("jwks", sa.Text, nullable=True))

# -- Ledger (issue 4; ADR 0006) -----------------------------------------------------------
# Money columns are BIGINT (64-bit signed) on both backends; the domain refuses any value
# past 2^63 - 1. Times are integer microseconds since the epoch: exact, and ordered.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: rowid alias

ledger_accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("tenant_id", sa.String(36), sa.ForeignKey("tenants.id"), primary_key=True),
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
ledger_balances = sa.Table(
    "ledger_balances",
    metadata,
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

ledger_transfers = sa.Table(
    "ledger_transfers",
    metadata,
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
    # No foreign keys to the accounts: the store reads both and locks their balance rows in
    # the inserting transaction, and accounts are never deleted (ADR 0009).
    # The expiry worker's scan: only open holds with an expiry are in the index.
    sa.Index(
        "ix_ledger_transfers_due",
        "expires_at_us",
        sqlite_where=sa.text("status = 'pending' AND expires_at_us IS NOT NULL"),
        postgresql_where=sa.text("status = 'pending' AND expires_at_us IS NOT NULL"),
    ),
)

ledger_journal_entries = sa.Table(
    "ledger_journal_entries",
    metadata,
    sa.Column("tenant_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("legs", sa.Text, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
)

# Every change to a counter: an account's counters always equal the sums of its entries.
ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
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
outbox_events = sa.Table(
    "outbox_events",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(36), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at_us", sa.BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

# Append-only (triggers refuse UPDATE, DELETE and TRUNCATE): the audit issue's Merkle log
# sequences these rows.
audit_entries = sa.Table(
    "audit_entries",
    metadata,
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
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
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

# -- Audit log (issue 5; migration 0007) --------------------------------------------------
# Append-only like audit_entries: triggers refuse UPDATE, DELETE and TRUNCATE.

# Leaf i of the Merkle tree is the audit entry entry_seq (leaf order is sequencing order).
audit_leaves = sa.Table(
    "audit_leaves",
    metadata,
    sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("entry_seq", sa.BigInteger, nullable=False, unique=True),
    sa.Column("sequenced_at_us", sa.BigInteger, nullable=False),
)

# Complete perfect subtrees (level 0: leaf hashes); they never change once complete.
audit_tree_nodes = sa.Table(
    "audit_tree_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
)

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("published_at_us", sa.BigInteger, nullable=False),
)

# Every audit_entries row with seq <= horizon_seq is in the tree or can never commit.
audit_horizons = sa.Table(
    "audit_horizons",
    metadata,
    sa.Column("horizon_seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
)

# The log's C2SP verifier keys, so pods serve the key without holding the private one.
audit_keys = sa.Table(
    "audit_keys",
    metadata,
    sa.Column("verifier_key", sa.String(512), primary_key=True),
    sa.Column("registered_at_us", sa.BigInteger, nullable=False),
)

# Subject search (audit_entries.subject_ids is JSON text): one row per (subject, entry),
# written by the sequencer.
audit_subjects = sa.Table(
    "audit_subjects",
    metadata,
    sa.Column("subject_id", sa.String(200), primary_key=True),
    sa.Column("entry_seq", sa.BigInteger, primary_key=True, autoincrement=False),
)

sa.Index(
    "ix_audit_entries_tenant_id_event_type_occurred_at_us",
    audit_entries.c.tenant_id,
    audit_entries.c.event_type,
    audit_entries.c.occurred_at_us,
)
sa.Index(
    "ix_audit_entries_tenant_id_occurred_at_us",
    audit_entries.c.tenant_id,
    audit_entries.c.occurred_at_us,
)

# -- Edge blocklist (issue 6) -------------------------------------------------------------
# IP/CIDR and OAuth-client block and allow entries every edge worker enforces. Removal is
# soft (removed_at) so workers see it as a change; `version` is the change sequence they
# poll by: each add or removal takes max(version) + 1 under the writers' lock
# (blocklist_store), so version order is commit order on both backends. AUTOINCREMENT:
# an entry id is never reused, even after the highest row is gone.
edge_blocks = sa.Table(
    "edge_blocks",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    # Canonical address, network or client id (edge.blocklist_ports.canonical_value).
    sa.Column("value", sa.String(64), nullable=False),
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    # Epoch seconds, like the auth tables.
    sa.Column("created_at", sa.Double, nullable=False),
    # NULL: until removed.
    sa.Column("expires_at", sa.Double, nullable=True),
    sa.Column("removed_at", sa.Double, nullable=True),
    sa.Column("removed_by", sa.String(200), nullable=True),
    sa.Column("version", sa.BigInteger, nullable=False, unique=True),
    sa.CheckConstraint("kind IN ('ip', 'cidr', 'client')", name="kind"),
    sa.CheckConstraint("action IN ('block', 'allow')", name="action"),
    sa.Index("ix_edge_blocks_kind_value", "kind", "value"),
    sqlite_autoincrement=True,
)
