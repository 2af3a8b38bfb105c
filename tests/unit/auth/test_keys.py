"""Signing keys: JWKs, thumbprints, rotation as a state machine, at-rest encryption."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwk
from tests.unit.auth.helpers import LEEWAY_S, LIFETIME_S, PUBLISH_AHEAD_S, T0, first_boot

from strongroom.auth.keys import (
    KeyDecryptionError,
    KeyRing,
    NoActiveKey,
    SigningKey,
    decrypt_private_key,
    encrypt_private_key,
    generate_signing_key,
    plan_rotation,
    public_jwk,
)


@pytest.mark.parametrize("alg", ["Ed25519", "ES256"])
def test_generated_key_is_next_with_a_thumbprint_kid(alg: str) -> None:
    key = generate_signing_key(alg, T0)
    assert (key.state, key.alg, key.created_at) == ("next", alg, T0)
    assert key.activated_at is None and key.retired_at is None
    assert key.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    # joserfc computes the same RFC 7638 thumbprint.
    assert jwk.import_key(public_jwk(key)).thumbprint() == key.kid


def test_ed25519_jwk_shape() -> None:
    data = public_jwk(generate_signing_key("Ed25519", T0))
    assert set(data) == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (data["kty"], data["crv"], data["alg"], data["use"]) == (
        "OKP",
        "Ed25519",
        "Ed25519",
        "sig",
    )


def test_es256_jwk_shape() -> None:
    data = public_jwk(generate_signing_key("ES256", T0))
    assert set(data) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (data["kty"], data["crv"], data["alg"]) == ("EC", "P-256", "ES256")
    assert "d" not in data


def test_unsupported_alg_is_refused() -> None:
    for alg in ("RS256", "HS256", "none", "EdDSA"):
        with pytest.raises(ValueError, match="unsupported"):
            generate_signing_key(alg, T0)


def test_repr_hides_the_private_key() -> None:
    key = generate_signing_key("Ed25519", T0)
    assert "PRIVATE" not in repr(key)
    assert key.kid in repr(key)


# --- at-rest encryption ------------------------------------------------------------------


def test_encryption_round_trips_and_uses_a_fresh_nonce() -> None:
    pem = generate_signing_key("ES256", T0).private_pem
    a, b = encrypt_private_key(pem, "kek"), encrypt_private_key(pem, "kek")
    assert a != b
    assert pem not in a
    assert decrypt_private_key(a, "kek") == pem == decrypt_private_key(b, "kek")


def test_wrong_kek_or_tampering_fails_closed() -> None:
    blob = encrypt_private_key(b"pem", "kek")
    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(blob, "other")
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(KeyDecryptionError):
        decrypt_private_key(flipped, "kek")
    for bad in (b"", b"\x01", b"\x02" + blob[1:], blob[:13]):
        with pytest.raises(KeyDecryptionError):
            decrypt_private_key(bad, "kek")


def test_empty_kek_is_refused() -> None:
    with pytest.raises(ValueError):
        encrypt_private_key(b"pem", "")


# --- key ring --------------------------------------------------------------------------


def test_first_boot_makes_one_active_and_one_next_key() -> None:
    keys = first_boot()
    assert sorted(k.state for k in keys) == ["active", "next"]
    ring = KeyRing(keys, T0)
    assert ring.signing_key.state == "active"
    assert ring.signing_key.activated_at == T0
    published = [k["kid"] for k in ring.jwks(T0, LIFETIME_S)["keys"]]
    assert published == [ring.signing_key.kid, next(k.kid for k in keys if k.state == "next")]


def test_no_active_key_raises() -> None:
    with pytest.raises(NoActiveKey):
        _ = KeyRing([generate_signing_key("Ed25519", T0)], T0).signing_key


def test_jwks_keeps_retired_keys_while_their_tokens_live() -> None:
    keys = first_boot()
    rotated = plan_rotation(
        keys,
        T0 + PUBLISH_AHEAD_S,
        publish_ahead_s=PUBLISH_AHEAD_S,
        token_lifetime_s=LIFETIME_S,
        alg="Ed25519",
    )
    retired = next(k for k in rotated if k.state == "retired")
    ring = KeyRing(rotated, T0 + PUBLISH_AHEAD_S)
    end = retired.retired_at + LIFETIME_S + LEEWAY_S  # type: ignore[operator]
    assert retired.kid in {k["kid"] for k in ring.jwks(end, LIFETIME_S)["keys"]}
    assert retired.kid not in {k["kid"] for k in ring.jwks(end + 1, LIFETIME_S)["keys"]}
    for published in ring.jwks(end, LIFETIME_S)["keys"]:
        assert "d" not in published  # never private material


# --- rotation -----------------------------------------------------------------------------


def rotate(keys: list[SigningKey], now: float, **kw: float | None) -> list[SigningKey]:
    return plan_rotation(
        keys,
        now,
        publish_ahead_s=PUBLISH_AHEAD_S,
        token_lifetime_s=LIFETIME_S,
        alg="Ed25519",
        **kw,  # type: ignore[arg-type]
    )


def by_state(keys: list[SigningKey], state: str) -> list[SigningKey]:
    return [k for k in keys if k.state == state]


def test_next_key_is_not_promoted_before_it_has_been_published_long_enough() -> None:
    keys = first_boot()
    later = rotate(keys, T0 + PUBLISH_AHEAD_S - 1)
    assert {(k.kid, k.state) for k in later} == {(k.kid, k.state) for k in keys}


def test_promotion_retires_the_old_key_and_publishes_a_new_next() -> None:
    keys = first_boot()
    old_active, old_next = by_state(keys, "active")[0], by_state(keys, "next")[0]
    now = T0 + PUBLISH_AHEAD_S
    after = rotate(keys, now)
    assert by_state(after, "active")[0].kid == old_next.kid
    assert by_state(after, "active")[0].activated_at == now
    assert by_state(after, "retired")[0].kid == old_active.kid
    assert by_state(after, "retired")[0].retired_at == now
    new_next = by_state(after, "next")
    assert len(new_next) == 1 and new_next[0].kid not in {old_active.kid, old_next.kid}


def test_active_for_s_holds_promotion_back() -> None:
    keys = first_boot()
    held = rotate(keys, T0 + PUBLISH_AHEAD_S, active_for_s=86_400)
    assert by_state(held, "active")[0].kid == by_state(keys, "active")[0].kid
    done = rotate(keys, T0 + 86_400, active_for_s=86_400)
    assert by_state(done, "active")[0].kid == by_state(keys, "next")[0].kid


def test_retired_keys_are_dropped_after_the_last_token_expires() -> None:
    after = rotate(first_boot(), T0 + PUBLISH_AHEAD_S)
    retired = by_state(after, "retired")[0]
    assert retired.retired_at is not None
    kept = rotate(after, retired.retired_at + LIFETIME_S + LEEWAY_S)
    assert retired.kid in {k.kid for k in kept}
    dropped = rotate(after, retired.retired_at + LIFETIME_S + LEEWAY_S + 1)
    assert retired.kid not in {k.kid for k in dropped}


def test_missing_next_key_is_added() -> None:
    active = by_state(first_boot(), "active")
    after = rotate(active, T0 + 1)
    assert len(by_state(after, "next")) == 1
    assert by_state(after, "active")[0].kid == active[0].kid


def test_no_active_key_promotes_the_oldest_next() -> None:
    nexts = [generate_signing_key("Ed25519", T0), generate_signing_key("Ed25519", T0 + 5)]
    after = rotate(nexts, T0 + 10)
    assert by_state(after, "active")[0].kid == nexts[0].kid
    assert by_state(after, "next")[0].kid == nexts[1].kid


def test_two_active_keys_are_reduced_to_the_newest() -> None:
    a = replace(generate_signing_key("Ed25519", T0), state="active", activated_at=T0)
    b = replace(generate_signing_key("Ed25519", T0), state="active", activated_at=T0 + 1)
    after = rotate([a, b], T0 + 2)
    assert [k.kid for k in by_state(after, "active")] == [b.kid]
    assert a.kid in {k.kid for k in by_state(after, "retired")}


def test_rotation_can_switch_algorithm() -> None:
    keys = first_boot("Ed25519")
    after = plan_rotation(
        by_state(keys, "active"),
        T0 + 1,
        publish_ahead_s=PUBLISH_AHEAD_S,
        token_lifetime_s=LIFETIME_S,
        alg="ES256",
    )
    assert by_state(after, "next")[0].alg == "ES256"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=2_000, allow_nan=False), min_size=1, max_size=12))
def test_rotation_invariants(steps: list[float]) -> None:
    """Any schedule of rotation calls: one active, one next, publish-before-sign, no mutation."""
    now = T0
    keys = rotate([], now)
    published_since: dict[str, float] = {k.kid: now for k in keys}
    first_active = by_state(keys, "active")[0].kid
    for step in steps:
        now += step
        snapshot = list(keys)
        frozen = [(k.kid, k.state, k.retired_at) for k in keys]
        ring_before = {j["kid"] for j in KeyRing(keys, now).jwks(now, LIFETIME_S)["keys"]}
        after = rotate(keys, now)
        assert [(k.kid, k.state, k.retired_at) for k in snapshot] == frozen  # not mutated
        assert len(by_state(after, "active")) == 1
        assert len(by_state(after, "next")) == 1
        signer = by_state(after, "active")[0]
        if signer.kid != first_active:
            # A key that signs was already in the published set, for long enough.
            assert signer.kid in published_since
            assert signer.kid in ring_before or signer.kid == by_state(snapshot, "active")[0].kid
            assert now - published_since[signer.kid] >= PUBLISH_AHEAD_S
        for key in by_state(after, "retired"):
            assert key.retired_at is not None
            assert now <= key.retired_at + LIFETIME_S + LEEWAY_S
        for key in after:
            published_since.setdefault(key.kid, now)
        # Every retired key whose tokens may still live stays published.
        for old in by_state(snapshot, "retired") + by_state(snapshot, "active"):
            retired_at = next((k.retired_at for k in after if k.kid == old.kid), None)
            if old.kid not in {k.kid for k in after}:
                assert old.retired_at is not None
                assert now > old.retired_at + LIFETIME_S + LEEWAY_S
            elif retired_at is not None:
                assert retired_at <= now
        keys = after
