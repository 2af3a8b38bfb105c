"""End-to-end behaviour of the edge: TLS in front, fake pods behind."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import httpx
import pytest

from tests.e2e.edge_harness import FakePod, running_edge


def get(h, path: str, **kw):
    with httpx.Client(verify=h.tls_context(), base_url=f"https://localhost:{h.port}") as c:
        return c.get(path, **kw)


def test_get_is_proxied_with_request_id_forwarding_and_hsts(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        r = get(h, "/v1/echo?x=1", headers={"X-Forwarded-For": "6.6.6.6"})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/v1/echo?x=1"
    seen = body["headers"]
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the client's spoofed value is replaced
    assert seen["forwarded"] == "for=127.0.0.1;proto=https"
    assert seen["x-request-id"] == r.headers["x-request-id"]
    assert seen["x-strongroom-edge"]
    assert r.headers["strict-transport-security"].startswith("max-age=")


def test_client_request_id_is_kept_when_well_formed(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        r = get(h, "/x", headers={"X-Request-Id": "client-chosen-id-123"})
    assert r.headers["x-request-id"] == "client-chosen-id-123"
    assert r.json()["headers"]["x-request-id"] == "client-chosen-id-123"


def test_keep_alive_serves_many_requests_on_one_connection(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        with httpx.Client(verify=h.tls_context(), base_url=f"https://localhost:{h.port}") as c:
            codes = [c.get(f"/n/{i}").status_code for i in range(20)]
            posted = c.post("/p", content=b"x" * 1000)
    assert codes == [200] * 20
    assert posted.json()["body_len"] == 1000


def test_tls12_handshake_is_refused(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        ctx = ssl.create_default_context(cafile=str(h.ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        raw = socket.create_connection(("127.0.0.1", h.port), timeout=5)
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw, server_hostname="localhost")
        raw.close()
        with h.connect() as s:
            assert s.version() == "TLSv1.3"


def test_no_healthy_pod_gets_fast_503_problem(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    with running_edge(tmp_path, [pod]) as h:
        h.kill_pod(pod)
        h.wait_for(lambda: not any(p.available for p in h.worker.balancer.pods))
        r = get(h, "/x")
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"]
    assert r.json()["type"].endswith("/no-healthy-upstream")
    assert r.json()["request_id"] == r.headers["x-request-id"]
