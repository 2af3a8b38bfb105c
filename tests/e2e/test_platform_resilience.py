"""The whole platform under steady load while pods die, drain and whole zones go away.

One `strongroom up` (three pods: pod-0 and pod-2 in zone a, pod-1 in zone b; the edge
in zone a) is shared by the tests of this module, which run in order.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.e2e.platform_harness import Load, Platform, running_platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    with running_platform(tmp_path_factory.mktemp("platform"), pods=3, zones="a,b") as p:
        yield p


def test_make_run_serves_healthz_through_the_tls_edge(platform: Platform) -> None:
    with platform.client() as c:
        r = c.get("/healthz")
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["x-request-id"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_edge_offers_only_mozilla_modern_groups_and_tls13(platform: Platform) -> None:
    def handshake(*args: str) -> bool:
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{platform.port}", *args],
            input=b"",
            capture_output=True,
            timeout=20,
            check=False,
        )
        return b"Server Temp Key" in out.stdout or b"Peer Temp Key" in out.stdout

    assert handshake("-tls1_3", "-groups", "X25519")
    assert handshake("-tls1_3", "-groups", "P-256")
    assert not handshake("-tls1_3", "-groups", "X448")
    assert not handshake("-tls1_3", "-groups", "P-521")
    assert not handshake("-tls1_2")


def test_status_lists_every_process_with_role_zone_version_health(platform: Platform) -> None:
    procs = platform.processes()
    roles = sorted(p["role"] for p in procs.values())
    assert roles.count("pod") == 3 and roles.count("edge") == 1 and "worker" in roles
    assert procs["pod-0"]["zone"] == "a" and procs["pod-1"]["zone"] == "b"
    assert all(p["version"] and p["pid"] and p["health"] == "healthy" for p in procs.values())


def test_kill_9_of_a_pod_under_load_fails_no_request(platform: Platform) -> None:
    victim = platform.processes()["pod-0"]
    with Load(platform) as load:
        time.sleep(1.5)
        os.kill(victim["pid"], signal.SIGKILL)
        time.sleep(3.0)
    assert load.failures == []
    assert load.ok > 50
    platform.wait_healthy(["pod-0"], other_pid={"pod-0": victim["pid"]})
    assert platform.processes()["pod-0"]["restarts"] >= 1
    # The restarted pod rejoins: the edge sends it traffic again.
    with Load(platform) as load:
        deadline = time.monotonic() + 20
        while load.snapshot()["pod-0"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert load.failures == []
    assert load.served_by["pod-0"] > 0


def test_sigterm_drain_of_a_pod_under_load_fails_no_request(platform: Platform) -> None:
    victim = platform.processes()["pod-2"]
    with Load(platform) as load:
        time.sleep(1.0)
        os.kill(victim["pid"], signal.SIGTERM)
        time.sleep(5.0)
    assert load.failures == []
    assert load.ok > 50
    platform.wait_healthy(["pod-2"], other_pid={"pod-2": victim["pid"]})


def test_losing_every_pod_of_zone_a_keeps_serving_from_zone_b(platform: Platform) -> None:
    platform.wait_healthy(["pod-0", "pod-1", "pod-2"])
    procs = platform.processes()
    with Load(platform) as load:
        time.sleep(1.0)
        before = load.snapshot()
        for name in ("pod-0", "pod-2"):
            os.kill(procs[name]["pid"], signal.SIGKILL)
        time.sleep(2.5)
        after = load.snapshot()
    assert load.failures == []
    assert before["pod-1"] == 0  # zone b idles while zone a is healthy
    assert after["pod-1"] > 0  # and takes over when zone a is gone
    platform.wait_healthy(
        ["pod-0", "pod-2"], other_pid={n: procs[n]["pid"] for n in ("pod-0", "pod-2")}
    )


def test_requests_served_by_different_pods_behave_identically(platform: Platform) -> None:
    bodies: dict[str, dict] = {}
    deadline = time.monotonic() + 30  # restarted pods rejoin the edge after health_rise probes
    with platform.client() as c:
        while time.monotonic() < deadline:
            for path in ("/", "/echo?q=1"):
                r = c.get(path, headers={"X-Request-Id": "same-request-id-1"})
                body = r.json()
                kept = {k: v for k, v in body.items() if k not in ("pod", "zone", "headers")}
                bodies.setdefault(body["pod"], {})[path] = (r.status_code, kept)
            complete = [b for b in bodies.values() if len(b) == 2]
            if len(complete) >= 2:
                break
    complete = [b for b in bodies.values() if len(b) == 2]
    assert len(complete) >= 2, f"expected both paths served by two pods, got {list(bodies)}"
    first, second = complete[:2]
    assert first == second
