"""Refresh tokens and authorization codes: format, hashing, rotation and reuse rules.

Both are opaque bearer strings of 256 random bits with a recognisable prefix (so a
leaked one is easy to spot in logs and secret scanners). Only their SHA-256 is stored:
a copy of the database yields no usable credential. A plain hash suffices, unlike
passwords, because the input already has 256 bits of entropy.

Refresh tokens rotate on every use (RFC 9700 §4.14.2, OAuth 2.1 §4.3.1): each token
belongs to a *family* started by one authorization code, and presenting a token that was
already rotated means two parties hold it, so the whole family is revoked together with
the access tokens issued in it. One exception, the *grace window*: a client whose
response was lost retries with the token it still has; within ``grace_s`` of the
rotation, and while the successor has not itself been used, it gets the same new pair
again. The successor is derived from the presented token with a server-side HMAC key
(``successor_token``), so the same pair can be handed out twice without storing any
plaintext token; whoever holds an old token cannot derive its successor.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from strongroom.auth.keys import b64url_encode
from strongroom.auth.scopes import InvalidScope, parse_scope

REFRESH_TOKEN_PREFIX = "srt_"  # noqa: S105 - a prefix, not a secret
AUTHORIZATION_CODE_PREFIX = "src_"
_TOKEN_BYTES = 32  # 256 bits → 43 base64url characters
_TOKEN_BODY = r"[A-Za-z0-9_-]{43}"  # noqa: S105 - a pattern, not a secret
_REFRESH_TOKEN = re.compile(re.escape(REFRESH_TOKEN_PREFIX) + _TOKEN_BODY)
_AUTHORIZATION_CODE = re.compile(re.escape(AUTHORIZATION_CODE_PREFIX) + _TOKEN_BODY)
_ROTATION_KEY_LABEL = b"strongroom/refresh-token-successor/v1"

ReuseDecision = Literal["replay", "revoke_family"]


def new_refresh_token() -> str:
    return REFRESH_TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def new_authorization_code() -> str:
    return AUTHORIZATION_CODE_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def is_refresh_token(value: str) -> bool:
    """Syntax only: a value that cannot be ours is refused without a database read."""
    return _REFRESH_TOKEN.fullmatch(value) is not None


def is_authorization_code(value: str) -> bool:
    return _AUTHORIZATION_CODE.fullmatch(value) is not None


def credential_hash(value: str) -> str:
    """What is stored for a code or refresh token: SHA-256, hex (64 characters)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def derive_rotation_key(master_secret: str) -> bytes:
    """The successor-derivation key, from a secret every pod shares (the KEK).

    HMAC-SHA256 as a PRF under a fixed label (RFC 5869's HKDF-Expand with one block):
    the key is independent of any other key derived from the same secret.
    """
    if not master_secret:
        raise ValueError("the master secret must not be empty")
    return hmac.new(master_secret.encode("utf-8"), _ROTATION_KEY_LABEL, hashlib.sha256).digest()


def successor_token(rotation_key: bytes, token: str) -> str:
    """The refresh token that replaces ``token`` when it is rotated (deterministic)."""
    digest = hmac.new(rotation_key, token.encode("utf-8"), hashlib.sha256).digest()
    return REFRESH_TOKEN_PREFIX + b64url_encode(digest)


@dataclass(frozen=True, slots=True)
class IssuedAccess:
    """An access token issued alongside a refresh token: enough to revoke it (its
    ``jti`` until ``exp``) or to sign the identical claims again (grace replay)."""

    jti: str
    iat: int
    exp: int
    scope: frozenset[str]


@dataclass(frozen=True, slots=True)
class RefreshFamily:
    """Every refresh token descending from one authorization code.

    ``scope`` is what the user granted; a refresh may ask for less, never more
    (RFC 6749 §6). ``expires_at`` is absolute: rotation never extends a family.
    ``dpop_jkt`` binds the family to a DPoP key (RFC 9449 §5) when set.
    """

    family_id: str
    tenant_id: str
    client_id: str
    user_id: str
    scope: frozenset[str]
    auth_time: float
    created_at: float
    expires_at: float
    dpop_jkt: str | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    """One refresh token of a family (stored by hash) and the access token issued with it."""

    token_hash: str
    family_id: str
    issued_at: float
    expires_at: float
    access: IssuedAccess
    used_at: float | None = None
    replaced_by: str | None = None


# --- what a rotation attempt came to (returned by the storage adapter) ----------------


@dataclass(frozen=True, slots=True)
class Rotated:
    """The token was current: it is now used, and ``successor`` is the family's head."""

    family: RefreshFamily
    successor: RefreshTokenRecord


@dataclass(frozen=True, slots=True)
class Replayed:
    """The token was rotated moments ago and its successor is unused: hand it out again."""

    family: RefreshFamily
    successor: RefreshTokenRecord


@dataclass(frozen=True, slots=True)
class ReuseDetected:
    """A rotated token came back: the family is revoked; ``revoked`` are its live access
    tokens, which the caller puts on the deny list."""

    family: RefreshFamily
    revoked: tuple[IssuedAccess, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """Unknown, expired, revoked, or another client's token: ``invalid_grant``.

    ``reason`` goes to logs only (RFC 6749 §5.2 gives the client one code for all).
    """

    reason: Literal["unknown", "expired", "revoked", "wrong_client"]


RotationOutcome = Rotated | Replayed | ReuseDetected | Refused


def decide_reuse(
    *, used_at: float, now: float, grace_s: float, successor_unused: bool
) -> ReuseDecision:
    """What a rotated token presented again gets.

    ``replay`` only when the rotation happened at most ``grace_s`` ago *and* the
    successor has not been used: once the successor was presented, the client certainly
    received it, so an old token coming back is a second holder. ``grace_s`` 0 disables
    the window.
    """
    if grace_s > 0 and successor_unused and 0.0 <= now - used_at <= grace_s:
        return "replay"
    return "revoke_family"


def refresh_token_expiry(issued_at: float, lifetime_s: float, family_expires_at: float) -> float:
    """A token lives ``lifetime_s`` unless its family ends sooner."""
    return min(issued_at + lifetime_s, family_expires_at)


def refresh_scope(requested: str | None, *, family_scope: frozenset[str]) -> frozenset[str]:
    """The access-token scope of a refresh request (RFC 6749 §6).

    Absent means the family's whole scope; otherwise a subset of it, never more
    (``InvalidScope``). The refresh token itself keeps the family scope (§6: "the
    refresh token scope MUST be identical").
    """
    if requested is None:
        return family_scope
    scopes = parse_scope(requested)
    if not scopes <= family_scope:
        raise InvalidScope("requested scope exceeds the scope originally granted")
    return scopes
