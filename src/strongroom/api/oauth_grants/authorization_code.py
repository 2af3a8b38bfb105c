"""RFC 6749 §4.1.3: exchanging an authorization code (with PKCE, RFC 7636) for tokens.

Order matters. Syntax and client authentication first, then the DPoP binding (a
``use_dpop_nonce`` retry must not burn the code), then the code is claimed — once, by a
conditional UPDATE — and only then compared with the request (client, ``redirect_uri``,
``code_verifier``): a failed comparison leaves the code used, so a stolen code gets one
guess. A code presented again is refused *and* the tokens issued from it are revoked
(§4.1.2, RFC 9700 §4.2.4). Every failure about the code itself is ``invalid_grant``.
"""

from __future__ import annotations

import time

import anyio.to_thread
from fastapi import Request
from starlette.responses import Response

from strongroom.adapters.db.user_repositories import CodeReused, new_family_id
from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.dpop import DpopOAuthError, dpop_error_response
from strongroom.api.oauth_grants.refresh_token import (
    authenticate_app_client,
    binding_jkt,
    deny_access_tokens,
    new_access,
    new_token_record,
    pair_response,
    security_event,
    user_stores,
)
from strongroom.auth import rfc6749_errors as errors
from strongroom.auth.refresh_tokens import (
    RefreshFamily,
    credential_hash,
    is_authorization_code,
    new_refresh_token,
)
from strongroom.auth.rfc7636_pkce import check_verifier_syntax, verifier_matches
from strongroom.auth.rfc9449_dpop import INVALID_DPOP_PROOF
from strongroom.auth.scopes import InvalidScope
from strongroom.auth.users import user_scope

GRANT_TYPE = "authorization_code"


async def handle(request: Request, form: dict[str, str], runtime: AuthRuntime) -> Response:
    stores = user_stores(request)
    client = await authenticate_app_client(request, form, runtime, stores)
    code = form.get("code")
    if not code:
        raise errors.invalid_request("code is required")
    verifier = check_verifier_syntax(form.get("code_verifier"))
    if not is_authorization_code(code):
        raise errors.invalid_grant()
    # The binding is decided before the code is claimed (module docstring). The client's
    # own scopes stand in for the grant's, which are not known until the claim.
    try:
        jkt = await binding_jkt(request, runtime, client, frozenset())
    except DpopOAuthError as exc:
        return dpop_error_response(exc)

    code_hash = credential_hash(code)
    outcome = await anyio.to_thread.run_sync(stores.codes.consume, code_hash)
    if outcome is None:
        raise errors.invalid_grant()
    if isinstance(outcome, CodeReused):
        grant = outcome.grant
        await deny_access_tokens(
            runtime,
            outcome.revoked,
            tenant_id=grant.tenant_id,
            client_id=grant.client_id,
            reason="authorization code reused",
        )
        security_event(
            request,
            "auth.authorization_code_reuse",
            reason="authorization_code_reused",
            client_id=client.client_id,
            tenant=grant.tenant_id,
            user_id=grant.user_id,
            revoked_access_tokens=len(outcome.revoked),
        )
        raise errors.invalid_grant()

    grant = outcome.grant
    # §4.1.3: issued to this client, for this redirect_uri; RFC 7636 §4.6: the verifier.
    if grant.client_id != client.client_id:
        raise errors.invalid_grant()
    if form.get("redirect_uri") != grant.redirect_uri:
        raise errors.invalid_grant("redirect_uri does not match the authorization request")
    if not verifier_matches(verifier, grant.code_challenge):
        raise errors.invalid_grant("code_verifier does not match the code challenge")
    user = await anyio.to_thread.run_sync(stores.users.get, grant.tenant_id, grant.user_id)
    if user is None or user.status != "active":
        raise errors.invalid_grant()
    try:
        scope = user_scope(grant.scope, client=client, user=user)
    except InvalidScope as exc:
        raise errors.invalid_grant(str(exc)) from exc
    if jkt is None and (client.dpop_required or scope & runtime.dpop_required_scopes):
        # The early check could not know the grant's scopes; one of them needs DPoP.
        return dpop_error_response(
            DpopOAuthError(
                INVALID_DPOP_PROOF,
                "a scope of this grant requires a DPoP proof (RFC 9449)",
                reason="required",
            )
        )

    now = time.time()
    family = RefreshFamily(
        family_id=new_family_id(),
        tenant_id=grant.tenant_id,
        client_id=client.client_id,
        user_id=user.user_id,
        scope=scope,
        auth_time=grant.auth_time,
        created_at=now,
        expires_at=now + runtime.settings.auth.refresh_family_lifetime_s,
        # RFC 9449 §5: only a public client's refresh tokens are bound to its DPoP key.
        dpop_jkt=jkt if client.secret_hash is None else None,
    )
    refresh_token = new_refresh_token()
    access = new_access(runtime, scope, now)
    first = new_token_record(runtime, refresh_token, access, family=family)
    issued = await anyio.to_thread.run_sync(
        lambda: stores.codes.attach_tokens(code_hash, family, first)
    )
    if not issued:
        # Presented again while we issued: nothing leaves, and what we made is revoked.
        await deny_access_tokens(
            runtime,
            (access,),
            tenant_id=family.tenant_id,
            client_id=family.client_id,
            reason="authorization code reused",
        )
        raise errors.invalid_grant()
    return pair_response(
        runtime, family=family, access=access, refresh_token=refresh_token, cnf_jkt=jkt
    )
