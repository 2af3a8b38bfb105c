"""DPoP (RFC 9449) at the HTTP layer: the token endpoint's binding, the resource check.

The authorization server calls ``token_request_jkt`` from every grant that issues an
access token: with a valid ``DPoP`` header it returns the key thumbprint to put in the
token's ``cnf.jkt`` (§5, §6.1); without one it returns ``None`` unless the client
(``dpop_required``) or a requested scope (``auth.dpop_required_scopes``) demands DPoP.
Its errors are ``DpopOAuthError`` (an ``OAuthError``: 400 ``invalid_dpop_proof``, or
``use_dpop_nonce`` with a ``DPoP-Nonce`` header, §8); render them with
``dpop_error_response`` so the nonce header goes out.

``resource_request_check`` runs for every ``/v1`` request after the token verified
(``authz.authenticate``): a token with ``cnf.jkt`` needs ``Authorization: DPoP`` and a
proof by that key over this request and this token (§7.1); a bound token sent as
``Bearer`` is refused (§7.2), and so is an unbound token carrying a scope that requires
DPoP. Errors are 401 problems with a ``DPoP`` challenge (§7.1), plus ``DPoP-Nonce`` for
``use_dpop_nonce`` (§9).

``htu`` is checked against the configured public origin (the issuer's), never the
request's ``Host``: a proof made for another server must not pass here because the
attacker replaying it also sent that server's name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import anyio.to_thread
import structlog
from fastapi import Request
from starlette.responses import JSONResponse, Response

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.problems import ProblemError, register_problem
from strongroom.api.request_context import request_context
from strongroom.auth.ports import ClientRecord
from strongroom.auth.rfc6749_errors import OAuthError
from strongroom.auth.rfc9068_access_token import AccessTokenClaims
from strongroom.auth.rfc9449_dpop import (
    DPOP_ALGS,
    INVALID_DPOP_PROOF,
    USE_DPOP_NONCE,
    DpopError,
    DpopProof,
    UseDpopNonce,
    verify_proof,
)

security_log = structlog.get_logger("strongroom.security")

INVALID_DPOP_PROOF_PROBLEM = register_problem("invalid-dpop-proof", "Invalid DPoP proof", 401)
USE_DPOP_NONCE_PROBLEM = register_problem("use-dpop-nonce", "DPoP nonce required", 401)

DPOP_HEADER = "dpop"
NONCE_HEADER = "DPoP-Nonce"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path, not a secret
_ALGS = " ".join(sorted(DPOP_ALGS))
_REALM = "strongroom"
# §7.1: the challenge a resource server offers DPoP clients (also on a missing token).
DPOP_CHALLENGE = f'DPoP realm="{_REALM}", algs="{_ALGS}"'
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class DpopOAuthError(OAuthError):
    """A token-endpoint DPoP error (RFC 9449 §5, §8): ``invalid_dpop_proof`` or
    ``use_dpop_nonce``; ``nonce`` goes out in the ``DPoP-Nonce`` header."""

    __slots__ = ("nonce", "reason")

    def __init__(
        self, error: str, description: str, *, reason: str, nonce: str | None = None
    ) -> None:
        super().__init__(error, description)
        self.reason = reason
        self.nonce = nonce

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.nonce is not None:
            headers[NONCE_HEADER] = self.nonce
        return headers


def dpop_error_response(exc: OAuthError) -> Response:
    """The RFC 6749 §5.2 error response, with every header the error carries."""
    return JSONResponse(exc.as_dict(), status_code=exc.status, headers=exc.headers())


def current_nonce(runtime: AuthRuntime) -> str:
    """The nonce to hand out now; valid on every pod (stateless, see ``DpopNonces``)."""
    return runtime.dpop_nonces.current(time.time())


def with_nonce(response: Response, runtime: AuthRuntime) -> Response:
    """Add a fresh ``DPoP-Nonce`` to a successful response (§8.2), sparing the client a
    ``use_dpop_nonce`` round trip when its nonce ages out."""
    response.headers[NONCE_HEADER] = current_nonce(runtime)
    return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _request_path(request: Request) -> str:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.decode("latin-1")
    return request.url.path


def _proofs(request: Request) -> list[str]:
    """The ``DPoP`` header fields; §4.3 step 1 allows exactly one."""
    return [value.strip() for value in request.headers.getlist(DPOP_HEADER)]


def _log(request: Request, event: str, reason: str, client_id: str, tenant: str) -> None:
    context = request_context(request)
    security_log.warning(
        event,
        reason=reason,
        client_id=client_id or None,
        tenant=tenant or None,
        client_ip=context.client_host,
        path=request.url.path,
        request_id=context.request_id,
    )


def _verify(
    runtime: AuthRuntime,
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    expected_jkt: str | None = None,
) -> DpopProof:
    auth = runtime.settings.auth
    return verify_proof(
        proof,
        method=method,
        url=url,
        now=time.time(),
        window_s=auth.dpop_proof_window_s,
        leeway_s=auth.leeway_s,
        replay_cache=runtime.dpop_replay,
        nonces=runtime.dpop_nonces if auth.dpop_nonce_required else None,
        access_token=access_token,
        expected_jkt=expected_jkt,
    )


# --- authorization server ---------------------------------------------------------------


async def token_request_jkt(
    request: Request,
    runtime: AuthRuntime,
    client: ClientRecord,
    scopes: frozenset[str] = frozenset(),
) -> str | None:
    """The ``jkt`` to bind the new access token to (§5, §6.1), or ``None`` for a Bearer token.

    ``scopes``: what the token will carry; any of ``auth.dpop_required_scopes`` makes a
    proof mandatory, as does ``client.dpop_required``. Raises ``DpopOAuthError``.
    """
    proofs = _proofs(request)
    if len(proofs) > 1:
        _log(request, "auth.dpop_rejected", "repeated_header", client.client_id, client.tenant_id)
        raise DpopOAuthError(
            INVALID_DPOP_PROOF, "send exactly one DPoP header", reason="repeated_header"
        )
    if not proofs:
        if client.dpop_required or scopes & runtime.dpop_required_scopes:
            _log(request, "auth.dpop_rejected", "required", client.client_id, client.tenant_id)
            raise DpopOAuthError(
                INVALID_DPOP_PROOF,
                "this client or scope requires a DPoP proof (RFC 9449)",
                reason="required",
            )
        return None
    proof = proofs[0]
    url = f"{runtime.issuer}{TOKEN_PATH}"
    try:
        verified = await anyio.to_thread.run_sync(
            lambda: _verify(runtime, proof, method=request.method, url=url)
        )
    except DpopError as exc:
        _log(request, "auth.dpop_rejected", exc.reason, client.client_id, client.tenant_id)
        if isinstance(exc, UseDpopNonce):
            raise DpopOAuthError(
                USE_DPOP_NONCE,
                "Authorization server requires nonce in DPoP proof",
                reason=exc.reason,
                nonce=current_nonce(runtime),
            ) from None
        raise DpopOAuthError(
            INVALID_DPOP_PROOF, f"DPoP proof rejected: {exc.reason}", reason=exc.reason
        ) from None
    return verified.jkt


# --- resource server ----------------------------------------------------------------------


def _authorization(request: Request) -> tuple[str, str]:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower(), token.strip()


def _challenge(error: str, description: str) -> str:
    return f'{DPOP_CHALLENGE}, error="{error}", error_description="{description}"'


def _refuse(
    request: Request,
    claims: AccessTokenClaims,
    *,
    slug: str,
    error: str,
    reason: str,
    description: str,
    extra_headers: Mapping[str, str] | None = None,
) -> ProblemError:
    _log(request, "auth.denied", f"dpop:{reason}", claims.client_id, claims.tenant)
    return ProblemError(
        slug,
        description[:1].upper() + description[1:] + ".",
        headers={"WWW-Authenticate": _challenge(error, description), **(extra_headers or {})},
    )


async def resource_request_check(
    request: Request, runtime: AuthRuntime, claims: AccessTokenClaims
) -> None:
    """§7.1: a DPoP-bound token needs the DPoP scheme and a valid proof by its key.

    Call after the token's own checks passed. Raises ``ProblemError`` (401) otherwise.
    The proof is checked in a worker thread: its replay check is a write to the shared
    replay cache (a database commit, or a Redis round trip) that must not stall the
    event loop, and with it every other request of the pod.
    """
    scheme, token = _authorization(request)
    if claims.cnf_jkt is None:
        if scheme == "dpop":
            raise _refuse(
                request,
                claims,
                slug="invalid-token",
                error="invalid_token",
                reason="unbound_token_as_dpop",
                description="the access token is not DPoP-bound",
            )
        if claims.scope & runtime.dpop_required_scopes:
            raise _refuse(
                request,
                claims,
                slug="invalid-token",
                error="invalid_token",
                reason="scope_requires_dpop",
                description="the access token carries a scope that requires DPoP",
            )
        return
    if scheme != "dpop":
        # §7.2: a bound token presented as a bearer token is not accepted.
        raise _refuse(
            request,
            claims,
            slug="invalid-token",
            error="invalid_token",
            reason="bound_token_as_bearer",
            description="the access token is DPoP-bound: use the DPoP scheme with a proof",
        )
    proofs = _proofs(request)
    if len(proofs) != 1 or not proofs[0]:
        raise _refuse(
            request,
            claims,
            slug="invalid-dpop-proof",
            error=INVALID_DPOP_PROOF,
            reason="missing_or_repeated_proof",
            description="exactly one DPoP proof is required",
        )
    url = _origin(runtime.issuer) + _request_path(request)
    proof = proofs[0]
    try:
        await anyio.to_thread.run_sync(
            lambda: _verify(
                runtime,
                proof,
                method=request.method,
                url=url,
                access_token=token,
                expected_jkt=claims.cnf_jkt,
            )
        )
    except UseDpopNonce as exc:
        raise _refuse(
            request,
            claims,
            slug="use-dpop-nonce",
            error=USE_DPOP_NONCE,
            reason=exc.reason,
            description="Resource server requires nonce in DPoP proof",
            extra_headers={NONCE_HEADER: current_nonce(runtime), **_NO_STORE},
        ) from None
    except DpopError as exc:
        raise _refuse(
            request,
            claims,
            slug="invalid-dpop-proof",
            error=INVALID_DPOP_PROOF,
            reason=exc.reason,
            description=f"DPoP proof rejected: {exc.reason}",
        ) from None
