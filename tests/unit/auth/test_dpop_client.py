"""The client side of DPoP: proofs made by ``dpop_client`` pass the server's own checks
(``rfc9449_dpop.verify_proof``) exactly when they should, and keys round-trip."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey, OKPKey

from strongroom.auth.dpop_client import (
    generate_key,
    key_alg,
    key_pem,
    load_key,
    make_proof,
    public_jwk,
    target_uri,
    thumbprint,
)
from strongroom.auth.keys import PrivateKey
from strongroom.auth.rfc9449_dpop import (
    DpopNonces,
    DpopProof,
    InvalidDpopProof,
    UseDpopNonce,
    access_token_hash,
    derive_nonce_key,
    verify_proof,
)

NOW = 1_700_000_000.0
URL = "https://localhost:8443/v1/transfers"
TOKEN = "eyJhbGciOiJFZDI1NTE5In0.eyJzdWIiOiJ4In0.c2ln"
NONCES = DpopNonces(derive_nonce_key("shared secret of every pod"), 60)


class MemoryReplayCache:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first_use(self, jti: str, expires_at: float) -> bool:
        if jti in self.seen:
            return False
        self.seen.add(jti)
        return True


def verify(proof: str, **overrides: Any) -> DpopProof:
    arguments: dict[str, Any] = {
        "method": "POST",
        "url": URL,
        "now": NOW,
        "window_s": 60.0,
        "leeway_s": 30.0,
        "replay_cache": MemoryReplayCache(),
    }
    arguments.update(overrides)
    return verify_proof(proof, **arguments)


def decode(segment: str) -> dict[str, Any]:
    value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module", params=["ES256", "Ed25519"])
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return generate_key(request.param)


# --- accepted by the server -----------------------------------------------------------------


def test_proof_passes_the_servers_checks_and_names_the_keys_thumbprint(key: PrivateKey) -> None:
    verified = verify(make_proof(key, "POST", URL, now=NOW))
    assert verified.jkt == thumbprint(key)
    assert (verified.htm, verified.htu, verified.iat) == ("POST", URL, int(NOW))
    assert verified.nonce is None and verified.ath is None


def test_proof_with_nonce_passes_a_server_that_demands_one(key: PrivateKey) -> None:
    nonce = NONCES.current(NOW)
    verified = verify(make_proof(key, "POST", URL, nonce=nonce, now=NOW), nonces=NONCES)
    assert verified.nonce == nonce


def test_resource_proof_with_ath_and_nonce_passes_for_the_bound_token(key: PrivateKey) -> None:
    proof = make_proof(key, "POST", URL, access_token=TOKEN, nonce=NONCES.current(NOW), now=NOW)
    verified = verify(proof, nonces=NONCES, access_token=TOKEN, expected_jkt=thumbprint(key))
    assert verified.ath == access_token_hash(TOKEN)


def test_every_proof_has_a_new_jti_so_consecutive_proofs_both_pass(key: PrivateKey) -> None:
    cache = MemoryReplayCache()
    first = verify(make_proof(key, "POST", URL, now=NOW), replay_cache=cache)
    second = verify(make_proof(key, "POST", URL, now=NOW), replay_cache=cache)
    assert first.jti != second.jti


def test_query_and_fragment_are_left_out_of_htu(key: PrivateKey) -> None:
    proof = make_proof(key, "GET", "https://localhost:8443/v1/accounts?kind=system#x", now=NOW)
    assert decode(proof.split(".")[1])["htu"] == "https://localhost:8443/v1/accounts"
    verify(proof, method="GET", url="https://localhost:8443/v1/accounts")


def test_header_carries_typ_alg_and_the_public_jwk_only(key: PrivateKey) -> None:
    header = decode(make_proof(key, "POST", URL, now=NOW).split(".")[0])
    assert header == {"typ": "dpop+jwt", "alg": key_alg(key), "jwk": public_jwk(key)}
    assert "d" not in header["jwk"]


def test_es256_signature_is_raw_r_and_s() -> None:
    proof = make_proof(generate_key("ES256"), "POST", URL, now=NOW)
    signature = proof.split(".")[2]
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 64


# --- refused by the server ------------------------------------------------------------------


def reason(proof: str, **overrides: Any) -> str:
    with pytest.raises(InvalidDpopProof) as caught:
        verify(proof, **overrides)
    return caught.value.reason


def test_proof_for_another_method_is_refused(key: PrivateKey) -> None:
    assert reason(make_proof(key, "GET", URL, now=NOW)) == "htm"


def test_proof_for_another_url_is_refused(key: PrivateKey) -> None:
    other = "https://localhost:8443/v1/accounts"
    assert reason(make_proof(key, "POST", other, now=NOW)) == "htu"


def test_proof_for_another_host_is_refused(key: PrivateKey) -> None:
    other = "https://attacker.example/v1/transfers"
    assert reason(make_proof(key, "POST", other, now=NOW)) == "htu"


def test_proof_without_nonce_gets_the_nonce_challenge(key: PrivateKey) -> None:
    with pytest.raises(UseDpopNonce):
        verify(make_proof(key, "POST", URL, now=NOW), nonces=NONCES)


def test_proof_for_another_token_is_refused(key: PrivateKey) -> None:
    proof = make_proof(key, "POST", URL, access_token="another-token", now=NOW)
    assert reason(proof, access_token=TOKEN) == "ath"


def test_proof_without_ath_is_refused_on_a_resource_request(key: PrivateKey) -> None:
    assert reason(make_proof(key, "POST", URL, now=NOW), access_token=TOKEN) == "missing_claim"


def test_proof_by_another_key_than_the_tokens_is_refused(key: PrivateKey) -> None:
    other = thumbprint(generate_key(key_alg(key)))
    proof = make_proof(key, "POST", URL, access_token=TOKEN, now=NOW)
    assert reason(proof, access_token=TOKEN, expected_jkt=other) == "key_mismatch"


def test_stale_proof_is_refused(key: PrivateKey) -> None:
    assert reason(make_proof(key, "POST", URL, now=NOW - 120)) == "iat_too_old"


# --- input the client refuses ---------------------------------------------------------------


@pytest.mark.parametrize("method", ["", "PO ST", "POST\n", "X" * 33])
def test_a_method_that_is_not_an_http_token_is_refused(key: PrivateKey, method: str) -> None:
    with pytest.raises(ValueError, match="HTTP method"):
        make_proof(key, method, URL)


@pytest.mark.parametrize(
    "url",
    ["/v1/transfers", "ftp://localhost/x", "https://user@localhost/x", "https://h:99999/x"],
)
def test_a_url_the_server_could_not_match_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        target_uri(url)


def test_an_empty_nonce_is_refused(key: PrivateKey) -> None:
    with pytest.raises(ValueError, match="nonce"):
        make_proof(key, "POST", URL, nonce="")


def test_unknown_alg_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported DPoP alg"):
        generate_key("RS256")


# --- keys -----------------------------------------------------------------------------------


def test_key_round_trips_through_pem(key: PrivateKey) -> None:
    loaded = load_key(key_pem(key))
    assert thumbprint(loaded) == thumbprint(key)
    assert key_alg(loaded) == key_alg(key)


def test_thumbprint_agrees_with_an_independent_jose_library(key: PrivateKey) -> None:
    other = ECKey if key_alg(key) == "ES256" else OKPKey
    assert thumbprint(key) == other.import_key(key_pem(key)).thumbprint()


@pytest.mark.parametrize(
    "pem",
    [
        b"not a key",
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        generate_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"password"),
        ),
    ],
    ids=["garbage", "p384", "encrypted"],
)
def test_only_unencrypted_p256_and_ed25519_keys_load(pem: bytes) -> None:
    with pytest.raises(ValueError, match="not an unencrypted"):
        load_key(pem)
