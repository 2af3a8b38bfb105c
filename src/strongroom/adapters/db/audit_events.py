"""Audit entries for administration events, written in the caller's own transaction.

Issue 5 ("Entries"): an audit entry commits in the same database transaction as the change
it records, so a change that rolls back leaves no entry and a committed change always has
one. Each writer here therefore takes the ``Connection`` of the transaction that makes the
change and inserts one row into the append-only ``audit_entries`` table, in the same column
form as the ledger's entries (``ledger_store``); the sequencer later turns each row into its
canonical leaf (``audit.canonical``).

The record is validated and encoded once here, before the insert: an entry the sequencer
could not turn into a leaf (unknown event type, oversized data) fails the change itself
instead of reaching the log. Event data carries identifiers and settings, never secret or
key material (no secret hashes, no JWK sets, no private keys).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from strongroom import json_codec
from strongroom.adapters.db.schema import audit_entries
from strongroom.audit.canonical import AuditRecord, leaf_bytes
from strongroom.auth.ports import ClientRecord
from strongroom.ledger.ports import SYSTEM_ACTOR
from strongroom.ledger.ports import Actor as AuditActor

__all__ = [
    "SYSTEM_ACTOR",
    "AuditActor",
    "client_event_data",
    "epoch_us",
    "record_actor_event",
    "record_event",
]

_US_PER_S = 1_000_000


def epoch_us(seconds: float) -> int:
    """An epoch time in seconds (the auth repositories' clocks) as integer microseconds."""
    return int(seconds * _US_PER_S)


def record_event(
    connection: Connection,
    *,
    event_type: str,
    tenant_id: str | None,
    actor_kind: str,
    actor_id: str,
    request_id: str | None,
    subject_ids: Sequence[str],
    data: Mapping[str, Any],
    occurred_at_us: int | None = None,
) -> None:
    """Insert one audit entry through ``connection`` (inside its open transaction).

    Raises ``AuditRecordError`` for an entry that cannot become a canonical leaf; the
    caller's transaction then rolls back with it.
    """
    record = AuditRecord(
        event_type=event_type,
        tenant_id=tenant_id,
        actor_kind=actor_kind,
        actor_id=actor_id,
        request_id=request_id,
        subject_ids=tuple(subject_ids),
        data=data,
        occurred_at_us=time.time_ns() // 1000 if occurred_at_us is None else occurred_at_us,
    )
    leaf_bytes(record)
    connection.execute(
        audit_entries.insert().values(
            tenant_id=record.tenant_id,
            event_type=record.event_type,
            actor_kind=record.actor_kind,
            actor_id=record.actor_id,
            request_id=record.request_id,
            subject_ids=json_codec.dumps(list(record.subject_ids), sort_keys=True),
            data=json_codec.dumps(record.data, sort_keys=True),
            occurred_at_us=record.occurred_at_us,
        )
    )


def record_actor_event(
    connection: Connection,
    *,
    event_type: str,
    tenant_id: str | None,
    actor: AuditActor | None,
    request_id: str | None,
    subject_ids: Sequence[str],
    data: Mapping[str, Any],
    occurred_at_us: int | None = None,
) -> None:
    """:func:`record_event` for an ``actor`` (``None``: Strongroom itself, ``SYSTEM_ACTOR``)."""
    who = SYSTEM_ACTOR if actor is None else actor
    record_event(
        connection,
        event_type=event_type,
        tenant_id=tenant_id,
        actor_kind=who.kind,
        actor_id=who.id,
        request_id=request_id,
        subject_ids=subject_ids,
        data=data,
        occurred_at_us=occurred_at_us,
    )


def client_event_data(record: ClientRecord, **extra: Any) -> dict[str, Any]:
    """What ``oauth_client.created`` says about a client: its settings, never its secrets.

    ``auth_method`` says how the client authenticates (a secret, a key per RFC 7523 §2.2,
    or nothing: a public client) instead of carrying the secret hash or the JWK set.
    """
    if record.jwks is not None:
        auth_method = "private_key_jwt"
    elif record.secret_hash is not None:
        auth_method = "client_secret"
    else:
        auth_method = "none"
    return {
        "name": record.name,
        "scopes": sorted(record.scopes),
        "status": record.status,
        "dpop_required": record.dpop_required,
        "is_operator": record.is_operator,
        "auth_method": auth_method,
        **extra,
    }
