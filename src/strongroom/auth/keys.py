"""Signing keys: generation, the published key set (RFC 7517 JWK Set), rotation, at-rest encryption.

A key lives through three states:

``next``
    generated and published in the JWKS, not yet signing. It stays there at least
    ``publish_ahead_s`` so every pod and client that caches the JWKS holds it before the
    first token it signs appears.
``active``
    signs new access tokens (exactly one at a time) and is published.
``retired``
    no longer signs; stays published while tokens it signed may still be valid
    (``retired_at + token_lifetime_s + leeway_s``), then is dropped.

``plan_rotation`` is the whole state machine as a pure function; ``KeyRepository.replace``
stores its result. Key ids are RFC 7638 JWK thumbprints (SHA-256, base64url).

JWK members follow RFC 7518 §6.2 (EC, ``P-256``) and RFC 8037 §2 (OKP, ``Ed25519``); the
``alg`` names are those of RFC 7518 §3.4 (``ES256``) and RFC 9864 (``Ed25519``, the
fully-specified successor of ``EdDSA``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KeyState = Literal["next", "active", "retired"]
SigningAlg = Literal["Ed25519", "ES256"]
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

SIGNING_ALGS: frozenset[str] = frozenset({"Ed25519", "ES256"})
KEY_STATES: tuple[KeyState, ...] = ("next", "active", "retired")

# Clock skew between pods tolerated on exp (AuthSettings.leeway_s's default): a retired key
# stays published this long past the last expiry of a token it signed.
DEFAULT_LEEWAY_S = 30.0

# At-rest blob: version byte || 96-bit nonce || AES-256-GCM ciphertext+tag (NIST SP 800-38D
# §8.2.2: random 96-bit nonces are safe for far more than the handful of keys ever sealed).
_BLOB_VERSION = b"\x01"
_NONCE_BYTES = 12
# HKDF (RFC 5869) info string: domain-separates this use of the KEK from any other.
_HKDF_INFO = b"strongroom/signing-key-at-rest/v1"
_P256_COORD_BYTES = 32


class KeyRingError(Exception):
    """Base class of this module's errors."""


class NoActiveKey(KeyRingError):
    """The key ring has no active key: run ``plan_rotation`` first."""


class KeyDecryptionError(KeyRingError):
    """A stored private key does not decrypt: wrong key-encryption key or a damaged blob."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One signing key; ``private_pem`` is PKCS#8 PEM (plaintext: encrypt it to store it).

    ``created_at`` is also when the key was first published (state ``next``).
    """

    kid: str
    alg: str
    private_pem: bytes
    state: KeyState
    created_at: float
    activated_at: float | None
    retired_at: float | None

    def __repr__(self) -> str:  # never print private key material into logs
        return (
            f"SigningKey(kid={self.kid!r}, alg={self.alg!r}, state={self.state!r}, "
            f"created_at={self.created_at!r}, activated_at={self.activated_at!r}, "
            f"retired_at={self.retired_at!r})"
        )


# --- encoding helpers -------------------------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Inverse of ``b64url_encode``; raises ``ValueError`` on bad input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    if b"=" in raw:
        raise ValueError("padding is not allowed in base64url (RFC 7515 §2)")
    return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))


# --- key material -----------------------------------------------------------------------


@lru_cache(maxsize=64)
def load_private_key(private_pem: bytes) -> PrivateKey:
    """The key object for ``private_pem``; parsed once per process (parsing costs ~50 µs)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError(f"unsupported private key type {type(key).__name__}")


def _check_alg(alg: str) -> None:
    if alg not in SIGNING_ALGS:
        raise ValueError(f"unsupported signing alg {alg!r}; expected one of {sorted(SIGNING_ALGS)}")


def _public_members(public: PublicKey) -> dict[str, str]:
    """The required public members of the JWK, in RFC 7638 §3.2 lexicographic order."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
    numbers = public.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url_encode(numbers.x.to_bytes(_P256_COORD_BYTES, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_P256_COORD_BYTES, "big")),
    }


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return b64url_encode(hashlib.sha256(canonical).digest())


def generate_signing_key(alg: str, now: float) -> SigningKey:
    """A fresh key in state ``next``, its kid the RFC 7638 thumbprint of its public key."""
    _check_alg(alg)
    private: PrivateKey = (
        ed25519.Ed25519PrivateKey.generate()
        if alg == "Ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(
        kid=jwk_thumbprint(_public_members(private.public_key())),
        alg=alg,
        private_pem=pem,
        state="next",
        created_at=now,
        activated_at=None,
        retired_at=None,
    )


def public_jwk(key: SigningKey) -> dict[str, Any]:
    """The public JWK (RFC 7517 §4): kty/crv/x[/y], kid, alg, use ``sig``."""
    members = _public_members(load_private_key(key.private_pem).public_key())
    return {**members, "kid": key.kid, "alg": key.alg, "use": "sig"}


# --- key set and rotation ---------------------------------------------------------------


def _still_published(key: SigningKey, now: float, token_lifetime_s: float, leeway_s: float) -> bool:
    """A retired key stays until no token it signed can still be accepted anywhere."""
    if key.state != "retired":
        return True
    retired_at = key.retired_at if key.retired_at is not None else key.created_at
    return now <= retired_at + token_lifetime_s + leeway_s


def _active_keys(keys: Sequence[SigningKey]) -> list[SigningKey]:
    actives = [k for k in keys if k.state == "active"]
    # Most recently activated first: if a bad write ever left two, the newer one signs.
    actives.sort(key=lambda k: (k.activated_at or k.created_at, k.kid), reverse=True)
    return actives


