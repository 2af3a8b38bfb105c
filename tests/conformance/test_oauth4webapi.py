"""Conformance of the authorization server, judged by `oauth4webapi`, a strict client library.

A real `strongroom up` (two pods behind the TLS edge) is provisioned through the
`strongroom` CLI, then `driver.mjs` runs every step with oauth4webapi under Node.js over
HTTPS (the local CA given through ``NODE_EXTRA_CA_CERTS``) and reports one outcome per
step; each test below asserts one step. Steps whose endpoint the server does not
advertise yet are skipped with the driver's reason.

The npm install is cached: ``npm ci`` runs only when ``node_modules`` is missing or
``package-lock.json`` changed since the last install. Without node or npm the module is
skipped locally and fails under CI=true.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.platform_harness import Platform, running_platform

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
LOCK_FILE = HERE / "package-lock.json"
NODE_MODULES = HERE / "node_modules"
# Written after a successful install: the lock file's digest it was installed from.
INSTALL_STAMP = NODE_MODULES / ".strongroom-lock-sha256"
# oauth4webapi 3 needs WebCrypto Ed25519 and `Headers.getSetCookie`: Node.js 20+.
NODE_MAJOR_MIN = 20
# A cold `npm ci` of one dependency takes seconds; the bound is for a slow registry.
NPM_INSTALL_TIMEOUT_S = 300
# Every step together takes a few seconds; each step is bounded at 15 s inside the driver.
DRIVER_TIMEOUT_S = 120
CLI_TIMEOUT_S = 60
REDIRECT_URI = "http://127.0.0.1/conformance/callback"
CONFIDENTIAL_SCOPE = "accounts:read clients:read"
USER_PASSWORD = "conformance-Passw0rd-long-enough"

Steps = dict[str, dict[str, Any]]

STEPS = (
    "discovery",
    "client_credentials_basic",
    "client_credentials_post",
    "rfc9068_access_token",
    "introspection_active",
    "revocation",
    "introspection_after_revocation",
    "revocation_unknown_token",
    "authorization_code_pkce",
    "refresh_token_rotation",
    "authorization_code_reuse_rejected",
    "dpop",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _unavailable(f"{name} is not installed")
    assert path is not None
    return path


def _node() -> str:
    node = _tool("node")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < NODE_MAJOR_MIN:
        _unavailable(f"node {version} is older than {NODE_MAJOR_MIN}")
    return node


def _ensure_node_modules() -> None:
    """`npm ci` into tests/conformance/node_modules unless the lock file is unchanged."""
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    installed = NODE_MODULES / "oauth4webapi" / "package.json"
    if installed.exists() and INSTALL_STAMP.exists() and INSTALL_STAMP.read_text() == digest:
        return
    npm = _tool("npm")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
        timeout=NPM_INSTALL_TIMEOUT_S,
    )
    if done.returncode != 0:
        pytest.fail(f"npm ci failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    INSTALL_STAMP.write_text(digest)


def cli(platform: Platform, *args: str, stdin: str | None = None) -> Any:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            *args,
            "--data-dir",
            str(platform.data_dir),
            "--json",
        ],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT_S,
    )
    assert done.returncode == 0, f"strongroom {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout)


def cli_options(platform: Platform, *command: str) -> set[str]:
    """The long options a CLI command accepts (read from its --help)."""
    done = subprocess.run(
        [sys.executable, "-m", "strongroom.cli.main", *command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=CLI_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    return set(re.findall(r"--[a-z][a-z0-9-]*", done.stdout)) if done.returncode == 0 else set()


def provision_code_flow(platform: Platform, tenant: str, config: dict[str, Any]) -> None:
    """A web client with a redirect URI and a resource owner, for the authorization-code steps."""
    web = cli(
        platform,
        "client",
        "register-app",
        "--tenant",
        tenant,
        "--scopes",
        CONFIDENTIAL_SCOPE,
        "--name",
        "conformance-web",
        "--redirect-uri",
        REDIRECT_URI,
    )
    username = "conformance"
    cli(
        platform,
        "user",
        "create",
        "--tenant",
        tenant,
        "--username",
        username,
        "--password-stdin",
        stdin=USER_PASSWORD + "\n",
    )
    config["web_client"] = {
        "client_id": web["client_id"],
        "client_secret": web["client_secret"],
        "redirect_uri": REDIRECT_URI,
        "scope": CONFIDENTIAL_SCOPE,
    }
    config["user"] = {"username": username, "password": USER_PASSWORD}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    _node()  # before the platform: a missing node must not cost a start-up
    _ensure_node_modules()
    with running_platform(tmp_path_factory.mktemp("conformance"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def driver_config(platform: Platform) -> dict[str, Any]:
    with platform.client() as c:
        metadata = c.get("/.well-known/oauth-authorization-server").json()
    tenant = cli(platform, "tenant", "create", "conformance")["tenant_id"]
    confidential = cli(
        platform,
        "client",
        "create",
        "--tenant",
        tenant,
        "--scopes",
        CONFIDENTIAL_SCOPE,
        "--name",
        "conformance",
    )
    dpop = cli(
        platform,
        "client",
        "create",
        "--tenant",
        tenant,
        "--scopes",
        "clients:read",
        "--name",
        "conformance-dpop",
        "--dpop",
    )
    issuer = metadata["issuer"]
    config: dict[str, Any] = {
        "issuer": issuer,
        "audience": platform_settings(platform)["auth"]["audience"],
        "resource_url": f"{issuer}/v1/clients",
        "confidential": {
            "client_id": confidential["client_id"],
            "client_secret": confidential["client_secret"],
            "scope": CONFIDENTIAL_SCOPE,
        },
        "dpop_client": {
            "client_id": dpop["client_id"],
            "client_secret": dpop["client_secret"],
            "scope": "clients:read",
        },
    }
    if metadata.get("authorization_endpoint"):
        provision_code_flow(platform, tenant, config)
    return config


def platform_settings(platform: Platform) -> dict[str, Any]:
    settings: dict[str, Any] = json.loads((platform.data_dir / "run" / "settings.json").read_text())
    return settings


@pytest.fixture(scope="module")
def steps(platform: Platform, driver_config: dict[str, Any]) -> Steps:
    done = subprocess.run(
        [_node(), str(HERE / "driver.mjs")],
        cwd=HERE,
        input=json.dumps(driver_config),
        capture_output=True,
        text=True,
        check=False,
        timeout=DRIVER_TIMEOUT_S,
        env={
            **os.environ,
            "NODE_EXTRA_CA_CERTS": str(platform.data_dir / "tls" / "ca.pem"),
            "NODE_NO_WARNINGS": "1",
        },
    )
    assert done.stdout.strip(), f"driver printed nothing (exit {done.returncode}):\n{done.stderr}"
    report = json.loads(done.stdout)
    return {step["name"]: step for step in report["steps"]}


def passed(steps: Steps, name: str) -> dict[str, Any]:
    step = steps[name]
    if step["outcome"] == "skipped":
        pytest.skip(step["reason"])
    assert step["outcome"] == "passed", json.dumps(step.get("error"), indent=2)
    detail: dict[str, Any] = step["detail"]
    return detail


def test_driver_reports_every_step_once(steps: Steps) -> None:
    assert tuple(steps) == STEPS


def test_discovery_matches_the_issuer_exactly(steps: Steps, platform: Platform) -> None:
    detail = passed(steps, "discovery")
    assert detail["issuer"] == f"https://localhost:{platform.port}"


def test_client_credentials_with_client_secret_basic(steps: Steps) -> None:
    detail = passed(steps, "client_credentials_basic")
    assert detail["token_type"] == "bearer" and detail["scope"] == CONFIDENTIAL_SCOPE


def test_client_credentials_with_client_secret_post(steps: Steps) -> None:
    detail = passed(steps, "client_credentials_post")
    assert detail["token_type"] == "bearer" and detail["scope"] == CONFIDENTIAL_SCOPE


def test_access_token_passes_rfc9068_resource_server_checks(steps: Steps) -> None:
    detail = passed(steps, "rfc9068_access_token")
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"} <= set(detail["claims"])


def test_introspection_reports_a_fresh_token_active(steps: Steps) -> None:
    assert passed(steps, "introspection_active")["active"] is True


def test_revocation_answers_200(steps: Steps) -> None:
    assert passed(steps, "revocation")["status"] == 200


def test_introspection_reports_a_revoked_token_inactive(steps: Steps) -> None:
    assert passed(steps, "introspection_after_revocation") == {"active": False}


def test_revocation_of_an_unknown_token_is_200(steps: Steps) -> None:
    assert passed(steps, "revocation_unknown_token")["status"] == 200


def test_authorization_code_with_pkce_s256_and_rfc9207_iss(steps: Steps) -> None:
    detail = passed(steps, "authorization_code_pkce")
    assert detail["sub"]


def test_authorization_code_reuse_is_invalid_grant(steps: Steps) -> None:
    assert passed(steps, "authorization_code_reuse_rejected")["error"] == "invalid_grant"


def test_refresh_token_rotates_on_every_use(steps: Steps) -> None:
    assert passed(steps, "refresh_token_rotation")["rotations"] == 2


def test_dpop_bound_token_works_with_a_proof_and_not_as_bearer(steps: Steps) -> None:
    detail = passed(steps, "dpop")
    assert detail["token_type"] == "dpop"
    assert detail["resource_status"] == 200 and detail["as_bearer"] == 401
