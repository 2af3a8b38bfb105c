"""RFC 6749 §4.4: the client acts on its own behalf, within its registered scopes.

No refresh token is issued (§4.4.3): the client can always ask again. With a DPoP proof
(RFC 9449 §5) the token is bound to the proof's key (``cnf.jkt``, token type ``DPoP``);
a client or scope that requires DPoP gets no token without one.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.dpop import DpopOAuthError, dpop_error_response, token_request_jkt, with_nonce
from strongroom.api.oauth_http import authenticate_client, token_response
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.scopes import InvalidScope, parse_scope

GRANT_TYPE = "client_credentials"


async def handle(request: Request, form: dict[str, str], runtime: AuthRuntime) -> Response:
    client = await authenticate_client(request, form, runtime)
    requested = form.get("scope")
    try:
        scopes = parse_scope(requested) if requested else client.scopes
    except InvalidScope as exc:
        raise errors.invalid_scope(str(exc)) from exc
    if not scopes or not scopes <= client.scopes:
        raise errors.invalid_scope("the requested scope exceeds what the client may hold")
    try:
        jkt = await token_request_jkt(request, runtime, client, scopes)
    except DpopOAuthError as exc:
        return dpop_error_response(exc)  # carries the DPoP-Nonce header (RFC 9449 §8)
    response = token_response(
        runtime, client=client, subject=client.client_id, scopes=scopes, cnf_jkt=jkt
    )
    return with_nonce(response, runtime) if jkt is not None else response
