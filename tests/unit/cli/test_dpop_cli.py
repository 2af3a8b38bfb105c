"""`strongroom dpop keygen|proof` and `strongroom token --dpop-key`."""

from __future__ import annotations

import base64
import json
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strongroom.auth.dpop_client import generate_key, key_pem, load_key, thumbprint
from strongroom.auth.rfc9449_dpop import (
    DpopNonces,
    access_token_hash,
    derive_nonce_key,
    verify_proof,
)
from strongroom.cli.main import app

runner = CliRunner()
URL = "https://localhost:8443/v1/transfers"


class MemoryReplayCache:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first_use(self, jti: str, expires_at: float) -> bool:
        if jti in self.seen:
            return False
        self.seen.add(jti)
        return True


def said(result: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def decode(segment: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(value, dict)
    return value


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "dpop.pem"
    result = runner.invoke(app, ["dpop", "keygen", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


# --- keygen ---------------------------------------------------------------------------------


def test_keygen_writes_a_p256_pem_readable_by_its_owner_only(key_file: Path) -> None:
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = load_key(key_file.read_bytes())
    assert key.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_keygen_ed25519_reports_the_thumbprint_of_the_key_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ed.pem"
    result = runner.invoke(
        app, ["dpop", "keygen", "--out", str(path), "--alg", "Ed25519", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["alg"] == "Ed25519" and out["jwk"]["kty"] == "OKP" and "d" not in out["jwk"]
    assert out["jkt"] == thumbprint(load_key(path.read_bytes()))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_keeps_an_existing_file_unless_forced(key_file: Path) -> None:
    before = key_file.read_bytes()
    refused = runner.invoke(app, ["dpop", "keygen", "--out", str(key_file)])
    assert refused.exit_code == 1 and "--force" in said(refused)
    assert key_file.read_bytes() == before
    key_file.chmod(0o644)
    forced = runner.invoke(app, ["dpop", "keygen", "--out", str(key_file), "--force"])
    assert forced.exit_code == 0, forced.output
    assert key_file.read_bytes() != before
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]  # no temp file left


# --- proof ----------------------------------------------------------------------------------


def proof(key_file: Path, *extra: str, method: str = "POST", url: str = URL) -> str:
    args = ["dpop", "proof", "--key", str(key_file), "--method", method, "--url", url, *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    return lines[0]


def test_proof_prints_a_dpop_jwt_for_the_request(key_file: Path) -> None:
    value = proof(key_file)
    header, claims = decode(value.split(".")[0]), decode(value.split(".")[1])
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert header["jwk"]["kty"] == "EC" and "d" not in header["jwk"]
    assert claims["htm"] == "POST" and claims["htu"] == URL
    assert isinstance(claims["iat"], int) and claims["jti"]
    assert "ath" not in claims and "nonce" not in claims


def test_proof_with_token_and_nonce_passes_the_servers_resource_check(key_file: Path) -> None:
    nonces = DpopNonces(derive_nonce_key("pod secret"), 60)
    nonce = nonces.current(time.time())
    value = proof(key_file, "--token", "tok.en.value", "--nonce", nonce)
    claims = decode(value.split(".")[1])
    assert claims["ath"] == access_token_hash("tok.en.value") and claims["nonce"] == nonce
    verified = verify_proof(
        value,
        method="POST",
        url=URL,
        now=time.time(),
        window_s=60,
        leeway_s=30,
        replay_cache=MemoryReplayCache(),
        nonces=nonces,
        access_token="tok.en.value",
        expected_jkt=thumbprint(load_key(key_file.read_bytes())),
    )
    assert verified.htm == "POST"


def test_each_proof_has_a_new_jti(key_file: Path) -> None:
    first, second = proof(key_file), proof(key_file)
    assert decode(first.split(".")[1])["jti"] != decode(second.split(".")[1])["jti"]


def test_an_empty_nonce_means_none_so_shell_variables_can_start_unset(key_file: Path) -> None:
    assert "nonce" not in decode(proof(key_file, "--nonce", "").split(".")[1])


def test_proof_strips_the_query_from_htu(key_file: Path) -> None:
    value = proof(key_file, method="GET", url="https://localhost:8443/v1/accounts?kind=system")
    assert decode(value.split(".")[1])["htu"] == "https://localhost:8443/v1/accounts"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "POST", "--url", "/v1/transfers"], "absolute http(s)"),
        (["--method", "PO ST", "--url", URL], "not an HTTP method"),
    ],
)
def test_proof_refuses_bad_input_readably(key_file: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["dpop", "proof", "--key", str(key_file), *args])
    assert result.exit_code == 1
    assert message in said(result) and "Traceback" not in said(result)


def test_proof_with_a_missing_or_wrong_key_file_fails_readably(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["dpop", "proof", "--key", str(tmp_path / "nope.pem"), "--method", "GET", "--url", URL]
    )
    assert missing.exit_code == 1 and "cannot read" in said(missing)
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    wrong = runner.invoke(
        app, ["dpop", "proof", "--key", str(junk), "--method", "GET", "--url", URL]
    )
    assert wrong.exit_code == 1 and "not an unencrypted" in said(wrong)


# --- token --dpop-key -------------------------------------------------------------------------


class TokenEndpoint:
    """A stand-in token endpoint: demands a nonce first (RFC 9449 §8), as the platform does."""

    def __init__(self, token_type: str = "DPoP") -> None:
        self.token_type = token_type
        self.nonces = DpopNonces(derive_nonce_key("pod secret"), 60)
        self.proofs: list[str] = []
        self.url = ""


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    state = TokenEndpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            proof_value = self.headers.get("DPoP")
            state.proofs.append(proof_value or "")
            nonce = state.nonces.current(time.time())
            if proof_value is None:  # as for a client holding transfers:write
                self.reply(400, {"error": "invalid_dpop_proof"}, {})
                return
            if "nonce" not in decode(proof_value.split(".")[1]):
                self.reply(400, {"error": "use_dpop_nonce"}, {"DPoP-Nonce": nonce})
                return
            body = {"access_token": "bound-token", "token_type": state.token_type}
            self.reply(200, body, {"DPoP-Nonce": nonce})

        def reply(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def token(endpoint: TokenEndpoint, key_file: Path, tmp_path: Path) -> Any:
    return runner.invoke(
        app,
        [
            "token",
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--url",
            endpoint.url,
            "--dpop-key",
            str(key_file),
            "--data-dir",
            str(tmp_path),
        ],
    )


def test_token_with_dpop_key_retries_once_with_the_servers_nonce(
    endpoint: TokenEndpoint, key_file: Path, tmp_path: Path
) -> None:
    result = token(endpoint, key_file, tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "bound-token"
    assert len(endpoint.proofs) == 2
    assert "nonce" not in decode(endpoint.proofs[0].split(".")[1])
    verified = verify_proof(
        endpoint.proofs[1],
        method="POST",
        url=endpoint.url,
        now=time.time(),
        window_s=60,
        leeway_s=30,
        replay_cache=MemoryReplayCache(),
        nonces=endpoint.nonces,
    )
    assert verified.jkt == thumbprint(load_key(key_file.read_bytes()))
    assert verified.ath is None  # the token endpoint is not a resource request


def test_token_refuses_a_bearer_answer_to_a_dpop_request(
    endpoint: TokenEndpoint, key_file: Path, tmp_path: Path
) -> None:
    endpoint.token_type = "Bearer"
    result = token(endpoint, key_file, tmp_path)
    assert result.exit_code == 1
    assert "did not bind the token" in said(result) and "bound-token" not in said(result)


def test_token_without_a_dpop_key_where_one_is_required_says_how_to_get_one(
    endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        [
            "token",
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--url",
            endpoint.url,
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "invalid_dpop_proof" in said(result) and "--dpop-key" in said(result)
    assert endpoint.proofs == [""]


def test_token_with_an_unreadable_dpop_key_sends_nothing(
    endpoint: TokenEndpoint, tmp_path: Path
) -> None:
    result = token(endpoint, tmp_path / "missing.pem", tmp_path)
    assert result.exit_code == 1 and "cannot read" in said(result)
    assert endpoint.proofs == []


def test_a_key_generated_elsewhere_works_too(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(key_pem(generate_key("Ed25519")))
    path.chmod(0o600)
    value = proof(path)
    assert decode(value.split(".")[0])["alg"] == "Ed25519"
