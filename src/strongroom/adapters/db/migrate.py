"""Schema migrations (Alembic, driven from code) and the storage readiness check.

The migration scripts ship inside the package (``strongroom/adapters/db/migrations``)
so an installed wheel can migrate without a checkout or an ``alembic.ini``. Pods never
migrate: whoever starts them (the supervisor, or ``strongroom db upgrade`` in
production) calls :func:`upgrade` first, and a pod reports ready only once
:func:`check_ready` sees the database at :func:`head_revision`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine, make_url

from strongroom.adapters.db.engine import SQLITE_BEGIN_OPTION, make_engine
from strongroom.config import Settings

MIGRATIONS_LOCATION = "strongroom.adapters.db:migrations"
# Alembic's default bookkeeping table.
_VERSION_TABLE = "alembic_version"

# Key under which the PostgreSQL advisory lock is taken during upgrades, so two
# processes (two hosts starting at once) never run the same migration concurrently.
# The value is arbitrary but fixed: ASCII "strongrm" as a signed 64-bit integer.
_PG_MIGRATION_LOCK_KEY = int.from_bytes(b"strongrm", "big", signed=True)


@dataclass(frozen=True)
class Readiness:
    ok: bool
    reason: str


def alembic_config(url: str | None = None) -> Config:
    """An in-memory Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    if url is not None:
        # ConfigParser interpolation would treat % in passwords as syntax.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this build (read once: the scripts cannot change)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in the package")
    return head


def current_revision(bind: Engine | Connection) -> str | None:
    """The revision the database is at, or ``None`` for an unmigrated database."""
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            return current_revision(connection)
    # Plain SQL rather than Alembic's MigrationContext: this runs on every readiness
    # probe, and the context logs two INFO lines each time it is built.
    if not inspect(bind).has_table(_VERSION_TABLE):
        return None
    versions = bind.execute(text(f"SELECT version_num FROM {_VERSION_TABLE}")).scalars().all()  # noqa: S608
    if len(versions) > 1:
        raise RuntimeError(f"database has several migration heads: {sorted(versions)}")
    return versions[0] if versions else None


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Migrate ``settings.database_url`` to ``revision`` in one transaction."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        # The embedded profile's database lives in the data dir, which may be new.
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings)
    try:
        # SQLite: take the write lock first, so a second migrator waits instead of
        # failing halfway with a stale snapshot.
        options = {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if engine.dialect.name == "sqlite" else {}
        with (
            engine.connect().execution_options(**options) as connection,
            connection.begin(),
        ):
            if engine.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _PG_MIGRATION_LOCK_KEY},
                )
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def check_ready(engine: Engine) -> Readiness:
    """Storage is usable by this build: a connection works and the schema is at head.

    Reasons name the failure class only; exception text can carry DSNs or hostnames
    and the answer leaves the process.
    """
    try:
        current = current_revision(engine)
    except Exception as exc:
        return Readiness(False, f"database unreachable ({type(exc).__name__})")
    head = head_revision()
    if current != head:
        return Readiness(
            False, f"database schema at {current or 'nothing'}, this build needs {head}"
        )
    return Readiness(True, "ready")
