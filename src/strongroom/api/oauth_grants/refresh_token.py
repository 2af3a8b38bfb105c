"""RFC 6749 §6: refresh tokens, rotated on every use, with family reuse detection.

Each use returns a new refresh token and retires the presented one (RFC 9700 §4.14.2).
A retired token presented again revokes its whole family and the access tokens issued
in it (put on the deny list, so every pod refuses them within ``auth.deny_list_poll_s``),
except within ``auth.refresh_reuse_grace_s`` of the rotation while the successor is
unused, when the same new pair is returned again (``auth/refresh_tokens.py``).

Also here, because both user-facing grants share them: client authentication for public
and confidential clients, and issuing an access + refresh token pair.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import anyio.to_thread
import structlog
from fastapi import Request
from starlette.responses import Response

from strongroom.adapters.db.user_repositories import UserStores
from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.dpop import DpopOAuthError, dpop_error_response, token_request_jkt, with_nonce
from strongroom.api.oauth_http import (
    auth_failed,
    authenticate_client,
    json_response,
    presents_client_credentials,
)
from strongroom.api.request_context import request_context
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.ports import ClientRecord, DenyEntry
from strongroom.auth.refresh_tokens import (
    IssuedAccess,
    RefreshFamily,
    RefreshTokenRecord,
    Refused,
    Replayed,
    ReuseDetected,
    credential_hash,
    derive_rotation_key,
    is_refresh_token,
    refresh_scope,
    refresh_token_expiry,
    successor_token,
)
from strongroom.auth.rfc9068_access_token import issue_access_token
from strongroom.auth.scopes import InvalidScope, format_scope, parse_scope
from strongroom.auth.users import user_scope

GRANT_TYPE = "refresh_token"

security_log = structlog.get_logger("strongroom.security")

_JTI_BYTES = 16


def user_stores(request: Request) -> UserStores:
    """The pod's user-facing stores, built once over the app's engine."""
    state = request.app.state
    stores: UserStores | None = getattr(state, "user_stores", None)
    if stores is None:
        stores = UserStores.for_engine(state.engine)
        state.user_stores = stores
    return stores


def rotation_key(runtime: AuthRuntime) -> bytes:
    return derive_rotation_key(runtime.settings.secrets.key_encryption_key.get_secret_value())


async def authenticate_app_client(
    request: Request, form: dict[str, str], runtime: AuthRuntime, stores: UserStores
) -> ClientRecord:
    """A confidential client by its credentials (RFC 6749 §2.3), or a public client by
    ``client_id`` alone (§3.2.1) — only one registered as public; anything else is 401
    ``invalid_client``."""
    if presents_client_credentials(request, form):
        return await authenticate_client(request, form, runtime)
    client_id = form.get("client_id", "")
    if not client_id:
        raise errors.invalid_client("client authentication is required", basic=False)
    app = await anyio.to_thread.run_sync(stores.app_clients.get, client_id)
    if app is None or not app.is_public:
        auth_failed(request, client_id, "" if app is None else app.record.tenant_id, "no_secret")
        raise errors.invalid_client("client authentication failed", basic=False)
    record = app.record
    if record.status != "active" or runtime.deny_list.client_suspended(record.client_id):
        auth_failed(request, client_id, record.tenant_id, "client_suspended")
        raise errors.invalid_client("client authentication failed", basic=False)
    return record


async def binding_jkt(
    request: Request, runtime: AuthRuntime, client: ClientRecord, scopes: frozenset[str]
) -> str | None:
    """The DPoP key to bind to (RFC 9449 §5), checked before any credential is consumed,
    so a ``use_dpop_nonce`` retry does not look like a reused code or token."""
    return await token_request_jkt(request, runtime, client, scopes)


def new_access(runtime: AuthRuntime, scope: frozenset[str], now: float) -> IssuedAccess:
    """The claims of an access token to issue, chosen before it is recorded and signed."""
    iat = int(now)
    return IssuedAccess(
        jti=secrets.token_urlsafe(_JTI_BYTES),
        iat=iat,
        exp=iat + runtime.settings.auth.access_token_lifetime_s,
        scope=scope,
    )


def new_token_record(
    runtime: AuthRuntime, refresh_token: str, access: IssuedAccess, *, family: RefreshFamily
) -> RefreshTokenRecord:
    now = float(access.iat)
    return RefreshTokenRecord(
        token_hash=credential_hash(refresh_token),
        family_id=family.family_id,
        issued_at=now,
        expires_at=refresh_token_expiry(
            now, runtime.settings.auth.refresh_token_lifetime_s, family.expires_at
        ),
        access=access,
    )


def pair_response(
    runtime: AuthRuntime,
    *,
    family: RefreshFamily,
    access: IssuedAccess,
    refresh_token: str,
    cnf_jkt: str | None,
) -> Response:
    """Sign ``access`` for the family's user and answer as RFC 6749 §5.1 says."""
    keyring = runtime.keyring()
    token, _claims = issue_access_token(
        keyring.signing_key,
        issuer=runtime.issuer,
        audience=runtime.audience,
        subject=family.user_id,
        client_id=family.client_id,
        tenant=family.tenant_id,
        scope=access.scope,
        lifetime_s=access.exp - access.iat,
        now=float(access.iat),
        jti=access.jti,
        cnf_jkt=cnf_jkt,
    )
    body: dict[str, Any] = {
        "access_token": token,
        "token_type": "DPoP" if cnf_jkt else "Bearer",
        "expires_in": max(1, access.exp - int(time.time())),
        "refresh_token": refresh_token,
        "scope": format_scope(access.scope),
    }
    response = json_response(body)
    return with_nonce(response, runtime) if cnf_jkt is not None else response


