"""Migrations and readiness on both storage backends: SQLite in a temp dir, real PostgreSQL.

PostgreSQL tests create a throwaway database per run and drop it afterwards. Without a
reachable server they skip, except under CI (``CI=true``), where a missing database is
a broken environment and must fail loudly instead of passing on SQLite alone.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from strongroom.adapters.db.engine import (
    SQLITE_BEGIN_OPTION,
    make_engine,
    normalize_url,
    write_transaction,
)
from strongroom.adapters.db.migrate import check_ready, current_revision, head_revision, upgrade
from strongroom.adapters.db.schema import metadata
from strongroom.config import Settings


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """The module's database with every table dropped, so each test starts unmigrated."""
    yield postgres_url
    engine = make_engine(Settings(database={"url": postgres_url}))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    url: str = request.getfixturevalue("fresh_postgres_url")
    return Settings(data_dir=tmp_path / "data", database={"url": url})


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


def test_upgrade_reaches_head_and_the_database_is_ready(settings: Settings, engine: Engine) -> None:
    upgrade(settings)
    assert current_revision(engine) == head_revision()
    assert head_revision().startswith("00")
    assert check_ready(engine).ok


def test_unmigrated_database_is_not_ready(settings: Settings, engine: Engine) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    readiness = check_ready(engine)
    assert not readiness.ok
    assert readiness.reason == f"database schema at nothing, this build needs {head_revision()}"


def test_upgrading_twice_changes_nothing(settings: Settings, engine: Engine) -> None:
    upgrade(settings)
    upgrade(settings)
    assert current_revision(engine) == head_revision()


def test_concurrent_upgrades_both_succeed(settings: Settings, engine: Engine) -> None:
    # Two hosts starting at once: the migration lock makes the second one a no-op.
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert check_ready(engine).ok


def test_migrations_produce_exactly_the_schema_module(settings: Settings, engine: Engine) -> None:
    upgrade(settings)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_tenant_status_is_constrained(settings: Settings, engine: Engine) -> None:
    upgrade(settings)
    tenants = metadata.tables["tenants"]
    with engine.begin() as connection:
        connection.execute(tenants.insert().values(id=str(uuid.uuid4()), name="acme"))
        row = connection.execute(sa.select(tenants)).one()
    assert row.status == "active"
    assert row.created_at is not None
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            tenants.insert().values(id=str(uuid.uuid4()), name="bad", status="deleted")
        )


def test_failed_transaction_leaves_no_trace(settings: Settings, engine: Engine) -> None:
    upgrade(settings)
    tenants = metadata.tables["tenants"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(tenants.insert().values(id="t-1", name="first"))
        connection.execute(tenants.insert().values(id="t-1", name="duplicate"))
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(tenants)).scalar() == 0


def test_sqlite_connections_get_the_configured_pragmas(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database={"sqlite_synchronous": "NORMAL", "busy_timeout_ms": 1234}
    )
    engine = make_engine(settings)
    with engine.connect() as connection:
        values = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
        }
    # synchronous=1 is NORMAL.
    assert values == {
        "journal_mode": "wal",
        "busy_timeout": 1234,
        "synchronous": 1,
        "foreign_keys": 1,
    }
    engine.dispose()


def test_sqlite_begin_immediate_takes_the_write_lock_at_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database={"busy_timeout_ms": 50})
    upgrade(settings)
    engine = make_engine(settings)
    immediate = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with immediate.begin():
        # A second writer cannot start: the lock was taken by BEGIN, not by a write.
        with pytest.raises(sa.exc.OperationalError, match="locked"), immediate.begin():
            pass
        # Readers still read (WAL).
        with engine.connect() as reader:
            assert reader.execute(sa.text("SELECT count(*) FROM tenants")).scalar() == 0
    engine.dispose()


_HOLD_THE_WRITE_TURN = """
import sys, time
from pathlib import Path
from strongroom.adapters.db.engine import make_engine, write_transaction
from strongroom.config import Settings
engine = make_engine(Settings(data_dir=Path(sys.argv[1]), database={"busy_timeout_ms": 50}))
with write_transaction(engine) as connection:
    connection.exec_driver_sql("INSERT INTO tenants (id, name) VALUES ('held', 'held')")
    print("holding", flush=True)
    time.sleep(0.6)
"""


def test_sqlite_writers_of_two_processes_queue_instead_of_failing_busy(tmp_path: Path) -> None:
    """A writer waits for another process's write in the kernel (its turn comes when the
    other commits), not in SQLite's busy handler: with a 50 ms busy timeout, a 600 ms
    write of another process would otherwise fail this one with "database is locked"."""
    settings = Settings(data_dir=tmp_path, database={"busy_timeout_ms": 50})
    upgrade(settings)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_WRITE_TURN, str(tmp_path)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
        engine = make_engine(settings)
        started = time.monotonic()
        with write_transaction(engine) as connection:
            waited = time.monotonic() - started
            connection.exec_driver_sql("INSERT INTO tenants (id, name) VALUES ('next', 'next')")
        with engine.connect() as connection:
            ids = connection.exec_driver_sql("SELECT id FROM tenants ORDER BY id").scalars()
            assert list(ids) == ["held", "next"]  # the holder committed first
        assert waited >= 0.3
        # Nested on one thread: SQLite's own answer (busy), not a wait on itself.
        with write_transaction(engine), pytest.raises(sa.exc.OperationalError, match="locked"):
            with write_transaction(engine):
                pass
        engine.dispose()
    finally:
        assert holder.wait(10) == 0


def test_unreachable_postgres_is_not_ready_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket closes: connection refused.
    settings = Settings(database={"url": f"postgresql://postgres@127.0.0.1:{port}/x"})
    engine = make_engine(settings)
    readiness = check_ready(engine)
    engine.dispose()
    assert not readiness.ok
    assert readiness.reason == "database unreachable (OperationalError)"


def test_postgres_urls_are_pinned_to_psycopg_3() -> None:
    assert normalize_url("postgresql://u:p%40ss@h/db") == "postgresql+psycopg://u:p%40ss@h/db"
    assert normalize_url("postgresql+psycopg2://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
