"""Client authentication (RFC 6749 §2.3): Basic parsing and the authentication decision."""

from __future__ import annotations

import base64
from dataclasses import replace
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.auth.helpers import FakeClock

from strongroom.auth.client_auth import (
    authenticate_client,
    client_credentials,
    parse_basic_authorization,
)
from strongroom.auth.ports import ClientRecord, TenantRecord
from strongroom.auth.rfc6749_errors import OAuthError
from strongroom.auth.secrets import SecretHasher, VerifiedSecretCache


def basic(client_id: str, secret: str) -> str:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@given(
    st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
    st.text(min_size=1, max_size=60),
)
def test_basic_round_trips_urlencoded_credentials(client_id: str, secret: str) -> None:
    assert parse_basic_authorization(basic(client_id, secret)) == (client_id, secret)


def test_colon_in_the_secret_is_kept() -> None:
    header = "Basic " + base64.b64encode(b"id:se:cr:et").decode()
    assert parse_basic_authorization(header) == ("id", "se:cr:et")


def test_scheme_is_case_insensitive() -> None:
    assert parse_basic_authorization(basic("a", "b").replace("Basic", "bAsIc")) == ("a", "b")


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":secret").decode(),
        "Basic " + base64.b64encode(b"id:").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
        "Basic " + base64.b64encode(b"id%ZZ%ff:x").decode(),
        "Basic " + "A" * 5000,
    ],
)
def test_bad_basic_headers_are_invalid_client(header: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_basic_authorization(header)
    assert caught.value.error == "invalid_client"
    assert caught.value.status == 401


def test_credentials_from_basic() -> None:
    creds = client_credentials(basic("c1", "s"), {"grant_type": "client_credentials"})
    assert (creds.client_id, creds.secret, creds.method) == ("c1", "s", "client_secret_basic")


def test_credentials_from_the_body() -> None:
    creds = client_credentials(None, {"client_id": "c1", "client_secret": "s"})
    assert creds.method == "client_secret_post"


def test_two_methods_are_refused() -> None:
    with pytest.raises(OAuthError) as caught:
        client_credentials(basic("c1", "s"), {"client_secret": "s"})
    assert caught.value.error == "invalid_request"


def test_body_client_id_must_match_basic() -> None:
    with pytest.raises(OAuthError) as caught:
        client_credentials(basic("c1", "s"), {"client_id": "c2"})
    assert caught.value.error == "invalid_request"


def test_no_credentials_is_invalid_client() -> None:
    with pytest.raises(OAuthError) as caught:
        client_credentials(None, {"client_id": "c1"})
    assert caught.value.error == "invalid_client"


# --- authenticate_client -----------------------------------------------------------------


class CountingHasher(SecretHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_kib=8, parallelism=1)
        self.verifies = 0

    def verify(self, phc: str, secret: str) -> bool:
        self.verifies += 1
        return super().verify(phc, secret)


@pytest.fixture
def counting() -> CountingHasher:
    return CountingHasher()


def record(hasher: SecretHasher, secret: str = "right", **changes: object) -> ClientRecord:
    base = ClientRecord(
        client_id="c1",
        tenant_id="t1",
        name="client one",
        secret_hash=hasher.hash(secret),
        scopes=frozenset({"accounts:read"}),
        status="active",
        dpop_required=False,
        is_operator=False,
        created_at=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_right_secret_authenticates(counting: CountingHasher) -> None:
    rec = record(counting)
    dummy = counting.hash("dummy")
    assert authenticate_client("c1", "right", rec, hasher=counting, dummy_hash=dummy) is rec


@pytest.mark.parametrize(
    "case",
    [
        "wrong_secret",
        "unknown",
        "no_secret_hash",
        "suspended",
        "deny_listed",
        "tenant_suspended",
        "id_mismatch",
    ],
)
def test_every_failure_is_the_same_invalid_client_and_costs_one_verify(
    counting: CountingHasher, case: str
) -> None:
    dummy = counting.hash("dummy")
    rec: ClientRecord | None = record(counting)
    secret, client_id = "right", "c1"
    suspended, tenant = False, None
    if case == "wrong_secret":
        secret = "wrong"
    elif case == "unknown":
        rec = None
    elif case == "no_secret_hash":
        rec = record(counting, secret_hash=None)
    elif case == "suspended":
        rec = record(counting, status="suspended")
    elif case == "deny_listed":
        suspended = True
    elif case == "tenant_suspended":
        tenant = TenantRecord("t1", "tenant", "suspended", 0.0)
    elif case == "id_mismatch":
        client_id = "c2"
    counting.verifies = 0
    with pytest.raises(OAuthError) as caught:
        authenticate_client(
            client_id,
            secret,
            rec,
            hasher=counting,
            dummy_hash=dummy,
            tenant=tenant,
            client_suspended=suspended,
        )
    assert caught.value.error == "invalid_client"
    assert caught.value.description == "client authentication failed"
    assert counting.verifies == 1


def test_cache_skips_argon2_on_repeat(counting: CountingHasher) -> None:
    rec = record(counting)
    dummy = counting.hash("dummy")
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    counting.verifies = 0
    for _ in range(3):
        authenticate_client("c1", "right", rec, hasher=counting, dummy_hash=dummy, cache=cache)
    assert counting.verifies == 1
    with pytest.raises(OAuthError):
        authenticate_client("c1", "wrong", rec, hasher=counting, dummy_hash=dummy, cache=cache)
    assert counting.verifies == 2


def test_cached_secret_does_not_bypass_suspension(counting: CountingHasher) -> None:
    rec = record(counting)
    dummy = counting.hash("dummy")
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    authenticate_client("c1", "right", rec, hasher=counting, dummy_hash=dummy, cache=cache)
    with pytest.raises(OAuthError):
        authenticate_client(
            "c1",
            "right",
            replace(rec, status="suspended"),
            hasher=counting,
            dummy_hash=dummy,
            cache=cache,
        )


def test_rotated_secret_misses_the_cache(counting: CountingHasher) -> None:
    rec = record(counting)
    dummy = counting.hash("dummy")
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    authenticate_client("c1", "right", rec, hasher=counting, dummy_hash=dummy, cache=cache)
    rotated = record(counting, secret="new")
    with pytest.raises(OAuthError):
        authenticate_client("c1", "right", rotated, hasher=counting, dummy_hash=dummy, cache=cache)
