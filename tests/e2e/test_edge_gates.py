"""The edge's gate pipeline: head gates, body gates, deferred (I/O) gates, connection gates.

The gates here are small recording implementations of the ``Gate`` protocol; the real
protections (blocklist, rate limits, WAF) have their own end-to-end tests. These pin what
the edge promises every gate: refused requests never reach a pod, body gates see the whole
body (sized or chunked), gate headers reach the client, ``on_done`` runs once per request,
and identities learned from pods are used on the next request with the same token.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from strongroom.edge.guard import DEFER, GateRequest, Identity, Refusal
from tests.e2e.edge_harness import EdgeHarness, FakePod, Seen, running_edge


@dataclass
class RecordingGate:
    name: str
    refuse_when: bytes = b""
    defer: bool = False
    seen: list[GateRequest] = field(default_factory=list)
    done: list[int] = field(default_factory=list)

    def _verdict(self, request: GateRequest) -> Refusal | None:
        subject = request.body if self.name == "body" else request.target
        if self.refuse_when and subject is not None and self.refuse_when in subject:
            return Refusal(403, "request-blocked", f"{self.name} says no", event_id="sev-test-1")
        request.response_headers.append((b"x-gate-" + self.name.encode(), b"passed"))
        request.on_done.append(self.done.append)
        return None

    def check(self, request: GateRequest) -> Refusal | object | None:
        self.seen.append(request)
        if self.defer:
            return DEFER
        return self._verdict(request)

    async def check_async(self, request: GateRequest) -> Refusal | None:
        return self._verdict(request)


@dataclass
class RefuseIp:
    refused: bool = True
    closed: list[str] = field(default_factory=list)

    def admit_connection(self, client_ip: str) -> Refusal | None:
        if self.refused:
            return Refusal(403, "blocked", "this address is blocked", event_id="sev-ip")
        return None

    def connection_closed(self, client_ip: str) -> None:
        self.closed.append(client_ip)


def install(h: EdgeHarness, head: list[object], body: list[object], conn: list[object]) -> None:
    assert h.worker is not None
    state = h.worker.state

    async def apply() -> None:
        state.set_gates(head, body, conn, 1024 * 1024)  # type: ignore[arg-type]

    h.call(apply())


def client(h: EdgeHarness) -> httpx.Client:
    return httpx.Client(verify=h.tls_context(), base_url=f"https://localhost:{h.port}")


def test_a_head_gate_refusal_is_a_problem_with_the_event_id_and_never_reaches_a_pod(
    tmp_path: Path,
) -> None:
    pod = FakePod("pod-0", "a")
    gate = RecordingGate("head", refuse_when=b"/blocked")
    with running_edge(tmp_path, [pod]) as h:
        install(h, [gate], [], [])
        with client(h) as c:
            refused = c.get("/blocked/x")
            passed = c.get("/fine")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    doc = refused.json()
    assert doc["type"] == "https://strongroom.dev/problems/request-blocked"
    assert doc["event_id"] == "sev-test-1"
    assert passed.status_code == 200
    assert passed.headers["x-gate-head"] == "passed"
    assert pod.paths() == ["/fine"]
    assert gate.done == [200]


def test_a_body_gate_sees_the_whole_body_sized_or_chunked(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    gate = RecordingGate("body", refuse_when=b"evil")
    with running_edge(tmp_path, [pod]) as h:
        install(h, [], [gate], [])
        with client(h) as c:
            sized = c.post("/p", content=b"x" * 100_000 + b"evil")

            def chunks():
                yield b"a" * 1000
                yield b"ev"
                yield b"il"

            chunked = c.post("/p", content=chunks())
            fine = c.post("/p", content=b"y" * 100_000)
    assert sized.status_code == 403
    assert chunked.status_code == 403
    assert fine.status_code == 200
    assert fine.json()["body_len"] == 100_000
    assert [len(r.body or b"") for r in gate.seen] == [100_004, 1004, 100_000]
    assert pod.paths() == ["/p"]


def test_a_deferred_gate_decides_on_the_coroutine_path(tmp_path: Path) -> None:
    pod = FakePod("pod-0", "a")
    gate = RecordingGate("io", refuse_when=b"/no", defer=True)
    with running_edge(tmp_path, [pod]) as h:
        install(h, [gate], [], [])
        with client(h) as c:
            statuses = [c.get(path).status_code for path in ("/no", "/yes", "/no/2", "/yes/2")]
    assert statuses == [403, 200, 403, 200]
    assert pod.paths() == ["/yes", "/yes/2"]
    assert gate.done == [200, 200]


def test_identity_learned_from_a_pod_applies_to_the_next_request_with_that_token(
    tmp_path: Path,
) -> None:
    def who(seen: Seen) -> tuple[int, list[tuple[str, str]], bytes]:
        return (
            200,
            [("x-strongroom-client", "client-7"), ("x-strongroom-tenant", "tenant-3")],
            b"{}",
        )

    pod = FakePod("pod-0", "a", handler=who)
    gate = RecordingGate("head")
    with running_edge(tmp_path, [pod]) as h:
        install(h, [gate], [], [])
        with client(h) as c:
            first = c.get("/a", headers={"Authorization": "Bearer token-1"})
            second = c.get("/b", headers={"Authorization": "Bearer token-1"})
            other = c.get("/c", headers={"Authorization": "Bearer token-2"})
    assert "x-strongroom-client" not in first.headers  # internal: stripped at the edge
    assert "x-strongroom-tenant" not in first.headers
    identities = [r.identity for r in gate.seen]
    assert identities[0] is None
    assert identities[1] == Identity("client-7", "tenant-3")
    assert identities[2] is None  # a different token proves nothing
    assert second.status_code == other.status_code == 200


def test_a_connection_gate_refuses_before_any_request_and_admitted_ones_are_released(
    tmp_path: Path,
) -> None:
    pod = FakePod("pod-0", "a")
    gate = RefuseIp()
    with running_edge(tmp_path, [pod]) as h:
        install(h, [], [], [gate])
        raw = h.raw(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 403 ")
        assert json.loads(raw.split(b"\r\n\r\n", 1)[1])["event_id"] == "sev-ip"
        gate.refused = False
        with client(h) as c:
            assert c.get("/ok").status_code == 200
        h.wait_for(lambda: gate.closed == ["127.0.0.1"])
    assert pod.paths() == ["/ok"]


def test_on_done_runs_once_when_the_client_leaves_before_the_answer(tmp_path: Path) -> None:
    """What a gate holds for a request (a concurrency slot) is released even when the client
    disconnects mid-request: the edge calls ``on_done`` with status 0, exactly once."""
    pod = FakePod("pod-0", "a", delay_s=1.0)
    gate = RecordingGate("head")
    with running_edge(tmp_path, [pod]) as h:
        install(h, [gate], [], [])
        with h.connect() as s:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            h.wait_for(lambda: pod.paths() == ["/slow"])
        h.wait_for(lambda: gate.done == [0])
        time.sleep(pod.delay_s + 0.2)  # the pod's late answer must not release it again
    assert gate.done == [0]
