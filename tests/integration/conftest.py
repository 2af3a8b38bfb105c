"""The backends most integration tests run on: the same test on SQLite and on a migrated
PostgreSQL database (tests/conftest.py's throwaway one, emptied after each test).

A module with other needs (a fresh database per test, two pools, no migration) defines its
own ``settings`` or ``engine``, which take precedence over these."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    return Settings(data_dir=tmp_path / "data", database={"url": url})


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    upgrade(settings)
    engine = make_engine(settings)
    yield engine
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(sa.text("DROP SCHEMA public CASCADE"))
            connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()
