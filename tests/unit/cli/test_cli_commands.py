"""status, config show, version, openapi, db upgrade and configuration errors."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom import __version__
from strongroom.cli.main import app
from strongroom.cli.settings_options import EXIT_CONFIG_ERROR
from strongroom.config import Settings
from strongroom.runtime.lock import PidLock
from strongroom.runtime.state import ProcessState, RunState, write_state

runner = CliRunner()
DEAD_PID = 2**22 + 4321  # above the kernel's pid_max ceiling: never alive


def write_run_state(data_dir: Path, pid: int) -> None:
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True)
    process = ProcessState(
        name="pod-0",
        role="pod",
        index=0,
        pid=pid,
        zone="a",
        version="0.1.0",
        port=8500,
        health="healthy",
        restarts=1,
        started_at=1.0,
    )
    write_state(
        run_dir,
        RunState(
            supervisor_pid=pid,
            started_at=1.0,
            version="0.1.0",
            edge_url="https://localhost:8443",
            ca_cert=None,
            processes=[process],
        ),
    )


def test_production_profile_with_default_secrets_is_refused_with_a_clear_message(tmp_path):
    result = runner.invoke(app, ["up", "--profile", "production", "--data-dir", str(tmp_path)])
    assert result.exit_code == EXIT_CONFIG_ERROR
    assert "refusing the production profile" in result.output
    assert "secrets.edge_secret is the built-in default" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_invalid_flag_value_is_reported_as_a_configuration_error(tmp_path: Path):
    result = runner.invoke(app, ["up", "--pods", "0", "--data-dir", str(tmp_path)])
    assert result.exit_code == EXIT_CONFIG_ERROR
    assert "at least one pod" in result.output


def test_status_without_any_state_exits_one(tmp_path: Path):
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "No supervisor has run" in result.output


def test_status_marks_a_vanished_pid_dead_and_exits_one(tmp_path: Path):
    write_run_state(tmp_path, DEAD_PID)
    result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "dead" in result.output
    assert "not running" in result.output


def test_status_json_reports_a_running_supervisor(tmp_path: Path):
    write_run_state(tmp_path, os.getpid())
    lock = PidLock(tmp_path / "run" / "supervisor.pid")
    lock.acquire()
    try:
        result = runner.invoke(app, ["status", "--data-dir", str(tmp_path), "--json"])
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["supervisor_running"] is True
    (process,) = data["processes"]
    assert (process["name"], process["alive"], process["health"]) == ("pod-0", True, "healthy")


def test_status_table_lists_each_process(tmp_path: Path):
    write_run_state(tmp_path, os.getpid())
    lock = PidLock(tmp_path / "run" / "supervisor.pid")
    lock.acquire()
    try:
        result = runner.invoke(app, ["status", "--data-dir", str(tmp_path)])
    finally:
        lock.release()
    assert result.exit_code == 0
    assert "pod-0" in result.output
    assert "healthy" in result.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRONGROOM_SECRETS__EDGE_SECRET", "topsecret-value")
    for fmt in ("toml", "json"):
        result = runner.invoke(app, ["config", "show", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "topsecret-value" not in result.output
        assert "**********" in result.output


def test_config_show_toml_is_a_valid_settings_file(tmp_path: Path):
    result = runner.invoke(app, ["config", "show", "--data-dir", str(tmp_path)])
    data = tomllib.loads(result.output)
    del data["secrets"]
    assert Settings.model_validate(data).data_dir == tmp_path


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_openapi_writes_a_json_document(tmp_path: Path):
    output = tmp_path / "openapi.json"
    result = runner.invoke(app, ["openapi", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "openapi" in json.loads(output.read_text())


def test_db_upgrade_creates_the_embedded_database(tmp_path: Path):
    result = runner.invoke(app, ["db", "upgrade", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "strongroom.db").exists()
