"""The bench harness's parsing and accounting; the benchmarks themselves never run here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench import _harness as harness
from hypothesis import given
from hypothesis import strategies as st

WRK_REPORT = """\
Running 10s test @ https://127.0.0.1:41234/healthz
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.01ms    1.02ms  20.47ms   89.46%
    Req/Sec     6.42k   320.28     6.86k    80.00%
  Latency Distribution
     50%  812.00us
     75%    5.21ms
     90%    1.20s
     99%    1.50m
  64170 requests in 10.00s, 9.74MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:   6416.90
Transfer/sec:    0.97MB
"""

CLEAN_WRK_REPORT = """\
Running 3s test @ http://127.0.0.1:8000/healthz
  1 threads and 4 connections
  Latency Distribution
     50%    0.56ms
     75%    0.70ms
     90%    0.90ms
     99%    3.19ms
  20244 requests in 3.00s, 2.90MB read
Requests/sec:   6748.00
Transfer/sec:    0.97MB
"""


def test_wrk_totals_are_parsed() -> None:
    result = harness.parse_wrk(WRK_REPORT, connections=32)
    assert (result.requests, result.duration_s, result.requests_per_s) == (64170, 10.0, 6416.90)


def test_wrk_latency_percentiles_are_converted_to_milliseconds() -> None:
    result = harness.parse_wrk(WRK_REPORT, connections=32)
    assert result.latency_ms == {"50": 0.812, "75": 5.21, "90": 1200.0, "99": 90_000.0}


def test_wrk_socket_errors_and_bad_statuses_count_as_errors() -> None:
    result = harness.parse_wrk(WRK_REPORT, connections=32)
    assert result.socket_errors == {"connect": 1, "read": 2, "write": 3, "timeout": 4}
    assert result.errors == 1 + 2 + 3 + 4 + 12


def test_wrk_report_without_error_lines_has_no_errors() -> None:
    assert harness.parse_wrk(CLEAN_WRK_REPORT, connections=4).errors == 0


def test_output_that_is_not_a_wrk_report_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        harness.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused", connections=1)


def test_duration_without_a_known_unit_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a wrk duration"):
        harness.parse_duration_ms("12 parsecs")


def test_proc_stat_fields_are_counted_after_the_last_parenthesis() -> None:
    # A command name may hold spaces and parentheses: "(odd) name)".
    stat = "1234 ((odd) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 5 0 0"
    assert harness.parse_proc_stat_ticks(stat) == (250, 75)


def test_cpu_seconds_of_a_busy_child_grow() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"]
    )
    try:
        first = harness.cpu_seconds(child.pid)
        time.sleep(0.3)
        assert harness.cpu_seconds(child.pid) > first
    finally:
        child.kill()
        child.wait()


def test_rss_is_read_from_the_vmrss_line() -> None:
    status = "Name:\tpython\nVmPeak:\t  9000 kB\nVmRSS:\t   4321 kB\nThreads:\t1\n"
    assert harness.parse_status_rss_kib(status) == 4321


def test_status_without_rss_is_rejected() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        harness.parse_status_rss_kib("Name:\tkworker\nState:\tI (idle)\n")


def test_own_process_rss_and_fds_are_positive() -> None:
    assert harness.rss_kib(os.getpid()) > 0
    assert harness.open_fds(os.getpid()) > 0


def test_taskset_prefix_is_added_only_for_an_existing_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench._harness.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(harness, "cpu_count", lambda: 2)
    assert harness.pinned(["wrk"], 1) == ["taskset", "-c", "1", "wrk"]
    assert harness.pinned(["wrk"], 2) == ["wrk"]
    assert harness.pinned(["wrk"], None) == ["wrk"]


def test_load_command_falls_back_to_python_without_wrk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "wrk_available", lambda: False)
    argv = harness.load_command("http://127.0.0.1:1/healthz", 8, 3.0)
    assert argv[1:4] == ["-m", "bench._harness", "loadgen"]


def test_processes_stops_every_child_it_started(tmp_path: Path) -> None:
    with harness.Processes(tmp_path) as procs:
        child = procs.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert child.poll() is not None


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_percentile_is_a_member_and_ordered(values: list[float]) -> None:
    ordered = sorted(values)
    p50, p99 = harness.percentile(ordered, 50), harness.percentile(ordered, 99)
    assert p50 in ordered
    assert p99 in ordered
    assert ordered[0] <= p50 <= p99 <= ordered[-1]


def test_percentile_of_nothing_is_zero() -> None:
    assert harness.percentile([], 99) == 0.0
