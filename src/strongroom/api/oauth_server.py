"""The authorization server's HTTP endpoints, served by every pod.

- RFC 8414 metadata at `/.well-known/oauth-authorization-server`
- RFC 7517 key set at `/oauth2/jwks`
- RFC 6749 token endpoint at `/oauth2/token` (client_credentials, §4.4)
- RFC 7662 introspection at `/oauth2/introspect`
- RFC 7009 revocation at `/oauth2/revoke`

Requests are form-encoded (§3.2: parameters sent twice are an error); responses are
JSON with `Cache-Control: no-store`; errors are exactly RFC 6749 §5.2's (401 with
`WWW-Authenticate` for client authentication failures), not problem+json, because
OAuth clients parse those codes.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import structlog
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.authz import auth_runtime
from strongroom.api.request_context import request_context
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.client_auth import parse_basic_authorization
from strongroom.auth.ports import ClientRecord, DenyEntry
from strongroom.auth.rfc9068_access_token import InvalidToken, issue_access_token
from strongroom.auth.scopes import SCOPES, InvalidScope, format_scope, parse_scope

router = APIRouter(tags=["oauth2"])
security_log = structlog.get_logger("strongroom.security")

FORM_TYPE = "application/x-www-form-urlencoded"
# Token endpoint bodies are a handful of short parameters.
FORM_BYTES_MAX = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
GRANT_TYPES = ("client_credentials",)
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def _error(exc: errors.OAuthError) -> Response:
    body = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
    headers = {"WWW-Authenticate": exc.www_authenticate} if exc.www_authenticate else None
    return _json(body, exc.status, headers)


async def _form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_TYPE:
        raise errors.invalid_request(f"the request body must be {FORM_TYPE}")
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        raise errors.invalid_request("request body too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise errors.invalid_request("the request body is not UTF-8") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise errors.invalid_request(f"parameter {name!r} is repeated")  # RFC 6749 §3.2
        form[name] = value
    return form


async def _authenticate_client(
    request: Request, form: dict[str, str], runtime: AuthRuntime
) -> ClientRecord:
    """RFC 6749 §2.3: exactly one authentication method per request."""
    header = request.headers.get("authorization")
    if header is not None:
        if "client_secret" in form:
            raise errors.invalid_request("use one client authentication method, not two")
        client_id, secret = parse_basic_authorization(header)
        if form.get("client_id", client_id) != client_id:
            raise errors.invalid_request("client_id does not match the authenticated client")
        basic = True
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        basic = False
        if not client_id or not secret:
            raise errors.invalid_client("client authentication is required", basic=False)
    record = await anyio.to_thread.run_sync(runtime.clients.get, client_id)
    if record is None or record.secret_hash is None:
        await anyio.to_thread.run_sync(runtime.hasher.verify, runtime.dummy_hash, secret)
        _auth_failed(request, client_id, "", "unknown_client")
        raise errors.invalid_client("client authentication failed", basic=basic)
    if not runtime.secret_cache.check(record.client_id, record.secret_hash, secret):
        ok = await anyio.to_thread.run_sync(runtime.hasher.verify, record.secret_hash, secret)
        if not ok:
            _auth_failed(request, client_id, record.tenant_id, "bad_secret")
            raise errors.invalid_client("client authentication failed", basic=basic)
        runtime.secret_cache.remember(record.client_id, record.secret_hash, secret)
    if record.status != "active" or runtime.deny_list.client_suspended(record.client_id):
        _auth_failed(request, client_id, record.tenant_id, "client_suspended")
        raise errors.invalid_client("client authentication failed", basic=basic)
    return record


def _auth_failed(request: Request, client_id: str, tenant: str, reason: str) -> None:
    context = request_context(request)
    security_log.warning(
        "auth.client_authentication_failed",
        reason=reason,
        client_id=client_id or None,
        tenant=tenant or None,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
    )


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def metadata(request: Request) -> Response:
    runtime = auth_runtime(request)
    issuer = runtime.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth2/token",
            "jwks_uri": f"{issuer}/oauth2/jwks",
            "introspection_endpoint": f"{issuer}/oauth2/introspect",
            "revocation_endpoint": f"{issuer}/oauth2/revoke",
            "grant_types_supported": list(GRANT_TYPES),
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": sorted(SCOPES),
            "token_endpoint_auth_signing_alg_values_supported": ["Ed25519", "ES256"],
            "authorization_response_iss_parameter_supported": True,
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/oauth2/jwks", summary="RFC 7517 JSON Web Key Set")
async def jwks(request: Request) -> Response:
    runtime = auth_runtime(request)
    key_set = await anyio.to_thread.run_sync(runtime.jwks)
    # Short shared caching: new keys are published `key_publish_ahead_s` before use.
    return JSONResponse(
        key_set,
        media_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=60"},
    )


@router.post("/oauth2/token", summary="RFC 6749 token endpoint")
async def token(request: Request) -> Response:
    runtime = auth_runtime(request)
    try:
        form = await _form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise errors.invalid_request("grant_type is required")
        if grant_type not in GRANT_TYPES:
            raise errors.unsupported_grant_type(f"grant_type {grant_type!r} is not supported")
        client = await _authenticate_client(request, form, runtime)
        return await _client_credentials(form, client, runtime)
    except errors.OAuthError as exc:
        return _error(exc)


async def _client_credentials(
    form: dict[str, str], client: ClientRecord, runtime: AuthRuntime
) -> Response:
    """RFC 6749 §4.4: the client acts on its own behalf, within its registered scopes."""
    requested = form.get("scope")
    try:
        scopes = parse_scope(requested) if requested else client.scopes
    except InvalidScope as exc:
        raise errors.invalid_scope(str(exc)) from exc
    if not scopes or not scopes <= client.scopes:
        raise errors.invalid_scope("the requested scope exceeds what the client may hold")
    keyring = await anyio.to_thread.run_sync(runtime.keyring)
    lifetime_s = runtime.settings.auth.access_token_lifetime_s
    access_token, _claims = issue_access_token(
        keyring.signing_key,
        issuer=runtime.issuer,
        audience=runtime.audience,
        subject=client.client_id,
        client_id=client.client_id,
        tenant=client.tenant_id,
        scope=scopes,
        lifetime_s=lifetime_s,
        now=time.time(),
    )
    return _json(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime_s,
            "scope": format_scope(scopes),
        }
    )


@router.post("/oauth2/introspect", summary="RFC 7662 token introspection")
async def introspect(request: Request) -> Response:
    runtime = auth_runtime(request)
    try:
        form = await _form(request)
        client = await _authenticate_client(request, form, runtime)
        value = form.get("token")
        if not value:
            raise errors.invalid_request("token is required")
    except errors.OAuthError as exc:
        return _error(exc)
    inactive = _json({"active": False})
    try:
        claims = runtime.verifier.verify(value)
    except InvalidToken:
        return inactive
    # A caller learns nothing about other tenants' tokens (property-level protection).
    if claims.tenant != client.tenant_id:
        return inactive
    revoked = await anyio.to_thread.run_sync(runtime.revocations.is_revoked, claims.jti)
    owner = await anyio.to_thread.run_sync(runtime.clients.get, claims.client_id)
    if revoked or owner is None or owner.status != "active":
        return inactive
    return _json(
        {
            "active": True,
            "scope": format_scope(claims.scope),
            "client_id": claims.client_id,
            "sub": claims.sub,
            "aud": runtime.audience,
            "iss": claims.iss,
            "exp": claims.exp,
            "iat": claims.iat,
            "jti": claims.jti,
            "token_type": "Bearer",
            "tenant": claims.tenant,
        }
    )


@router.post("/oauth2/revoke", summary="RFC 7009 token revocation")
async def revoke(request: Request) -> Response:
    runtime = auth_runtime(request)
    try:
        form = await _form(request)
        client = await _authenticate_client(request, form, runtime)
        value = form.get("token")
        if not value:
            raise errors.invalid_request("token is required")
    except errors.OAuthError as exc:
        return _error(exc)
    try:
        claims = runtime.verifier.verify(value)
    except InvalidToken:
        # §2.2: invalid or unknown tokens get 200 too — nothing to revoke.
        return _json({})
    # §2.1: a client may revoke only tokens issued to it.
    if claims.client_id == client.client_id:
        await anyio.to_thread.run_sync(
            lambda: runtime.revocations.revoke_token(
                claims.jti,
                tenant_id=claims.tenant,
                client_id=claims.client_id,
                expires_at=float(claims.exp),
                reason="revoked by client",
            )
        )
        # This pod refuses it at once; the others within `auth.deny_list_poll_s`.
        runtime.deny_list.apply([DenyEntry("token", claims.jti, float(claims.exp))])
    return _json({})
