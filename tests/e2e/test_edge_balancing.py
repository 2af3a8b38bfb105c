"""Load balancing through the edge: retries, ejection, zones, circuit breaking, caching."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.edge_harness import EdgeHarness, FakePod, Seen, running_edge, status_of


def client(h: EdgeHarness) -> httpx.Client:
    return httpx.Client(verify=h.tls_context(), base_url=f"https://localhost:{h.port}", timeout=10)


def test_get_is_retried_on_another_pod_after_503(tmp_path: Path) -> None:
    bad, good = FakePod("pod-0", "a", fail_status=503), FakePod("pod-1", "a")
    with running_edge(tmp_path, [bad, good]) as h, client(h) as c:
        codes = [c.get(f"/r/{i}").status_code for i in range(20)]
    assert codes == [200] * 20
    assert len(good.paths()) == 20


def test_post_without_idempotency_key_is_not_retried_on_503(tmp_path: Path) -> None:
    bad = FakePod("pod-0", "a", fail_status=503)
    good = FakePod("pod-1", "b")
    with running_edge(tmp_path, [bad, good]) as h, client(h) as c:
        plain = c.post("/pay", content=b"{}")
        keyed = c.post("/pay", content=b"{}", headers={"Idempotency-Key": "k-1"})
    assert plain.status_code == 503
    assert keyed.status_code == 200
    assert keyed.json()["pod"] == "pod-1"
    assert bad.paths().count("/pay") == 2  # plain once, keyed once before the retry


def test_connection_refused_is_retried_for_any_method(tmp_path: Path) -> None:
    dead, good = FakePod("pod-0", "a"), FakePod("pod-1", "a")
    with running_edge(tmp_path, [dead, good], balancer={"health_interval_s": 30}) as h:
        h.kill_pod(dead)
        with client(h) as c:
            codes = [c.post("/t", content=b"x").status_code for _ in range(10)]
    assert codes == [200] * 10
    assert len(good.paths()) == 10


def test_pod_failing_consecutively_is_ejected(tmp_path: Path) -> None:
    bad, good = FakePod("pod-0", "a", fail_status=500), FakePod("pod-1", "a")
    with (
        running_edge(
            tmp_path,
            [bad, good],
            balancer={"outlier_consecutive_failures": 3, "ejection_base_s": 30},
        ) as h,
        client(h) as c,
    ):
        for i in range(40):
            c.post(f"/e/{i}", content=b"x")
        snapshot = {p["name"]: p for p in h.worker.balancer.snapshot()}
    assert snapshot["pod-0"]["ejected"] is True
    assert len(bad.paths()) <= 5


def test_own_zone_is_preferred_and_other_zone_takes_over(tmp_path: Path) -> None:
    a, b = FakePod("pod-a", "a"), FakePod("pod-b", "b")
    with running_edge(tmp_path, [a, b], zone="a") as h, client(h) as c:
        first = {c.get(f"/z/{i}").json()["zone"] for i in range(10)}
        h.kill_pod(a)
        h.wait_for(lambda: not h.worker.balancer.get("pod-a").available)
        second = {c.get(f"/z2/{i}").json()["zone"] for i in range(10)}
    assert first == {"a"}
    assert second == {"b"}


def test_saturated_pods_get_fast_503_with_retry_after(tmp_path: Path) -> None:
    slow = FakePod("pod-0", "a", delay_s=1.0)
    with running_edge(tmp_path, [slow], balancer={"pending_per_pod_max": 1}) as h:
        results: list[int] = []
        t = threading.Thread(target=lambda: results.append(client(h).get("/slow").status_code))
        t.start()
        time.sleep(0.3)
        with client(h) as c:
            started = time.monotonic()
            r = c.get("/second")
            elapsed = time.monotonic() - started
        t.join()
    assert r.status_code == 503
    assert r.json()["type"].endswith("/upstream-saturated")
    assert r.headers["retry-after"]
    assert elapsed < 0.5
    assert results == [200]


def _cacheable(seen: Seen):
    if seen.path.startswith("/cached"):
        time.sleep(0.2)
        return (
            200,
            [
                ("cache-control", "public, max-age=60"),
                ("etag", '"v1"'),
                ("content-type", "application/json"),
            ],
            b'{"n": 1}' + b" " * 2000,
        )
    return None


def test_cacheable_get_is_served_from_edge_cache_and_coalesced(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a", handler=_cacheable)
    with running_edge(tmp_path, [pod]) as h:
        results: list[httpx.Response] = []
        threads = [
            threading.Thread(target=lambda: results.append(client(h).get("/cached")))
            for _ in range(5)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with client(h) as c:
            again = c.get("/cached")
            conditional = c.get(
                "/cached", headers={"If-None-Match": '"v1"', "Accept-Encoding": "identity"}
            )
    assert [r.status_code for r in results] == [200] * 5
    assert pod.paths().count("/cached") == 1
    assert again.headers["x-cache"] == "HIT"
    assert conditional.status_code == 304


def test_authorized_request_is_not_served_from_cache(tmp_path: Path) -> None:
    def private(seen: Seen):
        return (
            200,
            [("cache-control", "max-age=60")],
            seen.headers.get("authorization", "").encode(),
        )

    pod = FakePod("pod-0", "a", handler=private)
    with running_edge(tmp_path, [pod]) as h, client(h) as c:
        first = c.get("/me", headers={"Authorization": "Bearer alice"})
        second = c.get("/me", headers={"Authorization": "Bearer bob"})
    assert first.text == "Bearer alice"
    assert second.text == "Bearer bob"


def test_json_is_compressed_when_client_accepts_gzip(tmp_path: Path) -> None:
    def big(seen: Seen):
        return 200, [("content-type", "application/json")], b'{"k": "' + b"v" * 5000 + b'"}'

    pod = FakePod("pod-0", "a", handler=big)
    with running_edge(tmp_path, [pod]) as h:
        raw = h.raw(
            b"GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
    head, body = raw.split(b"\r\n\r\n", 1)
    assert b"content-encoding: gzip" in head
    assert gzip.decompress(body) == b'{"k": "' + b"v" * 5000 + b'"}'


def test_large_response_streams_through(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40_000  # ~10 MiB, above every buffer limit

    def huge(seen: Seen):
        return 200, [("content-type", "application/octet-stream")], payload

    pod = FakePod("pod-0", "a", handler=huge)
    with running_edge(tmp_path, [pod]) as h, client(h) as c:
        r = c.get("/huge")
    assert r.status_code == 200
    assert r.content == payload


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        raw = h.raw(
            b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert raw.count(b"HTTP/1.1 200") == 3
    assert raw.index(b'"/p1"') < raw.index(b'"/p2"') < raw.index(b'"/p3"')


def test_large_request_body_streams_to_the_pod_intact(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    body = bytes(range(256)) * 4096  # 1 MiB: above the replay buffer, streamed
    with running_edge(tmp_path, [pod]) as h, client(h) as c:
        r = c.post("/upload", content=body)
    assert r.status_code == 200
    assert pod.seen[-1].body == body


def test_expect_100_continue_is_answered_by_the_edge(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h, h.connect() as s:
        s.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = s.recv(100)
        s.sendall(b"hello")
        rest = b""
        while chunk := s.recv(65536):
            rest += chunk
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert status_of(rest) == 200
    assert "expect" not in pod.seen[-1].headers
    assert pod.seen[-1].body == b"hello"


def test_head_request_gets_headers_only(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h, client(h) as c:
        r = c.head("/h")
        after = c.get("/after")  # the connection is still in sync
    assert r.status_code == 200
    assert r.content == b""
    assert int(r.headers["content-length"]) > 0
    assert after.json()["path"] == "/after"


def test_connections_beyond_the_limit_get_503(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod], limits={"connections_max": 2}) as h:
        held = [h.connect(), h.connect()]
        for s in held:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(65536)
        third = h.raw(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in held:
            s.close()
    assert status_of(third) == 503
    assert b"edge-overloaded" in third


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod], limits={"idle_timeout_s": 0.5}) as h, h.connect() as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        started = time.monotonic()
        tail = s.recv(65536)  # blocks until the edge closes
        waited = time.monotonic() - started
    assert status_of(first) == 200
    assert tail == b""
    assert 0.3 < waited < 3


def test_upstream_list_changes_apply_without_restart(tmp_path: Path) -> None:
    a, b = FakePod("pod-a", "a"), FakePod("pod-b", "a")
    with running_edge(tmp_path, [a]) as h:
        h.call(h._start_pod(b))
        h.pods = [b]
        h.write_upstreams(generation=2)
        h.wait_for(lambda: [p.name for p in h.worker.balancer.pods] == ["pod-b"])
        h.wait_for(lambda: h.worker.balancer.get("pod-b").available)
        with client(h) as c:
            served = {c.get(f"/u/{i}").json()["pod"] for i in range(5)}
    assert served == {"pod-b"}


def test_a_pod_dying_between_head_and_body_is_retried_not_cut(tmp_path: Path) -> None:
    """The edge holds a response head until body bytes arrive, so a pod that dies after
    writing only its head leaves nothing with the client and the GET goes to another pod."""
    dying = FakePod("pod-0", "a", die_after_head=True)
    healthy = FakePod("pod-1", "a")
    with running_edge(tmp_path, [dying, healthy]) as h, client(h) as c:
        codes = [c.get(f"/item/{n}").status_code for n in range(20)]
    assert codes == [200] * 20
    assert dying.paths(), "the dying pod was never tried"
    assert len(healthy.paths()) == 20
