"""Retry budget (Finagle's ``RetryBudget``, Envoy's ``retry_budget``): retries may add at
most ``ratio`` of recent requests plus a small floor, so when pods are failing the
edge cannot multiply its load by ``attempts_max`` and finish them off.

Over a sliding window (``window_s``, 10 s by default, kept as ten one-second buckets):

    retries allowed = ratio * requests in window + min_per_s * window_s - retries in window

The floor is Finagle's reserve: a quiet edge (a few requests a minute) can still retry.
Call ``record_request`` once per client request — not per attempt — and
``try_acquire_retry`` before each retry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# One-second buckets over the default window: coarse enough to cost nothing per call,
# fine enough that the window slides smoothly.
_BUCKETS = 10
# Forgive float error in ratio * requests (0.29 * 100 is 28.999999999999996).
_EPSILON = 1e-9


class RetryBudget:
    """Tokens for retries, earned by requests over a sliding window."""

    __slots__ = (
        "_bucket_s",
        "_clock",
        "_epoch",
        "_ratio",
        "_requests",
        "_requests_sum",
        "_reserve",
        "_retries",
        "_retries_sum",
    )

    def __init__(
        self,
        ratio: float,
        min_per_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_s: float = 10.0,
    ) -> None:
        if ratio < 0 or min_per_s < 0 or window_s <= 0:
            raise ValueError("retry budget ratio, floor and window must be non-negative")
        self._ratio = ratio
        self._reserve = min_per_s * window_s
        self._bucket_s = window_s / _BUCKETS
        self._clock = clock
        self._requests = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._requests_sum = 0
        self._retries_sum = 0
        self._epoch = int(clock() / self._bucket_s)

    def _advance(self) -> int:
        """Drop buckets that slid out of the window; return the current bucket index."""
        epoch = int(self._clock() / self._bucket_s)
        gap = epoch - self._epoch
        if gap > 0:
            if gap >= _BUCKETS:
                self._requests = [0] * _BUCKETS
                self._retries = [0] * _BUCKETS
                self._requests_sum = 0
                self._retries_sum = 0
            else:
                for step in range(1, gap + 1):
                    index = (self._epoch + step) % _BUCKETS
                    self._requests_sum -= self._requests[index]
                    self._retries_sum -= self._retries[index]
                    self._requests[index] = 0
                    self._retries[index] = 0
            self._epoch = epoch
        return epoch % _BUCKETS

    def record_request(self) -> None:
        index = self._advance()
        self._requests[index] += 1
        self._requests_sum += 1

    def try_acquire_retry(self) -> bool:
        """Spend one retry token if the budget has one; False means do not retry."""
        index = self._advance()
        if self._retries_sum + 1 > self._ratio * self._requests_sum + self._reserve + _EPSILON:
            return False
        self._retries[index] += 1
        self._retries_sum += 1
        return True

    @property
    def available(self) -> float:
        """Retries the budget would allow right now (for metrics)."""
        self._advance()
        return max(0.0, self._ratio * self._requests_sum + self._reserve - self._retries_sum)
