"""Realistic benign traffic passes: at most 0.1% blocked at the default paranoia.

The issue's bar is real browsing on corpora not in this repository (≤ 0.1% blocked);
this set stands in for it with a few thousand seeded requests built from what real
browsing holds (``benign_traffic.py``). Fixes belong in the detectors, rules and
normalizer, never in an allow-list of these strings.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tests.unit.edge.waf.benign_traffic import REQUESTS_DEFAULT, BenignRequest, benign_requests

from strongroom.config import WafSettings
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.rules import WafRules

BLOCKED_RATE_MAX = 0.001


@pytest.fixture(scope="module")
def traffic() -> list[BenignRequest]:
    return benign_requests()


def test_the_set_is_deterministic_and_varied(traffic: list[BenignRequest]) -> None:
    assert len(traffic) == REQUESTS_DEFAULT
    again = benign_requests(50)
    assert [r.request.target for r in again] == [r.request.target for r in traffic[:50]]
    assert [r.request.body for r in again] == [r.request.body for r in traffic[:50]]
    kinds = Counter(r.name.split("#")[0] for r in traffic)
    assert len(kinds) >= 15 and min(kinds.values()) >= 50, kinds


def test_benign_traffic_passes_at_paranoia_1(traffic: list[BenignRequest]) -> None:
    waf = Waf(WafSettings(), WafRules())
    blocked = []
    for benign in traffic:
        result = waf.inspect(benign.request)
        if result.blocked or result.not_inspectable is not None:
            blocked.append(
                (benign.name, [(m.rule_id, m.location, m.excerpt) for m in result.matches])
            )
    rate = len(blocked) / len(traffic)
    report = f"{len(blocked)}/{len(traffic)} blocked ({rate:.2%})\n" + "\n".join(
        f"{name}: {matches}" for name, matches in blocked
    )
    assert rate <= BLOCKED_RATE_MAX, report
