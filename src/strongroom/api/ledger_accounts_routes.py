"""`/v1/accounts`: a tenant's ledger accounts, their balances and their entries.

Every read and write is scoped by the caller's tenant (from the token): another tenant's
account is ``account-not-found`` exactly like a missing one (OWASP API1). An id that is
not a UUID cannot exist, so it is answered 404 without a database round trip.

Balances are the four counters plus ``balance`` (posted, on the normal side) and
``available`` (less outgoing holds); ``?as_of=`` gives them at a past instant, summed
from the entries made up to then.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from strongroom.api.authz import Principal, requires
from strongroom.api.ledger_routes import (
    ClientId,
    LedgerRoute,
    Metadata,
    checked,
    json_response,
    new_id,
    problems_for,
    single,
    write,
)
from strongroom.api.ledger_runtime import ledger_runtime
from strongroom.api.ledger_views import (
    AccountList,
    AccountView,
    EntryList,
    account_view,
    entry_view,
    parse_rfc3339,
)
from strongroom.api.problems import PROBLEM_RESPONSES, ProblemError
from strongroom.ledger.commands import ChangeAccount, CreateAccount, check_id
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import AMOUNT_MAX, COUNTERS, AccountKind, Counter, Entry, Side
from strongroom.ledger.ports import EntryFilter

# A dashboard page; the cap bounds one query's rows and the response's size.
ACCOUNT_PAGE_DEFAULT = 100
ACCOUNT_PAGE_MAX = 500
ENTRY_PAGE_DEFAULT = 100
ENTRY_PAGE_MAX = 1000
# Account ids are UUIDs (36 characters); a longer cursor or filter cannot match one.
ID_CHARS_MAX = 36

router = APIRouter(
    prefix="/v1/accounts", tags=["accounts"], responses=PROBLEM_RESPONSES, route_class=LedgerRoute
)

Reader = Annotated[Principal, Depends(requires("accounts:read"))]
Writer = Annotated[Principal, Depends(requires("accounts:write"))]


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: ClientId = None
    kind: Literal["wallet", "merchant"]
    currency: str = Field(description="ISO 4217 code, e.g. EUR.")
    overdraft_limit: StrictInt = Field(
        default=0, description="How far below zero the balance may go (minor units)."
    )
    metadata: Metadata = Field(default_factory=dict)


class AccountChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    overdraft_limit: StrictInt = Field(
        description="New limit; refused if the account already uses more than it."
    )


def instant(value: str | None, name: str) -> int | None:
    """A query parameter's RFC 3339 instant in microseconds, or a ``validation-failed``."""
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ProblemError(
            "validation-failed",
            f"{name} {exc}.",
            errors=[{"loc": ["query", name], "msg": str(exc), "type": "value_error"}],
        ) from None


def account_id_shape(account_id: str) -> None:
    try:
        check_id(account_id, "account id")
    except LedgerError:
        raise ProblemError(
            "account-not-found", f"No account {account_id[:ID_CHARS_MAX]}."
        ) from None


def not_found(account_id: str) -> ProblemError:
    return ProblemError("account-not-found", f"No account {account_id}.")


@router.post(
    "",
    status_code=201,
    response_model=AccountView,
    summary="Open a wallet or merchant account",
    description="201 when created; 200 when an account with this `id` and these values exists.",
)
async def create_account(
    body: AccountCreate, request: Request, response: Response, principal: Writer
) -> Response:
    command = CreateAccount(
        id=body.id if body.id is not None else new_id(),
        kind=body.kind,
        currency=body.currency,
        overdraft_limit=body.overdraft_limit,
        metadata=body.metadata,
    )
    render = single(problems_for(request), creates=True)
    return await write(request, response, principal, checked(command), render)


@router.get("", response_model=AccountList, summary="The tenant's accounts, in pages by id")
async def list_accounts(
    *,
    request: Request,
    response: Response,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=ACCOUNT_PAGE_MAX)] = ACCOUNT_PAGE_DEFAULT,
    after: Annotated[str | None, Query(max_length=ID_CHARS_MAX)] = None,
    kind: AccountKind | None = None,
    currency: Annotated[str | None, Query(max_length=3)] = None,
) -> Response:
    store = ledger_runtime(request).store
    accounts = await anyio.to_thread.run_sync(
        lambda: store.accounts(
            principal.tenant, after=after, limit=limit, kind=kind, currency=currency
        )
    )
    body = {
        "accounts": [account_view(a) for a in accounts],
        "next_cursor": accounts[-1].id if len(accounts) == limit else None,
    }
    return json_response(200, body, response)


