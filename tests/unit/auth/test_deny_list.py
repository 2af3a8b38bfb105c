"""A pod's in-memory deny list."""

from __future__ import annotations

from tests.unit.auth.helpers import T0, FakeClock

from strongroom.auth.deny_list import DenyList
from strongroom.auth.ports import DenyEntry


def test_revoked_token_is_refused_until_exp_plus_leeway() -> None:
    clock = FakeClock()
    deny = DenyList(clock, leeway_s=30)
    deny.apply([DenyEntry("token", "jti-1", T0 + 300)])
    assert deny.token_revoked("jti-1")
    assert not deny.token_revoked("jti-2")
    assert not deny.client_suspended("jti-1")
    clock.now = T0 + 330
    assert deny.token_revoked("jti-1")
    clock.now = T0 + 331
    assert not deny.token_revoked("jti-1")


def test_suspended_client_without_expiry_stays_suspended() -> None:
    clock = FakeClock()
    deny = DenyList(clock)
    deny.apply([DenyEntry("client", "c1", None)])
    clock.advance(10**9)
    deny.prune(force=True)
    assert deny.client_suspended("c1")
    assert not deny.client_suspended("c2")
    assert not deny.token_revoked("c1")


def test_suspension_with_expiry_and_lift() -> None:
    clock = FakeClock()
    deny = DenyList(clock, leeway_s=0)
    deny.apply([DenyEntry("client", "c1", T0 + 10)])
    assert deny.client_suspended("c1")
    clock.advance(11)
    assert not deny.client_suspended("c1")
    deny.apply([DenyEntry("client", "c2", None)])
    deny.lift_client("c2")
    assert not deny.client_suspended("c2")


def test_apply_is_idempotent_and_a_later_entry_extends() -> None:
    clock = FakeClock()
    deny = DenyList(clock, leeway_s=0)
    entry = DenyEntry("token", "j", T0 + 10)
    deny.apply([entry, entry])
    deny.apply([DenyEntry("token", "j", T0 + 5)])  # an older, shorter duplicate
    assert deny.tokens == 1
    clock.advance(8)
    assert deny.token_revoked("j")
    deny.apply([DenyEntry("client", "c", T0 + 1), DenyEntry("client", "c", None)])
    clock.advance(100)
    assert deny.client_suspended("c")


def test_pruning_drops_expired_entries() -> None:
    clock = FakeClock()
    deny = DenyList(clock, leeway_s=0)
    deny.apply([DenyEntry("token", f"j{i}", T0 + i) for i in range(100)])
    assert len(deny) == 100
    clock.now = T0 + 49.5
    deny.prune(force=True)
    assert deny.tokens == 50
    clock.now = T0 + 1000
    deny.apply([])  # apply sweeps too (at most every 30 s)
    assert len(deny) == 0
