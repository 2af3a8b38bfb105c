"""OAuth 2.0 through the TLS edge against a real `strongroom up` (two pods).

Covers the client_credentials grant, RFC 6749 error responses, RFC 8414 metadata, JWKS,
RFC 7662 introspection, RFC 7009 revocation reaching every pod within a second, client
suspension, scope enforcement and tenant isolation (OWASP API1/API2/API3/API5).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from strongroom.adapters.db.auth_repositories import SqlKeyRepository
from strongroom.adapters.db.engine import make_engine
from strongroom.auth.keys import KeyRing
from strongroom.auth.rfc9068_access_token import issue_access_token
from strongroom.config import Settings
from tests.e2e.platform_harness import Platform, pod_urls, pods_still_accepting, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with running_platform(tmp_path_factory.mktemp("oauth"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def tenants(platform: Platform) -> dict[str, dict[str, Any]]:
    made = {}
    for name in ("alpha", "beta"):
        tenant = platform.cli("tenant", "create", name)["tenant_id"]
        client = platform.cli(
            "client",
            "create",
            "--tenant",
            tenant,
            "--scopes",
            "clients:read clients:write accounts:read",
            "--name",
            f"{name}-app",
        )
        reader = platform.cli(
            "client",
            "create",
            "--tenant",
            tenant,
            "--scopes",
            "accounts:read",
            "--name",
            f"{name}-reader",
        )
        made[name] = {"tenant": tenant, "client": client, "reader": reader}
    return made


def token(c: httpx.Client, client: dict[str, Any], **form: str) -> httpx.Response:
    return c.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client["client_id"], client["client_secret"]),
    )


def bearer(c: httpx.Client, client: dict[str, Any], **form: str) -> dict[str, str]:
    r = token(c, client, **form)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_metadata_and_jwks_are_published(platform: Platform) -> None:
    with platform.client() as c:
        meta = c.get("/.well-known/oauth-authorization-server").json()
        jwks = c.get("/oauth2/jwks").json()
    assert meta["issuer"] == f"https://localhost:{platform.port}" or meta["issuer"].startswith(
        "https://"
    )
    assert meta["token_endpoint"].endswith("/oauth2/token")
    assert "client_credentials" in meta["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        meta["token_endpoint_auth_methods_supported"]
    )
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])
    assert {k["alg"] for k in jwks["keys"]} <= {"Ed25519", "ES256"}


def test_client_credentials_basic_and_post_issue_rfc9068_tokens(platform, tenants) -> None:
    client = tenants["alpha"]["client"]
    with platform.client() as c:
        basic = token(c, client, scope="accounts:read")
        post = c.post(
            "/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        )
    for r in (basic, post):
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert basic.json()["scope"] == "accounts:read"
    head_b64, claims_b64, _ = basic.json()["access_token"].split(".")
    header = json.loads(base64.urlsafe_b64decode(head_b64 + "=" * (-len(head_b64) % 4)))
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    assert header["typ"] == "at+jwt" and header["alg"] in ("Ed25519", "ES256") and header["kid"]
    assert {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
        "tenant",
    } <= claims.keys()
    assert (
        claims["client_id"] == client["client_id"]
        and claims["tenant"] == tenants["alpha"]["tenant"]
    )


def test_wrong_secret_is_401_invalid_client_with_challenge(platform, tenants) -> None:
    client = dict(tenants["alpha"]["client"], client_secret="wrong")
    with platform.client() as c:
        r = token(c, client)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].lower().startswith("basic")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "admin"}, "invalid_scope"),
        ({"grant_type": "client_credentials", "scope": "no:such"}, "invalid_scope"),
    ],
)
def test_token_endpoint_errors_follow_rfc6749(platform, tenants, form, error) -> None:
    client = tenants["alpha"]["client"]
    with platform.client() as c:
        r = c.post("/oauth2/token", data=form, auth=(client["client_id"], client["client_secret"]))
    assert r.status_code == 400
    assert r.json()["error"] == error
    assert r.headers["cache-control"] == "no-store"


def test_repeated_parameter_is_invalid_request(platform, tenants) -> None:
    client = tenants["alpha"]["client"]
    with platform.client() as c:
        r = c.post(
            "/oauth2/token",
            content=b"grant_type=client_credentials&grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            auth=(client["client_id"], client["client_secret"]),
        )
    assert r.json()["error"] == "invalid_request"


def test_v1_needs_a_token_and_the_exact_scope(platform, tenants) -> None:
    with platform.client() as c:
        missing = c.get("/v1/clients")
        reader = c.get("/v1/clients", headers=bearer(c, tenants["alpha"]["reader"]))
        ok = c.get("/v1/clients", headers=bearer(c, tenants["alpha"]["client"]))
        garbage = c.get("/v1/clients", headers={"Authorization": "Bearer not.a.jwt"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["content-type"] == "application/problem+json"
    assert (
        garbage.status_code == 401
        and 'error="invalid_token"' in garbage.headers["www-authenticate"]
    )
    assert reader.status_code == 403 and "insufficient_scope" in reader.headers["www-authenticate"]
    assert ok.status_code == 200


def test_tenant_isolation_other_tenants_clients_are_404(platform, tenants) -> None:
    alpha, beta = tenants["alpha"], tenants["beta"]
    with platform.client() as c:
        headers = bearer(c, beta["client"])
        listed = c.get("/v1/clients", headers=headers).json()["clients"]
        foreign = c.get(f"/v1/clients/{alpha['client']['client_id']}", headers=headers)
        foreign_suspend = c.post(
            f"/v1/clients/{alpha['reader']['client_id']}/suspend", headers=headers
        )
        own = c.get(f"/v1/clients/{beta['reader']['client_id']}", headers=headers)
    assert {x["client_id"] for x in listed} == {
        beta["client"]["client_id"],
        beta["reader"]["client_id"],
    }
    assert foreign.status_code == 404 and foreign_suspend.status_code == 404
    assert own.status_code == 200
    assert "secret" not in own.text and "hash" not in own.text  # property-level (API3)


def test_forged_expired_and_wrong_audience_tokens_are_refused(platform, tenants) -> None:
    settings = Settings.model_validate_json(
        (platform.data_dir / "run" / "settings.json").read_text()
    )
    engine = make_engine(settings)
    keys = SqlKeyRepository(engine, settings.secrets.key_encryption_key.get_secret_value()).load()
    engine.dispose()
    key = KeyRing(keys, time.time()).signing_key
    client = tenants["alpha"]["client"]
    common = dict(
        issuer=settings.issuer,
        subject=client["client_id"],
        client_id=client["client_id"],
        tenant=tenants["alpha"]["tenant"],
        scope=frozenset({"clients:read"}),
    )
    good, _ = issue_access_token(
        key, audience=settings.auth.audience, lifetime_s=300, now=time.time(), **common
    )
    expired, _ = issue_access_token(
        key, audience=settings.auth.audience, lifetime_s=60, now=time.time() - 3600, **common
    )
    wrong_aud, _ = issue_access_token(
        key, audience="https://elsewhere", lifetime_s=300, now=time.time(), **common
    )
    head, payload, sig = good.split(".")
    tampered = ".".join([head, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), sig])
    with platform.client() as c:
        assert c.get("/v1/clients", headers={"Authorization": f"Bearer {good}"}).status_code == 200
        for bad in (expired, wrong_aud, tampered):
            r = c.get("/v1/clients", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, bad


def test_revoked_token_is_refused_by_every_pod_within_1_s(platform, tenants) -> None:
    client = tenants["alpha"]["client"]
    with platform.client() as c:
        headers = bearer(c, client)
        live = c.post(
            "/oauth2/introspect",
            data={"token": headers["Authorization"][7:]},
            auth=(client["client_id"], client["client_secret"]),
        ).json()
        assert live["active"] is True and live["tenant"] == tenants["alpha"]["tenant"]
        for url in pod_urls(platform):
            assert httpx.get(f"{url}/v1/clients", headers=headers).status_code == 200
        revoked = c.post(
            "/oauth2/revoke",
            data={"token": headers["Authorization"][7:]},
            auth=(client["client_id"], client["client_secret"]),
        )
        assert revoked.status_code == 200
        pending = pods_still_accepting(platform, headers, time.monotonic())
        after = c.post(
            "/oauth2/introspect",
            data={"token": headers["Authorization"][7:]},
            auth=(client["client_id"], client["client_secret"]),
        ).json()
    assert not pending, f"pods still accepting 1 s after the revocation: {pending}"
    assert after == {"active": False}


def test_introspection_at_any_pod_sees_a_revocation_made_at_another_at_once(
    platform, tenants
) -> None:
    """RFC 7662 answers are the truth, not a view one deny-list poll old."""
    client = tenants["alpha"]["client"]
    auth = (client["client_id"], client["client_secret"])
    first, *others = pod_urls(platform)
    assert others, "needs two pods"
    with platform.client() as c:
        value = bearer(c, client)["Authorization"][7:]
    revoked = httpx.post(f"{first}/oauth2/revoke", data={"token": value}, auth=auth)
    assert revoked.status_code == 200
    answers = [
        httpx.post(f"{url}/oauth2/introspect", data={"token": value}, auth=auth).json()
        for url in others
    ]
    assert answers == [{"active": False}] * len(others)


def test_revocation_of_unknown_token_is_200(platform, tenants) -> None:
    client = tenants["alpha"]["client"]
    with platform.client() as c:
        r = c.post(
            "/oauth2/revoke",
            data={"token": "never-issued"},
            auth=(client["client_id"], client["client_secret"]),
        )
    assert r.status_code == 200


def test_introspection_hides_other_tenants_tokens(platform, tenants) -> None:
    with platform.client() as c:
        beta_token = bearer(c, tenants["beta"]["client"])["Authorization"][7:]
        alpha = tenants["alpha"]["client"]
        r = c.post(
            "/oauth2/introspect",
            data={"token": beta_token},
            auth=(alpha["client_id"], alpha["client_secret"]),
        )
    assert r.json() == {"active": False}


def test_suspended_client_is_refused_everywhere_within_1_s(platform, tenants) -> None:
    reader = tenants["beta"]["reader"]
    with platform.client() as c:
        headers = bearer(c, tenants["beta"]["client"])
        reader_headers = bearer(c, reader)
        suspended = c.post(f"/v1/clients/{reader['client_id']}/suspend", headers=headers)
        assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
        pending = pods_still_accepting(platform, reader_headers, time.monotonic())
        again = token(c, reader)
    assert not pending
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
