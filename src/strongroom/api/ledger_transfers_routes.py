"""`/v1/transfers` and `/v1/journal-entries`: moving money, in one, two or many steps.

A transfer debits one account and credits another, same currency, positive amount. Its
``id`` (client-chosen UUID, generated when absent) makes it idempotent: the same id with
the same body answers the original (200 instead of 201), with another body 409. A
``pending`` transfer is a hold: ``/post`` (all or part; the rest is released) or
``/void`` resolves it once; past ``expires_at`` a worker voids it. ``/reverse`` moves
money back with a new, compensating transfer: nothing is ever edited or deleted.

A batch of up to 8,190 transfers is one unit: ``atomic`` all-or-nothing (a failure is
one problem naming the failing item; nothing applied) or independent, with one result
per item. A journal entry posts 2 to 64 legs at once, balanced in every currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from strongroom.api.authz import Principal, requires
from strongroom.api.ledger_routes import (
    Amount,
    ClientId,
    LedgerRoute,
    Metadata,
    Timestamp,
    checked,
    json_response,
    new_id,
    problem_error,
    problems_for,
    single,
    write,
)
from strongroom.api.ledger_runtime import ledger_runtime
from strongroom.api.ledger_views import (
    BatchResult,
    JournalEntryView,
    TransferView,
    journal_entry_view,
    parse_rfc3339,
    problem_summary,
    transfer_view,
)
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError
from strongroom.ledger.commands import (
    Command,
    CreateJournalEntry,
    CreateTransfer,
    PostTransfer,
    ReverseTransfer,
    VoidTransfer,
    check_id,
    validate,
)
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import BATCH_MAX, JOURNAL_LEGS_MAX, Leg, Transfer
from strongroom.ledger.ports import Outcome

router = APIRouter(
    prefix="/v1/transfers", tags=["transfers"], responses=PROBLEM_RESPONSES, route_class=LedgerRoute
)
journal_router = APIRouter(
    prefix="/v1/journal-entries",
    tags=["transfers"],
    responses=PROBLEM_RESPONSES,
    route_class=LedgerRoute,
)

Reader = Annotated[Principal, Depends(requires("transfers:read"))]
Writer = Annotated[Principal, Depends(requires("transfers:write"))]


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: ClientId = None
    debit_account_id: str
    credit_account_id: str
    amount: Amount
    currency: str = Field(description="ISO 4217 code; both accounts must hold it.")
    pending: bool = Field(default=False, description="A hold, resolved later by post or void.")
    expires_at: Timestamp | None = Field(
        default=None, description="Pending transfers only: voided automatically after it."
    )
    metadata: Metadata = Field(default_factory=dict)

    def command(self) -> CreateTransfer:
        return CreateTransfer(
            id=self.id if self.id is not None else new_id(),
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount=self.amount,
            currency=self.currency,
            pending=self.pending,
            expires_at_us=None if self.expires_at is None else parse_rfc3339(self.expires_at),
            metadata=self.metadata,
        )


class TransferPost(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    amount: Amount | None = Field(
        default=None, description="Post part of the hold (the rest is released); all if absent."
    )


class TransferReverse(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: ClientId = None
    amount: Amount | None = Field(default=None, description="All that is left if absent.")
    metadata: Metadata = Field(default_factory=dict)


class TransferBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    atomic: bool = Field(
        description="true: all or nothing; false: each item applied or refused on its own."
    )
    transfers: list[TransferCreate] = Field(min_length=1, max_length=BATCH_MAX)


class LegCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    account_id: str
    side: Literal["debit", "credit"]
    amount: Amount
    currency: str


class JournalEntryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: ClientId = None
    legs: list[LegCreate] = Field(
        max_length=JOURNAL_LEGS_MAX,
        description="2 to 64 legs; debits equal credits in every currency.",
    )
    metadata: Metadata = Field(default_factory=dict)


def transfer_id_shape(transfer_id: str) -> None:
    try:
        check_id(transfer_id, "transfer id")
    except LedgerError:
        raise ProblemError("transfer-not-found", f"No transfer {transfer_id[:36]}.") from None


@router.post(
    "",
    status_code=201,
    response_model=TransferView,
    summary="Move money from one account to another, or hold it",
    description="201 when created; 200 when a transfer with this `id` and this body exists.",
)
async def create_transfer(
    body: TransferCreate, request: Request, response: Response, principal: Writer
) -> Response:
    render = single(problems_for(request), creates=True)
    return await write(request, response, principal, checked(body.command()), render)


def _batch_items(
    indexes: Sequence[int], outcomes: Sequence[Outcome], refused: dict[int, LedgerError]
) -> list[dict[str, Any]]:
    """One result per item, in request order: refused up front, or what the unit did."""
    results: list[dict[str, Any]] = [
        {"index": i, "status": "error", "problem": problem_summary(error)}
        for i, error in refused.items()
    ]
    for index, outcome in zip(indexes, outcomes, strict=True):
        if outcome.error is not None:
            item = {"index": index, "status": "error", "problem": problem_summary(outcome.error)}
        else:
            assert isinstance(outcome.value, Transfer)
            item = {"index": index, "status": "ok", "transfer": transfer_view(outcome.value)}
        results.append(item)
    results.sort(key=lambda item: int(item["index"]))
    return results


def _atomic_failure(failures: dict[int, LedgerError]) -> tuple[LedgerError, dict[str, Any]]:
    """The problem for an atomic batch: the first failing item's type, every failure listed."""
    index = min(failures)
    first = failures[index]
    error = LedgerError(
        first.code,
        f"Item {index} failed, so no item of the atomic batch was applied: {first.detail}",
    )
    listed = [{"index": i, **problem_summary(e)} for i, e in sorted(failures.items())]
    return error, {"index": index, "errors": listed}


