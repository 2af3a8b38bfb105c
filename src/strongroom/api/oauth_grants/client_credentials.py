"""RFC 6749 §4.4: the client acts on its own behalf, within its registered scopes.

No refresh token is issued (§4.4.3): the client can always ask again.
"""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from strongroom.api.auth_runtime import AuthRuntime
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
    return token_response(runtime, client=client, subject=client.client_id, scopes=scopes)
