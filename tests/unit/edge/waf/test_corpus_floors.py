"""The GoTestWAF corpus through ``Waf.inspect``: the issue's floors at the default paranoia.

≥ 95% of the attack requests blocked and ≤ 1% of the benign ones. The corpus lives in
``../shared/corpus/gotestwaf`` (not in this repository): without it the test skips with
the reason, except under CI=true where it must run.
"""

from __future__ import annotations

import pytest
from bench.waf_corpus import CorpusRequest
from tests.gotestwaf import corpus_requests

from strongroom.config import WafSettings
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.rules import WafRules

DETECTION_MIN = 0.95
BENIGN_BLOCKED_MAX = 0.01


@pytest.fixture(scope="module")
def corpus() -> list[CorpusRequest]:
    return corpus_requests()


def blocked(waf: Waf, request: CorpusRequest) -> bool:
    result = waf.inspect(request.gate_request())
    return result.blocked or result.not_inspectable is not None


def test_the_corpus_is_what_its_readme_describes(corpus: list[CorpusRequest]) -> None:
    attacks = [r for r in corpus if r.attack]
    assert len(attacks) == 675
    assert len(corpus) - len(attacks) == 141


def test_attacks_are_blocked_and_benign_requests_pass(corpus: list[CorpusRequest]) -> None:
    waf = Waf(WafSettings(), WafRules())
    missed = [r for r in corpus if r.attack and not blocked(waf, r)]
    false_positives = [r for r in corpus if not r.attack and blocked(waf, r)]
    attacks = sum(1 for r in corpus if r.attack)
    benign = len(corpus) - attacks
    detection = 1 - len(missed) / attacks
    benign_blocked = len(false_positives) / benign
    report = (
        f"detection {detection:.1%} ({attacks - len(missed)}/{attacks}), "
        f"benign blocked {benign_blocked:.1%} ({len(false_positives)}/{benign})\n"
        + "\n".join(f"missed: {r.name} {r.payload[-80:]!r}" for r in missed[:40])
        + "\n"
        + "\n".join(f"false positive: {r.name} {r.payload!r}" for r in false_positives)
    )
    assert detection >= DETECTION_MIN, report
    assert benign_blocked <= BENIGN_BLOCKED_MAX, report
