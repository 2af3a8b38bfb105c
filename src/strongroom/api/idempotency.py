"""Stripe's ``Idempotency-Key`` semantics for every ledger write.

The header is optional (a transfer's own client-chosen ``id`` is idempotent too). With
it, the first response to a key — success or an error met while executing — is stored
with the key *in the transaction that moved the money* (``ports.Claim``), and every
later request with that key and the same request gets it back byte for byte, marked
``Idempotent-Replayed: true``. The same key with a different request, or while the first
is still executing, is a 409 ``idempotency-conflict``; nothing runs. A request refused
before execution (invalid body) stores nothing: the key stays free, as at Stripe.

"The same request" is the method, the path and the JSON body up to key order and
whitespace; keys are per tenant and expire after ``ledger.idempotency_key_ttl_s``.
"""

from __future__ import annotations

import hashlib
import json
import re

import anyio.to_thread
import structlog
from fastapi import Request
from starlette.responses import Response

from strongroom.api.problems import PROBLEM_MEDIA_TYPE, ProblemError, register_problem
from strongroom.api.request_context import request_context
from strongroom.config import LedgerSettings
from strongroom.ledger.errors import LEDGER_ERRORS
from strongroom.ledger.model import now_us
from strongroom.ledger.ports import ClaimResult, LedgerStore, StoredResponse

log = structlog.get_logger("strongroom.ledger")

IDEMPOTENCY_KEY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Stripe's limit; enough for a UUID or a client's own composite key, small to store.
IDEMPOTENCY_KEY_CHARS_MAX = 255
_KEY = re.compile(rf"[\x20-\x7e]{{1,{IDEMPOTENCY_KEY_CHARS_MAX}}}")
# A request holding the key usually answers within milliseconds: retry soon.
IN_FLIGHT_RETRY_AFTER_S = 1

INVALID_KEY = register_problem("invalid-idempotency-key", "Invalid Idempotency-Key header", 400)
_status, _title = LEDGER_ERRORS["idempotency-conflict"]
CONFLICT = register_problem("idempotency-conflict", _title, _status)


def idempotency_key(request: Request) -> str | None:
    """The request's key, ``None`` without one; a malformed key is a 400 problem."""
    values = request.headers.getlist(IDEMPOTENCY_KEY_HEADER)
    if not values:
        return None
    if len(values) > 1 or _KEY.fullmatch(values[0]) is None:
        raise ProblemError(
            INVALID_KEY.slug,
            f"Idempotency-Key must be one value of 1 to {IDEMPOTENCY_KEY_CHARS_MAX} "
            "printable ASCII characters.",
        )
    return values[0]


def canonical_body(body: bytes) -> bytes:
    """The JSON body with sorted keys and no whitespace, so a retry that re-serialised
    the same object still matches; a body that is not JSON is taken as it is."""
    if not body:
        return b""
    try:
        value = json.loads(body)
    except ValueError:
        return body
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def request_hash(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical_body(body)):
        # Length-prefixed: no two different (method, path, body) triples hash alike.
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def claim(
    request: Request, store: LedgerStore, settings: LedgerSettings, tenant_id: str, key: str
) -> ClaimResult:
    """Take ``key`` for this request (its own short transaction, in a worker thread)."""
    fingerprint = request_hash(request.method, request.url.path, await request.body())
    lease_us = int(settings.idempotency_lease_s * 1_000_000)
    ttl_us = int(settings.idempotency_key_ttl_s * 1_000_000)
    return await anyio.to_thread.run_sync(
        lambda: store.claim_key(
            tenant_id, key, fingerprint, now_us(), lease_us=lease_us, ttl_us=ttl_us
        )
    )


def refusal(result: ClaimResult) -> ProblemError:
    """The 409 for a key held by a running request or used for a different one."""
    if result.state == "in_flight":
        return ProblemError(
            CONFLICT.slug,
            "A request with this Idempotency-Key is in progress; retry after it completes.",
            headers={"Retry-After": str(IN_FLIGHT_RETRY_AFTER_S)},
        )
    return ProblemError(
        CONFLICT.slug,
        "This Idempotency-Key was already used with a different request "
        "(method, path or body); use a new key for a new request.",
    )


async def release(
    request: Request, store: LedgerStore, tenant_id: str, key: str, token: str
) -> None:
    """Free a claimed key whose request never reached execution, so a retry need not wait
    for the lease to run out. Best effort: if it fails, the lease frees the key anyway."""
    try:
        await anyio.to_thread.run_sync(lambda: store.release_key(tenant_id, key, token))
    except Exception:
        log.exception(
            "ledger.idempotency_release_failed",
            request_id=request_context(request).request_id,
        )


def stored_response(stored: StoredResponse, *, replayed: bool) -> Response:
    media_type = PROBLEM_MEDIA_TYPE if stored.status >= 400 else "application/json"
    headers = {REPLAYED_HEADER: "true"} if replayed else None
    return Response(stored.body, status_code=stored.status, media_type=media_type, headers=headers)