async def deny_access_tokens(
    runtime: AuthRuntime,
    revoked: tuple[IssuedAccess, ...],
    *,
    tenant_id: str,
    client_id: str,
    reason: str,
) -> None:
    """Put access tokens of ``client_id`` on the deny list (RFC 7009 semantics:
    every pod refuses them within ``auth.deny_list_poll_s``)."""

    def revoke_all() -> None:
        for access in revoked:
            runtime.revocations.revoke_token(
                access.jti,
                tenant_id=tenant_id,
                client_id=client_id,
                expires_at=float(access.exp),
                reason=reason,
            )

    await anyio.to_thread.run_sync(revoke_all)
    runtime.deny_list.apply([DenyEntry("token", a.jti, float(a.exp)) for a in revoked])


def security_event(request: Request, event: str, **fields: Any) -> None:
    context = request_context(request)
    security_log.warning(
        event,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
        **fields,
    )


async def handle(request: Request, form: dict[str, str], runtime: AuthRuntime) -> Response:
    stores = user_stores(request)
    client = await authenticate_app_client(request, form, runtime, stores)
    presented = form.get("refresh_token")
    if not presented:
        raise errors.invalid_request("refresh_token is required")
    requested = form.get("scope")
    try:
        if requested is not None:
            parse_scope(requested)
    except InvalidScope as exc:
        raise errors.invalid_scope(str(exc)) from exc
    if not is_refresh_token(presented):
        raise errors.invalid_grant()
    token_hash = credential_hash(presented)
    # A read to choose the scope and DPoP binding; the decision itself is the atomic
    # rotation below, which re-checks everything this read saw.
    family = await anyio.to_thread.run_sync(stores.refresh_tokens.family_of, token_hash)
    if family is None or family.client_id != client.client_id:
        raise errors.invalid_grant()
    user = await anyio.to_thread.run_sync(stores.users.get, family.tenant_id, family.user_id)
    if user is None or user.status != "active":
        revoked = await anyio.to_thread.run_sync(
            lambda: stores.refresh_tokens.revoke_family(family.family_id, reason="user disabled")
        )
        await deny_access_tokens(
            runtime,
            revoked,
            tenant_id=family.tenant_id,
            client_id=family.client_id,
            reason="user disabled",
        )
        raise errors.invalid_grant()
    try:
        scope = user_scope(
            refresh_scope(requested, family_scope=family.scope), client=client, user=user
        )
    except InvalidScope as exc:
        raise errors.invalid_scope(str(exc)) from exc
    try:
        jkt = await binding_jkt(request, runtime, client, scope)
    except DpopOAuthError as exc:
        return dpop_error_response(exc)
    if family.dpop_jkt is not None and jkt != family.dpop_jkt:
        # RFC 9449 §5: a public client's refresh token works only with its DPoP key.
        raise errors.invalid_grant("the refresh token is bound to another DPoP key")

    successor = successor_token(rotation_key(runtime), presented)
    head = new_token_record(
        runtime, successor, new_access(runtime, scope, time.time()), family=family
    )
    grace_s = runtime.settings.auth.refresh_reuse_grace_s
    outcome = await anyio.to_thread.run_sync(
        lambda: stores.refresh_tokens.rotate(
            token_hash, client_id=client.client_id, successor=head, grace_s=grace_s
        )
    )
    if isinstance(outcome, Refused):
        raise errors.invalid_grant()
    if isinstance(outcome, ReuseDetected):
        await deny_access_tokens(
            runtime,
            outcome.revoked,
            tenant_id=outcome.family.tenant_id,
            client_id=outcome.family.client_id,
            reason="refresh token reused",
        )
        security_event(
            request,
            "auth.refresh_token_reuse",
            reason="refresh_token_reused",
            client_id=client.client_id,
            tenant=client.tenant_id,
            user_id=family.user_id,
            family_id=family.family_id,
            revoked_access_tokens=len(outcome.revoked),
        )
        raise errors.invalid_grant()
    if isinstance(outcome, Replayed):
        security_event(
            request,
            "auth.refresh_token_replayed_in_grace",
            reason="lost_response_retry",
            client_id=client.client_id,
            tenant=client.tenant_id,
            family_id=family.family_id,
        )
    return pair_response(
        runtime,
        family=outcome.family,
        access=outcome.successor.access,
        refresh_token=successor,
        cnf_jkt=jkt,
    )
