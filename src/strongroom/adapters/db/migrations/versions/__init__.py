"""Alembic revisions, applied in order by :func:`strongroom.adapters.db.migrate.upgrade`."""
