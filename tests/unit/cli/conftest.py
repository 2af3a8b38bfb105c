"""CLI tests resolve settings from a clean environment: no STRONGROOM_* leaks in or out."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from strongroom.config import CONFIG_ENV_VAR


@pytest.fixture(autouse=True)
def clean_strongroom_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("STRONGROOM_"):
            monkeypatch.delenv(name)
    # load_settings(config_file=...) sets this variable; an empty value means "no TOML"
    # and monkeypatch removes it again after the test.
    monkeypatch.setenv(CONFIG_ENV_VAR, "")
    yield
