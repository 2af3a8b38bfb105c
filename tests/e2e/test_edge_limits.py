"""Smuggling and limit cases: each gets its error and never reaches a pod."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.edge_harness import FakePod, read_all, running_edge, status_of

SMUGGLING = {
    "cl_and_te": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"
    ),
    "te_and_cl": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 6\r\n\r\n0\r\n\r\nG"
    ),
    "duplicate_cl": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "duplicate_equal_cl": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "cl_list": b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc",
    "obs_fold": b"GET /s HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n",
    "invalid_chunk_size": b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"FFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"
    ),
    "te_not_chunked": b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_on_http10": b"POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_space_before_colon": b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "duplicate_te": (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "bare_lf": b"GET /s HTTP/1.1\nHost: x\n\n",
    "missing_host": b"GET /s HTTP/1.1\r\n\r\n",
    "two_hosts": b"GET /s HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "absolute_form": b"GET http://evil/s HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul_in_header": b"GET /s HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "upgrade_h2c": b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory):
    pod = FakePod("pod-0", "a")
    with running_edge(
        tmp_path_factory.mktemp("edge"),
        [pod],
        limits={"header_read_timeout_s": 1.0, "body_bytes_max": 1024, "header_count_max": 20},
    ) as h:
        yield h, pod


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_ambiguous_framing_is_rejected_and_never_forwarded(edge, case: str) -> None:
    h, pod = edge
    before = len(pod.paths())
    response = h.raw(SMUGGLING[case])
    assert status_of(response) in (400, 501, 505), response[:200]
    assert b"application/problem+json" in response
    assert b"connection: close" in response
    time.sleep(0.05)
    assert len(pod.paths()) == before, pod.paths()[before:]


def test_oversized_headers_get_431(edge) -> None:
    h, pod = edge
    before = len(pod.paths())
    big = b"GET /s HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of(h.raw(big)) == 431
    many = (
        b"GET /s HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(30))
        + b"\r\n"
    )
    assert status_of(h.raw(many)) == 431
    assert len(pod.paths()) == before


def test_oversized_body_gets_413_before_reading_it(edge) -> None:
    h, pod = edge
    before = len(pod.paths())
    response = h.raw(b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"a" * 10)
    assert status_of(response) == 413
    chunked = (
        b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"a" * 1024
        + b"\r\n"
        + b"400\r\n"
        + b"a" * 1024
        + b"\r\n0\r\n\r\n"
    )
    assert status_of(h.raw(chunked)) == 413
    time.sleep(0.05)
    assert len(pod.paths()) == before


def test_slow_headers_get_408_and_are_never_forwarded(edge) -> None:
    h, pod = edge
    before = len(pod.paths())
    with h.connect(timeout_s=5) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        response = read_all(s)
        elapsed = time.monotonic() - started
    assert status_of(response) == 408
    assert elapsed < 3
    assert len(pod.paths()) == before


def test_valid_chunked_body_is_forwarded_intact(edge) -> None:
    h, pod = edge
    body = b"hello world"
    request = (
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    )
    response = h.raw(request)
    assert status_of(response) == 200
    assert pod.seen[-1].body == body
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["body_len"] == len(body)
