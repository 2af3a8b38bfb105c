"""Helpers for the auth domain tests: a settable clock, keys, a cheap hasher, forging tokens."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from strongroom.auth.keys import (
    KeyRing,
    SigningKey,
    b64url_encode,
    load_private_key,
    plan_rotation,
)
from strongroom.auth.secrets import SecretHasher

ISSUER = "https://auth.strongroom.test"
AUDIENCE = "https://api.strongroom.dev/v1"
LIFETIME_S = 300
LEEWAY_S = 30
PUBLISH_AHEAD_S = 600
T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def first_boot(alg: str = "Ed25519", now: float = T0) -> list[SigningKey]:
    return plan_rotation(
        [], now, publish_ahead_s=PUBLISH_AHEAD_S, token_lifetime_s=LIFETIME_S, alg=alg
    )


def active_key(keys: list[SigningKey]) -> SigningKey:
    return KeyRing(keys, T0).signing_key


def fast_hasher() -> SecretHasher:
    # Minimum argon2 cost: the tests check behaviour, the bench checks cost.
    return SecretHasher(time_cost=1, memory_kib=8, parallelism=1)


def segment(value: Mapping[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64url_encode(raw)


def sign_raw(key: SigningKey, signing_input: bytes) -> bytes:
    private = load_private_key(key.private_pem)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(signing_input)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(key: SigningKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """A compact JWS with any header and claims, validly signed by ``key``."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    return f"{signing_input}.{b64url_encode(sign_raw(key, signing_input.encode()))}"


def good_claims(now: float = T0, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "exp": int(now) + LIFETIME_S,
        "iat": int(now),
        "jti": "jti-1",
        "client_id": "client-1",
        "tenant": "tenant-1",
        "scope": "accounts:read transfers:write",
    }
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP = object()
DROP: Any = _DROP


def good_header(key: SigningKey, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    for name, value in changes.items():
        if value is _DROP:
            header.pop(name, None)
        else:
            header[name] = value
    return header
