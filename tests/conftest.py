"""Shared fixtures: a throwaway PostgreSQL database per test module, on the machine's real server.

Where the server is unreachable the PostgreSQL half of a test skips with the reason;
under CI=true it fails instead, so a missing server can never pass CI silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from strongroom.adapters.db.engine import make_engine
from strongroom.config import Settings

PG_ADMIN_URL = os.environ.get(
    "STRONGROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
# An unreachable server should cost a test run seconds, not the driver's default minutes.
PG_CONNECT_TIMEOUT_S = 2


def _admin_engine() -> Engine:
    settings = Settings(database={"url": PG_ADMIN_URL, "connect_timeout_s": PG_CONNECT_TIMEOUT_S})
    return make_engine(settings).execution_options(isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        reason = f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unreachable: {exc!r}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: PostgreSQL tests may not be skipped)")
        pytest.skip(reason)
    name = f"strongroom_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
