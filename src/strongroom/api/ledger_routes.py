"""What every ledger route shares: strict request types, the route class, the write path.

Bodies are parsed strictly: unknown members, floats, booleans or strings where an
integer amount belongs, and NaN or Infinity anywhere are refused before anything runs,
as ``validation-failed`` problems (422), the type the engine's own checks use too, so a
client handles one type for bad input. Range checks
that need no state (positive amounts, at most 2^63-1, known currency, metadata size)
are ``ledger.commands.validate``'s, so the API and the engine refuse alike.

Every write takes one path (:func:`write`): validate, take the Idempotency-Key if one
was sent, then submit one ``Unit`` to the pod's group committer, tenant from the token
and never from the request. The response is rendered once from the unit's outcomes; the
same bytes are what the store keeps for the key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, Field, StrictInt

from strongroom import json_codec
from strongroom.api import idempotency
from strongroom.api.authz import Principal
from strongroom.api.ledger_runtime import ledger_runtime
from strongroom.api.ledger_views import ProblemRenderer, object_view, parse_rfc3339
from strongroom.api.problems import ProblemError
from strongroom.api.request_context import request_context
from strongroom.ledger.commands import Command, validate
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.ports import Actor, Claim, Outcome, StoredResponse, Unit

# --- request types ------------------------------------------------------------------------


def _plain_json(value: dict[str, Any]) -> dict[str, Any]:
    # Python's JSON parser accepts NaN and Infinity; neither is JSON (RFC 8259 §6), so a
    # stored transfer would echo them to, and break, every strict consumer downstream.
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        raise ValueError("metadata must be plain JSON (no NaN or Infinity)") from None
    return value


def _rfc3339(value: str) -> str:
    parse_rfc3339(value)
    return value


Metadata = Annotated[
    dict[str, Any],
    AfterValidator(_plain_json),
    Field(description="Free-form JSON object, at most 4,096 bytes encoded."),
]
Amount = Annotated[StrictInt, Field(description="Positive integer in minor units, at most 2^63-1.")]
ClientId = Annotated[
    str | None,
    Field(
        description="Lowercase UUID chosen by the client (resubmitting it is idempotent); "
        "generated when absent."
    ),
]
Timestamp = Annotated[
    str,
    AfterValidator(_rfc3339),
    Field(
        description="RFC 3339 date-time with an offset.", json_schema_extra={"format": "date-time"}
    ),
]


def new_id() -> str:
    return str(uuid.uuid4())


# --- route class --------------------------------------------------------------------------


_IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Retry safely: the first response to this key is stored and replayed with "
        "`Idempotent-Replayed: true`; the same key with another request is a 409."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


class LedgerRoute(APIRoute):
    """Writes document the ``Idempotency-Key`` header, which :func:`write` reads itself."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if set(kwargs.get("methods") or ()) & {"POST", "PATCH"}:
            extra = dict(kwargs.get("openapi_extra") or {})
            extra["parameters"] = [*extra.get("parameters", []), _IDEMPOTENCY_KEY_PARAMETER]
            kwargs["openapi_extra"] = extra
        super().__init__(path, endpoint, **kwargs)


# --- errors and validation ----------------------------------------------------------------


def problem_error(error: LedgerError, **extensions: Any) -> ProblemError:
    return ProblemError(error.code, error.detail, **extensions)


def checked(*commands: Command) -> tuple[Command, ...]:
    """``commands`` if each passes ``validate``; else the first failure as a problem."""
    for command in commands:
        try:
            validate(command)
        except LedgerError as error:
            raise problem_error(error) from None
    return commands


def actor_of(principal: Principal) -> Actor:
    """Who the audit log names: the end user when a user's token acted (authorization
    code flow: ``sub`` is the user), else the client itself (client credentials)."""
    if principal.subject != principal.client_id:
        return Actor("operator" if principal.is_operator else "user", principal.subject)
    return Actor("client", principal.client_id)


def problems_for(request: Request) -> ProblemRenderer:
    # The scope's path, not ``request.url``: building a URL costs more than the rest of
    # the renderer, and most renderers never render a problem.
    return ProblemRenderer(request.scope["path"], request_context(request).request_id)


# --- the write path -----------------------------------------------------------------------

Render = Callable[[Sequence[Outcome]], tuple[int, dict[str, Any]]]


def encode_json(body: dict[str, Any]) -> bytes:
    return json_codec.dumps_bytes(body)


class _Responder:
    """Renders outcomes into the stored response, once: the store calls it inside the
    transaction, the route again with the same outcomes, and both must send one body."""

    def __init__(self, render: Render) -> None:
        self._render = render
        self._last: tuple[list[Outcome], StoredResponse] | None = None

    def __call__(self, outcomes: Sequence[Outcome]) -> StoredResponse:
        last = self._last
        if last is not None and last[0] == list(outcomes):
            return last[1]
        status, body = self._render(outcomes)
        stored = StoredResponse(status, encode_json(body))
        self._last = (list(outcomes), stored)
        return stored


def with_headers(response: Response, sub_response: Response) -> Response:
    """Headers set by dependencies (the DPoP nonce, RFC 9449 §8.2) go on a response the
    route returns itself, which FastAPI would otherwise send without them."""
    for name, value in sub_response.headers.items():
        if name.lower() not in ("content-length", "content-type"):
            response.headers[name] = value
    return response


def json_response(status: int, body: dict[str, Any], sub_response: Response) -> Response:
    stored = StoredResponse(status, encode_json(body))
    return with_headers(idempotency.stored_response(stored, replayed=False), sub_response)


async def write(
    request: Request,
    sub_response: Response,
    principal: Principal,
    commands: tuple[Command, ...],
    render: Render,
    *,
    atomic: bool = True,
) -> Response:
    """Submit validated ``commands`` as one unit, under the request's Idempotency-Key."""
    runtime = ledger_runtime(request)
    store = runtime.store
    key = idempotency.idempotency_key(request)
    respond = _Responder(render)
    claim: Claim | None = None
    if key is not None:
        result = await idempotency.claim(request, store, runtime.settings, principal.tenant, key)
        if result.state == "replay":
            assert result.response is not None
            replay = idempotency.stored_response(result.response, replayed=True)
            return with_headers(replay, sub_response)
        if result.state != "claimed":
            raise idempotency.refusal(result)
        assert result.token is not None
        claim = Claim(key, result.token, respond)
    unit = Unit(
        tenant_id=principal.tenant,
        commands=commands,
        actor=actor_of(principal),
        request_id=request_context(request).request_id,
        atomic=atomic,
        claim=claim,
    )
    try:
        outcomes = await runtime.committer.submit(unit)
    except Exception:
        # The store wrote nothing (its contract): free the key for the retry. A cancelled
        # request is left alone, since its unit still commits and stores the response.
        if claim is not None:
            await idempotency.release(request, store, principal.tenant, claim.key, claim.token)
        raise
    stored = respond(outcomes)
    return with_headers(idempotency.stored_response(stored, replayed=False), sub_response)


def single(problems: ProblemRenderer, *, creates: bool) -> Render:
    """Render a one-command unit: the object (201 if ``creates`` and new, else 200) or
    the problem its error maps to."""

    def render(outcomes: Sequence[Outcome]) -> tuple[int, dict[str, Any]]:
        (outcome,) = outcomes
        if outcome.error is not None:
            return problems(outcome.error)
        assert outcome.value is not None
        status = 201 if creates and not outcome.replayed else 200
        return status, object_view(outcome.value)

    return render
