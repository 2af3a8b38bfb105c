"""Attack traffic beyond the public corpus is blocked: ≥ 97% overall, ≥ 90% per family.

The issue's bar is real attack traffic on corpora not in this repository (≥ 90%); this
set (``attack_traffic.py``) holds the payload families and placements seen in the wild
that the public corpus lacks. Known misses are listed in ``KNOWN_MISSES`` with the reason,
so a new miss fails the test by name.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tests.unit.edge.waf.attack_traffic import AttackRequest, attack_requests

from strongroom.config import WafSettings
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.rules import WafRules

DETECTION_MIN = 0.97
FAMILY_DETECTION_MIN = 0.90
KNOWN_MISSES = {
    # '+' is a literal in a path: only an application decoding the path as a form value
    # would read spaces there.
    "sqli#49@path",
    # A raw CR/LF then "X-…:" in a body: what a textarea sends; bodies are not searched
    # for raw line breaks (the encoded form is blocked).
    "crlf#2@form",
    "crlf#2@json",
    "crlf#2@multipart",
    # A malformed LDAP filter fragment (unbalanced parentheses): no filter parser accepts
    # it, and the LDAP rules read filter syntax.
    *(f"mixed#87@{p}" for p in ("query", "form", "json", "header", "cookie", "multipart")),
    # Probing for an admin panel that does not exist here: a 404, not an attack payload.
    "scanner-path#3",
}


@pytest.fixture(scope="module")
def traffic() -> list[AttackRequest]:
    return attack_requests()


def test_attack_traffic_is_blocked_at_paranoia_1(traffic: list[AttackRequest]) -> None:
    waf = Waf(WafSettings(), WafRules())
    totals: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    missed = []
    for attack in traffic:
        result = waf.inspect(attack.request)
        totals[attack.family] += 1
        if result.blocked or result.not_inspectable is not None:
            caught[attack.family] += 1
        else:
            missed.append(attack)
    detection = 1 - len(missed) / len(traffic)
    report = f"detection {detection:.2%} ({len(traffic) - len(missed)}/{len(traffic)})\n" + (
        "\n".join(f"missed {a.name}: {a.payload[:80]!r}" for a in missed)
    )
    assert detection >= DETECTION_MIN, report
    for family, total in totals.items():
        assert caught[family] / total >= FAMILY_DETECTION_MIN, f"{family}\n{report}"
    assert {a.name for a in missed} <= KNOWN_MISSES, report
