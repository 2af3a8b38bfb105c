"""SQL for the operator's view of tenants: listing them and changing their status.

``SqlTenantRepository`` (``auth_repositories``) holds what every request path needs
(create, get); this module holds what only the operator API (``api.tenants_routes``)
does. Listing is keyset-paginated by id, so a page costs the same however many tenants
exist and a page never repeats or skips a tenant when others are added meanwhile.
A status change writes its audit entry (``audit_events``) in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from strongroom.adapters.db.audit_events import AuditActor, record_actor_event
from strongroom.adapters.db.engine import write_transaction
from strongroom.adapters.db.schema import TENANT_STATUSES, tenants
from strongroom.auth.ports import TenantRecord, TenantStatus

# A page of tenants is bounded whatever the caller asks for: one response, one query.
TENANT_PAGE_MAX = 500
# The audit event each status change records (``audit.canonical.EVENT_TYPES``).
_STATUS_EVENTS: dict[str, str] = {
    "active": "tenant.reactivated",
    "suspended": "tenant.suspended",
    "closed": "tenant.closed",
}


def _epoch(value: datetime) -> float:
    # SQLite returns the stored UTC text as a naive datetime; PostgreSQL an aware one.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _tenant_from_row(row: Row[Any]) -> TenantRecord:
    return TenantRecord(
        tenant_id=row.id,
        name=row.name,
        status=cast(TenantStatus, row.status),
        created_at=_epoch(row.created_at),
    )


class SqlTenantAdmin:
    """Operator-only tenant queries over the ``tenants`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list_page(self, *, after: str | None, limit: int) -> list[TenantRecord]:
        """Up to ``limit`` tenants (at most ``TENANT_PAGE_MAX``) with ids above ``after``."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = sa.select(tenants).order_by(tenants.c.id).limit(min(limit, TENANT_PAGE_MAX))
        if after is not None:
            query = query.where(tenants.c.id > after)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_tenant_from_row(row) for row in rows]

    def set_status(
        self,
        tenant_id: str,
        status: TenantStatus,
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> TenantRecord | None:
        """The tenant with its new ``status``, or ``None`` when there is no such tenant.

        The row is locked before it is read (SQLite: the write lock, ``BEGIN IMMEDIATE``;
        PostgreSQL: ``FOR NO KEY UPDATE``, which still lets clients and users referencing
        the tenant be inserted), so no concurrent change is lost between the read and the
        write. Only an actual change is written and audited: repeating a suspension adds
        no entry.
        """
        if status not in TENANT_STATUSES:
            raise ValueError(f"tenant status must be one of {TENANT_STATUSES}, not {status!r}")
        with write_transaction(self._engine) as connection:
            row = connection.execute(
                sa.select(tenants).where(tenants.c.id == tenant_id).with_for_update(key_share=True)
            ).first()
            if row is None:
                return None
            if row.status != status:
                previous = row.status
                row = connection.execute(
                    tenants.update()
                    .where(tenants.c.id == tenant_id)
                    .values(status=status)
                    .returning(*tenants.c)
                ).one()
                record_actor_event(
                    connection,
                    event_type=_STATUS_EVENTS[status],
                    tenant_id=tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[tenant_id],
                    data={"status": status, "previous_status": previous},
                )
        return _tenant_from_row(row)
