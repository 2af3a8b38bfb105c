"""`/v1/audit`: the tamper-evident audit log for verifiers, witnesses and operators (issue 5).

Every route needs ``audit:read``. The log is one Merkle tree for the whole platform, so what
it serves is global, and who may read what follows from what leaks:

- ``checkpoint``, ``public-key`` and the inclusion and consistency ``proofs`` carry hashes
  only: any ``audit:read`` holder may fetch them (a tenant verifies that *its* entries are
  in the log the platform signed).
- ``entries`` serves the exact leaf bytes, which hold every tenant's events: operators only
  (``operator-required``, 403, for anyone else). A tenant reads its own entries, with their
  leaf indexes, through ``search``.
- ``search`` is tenant-scoped: a tenant's client sees its tenant's entries; an operator's
  sees every tenant's.

The wire formats are those independent verifiers expect: the checkpoint is a C2SP signed
note (``text/plain``), the key a C2SP verifier key, hashes and leaves standard base64.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from strongroom.api.authz import Principal, requires
from strongroom.api.ledger_views import parse_rfc3339, rfc3339
from strongroom.api.oauth_http import client_cache
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError, register_problem
from strongroom.audit.canonical import EVENT_TYPES
from strongroom.audit.ports import AuditReader, EntryQuery, SequencedEntry
from strongroom.audit.rfc9162_merkle import (
    TREE_SIZE_MAX,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
)

# Leaves per `entries` response: 1,000 leaves of a few hundred bytes each, base64, is a few
# hundred KiB — a verifier pages through the log, the pod never builds a huge body.
ENTRIES_PAGE_MAX = 1000
SEARCH_PAGE_DEFAULT = 100
SEARCH_PAGE_MAX = 1000
# Subject ids are UUIDs or similar; the column holds 200 characters.
SUBJECT_ID_CHARS_MAX = 200
EVENT_TYPE_CHARS_MAX = 64
TEXT_PLAIN = "text/plain; charset=utf-8"

AUDIT_LOG_EMPTY = register_problem("audit-log-empty", "Audit log not started", 404)
PROOF_OUT_OF_RANGE = register_problem("proof-out-of-range", "Proof outside the tree", 422)
OPERATOR_REQUIRED = register_problem("operator-required", "Operator client required", 403)

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES)

Reader = Annotated[Principal, Depends(requires("audit:read"))]
Index = Annotated[int, Query(ge=0, le=TREE_SIZE_MAX)]


class EntryLeaf(BaseModel):
    index: int = Field(description="Leaf index in the Merkle tree.")
    data: str = Field(description="Base64 of the exact leaf bytes (RFC 8785 canonical JSON).")


class EntryLeaves(BaseModel):
    entries: list[EntryLeaf]


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    hashes: list[str] = Field(description="RFC 9162 §2.1.3 audit path, base64, leaf first.")


class ConsistencyProof(BaseModel):
    old: int
    new: int
    hashes: list[str] = Field(description="RFC 9162 §2.1.4 consistency proof, base64.")


class AuditEntryView(BaseModel):
    index: int | None = Field(description="Leaf index; null until the sequencer has run.")
    seq: int = Field(description="Row number (search cursor); not the leaf index.")
    event_type: str
    tenant_id: str | None
    actor_kind: str
    actor_id: str
    request_id: str | None
    subject_ids: list[str]
    data: dict[str, Any]
    occurred_at: str = Field(description="RFC 3339, microseconds.")


class AuditEntryList(BaseModel):
    entries: list[AuditEntryView]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: last.")


def audit_reader(request: Request) -> AuditReader:
    reader: AuditReader = request.app.state.audit
    return reader


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _text(body: str) -> Response:
    # A checkpoint changes every fraction of a second: never serve a stored copy.
    return Response(body, media_type=TEXT_PLAIN, headers={"cache-control": "no-store"})


@router.get(
    "/checkpoint",
    summary="The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
    response_class=Response,
    responses={200: {"content": {TEXT_PLAIN: {}}}},
)
async def checkpoint(request: Request, principal: Reader) -> Response:
    latest = await anyio.to_thread.run_sync(audit_reader(request).latest_checkpoint)
    if latest is None:
        raise ProblemError("audit-log-empty", "No checkpoint has been published yet.")
    return _text(latest.note)


@router.get(
    "/public-key",
    summary="The log's C2SP note verifier key (name+keyhash+base64)",
    response_class=Response,
    responses={200: {"content": {TEXT_PLAIN: {}}}},
)
async def public_key(request: Request, principal: Reader) -> Response:
    key = await anyio.to_thread.run_sync(audit_reader(request).public_key)
    if key is None:
        raise ProblemError("audit-log-empty", "The sequencer has not registered its key yet.")
    return _text(key + "\n")


async def _is_operator_client(request: Request, principal: Principal) -> bool:
    """An operator *client* (the platform's own, per the client registry), whatever its
    scopes: reading the whole log needs ``audit:read`` only, not an admin scope too."""
    record = await client_cache(request).get(principal.client_id)
    return record is not None and record.is_operator


async def _operator(request: Request, principal: Reader) -> Principal:
    if not await _is_operator_client(request, principal):
        raise ProblemError(
            "operator-required",
            "Leaf bytes hold every tenant's events: operator clients only; use search.",
        )
    return principal


@router.get(
    "/entries",
    response_model=EntryLeaves,
    summary="Exact leaf bytes of indexes start ≤ i < end (operators only; may return fewer)",
)
async def entries(
    request: Request,
    principal: Annotated[Principal, Depends(_operator)],
    start: Index,
    end: Index,
) -> dict[str, Any]:
    if end <= start:
        raise ProblemError("validation-failed", "end must be greater than start.")
    end = min(end, start + ENTRIES_PAGE_MAX)
    leaves = await anyio.to_thread.run_sync(audit_reader(request).leaves, start, end)
    return {"entries": [{"index": start + i, "data": _b64(b)} for i, b in enumerate(leaves)]}


async def _tree_size(request: Request) -> int:
    return await anyio.to_thread.run_sync(audit_reader(request).tree_size)


@router.get(
    "/proofs/inclusion",
    response_model=InclusionProof,
    summary="RFC 9162 inclusion proof of leaf `index` in the tree of `tree_size` leaves",
)
async def inclusion(
    request: Request, principal: Reader, index: Index, tree_size: Index
) -> dict[str, Any]:
    size = await _tree_size(request)
    if not index < tree_size <= size:
        raise ProblemError(
            "proof-out-of-range",
            f"Need index < tree_size <= {size} (the log's size); got {index}, {tree_size}.",
        )
    reader = audit_reader(request)
    nodes = await anyio.to_thread.run_sync(reader.nodes, inclusion_nodes(index, tree_size))
    hashes = inclusion_proof(index, tree_size, lambda level, i: nodes[(level, i)])
    return {"index": index, "tree_size": tree_size, "hashes": [_b64(h) for h in hashes]}


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProof,
    summary="RFC 9162 consistency proof between the trees of `old` and `new` leaves",
)
async def consistency(
    request: Request, principal: Reader, old: Index, new: Index
) -> dict[str, Any]:
    size = await _tree_size(request)
    if not old <= new <= size:
        raise ProblemError(
            "proof-out-of-range",
            f"Need old <= new <= {size} (the log's size); got {old}, {new}.",
        )
    reader = audit_reader(request)
    nodes = await anyio.to_thread.run_sync(reader.nodes, consistency_nodes(old, new))
    hashes = consistency_proof(old, new, lambda level, i: nodes[(level, i)])
    return {"old": old, "new": new, "hashes": [_b64(h) for h in hashes]}


def _instant(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ProblemError("validation-failed", f"{name} {exc}.") from None


def _view(entry: SequencedEntry) -> dict[str, Any]:
    record = entry.record
    return {
        "index": entry.index,
        "seq": entry.seq,
        "event_type": record.event_type,
        "tenant_id": record.tenant_id,
        "actor_kind": record.actor_kind,
        "actor_id": record.actor_id,
        "request_id": record.request_id,
        "subject_ids": list(record.subject_ids),
        "data": dict(record.data),
        "occurred_at": rfc3339(record.occurred_at_us),
    }


@router.get(
    "/search",
    response_model=AuditEntryList,
    summary="Audit entries by subject, event type and time (the tenant's; operators: all)",
)
async def search(
    *,
    request: Request,
    principal: Reader,
    subject_id: Annotated[str | None, Query(max_length=SUBJECT_ID_CHARS_MAX)] = None,
    event_type: Annotated[str | None, Query(max_length=EVENT_TYPE_CHARS_MAX)] = None,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive.")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive.")] = None,
    after: Annotated[int, Query(ge=0, le=TREE_SIZE_MAX, description="`next_after`.")] = 0,
    limit: Annotated[int, Query(ge=1, le=SEARCH_PAGE_MAX)] = SEARCH_PAGE_DEFAULT,
) -> dict[str, Any]:
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ProblemError("validation-failed", f"Unknown event type {event_type!r}.")
    everyone = await _is_operator_client(request, principal)
    query = EntryQuery(
        tenant_id=None if everyone else principal.tenant,
        subject_id=subject_id,
        event_type=event_type,
        from_us=_instant(from_, "from"),
        to_us=_instant(to, "to"),
        after_seq=after,
        limit=limit,
    )
    found = await anyio.to_thread.run_sync(audit_reader(request).search, query)
    return {
        "entries": [_view(e) for e in found],
        "next_after": found[-1].seq if len(found) == limit else None,
    }
