"""Scope vocabulary and RFC 6749 §3.3 syntax."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.auth.rfc6749_errors import OAuthError
from strongroom.auth.scopes import (
    OPERATOR_SCOPES,
    SCOPES,
    TENANT_SCOPES,
    InvalidScope,
    format_scope,
    grant_scope,
    parse_scope,
)

scope_sets = st.frozensets(st.sampled_from(sorted(SCOPES)), min_size=1)


def test_vocabulary_is_exactly_the_contract() -> None:
    assert {
        "accounts:read",
        "accounts:write",
        "transfers:read",
        "transfers:write",
        "payments:write",
        "payments:refund",
        "settlements:read",
        "settlements:run",
        "audit:read",
        "clients:read",  # added by the lead for the client-management routes
        "clients:write",
        "admin",
        "tenants:admin",
    } == SCOPES
    assert {"admin", "tenants:admin"} == OPERATOR_SCOPES
    assert TENANT_SCOPES | OPERATOR_SCOPES == SCOPES


@given(scope_sets)
def test_format_then_parse_round_trips(scopes: frozenset[str]) -> None:
    assert parse_scope(format_scope(scopes)) == scopes


@given(st.lists(st.sampled_from(sorted(SCOPES)), min_size=1), st.randoms())
def test_order_and_repetition_do_not_matter(tokens: list[str], rnd: object) -> None:
    shuffled = list(tokens)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert parse_scope(" ".join(shuffled)) == frozenset(tokens)


def test_format_is_sorted_and_deduplicated() -> None:
    assert format_scope(["b:x", "a:y", "b:x"]) == "a:y b:x"


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        " accounts:read",
        "accounts:read ",
        "accounts:read  audit:read",
        "accounts:read\taudit:read",
        'accounts:read "audit:read"',
        "accounts:read\\",
        "accounts:réad",
        "accounts:read\naudit:read",
    ],
)
def test_bad_syntax_is_refused(value: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scope(value)


@pytest.mark.parametrize("value", ["accounts:*", "accounts", "ACCOUNTS:READ", "accounts:read x"])
def test_unknown_scopes_are_refused_no_wildcards(value: str) -> None:
    with pytest.raises(InvalidScope) as caught:
        parse_scope(value)
    assert caught.value.error == "invalid_scope"
    assert caught.value.status == 400
    assert isinstance(caught.value, OAuthError)
    assert str(caught.value) == caught.value.description


@given(st.text(max_size=40))
def test_parse_scope_either_returns_known_scopes_or_raises(value: str) -> None:
    try:
        scopes = parse_scope(value)
    except InvalidScope:
        return
    assert scopes <= SCOPES
    assert scopes


def test_unknown_scope_message_is_bounded() -> None:
    with pytest.raises(InvalidScope) as caught:
        parse_scope(" ".join(f"x{i}" * 50 for i in range(50)))
    assert len(caught.value.description) < 150


def test_grant_defaults_to_the_clients_scopes() -> None:
    allowed = frozenset({"accounts:read", "audit:read"})
    assert grant_scope(None, allowed=allowed, is_operator=False) == allowed


def test_grant_narrows_to_the_request() -> None:
    allowed = frozenset({"accounts:read", "audit:read"})
    assert grant_scope("audit:read", allowed=allowed, is_operator=False) == {"audit:read"}


def test_grant_refuses_more_than_allowed() -> None:
    with pytest.raises(InvalidScope):
        grant_scope("accounts:write", allowed=frozenset({"accounts:read"}), is_operator=False)


def test_operator_scopes_only_for_operator_clients() -> None:
    allowed = frozenset({"admin", "accounts:read"})
    with pytest.raises(InvalidScope):
        grant_scope("admin", allowed=allowed, is_operator=False)
    with pytest.raises(InvalidScope):
        grant_scope(None, allowed=allowed, is_operator=False)
    assert grant_scope("admin", allowed=allowed, is_operator=True) == {"admin"}


def test_grant_refuses_an_empty_result() -> None:
    with pytest.raises(InvalidScope):
        grant_scope(None, allowed=frozenset(), is_operator=False)
