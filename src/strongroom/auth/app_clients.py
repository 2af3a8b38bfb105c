"""Clients that act for users: client types and redirection endpoints.

RFC 6749 §2.1: a *confidential* client authenticates at the token endpoint; a *public*
client (a mobile or single-page app) cannot keep a secret, holds none, and may only use
the authorization-code grant with PKCE. §3.1.2: redirection endpoints are registered in
full and compared as exact strings (RFC 9700 §4.1.3): no wildcards, no prefix matches,
so nothing can steer a code to an address the client did not register.
"""

from __future__ import annotations

import ipaddress
import secrets as pysecrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from strongroom.auth.ports import ClientRecord, TenantRepository
from strongroom.auth.scopes import OPERATOR_SCOPES, SCOPES
from strongroom.auth.secrets import SecretHasher, generate_client_secret

ClientType = Literal["confidential", "public"]
CLIENT_TYPES: tuple[ClientType, ...] = ("confidential", "public")

REDIRECT_URI_CHARS_MAX = 2000
# A client registers a handful (production, staging, a native callback); the bound stops
# a registration from growing every authorization request's lookup.
REDIRECT_URIS_MAX = 10
_LOOPBACK_HOSTS = frozenset({"localhost"})


class AppClientError(ValueError):
    """A client registration that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class AppClient:
    """A client as the authorization endpoint sees it."""

    record: ClientRecord
    client_type: ClientType
    redirect_uris: tuple[str, ...]

    @property
    def is_public(self) -> bool:
        return self.client_type == "public"


class AppClientRepository(Protocol):
    def create(
        self, record: ClientRecord, client_type: ClientType, redirect_uris: tuple[str, ...]
    ) -> None: ...

    def get(self, client_id: str) -> AppClient | None: ...


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_redirect_uri(uri: str) -> str:
    """A redirection endpoint fit to register, or ``AppClientError``.

    RFC 6749 §3.1.2: absolute, no fragment. RFC 9700 §2.1 / RFC 8252 §8.3: ``https``;
    ``http`` only to a loopback address (a native app's local listener, RFC 8252 §7.3);
    or a private-use scheme in reverse-domain form (RFC 8252 §7.1, e.g.
    ``com.example.app:/callback``). No user info (it would disguise the host).
    """
    if not uri or len(uri) > REDIRECT_URI_CHARS_MAX or uri != uri.strip():
        raise AppClientError("a redirect URI is 1-2000 characters without surrounding spaces")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
        raise AppClientError("a redirect URI has no spaces or control characters")
    parts = urlsplit(uri)
    if not parts.scheme:
        raise AppClientError("a redirect URI is absolute (RFC 6749 §3.1.2)")
    if "#" in uri:
        raise AppClientError("a redirect URI has no fragment (RFC 6749 §3.1.2)")
    if "@" in parts.netloc:
        raise AppClientError("a redirect URI has no user info")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise AppClientError("an https redirect URI names a host")
        return uri
    if scheme == "http":
        if parts.hostname is None or not _is_loopback(parts.hostname):
            raise AppClientError("http redirect URIs are allowed only to loopback (RFC 8252 §7.3)")
        return uri
    if "." in scheme:
        return uri  # RFC 8252 §7.1 private-use scheme, reverse domain name
    raise AppClientError(
        "a redirect URI is https, http to loopback, or a reverse-domain private-use scheme"
    )


def create_app_client(
    tenants: TenantRepository,
    clients: AppClientRepository,
    hasher: SecretHasher,
    *,
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
    redirect_uris: Iterable[str],
    public: bool = False,
    dpop_required: bool = False,
    operator: bool = False,
    now: float | None = None,
) -> tuple[AppClient, str | None]:
    """Register a client for the authorization-code flow.

    Returns the client and, for a confidential client, its secret (shown once, stored as
    argon2id). A public client gets no secret. Operator clients are confidential: an
    operator's token must never come from an app that cannot keep a secret.
    """
    tenant = tenants.get(tenant_id)
    if tenant is None:
        raise AppClientError(f"no tenant {tenant_id}")
    if tenant.status != "active":
        raise AppClientError(f"tenant {tenant_id} is {tenant.status}")
    granted = frozenset(scopes)
    unknown = granted - SCOPES
    if unknown:
        raise AppClientError(f"unknown scopes: {' '.join(sorted(unknown))}")
    if not granted:
        raise AppClientError("a client needs at least one scope")
    if granted & OPERATOR_SCOPES and not operator:
        raise AppClientError("operator scopes need an operator client (--operator)")
    if operator and public:
        raise AppClientError("an operator client must be confidential")
    uris = tuple(dict.fromkeys(validate_redirect_uri(u) for u in redirect_uris))
    if not uris:
        raise AppClientError("a client for the authorization-code flow needs a redirect URI")
    if len(uris) > REDIRECT_URIS_MAX:
        raise AppClientError(f"at most {REDIRECT_URIS_MAX} redirect URIs")
    secret = None if public else generate_client_secret()
    record = ClientRecord(
        client_id="sr_" + pysecrets.token_urlsafe(16),
        tenant_id=tenant_id,
        name=name.strip() or "app",
        secret_hash=None if secret is None else hasher.hash(secret),
        scopes=granted,
        status="active",
        dpop_required=dpop_required,
        is_operator=operator,
        created_at=time.time() if now is None else now,
    )
    client_type: ClientType = "public" if public else "confidential"
    clients.create(record, client_type, uris)
    return AppClient(record, client_type, uris), secret
