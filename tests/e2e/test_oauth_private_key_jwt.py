"""private_key_jwt client authentication (RFC 7523 §2.2, §3) through the TLS edge against a
real `strongroom up` (two pods).

The client is registered with `strongroom client create --jwks-file` (public keys only, no
secret); its assertions are signed with joserfc/``cryptography`` (``tests/dpop_proofs.py``),
independently of the server's code. Covers: metadata, a client_credentials grant, a replay
refused by the other pod, every refused assertion as RFC 6749 §5.2 says (401
``invalid_client``; 400 ``invalid_request`` for two methods at once), introspection and
revocation authenticated the same way.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

from tests.dpop_proofs import DpopKey, b64url
from tests.e2e.platform_harness import Platform, pod_urls, running_platform

pytestmark = pytest.mark.slow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SCOPE = "clients:read"


def cli(platform: Platform, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
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
        check=check,
        timeout=60,
    )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with running_platform(tmp_path_factory.mktemp("pkjwt"), pods=2) as p:
        yield p


class JwtClient:
    """A client registered with two keys (ES256 ``ec``, Ed25519 ``ed``)."""

    def __init__(self, client_id: str, keys: dict[str, DpopKey]) -> None:
        self.client_id = client_id
        self.keys = keys

    def assertion(
        self,
        aud: str,
        *,
        kid: str = "ec",
        key: DpopKey | None = None,
        header: dict[str, Any] | None = None,
        **changes: Any,
    ) -> str:
        signer = key or self.keys[kid]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": aud,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(changes)
        head = {"alg": signer.alg, "kid": kid, **(header or {})}
        if header:
            return signer.sign_raw(head, claims)
        return jwt.encode(head, claims, signer.key, algorithms=[signer.alg])


@pytest.fixture(scope="module")
def tenant(platform: Platform) -> str:
    return str(json.loads(cli(platform, "tenant", "create", "pkjwt-tenant").stdout)["tenant_id"])


@pytest.fixture(scope="module")
def client(platform: Platform, tenant: str, tmp_path_factory: pytest.TempPathFactory) -> JwtClient:
    keys = {"ec": DpopKey("ES256"), "ed": DpopKey("Ed25519")}
    jwks = {"keys": [{**key.public_jwk, "kid": kid} for kid, key in keys.items()]}
    path = tmp_path_factory.mktemp("keys") / "client-jwks.json"
    path.write_text(json.dumps(jwks, indent=2))
    out = cli(
        platform,
        "client",
        "create",
        "--tenant",
        tenant,
        "--scopes",
        SCOPE,
        "--name",
        "jwt-client",
        "--jwks-file",
        str(path),
    )
    made = json.loads(out.stdout)
    assert "client_secret" not in made
    assert made["token_endpoint_auth_method"] == "private_key_jwt"
    return JwtClient(made["client_id"], keys)


def issuer(platform: Platform) -> str:
    return f"https://localhost:{platform.port}"


def token_url(platform: Platform) -> str:
    return f"{issuer(platform)}/oauth2/token"


def assertion_form(value: str, **extra: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": value, **extra}


def grant(c: httpx.Client, value: str, **extra: str) -> httpx.Response:
    return c.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **assertion_form(value), **extra},
    )


def assert_invalid_client(r: httpx.Response) -> None:
    """RFC 6749 §5.2: 401, a challenge, JSON error ``invalid_client``, never cached."""
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic ")
    assert r.headers["cache-control"] == "no-store"


# --- metadata and the grant ------------------------------------------------------------


def test_metadata_advertises_private_key_jwt_with_asymmetric_algorithms(
    platform: Platform,
) -> None:
    with platform.client() as c:
        meta = c.get("/.well-known/oauth-authorization-server").json()
    for endpoint in ("token", "introspection", "revocation"):
        assert "private_key_jwt" in meta[f"{endpoint}_endpoint_auth_methods_supported"]
        assert meta[f"{endpoint}_endpoint_auth_signing_alg_values_supported"] == [
            "Ed25519",
            "ES256",
        ]


@pytest.mark.parametrize("kid", ["ec", "ed"])
def test_valid_assertion_gets_a_client_credentials_token(
    platform: Platform, client: JwtClient, kid: str
) -> None:
    with platform.client() as c:
        r = grant(c, client.assertion(token_url(platform), kid=kid))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == SCOPE
    assert r.headers["cache-control"] == "no-store"
    with platform.client() as c:
        listed = c.get("/v1/clients", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert listed.status_code == 200, listed.text


def test_assertion_addressed_to_the_issuer_with_matching_client_id_is_accepted(
    platform: Platform, client: JwtClient
) -> None:
    with platform.client() as c:
        r = grant(c, client.assertion(issuer(platform)), client_id=client.client_id)
    assert r.status_code == 200, r.text


def test_replayed_assertion_is_refused_even_by_the_other_pod(
    platform: Platform, client: JwtClient
) -> None:
    pods = pod_urls(platform)
    assert len(pods) == 2
    value = client.assertion(token_url(platform))
    form = {"grant_type": "client_credentials", **assertion_form(value)}
    first = httpx.post(f"{pods[0]}/oauth2/token", data=form, timeout=10)
    replay_other = httpx.post(f"{pods[1]}/oauth2/token", data=form, timeout=10)
    replay_same = httpx.post(f"{pods[0]}/oauth2/token", data=form, timeout=10)
    with platform.client() as c:
        replay_edge = grant(c, value)
    assert first.status_code == 200, first.text
    for replay in (replay_other, replay_same, replay_edge):
        assert_invalid_client(replay)


# --- refused assertions ----------------------------------------------------------------


def _alg_none(client: JwtClient, aud: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": aud,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    head = b64url(json.dumps({"alg": "none", "kid": "ec"}).encode())
    return f"{head}.{b64url(json.dumps(claims).encode())}.AA"


@pytest.mark.parametrize(
    "case",
    [
        "wrong-aud",
        "expired",
        "exp-too-far",
        "wrong-key",
        "alg-none",
        "alg-hs256",
        "iss-not-sub",
        "other-client-id",
        "unknown-kid",
        "wrong-assertion-type",
    ],
)
def test_bad_assertion_is_401_invalid_client(
    platform: Platform, client: JwtClient, case: str
) -> None:
    aud = token_url(platform)
    now = int(time.time())
    extra: dict[str, str] = {}
    value = {
        "wrong-aud": lambda: client.assertion("https://evil.example/oauth2/token"),
        "expired": lambda: client.assertion(aud, iat=now - 600, exp=now - 300),
        "exp-too-far": lambda: client.assertion(aud, exp=now + 3600),
        "wrong-key": lambda: client.assertion(aud, key=DpopKey("ES256")),
        "alg-none": lambda: _alg_none(client, aud),
        "alg-hs256": lambda: client.assertion(aud, header={"alg": "HS256"}),
        "iss-not-sub": lambda: client.assertion(aud, iss="sr_someone_else"),
        "other-client-id": lambda: client.assertion(aud),
        "unknown-kid": lambda: client.assertion(aud, kid="nope", key=client.keys["ec"]),
        "wrong-assertion-type": lambda: client.assertion(aud),
    }[case]()
    if case == "other-client-id":
        extra["client_id"] = "sr_someone_else"
    with platform.client() as c:
        if case == "wrong-assertion-type":
            r = c.post(
                "/oauth2/token",
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
                    "client_assertion": value,
                },
            )
        else:
            r = grant(c, value, **extra)
    assert_invalid_client(r)


def test_secret_and_assertion_together_are_400_invalid_request(
    platform: Platform, client: JwtClient
) -> None:
    value = client.assertion(token_url(platform))
    with platform.client() as c:
        posted = grant(c, value, client_secret="anything")
        basic = c.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials", **assertion_form(value)},
            auth=(client.client_id, "anything"),
        )
    for r in (posted, basic):
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_request"
        assert r.headers["cache-control"] == "no-store"


def test_key_registered_client_cannot_authenticate_with_a_secret(
    platform: Platform, client: JwtClient
) -> None:
    with platform.client() as c:
        r = c.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, "a-guessed-secret"),
        )
    assert_invalid_client(r)


# --- introspection and revocation ------------------------------------------------------


def test_introspection_and_revocation_accept_private_key_jwt(
    platform: Platform, client: JwtClient
) -> None:
    with platform.client() as c:
        issued = grant(c, client.assertion(token_url(platform)))
        assert issued.status_code == 200, issued.text
        access = issued.json()["access_token"]
        live = c.post(
            "/oauth2/introspect",
            data={"token": access, **assertion_form(client.assertion(issuer(platform)))},
        )
        revoked = c.post(
            "/oauth2/revoke",
            data={"token": access, **assertion_form(client.assertion(issuer(platform), kid="ed"))},
        )
        after = c.post(
            "/oauth2/introspect",
            data={"token": access, **assertion_form(client.assertion(token_url(platform)))},
        )
    assert live.status_code == 200 and live.json()["active"] is True, live.text
    assert live.json()["client_id"] == client.client_id
    assert revoked.status_code == 200, revoked.text
    assert after.json() == {"active": False}


def test_introspection_with_a_bad_assertion_is_401_invalid_client(
    platform: Platform, client: JwtClient
) -> None:
    with platform.client() as c:
        r = c.post(
            "/oauth2/introspect",
            data={
                "token": "x",
                **assertion_form(client.assertion("https://evil.example/oauth2/token")),
            },
        )
    assert_invalid_client(r)


# --- registration --------------------------------------------------------------------------


def test_client_create_refuses_a_key_set_with_private_key_material(
    platform: Platform, tenant: str, tmp_path: Path
) -> None:
    key = DpopKey("ES256")
    path = tmp_path / "leaked.json"
    path.write_text(json.dumps({"keys": [dict(key.key.as_dict(private=True))]}))
    out = cli(
        platform,
        "client",
        "create",
        "--tenant",
        tenant,
        "--scopes",
        SCOPE,
        "--jwks-file",
        str(path),
        check=False,
    )
    assert out.returncode == 1
    assert b"private" in out.stderr
    assert out.stdout == b""
