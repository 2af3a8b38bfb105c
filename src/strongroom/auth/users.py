"""End users (wallet holders) and operators: resource owners (RFC 6749 §1.1).

A user belongs to exactly one tenant and logs in only through that tenant's clients, so
a token issued for a user always carries the user's (= the client's) tenant. Passwords
are stored as argon2id PHC strings (``auth.secrets.SecretHasher``). Operators are
flagged users; only they, through operator clients, may receive ``OPERATOR_SCOPES``.
"""

from __future__ import annotations

import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from strongroom.auth.ports import ClientRecord, TenantRepository
from strongroom.auth.scopes import OPERATOR_SCOPES, InvalidScope
from strongroom.auth.secrets import SecretHasher

UserStatus = Literal["active", "disabled"]
USER_STATUSES: tuple[UserStatus, ...] = ("active", "disabled")

USERNAME_CHARS_MAX = 64
# NIST SP 800-63B §3.1.1.2: at least 15 for a password used alone; 12 here because
# argon2id makes each guess expensive and a wallet holder types it on a phone.
PASSWORD_CHARS_MIN = 12
# Long enough for any passphrase, short enough that hashing cannot be made expensive.
PASSWORD_CHARS_MAX = 256
_USERNAME_EXTRA = frozenset("._@+-")

LoginFailure = Literal["unknown_user", "bad_password", "user_disabled"]


class UserError(ValueError):
    """A user that cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: str
    tenant_id: str
    username: str
    password_hash: str
    is_operator: bool
    status: UserStatus
    created_at: float


class UserRepository(Protocol):
    def create(self, record: UserRecord) -> None:
        """Raises if the username is taken in the tenant or the tenant does not exist."""
        ...

    def get(self, tenant_id: str, user_id: str) -> UserRecord | None: ...

    def find(self, tenant_id: str, username: str) -> UserRecord | None:
        """By normalised username (``normalize_username``), within one tenant only."""
        ...


def normalize_username(raw: str) -> str:
    """NFKC + case fold, then letters, digits and ``._@+-`` only, 1-64 characters.

    One spelling per name, so ``Alice`` and ``ALICE`` (or its full-width form) are the
    same user (RFC 8265 §3.3's idea, much simplified).
    """
    name = unicodedata.normalize("NFKC", raw.strip()).casefold()
    if not name or len(name) > USERNAME_CHARS_MAX:
        raise UserError(f"a username has 1 to {USERNAME_CHARS_MAX} characters")
    if not all(ch.isalnum() or ch in _USERNAME_EXTRA for ch in name):
        raise UserError("a username has only letters, digits and . _ @ + -")
    return name


def check_password_policy(password: str) -> None:
    if len(password) < PASSWORD_CHARS_MIN:
        raise UserError(f"a password has at least {PASSWORD_CHARS_MIN} characters")
    if len(password) > PASSWORD_CHARS_MAX:
        raise UserError(f"a password has at most {PASSWORD_CHARS_MAX} characters")


def create_user(
    tenants: TenantRepository,
    users: UserRepository,
    hasher: SecretHasher,
    *,
    tenant_id: str,
    username: str,
    password: str,
    operator: bool = False,
    now: float | None = None,
) -> UserRecord:
    """Register a user of an active tenant; the password is stored only as argon2id."""
    tenant = tenants.get(tenant_id)
    if tenant is None:
        raise UserError(f"no tenant {tenant_id}")
    if tenant.status != "active":
        raise UserError(f"tenant {tenant_id} is {tenant.status}")
    name = normalize_username(username)
    check_password_policy(password)
    if users.find(tenant_id, name) is not None:
        raise UserError(f"user {name} exists in tenant {tenant_id}")
    record = UserRecord(
        user_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        username=name,
        password_hash=hasher.hash(password),
        is_operator=operator,
        status="active",
        created_at=time.time() if now is None else now,
    )
    users.create(record)
    return record


def check_login(
    record: UserRecord | None,
    password: str,
    *,
    hasher: SecretHasher,
    dummy_hash: str,
) -> UserRecord | LoginFailure:
    """The user whose password this is, or why not (for the security log, never the page).

    An unknown user costs the same argon2id run (against ``dummy_hash``) as a wrong
    password, and the status is checked after the password, so timing says nothing about
    which usernames exist or are disabled. CPU-bound: call it off the event loop.
    """
    if len(password) > PASSWORD_CHARS_MAX:
        return "bad_password" if record is not None else "unknown_user"
    if record is None:
        hasher.verify(dummy_hash, password)
        return "unknown_user"
    if not hasher.verify(record.password_hash, password):
        return "bad_password"
    if record.status != "active":
        return "user_disabled"
    return record


def user_scope(
    requested: frozenset[str] | None, *, client: ClientRecord, user: UserRecord | None
) -> frozenset[str]:
    """The scopes a user's token may carry: requested ∩ the client's (RFC 6749 §3.3).

    ``requested`` ``None`` means everything the client may hold. Operator scopes survive
    only for an operator user on an operator client; ``user`` ``None`` (before login)
    keeps them for display. Raises ``InvalidScope`` when nothing is left.
    """
    scopes = client.scopes if requested is None else requested & client.scopes
    if not client.is_operator or (user is not None and not user.is_operator):
        scopes -= OPERATOR_SCOPES
    if not scopes:
        raise InvalidScope("none of the requested scopes is available to this client and user")
    return scopes
