"""Client secrets: generation, argon2id hashing (RFC 9106), and a verified-secret cache.

Secrets are stored only as argon2id PHC strings (``$argon2id$v=19$m=...,t=...,p=...$salt$hash``).
An argon2id verify at the OWASP parameters costs tens of milliseconds of CPU and ~19 MiB,
which is the point for a stolen database but too much for every token request of a busy
client; ``VerifiedSecretCache`` remembers, per pod and for a short time, that a secret
matched, as a keyed BLAKE2b digest (RFC 7693) under a key that never leaves the process.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as pysecrets
import time
from collections.abc import Callable

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# RFC 9106 §4 recommends a 128-bit salt and a 256-bit tag.
_SALT_BYTES = 16
_HASH_BYTES = 32
# 32 random bytes: 256 bits, 43 URL-safe characters.
_CLIENT_SECRET_BYTES = 32
# BLAKE2b key and digest sizes for the cache (RFC 7693 §2.1: up to 64 bytes each).
_CACHE_KEY_BYTES = 32
_CACHE_DIGEST_BYTES = 32
# One entry per client that authenticated recently; the bound only stops a leak if
# client ids were ever unbounded (entries are made only after a successful verify).
_CACHE_ENTRIES_MAX = 100_000


def generate_client_secret() -> str:
    """A new client secret: 256 bits from the OS CSPRNG, base64url (no padding)."""
    return pysecrets.token_urlsafe(_CLIENT_SECRET_BYTES)


class SecretHasher:
    """argon2id hashing of secrets at fixed cost parameters (``AuthSettings.argon2_*``)."""

    __slots__ = ("_hasher",)

    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=_HASH_BYTES,
            salt_len=_SALT_BYTES,
            type=Type.ID,
        )

    def hash(self, secret: str) -> str:
        """The argon2id PHC string of ``secret`` with a fresh random salt."""
        return self._hasher.hash(secret)

    def verify(self, phc: str, secret: str) -> bool:
        """Whether ``secret`` matches ``phc``; never raises for a mismatch or a bad hash.

        The comparison inside libargon2 is constant-time; the cost depends only on the
        parameters recorded in ``phc``, not on the secret.
        """
        try:
            return self._hasher.verify(phc, secret)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, phc: str) -> bool:
        """Whether ``phc`` was made with other parameters than this hasher's (or is no argon2)."""
        try:
            return self._hasher.check_needs_rehash(phc)
        except (InvalidHashError, ValueError):
            return True


class VerifiedSecretCache:
    """``client_id`` → (hash version, keyed BLAKE2b of the secret, expiry), per process.

    ``secret_hash_version`` is anything that changes when the stored secret changes; the
    stored PHC string itself is the natural choice (a new secret has a new salt). An
    entry for another version, an expired entry or a different secret is a miss, never
    a match. ``forget`` drops a client at once (rotation, suspension on this pod).
    """

    __slots__ = ("_clock", "_entries", "_key", "_max_entries", "_ttl_s")

    def __init__(
        self,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_entries: int = _CACHE_ENTRIES_MAX,
    ) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_entries = max_entries
        self._key = os.urandom(_CACHE_KEY_BYTES)
        self._entries: dict[str, tuple[str, bytes, float]] = {}

    def _digest(self, client_id: str, secret: str) -> bytes:
        # The client id is hashed in too, so one client's digest never matches another's.
        h = hashlib.blake2b(key=self._key, digest_size=_CACHE_DIGEST_BYTES)
        h.update(client_id.encode("utf-8"))
        h.update(b"\x00")
        h.update(secret.encode("utf-8", "surrogatepass"))
        return h.digest()

    def check(self, client_id: str, secret_hash_version: str, secret: str) -> bool:
        """True when this exact secret was verified for this hash version within ``ttl_s``."""
        entry = self._entries.get(client_id)
        if entry is None:
            return False
        version, digest, expires = entry
        if self._clock() >= expires:
            self._entries.pop(client_id, None)
            return False
        if version != secret_hash_version:  # not secret: the stored hash
            return False
        return hmac.compare_digest(digest, self._digest(client_id, secret))

    def remember(self, client_id: str, secret_hash_version: str, secret: str) -> None:
        """Record a secret that just passed the full argon2id verify."""
        if self._ttl_s <= 0:
            return
        self._entries.pop(client_id, None)  # re-insert at the end: oldest first below
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[client_id] = (
            secret_hash_version,
            self._digest(client_id, secret),
            self._clock() + self._ttl_s,
        )

    def forget(self, client_id: str) -> None:
        self._entries.pop(client_id, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
