"""PKCE (RFC 7636): S256 only, required, verifier syntax, constant-time match."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.auth.rfc6749_errors import OAuthError
from strongroom.auth.rfc7636_pkce import (
    CODE_CHALLENGE_METHODS_SUPPORTED,
    check_challenge,
    check_verifier_syntax,
    require_verifier,
    s256_challenge,
    verifier_matches,
)

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
verifiers = st.text(alphabet=UNRESERVED, min_size=43, max_size=128)


def test_s256_matches_the_rfc7636_appendix_b_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert s256_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_only_s256_is_advertised() -> None:
    assert CODE_CHALLENGE_METHODS_SUPPORTED == ("S256",)


@pytest.mark.parametrize(
    ("challenge", "method"),
    [
        (None, "S256"),
        ("", "S256"),
        ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", None),
        ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "plain"),
        ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "s256"),
        ("too-short", "S256"),
        ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c=", "S256"),
    ],
)
def test_missing_plain_or_malformed_challenges_are_invalid_request(challenge, method) -> None:
    with pytest.raises(OAuthError) as caught:
        check_challenge(challenge, method)
    assert caught.value.error == "invalid_request"


def test_a_well_formed_s256_challenge_is_accepted() -> None:
    challenge = s256_challenge("a" * 43)
    assert check_challenge(challenge, "S256") == challenge


@pytest.mark.parametrize("verifier", [None, "", "a" * 42, "a" * 129, "a" * 42 + "!", "é" * 43])
def test_missing_or_malformed_verifiers_are_invalid_request(verifier) -> None:
    with pytest.raises(OAuthError) as caught:
        check_verifier_syntax(verifier)
    assert caught.value.error == "invalid_request"


def test_verifier_mismatch_is_invalid_grant() -> None:
    with pytest.raises(OAuthError) as caught:
        require_verifier("b" * 43, s256_challenge("a" * 43))
    assert caught.value.error == "invalid_grant"


@given(verifiers)
def test_every_valid_verifier_matches_its_own_challenge(verifier: str) -> None:
    challenge = s256_challenge(verifier)
    assert check_challenge(challenge, "S256") == challenge
    assert verifier_matches(verifier, challenge)


@given(verifiers, verifiers)
def test_a_verifier_never_matches_another_verifiers_challenge(a: str, b: str) -> None:
    if a != b:
        assert not verifier_matches(a, s256_challenge(b))


def test_the_challenge_itself_is_not_a_valid_verifier() -> None:
    # A "plain" client would send the challenge as its verifier: it must not pass.
    challenge = s256_challenge("v" * 43)
    assert not verifier_matches(challenge, challenge)
