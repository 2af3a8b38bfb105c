"""The authorization endpoint (RFC 6749 §3.1, §4.1.1-§4.1.2): login + consent, one page.

``GET /oauth2/authorize`` checks the request and serves a server-rendered form (no
scripts); ``POST /oauth2/authorize`` checks the whole request again from the form (hidden
fields are client input like any other), the CSRF token, the user's password, and
redirects with a single-use code.

Where errors go (§4.1.2.1): while the client or its ``redirect_uri`` is unknown, missing
or unregistered, the user sees an error page and is *never* redirected (an open
redirector otherwise); once both are known good, errors go back to the client as
``error``/``error_description``/``state``/``iss`` on the registered URI. RFC 9207: every
response to the client carries ``iss``, so a client talking to several servers can tell
which one answered (mix-up attacks).

CSRF: a random value in a ``__Host-`` cookie (Secure, HttpOnly, SameSite=Lax, path /,
so no subdomain can plant one) and, in the form, a time-stamped HMAC of that value under
a key derived from the shared key-encryption key: another site can neither read the
cookie nor compute the token. Every page is ``no-store``, unframeable (``X-Frame-Options:
DENY``, CSP ``frame-ancestors 'none'``) and runs no script.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from string import Template
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
import structlog
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from strongroom.adapters.db.user_repositories import AuthorizationCodeRecord, UserStores
from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.authz import auth_runtime
from strongroom.api.oauth_grants.refresh_token import user_stores
from strongroom.api.request_context import request_context
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.app_clients import AppClient
from strongroom.auth.keys import b64url_encode
from strongroom.auth.refresh_tokens import credential_hash, new_authorization_code
from strongroom.auth.rfc7636_pkce import check_challenge
from strongroom.auth.scopes import InvalidScope, format_scope, parse_scope
from strongroom.auth.users import UserError, UserRecord, check_login, normalize_username, user_scope

router = APIRouter(tags=["oauth2"])
security_log = structlog.get_logger("strongroom.security")

AUTHORIZE_PATH = "/oauth2/authorize"
CSRF_COOKIE = "__Host-strongroom-csrf"
_CSRF_KEY_LABEL = b"strongroom/login-csrf/v1"
_CSRF_VALUE_BYTES = 32
_CSRF_VALUE_CHARS = 43
# A login form is a handful of short fields; the query string of a GET likewise.
FORM_BYTES_MAX = 16 * 1024
# `state` is the client's opaque value, echoed back: bounded so we echo nothing huge.
STATE_CHARS_MAX = 1024
_FORM_TYPE = "application/x-www-form-urlencoded"
# The authorization request's parameters, carried through the form as hidden fields.
_CARRIED = ("response_type", "client_id", "redirect_uri", "scope", "state")
_CARRIED_PKCE = ("code_challenge", "code_challenge_method")

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.75rem 0}input{width:100%;padding:.4rem;box-sizing:border-box}"
    "button{margin:.75rem .5rem 0 0;padding:.5rem 1rem}.error{color:#a00}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_PAGE = Template(
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    "<title>$title</title><style>$style</style></head>\n<body><main>\n$content\n</main></body></html>\n"
)
_LOGIN = Template(
    "<h1>Sign in to $client</h1>\n"
    "<p><strong>$client</strong> asks for access to your account to:</p>\n<ul>$scopes</ul>\n"
    "$error"
    '<form method="post" action="$action">\n$hidden'
    '<label>Username <input name="username" autocomplete="username" required value="$username">'
    "</label>\n"
    '<label>Password <input name="password" type="password" autocomplete="current-password"'
    " required></label>\n"
    '<button type="submit" name="action" value="approve">Sign in and allow</button>'
    '<button type="submit" name="action" value="deny" formnovalidate>Deny</button>\n'
    "</form>"
)


class PageError(Exception):
    """An error shown to the user, never redirected (§4.1.2.1, first paragraph)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RedirectError(Exception):
    """An error returned to the client on its registered redirect URI (§4.1.2.1)."""

    def __init__(self, error: errors.OAuthError, redirect_uri: str, state: str | None) -> None:
        super().__init__(error.error)
        self.error = error
        self.redirect_uri = redirect_uri
        self.state = state


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: AppClient
    redirect_uri: str  # where to send the user back (the registered URI)
    redirect_uri_param: str | None  # as sent; the token request must send the same
    state: str | None
    requested: frozenset[str] | None
    code_challenge: str
    params: dict[str, str]  # carried through the form


