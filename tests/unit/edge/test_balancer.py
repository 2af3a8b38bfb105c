"""The edge balancer: health, outlier ejection and the per-request choice of a pod."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.config import BalancerSettings
from strongroom.edge.balancer import (
    AllUpstreamsSaturated,
    Balancer,
    NoHealthyUpstream,
    Outcome,
    Pod,
    Upstream,
)

FAILURES = [Outcome.HTTP_5XX, Outcome.CONNECT_FAILURE, Outcome.RESET, Outcome.TIMEOUT]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def upstream(i: int, zone: str = "a", weight: int = 100, port: int | None = None) -> Upstream:
    return Upstream(f"pod-{i}", "127.0.0.1", port or 8500 + i, zone, weight, "0.1.0")


def make(
    n: int = 4,
    zones: tuple[str, ...] = ("a",),
    own_zone: str = "a",
    seed: int = 7,
    **overrides: object,
) -> tuple[Balancer, FakeClock]:
    clock = FakeClock()
    balancer = Balancer(
        BalancerSettings(**overrides),
        own_zone,
        clock=clock,
        rng=random.Random(seed),
    )
    balancer.set_upstreams([upstream(i, zones[i % len(zones)]) for i in range(n)])
    return balancer, clock


def make_with(upstreams: list[Upstream], **overrides: object) -> Balancer:
    balancer = Balancer(BalancerSettings(**overrides), "a", rng=random.Random(7))
    balancer.set_upstreams(upstreams)
    return balancer


def pod(balancer: Balancer, name: str) -> Pod:
    found = balancer.get(name)
    assert found is not None
    return found


def fail(balancer: Balancer, name: str, times: int, outcome: Outcome = Outcome.HTTP_5XX) -> None:
    target = pod(balancer, name)
    for _ in range(times):
        balancer.begin(target)
        balancer.end(target, outcome)


def picks(balancer: Balancer, count: int, **kwargs: object) -> Counter[str]:
    return Counter(balancer.pick(**kwargs).name for _ in range(count))  # type: ignore[arg-type]


# Upstream records ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"host": ""},
        {"port": 0},
        {"port": 65536},
        {"weight": -1},
    ],
)
def test_upstream_rejects_invalid_fields(fields: dict[str, object]) -> None:
    base: dict[str, object] = {"name": "pod-0", "host": "127.0.0.1", "port": 8500, "zone": "a"}
    with pytest.raises(ValueError):
        Upstream(**{**base, **fields})  # type: ignore[arg-type]


# Membership and start-up health -----------------------------------------------------


def test_pods_of_the_first_list_start_healthy() -> None:
    balancer, _ = make(3)
    assert all(p.healthy and p.available for p in balancer.pods)


def test_pods_added_later_start_unhealthy() -> None:
    balancer, _ = make(2)
    balancer.set_upstreams([upstream(0), upstream(1), upstream(2)])
    assert not pod(balancer, "pod-2").healthy
    assert pod(balancer, "pod-0").healthy


def test_an_empty_first_list_does_not_use_up_the_start_healthy_grace() -> None:
    balancer = Balancer(BalancerSettings(), "a")
    balancer.set_upstreams([])
    balancer.set_upstreams([upstream(0)])
    assert pod(balancer, "pod-0").healthy


def test_new_pod_becomes_healthy_after_rise_consecutive_passes() -> None:
    balancer, _ = make(1, health_rise=3)
    balancer.set_upstreams([upstream(0), upstream(1)])
    for _ in range(2):
        balancer.set_health("pod-1", ok=True)
    assert not pod(balancer, "pod-1").healthy
    balancer.set_health("pod-1", ok=True)
    assert pod(balancer, "pod-1").healthy


def test_a_failure_restarts_the_rise_count() -> None:
    balancer, _ = make(1, health_rise=2)
    balancer.set_upstreams([upstream(0), upstream(1)])
    balancer.set_health("pod-1", ok=True)
    balancer.set_health("pod-1", ok=False)
    balancer.set_health("pod-1", ok=True)
    assert not pod(balancer, "pod-1").healthy


def test_unchanged_pods_keep_their_state_across_list_updates() -> None:
    balancer, _ = make(2)
    target = pod(balancer, "pod-0")
    balancer.begin(target)
    fail(balancer, "pod-1", 5)
    balancer.set_upstreams([upstream(0), upstream(1), upstream(2)])
    assert pod(balancer, "pod-0") is target
    assert target.outstanding == 1
    assert pod(balancer, "pod-1").ejected


def test_weight_change_updates_the_pod_in_place() -> None:
    balancer, _ = make(2)
    before = pod(balancer, "pod-1")
    balancer.set_upstreams([upstream(0), upstream(1, weight=10)])
    after = pod(balancer, "pod-1")
    assert after is before
    assert after.weight == 10
    assert after.upstream.weight == 10


def test_changed_address_is_a_new_pod_that_must_pass_checks() -> None:
    balancer, _ = make(2)
    old = pod(balancer, "pod-1")
    balancer.set_upstreams([upstream(0), upstream(1, port=9999)])
    new = pod(balancer, "pod-1")
    assert new is not old
    assert not new.healthy


def test_removed_pods_are_no_longer_picked() -> None:
    balancer, _ = make(3)
    balancer.set_upstreams([upstream(0)])
    assert [p.name for p in balancer.pods] == ["pod-0"]
    assert set(picks(balancer, 50)) == {"pod-0"}


def test_duplicate_names_are_rejected() -> None:
    balancer, _ = make(1)
    with pytest.raises(ValueError, match="duplicate"):
        balancer.set_upstreams([upstream(0), upstream(0, port=9000)])


def test_ending_a_request_on_a_removed_pod_is_harmless() -> None:
    balancer, _ = make(2)
    gone = pod(balancer, "pod-1")
    balancer.begin(gone)
    balancer.set_upstreams([upstream(0)])
    balancer.end(gone, Outcome.HTTP_5XX)
    assert gone.outstanding == 0


# Active health ------------------------------------------------------------------------


def test_fall_consecutive_failures_mark_a_pod_unhealthy() -> None:
    balancer, _ = make(2, health_fall=3)
    for _ in range(2):
        balancer.set_health("pod-0", ok=False)
    assert pod(balancer, "pod-0").healthy
    balancer.set_health("pod-0", ok=False)
    assert not pod(balancer, "pod-0").healthy


def test_a_pass_resets_the_fall_count() -> None:
    balancer, _ = make(2, health_fall=2)
    balancer.set_health("pod-0", ok=False)
    balancer.set_health("pod-0", ok=True)
    balancer.set_health("pod-0", ok=False)
    assert pod(balancer, "pod-0").healthy


def test_draining_takes_a_pod_down_at_once() -> None:
    balancer, _ = make(2, health_fall=5)
    balancer.set_health("pod-0", ok=False, draining=True)
    target = pod(balancer, "pod-0")
    assert not target.healthy
    assert target.draining


def test_a_drained_pod_needs_rise_passes_to_return() -> None:
    balancer, _ = make(2, health_rise=2)
    balancer.set_health("pod-0", ok=False, draining=True)
    balancer.set_health("pod-0", ok=True)
    assert not pod(balancer, "pod-0").healthy
    balancer.set_health("pod-0", ok=True)
    assert pod(balancer, "pod-0").healthy
    assert not pod(balancer, "pod-0").draining


def test_health_of_an_unknown_pod_is_ignored() -> None:
    balancer, _ = make(1)
    balancer.set_health("pod-404", ok=False, draining=True)
    assert pod(balancer, "pod-0").healthy


def test_unhealthy_pods_are_never_picked() -> None:
    balancer, _ = make(3)
    balancer.set_health("pod-1", ok=False, draining=True)
    assert "pod-1" not in picks(balancer, 300)


def test_no_panic_mode_when_every_pod_fails_checks() -> None:
    balancer, _ = make(3)
    for p in balancer.pods:
        balancer.set_health(p.name, ok=False, draining=True)
    with pytest.raises(NoHealthyUpstream):
        balancer.pick()


def test_no_pods_at_all_is_no_healthy_upstream() -> None:
    balancer = Balancer(BalancerSettings(), "a")
    with pytest.raises(NoHealthyUpstream) as info:
        balancer.pick()
    assert info.value.code == "no-healthy-upstream"


# Passive outlier detection ---------------------------------------------------------


@pytest.mark.parametrize("outcome", FAILURES)
def test_consecutive_failures_eject_a_pod(outcome: Outcome) -> None:
    balancer, _ = make(4, outlier_consecutive_failures=3)
    fail(balancer, "pod-0", 2, outcome)
    assert not pod(balancer, "pod-0").ejected
    fail(balancer, "pod-0", 1, outcome)
    assert pod(balancer, "pod-0").ejected
    assert not pod(balancer, "pod-0").available


def test_a_success_resets_the_consecutive_failure_count() -> None:
    balancer, _ = make(4, outlier_consecutive_failures=3)
    fail(balancer, "pod-0", 2)
    fail(balancer, "pod-0", 1, Outcome.SUCCESS)
    fail(balancer, "pod-0", 2)
    assert not pod(balancer, "pod-0").ejected


def test_ejected_pods_are_not_picked() -> None:
    balancer, _ = make(3, outlier_consecutive_failures=1)
    fail(balancer, "pod-2", 1)
    assert "pod-2" not in picks(balancer, 300)


def test_ejection_lasts_the_base_time_then_the_pod_returns() -> None:
    balancer, clock = make(4, outlier_consecutive_failures=1, ejection_base_s=2.0)
    fail(balancer, "pod-0", 1)
    clock.advance(1.99)
    assert pod(balancer, "pod-0").ejected
    clock.advance(0.02)
    assert pod(balancer, "pod-0").available


def test_repeated_ejections_double_the_time_up_to_the_maximum() -> None:
    balancer, clock = make(
        4, outlier_consecutive_failures=1, ejection_base_s=2.0, ejection_max_s=10.0
    )
    durations = []
    for _ in range(5):
        fail(balancer, "pod-0", 1)
        durations.append(pod(balancer, "pod-0").ejected_until - clock.now)
        clock.now = pod(balancer, "pod-0").ejected_until
    assert durations == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_ejection_level_halves_after_each_quiet_period() -> None:
    balancer, clock = make(
        4,
        outlier_consecutive_failures=1,
        ejection_base_s=1.0,
        ejection_max_s=1000.0,
        ejection_decay_s=60.0,
    )
    for _ in range(4):  # levels 1..4
        fail(balancer, "pod-0", 1)
        clock.now = pod(balancer, "pod-0").ejected_until
    assert pod(balancer, "pod-0").ejection_level == 4
    clock.advance(60.0)  # one quiet period: 4 → 2, so the next ejection is level 3
    fail(balancer, "pod-0", 1)
    assert pod(balancer, "pod-0").ejected_until - clock.now == 4.0


def test_snapshot_shows_the_decayed_ejection_level_and_lifetime_count() -> None:
    balancer, clock = make(4, outlier_consecutive_failures=1, ejection_decay_s=10.0)
    for _ in range(2):
        fail(balancer, "pod-0", 1)
        clock.now = pod(balancer, "pod-0").ejected_until
    clock.advance(25.0)
    row = next(r for r in balancer.snapshot() if r["name"] == "pod-0")
    assert row["ejection_level"] == 0
    assert row["ejections"] == 2


def test_failures_of_requests_begun_before_the_ejection_do_not_extend_it() -> None:
    balancer, _ = make(4, outlier_consecutive_failures=2)
    target = pod(balancer, "pod-0")
    for _ in range(5):
        balancer.begin(target)
    for _ in range(5):
        balancer.end(target, Outcome.HTTP_5XX)
    assert target.ejections == 1
    assert target.failures == 0


def test_no_more_than_the_maximum_share_of_pods_is_ejected_for_5xx() -> None:
    balancer, _ = make(4, outlier_consecutive_failures=1, ejection_max_percent=50)
    for p in list(balancer.pods):
        fail(balancer, p.name, 3)
    assert sum(p.ejected for p in balancer.pods) == 2


def test_one_pod_alone_is_never_ejected_for_5xx() -> None:
    balancer, _ = make(1, outlier_consecutive_failures=1, ejection_max_percent=50)
    fail(balancer, "pod-0", 10)
    assert pod(balancer, "pod-0").available


def test_connect_failures_eject_regardless_of_the_cap() -> None:
    balancer, _ = make(2, outlier_consecutive_failures=2, ejection_max_percent=50)
    for p in list(balancer.pods):
        fail(balancer, p.name, 2, Outcome.CONNECT_FAILURE)
    assert all(p.ejected for p in balancer.pods)
    with pytest.raises(NoHealthyUpstream):
        balancer.pick()


def test_mixed_failures_respect_the_cap() -> None:
    balancer, _ = make(2, outlier_consecutive_failures=2, ejection_max_percent=50)
    for p in list(balancer.pods):
        fail(balancer, p.name, 1, Outcome.CONNECT_FAILURE)
        fail(balancer, p.name, 1, Outcome.HTTP_5XX)
    assert sum(p.ejected for p in balancer.pods) == 1


def test_a_passing_probe_does_not_lift_a_passive_ejection() -> None:
    balancer, _ = make(4, outlier_consecutive_failures=1)
    fail(balancer, "pod-0", 1)
    for _ in range(5):
        balancer.set_health("pod-0", ok=True)
    assert pod(balancer, "pod-0").ejected


def test_outstanding_never_goes_negative() -> None:
    balancer, _ = make(1)
    target = pod(balancer, "pod-0")
    balancer.end(target, Outcome.SUCCESS)
    balancer.end(target, Outcome.RESET)
    assert target.outstanding == 0


# Choice -------------------------------------------------------------------------------


def test_pick_prefers_the_own_zone() -> None:
    balancer, _ = make(6, zones=("a", "b", "c"), own_zone="b")
    assert {balancer.pick().upstream.zone for _ in range(300)} == {"b"}


def test_pick_falls_over_to_other_zones_when_the_own_zone_is_down() -> None:
    balancer, _ = make(4, zones=("a", "b"), own_zone="a")
    for p in balancer.pods:
        if p.upstream.zone == "a":
            balancer.set_health(p.name, ok=False, draining=True)
    assert {balancer.pick().upstream.zone for _ in range(100)} == {"b"}


def test_pick_falls_over_when_the_own_zone_is_saturated() -> None:
    balancer, _ = make(4, zones=("a", "b"), pending_per_pod_max=1)
    for p in balancer.pods:
        if p.upstream.zone == "a":
            balancer.begin(p)
    assert balancer.pick().upstream.zone == "b"


def test_retries_fall_over_when_the_own_zone_was_tried() -> None:
    balancer, _ = make(4, zones=("a", "b"))
    tried = {p.name for p in balancer.pods if p.upstream.zone == "a"}
    assert balancer.pick(exclude=tried).upstream.zone == "b"


def test_pick_with_no_pod_in_the_own_zone_uses_the_others() -> None:
    balancer, _ = make(3, zones=("b",), own_zone="a")
    assert balancer.pick().upstream.zone == "b"


def test_excluded_pods_are_never_picked() -> None:
    balancer, _ = make(4)
    assert set(picks(balancer, 300, exclude={"pod-0", "pod-3"})) == {"pod-1", "pod-2"}


def test_all_pods_excluded_is_no_healthy_upstream() -> None:
    balancer, _ = make(2)
    with pytest.raises(NoHealthyUpstream):
        balancer.pick(exclude=("pod-0", "pod-1"))


def test_all_available_pods_saturated_is_all_upstreams_saturated() -> None:
    balancer, _ = make(2, pending_per_pod_max=2)
    for p in balancer.pods:
        balancer.begin(p)
        balancer.begin(p)
    with pytest.raises(AllUpstreamsSaturated) as info:
        balancer.pick()
    assert info.value.code == "upstream-saturated"


def test_saturated_and_excluded_mix_is_all_upstreams_saturated() -> None:
    balancer, _ = make(2, pending_per_pod_max=1)
    balancer.begin(pod(balancer, "pod-1"))
    with pytest.raises(AllUpstreamsSaturated):
        balancer.pick(exclude={"pod-0"})


def test_saturated_pods_are_skipped() -> None:
    balancer, _ = make(3, pending_per_pod_max=1)
    balancer.begin(pod(balancer, "pod-0"))
    assert "pod-0" not in picks(balancer, 200)


def test_p2c_sends_to_the_less_loaded_of_two() -> None:
    balancer, _ = make(2)
    for _ in range(3):
        balancer.begin(pod(balancer, "pod-0"))
    assert set(picks(balancer, 100)) == {"pod-1"}


def test_p2c_never_picks_the_most_loaded_of_three() -> None:
    balancer, _ = make(3)
    balancer.begin(pod(balancer, "pod-1"))
    balancer.begin(pod(balancer, "pod-2"))
    balancer.begin(pod(balancer, "pod-2"))
    counts = picks(balancer, 600)
    assert "pod-2" not in counts
    assert counts["pod-0"] > counts["pod-1"] > 0


def test_p2c_spreads_evenly_across_equal_idle_pods() -> None:
    balancer, _ = make(4)
    counts = picks(balancer, 20_000)
    assert all(abs(c / 20_000 - 0.25) < 0.02 for c in counts.values())


def test_p2c_keeps_equal_pods_balanced_under_load() -> None:
    balancer, _ = make(4, seed=3)
    rng = random.Random(5)
    in_flight: list[Pod] = []
    counts: Counter[str] = Counter()
    for _ in range(20_000):
        chosen = balancer.pick()
        balancer.begin(chosen)
        in_flight.append(chosen)
        counts[chosen.name] += 1
        while len(in_flight) > 20:
            balancer.end(in_flight.pop(rng.randrange(len(in_flight))), Outcome.SUCCESS)
    assert all(abs(c / 20_000 - 0.25) < 0.02 for c in counts.values())


def test_p2c_honours_canary_weights_when_idle() -> None:
    balancer = make_with([upstream(0, weight=90), upstream(1, weight=10)])
    counts = picks(balancer, 20_000)
    assert abs(counts["pod-1"] / 20_000 - 0.10) < 0.015


def test_p2c_holds_load_in_proportion_to_weight() -> None:
    balancer = make_with([upstream(0, weight=300), upstream(1, weight=100)])
    for _ in range(40):
        balancer.begin(balancer.pick())
    assert pod(balancer, "pod-0").outstanding == 30
    assert pod(balancer, "pod-1").outstanding == 10


def test_weight_zero_pods_are_never_picked() -> None:
    balancer = make_with([upstream(0, weight=0), upstream(1), upstream(2)])
    assert "pod-0" not in picks(balancer, 300)


def test_only_weight_zero_pods_is_no_healthy_upstream() -> None:
    balancer = make_with([upstream(0, weight=0)])
    with pytest.raises(NoHealthyUpstream):
        balancer.pick()


def test_round_robin_rotates_through_equal_pods() -> None:
    balancer, _ = make(3, algorithm="round_robin")
    order = [balancer.pick().name for _ in range(6)]
    assert sorted(order[:3]) == ["pod-0", "pod-1", "pod-2"]
    assert order[3:] == order[:3]


def test_round_robin_follows_weights_exactly() -> None:
    balancer = make_with(
        [upstream(0, weight=300), upstream(1, weight=100)], algorithm="round_robin"
    )
    assert picks(balancer, 400) == {"pod-0": 300, "pod-1": 100}


def test_round_robin_skips_ineligible_pods() -> None:
    balancer, _ = make(3, algorithm="round_robin")
    balancer.set_health("pod-1", ok=False, draining=True)
    assert picks(balancer, 10, exclude={"pod-2"}) == {"pod-0": 10}


def test_snapshot_reports_each_pod() -> None:
    balancer, _ = make(2, zones=("a", "b"), outlier_consecutive_failures=1)
    balancer.begin(pod(balancer, "pod-0"))
    fail(balancer, "pod-1", 1)
    rows = {r["name"]: r for r in balancer.snapshot()}
    assert rows["pod-0"]["outstanding"] == 1
    assert rows["pod-0"]["available"] is True
    assert rows["pod-1"]["ejected"] is True
    assert rows["pod-1"]["available"] is False
    assert rows["pod-1"]["zone"] == "b"
    assert rows["pod-1"]["ejections"] == 1
    assert set(rows["pod-0"]) >= {"name", "zone", "healthy", "ejected", "outstanding", "ejections"}


# Invariants -------------------------------------------------------------------------------

pod_states = st.lists(
    st.fixed_dictionaries(
        {
            "zone": st.sampled_from(["a", "b", "c"]),
            "weight": st.sampled_from([0, 1, 10, 100, 100, 100]),
            "healthy": st.booleans(),
            "ejected": st.booleans(),
            "outstanding": st.integers(0, 4),
            "excluded": st.booleans(),
        }
    ),
    min_size=0,
    max_size=12,
)


def eligible(balancer: Balancer, p: Pod, exclude: set[str]) -> bool:
    return (
        p.available
        and p.weight > 0
        and p.outstanding < balancer.settings.pending_per_pod_max
        and p.name not in exclude
    )


@settings(max_examples=300, deadline=None)
@given(
    states=pod_states,
    algorithm=st.sampled_from(["p2c", "round_robin"]),
    seed=st.integers(0, 2**32),
)
def test_pick_returns_only_eligible_pods_and_prefers_the_own_zone(
    states: list[dict[str, object]], algorithm: str, seed: int
) -> None:
    clock = FakeClock()
    balancer = Balancer(
        BalancerSettings(algorithm=algorithm, pending_per_pod_max=3, health_fall=1),
        "a",
        clock=clock,
        rng=random.Random(seed),
    )
    balancer.set_upstreams(
        [upstream(i, str(s["zone"]), int(str(s["weight"]))) for i, s in enumerate(states)]
    )
    exclude: set[str] = set()
    for p, s in zip(balancer.pods, states, strict=True):
        if not s["healthy"]:
            balancer.set_health(p.name, ok=False)
        if s["ejected"]:
            p.ejected_until = clock.now + 5.0
        p.outstanding = int(str(s["outstanding"]))
        if s["excluded"]:
            exclude.add(p.name)
    candidates = [p for p in balancer.pods if eligible(balancer, p, exclude)]
    for _ in range(5):
        try:
            chosen = balancer.pick(exclude)
        except AllUpstreamsSaturated:
            assert not candidates
            assert any(
                p.available and p.weight > 0 and p.name not in exclude for p in balancer.pods
            )
        except NoHealthyUpstream:
            assert not candidates
            assert not any(
                p.available and p.weight > 0 and p.name not in exclude for p in balancer.pods
            )
        else:
            assert eligible(balancer, chosen, exclude)
            if any(p.upstream.zone == "a" for p in candidates):
                assert chosen.upstream.zone == "a"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 8),
    down=st.sets(st.integers(0, 7), max_size=6),
    seed=st.integers(0, 2**32),
)
def test_p2c_spreads_evenly_across_the_available_equal_pods(
    n: int, down: set[int], seed: int
) -> None:
    balancer = Balancer(BalancerSettings(), "a", rng=random.Random(seed))
    balancer.set_upstreams([upstream(i) for i in range(n)])
    for i in down:
        balancer.set_health(f"pod-{i}", ok=False, draining=True)
    up = [p.name for p in balancer.pods if p.healthy]
    if not up:
        return
    total = 600 * len(up)
    counts = picks(balancer, total)
    assert set(counts) == set(up)
    for name in up:
        assert abs(counts[name] / total - 1 / len(up)) < 0.25 / len(up)


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["pick", "end", "probe_fail", "probe_pass", "drain", "tick", "reload"]),
            st.integers(0, 5),
            st.sampled_from(list(Outcome)),
        ),
        max_size=120,
    ),
)
def test_outstanding_is_never_negative_and_matches_in_flight_requests(
    ops: list[tuple[str, int, Outcome]],
) -> None:
    balancer, clock = make(
        4, zones=("a", "b"), outlier_consecutive_failures=2, pending_per_pod_max=4, health_fall=1
    )
    in_flight: list[Pod] = []
    for op, arg, outcome in ops:
        if op == "pick":
            try:
                chosen = balancer.pick()
            except (NoHealthyUpstream, AllUpstreamsSaturated):
                continue
            balancer.begin(chosen)
            in_flight.append(chosen)
        elif op == "end" and in_flight:
            balancer.end(in_flight.pop(arg % len(in_flight)), outcome)
        elif op == "probe_fail":
            balancer.set_health(f"pod-{arg}", ok=False)
        elif op == "probe_pass":
            balancer.set_health(f"pod-{arg}", ok=True)
        elif op == "drain":
            balancer.set_health(f"pod-{arg}", ok=False, draining=True)
        elif op == "tick":
            clock.advance(arg)
        elif op == "reload":
            balancer.set_upstreams([upstream(i, "ab"[i % 2]) for i in range(arg % 5 + 1)])
        for p in {*balancer.pods, *in_flight}:
            assert p.outstanding >= 0
            assert p.outstanding == sum(1 for q in in_flight if q is p)
            assert p.outstanding <= balancer.settings.pending_per_pod_max