class KeyRing:
    """The keys as loaded at ``now``: which one signs, and which are published."""

    __slots__ = ("_keys", "_now")

    def __init__(self, keys: Sequence[SigningKey], now: float) -> None:
        self._keys = tuple(keys)
        self._now = now

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._keys

    @property
    def signing_key(self) -> SigningKey:
        """The active key; raises ``NoActiveKey`` when there is none."""
        actives = _active_keys(self._keys)
        if not actives:
            raise NoActiveKey("no active signing key; run key rotation (first boot)")
        return actives[0]

    def jwks(
        self, now: float, token_lifetime_s: float, *, leeway_s: float = DEFAULT_LEEWAY_S
    ) -> dict[str, Any]:
        """The JWK Set (RFC 7517 §5): next, active, and retired keys still needed.

        Ordered active, next, retired (newest first within a state), so a verifier that
        scans takes the likely key first.
        """
        order = {"active": 0, "next": 1, "retired": 2}
        published = sorted(
            (k for k in self._keys if _still_published(k, now, token_lifetime_s, leeway_s)),
            key=lambda k: (order[k.state], -k.created_at, k.kid),
        )
        return {"keys": [public_jwk(k) for k in published]}


def plan_rotation(
    keys: Sequence[SigningKey],
    now: float,
    *,
    publish_ahead_s: float,
    token_lifetime_s: float,
    alg: str,
    leeway_s: float = DEFAULT_LEEWAY_S,
    active_for_s: float | None = None,
) -> list[SigningKey]:
    """One step of key rotation, as a pure state transition; store the result as is.

    - no key at all (first boot): a new key becomes active at once (nothing can have
      cached a key set yet), and a ``next`` key is published alongside it;
    - no active key (only after manual tampering): the oldest ``next`` key is promoted;
      if none exists, a fresh key is made active;
    - a ``next`` key published for at least ``publish_ahead_s`` (and, when
      ``active_for_s`` is given, an active key that signed at least that long) is
      promoted to active, the old active key retired (``retired_at = now``), and a new
      ``next`` key generated so the following rotation is published ahead as well;
    - no ``next`` key: one is added (``alg``), so the next rotation can happen
      ``publish_ahead_s`` later;
    - retired keys past ``retired_at + token_lifetime_s + leeway_s`` are dropped.

    Invariants (property-tested): the result holds exactly one active key and one
    ``next`` key; a key that ever signs after the first boot was published as ``next``
    for at least ``publish_ahead_s`` first; input keys are never mutated.
    """
    _check_alg(alg)
    result = [k for k in keys if _still_published(k, now, token_lifetime_s, leeway_s)]

    actives = _active_keys(result)
    nexts = sorted((k for k in result if k.state == "next"), key=lambda k: (k.created_at, k.kid))

    if not actives:
        if nexts:
            promoted = nexts.pop(0)
            result.remove(promoted)
        else:
            promoted = generate_signing_key(alg, now)
        actives = [dataclasses.replace(promoted, state="active", activated_at=now)]
        result.append(actives[0])
    elif len(actives) > 1:
        # Keep the newest signing; retire the others rather than guess further.
        for extra in actives[1:]:
            result[result.index(extra)] = dataclasses.replace(
                extra, state="retired", retired_at=now
            )
        actives = actives[:1]

    active = actives[0]
    if nexts:
        candidate = nexts[0]
        published_long_enough = now - candidate.created_at >= publish_ahead_s
        active_since = active.activated_at if active.activated_at is not None else active.created_at
        signed_long_enough = active_for_s is None or now - active_since >= active_for_s
        if published_long_enough and signed_long_enough:
            result[result.index(active)] = dataclasses.replace(
                active, state="retired", retired_at=now
            )
            result[result.index(candidate)] = dataclasses.replace(
                candidate, state="active", activated_at=now
            )
            nexts.pop(0)

    if not nexts:
        result.append(generate_signing_key(alg, now))
    return result


# --- at-rest encryption -----------------------------------------------------------------


@lru_cache(maxsize=8)
def _derive_aead_key(kek: str) -> bytes:
    """AES-256 key = HKDF-SHA256(kek) (RFC 5869), domain-separated by ``_HKDF_INFO``."""
    if not kek:
        raise ValueError("key-encryption key must not be empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return hkdf.derive(kek.encode("utf-8"))


def encrypt_private_key(pem: bytes, kek: str) -> bytes:
    """Seal ``pem`` for storage: version || nonce || AES-256-GCM(pem); random nonce each call."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_derive_aead_key(kek)).encrypt(nonce, pem, _BLOB_VERSION)
    return _BLOB_VERSION + nonce + sealed


def decrypt_private_key(blob: bytes, kek: str) -> bytes:
    """Open a blob of ``encrypt_private_key``; raises ``KeyDecryptionError`` if it does not."""
    header = len(_BLOB_VERSION) + _NONCE_BYTES
    if len(blob) <= header or blob[:1] != _BLOB_VERSION:
        raise KeyDecryptionError("not a sealed signing key (unknown version or truncated)")
    nonce = blob[1:header]
    try:
        return AESGCM(_derive_aead_key(kek)).decrypt(nonce, blob[header:], _BLOB_VERSION)
    except InvalidTag as exc:
        raise KeyDecryptionError("signing key does not decrypt: wrong KEK or damaged") from exc
