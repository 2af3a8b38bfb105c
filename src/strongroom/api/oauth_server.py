"""The authorization server's HTTP endpoints, served by every pod.

- RFC 8414 metadata at `/.well-known/oauth-authorization-server`
- RFC 7517 key set at `/oauth2/jwks`
- RFC 6749 token endpoint at `/oauth2/token` (grants: `api/oauth_grants/`)
- RFC 7662 introspection at `/oauth2/introspect`
- RFC 7009 revocation at `/oauth2/revoke`
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from strongroom.api.authz import auth_runtime
from strongroom.api.oauth_grants import GRANTS
from strongroom.api.oauth_http import (
    AUTH_METHODS,
    authenticate_client,
    client_cache,
    error_response,
    json_response,
    read_form,
)
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.ports import DenyEntry
from strongroom.auth.rfc7523_client_assertion import ASSERTION_ALGS
from strongroom.auth.rfc7636_pkce import CODE_CHALLENGE_METHODS_SUPPORTED
from strongroom.auth.rfc9068_access_token import InvalidToken
from strongroom.auth.scopes import SCOPES, format_scope

router = APIRouter(tags=["oauth2"])


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def metadata(request: Request) -> Response:
    runtime = auth_runtime(request)
    issuer = runtime.issuer
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth2/authorize",
            "token_endpoint": f"{issuer}/oauth2/token",
            "jwks_uri": f"{issuer}/oauth2/jwks",
            "introspection_endpoint": f"{issuer}/oauth2/introspect",
            "revocation_endpoint": f"{issuer}/oauth2/revoke",
            "grant_types_supported": sorted(GRANTS),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": list(CODE_CHALLENGE_METHODS_SUPPORTED),
            # "none": public clients authenticate by PKCE alone (RFC 7636), never by secret.
            "token_endpoint_auth_methods_supported": [*AUTH_METHODS, "none"],
            "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
            "scopes_supported": sorted(SCOPES),
            # private_key_jwt (RFC 7523 §2.2) assertions: asymmetric algorithms only.
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
            "authorization_response_iss_parameter_supported": True,
            "dpop_signing_alg_values_supported": ["ES256", "Ed25519"],
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
        form = await read_form(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise errors.invalid_request("grant_type is required")
        handler = GRANTS.get(grant_type)
        if handler is None:
            raise errors.unsupported_grant_type(f"grant_type {grant_type!r} is not supported")
        return await handler(request, form, runtime)
    except errors.OAuthError as exc:
        return error_response(exc)


# RFC 7662 §2.2: whatever the reason, an unusable token is only ever "not active".
INACTIVE = {"active": False}


@router.post("/oauth2/introspect", summary="RFC 7662 token introspection")
async def introspect(request: Request) -> Response:
    runtime = auth_runtime(request)
    try:
        form = await read_form(request)
        client = await authenticate_client(request, form, runtime)
        value = form.get("token")
        if not value:
            raise errors.invalid_request("token is required")
    except errors.OAuthError as exc:
        return error_response(exc)
    try:
        claims = runtime.verifier.verify(value)
    except InvalidToken:
        return json_response(INACTIVE)
    # A caller learns nothing about other tenants' tokens (property-level protection).
    if claims.tenant != client.tenant_id:
        return json_response(INACTIVE)
    # Introspection is the truth, not a view up to one poll old: wait for a deny-list
    # poll that began after this request (shared with concurrent requests), then ask it.
    await runtime.deny_list_sync.catch_up()
    deny = runtime.deny_list
    if deny.token_revoked(claims.jti) or deny.client_suspended(claims.client_id):
        return json_response(INACTIVE)
    owner = await client_cache(request).get(claims.client_id)
    if owner is None or owner.status != "active":
        return json_response(INACTIVE)
    return json_response(
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
            # RFC 9449 §6.2: a sender-constrained token says so, with its key thumbprint.
            "token_type": "DPoP" if claims.cnf_jkt else "Bearer",
            **({"cnf": {"jkt": claims.cnf_jkt}} if claims.cnf_jkt else {}),
            "tenant": claims.tenant,
        }
    )


@router.post("/oauth2/revoke", summary="RFC 7009 token revocation")
async def revoke(request: Request) -> Response:
    runtime = auth_runtime(request)
    try:
        form = await read_form(request)
        client = await authenticate_client(request, form, runtime)
        value = form.get("token")
        if not value:
            raise errors.invalid_request("token is required")
    except errors.OAuthError as exc:
        return error_response(exc)
    try:
        claims = runtime.verifier.verify(value)
    except InvalidToken:
        # §2.2: invalid or unknown tokens get 200 too — nothing to revoke.
        return json_response({})
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
    return json_response({})
