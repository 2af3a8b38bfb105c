"""Refresh tokens and codes: format, hashing, successor derivation, reuse decisions, scope."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.auth.refresh_tokens import (
    credential_hash,
    decide_reuse,
    derive_rotation_key,
    is_authorization_code,
    is_refresh_token,
    new_authorization_code,
    new_refresh_token,
    refresh_scope,
    refresh_token_expiry,
    successor_token,
)
from strongroom.auth.scopes import InvalidScope

KEY = derive_rotation_key("test-master-secret")


def test_new_tokens_and_codes_are_recognised_and_distinct() -> None:
    tokens = {new_refresh_token() for _ in range(100)}
    codes = {new_authorization_code() for _ in range(100)}
    assert len(tokens) == 100 and len(codes) == 100
    assert all(is_refresh_token(t) and not is_authorization_code(t) for t in tokens)
    assert all(is_authorization_code(c) and not is_refresh_token(c) for c in codes)


@pytest.mark.parametrize(
    "value",
    ["", "srt_", "srt_" + "a" * 42, "srt_" + "a" * 44, "SRT_" + "a" * 43, "srt_" + "!" * 43],
)
def test_malformed_refresh_tokens_are_not_recognised(value: str) -> None:
    assert not is_refresh_token(value)


def test_only_a_fixed_width_digest_is_stored() -> None:
    token = new_refresh_token()
    digest = credential_hash(token)
    assert len(digest) == 64 and token not in digest
    assert digest == credential_hash(token)


def test_successor_is_deterministic_and_a_valid_refresh_token() -> None:
    token = new_refresh_token()
    assert successor_token(KEY, token) == successor_token(KEY, token)
    assert is_refresh_token(successor_token(KEY, token))


def test_successor_depends_on_the_server_key() -> None:
    token = new_refresh_token()
    other = derive_rotation_key("another-master-secret")
    assert successor_token(KEY, token) != successor_token(other, token)


def test_an_empty_master_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        derive_rotation_key("")


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_distinct_tokens_have_distinct_successors(a: str, b: str) -> None:
    if a != b:
        assert successor_token(KEY, a) != successor_token(KEY, b)
        assert credential_hash(a) != credential_hash(b)


def test_retry_within_grace_with_an_unused_successor_is_replayed() -> None:
    assert decide_reuse(used_at=100.0, now=101.5, grace_s=2.0, successor_unused=True) == "replay"


def test_retry_after_the_grace_window_revokes_the_family() -> None:
    decision = decide_reuse(used_at=100.0, now=102.01, grace_s=2.0, successor_unused=True)
    assert decision == "revoke_family"


def test_reuse_after_the_successor_was_used_revokes_even_within_grace() -> None:
    decision = decide_reuse(used_at=100.0, now=100.1, grace_s=2.0, successor_unused=False)
    assert decision == "revoke_family"


def test_zero_grace_revokes_on_any_later_reuse() -> None:
    assert decide_reuse(used_at=100.0, now=100.001, grace_s=0.0, successor_unused=True) == (
        "revoke_family"
    )


@given(st.floats(0, 1e9), st.floats(0, 10), st.floats(0, 10), st.booleans())
def test_replay_only_ever_happens_within_grace_and_with_an_unused_successor(
    used_at: float, elapsed: float, grace: float, unused: bool
) -> None:
    decision = decide_reuse(
        used_at=used_at, now=used_at + elapsed, grace_s=grace, successor_unused=unused
    )
    if decision == "replay":
        assert unused and (used_at + elapsed) - used_at <= grace


def test_a_token_never_outlives_its_family() -> None:
    assert refresh_token_expiry(1000.0, 500.0, family_expires_at=1200.0) == 1200.0
    assert refresh_token_expiry(1000.0, 100.0, family_expires_at=1200.0) == 1100.0


def test_refresh_without_scope_gets_the_whole_family_scope() -> None:
    family = frozenset({"accounts:read", "clients:read"})
    assert refresh_scope(None, family_scope=family) == family


def test_refresh_may_narrow_the_scope() -> None:
    family = frozenset({"accounts:read", "clients:read"})
    assert refresh_scope("accounts:read", family_scope=family) == {"accounts:read"}


def test_refresh_may_not_widen_the_scope() -> None:
    with pytest.raises(InvalidScope):
        refresh_scope("accounts:read accounts:write", family_scope=frozenset({"accounts:read"}))


def test_zero_grace_revokes_even_in_the_same_instant() -> None:
    assert decide_reuse(used_at=100.0, now=100.0, grace_s=0.0, successor_unused=True) == (
        "revoke_family"
    )
