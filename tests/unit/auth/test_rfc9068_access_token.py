"""RFC 9068 access tokens: issuing, and every check of the verifier."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey, import_key
from tests.unit.auth.helpers import (
    AUDIENCE,
    DROP,
    ISSUER,
    LEEWAY_S,
    LIFETIME_S,
    PUBLISH_AHEAD_S,
    T0,
    FakeClock,
    active_key,
    first_boot,
    forge,
    good_claims,
    good_header,
    segment,
    sign_raw,
)

from strongroom.auth.keys import (
    KeyRing,
    SigningKey,
    b64url_decode,
    b64url_encode,
    generate_signing_key,
    plan_rotation,
    public_jwk,
)
from strongroom.auth.rfc9068_access_token import (
    AccessTokenClaims,
    AccessTokenVerifier,
    InvalidToken,
    issue_access_token,
)

ALGS = ["Ed25519", "ES256"]


class JwksSource:
    """The ``jwks`` callable: counts fetches, can fail, can change."""

    def __init__(self, keys: list[SigningKey], now: float = T0) -> None:
        self.keys = keys
        self.now = now
        self.calls = 0
        self.fail = False

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise OSError("database down")
        return KeyRing(self.keys, self.now).jwks(self.now, LIFETIME_S)


def verifier_for(
    keys: list[SigningKey], clock: FakeClock, *, cooldown: float = 5.0, cache_size: int = 0
) -> tuple[AccessTokenVerifier, JwksSource]:
    source = JwksSource(keys, clock.now)
    verifier = AccessTokenVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        leeway_s=LEEWAY_S,
        jwks=source,
        refetch_cooldown_s=cooldown,
        clock=clock,
        cache_size=cache_size,
    )
    return verifier, source


def issue(key: SigningKey, now: float = T0, **kw: Any) -> tuple[str, AccessTokenClaims]:
    args: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "subject": "client-1",
        "client_id": "client-1",
        "tenant": "tenant-1",
        "scope": {"accounts:read", "transfers:write"},
        "lifetime_s": LIFETIME_S,
        "now": now,
    }
    args.update(kw)
    return issue_access_token(key, **args)


def reason(verifier: AccessTokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# --- issuing ---------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_issued_token_has_the_rfc9068_header_and_claims(alg: str) -> None:
    key = active_key(first_boot(alg))
    token, claims = issue(key, cnf_jkt="thumb", jti="j-1")
    header_seg, payload_seg, _ = token.split(".")
    assert json.loads(b64url_decode(header_seg)) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    payload = json.loads(b64url_decode(payload_seg))
    assert payload == {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "exp": int(T0) + LIFETIME_S,
        "iat": int(T0),
        "jti": "j-1",
        "client_id": "client-1",
        "scope": "accounts:read transfers:write",
        "tenant": "tenant-1",
        "cnf": {"jkt": "thumb"},
    }
    assert claims.as_dict() == payload


def test_jti_is_random_by_default() -> None:
    key = active_key(first_boot())
    assert len({issue(key)[1].jti for _ in range(50)}) == 50


def test_retired_key_does_not_sign() -> None:
    key = replace(active_key(first_boot()), state="retired", retired_at=T0)
    with pytest.raises(ValueError, match="retired"):
        issue(key)


@pytest.mark.parametrize("alg", ALGS)
def test_joserfc_verifies_our_tokens(alg: str) -> None:
    keys = first_boot(alg)
    token, claims = issue(active_key(keys))
    key_set = KeySet.import_key_set(KeyRing(keys, T0).jwks(T0, LIFETIME_S))  # type: ignore[arg-type]
    decoded = jwt.decode(token, key_set, algorithms=[alg])
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.claims == claims.as_dict()


@pytest.mark.parametrize("alg", ALGS)
def test_we_verify_joserfc_tokens(alg: str, clock: FakeClock) -> None:
    keys = first_boot(alg)
    key = active_key(keys)
    private = import_key(key.private_pem, "OKP" if alg == "Ed25519" else "EC")
    token = jwt.encode(
        {"alg": alg, "kid": key.kid, "typ": "at+jwt"}, good_claims(), private, algorithms=[alg]
    )
    verifier, _ = verifier_for(keys, clock)
    assert verifier.verify(token).client_id == "client-1"


# --- verifying: the happy paths ----------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_valid_token_verifies_to_its_claims(alg: str, clock: FakeClock) -> None:
    keys = first_boot(alg)
    token, claims = issue(active_key(keys), cnf_jkt="jkt")
    verifier, _ = verifier_for(keys, clock)
    assert verifier.verify(token) == claims


def test_retired_but_published_key_verifies(clock: FakeClock) -> None:
    keys = first_boot()
    token, _ = issue(active_key(keys), now=clock.now)
    clock.advance(PUBLISH_AHEAD_S)
    rotated = plan_rotation(
        keys, clock.now, publish_ahead_s=PUBLISH_AHEAD_S, token_lifetime_s=LIFETIME_S, alg="Ed25519"
    )
    assert active_key(rotated).kid != active_key(keys).kid
    fresh, _ = issue(active_key(rotated), now=clock.now)
    old_token, _ = issue(active_key(keys), now=clock.now - 1)  # signed just before rotation
    verifier, _ = verifier_for(rotated, clock)
    assert verifier.verify(fresh).client_id == "client-1"
    assert verifier.verify(old_token).client_id == "client-1"
    assert reason(verifier, token) == "expired"  # the first one is long past exp


def test_next_key_is_already_trusted(clock: FakeClock) -> None:
    """Published ahead: a token from the next key verifies without any refetch."""
    keys = first_boot()
    next_key = next(k for k in keys if k.state == "next")
    verifier, source = verifier_for(keys, clock)
    verifier.verify(issue(active_key(keys))[0])
    assert verifier.verify(forge(next_key, good_header(next_key), good_claims())).sub
    assert source.calls == 1


def test_typ_with_media_type_prefix_is_accepted(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    for typ in ("application/at+jwt", "AT+JWT"):
        assert verifier.verify(forge(key, good_header(key, typ=typ), good_claims())).sub


def test_audience_array_containing_ours_is_accepted(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    claims = verifier.verify(forge(key, good_header(key), good_claims(aud=["other", AUDIENCE])))
    assert claims.aud == ("other", AUDIENCE)


# --- verifying: refusals -----------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_payload_is_refused(alg: str, clock: FakeClock) -> None:
    keys = first_boot(alg)
    token, _ = issue(active_key(keys))
    header_seg, _, sig = token.split(".")
    evil = segment(good_claims(scope="admin accounts:write"))
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, f"{header_seg}.{evil}.{sig}") == "signature"


@pytest.mark.parametrize("alg", ALGS)
def test_tampered_header_is_refused(alg: str, clock: FakeClock) -> None:
    keys = first_boot(alg)
    key = active_key(keys)
    token, _ = issue(key)
    _, payload_seg, sig = token.split(".")
    other_header = segment(
        {"typ": "at+jwt", "alg": alg, "kid": key.kid}
    )  # same meaning, other bytes
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, f"{other_header}.{payload_seg}.{sig}") == "signature"


@pytest.mark.parametrize("alg", ALGS)
def test_signature_from_another_key_with_the_same_kid_is_refused(
    alg: str, clock: FakeClock
) -> None:
    keys = first_boot(alg)
    key = active_key(keys)
    impostor = generate_signing_key(alg, T0)
    token = forge(impostor, good_header(key), good_claims())
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, token) == "signature"


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_any_single_byte_change_is_refused(data: st.DataObject) -> None:
    clock = FakeClock()
    keys = _SHARED_KEYS
    token, _ = issue(active_key(keys))
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.").filter(
            lambda c: c != token[index]
        )
    )
    mutated = token[:index] + replacement + token[index + 1 :]
    verifier, _ = verifier_for(keys, clock)
    try:
        claims = verifier.verify(mutated)
    except InvalidToken:
        return
    # base64url's last character may carry unused bits: only an identical decoding may pass.
    assert [b64url_decode(s) for s in mutated.split(".")] == [
        b64url_decode(s) for s in token.split(".")
    ]
    assert claims.client_id == "client-1"


_SHARED_KEYS = first_boot("Ed25519")


def test_alg_none_is_refused(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    unsigned = f"{segment(good_header(key, alg='none'))}.{segment(good_claims())}"
    assert reason(verifier, unsigned + ".") == "malformed"
    assert reason(verifier, unsigned + ".AAAA") == "alg_not_allowed"


def test_hs256_with_the_public_key_as_secret_is_refused(clock: FakeClock) -> None:
    """The classic algorithm confusion: HMAC keyed with the published public key."""
    keys = first_boot()
    key = active_key(keys)
    secret = b64url_decode(public_jwk(key)["x"])
    signing_input = f"{segment(good_header(key, alg='HS256'))}.{segment(good_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, f"{signing_input}.{b64url_encode(mac)}") == "alg_not_allowed"


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "ES384", "ES256K", "PS256", None, 1])
def test_other_algs_are_refused(alg: object, clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert (
        reason(verifier, forge(key, good_header(key, alg=alg), good_claims())) == "alg_not_allowed"
    )


def test_header_alg_must_match_the_keys_alg(clock: FakeClock) -> None:
    ed_keys, es_keys = first_boot("Ed25519"), first_boot("ES256")
    ed, es = active_key(ed_keys), active_key(es_keys)
    verifier, _ = verifier_for([*ed_keys, *es_keys], clock)
    # Signed by the ES256 key but claiming Ed25519 (and the reverse): refused before any check.
    assert (
        reason(verifier, forge(es, good_header(es, alg="Ed25519"), good_claims()))
        == "alg_not_allowed"
    )
    assert (
        reason(verifier, forge(ed, good_header(ed, alg="ES256"), good_claims()))
        == "alg_not_allowed"
    )


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "dpop+jwt", None, 7, DROP]
)
def test_wrong_typ_is_refused(typ: object, clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, forge(key, good_header(key, typ=typ), good_claims())) == "typ"


def test_crit_header_is_refused(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    token = forge(key, good_header(key, crit=["b64"], b64=False), good_claims())
    assert reason(verifier, token) == "crit"


def test_missing_kid_is_refused(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, forge(key, good_header(key, kid=DROP), good_claims())) == "unknown_kid"


def test_embedded_jwk_or_jku_is_ignored_not_trusted(clock: FakeClock) -> None:
    keys = first_boot()
    attacker = generate_signing_key("Ed25519", T0)
    header = {
        "alg": "Ed25519",
        "typ": "at+jwt",
        "kid": attacker.kid,
        "jwk": public_jwk(attacker),
        "jku": "https://evil/jwks",
    }
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, forge(attacker, header, good_claims())) == "unknown_kid"


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d", "a..c", "a.b.c d", "a.b.c=", "a+b.c.d", "é.b.c", "x" * 9000],
)
def test_malformed_tokens_are_refused(token: str, clock: FakeClock) -> None:
    verifier, _ = verifier_for(first_boot(), clock)
    assert reason(verifier, token) in {"malformed", "unknown_kid"}


def test_non_json_segments_are_malformed(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, f"{segment(b'not json')}.{segment(good_claims())}.AAAA") == "malformed"
    assert reason(verifier, f"{segment(b'[1]')}.{segment(good_claims())}.AAAA") == "malformed"
    signing_input = f"{segment(good_header(key))}.{segment(b'[1,2]')}"
    token = f"{signing_input}.{b64url_encode(sign_raw(key, signing_input.encode()))}"
    assert reason(verifier, token) == "malformed"


def test_es256_signature_of_the_wrong_length_is_refused(clock: FakeClock) -> None:
    keys = first_boot("ES256")
    token, _ = issue(active_key(keys))
    verifier, _ = verifier_for(keys, clock)
    head, payload, sig = token.split(".")
    assert (
        reason(verifier, f"{head}.{payload}.{b64url_encode(b64url_decode(sig) + b'x')}")
        == "signature"
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"iss": ISSUER + "/"}, "iss"),
        ({"aud": "https://other/v1"}, "aud"),
        ({"aud": ["https://other/v1"]}, "aud"),
        ({"aud": [1]}, "invalid_claim"),
        ({"aud": {"x": 1}}, "invalid_claim"),
        ({"exp": int(T0) - LEEWAY_S}, "expired"),
        ({"exp": str(int(T0) + 300)}, "invalid_claim"),
        ({"exp": True}, "invalid_claim"),
        ({"nbf": int(T0) + LEEWAY_S + 1}, "not_yet_valid"),
        ({"iat": int(T0) + LEEWAY_S + 1}, "iat_in_future"),
        ({"scope": ["accounts:read"]}, "invalid_claim"),
        ({"cnf": {"x5t#S256": "a"}}, "invalid_claim"),
        ({"cnf": "jkt"}, "invalid_claim"),
        ({"jti": ""}, "invalid_claim"),
        ({"auth_time": "yesterday"}, "invalid_claim"),
    ],
)
def test_claim_checks(changes: dict[str, Any], expected: str, clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert reason(verifier, forge(key, good_header(key), good_claims(**changes))) == expected


@pytest.mark.parametrize(
    "claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "tenant", "scope"]
)
def test_required_claims(claim: str, clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    assert (
        reason(verifier, forge(key, good_header(key), good_claims(**{claim: DROP})))
        == "missing_claim"
    )


def test_leeway_at_the_edges(clock: FakeClock) -> None:
    keys = first_boot()
    key = active_key(keys)
    verifier, _ = verifier_for(keys, clock)
    token = forge(
        key, good_header(key), good_claims(nbf=int(T0) + LEEWAY_S, iat=int(T0) + LEEWAY_S)
    )
    assert verifier.verify(token).sub  # nbf and iat exactly at the leeway: accepted
    expiring = forge(key, good_header(key), good_claims(exp=int(T0) + 10))
    clock.now = T0 + 10 + LEEWAY_S - 0.001
    assert verifier.verify(expiring).sub
    clock.now = T0 + 10 + LEEWAY_S
    assert reason(verifier, expiring) == "expired"


# --- key set refetch ----------------------------------------------------------------------


def test_unknown_kid_refetches_at_most_once_per_cooldown(clock: FakeClock) -> None:
    keys = first_boot()
    verifier, source = verifier_for(keys, clock, cooldown=5.0)
    verifier.verify(issue(active_key(keys))[0])
    assert source.calls == 1
    stranger = generate_signing_key("Ed25519", T0)
    token = forge(stranger, good_header(stranger), good_claims())
    for _ in range(3):
        assert reason(verifier, token) == "unknown_kid"
    assert source.calls == 1  # within the cooldown of the first fetch
    clock.advance(5.0)
    assert reason(verifier, token) == "unknown_kid"
    assert reason(verifier, token) == "unknown_kid"
    assert source.calls == 2


def test_new_key_is_picked_up_on_refetch(clock: FakeClock) -> None:
    keys = first_boot()
    verifier, source = verifier_for(keys, clock, cooldown=5.0)
    verifier.verify(issue(active_key(keys))[0])
    newcomer = generate_signing_key("ES256", T0)
    source.keys = [*keys, newcomer]
    clock.advance(6)
    assert verifier.verify(
        forge(newcomer, good_header(newcomer), good_claims(iat=int(clock.now)))
    ).sub
    assert source.calls == 2


def test_failed_or_empty_refetch_keeps_the_last_good_set(clock: FakeClock) -> None:
    keys = first_boot()
    token, _ = issue(active_key(keys))
    verifier, source = verifier_for(keys, clock, cooldown=0)
    verifier.verify(token)
    stranger = generate_signing_key("Ed25519", T0)
    unknown = forge(stranger, good_header(stranger), good_claims())
    source.fail = True
    assert reason(verifier, unknown) == "unknown_kid"
    assert verifier.verify(token).sub
    source.fail = False
    source.keys = []
    assert reason(verifier, unknown) == "unknown_kid"
    assert verifier.verify(token).sub
    assert not verifier.refresh()


def test_first_fetch_failure_then_recovery(clock: FakeClock) -> None:
    keys = first_boot()
    token, _ = issue(active_key(keys))
    verifier, source = verifier_for(keys, clock, cooldown=5)
    source.fail = True
    assert reason(verifier, token) == "unknown_kid"
    source.fail = False
    assert reason(verifier, token) == "unknown_kid"  # still in the cooldown
    clock.advance(5)
    assert verifier.verify(token).sub


def test_bad_jwks_entries_are_skipped(clock: FakeClock) -> None:
    keys = first_boot()
    good = public_jwk(active_key(keys))
    junk: list[Any] = [
        "x",
        {"kid": "a", "alg": "HS256", "kty": "oct", "k": "AAAA"},
        {"kid": "b", "alg": "Ed25519", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
        {"kid": "c", "alg": "ES256", "kty": "EC", "crv": "P-256", "x": good["x"], "y": good["x"]},
        {"kid": "d", "alg": "ES256", "kty": "OKP", "crv": "Ed25519", "x": good["x"]},
        {**good, "kid": "e", "use": "enc"},
        {**good, "kid": "f", "alg": None},
        {**good, "x": "!!"},
        {
            **good,
            "kid": good["kid"],
            "x": b64url_encode(b"\x01" * 32),
        },  # duplicate kid after the real one
    ]
    verifier = AccessTokenVerifier(
        ISSUER, AUDIENCE, LEEWAY_S, lambda: {"keys": [good, *junk]}, 5, clock=clock, cache_size=0
    )
    assert verifier.refresh()
    assert verifier.kids == {good["kid"]}
    assert verifier.verify(issue(active_key(keys))[0]).sub


def test_okp_key_from_joserfc_jwk_is_usable(clock: FakeClock) -> None:
    key = OKPKey.generate_key("Ed25519")
    jwk = {**key.as_dict(private=False), "kid": "k1", "alg": "Ed25519"}
    token = jwt.encode(
        {"alg": "Ed25519", "kid": "k1", "typ": "at+jwt"}, good_claims(), key, algorithms=["Ed25519"]
    )
    verifier = AccessTokenVerifier(
        ISSUER, AUDIENCE, LEEWAY_S, lambda: {"keys": [jwk]}, 5, clock=clock
    )
    assert verifier.verify(token).client_id == "client-1"


# --- the verified-token cache -------------------------------------------------------------


def test_cache_hit_skips_the_signature_check_but_not_expiry(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = first_boot()
    token, claims = issue(active_key(keys), now=clock.now)
    verifier, _ = verifier_for(keys, clock, cache_size=100)
    calls = 0
    inner = AccessTokenVerifier._verify_fully

    def counted(self: AccessTokenVerifier, value: str) -> Any:
        nonlocal calls
        calls += 1
        return inner(self, value)

    monkeypatch.setattr(AccessTokenVerifier, "_verify_fully", counted)
    for _ in range(5):
        assert verifier.verify(token) == claims
    assert calls == 1
    clock.now = claims.exp + LEEWAY_S
    assert reason(verifier, token) == "expired"


def test_cache_never_accepts_what_a_full_verify_refuses(clock: FakeClock) -> None:
    keys = first_boot()
    token, _ = issue(active_key(keys))
    verifier, _ = verifier_for(keys, clock, cache_size=100)
    verifier.verify(token)
    head, payload, sig = token.split(".")
    # Change a character whose 6 bits all count (the last ones carry padding bits).
    flipped = sig[:10] + ("B" if sig[10] != "B" else "C") + sig[11:]
    assert reason(verifier, f"{head}.{payload}.{flipped}") == "signature"
    assert reason(verifier, token + "x") in {"signature", "malformed"}


def test_cache_entry_dies_with_its_key(clock: FakeClock) -> None:
    """A key removed from the set (e.g. compromised) stops its cached tokens at the next refresh."""
    keys = first_boot()
    key = active_key(keys)
    token, _ = issue(key)
    verifier, source = verifier_for(keys, clock, cache_size=100)
    verifier.verify(token)
    source.keys = [k for k in keys if k.kid != key.kid]
    assert verifier.refresh()
    assert reason(verifier, token) == "unknown_kid"


def test_cache_is_bounded(clock: FakeClock) -> None:
    keys = first_boot()
    verifier, _ = verifier_for(keys, clock, cache_size=3)
    for i in range(10):
        verifier.verify(issue(active_key(keys), jti=f"j{i}")[0])
    assert len(verifier._verified) == 3
    verifier.clear_cache()
    assert len(verifier._verified) == 0
