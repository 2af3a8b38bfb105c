"""Administration events write one audit entry in the same transaction as their change.

Issue 5, "Entries": tenants, OAuth clients, users and signing keys, on SQLite and on a
real PostgreSQL server (throwaway database; without a reachable server the PostgreSQL
half skips, except under ``CI=true``, where it fails). Atomicity is shown both ways: an
entry that cannot be written undoes the change, and a change that fails after its entry
was written takes the entry with it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from strongroom.adapters.db import auth_repositories
from strongroom.adapters.db.audit_events import SYSTEM_ACTOR, AuditActor, record_event
from strongroom.adapters.db.auth_repositories import (
    SqlClientRepository,
    SqlKeyRepository,
    SqlRevocationStore,
    SqlTenantRepository,
)
from strongroom.adapters.db.schema import audit_entries, oauth_clients, signing_keys
from strongroom.adapters.db.tenant_admin import SqlTenantAdmin
from strongroom.adapters.db.user_repositories import SqlAppClientRepository, SqlUserRepository
from strongroom.api.app import create_app
from strongroom.audit.canonical import AuditRecord, AuditRecordError, leaf_bytes, parse_leaf
from strongroom.auth.keys import SigningKey, plan_rotation
from strongroom.auth.ports import ClientRecord
from strongroom.auth.provisioning import create_client, create_tenant
from strongroom.auth.users import UserRecord
from strongroom.config import Settings
from strongroom.runtime.signing_keys import ensure_signing_keys

KEK = "test-key-encryption-key"
OPERATOR = AuditActor("operator", "alice@ops")
REQUEST_ID = "req-0123456789"
SECRET_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
JWKS = '{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}'


# --- backends -------------------------------------------------------------------------


# --- helpers --------------------------------------------------------------------------


def entries(engine: Engine) -> list[dict[str, Any]]:
    """Every audit row, oldest first, with its JSON columns decoded."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(audit_entries).order_by(audit_entries.c.seq)).all()
    return [
        {
            **row._asdict(),
            "subject_ids": json.loads(row.subject_ids),
            "data": json.loads(row.data),
        }
        for row in rows
    ]


