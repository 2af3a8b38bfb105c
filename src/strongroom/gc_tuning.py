"""Garbage-collector settings for long-running servers (pods and edge workers).

Python's default collects the young generation every 700 net allocations; a request that
builds thousands of short-lived objects (a ledger batch, a WAF inspection) then triggers
many collections that also rescan what start-up left behind. Servers freeze their start-up
objects out of every collection and collect the young generation less often.
"""

from __future__ import annotations

import gc


def tune_gc(young_threshold: int) -> None:
    """Freeze what start-up allocated (frameworks, rules, pools: never garbage) and collect
    the young generation every ``young_threshold`` allocations."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
