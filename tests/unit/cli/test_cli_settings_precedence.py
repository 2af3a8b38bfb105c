"""defaults < TOML < environment < flags, merged key by key."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from strongroom.cli import up as up_module
from strongroom.cli.main import app
from strongroom.cli.settings_flags import build_overrides, resolve_settings, split_zones
from strongroom.config import Settings
from strongroom.observe import logging as observe_logging

TOML = """
[pods]
count = 3

[edge]
port = 9000
workers = 2
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "strongroom.toml"
    path.write_text(TOML)
    return path


def test_toml_overrides_defaults(config_file: Path):
    settings = resolve_settings(config_file, {})
    assert (settings.pods.count, settings.edge.port, settings.edge.workers) == (3, 9000, 2)
    assert settings.edge.admin_port == 9440  # untouched default


def test_environment_overrides_toml(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRONGROOM_EDGE__PORT", "9100")
    settings = resolve_settings(config_file, {})
    assert settings.edge.port == 9100
    assert settings.edge.workers == 2  # the TOML sibling survives


def test_flags_override_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRONGROOM_PODS__COUNT", "4")
    monkeypatch.setenv("STRONGROOM_EDGE__PORT", "9100")
    settings = resolve_settings(config_file, build_overrides(pods=5))
    assert settings.pods.count == 5
    assert settings.edge.port == 9100


def test_a_nested_flag_keeps_sibling_keys_from_lower_layers(config_file: Path):
    settings = resolve_settings(config_file, build_overrides(port=9200))
    assert (settings.edge.port, settings.edge.workers) == (9200, 2)


def test_unset_flags_override_nothing():
    assert build_overrides() == {}


def test_zones_flag_is_split_on_commas():
    assert split_zones("a, b,,c") == ["a", "b", "c"]
    assert build_overrides(zones="a,b") == {"pods": {"zones": ["a", "b"]}}


def test_relative_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    settings = resolve_settings(None, build_overrides(data_dir=Path("here")))
    assert settings.data_dir == tmp_path / "here"


def test_up_hands_flag_resolved_settings_to_the_supervisor(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    seen: list[Settings] = []

    async def fake_run_up(settings: Settings, console: object) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(up_module, "run_up", fake_run_up)
    monkeypatch.setattr(observe_logging, "configure_logging", lambda *a, **k: None)
    monkeypatch.setenv("STRONGROOM_EDGE__PORT", "9100")
    result = CliRunner().invoke(
        app,
        [
            "up",
            "--config",
            str(config_file),
            "--data-dir",
            str(tmp_path / "d"),
            "--pods",
            "4",
            "--edge-workers",
            "3",
            "--zones",
            "a,b",
        ],
    )
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.data_dir == tmp_path / "d"
    assert (settings.pods.count, settings.pods.zones) == (4, ["a", "b"])
    assert (settings.edge.workers, settings.edge.port) == (3, 9100)
