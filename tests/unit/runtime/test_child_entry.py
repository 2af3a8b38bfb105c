"""The child entry point resolves role functions and calls them by the contract."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest

from strongroom.config import Settings
from strongroom.runtime.child import ROLE_ENTRYPOINTS, resolve_entry, run_role

calls: list[tuple[object, ...]] = []


@pytest.fixture
def fake_module() -> Iterator[str]:
    module = types.ModuleType("strongroom_test_fake_roles")
    module.three = lambda settings, index, zone: calls.append((settings, index, zone))  # type: ignore[attr-defined]
    module.two = lambda settings, index: calls.append((settings, index))  # type: ignore[attr-defined]
    module.not_callable = 42  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    calls.clear()
    yield module.__name__
    del sys.modules[module.__name__]


def test_default_roles_follow_the_runtime_contract():
    assert ROLE_ENTRYPOINTS == {
        "edge": "strongroom.edge.main:run",
        "pod": "strongroom.api.pod:run",
        "worker": "strongroom.runtime.worker:run",
    }


def test_edge_and_pod_get_settings_index_and_zone(fake_module: str):
    settings = Settings()
    run_role(settings, "pod", 2, "b", f"{fake_module}:three")
    assert calls == [(settings, 2, "b")]


def test_worker_gets_settings_and_index(fake_module: str):
    settings = Settings()
    run_role(settings, "worker", 1, "a", f"{fake_module}:two")
    assert calls == [(settings, 1)]


@pytest.mark.parametrize("entry", ["no_colon", ":run", "module:"])
def test_malformed_entry_is_rejected(entry: str):
    with pytest.raises(ValueError, match=r"package\.module:function"):
        resolve_entry(entry)


def test_non_callable_entry_is_rejected(fake_module: str):
    with pytest.raises(TypeError):
        resolve_entry(f"{fake_module}:not_callable")


def test_default_entries_resolve():
    for entry in ROLE_ENTRYPOINTS.values():
        assert callable(resolve_entry(entry))
