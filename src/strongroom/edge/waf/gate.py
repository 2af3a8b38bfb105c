"""The WAF as an edge gate: block (403 ``request-blocked``) or detect, and tell the SIEM.

A request whose anomaly score reaches the threshold gets, in ``block`` mode, a 403
problem+json answer naming the security event id, and a ``waf.block`` event with the
rule ids, the matched locations and excerpts, the score, the paranoia level and the mode;
in ``detect-only`` mode the same evidence goes out as ``waf.detect`` and the request is
forwarded. A request the WAF cannot inspect completely (a body the edge did not buffer,
or one past the JSON/size limits) is refused with 413/400 in ``block`` mode — never
forwarded uninspected — unless an exclusion turns body inspection off for its route.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from strongroom.config import Settings, WafSettings
from strongroom.edge.guard import DEFER, Defer, GateRequest, Refusal
from strongroom.edge.security_events import WAF_BLOCK, WAF_DETECT, SecurityEvent, SecurityEvents
from strongroom.edge.waf.engine import Waf, WafResult
from strongroom.edge.waf.rules import WafRules

log = structlog.get_logger("strongroom.edge.waf")

REQUEST_BLOCKED = "request-blocked"
BLOCK = "block"
DETECT_ONLY = "detect-only"
# Paths in events are truncated: the event is evidence, not a copy of the request.
EVENT_PATH_CHARS_MAX = 256
# Bodies from this size on are inspected in a worker thread (see ``check_async``).
THREAD_BODY_BYTES_MIN = 64 * 1024
# Matches listed per event (each is ≤ 64 characters of excerpt plus its location).
EVENT_MATCHES_MAX = 16


class WafGate:
    """Inspects every request once its body is complete; answers synchronously."""

    name = "waf"

    def __init__(self, waf: Waf, events: SecurityEvents) -> None:
        self.waf = waf
        self.events = events
        self.inspected = 0
        self.blocked = 0
        self.detected = 0
        self.not_inspectable = 0
        self.below_threshold = 0

    @property
    def mode(self) -> str:
        return self.waf.settings.mode

    def check(self, request: GateRequest) -> Refusal | Defer | None:
        body = request.body
        if body is not None and len(body) >= THREAD_BODY_BYTES_MIN:
            return DEFER
        return self.decide(request)

    async def check_async(self, request: GateRequest) -> Refusal | None:
        # Inspecting a large body takes milliseconds to a few hundred (a full batch of
        # transfers): in a thread, the worker's event loop keeps serving other
        # connections between the interpreter's switches. Only the inspection runs
        # there; counters and events stay on the loop.
        result = await asyncio.to_thread(self.waf.inspect, request)
        return self.conclude(request, result)

    def decide(self, request: GateRequest) -> Refusal | None:
        return self.conclude(request, self.waf.inspect(request))

    def conclude(self, request: GateRequest, result: WafResult) -> Refusal | None:
        self.inspected += 1
        blocking = self.mode == BLOCK
        problem = result.not_inspectable
        if problem is not None:
            self.not_inspectable += 1
            event_id = self._emit(request, result, problem.type_id, blocking)
            if not blocking:
                return None
            return Refusal(problem.status, problem.type_id, problem.detail, event_id=event_id)
        if not result.blocked:
            if result.matches:
                self.below_threshold += 1
            return None
        event_id = self._emit(request, result, None, blocking)
        if not blocking:
            self.detected += 1
            return None
        self.blocked += 1
        return Refusal(
            403,
            REQUEST_BLOCKED,
            "The web application firewall blocked this request; quote the event id to support.",
            event_id=event_id,
        )

    def _emit(
        self, request: GateRequest, result: WafResult, refusal: str | None, blocking: bool
    ) -> str:
        settings = self.waf.settings
        identity = request.identity
        details: dict[str, object] = {
            "rule_ids": result.rule_ids if refusal is None else [refusal],
            "matches": [m.as_dict() for m in result.matches[:EVENT_MATCHES_MAX]],
            "score": result.score,
            "threshold": settings.inbound_threshold,
            "paranoia": settings.paranoia,
            "mode": settings.mode,
            "rules_version": self.waf.rules.current.version,
        }
        if refusal is not None and result.not_inspectable is not None:
            details["reason"] = result.not_inspectable.detail
        return self.events.emit(
            SecurityEvent(
                kind=WAF_BLOCK if blocking else WAF_DETECT,
                client_ip=request.client_ip,
                request_id=request.request_id,
                method=request.method.decode("latin-1"),
                path=request.path.decode("latin-1")[:EVENT_PATH_CHARS_MAX],
                client_id=identity.client_id if identity else None,
                tenant_id=identity.tenant_id if identity else None,
                action="block" if blocking else "detect",
                details=details,
            )
        )


class WafProtection:
    """The WAF as an edge worker wires it: the gate plus the rule-file reload loop."""

    def __init__(self, gate: WafGate, rules: WafRules, reload_poll_s: float) -> None:
        self.gate = gate
        self.rules = rules
        self._reload_poll_s = reload_poll_s

    async def run(self) -> None:
        """Poll the rule files until cancelled; a bad file keeps the last good rules."""
        while True:
            await asyncio.sleep(self._reload_poll_s)
            with contextlib.suppress(OSError):
                self.rules.reload_if_changed()

    def snapshot(self) -> dict[str, object]:
        gate = self.gate
        settings = gate.waf.settings
        return {
            "mode": settings.mode,
            "paranoia": settings.paranoia,
            "inbound_threshold": settings.inbound_threshold,
            "rules_version": self.rules.current.version,
            "rules": len(self.rules.current.rules),
            "rules_reloads": self.rules.reloads,
            "rules_errors": dict(self.rules.errors),
            "inspected": gate.inspected,
            "blocked": gate.blocked,
            "detected": gate.detected,
            "not_inspectable": gate.not_inspectable,
            "below_threshold": gate.below_threshold,
        }

    def collector(self) -> Collector:
        """Prometheus families from the snapshot (register on the worker's registry)."""
        return _WafCollector(self)


class _WafCollector(Collector):
    def __init__(self, protection: WafProtection) -> None:
        self._protection = protection

    def collect(self) -> Iterable[Metric]:
        snap = self._protection.snapshot()
        decisions = CounterMetricFamily(
            "strongroom_edge_waf_requests",
            "Requests inspected by this edge worker's WAF, by outcome",
            labels=["outcome"],
        )
        for outcome in ("blocked", "detected", "not_inspectable", "below_threshold"):
            decisions.add_metric([outcome], float(str(snap[outcome])))
        yield decisions
        yield CounterMetricFamily(
            "strongroom_edge_waf_inspected",
            "Requests inspected by this edge worker's WAF",
            value=float(str(snap["inspected"])),
        )
        yield GaugeMetricFamily(
            "strongroom_edge_waf_rules",
            "Signature rules in force",
            value=float(str(snap["rules"])),
        )
        errors = snap["rules_errors"]
        yield GaugeMetricFamily(
            "strongroom_edge_waf_rule_files_invalid",
            "Rule files that failed to load (their last good version stays in force)",
            value=float(len(errors) if isinstance(errors, dict) else 0),
        )


def build_waf(settings: Settings, worker: int, events: SecurityEvents) -> WafProtection | None:
    """The worker's WAF, or None when it is disabled (``edge.waf.enabled = false``).

    ``worker`` is accepted for symmetry with the other protections: the WAF keeps no
    per-worker state beyond its counters.
    """
    config: WafSettings = settings.edge.waf
    if not config.enabled:
        return None
    rules = WafRules(config.rules_dir)
    log.info(
        "edge.waf_ready",
        worker=worker,
        mode=config.mode,
        paranoia=config.paranoia,
        rules=len(rules.current.rules),
        rules_version=rules.current.version,
    )
    gate = WafGate(Waf(config, rules), events)
    return WafProtection(gate, rules, config.reload_poll_s)
