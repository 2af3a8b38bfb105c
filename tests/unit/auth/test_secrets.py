"""argon2id secret hashing, client secret generation, and the verified-secret cache."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.auth.helpers import FakeClock

from strongroom.auth.secrets import SecretHasher, VerifiedSecretCache, generate_client_secret


def test_hash_is_an_argon2id_phc_string_with_the_configured_parameters() -> None:
    hasher = SecretHasher(time_cost=2, memory_kib=64, parallelism=1)
    phc = hasher.hash("s3cret")
    assert phc.startswith("$argon2id$v=19$m=64,t=2,p=1$")
    assert hasher.hash("s3cret") != phc  # fresh salt each time


def test_verify_matches_only_the_secret(hasher: SecretHasher) -> None:
    phc = hasher.hash("right")
    assert hasher.verify(phc, "right")
    assert not hasher.verify(phc, "wrong")
    assert not hasher.verify(phc, "")


@pytest.mark.parametrize(
    "phc", ["", "not-a-hash", "$argon2id$v=19$m=8,t=1,p=1$xx$yy", "$2b$12$abc"]
)
def test_verify_never_raises_on_garbage(hasher: SecretHasher, phc: str) -> None:
    assert hasher.verify(phc, "anything") is False


@settings(max_examples=20, deadline=None)
@given(st.text(max_size=64))
def test_verify_round_trips_any_text(secret: str) -> None:
    hasher = SecretHasher(time_cost=1, memory_kib=8, parallelism=1)
    assert hasher.verify(hasher.hash(secret), secret)


def test_needs_rehash_when_parameters_change(hasher: SecretHasher) -> None:
    phc = hasher.hash("x")
    assert not hasher.needs_rehash(phc)
    assert SecretHasher(time_cost=2, memory_kib=8, parallelism=1).needs_rehash(phc)
    assert hasher.needs_rehash("garbage")


def test_client_secrets_are_256_bit_url_safe_and_unique() -> None:
    secrets = {generate_client_secret() for _ in range(200)}
    assert len(secrets) == 200
    for secret in secrets:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
        assert len(raw) >= 32
        assert set(secret) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_cache_hits_only_for_the_same_secret_and_hash_version() -> None:
    clock = FakeClock()
    cache = VerifiedSecretCache(ttl_s=60, clock=clock)
    assert not cache.check("c1", "v1", "secret")
    cache.remember("c1", "v1", "secret")
    assert cache.check("c1", "v1", "secret")
    assert not cache.check("c1", "v1", "other")
    assert not cache.check("c1", "v2", "secret")  # secret rotated: the stored hash changed
    assert not cache.check("c2", "v1", "secret")


def test_cache_entries_expire() -> None:
    clock = FakeClock()
    cache = VerifiedSecretCache(ttl_s=60, clock=clock)
    cache.remember("c1", "v1", "secret")
    clock.advance(59.9)
    assert cache.check("c1", "v1", "secret")
    clock.advance(0.1)
    assert not cache.check("c1", "v1", "secret")
    assert len(cache) == 0


def test_forget_drops_a_client_at_once() -> None:
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    cache.remember("c1", "v1", "secret")
    cache.remember("c2", "v1", "secret")
    cache.forget("c1")
    assert not cache.check("c1", "v1", "secret")
    assert cache.check("c2", "v1", "secret")


def test_cache_never_stores_the_secret() -> None:
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    cache.remember("c1", "v1", "hunter2-very-secret")
    stored = repr(cache._entries)
    assert "hunter2" not in stored


def test_two_caches_use_different_keys() -> None:
    a = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    b = VerifiedSecretCache(ttl_s=60, clock=FakeClock())
    a.remember("c1", "v1", "s")
    b.remember("c1", "v1", "s")
    assert a._entries["c1"][1] != b._entries["c1"][1]


def test_cache_is_bounded_oldest_first() -> None:
    cache = VerifiedSecretCache(ttl_s=60, clock=FakeClock(), max_entries=3)
    for i in range(5):
        cache.remember(f"c{i}", "v", "s")
    assert len(cache) == 3
    assert not cache.check("c0", "v", "s")
    assert cache.check("c4", "v", "s")


def test_zero_ttl_disables_the_cache() -> None:
    cache = VerifiedSecretCache(ttl_s=0, clock=FakeClock())
    cache.remember("c1", "v1", "s")
    assert not cache.check("c1", "v1", "s")
