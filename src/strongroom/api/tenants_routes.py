"""`/v1/tenants`: the platform operator administers tenants (OWASP API5, function level).

Two independent checks guard every route, so one mistake cannot open them:

1. the scope: each route depends on ``requires("tenants:admin")`` (through
   :func:`api.operator_access.operator_only`), and only operator clients can ever be granted that
   scope (``auth.provisioning.create_client``, ``auth.scopes.grant_scope``);
2. the client: the calling client's own record must be an operator client of the
   token's tenant, read through the per-pod client cache. A token that carried the
   scope for any other client (a misused signing key, a future granting bug) gets 403.

Responses carry a tenant's id, name, status and creation time, nothing else (API3).
Request bodies refuse unknown members (``extra="forbid"``: 422), so a caller cannot
mass-assign ``status``, ``tenant_id`` or ``is_operator``.

Suspending a tenant first flips its status (no new clients, users or tokens: the token
endpoint checks it, ``api.oauth_http.authenticate_client``), then suspends each of its
clients through the ``RevocationStore``, whose deny-list events reach every pod within
``auth.deny_list_poll_s``. The steps are idempotent: repeating a suspension that failed
halfway completes it.
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from strongroom.adapters.db.tenant_admin import TENANT_PAGE_MAX, SqlTenantAdmin
from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.authz import Principal, auth_runtime
from strongroom.api.ledger_routes import actor_of
from strongroom.api.oauth_http import client_cache
from strongroom.api.operator_access import operator_only
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError
from strongroom.api.request_context import request_context
from strongroom.api.tenant_cache import tenant_cache
from strongroom.auth.ports import DenyEntry, TenantRecord
from strongroom.auth.provisioning import create_tenant

security_log = structlog.get_logger("strongroom.security")
audit_log = structlog.get_logger("strongroom.auth")


# A page is enough for a dashboard; the adapter caps any request at TENANT_PAGE_MAX.
TENANT_PAGE_DEFAULT = 100
# Tenant ids are UUIDs in their 36-character text form (schema: tenants.id).
TENANT_ID_CHARS_MAX = 36
# The tenants.name column's width.
TENANT_NAME_CHARS_MAX = 200

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], responses=PROBLEM_RESPONSES)


class TenantCreate(BaseModel):
    """The only member a caller chooses; the id and status are the platform's."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=TENANT_NAME_CHARS_MAX),
    ] = Field(description="Display name.")


class TenantView(BaseModel):
    tenant_id: str
    name: str
    status: str
    created_at: float


class TenantList(BaseModel):
    tenants: list[TenantView]
    next_after: str | None = Field(
        description="Pass as `after` for the next page; null on the last page."
    )


def _view(record: TenantRecord) -> TenantView:
    return TenantView(
        tenant_id=record.tenant_id,
        name=record.name,
        status=record.status,
        created_at=record.created_at,
    )


Operator = Annotated[Principal, Depends(operator_only("tenants:admin"))]
TenantId = Annotated[str, Path(max_length=TENANT_ID_CHARS_MAX)]


def _admin(request: Request) -> SqlTenantAdmin:
    return SqlTenantAdmin(request.app.state.engine)


async def _tenant(runtime: AuthRuntime, tenant_id: str) -> TenantRecord:
    record = await anyio.to_thread.run_sync(runtime.tenants.get, tenant_id)
    if record is None:
        raise ProblemError("not-found", f"No tenant {tenant_id}.")
    return record


@router.post(
    "",
    response_model=TenantView,
    status_code=status.HTTP_201_CREATED,
    summary="Create a tenant",
)
async def create(body: TenantCreate, request: Request, principal: Operator) -> TenantView:
    runtime = auth_runtime(request)
    tenant_id = await anyio.to_thread.run_sync(
        lambda: create_tenant(
            runtime.tenants,
            body.name,
            actor=actor_of(principal),
            request_id=request_context(request).request_id,
        )
    )
    audit_log.info("tenant.created", tenant=tenant_id, by_client=principal.client_id)
    return _view(await _tenant(runtime, tenant_id))


@router.get("", response_model=TenantList, summary="Tenants, in pages ordered by id")
async def list_tenants(
    request: Request,
    _principal: Operator,
    limit: Annotated[int, Query(ge=1, le=TENANT_PAGE_MAX)] = TENANT_PAGE_DEFAULT,
    after: Annotated[str | None, Query(max_length=TENANT_ID_CHARS_MAX)] = None,
) -> TenantList:
    admin = _admin(request)
    records = await anyio.to_thread.run_sync(lambda: admin.list_page(after=after, limit=limit))
    last = records[-1].tenant_id if len(records) == limit else None
    return TenantList(tenants=[_view(r) for r in records], next_after=last)


@router.get("/{tenant_id}", response_model=TenantView, summary="One tenant")
async def get_tenant(tenant_id: TenantId, request: Request, _principal: Operator) -> TenantView:
    return _view(await _tenant(auth_runtime(request), tenant_id))


@router.post(
    "/{tenant_id}/suspend",
    response_model=TenantView,
    summary="Suspend a tenant and every client of it",
)
async def suspend(tenant_id: TenantId, request: Request, principal: Operator) -> TenantView:
    runtime = auth_runtime(request)
    tenant = await _tenant(runtime, tenant_id)
    if tenant_id == principal.tenant:
        # Suspending the operators' own tenant would lock every operator out.
        raise ProblemError("conflict", "An operator cannot suspend its own tenant.")
    if tenant.status == "closed":
        raise ProblemError("conflict", f"Tenant {tenant_id} is closed.")
    reason = f"tenant {tenant_id} suspended by {principal.client_id}"
    admin = _admin(request)
    actor = actor_of(principal)
    request_id = request_context(request).request_id

    def suspend_everything() -> tuple[TenantRecord | None, list[str]]:
        # Status first: from here on no new client of the tenant can be created, so the
        # listing below misses none (a client being created this instant is refused by
        # the token endpoint's tenant check).
        updated = admin.set_status(tenant_id, "suspended", actor=actor, request_id=request_id)
        if updated is None:
            return None, []
        client_ids = [c.client_id for c in runtime.clients.list_for_tenant(tenant_id)]
        for client_id in client_ids:
            runtime.revocations.suspend_client(
                client_id, reason=reason, tenant_id=tenant_id, actor=actor, request_id=request_id
            )
        return updated, client_ids

    updated, client_ids = await anyio.to_thread.run_sync(suspend_everything)
    if updated is None:
        raise ProblemError("not-found", f"No tenant {tenant_id}.")
    # This pod refuses at once; the others within the deny list's poll interval.
    auth = runtime.settings.auth
    expires_at = time.time() + auth.access_token_lifetime_s + auth.leeway_s
    runtime.deny_list.apply([DenyEntry("client", c, expires_at) for c in client_ids])
    clients = client_cache(request)
    for client_id in client_ids:
        clients.forget(client_id)
    tenant_cache(request).forget(tenant_id)
    audit_log.info(
        "tenant.suspended",
        tenant=tenant_id,
        clients_suspended=len(client_ids),
        by_client=principal.client_id,
    )
    return _view(updated)
