"""Resource owners and their apps: usernames, passwords, scope rules, redirect URIs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.auth.app_clients import AppClientError, validate_redirect_uri
from strongroom.auth.ports import ClientRecord
from strongroom.auth.scopes import InvalidScope
from strongroom.auth.secrets import SecretHasher
from strongroom.auth.users import (
    UserError,
    UserRecord,
    check_login,
    check_password_policy,
    normalize_username,
    user_scope,
)


def client(scopes: set[str], *, operator: bool = False) -> ClientRecord:
    return ClientRecord("sr_c", "t", "c", None, frozenset(scopes), "active", False, operator, 0.0)


def user(*, operator: bool = False, status: str = "active", password_hash: str = "") -> UserRecord:
    return UserRecord("u", "t", "alice", password_hash, operator, status, 0.0)  # type: ignore[arg-type]


def test_usernames_compare_case_insensitively() -> None:
    assert normalize_username(" Alice@Example.com ") == "alice@example.com"


@pytest.mark.parametrize("raw", ["", "   ", "a b", "a/b", "x" * 65, "<script>"])
def test_bad_usernames_are_refused(raw: str) -> None:
    with pytest.raises(UserError):
        normalize_username(raw)


@given(st.text(max_size=80))
def test_normalising_twice_changes_nothing(raw: str) -> None:
    try:
        once = normalize_username(raw)
    except UserError:
        return
    assert normalize_username(once) == once


@pytest.mark.parametrize("password", ["short", "x" * 11, "x" * 257])
def test_passwords_outside_the_policy_are_refused(password: str) -> None:
    with pytest.raises(UserError):
        check_password_policy(password)


def test_login_reasons_distinguish_unknown_wrong_and_disabled(hasher: SecretHasher) -> None:
    phc = hasher.hash("a long password")
    dummy = hasher.hash("dummy")
    assert check_login(None, "a long password", hasher=hasher, dummy_hash=dummy) == "unknown_user"
    active = user(password_hash=phc)
    assert check_login(active, "wrong password!", hasher=hasher, dummy_hash=dummy) == "bad_password"
    disabled = user(password_hash=phc, status="disabled")
    assert (
        check_login(disabled, "a long password", hasher=hasher, dummy_hash=dummy) == "user_disabled"
    )
    assert check_login(active, "a long password", hasher=hasher, dummy_hash=dummy) == active


def test_user_scope_is_the_intersection_with_the_clients() -> None:
    granted = user_scope(
        frozenset({"accounts:read", "audit:read"}), client=client({"accounts:read"}), user=user()
    )
    assert granted == {"accounts:read"}


def test_operator_scopes_need_an_operator_user_on_an_operator_client() -> None:
    ops = client({"admin", "accounts:read"}, operator=True)
    assert user_scope(None, client=ops, user=user(operator=True)) == {"admin", "accounts:read"}
    assert user_scope(None, client=ops, user=user()) == {"accounts:read"}
    with pytest.raises(InvalidScope):
        user_scope(frozenset({"admin"}), client=ops, user=user())


def test_nothing_left_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope):
        user_scope(frozenset({"audit:read"}), client=client({"accounts:read"}), user=user())


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example/cb?tenant=1",
        "http://127.0.0.1:8765/cb",
        "http://[::1]/cb",
        "http://localhost:3000/cb",
        "com.example.wallet:/oauth",
    ],
)
def test_acceptable_redirect_uris(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/relative/cb",
        "https://app.example/cb#frag",
        "http://app.example/cb",
        "https://user@app.example/cb",
        "javascript:alert(1)",
        "https:///nohost",
        "https://app.example/c b",
        " https://app.example/cb",
    ],
)
def test_unacceptable_redirect_uris(uri: str) -> None:
    with pytest.raises(AppClientError):
        validate_redirect_uri(uri)
