"""A real pod process drains on SIGTERM: readyz 503 at once, in-flight work finishes, exit 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from strongroom.adapters.db.migrate import upgrade
from strongroom.config import SETTINGS_FILE_ENV_VAR, Settings, dump_settings

# The pod under test gets one extra route that sleeps, so a request can be in flight
# when SIGTERM arrives; everything else is the production entry point.
POD_SCRIPT = """
import asyncio
from strongroom.api import pod
from strongroom.config import load_settings

production_create_app = pod.create_app

def create_app(settings, **kwargs):
    app = production_create_app(settings, **kwargs)

    @app.get("/test/slow")
    async def slow(seconds: float) -> dict[str, float]:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return app

pod.create_app = create_app
pod.run(load_settings(), 0, "zone-x")
"""

DRAIN_GRACE_S = 1.0
SLOW_REQUEST_S = 2.0
STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(http: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "pod exited during start-up"
        try:
            if http.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("pod did not come up")


def test_sigterm_drains_then_finishes_in_flight_request_and_exits_zero(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        pods={
            "port_base": port,
            "drain_grace_s": DRAIN_GRACE_S,
            "shutdown_timeout_s": 5.0,
        },
    )
    upgrade(settings)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(dump_settings(settings))
    log_file = tmp_path / "pod.log"
    env = {**os.environ, SETTINGS_FILE_ENV_VAR: str(settings_file)}
    base = f"http://127.0.0.1:{port}"

    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", POD_SCRIPT], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    http = httpx.Client(base_url=base, timeout=2.0)
    slow_http = httpx.Client(base_url=base, timeout=10.0)
    try:
        wait_until_up(http, process)
        assert http.get("/readyz").json() == {"status": "ready"}

        slow_result: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: slow_result.append(
                slow_http.get("/test/slow", params={"seconds": SLOW_REQUEST_S})
            )
        )
        slow.start()
        time.sleep(0.3)  # let the slow request reach the pod
        process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()

        readyz = http.get("/readyz")
        while readyz.status_code != 503 and time.monotonic() - signalled_at < 0.5:
            readyz = http.get("/readyz")
        assert readyz.status_code == 503
        assert readyz.json() == {"status": "draining"}
        assert readyz.headers["connection"] == "close"
        # Still serving new requests during the grace period, each closing its connection.
        info = http.get("/")
        assert info.status_code == 200
        assert info.headers["connection"] == "close"

        slow.join(timeout=10.0)
        assert slow_result and slow_result[0].status_code == 200
        assert process.wait(timeout=10.0) == 0
        # Shutdown waited for the grace period before it stopped accepting.
        assert time.monotonic() - signalled_at >= DRAIN_GRACE_S
    finally:
        http.close()
        slow_http.close()
        if process.poll() is None:
            process.kill()
            process.wait()

    records = [
        json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")
    ]
    events = {record["event"] for record in records}
    assert {"pod starting", "draining", "pod stopped"} <= events
    assert all(
        record.get("pod") == "pod-0" and record.get("zone") == "zone-x" for record in records
    )
