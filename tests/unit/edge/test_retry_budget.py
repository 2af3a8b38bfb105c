"""The retry budget: retries are a bounded share of recent requests plus a floor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.edge.retry_budget import RetryBudget


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def acquire_all(budget: RetryBudget, limit: int = 10_000) -> int:
    granted = 0
    while granted < limit and budget.try_acquire_retry():
        granted += 1
    return granted


def test_with_no_traffic_only_the_floor_is_available() -> None:
    budget = RetryBudget(0.2, 1.0, clock=FakeClock())
    assert acquire_all(budget) == 10  # 1/s over the 10 s window


def test_with_no_floor_and_no_traffic_nothing_may_retry() -> None:
    budget = RetryBudget(0.2, 0.0, clock=FakeClock())
    assert budget.try_acquire_retry() is False


def test_requests_earn_retries_at_the_ratio() -> None:
    budget = RetryBudget(0.2, 0.0, clock=FakeClock())
    for _ in range(100):
        budget.record_request()
    assert acquire_all(budget) == 20


def test_ratio_and_floor_add_up() -> None:
    budget = RetryBudget(0.1, 0.5, clock=FakeClock())
    for _ in range(50):
        budget.record_request()
    assert acquire_all(budget) == 5 + 5


def test_float_ratio_does_not_lose_a_whole_retry() -> None:
    budget = RetryBudget(0.29, 0.0, clock=FakeClock())
    for _ in range(100):
        budget.record_request()
    assert acquire_all(budget) == 29


def test_an_exhausted_budget_refills_as_requests_arrive() -> None:
    budget = RetryBudget(0.5, 0.0, clock=FakeClock())
    budget.record_request()
    budget.record_request()
    assert acquire_all(budget) == 1
    budget.record_request()
    assert budget.try_acquire_retry() is False
    budget.record_request()
    assert budget.try_acquire_retry() is True


def test_requests_older_than_the_window_stop_counting() -> None:
    clock = FakeClock()
    budget = RetryBudget(1.0, 0.0, clock=clock)
    for _ in range(10):
        budget.record_request()
    clock.now += 10.5
    assert budget.try_acquire_retry() is False


def test_the_window_slides_one_bucket_at_a_time() -> None:
    clock = FakeClock(500.0)
    budget = RetryBudget(1.0, 0.0, clock=clock)
    for second in range(10):
        clock.now = 500.0 + second
        budget.record_request()
    clock.now = 510.0  # the request at 500 s has just left the window
    assert acquire_all(budget) == 9


def test_retries_spent_expire_with_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, 1.0, clock=clock)
    assert acquire_all(budget) == 10
    clock.now += 10.0
    assert acquire_all(budget) == 10


def test_a_long_idle_gap_resets_the_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(1.0, 0.0, clock=clock)
    for _ in range(5):
        budget.record_request()
    clock.now += 3600.0
    assert budget.available == 0.0
    assert budget.try_acquire_retry() is False


def test_window_length_is_configurable() -> None:
    clock = FakeClock()
    budget = RetryBudget(0.0, 2.0, clock=clock, window_s=1.0)
    assert acquire_all(budget) == 2


def test_available_reports_remaining_retries() -> None:
    budget = RetryBudget(0.5, 0.0, clock=FakeClock())
    for _ in range(10):
        budget.record_request()
    budget.try_acquire_retry()
    assert budget.available == pytest.approx(4.0)


@pytest.mark.parametrize(("ratio", "floor", "window"), [(-0.1, 1.0, 10.0), (0.2, -1.0, 10.0)])
def test_negative_parameters_are_rejected(ratio: float, floor: float, window: float) -> None:
    with pytest.raises(ValueError):
        RetryBudget(ratio, floor, window_s=window)


def test_zero_window_is_rejected() -> None:
    with pytest.raises(ValueError):
        RetryBudget(0.2, 1.0, window_s=0.0)


@settings(max_examples=200, deadline=None)
@given(
    ratio=st.floats(0.0, 1.0),
    floor=st.floats(0.0, 5.0),
    events=st.lists(
        st.tuples(st.sampled_from(["request", "retry", "tick"]), st.floats(0.0, 3.0)),
        max_size=300,
    ),
)
def test_retries_in_any_window_never_exceed_ratio_times_requests_plus_floor(
    ratio: float, floor: float, events: list[tuple[str, float]]
) -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio, floor, clock=clock)
    requests: list[float] = []
    retries: list[float] = []
    for kind, seconds in events:
        if kind == "request":
            budget.record_request()
            requests.append(clock.now)
        elif kind == "tick":
            clock.now += seconds
        elif budget.try_acquire_retry():
            retries.append(clock.now)
            # The window is ten whole-second buckets: it holds every retry of the last
            # 9 s and no request older than 10 s (11 s leaves float slack).
            recent_retries = sum(1 for t in retries if clock.now - t < 9.0)
            recent_requests = sum(1 for t in requests if clock.now - t < 11.0)
            assert recent_retries <= ratio * recent_requests + floor * 10.0 + 1e-6
