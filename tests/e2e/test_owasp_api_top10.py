"""OWASP API Security Top 10 (2023) against a real `strongroom up` through the TLS edge.

Two tenants (alpha, beta) with their own clients, and an operator tenant whose client is
the only one that holds `tenants:admin`, all made through the CLI as an operator would.

- API1 broken object-level authorization: another tenant's objects are 404 on every
  object endpoint, exactly like missing ones; object ids are random, not guessable.
- API2 broken authentication: missing, malformed, expired, wrong-audience, wrong-issuer,
  `alg: none`, unsigned, HS256-with-the-public-key, foreign-key and wrong-`typ` tokens
  are refused; wrong and unknown client credentials get identical 401s, however often.
  Covered elsewhere: authorization-code reuse
  (test_oauth_authorization_code.py::test_reused_code_is_refused_and_its_tokens_are_revoked_on_every_pod),
  refresh-token reuse (…::test_reused_refresh_token_revokes_the_whole_family), DPoP proof
  replay (test_oauth_dpop.py::test_replayed_proof_is_refused_even_by_the_other_pod) and
  revocation on every pod
  (test_oauth_client_credentials.py::test_revoked_token_is_refused_by_every_pod_within_1_s).
- API3 broken object-property-level authorization: no response carries a secret, a
  secret hash, private key material or another tenant's data; request bodies with
  members the caller may not set are refused (422), never mass-assigned.
- API5 broken function-level authorization: operator functions need an operator client's
  token; a tenant client can never obtain one; methods a route lacks are 405.

Security events for failures go to the pods' logs, which this test cannot read: it
asserts the behaviour the caller sees.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from strongroom.adapters.db.auth_repositories import SqlKeyRepository
from strongroom.adapters.db.engine import make_engine
from strongroom.auth.keys import KeyRing, SigningKey, b64url_encode, load_private_key
from strongroom.config import Settings
from tests.e2e.platform_harness import Platform, pod_urls, pods_still_accepting, running_platform

pytestmark = pytest.mark.slow

CLIENT_FIELDS_ALLOWED = {
    "client_id",
    "name",
    "status",
    "scopes",
    "dpop_required",
    "created_at",
    "client_type",
    "redirect_uris",
}
TENANT_FIELDS = {"tenant_id", "name", "status", "created_at"}
# JWK members that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4).
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
# Bounded: each attempt costs the platform one argon2id run.
BRUTE_FORCE_ATTEMPTS = 12


def run_cli(platform: Platform, *args: str) -> subprocess.CompletedProcess[bytes]:
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
        check=False,
        timeout=60,
    )


def cli(platform: Platform, *args: str) -> Any:
    out = run_cli(platform, *args)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return json.loads(out.stdout)


def create_client(platform: Platform, tenant: str, scopes: str, *flags: str) -> dict[str, Any]:
    return cli(platform, "client", "create", "--tenant", tenant, "--scopes", scopes, *flags)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("owasp"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def world(platform: Platform) -> dict[str, Any]:
    made: dict[str, Any] = {}
    for name in ("alpha", "beta"):
        tenant = cli(platform, "tenant", "create", name)["tenant_id"]
        made[name] = {
            "tenant": tenant,
            "app": create_client(platform, tenant, "clients:read clients:write accounts:read"),
            "reader": create_client(platform, tenant, "accounts:read"),
        }
    ops = cli(platform, "tenant", "create", "operators")["tenant_id"]
    made["ops"] = {
        "tenant": ops,
        "operator": create_client(platform, ops, "tenants:admin", "--operator"),
    }
    return made


def token_request(c: httpx.Client, client: dict[str, Any], **form: str) -> httpx.Response:
    return c.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client["client_id"], client["client_secret"]),
    )


def bearer(c: httpx.Client, client: dict[str, Any]) -> dict[str, str]:
    r = token_request(c, client)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# --- forging tokens -------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing(platform: Platform) -> tuple[Settings, SigningKey]:
    settings = Settings.model_validate_json(
        (platform.data_dir / "run" / "settings.json").read_text()
    )
    engine = make_engine(settings)
    try:
        keys = SqlKeyRepository(engine, settings.secrets.key_encryption_key.get_secret_value())
        key = KeyRing(keys.load(), time.time()).signing_key
    finally:
        engine.dispose()
    return settings, key


def segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def jws(header: dict[str, Any], claims: dict[str, Any], private_pem: bytes) -> str:
    """A compact JWS signed as RFC 7515 says, independently of the server's signer."""
    signing_input = f"{segment(header)}.{segment(claims)}".encode()
    private = load_private_key(private_pem)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        signature = private.sign(signing_input)
    else:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{b64url_encode(signature)}"