@router.post(
    "/batch",
    response_model=BatchResult,
    summary="Up to 8,190 transfers in one request, all-or-nothing or one by one",
)
async def create_batch(
    body: TransferBatch, request: Request, response: Response, principal: Writer
) -> Response:
    commands: list[Command] = [item.command() for item in body.transfers]
    refused: dict[int, LedgerError] = {}
    for index, command in enumerate(commands):
        try:
            validate(command)
        except LedgerError as refusal:
            refused[index] = refusal
    if body.atomic and refused:
        first, extensions = _atomic_failure(refused)
        raise problem_error(first, **extensions)
    indexes = [i for i in range(len(commands)) if i not in refused]
    if not indexes:  # nothing left to apply; no key was claimed, so nothing to free
        return json_response(200, {"results": _batch_items([], [], refused)}, response)
    problems = problems_for(request)

    def render(outcomes: Sequence[Outcome]) -> tuple[int, dict[str, Any]]:
        if body.atomic:
            failures = {
                indexes[k]: o.error
                for k, o in enumerate(outcomes)
                if o.error is not None and o.error.code != "batch-aborted"
            }
            if not failures:  # only aborts reported: name the first anyway
                failures = {
                    indexes[k]: o.error for k, o in enumerate(outcomes) if o.error is not None
                }
            if failures:
                error, extensions = _atomic_failure(failures)
                return problems(error, **extensions)
        return 200, {"results": _batch_items(indexes, outcomes, refused)}

    unit = tuple(commands[i] for i in indexes)
    return await write(request, response, principal, unit, render, atomic=body.atomic)


@router.get("/{transfer_id}", response_model=TransferView, summary="One transfer")
async def get_transfer(
    transfer_id: str, request: Request, response: Response, principal: Reader
) -> Response:
    transfer_id_shape(transfer_id)
    store = ledger_runtime(request).store
    transfer = await anyio.to_thread.run_sync(lambda: store.transfer(principal.tenant, transfer_id))
    if transfer is None:
        raise ProblemError("transfer-not-found", f"No transfer {transfer_id}.")
    return json_response(200, transfer_view(transfer), response)


@router.post(
    "/{transfer_id}/post",
    response_model=TransferView,
    summary="Post a hold, all of it or part (the rest is released)",
)
async def post_transfer(
    transfer_id: str,
    request: Request,
    response: Response,
    principal: Writer,
    body: TransferPost | None = None,
) -> Response:
    transfer_id_shape(transfer_id)
    command = PostTransfer(transfer_id, None if body is None else body.amount)
    render = single(problems_for(request), creates=False)
    return await write(request, response, principal, checked(command), render)


@router.post("/{transfer_id}/void", response_model=TransferView, summary="Release a hold")
async def void_transfer(
    transfer_id: str, request: Request, response: Response, principal: Writer
) -> Response:
    transfer_id_shape(transfer_id)
    render = single(problems_for(request), creates=False)
    return await write(request, response, principal, checked(VoidTransfer(transfer_id)), render)


@router.post(
    "/{transfer_id}/reverse",
    status_code=201,
    response_model=TransferView,
    summary="Move posted money back with a compensating transfer",
    description="Answers the new transfer (its `reverses` names the original).",
)
async def reverse_transfer(
    transfer_id: str,
    request: Request,
    response: Response,
    principal: Writer,
    body: TransferReverse | None = None,
) -> Response:
    transfer_id_shape(transfer_id)
    body = body if body is not None else TransferReverse()
    command = ReverseTransfer(
        transfer_id=transfer_id,
        id=body.id if body.id is not None else new_id(),
        amount=body.amount,
        metadata=body.metadata,
    )
    render = single(problems_for(request), creates=True)
    return await write(request, response, principal, checked(command), render)


@journal_router.post(
    "",
    status_code=201,
    response_model=JournalEntryView,
    summary="Post several debits and credits at once, balanced per currency",
    description="201 when created; 200 when an entry with this `id` and this body exists.",
)
async def create_journal_entry(
    body: JournalEntryCreate, request: Request, response: Response, principal: Writer
) -> Response:
    command = CreateJournalEntry(
        id=body.id if body.id is not None else new_id(),
        legs=tuple(Leg(leg.account_id, leg.side, leg.amount, leg.currency) for leg in body.legs),
        metadata=body.metadata,
    )
    render = single(problems_for(request), creates=True)
    return await write(request, response, principal, checked(command), render)


@journal_router.get("/{entry_id}", response_model=JournalEntryView, summary="One journal entry")
async def get_journal_entry(
    entry_id: str, request: Request, response: Response, principal: Reader
) -> Response:
    try:
        check_id(entry_id, "journal entry id")
    except LedgerError:
        raise ProblemError("not-found", f"No journal entry {entry_id[:36]}.") from None
    store = ledger_runtime(request).store
    entry = await anyio.to_thread.run_sync(lambda: store.journal_entry(principal.tenant, entry_id))
    if entry is None:
        raise ProblemError("not-found", f"No journal entry {entry_id}.")
    return json_response(200, journal_entry_view(entry), response)
