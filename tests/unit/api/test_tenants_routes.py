"""`/v1/tenants` in-process: operator-only functions, mass assignment, tenant suspension.

The same behaviours through the TLS edge against a real platform are in
tests/e2e/test_owasp_api_top10.py; here the cases that need a forged token or a
half-done suspension, which only an in-process test can set up.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs
from tests.unit.api.conftest import bearer_headers, provision_clients

from strongroom.adapters.db.tenant_admin import SqlTenantAdmin
from strongroom.api.tenant_cache import TenantStatusCache
from strongroom.auth.keys import KeyRing
from strongroom.auth.ports import TenantRecord
from strongroom.auth.provisioning import create_tenant
from strongroom.auth.rfc9068_access_token import issue_access_token
from strongroom.config import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, Any]:
    return provision_clients(
        migrated_settings,
        app,
        (
            ("ops", ["tenants:admin"], True),
            ("alpha", ["clients:read", "clients:write"], False),
        ),
    )


def forged(app: FastAPI, *, client_id: str, tenant: str, scope: set[str]) -> dict[str, str]:
    """A token signed with the platform's own key: what a granting bug could hand out."""
    runtime = app.state.auth
    token, _ = issue_access_token(
        KeyRing(runtime.keys.load(), time.time()).signing_key,
        issuer=runtime.issuer,
        audience=runtime.audience,
        subject=client_id,
        client_id=client_id,
        tenant=tenant,
        scope=frozenset(scope),
        lifetime_s=300,
        now=time.time(),
    )
    return {"Authorization": f"Bearer {token}"}


async def test_operator_creates_reads_and_lists_tenants(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    created = await client.post("/v1/tenants", json={"name": " gamma "}, headers=headers)
    assert created.status_code == 201
    body = created.json()
    assert set(body) == {"tenant_id", "name", "status", "created_at"}
    assert body["name"] == "gamma" and body["status"] == "active"
    one = await client.get(f"/v1/tenants/{body['tenant_id']}", headers=headers)
    listed = await client.get("/v1/tenants", headers=headers)
    assert one.json() == body
    ids = {t["tenant_id"] for t in listed.json()["tenants"]}
    assert ids == {world["ops"]["tenant"], world["alpha"]["tenant"], body["tenant_id"]}


async def test_tenant_listing_pages_by_id(client, world, app) -> None:
    headers = await bearer_headers(client, world["ops"])
    for n in range(3):
        create_tenant(app.state.auth.tenants, f"t{n}")
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await client.get("/v1/tenants", params=params, headers=headers)).json()
        seen += [t["tenant_id"] for t in page["tenants"]]
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == 5 and seen == sorted(seen)


