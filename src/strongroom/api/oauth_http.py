"""HTTP plumbing shared by the OAuth endpoints: RFC 6749 forms, client authentication,
JSON responses and errors, and issuing an access-token response.

Responses are JSON with `Cache-Control: no-store` (RFC 6749 §5.1); errors are exactly
§5.2's (401 with `WWW-Authenticate` for client authentication failures), not
problem+json, because OAuth clients parse those codes.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import structlog
from fastapi import Request
from starlette.responses import JSONResponse, Response

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.client_cache import ClientCache
from strongroom.api.request_context import request_context
from strongroom.api.tenant_cache import tenant_cache
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.client_auth import parse_basic_authorization
from strongroom.auth.ports import ClientRecord
from strongroom.auth.rfc7523_client_assertion import (
    CLIENT_ASSERTION_TYPE,
    PRIVATE_KEY_JWT,
    InvalidClientAssertion,
    unverified_client_id,
    verify_client_assertion,
)
from strongroom.auth.rfc9068_access_token import issue_access_token
from strongroom.auth.scopes import format_scope

security_log = structlog.get_logger("strongroom.security")


def client_cache(request: Request) -> ClientCache:
    cache: ClientCache = request.app.state.client_cache
    return cache


FORM_TYPE = "application/x-www-form-urlencoded"
# Token endpoint bodies are a handful of short parameters.
FORM_BYTES_MAX = 16 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
# RFC 8414 names, as the metadata advertises them for every authenticated endpoint.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT)


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(exc: errors.OAuthError) -> Response:
    body = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
    # The error's own headers: no-store, the 401 challenge, a DPoP-Nonce (RFC 9449 §8).
    return json_response(body, exc.status, exc.headers())


async def read_form(request: Request) -> dict[str, str]:
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


def presents_client_credentials(request: Request, form: dict[str, str]) -> bool:
    """Whether the request carries credentials of a confidential client (RFC 6749 §2.3):
    an ``Authorization`` header, a ``client_secret`` or a client assertion (RFC 7521 §4.2).
    A request with none of them can only be a public client's (§2.1)."""
    return request.headers.get("authorization") is not None or bool(
        {"client_secret", "client_assertion", "client_assertion_type"} & form.keys()
    )


async def authenticate_client(
    request: Request, form: dict[str, str], runtime: AuthRuntime
) -> ClientRecord:
    """RFC 6749 §2.3: exactly one authentication method per request.

    ``client_secret_basic``/``client_secret_post`` (§2.3.1) or ``private_key_jwt``
    (RFC 7523 §2.2): a request that combines an assertion with a secret or a Basic header
    is ``invalid_request`` (RFC 6749 §2.3); every authentication failure is 401
    ``invalid_client`` (§5.2). A client registered with a JWK set authenticates with
    ``private_key_jwt`` only.
    """
    header = request.headers.get("authorization")
    if "client_assertion" in form or "client_assertion_type" in form:
        if header is not None or "client_secret" in form:
            raise errors.invalid_request("use one client authentication method, not two")
        return await _authenticate_by_assertion(request, form, runtime)
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
    record = await client_cache(request).get(client_id)
    if record is None or record.secret_hash is None or record.jwks is not None:
        # A key-registered client may not fall back to a secret: it costs the same
        # argon2id run as an unknown id, so timing tells neither apart.
        await anyio.to_thread.run_sync(runtime.hasher.verify, runtime.dummy_hash, secret)
        reason = "unknown_client" if record is None else "secret_not_registered"
        auth_failed(request, client_id, "" if record is None else record.tenant_id, reason)
        raise errors.invalid_client("client authentication failed", basic=basic)
    await _refuse_suspended_tenant(request, record, runtime, secret=secret, basic=basic)
    if not runtime.secret_cache.check(record.client_id, record.secret_hash, secret):
        ok = await anyio.to_thread.run_sync(runtime.hasher.verify, record.secret_hash, secret)
        if not ok:
            auth_failed(request, client_id, record.tenant_id, "bad_secret")
            raise errors.invalid_client("client authentication failed", basic=basic)
        runtime.secret_cache.remember(record.client_id, record.secret_hash, secret)
    return _active(request, record, runtime)


