"""RFC 9449 DPoP proofs: every check of §4.3, key thumbprints, nonces, replay."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey
from tests.dpop_proofs import DpopKey, b64url

from strongroom.auth.rfc9449_dpop import (
    PROOF_BYTES_MAX,
    DpopNonces,
    DpopProof,
    InvalidDpopProof,
    UseDpopNonce,
    access_token_hash,
    derive_nonce_key,
    normalize_htu,
    replay_key,
    verify_proof,
)

NOW = 1_700_000_000.0
URL = "https://api.strongroom.test/v1/clients"
WINDOW_S = 60.0
LEEWAY_S = 30.0
TOKEN = "eyJhbGciOiJFZDI1NTE5In0.eyJzdWIiOiJ4In0.c2ln"
NONCES = DpopNonces(derive_nonce_key("shared secret of every pod"), 60)


class MemoryReplayCache:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def first_use(self, jti: str, expires_at: float) -> bool:
        if jti in self.seen:
            return False
        self.seen[jti] = expires_at
        return True


def check(proof: str, **overrides: Any) -> DpopProof:
    arguments: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "now": NOW,
        "window_s": WINDOW_S,
        "leeway_s": LEEWAY_S,
        "replay_cache": MemoryReplayCache(),
    }
    arguments.update(overrides)
    return verify_proof(proof, **arguments)


@pytest.fixture(scope="module", params=["ES256", "Ed25519"])
def key(request: pytest.FixtureRequest) -> DpopKey:
    return DpopKey(request.param)


@pytest.fixture(scope="module")
def es256() -> DpopKey:
    return DpopKey("ES256")


def reason(proof: str, **overrides: Any) -> str:
    with pytest.raises(InvalidDpopProof) as caught:
        check(proof, **overrides)
    return caught.value.reason


# --- accepted proofs ----------------------------------------------------------------------


def test_valid_proof_yields_the_rfc7638_thumbprint_of_its_key(key: DpopKey) -> None:
    verified = check(key.proof("GET", URL, iat=NOW, jti="j-1"))
    assert verified.jkt == key.jkt
    assert (verified.jti, verified.htm, verified.htu, verified.iat) == ("j-1", "GET", URL, NOW)


def test_resource_proof_with_matching_ath_and_key_is_accepted(key: DpopKey) -> None:
    proof = key.proof("GET", URL, iat=NOW, access_token=TOKEN)
    verified = check(proof, access_token=TOKEN, expected_jkt=key.jkt)
    assert verified.ath == access_token_hash(TOKEN)


def test_access_token_hash_is_base64url_sha256() -> None:
    assert access_token_hash(TOKEN) == b64url(hashlib.sha256(TOKEN.encode()).digest())


@pytest.mark.parametrize(
    "presented",
    [
        "https://API.Strongroom.TEST/v1/clients",
        "HTTPS://api.strongroom.test:443/v1/clients",
        "https://api.strongroom.test/v1/clients?page=2",
        "https://api.strongroom.test/v1/clients#frag",
        "https://api.strongroom.test/v1/%63lients",
        "https://api.strongroom.test/v1/./x/../clients",
    ],
)
def test_htu_compares_normalised_without_query_or_fragment(es256: DpopKey, presented: str) -> None:
    assert check(es256.proof("GET", presented, iat=NOW)).jkt == es256.jkt


def test_iat_at_the_edges_of_the_window_is_accepted(es256: DpopKey) -> None:
    check(es256.proof("GET", URL, iat=NOW - WINDOW_S))
    check(es256.proof("GET", URL, iat=NOW + LEEWAY_S))


# --- header checks ------------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "DPOP+JWT", "application/dpop+jwt", 1])
def test_wrong_typ_is_refused(es256: DpopKey, typ: object) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW, header={"typ": typ})) == "typ"


def test_missing_typ_is_refused(es256: DpopKey) -> None:
    proof = es256.proof("GET", URL, iat=NOW)
    header = json.loads(_b64decode(proof.split(".")[0]))
    del header["typ"]
    forged = f"{b64url(json.dumps(header).encode())}.{proof.split('.', 1)[1]}"
    assert reason(forged) == "typ"


def test_alg_none_is_refused(es256: DpopKey) -> None:
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": es256.public_jwk}
    claims = {"jti": "x", "htm": "GET", "htu": URL, "iat": NOW}
    unsigned = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."
    assert reason(unsigned) == "malformed"
    assert reason(unsigned + "AA") == "alg_not_allowed"


def test_hmac_signed_proof_is_refused() -> None:
    secret = OctKey.generate_key(256)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict(private=False)}
    claims = {"jti": "x", "htm": "GET", "htu": URL, "iat": int(NOW)}
    proof = jwt.encode(header, claims, secret, algorithms=["HS256"])
    assert reason(proof) == "alg_not_allowed"


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "ES384", "PS256", "es256"])
def test_algorithms_outside_the_allowlist_are_refused(es256: DpopKey, alg: str) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW, header={"alg": alg})) == "alg_not_allowed"


def test_jwk_with_private_key_is_refused(es256: DpopKey) -> None:
    private = dict(es256.key.as_dict(private=True))
    assert reason(es256.proof("GET", URL, iat=NOW, header={"jwk": private})) == "jwk_private"


def test_jwk_of_another_type_than_alg_needs_is_refused() -> None:
    okp = DpopKey("Ed25519")
    ec = DpopKey("ES256")
    assert reason(ec.proof("GET", URL, iat=NOW, header={"jwk": okp.public_jwk})) == "jwk"


def test_missing_jwk_is_refused(es256: DpopKey) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW, header={"jwk": None})) == "jwk"


def test_ec_point_off_the_curve_is_refused(es256: DpopKey) -> None:
    bad = dict(es256.public_jwk, y=b64url(b"\x01" * 32))
    assert reason(es256.proof("GET", URL, iat=NOW, header={"jwk": bad})) == "jwk"


def test_crit_header_is_refused(es256: DpopKey) -> None:
    proof = es256.proof("GET", URL, iat=NOW, header={"crit": ["exp"], "exp": 1})
    assert reason(proof) == "crit"


def test_proof_signed_by_another_key_than_its_jwk_is_refused(es256: DpopKey) -> None:
    other = DpopKey("ES256")
    forged = other.proof("GET", URL, iat=NOW, header={"jwk": es256.public_jwk})
    assert reason(forged) == "signature"


# --- claim checks -------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
def test_missing_required_claim_is_refused(es256: DpopKey, claim: str) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW, drop=(claim,))) == "missing_claim"


@pytest.mark.parametrize(
    "claims",
    [{"jti": ""}, {"jti": 7}, {"iat": "now"}, {"iat": True}, {"htu": ""}, {"jti": "x" * 257}],
)
def test_ill_typed_claim_is_refused(es256: DpopKey, claims: dict[str, Any]) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW, claims=claims)) == "invalid_claim"


@pytest.mark.parametrize("method", ["POST", "get", "HEAD"])
def test_wrong_htm_is_refused(es256: DpopKey, method: str) -> None:
    assert reason(es256.proof(method, URL, iat=NOW)) == "htm"


@pytest.mark.parametrize(
    "htu",
    [
        "https://evil.test/v1/clients",
        "http://api.strongroom.test/v1/clients",
        "https://api.strongroom.test:8443/v1/clients",
        "https://api.strongroom.test/v1/clients/",
        "https://api.strongroom.test/v1/accounts",
        "https://user@api.strongroom.test/v1/clients",
        "/v1/clients",
        "not a url",
    ],
)
def test_wrong_htu_is_refused(es256: DpopKey, htu: str) -> None:
    assert reason(es256.proof("GET", htu, iat=NOW)) == "htu"


def test_proof_older_than_the_window_is_refused(es256: DpopKey) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW - WINDOW_S - 1)) == "iat_too_old"


def test_proof_from_the_future_is_refused(es256: DpopKey) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW + LEEWAY_S + 1)) == "iat_in_future"


def test_resource_proof_without_ath_is_refused(es256: DpopKey) -> None:
    assert reason(es256.proof("GET", URL, iat=NOW), access_token=TOKEN) == "missing_claim"


def test_ath_of_another_token_is_refused(es256: DpopKey) -> None:
    proof = es256.proof("GET", URL, iat=NOW, access_token=TOKEN + "x")
    assert reason(proof, access_token=TOKEN) == "ath"


def test_proof_by_another_key_than_the_token_is_bound_to_is_refused(es256: DpopKey) -> None:
    other = DpopKey("ES256")
    proof = other.proof("GET", URL, iat=NOW, access_token=TOKEN)
    assert reason(proof, access_token=TOKEN, expected_jkt=es256.jkt) == "key_mismatch"


def test_oversized_proof_is_refused(es256: DpopKey) -> None:
    proof = es256.proof("GET", URL, iat=NOW, claims={"pad": "x" * PROOF_BYTES_MAX})
    assert reason(proof) == "too_large"


# --- replay -------------------------------------------------------------------------------


def test_replayed_proof_is_refused(es256: DpopKey) -> None:
    cache = MemoryReplayCache()
    proof = es256.proof("GET", URL, iat=NOW)
    check(proof, replay_cache=cache)
    assert reason(proof, replay_cache=cache) == "replayed"


def test_new_proof_reusing_a_jti_is_refused(es256: DpopKey) -> None:
    cache = MemoryReplayCache()
    check(es256.proof("GET", URL, iat=NOW, jti="same"), replay_cache=cache)
    assert reason(es256.proof("GET", URL, iat=NOW + 1, jti="same"), replay_cache=cache) == (
        "replayed"
    )


def test_refused_proof_does_not_spend_its_jti(es256: DpopKey) -> None:
    cache = MemoryReplayCache()
    reason(es256.proof("POST", URL, iat=NOW, jti="j"), replay_cache=cache)
    check(es256.proof("GET", URL, iat=NOW, jti="j"), replay_cache=cache)


def test_replay_entry_outlives_the_proofs_acceptance_window(es256: DpopKey) -> None:
    cache = MemoryReplayCache()
    check(es256.proof("GET", URL, iat=NOW, jti="j"), replay_cache=cache)
    assert cache.seen == {replay_key(es256.jkt, "j"): NOW + WINDOW_S + LEEWAY_S}


def test_replay_keys_are_scoped_by_key_and_fixed_width() -> None:
    assert replay_key("a", "x") != replay_key("b", "x")
    assert len(replay_key("a", "x" * 256)) == 43


# --- nonces -------------------------------------------------------------------------------


def test_proof_without_nonce_asks_for_one(es256: DpopKey) -> None:
    with pytest.raises(UseDpopNonce) as caught:
        check(es256.proof("GET", URL, iat=NOW), nonces=NONCES)
    assert caught.value.error == "use_dpop_nonce" and caught.value.reason == "nonce_missing"


def test_proof_with_the_current_nonce_is_accepted(es256: DpopKey) -> None:
    nonce = NONCES.current(NOW)
    assert check(es256.proof("GET", URL, iat=NOW, nonce=nonce), nonces=NONCES).nonce == nonce


def test_previous_steps_nonce_is_still_accepted(es256: DpopKey) -> None:
    nonce = NONCES.current(NOW - 60)
    check(es256.proof("GET", URL, iat=NOW, nonce=nonce), nonces=NONCES)


@pytest.mark.parametrize("nonce", ["made-up", "", None])
def test_stale_or_unknown_nonce_asks_for_a_new_one(es256: DpopKey, nonce: str | None) -> None:
    claims = {"nonce": NONCES.current(NOW - 120) if nonce is None else nonce}
    with pytest.raises((UseDpopNonce, InvalidDpopProof)):
        check(es256.proof("GET", URL, iat=NOW, claims=claims), nonces=NONCES)


def test_two_steps_old_nonce_asks_for_a_new_one(es256: DpopKey) -> None:
    with pytest.raises(UseDpopNonce) as caught:
        check(es256.proof("GET", URL, iat=NOW, nonce=NONCES.current(NOW - 120)), nonces=NONCES)
    assert caught.value.reason == "nonce_stale"


def test_every_pod_accepts_every_pods_nonce() -> None:
    pod_a = DpopNonces(derive_nonce_key("kek"), 60)
    pod_b = DpopNonces(derive_nonce_key("kek"), 60)
    assert pod_b.is_valid(pod_a.current(NOW), NOW)


def test_nonces_keyed_from_another_secret_are_refused() -> None:
    ours = DpopNonces(derive_nonce_key("kek"), 60)
    theirs = DpopNonces(derive_nonce_key("other kek"), 60)
    assert not ours.is_valid(theirs.current(NOW), NOW)


def test_nonce_key_is_domain_separated_from_the_secret() -> None:
    key = derive_nonce_key("kek")
    assert len(key) == 32 and key != hashlib.sha256(b"kek").digest()
    assert not hmac.compare_digest(key, derive_nonce_key("kek2"))


# --- htu normalisation --------------------------------------------------------------------


@given(
    st.sampled_from(["http", "https", "HTTPS"]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,20}(\.[a-zA-Z]{2,5}){0,2}", fullmatch=True),
    st.lists(st.from_regex(r"[A-Za-z0-9._~%-]{0,8}", fullmatch=True), max_size=5),
)
def test_htu_normalisation_is_idempotent(scheme: str, host: str, segments: list[str]) -> None:
    url = f"{scheme}://{host}/" + "/".join(segments)
    try:
        once = normalize_htu(url)
    except ValueError:
        return
    assert normalize_htu(once) == once


# --- tampering ----------------------------------------------------------------------------


TAMPER_KEY = DpopKey("ES256")
TAMPER_ED_KEY = DpopKey("Ed25519")
TAMPER_PROOFS = [
    TAMPER_KEY.proof("GET", URL, iat=NOW, access_token=TOKEN),
    TAMPER_ED_KEY.proof("GET", URL, iat=NOW, access_token=TOKEN),
]
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(TAMPER_PROOFS))), st.data())
def test_any_changed_character_is_refused(which: int, data: st.DataObject) -> None:
    proof = TAMPER_PROOFS[which]
    position = data.draw(st.integers(0, len(proof) - 1))
    replacement = data.draw(st.sampled_from(_ALPHABET).filter(lambda c: c != proof[position]))
    tampered = proof[:position] + replacement + proof[position + 1 :]
    with pytest.raises(InvalidDpopProof):
        check(tampered, access_token=TOKEN)


@settings(max_examples=100)
@given(st.integers(0, len(TAMPER_PROOFS[0]) - 1), st.integers(1, 8))
def test_truncated_or_cut_proofs_are_refused(start: int, length: int) -> None:
    proof = TAMPER_PROOFS[0]
    with pytest.raises(InvalidDpopProof):
        check(proof[:start] + proof[start + length :], access_token=TOKEN)


def test_untampered_tamper_fixtures_are_valid() -> None:
    for proof in TAMPER_PROOFS:
        check(proof, access_token=TOKEN)


def _b64decode(segment: str) -> bytes:
    import base64  # noqa: PLC0415

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
