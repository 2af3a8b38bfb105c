"""The operator's tenant queries (``adapters/db/tenant_admin.py``) on both backends.

PostgreSQL tests use a throwaway database; without a reachable server they skip, except
under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import Engine

from strongroom.adapters.db.auth_repositories import SqlTenantRepository
from strongroom.adapters.db.tenant_admin import TENANT_PAGE_MAX, SqlTenantAdmin


def _tenants(engine: Engine, count: int) -> list[str]:
    repository = SqlTenantRepository(engine)
    ids = sorted(str(uuid.uuid4()) for _ in range(count))
    for n, tenant_id in enumerate(ids):
        repository.create(tenant_id, f"tenant {n}")
    return ids


def test_pages_walk_every_tenant_once_in_id_order(engine: Engine) -> None:
    ids = _tenants(engine, 5)
    admin = SqlTenantAdmin(engine)
    seen: list[str] = []
    after: str | None = None
    while page := admin.list_page(after=after, limit=2):
        seen += [t.tenant_id for t in page]
        after = page[-1].tenant_id
    assert seen == ids


def test_listed_tenants_carry_their_stored_fields(engine: Engine) -> None:
    (tenant_id,) = _tenants(engine, 1)
    (listed,) = SqlTenantAdmin(engine).list_page(after=None, limit=10)
    assert listed == SqlTenantRepository(engine).get(tenant_id)
    assert listed.status == "active" and listed.created_at > 0


def test_a_page_of_fewer_than_one_tenant_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="limit"):
        SqlTenantAdmin(engine).list_page(after=None, limit=0)


def test_a_page_is_capped_at_the_maximum(engine: Engine, monkeypatch) -> None:
    monkeypatch.setattr("strongroom.adapters.db.tenant_admin.TENANT_PAGE_MAX", 2)
    _tenants(engine, 3)
    assert len(SqlTenantAdmin(engine).list_page(after=None, limit=TENANT_PAGE_MAX)) == 2


def test_set_status_returns_the_updated_tenant(engine: Engine) -> None:
    tenant_id, other = _tenants(engine, 2)
    updated = SqlTenantAdmin(engine).set_status(tenant_id, "suspended")
    assert updated is not None and updated.status == "suspended"
    repository = SqlTenantRepository(engine)
    assert repository.get(tenant_id) == updated
    assert repository.get(other).status == "active"  # type: ignore[union-attr]


def test_set_status_of_a_missing_tenant_is_none(engine: Engine) -> None:
    assert SqlTenantAdmin(engine).set_status(str(uuid.uuid4()), "suspended") is None


def test_unknown_status_is_refused_before_any_write(engine: Engine) -> None:
    (tenant_id,) = _tenants(engine, 1)
    with pytest.raises(ValueError, match="status"):
        SqlTenantAdmin(engine).set_status(tenant_id, "deleted")  # type: ignore[arg-type]
    assert SqlTenantRepository(engine).get(tenant_id).status == "active"  # type: ignore[union-attr]