def raw_entries(engine: Engine) -> str:
    """The audit table's stored text, to search for material that must never be in it."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(audit_entries)).all()
    return "\n".join(repr(tuple(row)) for row in rows)


def only_entry(engine: Engine) -> dict[str, Any]:
    found = entries(engine)
    assert len(found) == 1, found
    return found[0]


def new_tenant(engine: Engine) -> str:
    tenant_id = str(uuid.uuid4())
    SqlTenantRepository(engine).create(tenant_id, "acme")
    return tenant_id


def client_record(tenant_id: str, **changes: Any) -> ClientRecord:
    record = ClientRecord(
        client_id="sr_" + uuid.uuid4().hex,
        tenant_id=tenant_id,
        name="payroll",
        secret_hash=SECRET_HASH,
        scopes=frozenset({"transfers:write", "accounts:read"}),
        status="active",
        dpop_required=True,
        is_operator=False,
        created_at=time.time(),
    )
    return dataclasses.replace(record, **changes)


def user_record(tenant_id: str) -> UserRecord:
    return UserRecord(
        user_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        username="jane.doe",
        password_hash=SECRET_HASH,
        is_operator=False,
        status="active",
        created_at=time.time(),
    )


def rotation(keys: list[SigningKey]) -> list[SigningKey]:
    return plan_rotation(
        keys, time.time(), publish_ahead_s=600, token_lifetime_s=300, alg="Ed25519"
    )


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- the shared writer ----------------------------------------------------------------


def test_every_written_entry_is_a_canonical_leaf(engine: Engine) -> None:
    tenant_id = str(uuid.uuid4())
    SqlTenantRepository(engine).create(tenant_id, "Zoë & Co", actor=OPERATOR)
    SqlClientRepository(engine).create(client_record(tenant_id))
    SqlKeyRepository(engine, KEK).rotate(rotation)
    for row in entries(engine):
        record = AuditRecord(
            event_type=row["event_type"],
            tenant_id=row["tenant_id"],
            actor_kind=row["actor_kind"],
            actor_id=row["actor_id"],
            request_id=row["request_id"],
            subject_ids=tuple(row["subject_ids"]),
            data=row["data"],
            occurred_at_us=row["occurred_at_us"],
        )
        assert parse_leaf(leaf_bytes(record)) == record


def test_an_entry_that_cannot_become_a_leaf_is_refused_before_the_insert(engine: Engine) -> None:
    with pytest.raises(AuditRecordError), engine.begin() as connection:
        record_event(
            connection,
            event_type="tenant.renamed",
            tenant_id=None,
            actor_kind="system",
            actor_id="strongroom",
            request_id=None,
            subject_ids=[],
            data={},
        )
    assert entries(engine) == []


# --- tenants --------------------------------------------------------------------------


def test_tenant_creation_writes_one_entry_naming_actor_request_and_tenant(engine: Engine) -> None:
    tenant_id = str(uuid.uuid4())
    SqlTenantRepository(engine).create(tenant_id, "acme", actor=OPERATOR, request_id=REQUEST_ID)
    entry = only_entry(engine)
    assert entry["event_type"] == "tenant.created"
    assert entry["tenant_id"] == tenant_id and entry["subject_ids"] == [tenant_id]
    assert (entry["actor_kind"], entry["actor_id"]) == ("operator", "alice@ops")
    assert entry["request_id"] == REQUEST_ID
    assert entry["data"] == {"name": "acme"}
    assert abs(entry["occurred_at_us"] / 1e6 - time.time()) < 60


def test_an_unattributed_change_is_recorded_as_strongroom_itself(engine: Engine) -> None:
    new_tenant(engine)
    entry = only_entry(engine)
    assert (entry["actor_kind"], entry["actor_id"]) == (SYSTEM_ACTOR.kind, SYSTEM_ACTOR.id)
    assert entry["request_id"] is None


def test_tenant_whose_entry_cannot_be_written_is_not_created(engine: Engine) -> None:
    tenant_id = str(uuid.uuid4())
    nobody = AuditActor("client", "")  # an entry needs an actor id: the insert fails
    with pytest.raises(AuditRecordError):
        SqlTenantRepository(engine).create(tenant_id, "acme", actor=nobody)
    assert SqlTenantRepository(engine).get(tenant_id) is None
    assert entries(engine) == []


def test_refused_tenant_creation_writes_no_entry(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    with pytest.raises(auth_repositories.AlreadyExists):
        SqlTenantRepository(engine).create(tenant_id, "again")
    assert [e["event_type"] for e in entries(engine)] == ["tenant.created"]


def test_tenant_status_changes_are_recorded_with_the_previous_status(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    admin = SqlTenantAdmin(engine)
    admin.set_status(tenant_id, "suspended", actor=OPERATOR, request_id=REQUEST_ID)
    admin.set_status(tenant_id, "active", actor=OPERATOR)
    admin.set_status(tenant_id, "closed", actor=OPERATOR)
    changes = entries(engine)[1:]
    assert [e["event_type"] for e in changes] == [
        "tenant.suspended",
        "tenant.reactivated",
        "tenant.closed",
    ]
    assert [e["data"] for e in changes] == [
        {"status": "suspended", "previous_status": "active"},
        {"status": "active", "previous_status": "suspended"},
        {"status": "closed", "previous_status": "active"},
    ]
    assert all(e["subject_ids"] == [tenant_id] and e["tenant_id"] == tenant_id for e in changes)
    assert changes[0]["request_id"] == REQUEST_ID


def test_repeating_a_tenant_status_writes_no_second_entry(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    admin = SqlTenantAdmin(engine)
    admin.set_status(tenant_id, "suspended")
    again = admin.set_status(tenant_id, "suspended")
    assert again is not None and again.status == "suspended"
    assert [e["event_type"] for e in entries(engine)] == ["tenant.created", "tenant.suspended"]


def test_status_of_a_missing_tenant_writes_no_entry(engine: Engine) -> None:
    assert SqlTenantAdmin(engine).set_status(str(uuid.uuid4()), "suspended") is None
    assert entries(engine) == []


def test_tenant_status_change_whose_entry_fails_is_undone(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    with pytest.raises(AuditRecordError):
        SqlTenantAdmin(engine).set_status(tenant_id, "suspended", actor=AuditActor("user", ""))
    stored = SqlTenantRepository(engine).get(tenant_id)
    assert stored is not None and stored.status == "active"
    assert len(entries(engine)) == 1


# --- OAuth clients --------------------------------------------------------------------


def test_client_creation_records_its_settings_and_no_secret(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    record = client_record(tenant_id)
    SqlClientRepository(engine).create(record, actor=OPERATOR, request_id=REQUEST_ID)
    entry = entries(engine)[-1]
    assert entry["event_type"] == "oauth_client.created"
    assert entry["tenant_id"] == tenant_id and entry["subject_ids"] == [record.client_id]
    assert (entry["actor_kind"], entry["request_id"]) == ("operator", REQUEST_ID)
    assert entry["data"] == {
        "name": "payroll",
        "scopes": ["accounts:read", "transfers:write"],
        "status": "active",
        "dpop_required": True,
        "is_operator": False,
        "auth_method": "client_secret",
    }
    assert "argon2" not in raw_entries(engine)


def test_key_registered_client_is_recorded_without_its_key_set(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    SqlClientRepository(engine).create(client_record(tenant_id, secret_hash=None, jwks=JWKS))
    assert entries(engine)[-1]["data"]["auth_method"] == "private_key_jwt"
    assert "11qYAYKx" not in raw_entries(engine)


def test_provisioned_client_entry_never_holds_the_plain_secret(engine: Engine) -> None:
    from strongroom.auth.secrets import SecretHasher  # noqa: PLC0415 - argon2 only here

    tenant_id = new_tenant(engine)
    hasher = SecretHasher(time_cost=1, memory_kib=8, parallelism=1)
    record, secret = create_client(
        SqlTenantRepository(engine),
        SqlClientRepository(engine),
        hasher,
        tenant_id=tenant_id,
        name="app",
        scopes=["accounts:read"],
    )
    stored = raw_entries(engine)
    assert secret not in stored and record.secret_hash is not None
    assert record.secret_hash not in stored


def test_app_client_creation_records_type_and_redirect_uris(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    record = client_record(tenant_id, secret_hash=None, dpop_required=False)
    uris = ("https://app.example/cb", "https://app.example/a")
    SqlAppClientRepository(engine).create(record, "public", uris, actor=OPERATOR)
    entry = entries(engine)[-1]
    assert entry["event_type"] == "oauth_client.created"
    assert entry["subject_ids"] == [record.client_id]
    assert entry["data"]["client_type"] == "public"
    assert entry["data"]["redirect_uris"] == sorted(uris)
    assert entry["data"]["auth_method"] == "none"


def test_client_whose_entry_cannot_be_written_is_not_created(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    record = client_record(tenant_id)
    with pytest.raises(AuditRecordError):
        SqlClientRepository(engine).create(record, actor=AuditActor("client", ""))
    assert SqlClientRepository(engine).get(record.client_id) is None
    assert len(entries(engine)) == 1


def test_client_for_a_missing_tenant_writes_no_entry(engine: Engine) -> None:
    with pytest.raises(auth_repositories.NotFound):
        SqlClientRepository(engine).create(client_record(str(uuid.uuid4())))
    assert entries(engine) == []


def test_client_suspension_and_reactivation_are_recorded_once_each(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    record = client_record(tenant_id)
    SqlClientRepository(engine).create(record)
    store = SqlRevocationStore(engine)
    store.suspend_client(record.client_id, reason="leaked", actor=OPERATOR, request_id=REQUEST_ID)
    store.suspend_client(record.client_id, reason="leaked again")
    SqlClientRepository(engine).set_status(record.client_id, "active", actor=OPERATOR)
    changes = entries(engine)[2:]
    assert [e["event_type"] for e in changes] == [
        "oauth_client.suspended",
        "oauth_client.reactivated",
    ]
    suspended = changes[0]
    assert suspended["tenant_id"] == tenant_id
    assert suspended["subject_ids"] == [record.client_id]
    assert (suspended["actor_id"], suspended["request_id"]) == ("alice@ops", REQUEST_ID)
    assert suspended["data"] == {"reason": "leaked"}


def test_suspension_of_a_client_in_another_tenant_writes_no_entry(engine: Engine) -> None:
    record = client_record(new_tenant(engine))
    SqlClientRepository(engine).create(record)
    with pytest.raises(auth_repositories.NotFound):
        SqlRevocationStore(engine).suspend_client(
            record.client_id, reason="x", tenant_id=new_tenant(engine)
        )
    assert "oauth_client.suspended" not in {e["event_type"] for e in entries(engine)}


def test_suspension_failing_after_its_entry_rolls_the_entry_back(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = client_record(new_tenant(engine))
    SqlClientRepository(engine).create(record)

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("deny-list event lost")

    # The deny-list event is written after the audit entry, in the same transaction.
    monkeypatch.setattr(auth_repositories, "_emit_deny_event", broken)
    with pytest.raises(RuntimeError):
        SqlRevocationStore(engine).suspend_client(record.client_id, reason="leaked")
    stored = SqlClientRepository(engine).get(record.client_id)
    assert stored is not None and stored.status == "active"
    assert [e["event_type"] for e in entries(engine)] == ["tenant.created", "oauth_client.created"]


# --- users ----------------------------------------------------------------------------


def test_user_creation_is_recorded_without_username_or_password_hash(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    user = user_record(tenant_id)
    SqlUserRepository(engine).create(user, actor=OPERATOR, request_id=REQUEST_ID)
    entry = entries(engine)[-1]
    assert entry["event_type"] == "user.created"
    assert entry["subject_ids"] == [user.user_id] and entry["tenant_id"] == tenant_id
    assert entry["data"] == {"is_operator": False, "status": "active"}
    stored = raw_entries(engine)
    assert "jane.doe" not in stored and "argon2" not in stored


def test_user_status_changes_are_recorded_once_each(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    user = user_record(tenant_id)
    users = SqlUserRepository(engine)
    users.create(user)
    assert users.set_status(tenant_id, user.user_id, "disabled", actor=OPERATOR)
    assert users.set_status(tenant_id, user.user_id, "disabled")
    assert users.set_status(tenant_id, user.user_id, "active")
    assert not users.set_status(new_tenant(engine), user.user_id, "disabled")
    changes = [e for e in entries(engine) if e["event_type"].startswith("user.")]
    assert [e["event_type"] for e in changes] == [
        "user.created",
        "user.disabled",
        "user.reactivated",
    ]
    assert changes[1]["data"] == {"status": "disabled", "previous_status": "active"}
    assert changes[1]["actor_id"] == "alice@ops"


def test_user_whose_entry_cannot_be_written_is_not_created(engine: Engine) -> None:
    tenant_id = new_tenant(engine)
    user = user_record(tenant_id)
    with pytest.raises(AuditRecordError):
        SqlUserRepository(engine).create(user, actor=AuditActor("user", ""))
    assert SqlUserRepository(engine).get(tenant_id, user.user_id) is None


# --- signing keys ---------------------------------------------------------------------


def test_key_rotation_records_kids_and_states_never_key_material(engine: Engine) -> None:
    keys = SqlKeyRepository(engine, KEK)
    first = keys.rotate(rotation, actor=OPERATOR, request_id=REQUEST_ID)
    entry = only_entry(engine)
    assert entry["event_type"] == "signing_key.rotated"
    assert entry["tenant_id"] is None
    assert (entry["actor_id"], entry["request_id"]) == ("alice@ops", REQUEST_ID)
    kids = sorted(k.kid for k in first)
    assert entry["subject_ids"] == kids
    assert entry["data"]["added"] == kids and entry["data"]["removed"] == []
    assert entry["data"]["keys"] == [
        {"kid": k.kid, "alg": k.alg, "state": k.state} for k in sorted(first, key=lambda k: k.kid)
    ]
    stored = raw_entries(engine)
    assert "PRIVATE KEY" not in stored
    assert all(k.private_pem.decode()[40:80] not in stored for k in first)
    with engine.connect() as connection:
        sealed = connection.execute(sa.select(signing_keys.c.private_key_enc)).scalars().all()
    assert all(bytes(blob).hex()[:32] not in stored for blob in sealed)


def test_a_rotation_that_changes_nothing_writes_no_entry(engine: Engine) -> None:
    keys = SqlKeyRepository(engine, KEK)
    current = keys.rotate(rotation)
    keys.replace(current)
    keys.rotate(lambda loaded: loaded)
    assert len(entries(engine)) == 1


def test_a_promotion_names_only_the_keys_whose_state_changed(engine: Engine) -> None:
    keys = SqlKeyRepository(engine, KEK)
    first = keys.rotate(rotation)
    promoted = [
        dataclasses.replace(k, state="active" if k.state == "next" else "retired") for k in first
    ]
    keys.replace(promoted)
    entry = entries(engine)[-1]
    assert entry["subject_ids"] == sorted(k.kid for k in first)
    assert entry["data"]["added"] == [] and entry["data"]["removed"] == []
    keys.replace([k for k in promoted if k.state == "active"])
    removed = entries(engine)[-1]
    assert removed["data"]["removed"] == [k.kid for k in promoted if k.state == "retired"]
    assert removed["subject_ids"] == removed["data"]["removed"]


def test_a_key_set_that_cannot_be_stored_writes_no_entry(engine: Engine) -> None:
    keys = SqlKeyRepository(engine, KEK)
    with pytest.raises(ValueError, match="duplicate kid"):
        keys.rotate(lambda loaded: rotation(loaded) * 2)
    assert entries(engine) == []
    assert count(engine, signing_keys) == 0


# --- through the API: the principal and the request id reach the entry ----------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(settings: Settings, engine: Engine) -> Iterator[FastAPI]:
    ensure_signing_keys(settings)
    app = create_app(settings, zone="a", pod_name="pod-0")
    yield app
    app.state.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 41000))
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        yield http


def provisioned(app: FastAPI, name: str, scopes: list[str], *, operator: bool) -> dict[str, str]:
    auth = app.state.auth
    tenant_id = create_tenant(auth.tenants, name)
    record, secret = create_client(
        auth.tenants,
        auth.clients,
        auth.hasher,
        tenant_id=tenant_id,
        name=f"{name}-app",
        scopes=scopes,
        operator=operator,
    )
    return {"tenant": tenant_id, "client_id": record.client_id, "secret": secret}


async def bearer(client: httpx.AsyncClient, who: dict[str, str]) -> dict[str, str]:
    r = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(who["client_id"], who["secret"]),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def since(engine: Engine, seq: int) -> list[dict[str, Any]]:
    return [e for e in entries(engine) if e["seq"] > seq]


def last_seq(engine: Engine) -> int:
    return max((e["seq"] for e in entries(engine)), default=0)


@pytest.mark.anyio
async def test_operator_tenant_creation_names_the_operator_client_and_request(
    app: FastAPI, client: httpx.AsyncClient, engine: Engine
) -> None:
    ops = provisioned(app, "ops", ["tenants:admin"], operator=True)
    headers = await bearer(client, ops)
    mark = last_seq(engine)
    r = await client.post("/v1/tenants", json={"name": "gamma"}, headers=headers)
    assert r.status_code == 201
    (entry,) = since(engine, mark)
    assert entry["event_type"] == "tenant.created"
    assert entry["subject_ids"] == [r.json()["tenant_id"]]
    assert (entry["actor_kind"], entry["actor_id"]) == ("client", ops["client_id"])
    assert entry["request_id"] == r.headers["x-request-id"]


@pytest.mark.anyio
async def test_tenant_suspension_records_the_tenant_and_each_client_under_one_request(
    app: FastAPI, client: httpx.AsyncClient, engine: Engine
) -> None:
    ops = provisioned(app, "ops", ["tenants:admin"], operator=True)
    alpha = provisioned(app, "alpha", ["clients:read"], operator=False)
    headers = await bearer(client, ops)
    mark = last_seq(engine)
    r = await client.post(f"/v1/tenants/{alpha['tenant']}/suspend", headers=headers)
    assert r.status_code == 200, r.text
    made = since(engine, mark)
    assert [(e["event_type"], e["subject_ids"]) for e in made] == [
        ("tenant.suspended", [alpha["tenant"]]),
        ("oauth_client.suspended", [alpha["client_id"]]),
    ]
    assert {(e["actor_id"], e["request_id"]) for e in made} == {
        (ops["client_id"], r.headers["x-request-id"])
    }
    again = await client.post(f"/v1/tenants/{alpha['tenant']}/suspend", headers=headers)
    assert again.status_code == 200
    assert len(since(engine, mark)) == 2


@pytest.mark.anyio
async def test_client_suspension_through_the_api_names_the_calling_client(
    app: FastAPI, client: httpx.AsyncClient, engine: Engine
) -> None:
    admin = provisioned(app, "beta", ["clients:read", "clients:write"], operator=False)
    auth = app.state.auth
    victim, _ = create_client(
        auth.tenants,
        auth.clients,
        auth.hasher,
        tenant_id=admin["tenant"],
        name="victim",
        scopes=["clients:read"],
    )
    headers = await bearer(client, admin)
    mark = last_seq(engine)
    r = await client.post(f"/v1/clients/{victim.client_id}/suspend", headers=headers)
    assert r.status_code == 200, r.text
    (entry,) = since(engine, mark)
    assert entry["event_type"] == "oauth_client.suspended"
    assert entry["tenant_id"] == admin["tenant"]
    assert (entry["actor_kind"], entry["actor_id"]) == ("client", admin["client_id"])
    assert entry["request_id"] == r.headers["x-request-id"]
    with engine.connect() as connection:
        status = connection.execute(
            sa.select(oauth_clients.c.status).where(oauth_clients.c.client_id == victim.client_id)
        ).scalar_one()
    assert status == "suspended"