# --- request validation -------------------------------------------------------------------


def _single_valued(pairs: list[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if name in params:
            repeated.add(name)
        params[name] = value
    return params, repeated


async def validate_request(
    pairs: list[tuple[str, str]], runtime: AuthRuntime, stores: UserStores
) -> AuthorizationRequest:
    """RFC 6749 §4.1.1 with PKCE required (RFC 7636 §4.4.1); raises ``PageError`` or
    ``RedirectError`` as §4.1.2.1 says."""
    params, repeated = _single_valued(pairs)
    # §3.1: parameters MUST NOT repeat; a repeated client_id or redirect_uri cannot be
    # trusted enough to redirect to.
    if repeated & {"client_id", "redirect_uri"}:
        raise PageError(400, "The application sent an invalid request (a repeated parameter).")
    client_id = params.get("client_id", "")
    if not client_id:
        raise PageError(400, "The application's request does not say which application it is.")
    app = await anyio.to_thread.run_sync(stores.app_clients.get, client_id)
    if (
        app is None
        or app.record.status != "active"
        or runtime.deny_list.client_suspended(app.record.client_id)
    ):
        raise PageError(400, "The application is unknown or not available.")
    given = params.get("redirect_uri")
    if given is None:
        # §3.1.2.3: optional only when exactly one URI is registered.
        if len(app.redirect_uris) != 1:
            raise PageError(400, "The application's request has no redirect URI.")
        redirect_uri = app.redirect_uris[0]
    elif given in app.redirect_uris:  # exact string comparison (RFC 9700 §4.1.3)
        redirect_uri = given
    else:
        raise PageError(400, "The application's redirect URI is not registered.")

    state = params.get("state")
    if state is not None and len(state) > STATE_CHARS_MAX:
        raise RedirectError(errors.invalid_request("state is too long"), redirect_uri, None)

    def fail(error: errors.OAuthError) -> RedirectError:
        return RedirectError(error, redirect_uri, state)

    if repeated:
        raise fail(errors.invalid_request(f"parameter {sorted(repeated)[0]!r} is repeated"))
    response_type = params.get("response_type")
    if not response_type:
        raise fail(errors.invalid_request("response_type is required"))
    if response_type != "code":
        raise fail(
            errors.OAuthError("unsupported_response_type", "only response_type=code is supported")
        )
    try:
        challenge = check_challenge(
            params.get("code_challenge"), params.get("code_challenge_method")
        )
    except errors.OAuthError as exc:
        raise fail(exc) from None
    scope_param = params.get("scope")
    try:
        requested = None if scope_param is None else parse_scope(scope_param)
        user_scope(requested, client=app.record, user=None)
    except InvalidScope as exc:
        raise fail(errors.invalid_scope(str(exc))) from None
    carried = {
        name: params[name] for name in (*_CARRIED, *_CARRIED_PKCE) if params.get(name) is not None
    }
    return AuthorizationRequest(
        client=app,
        redirect_uri=redirect_uri,
        redirect_uri_param=given,
        state=state,
        requested=requested,
        code_challenge=challenge,
        params=carried,
    )


# --- responses ----------------------------------------------------------------------------


def redirect_to_client(
    redirect_uri: str, params: Mapping[str, str | None], *, status: int
) -> Response:
    """The client's URI with ``params`` added to its query (§3.1.2: keep its own query)."""
    parts = urlsplit(redirect_uri)
    existing = parse_qsl(parts.query, keep_blank_values=True)
    added = [(k, v) for k, v in params.items() if v is not None]
    location = urlunsplit(parts._replace(query=urlencode(existing + added)))
    return RedirectResponse(location, status_code=status, headers=SECURITY_HEADERS)


def _error_redirect(exc: RedirectError, runtime: AuthRuntime, *, status: int) -> Response:
    return redirect_to_client(
        exc.redirect_uri,
        {
            "error": exc.error.error,
            "error_description": exc.error.description or None,
            "state": exc.state,
            "iss": runtime.issuer,  # RFC 9207 §2
        },
        status=status,
    )


def _page(title: str, content: str, *, status: int = 200) -> HTMLResponse:
    body = _PAGE.substitute(title=escape(title), style=_STYLE, content=content)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _error_page(exc: PageError) -> HTMLResponse:
    return _page(
        "Sign-in error",
        f"<h1>This sign-in cannot continue</h1>\n<p>{escape(exc.message)}</p>",
        status=exc.status,
    )


def _csrf_key(runtime: AuthRuntime) -> bytes:
    master = runtime.settings.secrets.key_encryption_key.get_secret_value().encode()
    return hmac.new(master, _CSRF_KEY_LABEL, hashlib.sha256).digest()


def _csrf_mac(runtime: AuthRuntime, cookie: str, issued: int) -> str:
    message = f"{cookie}.{issued}".encode()
    return b64url_encode(hmac.new(_csrf_key(runtime), message, hashlib.sha256).digest())


def csrf_token(runtime: AuthRuntime, cookie: str, now: float) -> str:
    issued = int(now)
    return f"{issued}.{_csrf_mac(runtime, cookie, issued)}"


def csrf_valid(runtime: AuthRuntime, cookie: str | None, token: str | None, now: float) -> bool:
    if not cookie or not token or len(cookie) != _CSRF_VALUE_CHARS:
        return False
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    lifetime = runtime.settings.auth.login_form_lifetime_s
    if not (issued - runtime.settings.auth.leeway_s <= now <= issued + lifetime):
        return False
    return hmac.compare_digest(mac, _csrf_mac(runtime, cookie, issued))


def _login_page(
    request: Request,
    runtime: AuthRuntime,
    req: AuthorizationRequest,
    *,
    error: str = "",
    username: str = "",
) -> HTMLResponse:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if len(cookie) != _CSRF_VALUE_CHARS or not cookie.replace("-", "").replace("_", "").isalnum():
        cookie = secrets.token_urlsafe(_CSRF_VALUE_BYTES)
    fields = {**req.params, "csrf": csrf_token(runtime, cookie, time.time())}
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">\n' for k, v in fields.items()
    )
    try:
        shown = user_scope(req.requested, client=req.client.record, user=None)
    except InvalidScope:
        shown = frozenset()
    content = _LOGIN.substitute(
        client=escape(req.client.record.name),
        scopes="".join(f"<li><code>{escape(s)}</code></li>" for s in sorted(shown)),
        error=f'<p class="error" role="alert">{escape(error)}</p>\n' if error else "",
        action=AUTHORIZE_PATH,
        hidden=hidden,
        username=escape(username),
    )
    response = _page(f"Sign in to {req.client.record.name}", content)
    lifetime = runtime.settings.auth.login_form_lifetime_s
    response.headers.append(
        "Set-Cookie",
        f"{CSRF_COOKIE}={cookie}; Max-Age={lifetime}; Path=/; Secure; HttpOnly; SameSite=Lax",
    )
    return response


def _login_failed(request: Request, req: AuthorizationRequest, username: str, reason: str) -> None:
    context = request_context(request)
    security_log.warning(
        "auth.login_failed",
        reason=reason,
        tenant=req.client.record.tenant_id,
        user=username[:64] or None,
        client_id=req.client.record.client_id,
        ip=context.client_host,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
    )


# --- endpoints ----------------------------------------------------------------------------


# Browser pages, not API operations: left out of the OpenAPI document; clients find the
# endpoint through the RFC 8414 metadata (`authorization_endpoint`).
@router.get(
    AUTHORIZE_PATH,
    summary="RFC 6749 authorization endpoint (login + consent page)",
    include_in_schema=False,
)
async def authorize_page(request: Request) -> Response:
    runtime = auth_runtime(request)
    stores = user_stores(request)
    if len(request.url.query) > FORM_BYTES_MAX:
        return _error_page(PageError(414, "The application's request is too long."))
    pairs = parse_qsl(request.url.query, keep_blank_values=True)
    try:
        req = await validate_request(pairs, runtime, stores)
    except PageError as exc:
        return _error_page(exc)
    except RedirectError as exc:
        return _error_redirect(exc, runtime, status=302)
    return _login_page(request, runtime, req)


async def _read_form(request: Request) -> list[tuple[str, str]]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != _FORM_TYPE:
        raise PageError(415, "The form was not sent as a form.")
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        raise PageError(413, "The form is too large.")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise PageError(400, "The form is not valid UTF-8.") from None


def _require_csrf(request: Request, runtime: AuthRuntime, form: Mapping[str, str]) -> None:
    if csrf_valid(runtime, request.cookies.get(CSRF_COOKIE), form.get("csrf"), time.time()):
        return
    context = request_context(request)
    security_log.warning(
        "auth.csrf_rejected",
        reason="csrf_token_invalid",
        client_id=form.get("client_id", "")[:64] or None,
        ip=context.client_host,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
    )
    raise PageError(
        403, "This form expired or was not sent from this site. Go back and start again."
    )


@router.post(AUTHORIZE_PATH, summary="Login + consent form submission", include_in_schema=False)
async def authorize_submit(request: Request) -> Response:
    runtime = auth_runtime(request)
    stores = user_stores(request)
    try:
        pairs = await _read_form(request)
        form, _repeated = _single_valued(pairs)
        _require_csrf(request, runtime, form)
        carried = [(k, v) for k, v in pairs if k in (*_CARRIED, *_CARRIED_PKCE)]
        req = await validate_request(carried, runtime, stores)
    except PageError as exc:
        return _error_page(exc)
    except RedirectError as exc:
        return _error_redirect(exc, runtime, status=303)

    action = form.get("action")
    if action == "deny":
        return _error_redirect(
            RedirectError(
                errors.OAuthError("access_denied", "the user denied the request"),
                req.redirect_uri,
                req.state,
            ),
            runtime,
            status=303,
        )
    if action != "approve":
        return _error_page(PageError(400, "Choose to allow or deny."))
    raw_username = form.get("username", "")
    password = form.get("password", "")
    tenant_id = req.client.record.tenant_id
    try:
        username = normalize_username(raw_username)
        record = await anyio.to_thread.run_sync(stores.users.find, tenant_id, username)
    except UserError:
        username, record = raw_username.strip(), None
    outcome = await anyio.to_thread.run_sync(
        lambda: check_login(record, password, hasher=runtime.hasher, dummy_hash=runtime.dummy_hash)
    )
    if not isinstance(outcome, UserRecord):
        _login_failed(request, req, username, outcome)
        return _login_page(
            request, runtime, req, error="Wrong username or password.", username=raw_username
        )
    try:
        scope = user_scope(req.requested, client=req.client.record, user=outcome)
    except InvalidScope as exc:
        return _error_redirect(
            RedirectError(errors.invalid_scope(str(exc)), req.redirect_uri, req.state),
            runtime,
            status=303,
        )
    code = new_authorization_code()
    now = time.time()
    grant = AuthorizationCodeRecord(
        code_hash=credential_hash(code),
        tenant_id=tenant_id,
        client_id=req.client.record.client_id,
        user_id=outcome.user_id,
        redirect_uri=req.redirect_uri_param,
        scope=scope,
        code_challenge=req.code_challenge,
        auth_time=now,
        created_at=now,
        expires_at=now + runtime.settings.auth.authorization_code_lifetime_s,
    )
    await anyio.to_thread.run_sync(stores.codes.create, grant)
    security_log.info(
        "auth.login_succeeded",
        tenant=tenant_id,
        user_id=outcome.user_id,
        client_id=req.client.record.client_id,
        scope=format_scope(scope),
        client_ip=request_context(request).client_host,
    )
    # 303: the browser follows with a GET and never re-posts the password (RFC 9700 §4.12).
    return redirect_to_client(
        req.redirect_uri,
        {"code": code, "state": req.state, "iss": runtime.issuer},
        status=303,
    )
