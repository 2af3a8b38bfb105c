"""Client authentication at the token endpoint (RFC 6749 §2.3).

Two methods (RFC 8414 names): ``client_secret_basic`` (§2.3.1, HTTP Basic with the
form-urlencoded id and secret) and ``client_secret_post`` (§2.3.1, ``client_id`` and
``client_secret`` in the body). A request uses exactly one (§2.3). Every failure is the same
``invalid_client``: the response never says whether the id, the secret or the client's
status was wrong, and an unknown id costs the same argon2id run as a wrong secret.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote_plus

from strongroom.auth.ports import ClientRecord, TenantRecord
from strongroom.auth.rfc6749_errors import OAuthError, invalid_client, invalid_request
from strongroom.auth.secrets import SecretHasher, VerifiedSecretCache

AuthMethod = Literal["client_secret_basic", "client_secret_post"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post")

# Generous for a 64-character id and a 43-character secret, urlencoded, in base64.
_BASIC_CREDENTIALS_MAX = 1024


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What a request presented: the id, the secret and how they came."""

    client_id: str
    secret: str
    method: AuthMethod


def parse_basic_authorization(header: str) -> tuple[str, str]:
    """``(client_id, secret)`` of an ``Authorization: Basic ...`` value; raises ``invalid_client``.

    RFC 6749 §2.3.1: the id and secret are each ``application/x-www-form-urlencoded``
    (Appendix B) before being joined by ``:`` and base64-encoded (RFC 7617 §2). The
    scheme name is case-insensitive (RFC 9110 §11.1).
    """
    scheme, _, credentials = header.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "basic" or not credentials or len(credentials) > _BASIC_CREDENTIALS_MAX:
        raise invalid_client()
    try:
        decoded = binascii.a2b_base64(credentials.encode("ascii"), strict_mode=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid_client() from None
    raw_id, colon, raw_secret = decoded.partition(":")
    if not colon:
        raise invalid_client()
    try:
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except UnicodeError:
        raise invalid_client() from None
    if not client_id or not secret:
        raise invalid_client()
    return client_id, secret


def client_credentials(authorization: str | None, form: Mapping[str, str]) -> ClientCredentials:
    """The credentials of a token/introspection/revocation request (RFC 6749 §2.3.1).

    Raises ``invalid_request`` when two methods are used or the body's ``client_id``
    contradicts the header, ``invalid_client`` when there are no usable credentials.
    """
    if authorization is not None:
        if "client_secret" in form:
            raise invalid_request("use one client authentication method, not two")
        client_id, secret = parse_basic_authorization(authorization)
        if form.get("client_id", client_id) != client_id:
            raise invalid_request("client_id does not match the authenticated client")
        return ClientCredentials(client_id, secret, "client_secret_basic")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        raise invalid_client("client authentication is required", basic=False)
    return ClientCredentials(client_id, secret, "client_secret_post")


def authenticate_client(
    client_id: str,
    secret: str,
    record: ClientRecord | None,
    *,
    hasher: SecretHasher,
    dummy_hash: str,
    cache: VerifiedSecretCache | None = None,
    tenant: TenantRecord | None = None,
    client_suspended: bool = False,
) -> ClientRecord:
    """The authenticated client, or ``invalid_client`` (all failures alike).

    ``record`` is ``ClientRepository.get(client_id)``. ``dummy_hash`` is any PHC string
    made by ``hasher`` at start-up: it is verified against when there is no record or no
    stored secret, so timing does not reveal which ids exist. ``tenant``, when given,
    must be active; ``client_suspended`` is the pod's deny list's view (it may know of a
    suspension before the record read did). The secret is checked before the status, so a
    suspended client costs the same as a wrong secret. CPU-bound (one argon2id run on a
    cache miss): call it from a worker thread.
    """
    if record is None or record.secret_hash is None or record.client_id != client_id:
        hasher.verify(dummy_hash, secret)
        raise invalid_client()
    if cache is None or not cache.check(client_id, record.secret_hash, secret):
        if not hasher.verify(record.secret_hash, secret):
            raise invalid_client()
        if cache is not None:
            cache.remember(client_id, record.secret_hash, secret)
    if record.status != "active" or client_suspended:
        raise invalid_client()
    if tenant is not None and (tenant.tenant_id != record.tenant_id or tenant.status != "active"):
        raise invalid_client()
    return record


__all__ = [
    "AUTH_METHODS",
    "AuthMethod",
    "ClientCredentials",
    "OAuthError",
    "authenticate_client",
    "client_credentials",
    "parse_basic_authorization",
]
