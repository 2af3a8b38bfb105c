"""Resource-server side: every /v1 route declares the one scope it needs.

`requires("accounts:read")` is a FastAPI dependency that authenticates the access
token — `Bearer` (RFC 6750) or `DPoP` with a proof of possession (RFC 9449 §7, checked
by `api.dpop.resource_request_check`) — checks the deny list (revocations and suspended
clients reach every pod within `auth.deny_list_poll_s`), and demands the exact scope.
Routes reach the caller's identity through the returned `Principal`; tenant scoping of
every query starts from `principal.tenant`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request, Response

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.dpop import DPOP_CHALLENGE, resource_request_check, with_nonce
from strongroom.api.problems import ProblemError, register_problem
from strongroom.api.request_context import PRINCIPAL_SCOPE_KEY, request_context
from strongroom.api.tenant_cache import tenant_cache
from strongroom.auth.rfc9068_access_token import InvalidToken
from strongroom.auth.scopes import OPERATOR_SCOPES, SCOPES

security_log = structlog.get_logger("strongroom.security")

INVALID_TOKEN = register_problem("invalid-token", "Invalid access token", 401)
INSUFFICIENT_SCOPE = register_problem("insufficient-scope", "Insufficient scope", 403)

# Marks the dependency so a test can prove every /v1 route made an authorization decision.
AUTHZ_MARK = "__strongroom_authz__"


@dataclass(frozen=True, slots=True)
class Principal:
    client_id: str
    subject: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    expires_at: int
    # RFC 7638 thumbprint of the key the token is bound to (RFC 9449 §6.1), if any.
    dpop_jkt: str | None = None

    @property
    def is_operator(self) -> bool:
        return bool(self.scopes & OPERATOR_SCOPES)


def auth_runtime(request: Request) -> AuthRuntime:
    runtime: AuthRuntime = request.app.state.auth
    return runtime


def _deny(
    request: Request, *, status: int, reason: str, client_id: str = "", tenant: str = ""
) -> None:
    """Emit the security event the SIEM consumes for every authentication/authz failure."""
    context = request_context(request)
    security_log.warning(
        "auth.denied",
        status=status,
        reason=reason,
        client_id=client_id or None,
        tenant=tenant or None,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
    )


def _access_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer|DPoP <token>`` header; ``None`` when there
    is no header, ``""`` when it is malformed or another scheme."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("bearer", "dpop") or not token.strip():
        return ""
    return token.strip()


async def authenticate(request: Request) -> Principal:
    runtime = auth_runtime(request)
    token = _access_token(request)
    challenge = f'Bearer realm="strongroom", resource_metadata="{runtime.issuer}"'
    if token is None:
        # RFC 6750 §3.1: no error code when the request had no credentials at all.
        # RFC 9449 §7.1: DPoP is offered beside Bearer, with the algorithms we accept.
        _deny(request, status=401, reason="missing_token")
        raise ProblemError(
            "invalid-token",
            "An access token is required.",
            headers={"WWW-Authenticate": f"{challenge}, {DPOP_CHALLENGE}"},
        )
    try:
        claims = runtime.verifier.verify(token) if token else None
    except InvalidToken as exc:
        claims = None
        reason = str(exc)
    else:
        reason = "malformed_authorization_header"
    if claims is None:
        _deny(request, status=401, reason=reason)
        raise ProblemError(
            "invalid-token",
            "The access token is invalid.",
            headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
        )
    deny = runtime.deny_list
    if deny.token_revoked(claims.jti) or deny.client_suspended(claims.client_id):
        _deny(
            request,
            status=401,
            reason="revoked",
            client_id=claims.client_id,
            tenant=claims.tenant,
        )
        raise ProblemError(
            "invalid-token",
            "The access token has been revoked.",
            headers={"WWW-Authenticate": f'{challenge}, error="invalid_token"'},
        )
    await resource_request_check(request, runtime, claims)
    request.scope[PRINCIPAL_SCOPE_KEY] = (claims.client_id, claims.tenant)
    return Principal(
        client_id=claims.client_id,
        subject=claims.sub,
        tenant=claims.tenant,
        scopes=claims.scope,
        token_id=claims.jti,
        expires_at=claims.exp,
        dpop_jkt=claims.cnf_jkt,
    )


def requires(scope: str) -> Callable[[Request, Response], Awaitable[Principal]]:
    """The dependency for a route that needs `scope` (exact match, no wildcards)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: add it to strongroom.auth.scopes")

    async def dependency(request: Request, response: Response) -> Principal:
        principal = await authenticate(request)
        # A suspended tenant's tokens stop everywhere within the tenant cache's TTL, even
        # before (or without) each of its clients reaching the deny list.
        if not await tenant_cache(request).is_active(principal.tenant):
            _deny(
                request,
                status=401,
                reason="tenant_suspended",
                client_id=principal.client_id,
                tenant=principal.tenant,
            )
            raise ProblemError(
                "invalid-token",
                "The access token's tenant is not active.",
                headers={"WWW-Authenticate": 'Bearer realm="strongroom", error="invalid_token"'},
            )
        if principal.dpop_jkt is not None:
            with_nonce(response, auth_runtime(request))  # RFC 9449 §9: the next nonce
        if scope not in principal.scopes:
            _deny(
                request,
                status=403,
                reason=f"missing_scope:{scope}",
                client_id=principal.client_id,
                tenant=principal.tenant,
            )
            raise ProblemError(
                "insufficient-scope",
                f"This operation needs the scope {scope!r}.",
                headers={
                    "WWW-Authenticate": (
                        f'Bearer realm="strongroom", error="insufficient_scope", scope="{scope}"'
                    )
                },
                required_scope=scope,
            )
        return principal

    setattr(dependency, AUTHZ_MARK, scope)
    return dependency


def declared_scope(dependency: Any) -> str | None:
    return getattr(dependency, AUTHZ_MARK, None)
