"""The login + consent page in-process: security events and CSRF binding."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from strongroom.adapters.db.auth_repositories import SqlTenantRepository
from strongroom.adapters.db.user_repositories import UserStores
from strongroom.auth.app_clients import create_app_client
from strongroom.auth.rfc7636_pkce import s256_challenge
from strongroom.auth.users import create_user
from strongroom.config import Settings

pytestmark = pytest.mark.anyio

REDIRECT = "https://app.example/cb"


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, str]:
    engine = app.state.engine
    stores = UserStores.for_engine(engine)
    tenants = SqlTenantRepository(engine)
    tenant = str(uuid.uuid4())
    tenants.create(tenant, "wallets")
    hasher = app.state.auth.hasher
    client, _ = create_app_client(
        tenants,
        stores.app_clients,
        hasher,
        tenant_id=tenant,
        name="Wallet",
        scopes=["accounts:read"],
        redirect_uris=[REDIRECT],
        public=True,
    )
    create_user(
        tenants,
        stores.users,
        hasher,
        tenant_id=tenant,
        username="alice",
        password="a long password",
    )
    return {"tenant": tenant, "client_id": client.record.client_id}


def params(world: dict[str, str]) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": world["client_id"],
        "redirect_uri": REDIRECT,
        "code_challenge": s256_challenge("v" * 43),
        "code_challenge_method": "S256",
    }


async def form_and_cookie(
    client: httpx.AsyncClient, world: dict[str, str]
) -> tuple[dict[str, str], str]:
    page = await client.get("/oauth2/authorize", params=params(world))
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].split(";", 1)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    return fields, cookie


async def test_failed_login_is_logged_as_a_security_event(client, world) -> None:
    fields, cookie = await form_and_cookie(client, world)
    with capture_logs() as logs:
        r = await client.post(
            "/oauth2/authorize",
            data={
                **fields,
                "username": "alice",
                "password": "not the password",
                "action": "approve",
            },
            headers={"Cookie": cookie},
        )
    assert r.status_code == 200 and "Wrong username or password." in r.text
    events = [e for e in logs if e["event"] == "auth.login_failed"]
    assert len(events) == 1
    assert events[0]["reason"] == "bad_password"
    assert events[0]["tenant"] == world["tenant"] and events[0]["user"] == "alice"
    assert events[0]["ip"]


async def test_unknown_user_is_logged_with_its_own_reason(client, world) -> None:
    fields, cookie = await form_and_cookie(client, world)
    with capture_logs() as logs:
        await client.post(
            "/oauth2/authorize",
            data={
                **fields,
                "username": "bob",
                "password": "whatever password",
                "action": "approve",
            },
            headers={"Cookie": cookie},
        )
    assert [e["reason"] for e in logs if e["event"] == "auth.login_failed"] == ["unknown_user"]


async def test_csrf_token_from_another_cookie_is_refused(client, world) -> None:
    fields, _ = await form_and_cookie(client, world)
    _, other_cookie = await form_and_cookie(client, world)
    r = await client.post(
        "/oauth2/authorize",
        data={**fields, "username": "alice", "password": "a long password", "action": "approve"},
        headers={"Cookie": other_cookie},
    )
    assert r.status_code == 403


async def test_tampered_hidden_redirect_uri_is_not_followed(client, world) -> None:
    fields, cookie = await form_and_cookie(client, world)
    fields["redirect_uri"] = "https://evil.example/cb"
    r = await client.post(
        "/oauth2/authorize",
        data={**fields, "username": "alice", "password": "a long password", "action": "approve"},
        headers={"Cookie": cookie},
    )
    assert r.status_code == 400 and "location" not in r.headers


async def test_successful_login_redirects_with_code_state_and_iss(client, world, app) -> None:
    fields, cookie = await form_and_cookie(client, world)
    r = await client.post(
        "/oauth2/authorize",
        data={**fields, "username": "ALICE", "password": "a long password", "action": "approve"},
        headers={"Cookie": cookie},
    )
    assert r.status_code == 303
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?code=src_")
    assert "iss=" in location and r.headers["cache-control"] == "no-store"
