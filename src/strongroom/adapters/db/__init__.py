"""SQL storage: engines for SQLite and PostgreSQL, the schema, and Alembic migrations.

- :func:`strongroom.adapters.db.engine.make_engine` — configured SQLAlchemy engine.
- :func:`strongroom.adapters.db.migrate.upgrade` and ``check_ready`` — schema and readiness.
- :data:`strongroom.adapters.db.schema.metadata` — tables for repositories and autogenerate.
"""
