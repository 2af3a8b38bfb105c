"""The WAF gate: 403 + waf.block event in block mode, waf.detect and forward in detect-only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from strongroom.config import Settings, WafSettings
from strongroom.edge.guard import Gate, GateRequest, Identity
from strongroom.edge.security_events import WAF_BLOCK, WAF_DETECT, SecurityEvents
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.gate import REQUEST_BLOCKED, WafGate, WafProtection, build_waf
from strongroom.edge.waf.rules import WafRules


def attack() -> GateRequest:
    return GateRequest(
        "203.0.113.9",
        b"GET",
        b"/v1/accounts?id=1%27+UNION+SELECT+password+FROM+users--",
        [],
        "req-7",
        identity=Identity("client-1", "tenant-1"),
    )


def clean() -> GateRequest:
    return GateRequest("203.0.113.9", b"GET", b"/v1/accounts?limit=10", [], "req-8")


def gate_for(mode: str = "block", rules_dir: Path | None = None) -> tuple[WafGate, SecurityEvents]:
    events = SecurityEvents(None, 0)
    settings = WafSettings(mode=mode)  # type: ignore[arg-type]
    return WafGate(Waf(settings, WafRules(rules_dir)), events), events


def test_the_gate_satisfies_the_edge_contract() -> None:
    gate: Gate = gate_for()[0]
    assert gate.name == "waf"


def test_a_clean_request_passes_without_an_event() -> None:
    gate, events = gate_for()
    assert gate.check(clean()) is None
    assert events.drain() == []


def test_block_mode_refuses_with_403_and_emits_the_evidence() -> None:
    gate, events = gate_for()
    refusal = gate.check(attack())
    assert refusal is not None
    assert (refusal.status, refusal.type_id) == (403, REQUEST_BLOCKED)
    [event] = events.drain()
    assert refusal.event_id == event["event_id"]
    assert event["kind"] == WAF_BLOCK
    assert event["action"] == "block"
    assert (event["client_ip"], event["client_id"], event["tenant_id"]) == (
        "203.0.113.9",
        "client-1",
        "tenant-1",
    )
    assert (event["method"], event["path"], event["request_id"]) == ("GET", "/v1/accounts", "req-7")
    details = event["details"]
    assert details["rule_ids"] and details["score"] >= 5
    assert (details["paranoia"], details["mode"]) == (1, "block")
    match = details["matches"][0]
    assert set(match) == {"rule_id", "category", "location", "excerpt", "score"}
    assert match["location"] == "args:id"
    assert gate.blocked == 1


def test_detect_only_forwards_and_emits_a_detect_event() -> None:
    gate, events = gate_for("detect-only")
    assert gate.check(attack()) is None
    [event] = events.drain()
    assert (event["kind"], event["action"]) == (WAF_DETECT, "detect")
    assert event["details"]["mode"] == "detect-only"
    assert gate.detected == 1


def test_an_uninspectable_body_is_refused_in_block_mode() -> None:
    gate, events = gate_for()
    request = GateRequest("1.2.3.4", b"POST", b"/v1/transfers", [], "r", body=None)
    refusal = gate.check(request)
    assert refusal is not None
    assert (refusal.status, refusal.type_id) == (413, "body-not-inspectable")
    [event] = events.drain()
    assert event["details"]["rule_ids"] == ["body-not-inspectable"]
    assert refusal.event_id == event["event_id"]


def test_an_uninspectable_body_is_only_reported_in_detect_only_mode() -> None:
    gate, events = gate_for("detect-only")
    request = GateRequest("1.2.3.4", b"POST", b"/v1/transfers", [], "r", body=None)
    assert gate.check(request) is None
    assert [e["kind"] for e in events.drain()] == [WAF_DETECT]


def test_check_async_decides_the_same() -> None:
    gate, _ = gate_for()
    refusal = asyncio.run(gate.check_async(attack()))
    assert refusal is not None and refusal.status == 403


def test_build_waf_is_none_when_disabled() -> None:
    settings = Settings(edge={"waf": {"enabled": False}})
    assert build_waf(settings, 0, SecurityEvents(None, 0)) is None


def test_build_waf_and_snapshot() -> None:
    protection = build_waf(Settings(), 0, SecurityEvents(None, 0))
    assert isinstance(protection, WafProtection)
    protection.gate.check(attack())
    snapshot = protection.snapshot()
    assert snapshot["mode"] == "block"
    assert snapshot["blocked"] == 1
    assert snapshot["rules"] > 40
    names = {metric.name for metric in protection.collector().collect()}
    assert "strongroom_edge_waf_requests" in names


def test_run_reloads_changed_rule_files(tmp_path: Path) -> None:
    settings = Settings(edge={"waf": {"rules_dir": str(tmp_path), "reload_poll_s": 0.01}})
    protection = build_waf(settings, 0, SecurityEvents(None, 0))
    assert protection is not None
    request = GateRequest("1.2.3.4", b"GET", b"/?q=a+forbidden+word", [], "r")
    assert protection.gate.check(request) is None

    async def scenario() -> None:
        task = asyncio.create_task(protection.run())
        path = tmp_path / "local.toml"
        path.write_text(
            '[[rule]]\nid = "local-1"\ncategory = "custom"\nseverity = "critical"\n'
            "targets = [\"args\"]\npatterns = ['forbidden']\n"
        )
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if protection.rules.reloads:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    refusal = protection.gate.check(request)
    assert refusal is not None and refusal.status == 403