def _active(request: Request, record: ClientRecord, runtime: AuthRuntime) -> ClientRecord:
    """The client, unless suspended (the stored status, or the pod's deny list's newer view)."""
    if record.status != "active" or runtime.deny_list.client_suspended(record.client_id):
        auth_failed(request, record.client_id, record.tenant_id, "client_suspended")
        raise errors.invalid_client("client authentication failed", basic=False)
    return record


async def _authenticate_by_assertion(
    request: Request, form: dict[str, str], runtime: AuthRuntime
) -> ClientRecord:
    """``private_key_jwt`` (RFC 7523 §2.2, §3; RFC 7521 §4.2; OIDC Core §9)."""
    assertion = form.get("client_assertion", "")
    claimed = form.get("client_id", "")
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or not assertion:
        # RFC 6749 §5.2: "no client authentication included, or unsupported method".
        auth_failed(request, claimed, "", "unsupported_assertion")
        raise errors.invalid_client("client authentication failed", basic=False)
    try:
        client_id = unverified_client_id(assertion)
    except InvalidClientAssertion as exc:
        auth_failed(request, claimed, "", f"assertion_{exc.reason}")
        raise errors.invalid_client("client authentication failed", basic=False) from None
    if claimed and claimed != client_id:
        # RFC 7521 §4.2: a client_id sent beside the assertion must name the same client.
        auth_failed(request, claimed, "", "assertion_client_mismatch")
        raise errors.invalid_client("client authentication failed", basic=False)
    record = await client_cache(request).get(client_id)
    if record is None or record.jwks is None:
        reason = "unknown_client" if record is None else "jwks_not_registered"
        auth_failed(request, client_id, "" if record is None else record.tenant_id, reason)
        raise errors.invalid_client("client authentication failed", basic=False)
    await _refuse_suspended_tenant(request, record, runtime, secret=None, basic=False)
    auth = runtime.settings.auth
    jwks = record.jwks
    try:
        # Off the event loop: a signature check, and the replay cache's round trip.
        await anyio.to_thread.run_sync(
            lambda: verify_client_assertion(
                assertion,
                client_id=client_id,
                jwks=jwks,
                audiences=(runtime.issuer, f"{runtime.issuer}{TOKEN_PATH}"),
                now=time.time(),
                leeway_s=auth.leeway_s,
                lifetime_max_s=auth.client_assertion_lifetime_max_s,
                replay_cache=runtime.dpop_replay,
            )
        )
    except InvalidClientAssertion as exc:
        auth_failed(request, client_id, record.tenant_id, f"assertion_{exc.reason}")
        raise errors.invalid_client("client authentication failed", basic=False) from None
    return _active(request, record, runtime)


async def _refuse_suspended_tenant(
    request: Request, record: ClientRecord, runtime: AuthRuntime, *, secret: str | None, basic: bool
) -> None:
    """A suspended tenant's clients get nothing (``api/tenants_routes.py``).

    Called as soon as the client record is loaded. With a secret it pays a wrong
    secret's argon2id run, so the answer's timing does not reveal the tenant's status.
    """
    if await tenant_cache(request).is_active(record.tenant_id):
        return
    if secret is not None:
        await anyio.to_thread.run_sync(runtime.hasher.verify, runtime.dummy_hash, secret)
    auth_failed(request, record.client_id, record.tenant_id, "tenant_suspended")
    raise errors.invalid_client("client authentication failed", basic=basic)


def auth_failed(request: Request, client_id: str, tenant: str, reason: str) -> None:
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


def token_response(
    runtime: AuthRuntime,
    *,
    client: ClientRecord,
    subject: str,
    scopes: frozenset[str],
    cnf_jkt: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Sign an RFC 9068 access token and answer as RFC 6749 §5.1 says."""
    keyring = runtime.keyring()
    lifetime_s = runtime.settings.auth.access_token_lifetime_s
    access_token, _claims = issue_access_token(
        keyring.signing_key,
        issuer=runtime.issuer,
        audience=runtime.audience,
        subject=subject,
        client_id=client.client_id,
        tenant=client.tenant_id,
        scope=scopes,
        lifetime_s=lifetime_s,
        now=time.time(),
        cnf_jkt=cnf_jkt,
    )
    return json_response(
        {
            "access_token": access_token,
            "token_type": "DPoP" if cnf_jkt else "Bearer",
            "expires_in": lifetime_s,
            "scope": format_scope(scopes),
            **(extra or {}),
        }
    )