async def test_page_size_above_the_maximum_is_422(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    r = await client.get("/v1/tenants", params={"limit": "100000"}, headers=headers)
    assert r.status_code == 422


@pytest.mark.parametrize(
    "extra",
    [{"is_operator": True}, {"tenant_id": "chosen"}, {"status": "suspended"}],
)
async def test_create_refuses_members_the_caller_may_not_set(client, world, extra) -> None:
    headers = await bearer_headers(client, world["ops"])
    r = await client.post("/v1/tenants", json={"name": "mass", **extra}, headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    names = [
        t["name"] for t in (await client.get("/v1/tenants", headers=headers)).json()["tenants"]
    ]
    assert "mass" not in names


async def test_blank_tenant_name_is_422(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    r = await client.post("/v1/tenants", json={"name": "   "}, headers=headers)
    assert r.status_code == 422


async def test_unknown_tenant_is_404(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    r = await client.get("/v1/tenants/00000000-0000-4000-8000-000000000000", headers=headers)
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tenants"),
        ("POST", "/v1/tenants"),
        ("GET", "/v1/tenants/{alpha}"),
        ("POST", "/v1/tenants/{alpha}/suspend"),
    ],
)
async def test_tenant_client_token_is_403_on_every_tenants_route(
    client, world, method, path
) -> None:
    headers = await bearer_headers(client, world["alpha"])
    r = await client.request(
        method, path.format(alpha=world["alpha"]["tenant"]), json={"name": "x"}, headers=headers
    )
    assert r.status_code == 403
    assert r.json()["type"].endswith("/insufficient-scope")


async def test_scope_forged_onto_a_tenant_clients_token_is_still_refused(
    client, world, app
) -> None:
    alpha = world["alpha"]
    headers = forged(
        app, client_id=alpha["client_id"], tenant=alpha["tenant"], scope={"tenants:admin"}
    )
    with capture_logs() as logs:
        r = await client.get("/v1/tenants", headers=headers)
    assert r.status_code == 403
    assert r.json()["type"].endswith("/operator-required")
    denied = [e for e in logs if e["event"] == "auth.denied"]
    assert denied[0]["reason"] == "not_operator_client"
    assert denied[0]["client_id"] == alpha["client_id"] and denied[0]["client_ip"]


async def test_operator_token_claiming_another_tenant_is_refused(client, world, app) -> None:
    headers = forged(
        app,
        client_id=world["ops"]["client_id"],
        tenant=world["alpha"]["tenant"],
        scope={"tenants:admin"},
    )
    r = await client.get("/v1/tenants", headers=headers)
    assert r.status_code == 403 and r.json()["type"].endswith("/operator-required")


async def test_operator_cannot_suspend_its_own_tenant(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    r = await client.post(f"/v1/tenants/{world['ops']['tenant']}/suspend", headers=headers)
    assert r.status_code == 409
    again = await client.get("/v1/tenants", headers=headers)
    assert again.status_code == 200


async def test_suspension_suspends_every_client_and_their_tokens_at_once(client, world) -> None:
    alpha = world["alpha"]
    alpha_headers = await bearer_headers(client, alpha)
    assert (await client.get("/v1/clients", headers=alpha_headers)).status_code == 200
    headers = await bearer_headers(client, world["ops"])
    r = await client.post(f"/v1/tenants/{alpha['tenant']}/suspend", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    assert (await client.get("/v1/clients", headers=alpha_headers)).status_code == 401
    refused = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(alpha["client_id"], alpha["secret"]),
    )
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    record = await client.get(f"/v1/tenants/{alpha['tenant']}", headers=headers)
    assert record.json()["status"] == "suspended"


async def test_repeating_a_suspension_is_harmless(client, world) -> None:
    headers = await bearer_headers(client, world["ops"])
    path = f"/v1/tenants/{world['alpha']['tenant']}/suspend"
    first = await client.post(path, headers=headers)
    second = await client.post(path, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()


async def test_active_client_of_a_suspended_tenant_gets_no_token(client, world, app) -> None:
    # What a client created while its tenant was being suspended would look like.
    alpha = world["alpha"]
    SqlTenantAdmin(app.state.engine).set_status(alpha["tenant"], "suspended")
    with capture_logs() as logs:
        r = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(alpha["client_id"], alpha["secret"]),
        )
    assert r.status_code == 401 and r.json() == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }
    events = [e for e in logs if e["event"] == "auth.client_authentication_failed"]
    assert [e["reason"] for e in events] == ["tenant_suspended"]


async def test_tenant_status_is_cached_until_forgotten() -> None:
    loads: list[str] = []
    status = {"t": "active"}

    def load(tenant_id: str) -> TenantRecord | None:
        loads.append(tenant_id)
        return TenantRecord(tenant_id, "t", status[tenant_id], 0.0)  # type: ignore[arg-type]

    cache = TenantStatusCache(load, ttl_s=60.0)
    assert await cache.is_active("t")
    status["t"] = "suspended"
    assert await cache.is_active("t")
    cache.forget("t")
    assert not await cache.is_active("t")
    assert loads == ["t", "t"]


async def test_missing_tenant_is_not_active() -> None:
    cache = TenantStatusCache(lambda _tenant_id: None)
    assert not await cache.is_active("nope")
