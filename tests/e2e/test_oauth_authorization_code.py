"""Authorization code + PKCE, refresh-token rotation and the login page, through the TLS
edge against a real `strongroom up` (two pods)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.e2e.platform_harness import Platform, pod_urls, pods_still_accepting, running_platform

pytestmark = pytest.mark.slow

REDIRECT = "https://app.example/callback"
PASSWORD = "correct horse battery staple"
# Short, so the reuse tests need not wait 2 s; long enough for one retry over loopback.
GRACE_S = 1.0


def cli(platform: Platform, *args: str, stdin: str | None = None) -> Any:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            *args,
            "--data-dir",
            str(platform.data_dir),
            "--json",
        ],
        capture_output=True,
        check=True,
        timeout=60,
        input=stdin.encode() if stdin is not None else None,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with running_platform(
        tmp_path_factory.mktemp("authcode"),
        pods=2,
        extra_env={"STRONGROOM_AUTH__REFRESH_REUSE_GRACE_S": str(GRACE_S)},
    ) as p:
        yield p


@pytest.fixture(scope="module")
def world(platform: Platform) -> dict[str, Any]:
    tenant = cli(platform, "tenant", "create", "wallets")["tenant_id"]
    other = cli(platform, "tenant", "create", "other")["tenant_id"]
    user = cli(
        platform,
        "user",
        "create",
        "--tenant",
        tenant,
        "--username",
        "Alice",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    cli(
        platform,
        "user",
        "create",
        "--tenant",
        other,
        "--username",
        "mallory",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    common = [
        "--tenant",
        tenant,
        "--redirect-uri",
        REDIRECT,
        "--scopes",
        "accounts:read clients:read",
    ]
    confidential = cli(platform, "client", "register-app", "--name", "Wallet Web", *common)
    public = cli(platform, "client", "register-app", "--name", "Wallet App", "--public", *common)
    return {"tenant": tenant, "user": user, "confidential": confidential, "public": public}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(client: dict[str, Any], challenge: str | None, **over: str | None) -> dict:
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": REDIRECT,
        "scope": "accounts:read",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(over)
    return {k: v for k, v in params.items() if v is not None}


def hidden_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


def login(
    c: httpx.Client,
    client: dict[str, Any],
    challenge: str,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    action: str = "approve",
) -> httpx.Response:
    page = c.get("/oauth2/authorize", params=authorize_params(client, challenge))
    assert page.status_code == 200, page.text
    form = {**hidden_fields(page.text), "username": username, "password": password}
    form["action"] = action
    return c.post("/oauth2/authorize", data=form)


def redirect_query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(c: httpx.Client, client: dict[str, Any]) -> tuple[str, str]:
    verifier, challenge = pkce()
    return redirect_query(login(c, client, challenge))["code"], verifier


def exchange(
    c: httpx.Client, client: dict[str, Any], code: str, verifier: str | None, **extra: str
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    if client["client_secret"] is None:
        return c.post("/oauth2/token", data={**form, "client_id": client["client_id"]})
    return c.post("/oauth2/token", data=form, auth=(client["client_id"], client["client_secret"]))


def refresh(c: httpx.Client, client: dict[str, Any], token: str) -> httpx.Response:
    return c.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": token},
        auth=(client["client_id"], client["client_secret"]),
    )


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def refused_everywhere_within_1_s(platform: Platform, access_token: str) -> bool:
    headers = {"Authorization": f"Bearer {access_token}"}
    return not pods_still_accepting(platform, headers, time.monotonic())


# --- the login page ---------------------------------------------------------------------


def test_login_page_is_uncacheable_unframeable_and_sets_a_host_csrf_cookie(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        r = c.get("/oauth2/authorize", params=authorize_params(world["confidential"], challenge))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-strongroom-csrf=")
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"))
    assert "Wallet Web" in r.text and "accounts:read" in r.text and "<script" not in r.text


def test_unregistered_redirect_uri_is_an_error_page_never_a_redirect(platform, world) -> None:
    _, challenge = pkce()
    params = authorize_params(
        world["confidential"], challenge, redirect_uri="https://evil.example/callback"
    )
    with platform.client() as c:
        r = c.get("/oauth2/authorize", params=params)
    assert r.status_code == 400 and "location" not in r.headers
    assert "evil.example" not in r.text


def test_unknown_client_is_an_error_page_never_a_redirect(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        r = c.get(
            "/oauth2/authorize",
            params=authorize_params({"client_id": "sr_nobody"}, challenge),
        )
    assert r.status_code == 400 and "location" not in r.headers


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "no:such"}, "invalid_scope"),
    ],
)
def test_bad_authorization_requests_redirect_with_error_state_and_iss(
    platform, world, over, error
) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        meta = c.get("/.well-known/oauth-authorization-server").json()
        r = c.get("/oauth2/authorize", params=authorize_params(world["public"], challenge, **over))
    query = redirect_query(r)
    assert query["error"] == error
    assert query["state"] == "st-123" and query["iss"] == meta["issuer"]


def test_wrong_password_shows_the_form_again_without_redirecting(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        r = login(c, world["confidential"], challenge, password="wrong password!!")
    assert r.status_code == 200 and "location" not in r.headers
    assert "Wrong username or password." in r.text


def test_users_of_another_tenant_cannot_log_in_through_this_tenants_client(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        r = login(c, world["confidential"], challenge, username="mallory")
    assert r.status_code == 200 and "Wrong username or password." in r.text


def test_form_post_without_the_csrf_cookie_is_refused(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        page = c.get("/oauth2/authorize", params=authorize_params(world["confidential"], challenge))
        fields = {**hidden_fields(page.text), "username": "alice", "password": PASSWORD}
    with platform.client() as fresh:  # another browser: no cookie
        r = fresh.post("/oauth2/authorize", data={**fields, "action": "approve"})
    assert r.status_code == 403 and "location" not in r.headers


def test_deny_redirects_access_denied(platform, world) -> None:
    _, challenge = pkce()
    with platform.client() as c:
        r = login(c, world["confidential"], challenge, action="deny")
    assert redirect_query(r)["error"] == "access_denied"


# --- the code exchange ------------------------------------------------------------------


def test_code_flow_issues_user_tokens_and_the_response_carries_iss(platform, world) -> None:
    client = world["confidential"]
    verifier, challenge = pkce()
    with platform.client() as c:
        issuer = c.get("/.well-known/oauth-authorization-server").json()["issuer"]
        query = redirect_query(login(c, client, challenge))
        r = exchange(c, client, query["code"], verifier)
        body = r.json()
        listed = c.get("/v1/clients", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert query["iss"] == issuer and query["state"] == "st-123"
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["scope"] == "accounts:read"
    assert body["refresh_token"].startswith("srt_")
    got = claims(body["access_token"])
    assert got["sub"] == world["user"]["user_id"]
    assert got["client_id"] == client["client_id"] and got["tenant"] == world["tenant"]
    assert listed.status_code == 403  # accounts:read only: least privilege holds


def test_public_client_exchanges_its_code_without_a_secret(platform, world) -> None:
    with platform.client() as c:
        code, verifier = get_code(c, world["public"])
        r = exchange(c, world["public"], code, verifier)
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["client_id"] == world["public"]["client_id"]


def test_wrong_code_verifier_is_invalid_grant(platform, world) -> None:
    with platform.client() as c:
        code, _ = get_code(c, world["public"])
        r = exchange(c, world["public"], code, pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_missing_code_verifier_is_invalid_request(platform, world) -> None:
    with platform.client() as c:
        code, _ = get_code(c, world["public"])
        r = exchange(c, world["public"], code, None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_redirect_uri_mismatch_at_the_token_endpoint_is_invalid_grant(platform, world) -> None:
    with platform.client() as c:
        code, verifier = get_code(c, world["public"])
        r = exchange(c, world["public"], code, verifier, redirect_uri="https://app.example/other")
    assert r.json()["error"] == "invalid_grant"


def test_code_of_one_client_is_refused_to_another(platform, world) -> None:
    with platform.client() as c:
        code, verifier = get_code(c, world["public"])
        r = exchange(c, world["confidential"], code, verifier)
    assert r.json()["error"] == "invalid_grant"


def test_confidential_client_without_its_secret_is_invalid_client(platform, world) -> None:
    client = dict(world["confidential"], client_secret=None)
    with platform.client() as c:
        code, verifier = get_code(c, world["confidential"])
        r = exchange(c, client, code, verifier)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_reused_code_is_refused_and_its_tokens_are_revoked_on_every_pod(platform, world) -> None:
    client = world["confidential"]
    with platform.client() as c:
        code, verifier = get_code(c, client)
        first = exchange(c, client, code, verifier).json()
        headers = {"Authorization": f"Bearer {first['access_token']}"}
        assert all(
            httpx.get(f"{u}/v1/clients", headers=headers).status_code == 403
            for u in pod_urls(platform)
        )
        again = exchange(c, client, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        assert refused_everywhere_within_1_s(platform, first["access_token"])
        r = refresh(c, client, first["refresh_token"])
    assert r.json()["error"] == "invalid_grant"


# --- refresh tokens ---------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token_every_time(platform, world) -> None:
    client = world["confidential"]
    with platform.client() as c:
        code, verifier = get_code(c, client)
        first = exchange(c, client, code, verifier).json()
        second = refresh(c, client, first["refresh_token"]).json()
        third = refresh(c, client, second["refresh_token"]).json()
    tokens = {first["refresh_token"], second["refresh_token"], third["refresh_token"]}
    assert len(tokens) == 3
    assert claims(third["access_token"])["sub"] == world["user"]["user_id"]


def test_retry_within_the_grace_window_returns_the_same_pair(platform, world) -> None:
    client = world["confidential"]
    with platform.client() as c:
        code, verifier = get_code(c, client)
        first = exchange(c, client, code, verifier).json()
        rotated = refresh(c, client, first["refresh_token"]).json()
        retried = refresh(c, client, first["refresh_token"]).json()
        onward = refresh(c, client, rotated["refresh_token"])
    assert retried["refresh_token"] == rotated["refresh_token"]
    assert claims(retried["access_token"])["jti"] == claims(rotated["access_token"])["jti"]
    assert onward.status_code == 200


def test_reused_refresh_token_revokes_the_whole_family(platform, world) -> None:
    client = world["confidential"]
    with platform.client() as c:
        code, verifier = get_code(c, client)
        first = exchange(c, client, code, verifier).json()
        second = refresh(c, client, first["refresh_token"]).json()
        time.sleep(GRACE_S + 0.2)
        reuse = refresh(c, client, first["refresh_token"])
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        assert refused_everywhere_within_1_s(platform, second["access_token"])
        assert refused_everywhere_within_1_s(platform, first["access_token"])
        head = refresh(c, client, second["refresh_token"])
    assert head.json()["error"] == "invalid_grant"


def test_refresh_token_of_another_client_is_invalid_grant(platform, world) -> None:
    with platform.client() as c:
        code, verifier = get_code(c, world["confidential"])
        first = exchange(c, world["confidential"], code, verifier).json()
        r = c.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "client_id": world["public"]["client_id"],
            },
        )
    assert r.json()["error"] == "invalid_grant"
