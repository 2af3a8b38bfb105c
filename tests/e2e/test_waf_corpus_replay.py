"""The public GoTestWAF corpus replayed through the edge, over TLS, in front of a catch-all pod.

Every attack and benign request goes on the wire exactly as GoTestWAF would send it (one
TLS connection each). An attack counts as stopped when the pod never saw it (a 403 from
the WAF, or any other refusal by the edge: a request the edge will not parse is not
forwarded either); a benign request counts as passed when the pod answered it. The
floors are the issue's: ≥ 95% of attacks stopped, ≤ 1% of benign requests blocked, at the
default settings. The corpus lives in ``../shared/`` (not in this repository): without it
the test skips with the reason, except under CI=true where it must run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.waf_corpus import CorpusRequest

from tests.e2e.edge_harness import FakePod, running_edge, status_of
from tests.gotestwaf import corpus_requests

DETECTION_MIN = 0.95
BENIGN_BLOCKED_MAX = 0.01
MARKER = b"x-corpus-id"


def on_the_wire(request: CorpusRequest, n: int) -> bytes:
    """The corpus request with a marker header (to find it at the pod) and one-shot close."""
    head, _, body = request.http_bytes().partition(b"\r\n\r\n")
    return head + b"\r\n%s: %d\r\nConnection: close\r\n\r\n" % (MARKER, n) + body


def test_the_corpus_through_the_edge_meets_the_floors(tmp_path: Path) -> None:
    requests = corpus_requests()
    pod = FakePod("pod-0", "a")
    # Rate limits off: this replays ~800 requests from one address as fast as it can;
    # the WAF is what is under test.
    with running_edge(tmp_path, [pod], rate_limits={"enabled": False}) as h:
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda p: status_of(h.raw(on_the_wire(p[1], p[0]))), enumerate(requests))
            )
        reached = {
            int(seen.headers[MARKER.decode()])
            for seen in pod.seen
            if MARKER.decode() in seen.headers
        }
    attacks = [n for n, r in enumerate(requests) if r.attack]
    benign = [n for n, r in enumerate(requests) if not r.attack]
    missed = [n for n in attacks if n in reached]
    blocked_benign = [n for n in benign if n not in reached or statuses[n] != 200]
    detection = 1 - len(missed) / len(attacks)
    benign_blocked = len(blocked_benign) / len(benign)
    report = (
        f"stopped {len(attacks) - len(missed)}/{len(attacks)} attacks ({detection:.1%}), "
        f"blocked {len(blocked_benign)}/{len(benign)} benign ({benign_blocked:.1%})\n"
        + "\n".join(f"missed: {requests[n].name} {requests[n].payload[:80]!r}" for n in missed)
        + "\n".join(
            f"blocked benign ({statuses[n]}): {requests[n].name} {requests[n].payload!r}"
            for n in blocked_benign
        )
    )
    print(report.splitlines()[0])
    assert detection >= DETECTION_MIN, report
    assert benign_blocked <= BENIGN_BLOCKED_MAX, report
    # Stopped attacks were answered by the WAF (403) or refused as malformed, never a 5xx.
    assert all(statuses[n] < 500 for n in attacks if n not in reached), report