@router.get(
    "/{account_id}",
    response_model=AccountView,
    summary="One account with its balances, now or at a past instant",
)
async def get_account(
    account_id: str,
    request: Request,
    response: Response,
    principal: Reader,
    as_of: Annotated[
        str | None,
        Query(description="RFC 3339 instant: balances as they were then (entries up to it)."),
    ] = None,
) -> Response:
    as_of_us = instant(as_of, "as_of")
    account_id_shape(account_id)
    store = ledger_runtime(request).store
    account = await anyio.to_thread.run_sync(
        lambda: store.account(principal.tenant, account_id, as_of_us=as_of_us)
    )
    if account is None:
        raise not_found(account_id)
    return json_response(200, account_view(account), response)


async def _change(
    request: Request,
    response: Response,
    principal: Principal,
    account_id: str,
    command: ChangeAccount,
) -> Response:
    account_id_shape(account_id)
    render = single(problems_for(request), creates=False)
    return await write(request, response, principal, checked(command), render)


@router.post("/{account_id}/freeze", response_model=AccountView, summary="Freeze an account")
async def freeze(
    account_id: str, request: Request, response: Response, principal: Writer
) -> Response:
    command = ChangeAccount(account_id, "freeze")
    return await _change(request, response, principal, account_id, command)


@router.post("/{account_id}/unfreeze", response_model=AccountView, summary="Unfreeze an account")
async def unfreeze(
    account_id: str, request: Request, response: Response, principal: Writer
) -> Response:
    command = ChangeAccount(account_id, "unfreeze")
    return await _change(request, response, principal, account_id, command)


@router.post(
    "/{account_id}/close",
    response_model=AccountView,
    summary="Close an account (it must hold no money and no holds)",
)
async def close(
    account_id: str, request: Request, response: Response, principal: Writer
) -> Response:
    command = ChangeAccount(account_id, "close")
    return await _change(request, response, principal, account_id, command)


@router.patch("/{account_id}", response_model=AccountView, summary="Change the overdraft limit")
async def change(
    account_id: str, body: AccountChange, request: Request, response: Response, principal: Writer
) -> Response:
    command = ChangeAccount(account_id, "set_overdraft_limit", body.overdraft_limit)
    return await _change(request, response, principal, account_id, command)


def _counters(
    counter: list[Counter] | None, side: Side | None, status: str | None
) -> frozenset[Counter]:
    selected = set(counter or COUNTERS)
    if side is not None:
        selected = {c for c in selected if c.startswith(side)}
    if status is not None:
        selected = {c for c in selected if c.endswith(status)}
    return frozenset(selected)


@router.get(
    "/{account_id}/entries",
    response_model=EntryList,
    summary="The account's entries in order, filtered, in pages by seq",
)
async def list_entries(
    account_id: str,
    *,
    request: Request,
    response: Response,
    principal: Reader,
    after: Annotated[int, Query(ge=0, le=AMOUNT_MAX, description="Entries after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=ENTRY_PAGE_MAX)] = ENTRY_PAGE_DEFAULT,
    counter: Annotated[list[Counter] | None, Query(description="Repeatable.")] = None,
    side: Side | None = None,
    status: Literal["posted", "pending"] | None = None,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive.")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, exclusive.")] = None,
    transfer_id: Annotated[str | None, Query(max_length=ID_CHARS_MAX)] = None,
) -> Response:
    from_us, to_us = instant(from_, "from"), instant(to, "to")
    counters = _counters(counter, side, status)
    account_id_shape(account_id)
    store = ledger_runtime(request).store
    tenant = principal.tenant
    # To the store an empty set means every counter.
    where = EntryFilter(
        counters=frozenset() if counters == frozenset(COUNTERS) else counters,
        from_us=from_us,
        to_us=to_us,
        transfer_id=transfer_id,
    )

    def read() -> list[Entry] | None:
        if store.account(tenant, account_id) is None:
            return None
        if not counters:  # the filters exclude each other: nothing can match
            return []
        return store.entries(tenant, account_id, after_seq=after, limit=limit, where=where)

    entries = await anyio.to_thread.run_sync(read)
    if entries is None:
        raise not_found(account_id)
    body: dict[str, Any] = {
        "entries": [entry_view(e) for e in entries],
        "next_cursor": entries[-1].seq if len(entries) == limit else None,
    }
    return json_response(200, body, response)
