"""DPoP (RFC 9449) through the TLS edge against a real `strongroom up` (two pods).

Proofs are made with joserfc (``tests/dpop_proofs.py``), independently of the server's
code. Covers: a DPoP-bound client_credentials token (token type ``DPoP``, ``cnf.jkt``),
its use at ``/v1`` with proofs, server nonces (``use_dpop_nonce`` then success), replay
refused by every pod, wrong ``htu``/``htm``/key refused, a bound token sent as Bearer
refused, and clients or scopes that require DPoP.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.dpop_proofs import DpopKey
from tests.e2e.platform_harness import Platform, pod_urls, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with running_platform(tmp_path_factory.mktemp("dpop"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def clients(platform: Platform) -> dict[str, dict[str, Any]]:
    tenant = platform.cli("tenant", "create", "dpop-tenant")["tenant_id"]

    def create(name: str, scopes: str, *flags: str) -> dict[str, Any]:
        return platform.cli(
            "client",
            "create",
            "--tenant",
            tenant,
            "--scopes",
            scopes,
            "--name",
            name,
            *flags,
        )

    return {
        "app": create("app", "clients:read transfers:write"),
        "strict": create("strict", "clients:read", "--dpop"),
    }


def issuer(platform: Platform) -> str:
    return f"https://localhost:{platform.port}"


def token_url(platform: Platform) -> str:
    return f"{issuer(platform)}/oauth2/token"


def clients_url(platform: Platform) -> str:
    return f"{issuer(platform)}/v1/clients"


def request_token(
    c: httpx.Client,
    platform: Platform,
    client: dict[str, Any],
    proof: str | None,
    **form: str,
) -> httpx.Response:
    headers = {"DPoP": proof} if proof is not None else {}
    return c.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client["client_id"], client["client_secret"]),
        headers=headers,
    )


def server_nonce(c: httpx.Client, platform: Platform, client: dict[str, Any]) -> str:
    """The nonce dance of §8: a proof without a nonce earns one."""
    r = request_token(c, platform, client, DpopKey().proof("POST", token_url(platform)))
    assert r.status_code == 400 and r.json()["error"] == "use_dpop_nonce", r.text
    return r.headers["dpop-nonce"]


def bound_token(
    c: httpx.Client, platform: Platform, client: dict[str, Any], key: DpopKey, **form: str
) -> tuple[str, str]:
    """A DPoP-bound access token and the latest nonce."""
    nonce = server_nonce(c, platform, client)
    r = request_token(
        c, platform, client, key.proof("POST", token_url(platform), nonce=nonce), **form
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"], r.headers["dpop-nonce"]


def dpop_headers(token: str, proof: str) -> dict[str, str]:
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- token endpoint ---------------------------------------------------------------------


def test_token_request_without_nonce_gets_use_dpop_nonce_with_a_nonce(
    platform: Platform, clients: dict[str, dict[str, Any]]
) -> None:
    with platform.client() as c:
        r = request_token(c, platform, clients["app"], DpopKey().proof("POST", token_url(platform)))
    assert r.status_code == 400
    assert r.json()["error"] == "use_dpop_nonce"
    assert r.headers["dpop-nonce"] and r.headers["cache-control"] == "no-store"


def test_token_with_proof_is_dpop_bound_to_the_proofs_key(
    platform: Platform, clients: dict[str, dict[str, Any]]
) -> None:
    key = DpopKey("Ed25519")
    with platform.client() as c:
        nonce = server_nonce(c, platform, clients["app"])
        r = request_token(
            c, platform, clients["app"], key.proof("POST", token_url(platform), nonce=nonce)
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "DPoP"
    assert claims_of(body["access_token"])["cnf"] == {"jkt": key.jkt}
    assert r.headers["dpop-nonce"]


def test_client_that_requires_dpop_gets_no_token_without_a_proof(
    platform: Platform, clients: dict[str, dict[str, Any]]
) -> None:
    with platform.client() as c:
        refused = request_token(c, platform, clients["strict"], None)
        token, _ = bound_token(c, platform, clients["strict"], DpopKey())
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    assert claims_of(token)["cnf"]["jkt"]


def test_scope_that_requires_dpop_is_not_granted_as_a_bearer_token(
    platform: Platform, clients: dict[str, dict[str, Any]]
) -> None:
    with platform.client() as c:
        refused = request_token(c, platform, clients["app"], None, scope="transfers:write")
        bearer = request_token(c, platform, clients["app"], None, scope="clients:read")
        bound, _ = bound_token(c, platform, clients["app"], DpopKey(), scope="transfers:write")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    assert bearer.status_code == 200 and bearer.json()["token_type"] == "Bearer"
    assert claims_of(bound)["scope"] == "transfers:write"


def test_token_request_with_proof_for_another_endpoint_is_refused(
    platform: Platform, clients: dict[str, dict[str, Any]]
) -> None:
    key = DpopKey()
    with platform.client() as c:
        nonce = server_nonce(c, platform, clients["app"])
        r = request_token(
            c, platform, clients["app"], key.proof("POST", clients_url(platform), nonce=nonce)
        )
    assert r.status_code == 400 and r.json()["error"] == "invalid_dpop_proof"


# --- resource server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bound(platform: Platform, clients: dict[str, dict[str, Any]]) -> dict[str, Any]:
    key = DpopKey()
    with platform.client() as c:
        token, nonce = bound_token(c, platform, clients["app"], key, scope="clients:read")
    return {"key": key, "token": token, "nonce": nonce}


def proof_for(platform: Platform, bound: dict[str, Any], **overrides: Any) -> str:
    key: DpopKey = overrides.pop("key", bound["key"])
    method = overrides.pop("method", "GET")
    url = overrides.pop("url", clients_url(platform))
    overrides.setdefault("nonce", bound["nonce"])
    return key.proof(method, url, access_token=bound["token"], **overrides)


def test_bound_token_with_a_proof_is_accepted_and_hands_out_a_fresh_nonce(
    platform: Platform, bound: dict[str, Any]
) -> None:
    with platform.client() as c:
        r = c.get("/v1/clients", headers=dpop_headers(bound["token"], proof_for(platform, bound)))
    assert r.status_code == 200, r.text
    assert r.headers["dpop-nonce"]


def test_resource_request_without_nonce_gets_use_dpop_nonce_then_succeeds(
    platform: Platform, bound: dict[str, Any]
) -> None:
    with platform.client() as c:
        first = c.get(
            "/v1/clients",
            headers=dpop_headers(bound["token"], proof_for(platform, bound, nonce=None)),
        )
        nonce = first.headers["dpop-nonce"]
        second = c.get(
            "/v1/clients",
            headers=dpop_headers(bound["token"], proof_for(platform, bound, nonce=nonce)),
        )
    assert first.status_code == 401
    assert 'error="use_dpop_nonce"' in first.headers["www-authenticate"]
    assert first.headers["www-authenticate"].startswith("DPoP ")
    assert second.status_code == 200, second.text


def test_replayed_proof_is_refused_even_by_the_other_pod(
    platform: Platform, bound: dict[str, Any]
) -> None:
    pods = pod_urls(platform)
    assert len(pods) == 2
    proof = proof_for(platform, bound)
    headers = dpop_headers(bound["token"], proof)
    first = httpx.get(f"{pods[0]}/v1/clients", headers=headers, timeout=10)
    replay_other = httpx.get(f"{pods[1]}/v1/clients", headers=headers, timeout=10)
    replay_same = httpx.get(f"{pods[0]}/v1/clients", headers=headers, timeout=10)
    with platform.client() as c:
        replay_edge = c.get("/v1/clients", headers=headers)
    assert first.status_code == 200, first.text
    for replay in (replay_other, replay_same, replay_edge):
        assert replay.status_code == 401
        assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "https://evil.example/v1/clients"},
        {"url": "PLATFORM/v1/clients/other"},
        {"method": "POST"},
        {"method": "get"},
        {"key": "other"},
        {"access_token": "another-token"},
    ],
    ids=["htu-host", "htu-path", "htm", "htm-case", "other-key", "ath"],
)
def test_proof_for_another_request_or_key_is_refused(
    platform: Platform, bound: dict[str, Any], overrides: dict[str, Any]
) -> None:
    overrides = dict(overrides)
    if overrides.get("url", "").startswith("PLATFORM"):
        overrides["url"] = overrides["url"].replace("PLATFORM", issuer(platform))
    if overrides.get("key") == "other":
        overrides["key"] = DpopKey()
    if "access_token" in overrides:
        proof = bound["key"].proof(
            "GET", clients_url(platform), nonce=bound["nonce"], access_token="another-token"
        )
    else:
        proof = proof_for(platform, bound, **overrides)
    with platform.client() as c:
        r = c.get("/v1/clients", headers=dpop_headers(bound["token"], proof))
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert 'error="invalid_dpop_proof"' in r.headers["www-authenticate"]


def test_bound_token_without_a_proof_is_refused(platform: Platform, bound: dict[str, Any]) -> None:
    with platform.client() as c:
        r = c.get("/v1/clients", headers={"Authorization": f"DPoP {bound['token']}"})
    assert r.status_code == 401
    assert 'error="invalid_dpop_proof"' in r.headers["www-authenticate"]


def test_bound_token_presented_as_bearer_is_refused(
    platform: Platform, bound: dict[str, Any]
) -> None:
    with platform.client() as c:
        plain = c.get("/v1/clients", headers={"Authorization": f"Bearer {bound['token']}"})
        with_proof = c.get(
            "/v1/clients",
            headers={
                "Authorization": f"Bearer {bound['token']}",
                "DPoP": proof_for(platform, bound),
            },
        )
    for r in (plain, with_proof):
        assert r.status_code == 401
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_missing_token_challenge_offers_dpop(platform: Platform) -> None:
    with platform.client() as c:
        r = c.get("/v1/clients")
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer") and 'DPoP realm="strongroom", algs="' in challenge
