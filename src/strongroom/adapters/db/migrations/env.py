"""Alembic environment: runs migrations on a connection handed over by ``migrate.upgrade``.

Without one (a developer running ``alembic.command.revision(..., autogenerate=True)``)
it connects with the process's settings. SQLite gets batch mode (it cannot ALTER most
things in place) and transactional DDL (our engine makes SQLite's DDL transactional).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.schema import metadata
from strongroom.config import load_settings


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=sqlite,
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or load_settings().database_url
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    handed_over = context.config.attributes.get("connection")
    if isinstance(handed_over, Connection):
        _run(handed_over)
        return
    settings = load_settings()
    engine = make_engine(settings, url=context.config.get_main_option("sqlalchemy.url"))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
