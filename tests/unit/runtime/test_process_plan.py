"""The process plan: names, order, zones, ports and the child command line."""

from __future__ import annotations

import sys

from strongroom.config import Settings
from strongroom.runtime.process import START_ORDER, STOP_ORDER, build_specs, child_command


def settings() -> Settings:
    return Settings(
        pods={"count": 3, "port_base": 8600, "zones": ["a", "b"]},
        edge={"workers": 2, "port": 9443, "admin_port": 9700, "zones": ["x"]},
        workers={"count": 1},
    )


def test_processes_are_planned_workers_then_pods_then_edge():
    names = [spec.name for spec in build_specs(settings())]
    assert names == ["worker-0", "pod-0", "pod-1", "pod-2", "edge-0", "edge-1"]


def test_stop_order_is_the_reverse_of_start_order():
    assert tuple(reversed(START_ORDER)) == STOP_ORDER == ("edge", "pod", "worker")


def test_pods_get_round_robin_zones_and_consecutive_ports():
    pods = [s for s in build_specs(settings()) if s.role == "pod"]
    assert [(p.zone, p.port) for p in pods] == [("a", 8600), ("b", 8601), ("a", 8602)]


def test_pods_are_probed_on_readyz_and_edge_workers_on_their_admin_healthz():
    specs = {s.name: s for s in build_specs(settings())}
    assert (specs["pod-1"].health_port, specs["pod-1"].health_path) == (8601, "/readyz")
    assert (specs["edge-1"].health_port, specs["edge-1"].health_path) == (9701, "/healthz")
    assert specs["edge-1"].port == 9443
    assert specs["edge-1"].zone == "x"
    assert specs["worker-0"].health_port is None


def test_child_command_follows_the_runtime_contract():
    pod = next(s for s in build_specs(settings()) if s.name == "pod-1")
    assert child_command(pod) == [
        sys.executable,
        "-m",
        "strongroom.runtime.child",
        "pod",
        "--index",
        "1",
        "--zone",
        "b",
    ]


def test_an_entrypoint_override_is_passed_only_to_its_role():
    specs = {s.name: s for s in build_specs(settings())}
    overrides = {"pod": "fake.module:pod"}
    assert child_command(specs["pod-0"], overrides)[-2:] == ["--entry", "fake.module:pod"]
    assert "--entry" not in child_command(specs["edge-0"], overrides)
