"""run/ files: atomic writes, state round trip, upstream generations, frozen settings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.config import SETTINGS_FILE_ENV_VAR, Settings, load_settings
from strongroom.runtime.state import (
    ProcessState,
    RunState,
    Upstream,
    pid_alive,
    read_state,
    read_upstreams,
    write_json_atomic,
    write_settings,
    write_state,
    write_upstreams,
)


def a_state(**process: object) -> RunState:
    fields: dict[str, object] = {
        "name": "pod-0",
        "role": "pod",
        "index": 0,
        "pid": 1234,
        "zone": "a",
        "version": "0.1.0",
        "port": 8500,
        "health": "healthy",
        "restarts": 2,
        "started_at": 1.5,
        **process,
    }
    return RunState(
        supervisor_pid=42,
        started_at=1.0,
        version="0.1.0",
        edge_url="https://localhost:8443",
        ca_cert="/data/tls/ca.pem",
        processes=[ProcessState.model_validate(fields)],
    )


def test_state_round_trips_through_state_json(tmp_path: Path):
    write_state(tmp_path, a_state())
    assert read_state(tmp_path) == a_state()


def test_state_json_has_the_documented_keys(tmp_path: Path):
    write_state(tmp_path, a_state())
    data = json.loads((tmp_path / "state.json").read_text())
    assert set(data) == {
        "supervisor_pid",
        "started_at",
        "version",
        "edge_url",
        "ca_cert",
        "processes",
    }
    assert set(data["processes"][0]) == {
        "name",
        "role",
        "index",
        "pid",
        "zone",
        "version",
        "port",
        "health",
        "restarts",
        "started_at",
    }


def test_missing_state_reads_as_none(tmp_path: Path):
    assert read_state(tmp_path) is None


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path):
    for i in range(3):
        write_json_atomic(tmp_path / "x.json", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert json.loads((tmp_path / "x.json").read_text()) == {"i": 2}


def test_failed_atomic_write_keeps_the_old_file(tmp_path: Path):
    write_json_atomic(tmp_path / "x.json", {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"bad": object()})
    assert json.loads((tmp_path / "x.json").read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=8))
def test_atomic_write_reads_back_what_was_written(tmp_path_factory, data: dict[str, int]):
    path = tmp_path_factory.mktemp("atomic") / "doc.json"
    write_json_atomic(path, data)
    assert json.loads(path.read_text()) == data


def test_each_upstream_list_gets_a_higher_generation(tmp_path: Path):
    pod = Upstream(name="pod-0", host="127.0.0.1", port=8500, zone="a", weight=100, version="v")
    first = write_upstreams(tmp_path, [pod])
    second = write_upstreams(tmp_path, [pod])
    assert (first.generation, second.generation) == (1, 2)
    assert read_upstreams(tmp_path) == second


def test_settings_file_is_private_and_children_load_exactly_that_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    settings = Settings(data_dir=tmp_path, pods={"count": 3}, secrets={"edge_secret": "s3cret"})
    path = write_settings(tmp_path, settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv(SETTINGS_FILE_ENV_VAR, str(path))
    monkeypatch.setenv("STRONGROOM_PODS__COUNT", "9")  # ignored: the frozen tree wins
    loaded = load_settings()
    assert loaded.pods.count == 3
    assert loaded.secrets.edge_secret.get_secret_value() == "s3cret"


def test_own_pid_is_alive_and_an_unused_pid_is_not():
    assert pid_alive(os.getpid())
    assert not pid_alive(None)
    assert not pid_alive(2**22 + 12345)  # above pid_max's default ceiling
