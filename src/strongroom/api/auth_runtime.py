"""Per-pod wiring of the authorization server and the resource-server checks.

Everything a pod needs to issue and verify tokens on its own: repositories over the
shared database, the signing keys (read from the database, never created here —
`strongroom up`/`strongroom keys rotate` own key creation so two pods never race),
an access-token verifier with a cached key set, and the deny list that revocations
and suspensions reach every pod through.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import structlog
from sqlalchemy.engine import Engine

from strongroom.adapters.db.auth_repositories import (
    SqlClientRepository,
    SqlDenyListFeed,
    SqlKeyRepository,
    SqlRevocationStore,
    SqlTenantRepository,
)
from strongroom.adapters.deny_list_sync import DenyListSync
from strongroom.adapters.dpop_replay import replay_cache_for
from strongroom.auth.deny_list import DenyList
from strongroom.auth.keys import KeyRing, SigningKey
from strongroom.auth.rfc9068_access_token import AccessTokenVerifier
from strongroom.auth.rfc9449_dpop import DpopNonces, derive_nonce_key
from strongroom.auth.secrets import SecretHasher, VerifiedSecretCache
from strongroom.config import Settings

log = structlog.get_logger("strongroom.auth")

# Signing keys change only on rotation (minutes of publish-ahead): re-reading them this
# often bounds how stale a pod's view is while costing one query per interval.
KEYS_REFRESH_S = 5.0


class AuthRuntime:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        auth = settings.auth
        self.settings = settings
        self.issuer = settings.issuer
        self.audience = auth.audience
        # A suspension stops mattering once every token the client could hold expired.
        deny_ttl_s = auth.access_token_lifetime_s + auth.leeway_s
        self.clients = SqlClientRepository(engine, client_deny_ttl_s=deny_ttl_s)
        self.tenants = SqlTenantRepository(engine)
        self.keys = SqlKeyRepository(engine, settings.secrets.key_encryption_key.get_secret_value())
        self.revocations = SqlRevocationStore(engine, client_deny_ttl_s=deny_ttl_s)
        self.hasher = SecretHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
        )
        self.secret_cache = VerifiedSecretCache(ttl_s=auth.verified_secret_cache_s)
        # Verified against when a client id is unknown, so response timing does not
        # reveal which client ids exist.
        self.dummy_hash = self.hasher.hash("strongroom-no-such-client")
        self.deny_list = DenyList()
        self.deny_list_sync = DenyListSync(
            SqlDenyListFeed(engine),
            self.deny_list,
            poll_s=auth.deny_list_poll_s,
            inline_reads=engine.dialect.name == "sqlite",
        )
        # DPoP (RFC 9449): seen proof jtis shared by every pod, and stateless nonces keyed
        # from the secret every pod already shares, so any pod accepts any pod's nonce.
        self.dpop_replay = replay_cache_for(settings, engine)
        self.dpop_nonces = DpopNonces(
            derive_nonce_key(settings.secrets.key_encryption_key.get_secret_value()),
            auth.dpop_nonce_step_s,
        )
        self.dpop_required_scopes = frozenset(auth.dpop_required_scopes)
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._keys_loaded_at = 0.0
        self.verifier = AccessTokenVerifier(
            issuer=self.issuer,
            audience=self.audience,
            leeway_s=auth.leeway_s,
            jwks=self._fresh_jwks,
            refetch_cooldown_s=auth.jwks_refetch_cooldown_s,
            cache_size=auth.verified_token_cache_size,
        )

    async def refresh_keys_forever(self) -> None:
        """Re-read the key set off the event loop, so a key removed from the database
        (a compromise) stops being trusted — with its cached tokens — within the period."""
        while True:
            await asyncio.sleep(KEYS_REFRESH_S)
            try:
                await asyncio.to_thread(self.verifier.refresh)
            except Exception:
                log.exception("auth.key_refresh_failed")

    # keys ----------------------------------------------------------------------------
    def _load_keys(self, *, force: bool = False) -> list[SigningKey]:
        now = time.time()
        with self._lock:
            if force or not self._keys or now - self._keys_loaded_at > KEYS_REFRESH_S:
                self._keys = self.keys.load()
                self._keys_loaded_at = now
            return self._keys

    def keyring(self) -> KeyRing:
        return KeyRing(self._load_keys(), time.time())

    def jwks(self) -> dict[str, Any]:
        return self.keyring().jwks(time.time(), self.settings.auth.access_token_lifetime_s)

    def _fresh_jwks(self) -> dict[str, Any]:
        """What the verifier refetches on an unknown kid: bypass the refresh interval."""
        keys = self._load_keys(force=True)
        return KeyRing(keys, time.time()).jwks(
            time.time(), self.settings.auth.access_token_lifetime_s
        )
