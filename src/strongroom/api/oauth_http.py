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
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.client_auth import parse_basic_authorization
from strongroom.auth.ports import ClientRecord
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
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(exc: errors.OAuthError) -> Response:
    body = {"error": exc.error}
    if exc.description:
        body["error_description"] = exc.description
    headers = {"WWW-Authenticate": exc.www_authenticate} if exc.www_authenticate else None
    return json_response(body, exc.status, headers)


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


async def authenticate_client(
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
    record = await client_cache(request).get(client_id)
    if record is None or record.secret_hash is None:
        await anyio.to_thread.run_sync(runtime.hasher.verify, runtime.dummy_hash, secret)
        auth_failed(request, client_id, "", "unknown_client")
        raise errors.invalid_client("client authentication failed", basic=basic)
    if not runtime.secret_cache.check(record.client_id, record.secret_hash, secret):
        ok = await anyio.to_thread.run_sync(runtime.hasher.verify, record.secret_hash, secret)
        if not ok:
            auth_failed(request, client_id, record.tenant_id, "bad_secret")
            raise errors.invalid_client("client authentication failed", basic=basic)
        runtime.secret_cache.remember(record.client_id, record.secret_hash, secret)
    if record.status != "active" or runtime.deny_list.client_suspended(record.client_id):
        auth_failed(request, client_id, record.tenant_id, "client_suspended")
        raise errors.invalid_client("client authentication failed", basic=basic)
    return record


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
