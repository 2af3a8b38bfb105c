"""`make run` itself: the README's command brings the platform up behind the TLS edge."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from strongroom.edge.tls import client_context
from tests.e2e.platform_harness import free_port_block

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_serves_healthz_through_the_edge_within_60_s(tmp_path: Path) -> None:
    port = free_port_block(1)
    env = {
        **os.environ,
        "STRONGROOM_DATA_DIR": str(tmp_path / "data"),
        "STRONGROOM_EDGE__PORT": str(port),
        "STRONGROOM_EDGE__ADMIN_PORT": str(free_port_block(2)),
        "STRONGROOM_PODS__PORT_BASE": str(free_port_block(3)),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        ["make", "-s", "-C", str(REPO), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "make-run.log").open("wb"),
        start_new_session=True,
    )
    try:
        ca = tmp_path / "data" / "tls" / "ca.pem"
        status = 0
        while time.monotonic() - started < 60 and proc.poll() is None:
            if ca.exists():
                try:
                    with httpx.Client(verify=client_context(ca), timeout=5) as c:
                        status = c.get(f"https://localhost:{port}/healthz").status_code
                except (httpx.HTTPError, OSError):
                    status = 0
                if status == 200:
                    break
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            # make and strongroom share the session we gave them: stop the supervisor
            # gracefully through its process group.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    assert status == 200, (tmp_path / "make-run.log").read_text()[-2000:]
    assert elapsed < 60
