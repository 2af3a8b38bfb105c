"""`/v1/admin/blocks` in-process: operator clients only, validation as problem+json,
audit entries naming the caller, soft removal."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from tests.unit.api.conftest import bearer_headers, provision_clients

from strongroom.adapters.db.schema import audit_entries
from strongroom.auth.keys import KeyRing
from strongroom.auth.rfc9068_access_token import issue_access_token
from strongroom.config import Settings

pytestmark = pytest.mark.anyio

PROBLEMS = "https://strongroom.dev/problems/"


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, Any]:
    return provision_clients(
        migrated_settings,
        app,
        (
            ("ops", ["admin"], True),
            ("ops-tenants", ["tenants:admin"], True),
            ("alpha", ["clients:read"], False),
        ),
    )


def forged(app: FastAPI, who: dict[str, Any], scope: set[str]) -> dict[str, str]:
    """A token signed with the platform's own key: what a granting bug could hand out."""
    runtime = app.state.auth
    token, _ = issue_access_token(
        KeyRing(runtime.keys.load(), time.time()).signing_key,
        issuer=runtime.issuer,
        audience=runtime.audience,
        subject=who["client_id"],
        client_id=who["client_id"],
        tenant=who["tenant"],
        scope=frozenset(scope),
        lifetime_s=300,
        now=time.time(),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def ops(client: httpx.AsyncClient, world: dict[str, Any]) -> dict[str, str]:
    return await bearer_headers(client, world["ops"])


async def test_an_operator_adds_lists_reads_and_removes_an_entry(client, ops, world) -> None:
    r = await client.post(
        "/v1/admin/blocks",
        json={"kind": "cidr", "value": "203.0.113.0/24", "reason": "scanner", "ttl_s": 3600},
        headers=ops,
    )
    assert r.status_code == 201, r.text
    entry = r.json()
    assert r.headers["location"] == f"/v1/admin/blocks/{entry['id']}"
    assert (entry["kind"], entry["value"], entry["action"]) == ("cidr", "203.0.113.0/24", "block")
    assert entry["created_by"] == f"client:{world['ops']['client_id']}"
    assert entry["expires_at"] == pytest.approx(entry["created_at"] + 3600)
    assert entry["in_force"] is True

    listed = (await client.get("/v1/admin/blocks", headers=ops)).json()["blocks"]
    assert [b["id"] for b in listed] == [entry["id"]]
    one = await client.get(f"/v1/admin/blocks/{entry['id']}", headers=ops)
    assert one.json() == entry

    r = await client.delete(f"/v1/admin/blocks/{entry['id']}", headers=ops)
    assert r.status_code == 200
    assert r.json()["removed_at"] is not None and r.json()["in_force"] is False
    assert (await client.get("/v1/admin/blocks", headers=ops)).json()["blocks"] == []
    everything = (await client.get("/v1/admin/blocks?all=true", headers=ops)).json()["blocks"]
    assert [b["id"] for b in everything] == [entry["id"]]


async def test_allow_entries_and_client_entries_are_accepted(client, ops) -> None:
    r = await client.post(
        "/v1/admin/blocks",
        json={"kind": "ip", "value": "::ffff:192.0.2.7", "action": "allow"},
        headers=ops,
    )
    assert r.status_code == 201 and r.json()["value"] == "192.0.2.7"
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "client", "value": "mallory-app"}, headers=ops
    )
    assert r.status_code == 201 and r.json()["expires_at"] is None


async def test_changes_are_audited_with_the_calling_client_and_request(client, ops, app) -> None:
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.9"}, headers=ops
    )
    await client.delete(f"/v1/admin/blocks/{r.json()['id']}", headers=ops)
    with app.state.engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_entries)
            .where(audit_entries.c.event_type.like("edge_block.%"))
            .order_by(audit_entries.c.seq)
        ).all()
    assert [row.event_type for row in rows] == ["edge_block.added", "edge_block.removed"]
    assert all(row.actor_kind == "client" and row.request_id for row in rows)
    assert json.loads(rows[0].data)["value"] == "192.0.2.9"


@pytest.mark.parametrize(
    ("body", "slug"),
    [
        ({"kind": "ip", "value": "300.0.0.1"}, "invalid-block-entry"),
        ({"kind": "cidr", "value": "10.1.2.3/8"}, "invalid-block-entry"),
        ({"kind": "cidr", "value": "0.0.0.0/1"}, "invalid-block-entry"),
        ({"kind": "client", "value": "has space"}, "invalid-block-entry"),
        ({"kind": "host", "value": "example.com"}, "validation-failed"),
        ({"kind": "ip", "value": "192.0.2.1", "ttl_s": 0}, "validation-failed"),
        ({"kind": "ip", "value": "192.0.2.1", "created_by": "someone"}, "validation-failed"),
    ],
)
async def test_invalid_entries_are_problems_with_stable_types(client, ops, body, slug) -> None:
    r = await client.post("/v1/admin/blocks", json=body, headers=ops)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == PROBLEMS + slug


async def test_removing_or_reading_an_unknown_entry_is_block_not_found(client, ops) -> None:
    for method in ("GET", "DELETE"):
        r = await client.request(method, "/v1/admin/blocks/4242", headers=ops)
        assert r.status_code == 404
        assert r.json()["type"] == PROBLEMS + "block-not-found"


async def test_removing_twice_is_block_not_found(client, ops) -> None:
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.1"}, headers=ops
    )
    path = f"/v1/admin/blocks/{r.json()['id']}"
    assert (await client.delete(path, headers=ops)).status_code == 200
    r = await client.delete(path, headers=ops)
    assert r.status_code == 404 and r.json()["type"] == PROBLEMS + "block-not-found"


async def test_a_tenant_client_is_refused_by_scope(client, world) -> None:
    alpha = await bearer_headers(client, world["alpha"])
    r = await client.get("/v1/admin/blocks", headers=alpha)
    assert r.status_code == 403 and r.json()["type"] == PROBLEMS + "insufficient-scope"


async def test_an_operator_without_the_admin_scope_is_refused(client, world) -> None:
    tenants_admin = await bearer_headers(client, world["ops-tenants"])
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.1"}, headers=tenants_admin
    )
    assert r.status_code == 403 and r.json()["type"] == PROBLEMS + "insufficient-scope"


async def test_a_forged_admin_token_for_a_tenant_client_is_refused(client, app, world) -> None:
    token = forged(app, world["alpha"], {"admin"})
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.1"}, headers=token
    )
    assert r.status_code == 403 and r.json()["type"] == PROBLEMS + "operator-required"
    assert (
        await client.get("/v1/admin/blocks", headers=forged(app, world["ops"], {"admin"}))
    ).status_code == 200


async def test_a_full_blocklist_refuses_more_entries(client, ops, app, monkeypatch) -> None:
    monkeypatch.setattr(app.state.auth.settings.edge.blocklist, "entries_max", 1)
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.1"}, headers=ops
    )
    assert r.status_code == 201
    r = await client.post(
        "/v1/admin/blocks", json={"kind": "ip", "value": "192.0.2.2"}, headers=ops
    )
    assert r.status_code == 409 and r.json()["type"] == PROBLEMS + "blocklist-full"


async def test_the_routes_are_documented_with_their_problem_types(client) -> None:
    document = (await client.get("/v1/openapi.json")).json()
    assert {"get", "post"} <= set(document["paths"]["/v1/admin/blocks"])
    assert {"get", "delete"} <= set(document["paths"]["/v1/admin/blocks/{entry_id}"])
    schema = document["components"]["schemas"]["BlockCreate"]
    assert schema["additionalProperties"] is False
