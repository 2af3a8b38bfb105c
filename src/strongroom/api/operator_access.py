"""Operator-only routes: the scope *and* an operator client of the token's own tenant.

Operator scopes (``auth.scopes.OPERATOR_SCOPES``) are only ever granted to operator
clients, but a route that changes the platform (tenants, edge blocks) checks the client
record too, on every request: a client demoted since its token was issued, or a token of
another tenant's client, is refused with ``operator-required`` (403) and a security log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import Depends, Request

from strongroom.api.authz import Principal, requires
from strongroom.api.oauth_http import client_cache
from strongroom.api.problems import ProblemError, register_problem
from strongroom.api.request_context import request_context

security_log = structlog.get_logger("strongroom.security")

OPERATOR_REQUIRED = register_problem("operator-required", "Operator client required", 403)


def operator_only(scope: str) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """The dependency for a route that needs ``scope`` from an operator client."""
    scope_dependency = requires(scope)

    async def dependency(
        request: Request,
        # A default, not an Annotated[...] hint: the hint would be a string naming this
        # closure's variable, which FastAPI cannot resolve from the module.
        principal: Principal = Depends(scope_dependency),  # noqa: B008
    ) -> Principal:
        record = await client_cache(request).get(principal.client_id)
        if (
            not principal.is_operator
            or record is None
            or not record.is_operator
            or record.tenant_id != principal.tenant
        ):
            context = request_context(request)
            security_log.warning(
                "auth.denied",
                status=403,
                reason="not_operator_client",
                client_id=principal.client_id,
                tenant=principal.tenant,
                client_ip=context.client_host,
                path=request.url.path,
                request_id=context.request_id,
            )
            raise ProblemError("operator-required", "This operation is for operator clients only.")
        return principal

    return dependency