def claims_for(settings: Settings, who: dict[str, Any], tenant: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": settings.issuer,
        "sub": who["client_id"],
        "aud": settings.auth.audience,
        "exp": now + 300,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "client_id": who["client_id"],
        "scope": "clients:read",
        "tenant": tenant,
    }
    claims.update(over)
    return claims


def forged_tokens(settings: Settings, key: SigningKey, world: dict[str, Any]) -> dict[str, str]:
    alpha = world["alpha"]
    header = {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}
    good = claims_for(settings, alpha["app"], alpha["tenant"])
    now = int(time.time())
    public_pem = (
        load_private_key(key.private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_header = {"alg": "HS256", "kid": key.kid, "typ": "at+jwt"}
    hs_input = f"{segment(hs_header)}.{segment(good)}".encode()
    hs_signature = hmac.new(public_pem, hs_input, hashlib.sha256).digest()
    stranger = (
        ed25519.Ed25519PrivateKey.generate()
        if key.alg == "Ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    ).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signed = jws(header, good, key.private_pem)
    return {
        "control": signed,
        "expired": jws(header, {**good, "iat": now - 3600, "exp": now - 3000}, key.private_pem),
        "wrong_audience": jws(header, {**good, "aud": "https://elsewhere"}, key.private_pem),
        "wrong_issuer": jws(header, {**good, "iss": "https://evil.example"}, key.private_pem),
        "alg_none": f"{segment({'alg': 'none', 'typ': 'at+jwt'})}.{segment(good)}.",
        "signature_stripped": signed.rsplit(".", 1)[0] + ".",
        "hs256_public_key_as_secret": f"{hs_input.decode()}.{b64url_encode(hs_signature)}",
        "foreign_key_same_kid": jws(header, good, stranger),
        "typ_jwt": jws({**header, "typ": "JWT"}, good, key.private_pem),
        "missing_tenant": jws(
            header, {k: v for k, v in good.items() if k != "tenant"}, key.private_pem
        ),
        "claims_tampered": ".".join(
            [
                signed.split(".")[0],
                segment({**good, "scope": "clients:write"}),
                signed.split(".")[2],
            ]
        ),
    }


# --- API1: broken object-level authorization ------------------------------------------


def test_other_tenants_client_is_404_like_a_missing_one_on_every_object_endpoint(
    platform: Platform, world: dict[str, Any]
) -> None:
    alpha, beta = world["alpha"], world["beta"]
    with platform.client() as c:
        headers = bearer(c, beta["app"])
        foreign_id = alpha["reader"]["client_id"]
        answers = {
            "get": c.get(f"/v1/clients/{foreign_id}", headers=headers),
            "suspend": c.post(f"/v1/clients/{foreign_id}/suspend", headers=headers),
        }
        missing = c.get("/v1/clients/sr_doesnotexistdoesnotexis", headers=headers)
        still_active = c.get(f"/v1/clients/{foreign_id}", headers=bearer(c, alpha["app"]))
    for name, r in answers.items():
        assert r.status_code == 404, name
        assert {k: r.json()[k] for k in ("type", "title", "status")} == {
            k: missing.json()[k] for k in ("type", "title", "status")
        }
    assert still_active.json()["status"] == "active"


def test_listing_shows_only_the_callers_tenants_clients(
    platform: Platform, world: dict[str, Any]
) -> None:
    beta = world["beta"]
    with platform.client() as c:
        listed = c.get("/v1/clients", headers=bearer(c, beta["app"]))
    ids = {x["client_id"] for x in listed.json()["clients"]}
    assert ids == {beta["app"]["client_id"], beta["reader"]["client_id"]}
    assert world["alpha"]["tenant"] not in listed.text


def test_tenant_objects_are_403_to_tenant_tokens_before_any_lookup(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        headers = bearer(c, world["beta"]["app"])
        for tenant_id in (world["alpha"]["tenant"], world["beta"]["tenant"], str(uuid.uuid4())):
            r = c.get(f"/v1/tenants/{tenant_id}", headers=headers)
            assert r.status_code == 403, tenant_id
            assert r.json()["type"].endswith("/insufficient-scope")


def test_object_ids_are_random_not_guessable(platform: Platform, world: dict[str, Any]) -> None:
    client_ids = [world[t][k]["client_id"] for t in ("alpha", "beta") for k in ("app", "reader")]
    client_ids.append(world["ops"]["operator"]["client_id"])
    for client_id in client_ids:
        # "sr_" + 16 random bytes, base64url: 128 bits a caller would have to guess.
        assert re.fullmatch(r"sr_[A-Za-z0-9_-]{22}", client_id), client_id
    suffixes = [cid[3:] for cid in client_ids]
    assert len(set(suffixes)) == len(suffixes)
    assert len({s[:4] for s in suffixes}) == len(suffixes), "ids share a predictable prefix"
    for name in ("alpha", "beta", "ops"):
        assert uuid.UUID(world[name]["tenant"]).version == 4


# --- API2: broken authentication ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "signature_stripped",
        "hs256_public_key_as_secret",
        "foreign_key_same_kid",
        "typ_jwt",
        "missing_tenant",
        "claims_tampered",
    ],
)
def test_forged_or_invalid_token_is_refused_by_every_pod(
    platform: Platform, world: dict[str, Any], signing: tuple[Settings, SigningKey], name: str
) -> None:
    settings, key = signing
    tokens = forged_tokens(settings, key, world)
    with platform.client() as c:
        control = c.get("/v1/clients", headers={"Authorization": f"Bearer {tokens['control']}"})
        edge = c.get("/v1/clients", headers={"Authorization": f"Bearer {tokens[name]}"})
    assert control.status_code == 200, "the forging harness itself must produce good tokens"
    assert edge.status_code == 401
    assert 'error="invalid_token"' in edge.headers["www-authenticate"]
    assert edge.headers["content-type"] == "application/problem+json"
    for url in pod_urls(platform):
        direct = httpx.get(f"{url}/v1/clients", headers={"Authorization": f"Bearer {tokens[name]}"})
        assert direct.status_code == 401, url


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": "Bearer " + "A" * 5000},
        {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
        {"Authorization": "Token abc"},
    ],
    ids=["missing", "empty", "garbage", "oversized", "basic_scheme", "unknown_scheme"],
)
def test_missing_or_malformed_credentials_are_401(
    platform: Platform, headers: dict[str, str]
) -> None:
    with platform.client() as c:
        r = c.get("/v1/clients", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_token_in_the_query_string_is_not_accepted(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        token = bearer(c, world["alpha"]["app"])["Authorization"][7:]
        r = c.get("/v1/clients", params={"access_token": token})
    assert r.status_code == 401


def test_wrong_secret_and_unknown_client_get_the_same_401(
    platform: Platform, world: dict[str, Any]
) -> None:
    app = world["alpha"]["app"]
    with platform.client() as c:
        wrong = token_request(c, {**app, "client_secret": "not-the-secret"})
        unknown = token_request(c, {"client_id": "sr_nobody", "client_secret": "whatever"})
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert r.headers["www-authenticate"].lower().startswith("basic")
        assert r.headers["cache-control"] == "no-store"
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"] == "invalid_client"


def test_repeated_wrong_secrets_stay_401_and_never_succeed(
    platform: Platform, world: dict[str, Any]
) -> None:
    app = world["beta"]["reader"]
    guesses = [f"guess-{n}" for n in range(BRUTE_FORCE_ATTEMPTS - 2)] + [
        app["client_secret"][:-1],
        app["client_secret"].upper(),
    ]
    with platform.client() as c:
        answers = [token_request(c, {**app, "client_secret": g}) for g in guesses]
    assert {r.status_code for r in answers} == {401}
    assert {r.json()["error"] for r in answers} == {"invalid_client"}
    assert all("access_token" not in r.text for r in answers)


# --- API3: broken object-property-level authorization ---------------------------------


def _no_private_material(body: Any, secrets: list[str]) -> None:
    text = json.dumps(body)
    assert "$argon2" not in text
    for secret in secrets:
        assert secret not in text
    for key in re.findall(r'"([^"]+)":', text):
        lowered = key.lower()
        assert "secret" not in lowered and "hash" not in lowered and "password" not in lowered


def test_no_response_carries_secrets_hashes_or_private_keys(
    platform: Platform, world: dict[str, Any]
) -> None:
    alpha = world["alpha"]
    secrets = [
        world[t][k]["client_secret"] for t in ("alpha", "beta") for k in ("app", "reader")
    ] + [world["ops"]["operator"]["client_secret"]]
    with platform.client() as c:
        tenant_headers = bearer(c, alpha["app"])
        operator_headers = bearer(c, world["ops"]["operator"])
        token = tenant_headers["Authorization"][7:]
        bodies = {
            "metadata": c.get("/.well-known/oauth-authorization-server").json(),
            "jwks": c.get("/oauth2/jwks").json(),
            "clients": c.get("/v1/clients", headers=tenant_headers).json(),
            "client": c.get(
                f"/v1/clients/{alpha['reader']['client_id']}", headers=tenant_headers
            ).json(),
            "tenants": c.get("/v1/tenants", headers=operator_headers).json(),
            "tenant": c.get(f"/v1/tenants/{alpha['tenant']}", headers=operator_headers).json(),
            "introspection": c.post(
                "/oauth2/introspect",
                data={"token": token},
                auth=(alpha["app"]["client_id"], alpha["app"]["client_secret"]),
            ).json(),
        }
    for name, body in bodies.items():
        assert isinstance(body, dict), name
        _no_private_material(body, secrets)
    for jwk in bodies["jwks"]["keys"]:
        assert not PRIVATE_JWK_MEMBERS & jwk.keys(), jwk
    for view in [bodies["client"], *bodies["clients"]["clients"]]:
        assert set(view) <= CLIENT_FIELDS_ALLOWED, view
    for view in [bodies["tenant"], *bodies["tenants"]["tenants"]]:
        assert set(view) == TENANT_FIELDS, view
    assert bodies["introspection"]["tenant"] == alpha["tenant"]


def test_tenant_responses_carry_no_other_tenants_data(
    platform: Platform, world: dict[str, Any]
) -> None:
    alpha, beta = world["alpha"], world["beta"]
    with platform.client() as c:
        headers = bearer(c, beta["app"])
        texts = [
            c.get("/v1/clients", headers=headers).text,
            c.get(f"/v1/clients/{beta['reader']['client_id']}", headers=headers).text,
            c.get(f"/v1/clients/{alpha['app']['client_id']}", headers=headers).text,
            c.post(
                "/oauth2/introspect",
                data={"token": bearer(c, alpha["app"])["Authorization"][7:]},
                auth=(beta["app"]["client_id"], beta["app"]["client_secret"]),
            ).text,
        ]
    for text in texts:
        assert alpha["tenant"] not in text
        assert alpha["app"]["client_id"] not in text or "No client" in text
        assert alpha["reader"]["client_id"] not in text


@pytest.mark.parametrize(
    "extra",
    [
        {"is_operator": True},
        {"tenant_id": "00000000-0000-4000-8000-000000000000"},
        {"status": "suspended"},
        {"created_at": 0},
    ],
    ids=["is_operator", "tenant_id", "status", "created_at"],
)
def test_mass_assignment_of_a_protected_member_is_422_and_creates_nothing(
    platform: Platform, world: dict[str, Any], extra: dict[str, Any]
) -> None:
    name = f"mass-{uuid.uuid4().hex[:8]}"
    with platform.client() as c:
        headers = bearer(c, world["ops"]["operator"])
        r = c.post("/v1/tenants", json={"name": name, **extra}, headers=headers)
        listed = c.get("/v1/tenants", params={"limit": "500"}, headers=headers).text
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert name not in listed


def test_validation_errors_do_not_echo_submitted_values(
    platform: Platform, world: dict[str, Any]
) -> None:
    marker = "sensitive-" + uuid.uuid4().hex
    with platform.client() as c:
        headers = bearer(c, world["ops"]["operator"])
        r = c.post("/v1/tenants", json={"name": "x", "is_operator": marker}, headers=headers)
    assert r.status_code == 422
    assert marker not in r.text


# --- API5: broken function-level authorization ----------------------------------------


@pytest.mark.parametrize("scopes", ["tenants:admin", "admin", "clients:read tenants:admin"])
def test_cli_refuses_operator_scopes_to_a_tenant_client(
    platform: Platform, world: dict[str, Any], scopes: str
) -> None:
    out = run_cli(
        platform, "client", "create", "--tenant", world["alpha"]["tenant"], "--scopes", scopes
    )
    assert out.returncode == 1
    assert b"client_secret" not in out.stdout


def test_tenant_client_cannot_obtain_an_operator_scope(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        r = token_request(c, world["alpha"]["app"], scope="tenants:admin")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/tenants"),
        ("POST", "/v1/tenants"),
        ("GET", "/v1/tenants/{tenant}"),
        ("POST", "/v1/tenants/{tenant}/suspend"),
    ],
)
def test_tenant_client_token_is_403_on_every_operator_route(
    platform: Platform, world: dict[str, Any], method: str, path: str
) -> None:
    with platform.client() as c:
        headers = bearer(c, world["alpha"]["app"])
        r = c.request(
            method,
            path.format(tenant=world["beta"]["tenant"]),
            json={"name": "x"} if method == "POST" else None,
            headers=headers,
        )
        beta = c.get(
            f"/v1/tenants/{world['beta']['tenant']}", headers=bearer(c, world["ops"]["operator"])
        )
    assert r.status_code == 403
    assert beta.json()["status"] == "active"


def test_operator_token_does_not_reach_tenant_functions(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        r = c.get("/v1/clients", headers=bearer(c, world["ops"]["operator"]))
    assert r.status_code == 403


def test_operator_creates_reads_and_lists_tenants(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        headers = bearer(c, world["ops"]["operator"])
        created = c.post("/v1/tenants", json={"name": "delta"}, headers=headers)
        tenant_id = created.json()["tenant_id"]
        one = c.get(f"/v1/tenants/{tenant_id}", headers=headers)
        listed = c.get("/v1/tenants", params={"limit": "500"}, headers=headers)
    assert created.status_code == 201 and created.json()["status"] == "active"
    assert one.json() == created.json()
    assert tenant_id in {t["tenant_id"] for t in listed.json()["tenants"]}


def test_operator_suspension_stops_the_tenants_clients_on_every_pod_within_1_s(
    platform: Platform, world: dict[str, Any]
) -> None:
    with platform.client() as c:
        operator = bearer(c, world["ops"]["operator"])
        tenant = c.post("/v1/tenants", json={"name": "gamma"}, headers=operator).json()
        client = create_client(platform, tenant["tenant_id"], "clients:read")
        headers = bearer(c, client)
        for url in pod_urls(platform):
            assert httpx.get(f"{url}/v1/clients", headers=headers).status_code == 200
        suspended = c.post(f"/v1/tenants/{tenant['tenant_id']}/suspend", headers=operator)
        assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
        pending = pods_still_accepting(platform, headers, time.monotonic())
        again = token_request(c, client)
        others = c.get("/v1/clients", headers=bearer(c, world["beta"]["app"]))
    assert not pending, f"pods still accepting: {pending}"
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert others.status_code == 200
    late = run_cli(
        platform, "client", "create", "--tenant", tenant["tenant_id"], "--scopes", "clients:read"
    )
    assert late.returncode == 1


def test_operator_cannot_suspend_its_own_tenant(platform: Platform, world: dict[str, Any]) -> None:
    with platform.client() as c:
        headers = bearer(c, world["ops"]["operator"])
        r = c.post(f"/v1/tenants/{world['ops']['tenant']}/suspend", headers=headers)
        after = c.get("/v1/tenants", headers=headers)
    assert r.status_code == 409
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "who"),
    [
        ("DELETE", "/v1/clients/{client}", "tenant"),
        ("PUT", "/v1/clients/{client}", "tenant"),
        ("PATCH", "/v1/clients/{client}", "tenant"),
        ("GET", "/v1/clients/{client}/suspend", "tenant"),
        ("DELETE", "/v1/clients", "tenant"),
        ("DELETE", "/v1/tenants/{tenant}", "operator"),
        ("PUT", "/v1/tenants/{tenant}", "operator"),
        ("PATCH", "/v1/tenants/{tenant}", "operator"),
        ("PUT", "/v1/tenants", "operator"),
        ("DELETE", "/v1/tenants", "operator"),
        ("GET", "/v1/tenants/{tenant}/suspend", "operator"),
    ],
)
def test_methods_a_route_lacks_are_405_never_2xx(
    platform: Platform, world: dict[str, Any], method: str, path: str, who: str
) -> None:
    alpha = world["alpha"]
    with platform.client() as c:
        owner = world["ops"]["operator"] if who == "operator" else alpha["app"]
        headers = bearer(c, owner)
        r = c.request(
            method,
            path.format(client=alpha["reader"]["client_id"], tenant=alpha["tenant"]),
            headers={**headers, "Content-Type": "application/json"},
            content=b'{"status": "suspended"}',
        )
        tenant = c.get(
            f"/v1/tenants/{alpha['tenant']}", headers=bearer(c, world["ops"]["operator"])
        )
        reader = c.get(
            f"/v1/clients/{alpha['reader']['client_id']}", headers=bearer(c, alpha["app"])
        )
    assert r.status_code == 405, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert tenant.json()["status"] == "active" and reader.json()["status"] == "active"


def test_method_override_headers_are_ignored(platform: Platform, world: dict[str, Any]) -> None:
    alpha = world["alpha"]
    with platform.client() as c:
        headers = bearer(c, alpha["app"])
        override = {
            "X-HTTP-Method-Override": "POST",
            "X-HTTP-Method": "POST",
            "X-Method-Override": "POST",
        }
        r = c.get(
            f"/v1/clients/{alpha['reader']['client_id']}/suspend", headers={**headers, **override}
        )
        reader = c.get(f"/v1/clients/{alpha['reader']['client_id']}", headers=headers)
    assert r.status_code == 405
    assert reader.json()["status"] == "active"
