"""`/v1/clients`: a tenant manages its own OAuth clients.

Every query is scoped by the caller's tenant (from the token, never from the request),
so another tenant's client is indistinguishable from a missing one: 404 (OWASP API1).
Responses never carry secret hashes (API3).
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.authz import Principal, auth_runtime, requires
from strongroom.api.ledger_routes import actor_of
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError
from strongroom.api.request_context import request_context
from strongroom.auth.ports import ClientRecord, DenyEntry

router = APIRouter(prefix="/v1/clients", tags=["clients"], responses=PROBLEM_RESPONSES)


class ClientView(BaseModel):
    client_id: str
    name: str
    status: str
    scopes: list[str]
    dpop_required: bool
    created_at: float


class ClientList(BaseModel):
    clients: list[ClientView]


def _view(record: ClientRecord) -> ClientView:
    return ClientView(
        client_id=record.client_id,
        name=record.name,
        status=record.status,
        scopes=sorted(record.scopes),
        dpop_required=record.dpop_required,
        created_at=record.created_at,
    )


async def _own_client(runtime: AuthRuntime, principal: Principal, client_id: str) -> ClientRecord:
    record = await anyio.to_thread.run_sync(runtime.clients.get, client_id)
    if record is None or record.tenant_id != principal.tenant:
        raise ProblemError("not-found", f"No client {client_id}.")
    return record


@router.get("", response_model=ClientList, summary="The caller's tenant's clients")
async def list_clients(
    request: Request, principal: Annotated[Principal, Depends(requires("clients:read"))]
) -> ClientList:
    runtime = auth_runtime(request)
    records = await anyio.to_thread.run_sync(runtime.clients.list_for_tenant, principal.tenant)
    return ClientList(clients=[_view(r) for r in records])


@router.get("/{client_id}", response_model=ClientView, summary="One client of the tenant")
async def get_client(
    client_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(requires("clients:read"))],
) -> ClientView:
    return _view(await _own_client(auth_runtime(request), principal, client_id))


@router.post("/{client_id}/suspend", response_model=ClientView, summary="Suspend a client")
async def suspend(
    client_id: str,
    request: Request,
    principal: Annotated[Principal, Depends(requires("clients:write"))],
) -> ClientView:
    runtime = auth_runtime(request)
    await _own_client(runtime, principal, client_id)
    await anyio.to_thread.run_sync(
        lambda: runtime.revocations.suspend_client(
            client_id,
            reason=f"suspended by {principal.client_id}",
            tenant_id=principal.tenant,
            actor=actor_of(principal),
            request_id=request_context(request).request_id,
        )
    )
    auth = runtime.settings.auth
    expires_at = time.time() + auth.access_token_lifetime_s + auth.leeway_s
    runtime.deny_list.apply([DenyEntry("client", client_id, expires_at)])
    return _view(await _own_client(runtime, principal, client_id))
