"""RFC 7523 private_key_jwt: registered key sets and every check of §3 on an assertion.

Assertions are made with joserfc (and, for headers joserfc refuses to write, signed with
``cryptography`` through ``tests.dpop_proofs.DpopKey.sign_raw``), independently of the
server's code.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import OctKey
from tests.dpop_proofs import DpopKey, b64url

from strongroom.auth.rfc7523_client_assertion import (
    ASSERTION_BYTES_MAX,
    JWKS_KEYS_MAX,
    REPLAY_KEY_PREFIX,
    InvalidClientAssertion,
    InvalidClientJwks,
    VerifiedClientAssertion,
    canonical_jwks,
    parse_client_jwks,
    replay_key,
    unverified_client_id,
    verify_client_assertion,
)

NOW = 1_700_000_000.0
ISSUER = "https://auth.strongroom.test"
TOKEN_ENDPOINT = f"{ISSUER}/oauth2/token"
AUDIENCES = (ISSUER, TOKEN_ENDPOINT)
CLIENT_ID = "sr_client"
LEEWAY_S = 30.0
LIFETIME_MAX_S = 300.0


class MemoryReplayCache:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}

    def first_use(self, jti: str, expires_at: float) -> bool:
        if jti in self.seen:
            return False
        self.seen[jti] = expires_at
        return True


def jwks_of(*keys: DpopKey, kids: tuple[str | None, ...] | None = None) -> str:
    members = []
    for index, key in enumerate(keys):
        jwk = key.public_jwk
        kid = (kids or tuple(f"k{i}" for i in range(len(keys))))[index]
        if kid is not None:
            jwk["kid"] = kid
        members.append(jwk)
    return json.dumps({"keys": members})


def claims_for(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": TOKEN_ENDPOINT,
        "exp": int(NOW + 60),
        "iat": int(NOW),
        "jti": "jti-1",
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def assertion(
    key: DpopKey, *, kid: str | None = "k0", header: dict[str, Any] | None = None, **claims: Any
) -> str:
    """Signed with joserfc unless the header needs what joserfc refuses to write."""
    head: dict[str, Any] = {"alg": key.alg, **({"kid": kid} if kid is not None else {})}
    if header is not None:
        return key.sign_raw({**head, **header}, claims_for(**claims))
    return jwt.encode(head, claims_for(**claims), key.key, algorithms=[key.alg])


def check(value: str, jwks: str | None, **overrides: Any) -> VerifiedClientAssertion:
    arguments: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "jwks": jwks,
        "audiences": AUDIENCES,
        "now": NOW,
        "leeway_s": LEEWAY_S,
        "lifetime_max_s": LIFETIME_MAX_S,
        "replay_cache": MemoryReplayCache(),
    }
    arguments.update(overrides)
    return verify_client_assertion(value, **arguments)


def reason(value: str, jwks: str | None, **overrides: Any) -> str:
    with pytest.raises(InvalidClientAssertion) as caught:
        check(value, jwks, **overrides)
    assert caught.value.error == "invalid_client"
    return caught.value.reason


@pytest.fixture(scope="module", params=["ES256", "Ed25519"])
def key(request: pytest.FixtureRequest) -> DpopKey:
    return DpopKey(request.param)


@pytest.fixture(scope="module")
def es256() -> DpopKey:
    return DpopKey("ES256")


@pytest.fixture(scope="module")
def es256_jwks(es256: DpopKey) -> str:
    return jwks_of(es256)


# --- accepted assertions ---------------------------------------------------------------


def test_valid_assertion_authenticates_the_client(key: DpopKey) -> None:
    verified = check(assertion(key), jwks_of(key))
    assert verified == VerifiedClientAssertion(CLIENT_ID, "jti-1", NOW + 60, "k0")


@pytest.mark.parametrize(
    "aud", [ISSUER, TOKEN_ENDPOINT, [TOKEN_ENDPOINT], ["https://other.example", ISSUER]]
)
def test_audience_may_be_the_issuer_or_the_token_endpoint(
    es256: DpopKey, es256_jwks: str, aud: object
) -> None:
    check(assertion(es256, aud=aud), es256_jwks)


def test_assertion_without_kid_is_checked_against_each_registered_key(es256: DpopKey) -> None:
    other = DpopKey("ES256")
    verified = check(assertion(es256, kid=None), jwks_of(other, es256, kids=("a", "b")))
    assert verified.kid == "b"


def test_kid_selects_the_registered_key_among_several(es256: DpopKey) -> None:
    ed = DpopKey("Ed25519")
    jwks = jwks_of(ed, es256, kids=("ed", "ec"))
    assert check(assertion(es256, kid="ec"), jwks).kid == "ec"
    assert check(assertion(ed, kid="ed"), jwks).kid == "ed"


@pytest.mark.parametrize("typ", ["JWT", "jwt", "client-authentication+jwt"])
def test_generic_or_explicit_typ_is_accepted(es256: DpopKey, es256_jwks: str, typ: str) -> None:
    check(assertion(es256, header={"typ": typ}), es256_jwks)


def test_times_within_the_leeway_are_accepted(es256: DpopKey, es256_jwks: str) -> None:
    just_expired = assertion(es256, exp=int(NOW - LEEWAY_S + 1), iat=int(NOW - 100))
    check(just_expired, es256_jwks)
    early = assertion(es256, nbf=int(NOW + LEEWAY_S), iat=int(NOW + LEEWAY_S))
    check(early, es256_jwks)
    check(assertion(es256, exp=int(NOW + LIFETIME_MAX_S + LEEWAY_S)), es256_jwks)


def test_iat_and_nbf_are_optional(es256: DpopKey, es256_jwks: str) -> None:
    check(assertion(es256, iat=None, nbf=None), es256_jwks)


# --- refused assertions ----------------------------------------------------------------


def test_wrong_audience_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    for aud in ("https://evil.example/oauth2/token", f"{ISSUER}/oauth2/introspect", []):
        assert reason(assertion(es256, aud=aud), es256_jwks) in {"aud", "invalid_claim"}
    assert reason(assertion(es256, aud="https://evil.example"), es256_jwks) == "aud"


def test_expired_assertion_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    assert reason(assertion(es256, exp=int(NOW - LEEWAY_S)), es256_jwks) == "expired"


def test_exp_beyond_the_lifetime_limit_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    value = assertion(es256, exp=int(NOW + LIFETIME_MAX_S + LEEWAY_S + 1))
    assert reason(value, es256_jwks) == "exp_too_far"


def test_assertion_not_yet_valid_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    assert reason(assertion(es256, nbf=int(NOW + LEEWAY_S + 1)), es256_jwks) == "not_yet_valid"
    assert reason(assertion(es256, iat=int(NOW + LEEWAY_S + 1)), es256_jwks) == "iat_in_future"


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "jti"])
def test_assertion_missing_a_required_claim_is_refused(
    es256: DpopKey, es256_jwks: str, claim: str
) -> None:
    assert reason(assertion(es256, **{claim: None}), es256_jwks) == "missing_claim"


@pytest.mark.parametrize(
    "changes",
    [{"exp": "soon"}, {"exp": True}, {"jti": ""}, {"jti": "j" * 257}, {"iat": "now"}, {"aud": 5}],
)
def test_ill_typed_claims_are_refused(
    es256: DpopKey, es256_jwks: str, changes: dict[str, Any]
) -> None:
    assert reason(assertion(es256, **changes), es256_jwks) == "invalid_claim"


def test_iss_differing_from_sub_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    assert reason(assertion(es256, iss="sr_other"), es256_jwks) == "iss_sub_mismatch"


def test_assertion_about_another_client_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    value = assertion(es256, iss="sr_other", sub="sr_other")
    assert reason(value, es256_jwks) == "client_mismatch"


def test_signature_by_an_unregistered_key_is_refused(key: DpopKey) -> None:
    stranger = DpopKey(key.alg)
    assert reason(assertion(stranger), jwks_of(key)) == "signature"


def test_unknown_kid_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    assert reason(assertion(es256, kid="not-registered"), es256_jwks) == "unknown_kid"


def test_kid_of_a_key_of_another_type_than_alg_is_refused(es256: DpopKey) -> None:
    ed = DpopKey("Ed25519")
    # Header says ES256 but names the Ed25519 key: no key can check it.
    forged = es256.sign_raw({"alg": "ES256", "kid": "ed"}, claims_for())
    assert reason(forged, jwks_of(ed, kids=("ed",))) == "no_key"


def test_alg_none_is_refused(es256_jwks: str) -> None:
    head = b64url(json.dumps({"alg": "none", "kid": "k0"}).encode())
    body = b64url(json.dumps(claims_for()).encode())
    assert reason(f"{head}.{body}.", es256_jwks) == "malformed"
    assert reason(f"{head}.{body}.AA", es256_jwks) == "alg_not_allowed"


def test_hmac_keyed_with_the_public_key_set_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    """The classic confusion: an HS256 MAC keyed with what the server knows publicly."""
    for secret in (es256_jwks, json.dumps(es256.public_jwk)):
        forged = jwt.encode(
            {"alg": "HS256", "kid": "k0"}, claims_for(), OctKey.import_key(secret.encode())
        )
        assert reason(forged, es256_jwks) == "alg_not_allowed"


@pytest.mark.parametrize("alg", ["RS256", "EdDSA", "ES384", "PS256", "HS512", ""])
def test_algorithms_outside_the_allowlist_are_refused(
    es256: DpopKey, es256_jwks: str, alg: str
) -> None:
    assert reason(assertion(es256, header={"alg": alg}), es256_jwks) == "alg_not_allowed"


@pytest.mark.parametrize("typ", ["at+jwt", "dpop+jwt", "application/at+jwt", 7])
def test_typ_of_another_kind_of_jwt_is_refused(
    es256: DpopKey, es256_jwks: str, typ: object
) -> None:
    assert reason(assertion(es256, header={"typ": typ}), es256_jwks) == "typ"


def test_critical_header_extension_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    value = assertion(es256, header={"crit": ["exp"], "exp": 1})
    assert reason(value, es256_jwks) == "crit"


def test_client_without_a_key_set_is_refused(es256: DpopKey) -> None:
    assert reason(assertion(es256), None) == "no_jwks"


def test_oversized_or_malformed_assertions_are_refused(es256_jwks: str) -> None:
    assert reason("a." * (ASSERTION_BYTES_MAX // 2) + "a", es256_jwks) == "too_large"
    for junk in ("", "abc", "a.b", "a.b.c.d.e", "a.b.c d", "e30.e30.@@"):
        assert reason(junk, es256_jwks) == "malformed"


def test_non_canonical_signature_encoding_is_refused(key: DpopKey) -> None:
    """A second spelling of the same signature bytes is not a second valid assertion."""
    value = assertion(key)
    head, body, signature = value.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 64 bytes encode to 86 chars with 4 unused bits in the last: set one of them.
    last = alphabet[alphabet.index(signature[-1]) | 1]
    forged = f"{head}.{body}.{signature[:-1]}{last}"
    assert forged != value
    assert reason(forged, jwks_of(key)) in {"malformed", "signature"}


# --- replay --------------------------------------------------------------------------------


def test_replayed_assertion_is_refused(es256: DpopKey, es256_jwks: str) -> None:
    cache = MemoryReplayCache()
    value = assertion(es256)
    check(value, es256_jwks, replay_cache=cache)
    assert reason(value, es256_jwks, replay_cache=cache) == "replayed"
    # A fresh assertion with the same jti is the same assertion as far as §3 item 7 goes.
    again = assertion(es256, exp=int(NOW + 90))
    assert reason(again, es256_jwks, replay_cache=cache) == "replayed"


def test_jti_is_remembered_until_the_assertion_expires(es256: DpopKey, es256_jwks: str) -> None:
    cache = MemoryReplayCache()
    check(assertion(es256, exp=int(NOW + 120)), es256_jwks, replay_cache=cache)
    assert cache.seen == {replay_key(CLIENT_ID, "jti-1"): NOW + 120 + LEEWAY_S}


def test_refused_assertion_burns_no_jti(es256: DpopKey, es256_jwks: str) -> None:
    cache = MemoryReplayCache()
    reason(assertion(es256, aud="https://evil.example"), es256_jwks, replay_cache=cache)
    reason(assertion(DpopKey("ES256")), es256_jwks, replay_cache=cache)
    assert cache.seen == {}
    check(assertion(es256), es256_jwks, replay_cache=cache)


def test_same_jti_of_two_clients_does_not_collide(es256: DpopKey, es256_jwks: str) -> None:
    cache = MemoryReplayCache()
    check(assertion(es256), es256_jwks, replay_cache=cache)
    other = assertion(es256, iss="sr_other", sub="sr_other")
    check(other, es256_jwks, client_id="sr_other", replay_cache=cache)


def test_replay_key_is_namespaced_and_fits_the_shared_jti_column() -> None:
    for jti in ("a", "j" * 256, "ünïcode"):
        key = replay_key(CLIENT_ID, jti)
        assert key.startswith(REPLAY_KEY_PREFIX)
        assert len(key) <= 64  # adapters.db.schema.dpop_jti.jti
    assert replay_key("a", "b.c") != replay_key("a.b", "c")


# --- the client id before verification ---------------------------------------------------


def test_unverified_client_id_is_the_sub(es256: DpopKey) -> None:
    assert unverified_client_id(assertion(es256)) == CLIENT_ID


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"iss": "sr_other"}, "iss_sub_mismatch"),
        ({"sub": None}, "missing_claim"),
        ({"sub": 7, "iss": 7}, "invalid_claim"),
        ({"sub": "x" * 65, "iss": "x" * 65}, "invalid_claim"),
    ],
)
def test_unverified_client_id_refuses_unusable_claims(
    es256: DpopKey, changes: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidClientAssertion) as caught:
        unverified_client_id(assertion(es256, **changes))
    assert caught.value.reason == expected


# --- registered key sets -----------------------------------------------------------------


def test_key_set_of_public_keys_parses(es256: DpopKey) -> None:
    ed = DpopKey("Ed25519")
    keys = parse_client_jwks(jwks_of(es256, ed, kids=("ec", None)))
    assert [(k.kid, k.alg) for k in keys] == [("ec", "ES256"), (None, "Ed25519")]


def test_key_set_with_private_key_material_is_refused(es256: DpopKey) -> None:
    private = dict(es256.key.as_dict(private=True))
    with pytest.raises(InvalidClientJwks, match="private"):
        parse_client_jwks(json.dumps({"keys": [private]}))


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c2VjcmV0"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "A" * 43},
        {"kty": "OKP", "crv": "Ed25519", "x": "short"},
        {"kty": "EC", "crv": "P-256", "x": "A" * 43, "y": "A" * 43},  # not on the curve
    ],
)
def test_unsupported_or_invalid_keys_are_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(InvalidClientJwks):
        parse_client_jwks(json.dumps({"keys": [jwk]}))


@pytest.mark.parametrize(
    "changes",
    [{"use": "enc"}, {"alg": "Ed25519"}, {"key_ops": ["encrypt"]}, {"kid": ""}],
)
def test_key_declared_for_another_use_or_alg_is_refused(
    es256: DpopKey, changes: dict[str, Any]
) -> None:
    with pytest.raises(InvalidClientJwks):
        parse_client_jwks(json.dumps({"keys": [{**es256.public_jwk, **changes}]}))


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"keys": []}', '{"keys": {}}', '{"keys": [1]}', "{" + " " * 20_000 + "}"],
)
def test_malformed_key_sets_are_refused(text: str) -> None:
    with pytest.raises(InvalidClientJwks):
        parse_client_jwks(text)


def test_key_set_limits_are_enforced(es256: DpopKey) -> None:
    with pytest.raises(InvalidClientJwks, match="share a kid"):
        parse_client_jwks(jwks_of(es256, es256, kids=("same", "same")))
    many = [DpopKey("Ed25519") for _ in range(JWKS_KEYS_MAX + 1)]
    with pytest.raises(InvalidClientJwks, match="at most"):
        parse_client_jwks(jwks_of(*many))


def test_canonical_key_set_is_compact_and_equivalent(es256: DpopKey) -> None:
    text = json.dumps({"keys": [es256.public_jwk]}, indent=4)
    stored = canonical_jwks(text)
    assert " " not in stored and "\n" not in stored
    assert json.loads(stored) == json.loads(text)
    check(assertion(es256, kid=None), stored)


# --- property: tampering is always refused -------------------------------------------------

TAMPER_KEYS = (DpopKey("ES256"), DpopKey("Ed25519"))
TAMPER_JWKS = jwks_of(*TAMPER_KEYS, kids=("ec", "ed"))
TAMPER_ASSERTIONS = (
    assertion(TAMPER_KEYS[0], kid="ec"),
    assertion(TAMPER_KEYS[1], kid="ed"),
)
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(TAMPER_ASSERTIONS))), st.data())
def test_any_changed_character_is_refused(which: int, data: st.DataObject) -> None:
    original = TAMPER_ASSERTIONS[which]
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(
        st.sampled_from(B64URL + ".=+/ ").filter(lambda c: c != original[position])
    )
    tampered = original[:position] + replacement + original[position + 1 :]
    with pytest.raises(InvalidClientAssertion):
        check(tampered, TAMPER_JWKS)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "extra"]),
        st.one_of(st.text(max_size=8), st.integers(-(2**40), 2**40), st.none()),
        min_size=1,
    )
)
def test_claims_changed_after_signing_are_refused(changes: dict[str, Any]) -> None:
    """Re-encode the payload with other claims, keep the signature: never accepted."""
    original = TAMPER_ASSERTIONS[0]
    head, _, signature = original.split(".")
    claims = {**claims_for(), **changes}
    body = b64url(json.dumps(claims).encode())
    if body == original.split(".")[1]:
        return
    with pytest.raises(InvalidClientAssertion):
        check(f"{head}.{body}.{signature}", TAMPER_JWKS)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=96))
def test_arbitrary_signatures_are_refused(signature: bytes) -> None:
    head, body, _ = TAMPER_ASSERTIONS[1].split(".")
    with pytest.raises(InvalidClientAssertion):
        check(f"{head}.{body}.{b64url(signature)}", TAMPER_JWKS)
