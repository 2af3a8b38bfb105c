"""Restart backoff: exponential, capped, reset after a process stayed up."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from strongroom.config import Settings
from strongroom.runtime.process import Backoff


def test_first_restart_waits_the_initial_delay():
    assert Backoff(initial_s=0.2, max_s=30.0).next_delay() == 0.2


def test_each_further_failure_doubles_the_delay():
    backoff = Backoff(initial_s=0.2, max_s=30.0)
    assert [backoff.next_delay() for _ in range(4)] == [0.2, 0.4, 0.8, 1.6]


def test_delay_never_exceeds_the_maximum():
    backoff = Backoff(initial_s=1.0, max_s=5.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_reset_starts_again_from_the_initial_delay():
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    for _ in range(3):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_follows_the_supervisor_settings():
    settings = Settings(
        supervisor={
            "restart_backoff_initial_s": 0.1,
            "restart_backoff_max_s": 1.0,
            "restart_backoff_factor": 3.0,
        }
    )
    backoff = Backoff.from_settings(settings)
    assert [round(backoff.next_delay(), 6) for _ in range(4)] == [0.1, 0.3, 0.9, 1.0]


def test_a_process_crashing_forever_does_not_overflow_the_delay():
    backoff = Backoff(initial_s=0.2, max_s=30.0, failures=10_000)
    assert backoff.next_delay() == 30.0


@given(
    initial_s=st.floats(min_value=0.001, max_value=10.0),
    max_s=st.floats(min_value=0.001, max_value=100.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    failures=st.integers(min_value=1, max_value=200),
)
def test_delays_are_non_decreasing_and_bounded(
    initial_s: float, max_s: float, factor: float, failures: int
):
    backoff = Backoff(initial_s=initial_s, max_s=max_s, factor=factor)
    delays = [backoff.next_delay() for _ in range(failures)]
    assert all(a <= b for a, b in itertools.pairwise(delays))
    assert all(0 < d <= max_s for d in delays)
    assert delays[0] == min(initial_s, max_s)
