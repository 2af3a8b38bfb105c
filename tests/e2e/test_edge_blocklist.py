"""Blocklist end to end: `strongroom up` with two edge workers, entries added with the CLI.

Issue 6: a block added via the CLI is enforced by every edge worker within 1 s, survives
an edge restart, and an allow entry wins over it. Clients come from distinct loopback
addresses (127.0.0.2, 127.0.0.3 — Linux routes all of 127/8 to lo), so the test's own
admin and health traffic from 127.0.0.1 is never blocked.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from strongroom.edge.tls import client_context
from tests.e2e.platform_harness import Platform, running_platform, up_log_tail

BLOCKED_IP = "127.0.0.2"
ALLOWED_IP = "127.0.0.3"
ENFORCED_WITHIN_S = 1.0
# Fresh connections per check: SO_REUSEPORT hashes each to a worker, so 16 leave a
# 2^-15 chance that one of the two workers got none.
CONNECTIONS = 16
# Reading an admitted connection without a request: nothing arrives in this long.
QUIET_S = 0.2


# Quicker supervision and shutdown than the defaults, which favour calm over speed: the
# restarted worker is seen healthy sooner and the pod does not wait out a drain. The WAF
# and rate limits have their own end-to-end tests; off here, each edge start is ~1 s
# shorter (the WAF compiles its rules).
FAST_ENV = {
    "STRONGROOM_SUPERVISOR__HEALTH_POLL_S": "0.2",
    "STRONGROOM_PODS__DRAIN_GRACE_S": "0.2",
    "STRONGROOM_EDGE__WAF__ENABLED": "false",
    "STRONGROOM_EDGE__RATE_LIMITS__ENABLED": "false",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(
        tmp_path_factory.mktemp("blocklist"), pods=1, edge_workers=2, extra_env=FAST_ENV
    ) as p:
        yield p


def admin_port(platform: Platform, worker: int) -> int:
    frozen = json.loads((platform.data_dir / "run" / "settings.json").read_text())
    return int(frozen["edge"]["admin_port"]) + worker


def blocklist_health(platform: Platform, worker: int) -> dict[str, Any]:
    r = httpx.get(f"http://127.0.0.1:{admin_port(platform, worker)}/healthz", timeout=2)
    snapshot: dict[str, Any] = r.json()["protections"]["blocklist"]
    return snapshot


def answer_from(platform: Platform, source_ip: str) -> tuple[int, dict[str, Any]]:
    """A fresh TLS connection from ``source_ip``: the edge's answer (status, JSON body).

    A blocked address is answered (and closed) before it sends anything; an admitted
    connection stays quiet, and then gets a request.
    """
    context: ssl.SSLContext = client_context(platform.data_dir / "tls" / "ca.pem")
    raw = socket.create_connection(("127.0.0.1", platform.port), 5, (source_ip, 0))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.settimeout(QUIET_S)
        received = b""
        try:
            received = tls.recv(65536)
        except TimeoutError:
            tls.settimeout(5)
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        tls.settimeout(5)
        while True:
            try:
                chunk = tls.recv(65536)
            except (ssl.SSLError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        document = json.loads(body) if body.startswith(b"{") else {}
    except ValueError:
        document = {}
    return status, document


def wait_until_applied(platform: Platform, version: int) -> list[float]:
    """Once both workers applied ``version``: each one's largest commit-to-applied time.

    Workers measure it themselves (their wall clock when a change applies, less its
    commit time), so the figure does not include this test's own polling delay.
    """
    lags: dict[int, float] = {}
    deadline = time.monotonic() + 5
    while len(lags) < 2 and time.monotonic() < deadline:
        for worker in (0, 1):
            sync = blocklist_health(platform, worker)["sync"]
            if worker not in lags and sync["version"] >= version:
                lags[worker] = sync["max_change_lag_s"]
        time.sleep(0.02)
    assert len(lags) == 2, f"workers that applied version {version}: {lags}"
    return [lags[0], lags[1]]


def add(platform: Platform, *args: str) -> dict[str, Any]:
    entry: dict[str, Any] = platform.cli("block", "add", *args)
    return entry


def restarted_worker_health(platform: Platform, worker: int) -> dict[str, Any]:
    """Kill ``worker``; its replacement's blocklist status once it answers.

    The replacement is told apart by its refusal count: the killed worker had refused
    connections, a new process has not yet.
    """
    pid = platform.processes()[f"edge-{worker}"]["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            health = blocklist_health(platform, worker)
        except httpx.HTTPError:
            health = None
        if health is not None and health["refused_connections"] == 0:
            return health
        time.sleep(0.05)
    raise AssertionError(f"edge-{worker} did not come back: {up_log_tail(platform)}")


def test_a_cli_block_reaches_every_worker_within_a_second_survives_a_restart_and_yields_to_an_allow(
    platform: Platform,
) -> None:
    assert answer_from(platform, BLOCKED_IP)[0] == 200

    # Block the /24 with the CLI: both workers enforce it within a second of the commit.
    block = add(platform, "127.0.0.0/24", "--reason", "e2e scanner", "--ttl", "1h")
    with ThreadPoolExecutor(1) as background:
        # The allow entry's CLI starts meanwhile (a CLI process takes about a second).
        allowing = background.submit(add, platform, ALLOWED_IP, "--allow", "--reason", "partner")
        lags = wait_until_applied(platform, block["version"])
        assert max(lags) < ENFORCED_WITHIN_S, lags
        refused = [answer_from(platform, BLOCKED_IP) for _ in range(CONNECTIONS)]
        allow = allowing.result()
    assert {status for status, _ in refused} == {403}
    assert refused[0][1]["type"] == "https://strongroom.dev/problems/blocked"
    assert refused[0][1]["event_id"].startswith("sev-")
    assert all(blocklist_health(platform, w)["refused_connections"] > 0 for w in (0, 1))

    # The allow entry inside the blocked network wins.
    lags = wait_until_applied(platform, allow["version"])
    assert max(lags) < ENFORCED_WITHIN_S, lags
    assert answer_from(platform, ALLOWED_IP)[0] == 200
    assert answer_from(platform, BLOCKED_IP)[0] == 403

    # A restarted worker holds both entries before it accepts a connection.
    restarted = restarted_worker_health(platform, 1)
    assert restarted["entries"] == 2 and restarted["sync"]["loaded"] is True
    statuses = {answer_from(platform, BLOCKED_IP)[0] for _ in range(CONNECTIONS)}
    assert statuses == {403}
    assert blocklist_health(platform, 1)["refused_connections"] > 0
    assert answer_from(platform, ALLOWED_IP)[0] == 200


def test_blocklist_hits_are_security_events_in_each_workers_file(platform: Platform) -> None:
    directory = Path(platform.data_dir) / "security-events"
    deadline = time.time() + 3
    kinds: set[str] = set()
    while time.time() < deadline and "blocklist.hit" not in kinds:
        for path in directory.glob("edge-*.jsonl"):
            kinds |= {json.loads(line)["kind"] for line in path.read_text().splitlines()}
        time.sleep(0.1)
    assert "blocklist.hit" in kinds
