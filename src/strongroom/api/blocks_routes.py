"""`/v1/admin/blocks`: operators block or allow addresses, networks and OAuth clients at
every edge worker (issue 6).

Two checks guard every route, as for tenant administration: the token's scope
(``admin``, which only operator clients can be granted) and the calling client's own
record, which must be an operator client of the token's tenant (403
``operator-required`` otherwise). An entry reaches every edge worker within
``edge.blocklist.poll_s`` of the response; every change is an audit entry naming the
caller.

Errors: ``invalid-block-entry`` (422: malformed address or network, a block wider than
/8 or /16, unknown kind, overlong reason, TTL out of range), ``block-not-found`` (404:
no entry with that id is in force), ``blocklist-full`` (409: the store already holds
``edge.blocklist.entries_max`` entries in force).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from strongroom.adapters.db.blocklist_store import SqlBlocklistStore
from strongroom.api.authz import Principal, auth_runtime
from strongroom.api.ledger_routes import actor_of
from strongroom.api.operator_access import operator_only
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError, register_problem
from strongroom.api.request_context import request_context
from strongroom.edge.blocklist_ports import (
    CLIENT_ID_CHARS_MAX,
    REASON_CHARS_MAX,
    TTL_S_MAX,
    BlockEntry,
    BlocklistFull,
    BlockNotFound,
    InvalidBlockEntry,
)

security_log = structlog.get_logger("strongroom.security")

INVALID_BLOCK_ENTRY = register_problem("invalid-block-entry", "Invalid block entry", 422)
BLOCK_NOT_FOUND = register_problem("block-not-found", "Block entry not found", 404)
BLOCKLIST_FULL = register_problem("blocklist-full", "Blocklist full", 409)

# Entry ids are positive 64-bit integers (edge_blocks.id).
ENTRY_ID_MAX = 2**63 - 1

router = APIRouter(prefix="/v1/admin/blocks", tags=["blocks"], responses=PROBLEM_RESPONSES)


class BlockCreate(BaseModel):
    """A new entry. Unknown members are refused (422), so nothing else can be set."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ip", "cidr", "client"] = Field(
        description="`ip` (an IPv4/IPv6 address), `cidr` (a network) or `client` (OAuth)."
    )
    value: str = Field(
        min_length=1,
        max_length=CLIENT_ID_CHARS_MAX,
        description="`203.0.113.7`, `2001:db8::/32`, or the client id.",
    )
    action: Literal["block", "allow"] = Field(
        default="block",
        description="`allow` exempts the target from blocks (an address from every block).",
    )
    reason: str = Field(default="", max_length=REASON_CHARS_MAX, description="Why.")
    ttl_s: int | None = Field(
        default=None,
        ge=1,
        le=TTL_S_MAX,
        description="Seconds until the entry expires; null: until removed.",
    )


class BlockView(BaseModel):
    id: int
    kind: str
    value: str = Field(description="Canonical form of the address, network or client id.")
    action: str
    reason: str
    created_by: str = Field(description="Who added it: `kind:id` of the audit actor.")
    created_at: float = Field(description="Epoch seconds.")
    expires_at: float | None = Field(description="Epoch seconds; null: until removed.")
    removed_at: float | None = Field(description="Epoch seconds; null: not removed.")
    in_force: bool


class BlockList(BaseModel):
    blocks: list[BlockView]


def _view(entry: BlockEntry) -> BlockView:
    return BlockView(
        id=entry.id,
        kind=entry.kind,
        value=entry.value,
        action=entry.action,
        reason=entry.reason,
        created_by=entry.created_by,
        created_at=entry.created_at,
        expires_at=entry.expires_at,
        removed_at=entry.removed_at,
        in_force=entry.in_force(time.time()),
    )


def _store(request: Request) -> SqlBlocklistStore:
    entries_max = auth_runtime(request).settings.edge.blocklist.entries_max
    return SqlBlocklistStore(request.app.state.engine, entries_max=entries_max)


Operator = Annotated[Principal, Depends(operator_only("admin"))]
EntryId = Annotated[int, Path(ge=1, le=ENTRY_ID_MAX)]


@router.get("", response_model=BlockList, summary="Block and allow entries")
async def list_blocks(
    request: Request,
    _principal: Operator,
    include_expired: Annotated[
        bool, Query(alias="all", description="Expired and removed entries too.")
    ] = False,
) -> BlockList:
    store = _store(request)
    entries = await anyio.to_thread.run_sync(store.list, include_expired)
    return BlockList(blocks=[_view(e) for e in entries])


@router.post(
    "",
    response_model=BlockView,
    status_code=status.HTTP_201_CREATED,
    summary="Block or allow an address, a network or a client at every edge worker",
    description="An entry in force for the same target and action that lasts at least as "
    "long is returned instead of a new one.",
)
async def add_block(
    body: BlockCreate, request: Request, response: Response, principal: Operator
) -> BlockView:
    store = _store(request)
    actor = actor_of(principal)
    request_id = request_context(request).request_id
    try:
        entry = await anyio.to_thread.run_sync(
            lambda: store.add(
                body.kind,
                body.value,
                body.action,
                reason=body.reason,
                ttl_s=body.ttl_s,
                actor=actor,
                request_id=request_id,
            )
        )
    except InvalidBlockEntry as exc:
        raise ProblemError("invalid-block-entry", str(exc)) from None
    except BlocklistFull as exc:
        raise ProblemError("blocklist-full", str(exc)) from None
    response.headers["location"] = f"{router.prefix}/{entry.id}"
    return _view(entry)


@router.get("/{entry_id}", response_model=BlockView, summary="One entry (also removed ones)")
async def get_block(entry_id: EntryId, request: Request, _principal: Operator) -> BlockView:
    entry = await anyio.to_thread.run_sync(_store(request).get, entry_id)
    if entry is None:
        raise ProblemError("block-not-found", f"No block entry {entry_id}.")
    return _view(entry)


@router.delete(
    "/{entry_id}",
    response_model=BlockView,
    summary="Remove an entry; every edge worker stops enforcing it within a second",
)
async def remove_block(entry_id: EntryId, request: Request, principal: Operator) -> BlockView:
    store = _store(request)
    actor = actor_of(principal)
    request_id = request_context(request).request_id
    try:
        entry = await anyio.to_thread.run_sync(
            lambda: store.remove(entry_id, actor, request_id=request_id)
        )
    except BlockNotFound as exc:
        raise ProblemError("block-not-found", str(exc)) from None
    return _view(entry)
