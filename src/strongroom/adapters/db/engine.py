"""SQLAlchemy engines for the embedded (SQLite) and production (PostgreSQL) profiles.

SQLite: every connection gets WAL (readers never block the writer), ``busy_timeout``
(writers queue instead of failing at once), ``synchronous`` from settings (FULL keeps a
committed transfer across power loss) and ``foreign_keys=ON`` (off by default in SQLite).
The driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN``
itself, so DDL is transactional and a caller can ask for ``BEGIN IMMEDIATE`` with
``connection.execution_options(sqlite_begin="IMMEDIATE")`` to take the write lock up
front and avoid SQLITE_BUSY upgrades mid-transaction.

PostgreSQL: psycopg 3 (``postgresql+psycopg://``), pre-ping so a pool survives a
server restart, and a connect timeout so a dead server fails readiness quickly.
"""

from __future__ import annotations

import fcntl
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from strongroom.config import Settings

SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_BEGIN_MODES = frozenset({"DEFERRED", "IMMEDIATE", "EXCLUSIVE"})


def normalize_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg 3 whatever driver (or none) the operator wrote."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(settings: Settings, *, url: str | None = None, pre_ping: bool = True) -> Engine:
    """An engine for ``url`` (default: ``settings.database_url``); no connection is opened yet.

    ``pre_ping=False`` (PostgreSQL) saves a round trip per checkout, for a caller that
    retries work a dead pooled connection failed before anything was committed (the
    ledger's group commit)."""
    resolved = normalize_url(url or settings.database_url)
    backend = make_url(resolved).get_backend_name()
    db = settings.database
    if backend == "sqlite":
        engine = sa.create_engine(
            resolved,
            pool_size=db.pool_size,
            connect_args={
                "timeout": db.busy_timeout_ms / 1000,
                "check_same_thread": False,
            },
        )
        _install_sqlite_events(engine, settings)
        return engine
    if backend == "postgresql":
        engine = sa.create_engine(
            resolved,
            pool_size=db.pool_size,
            pool_pre_ping=pre_ping,
            connect_args={
                # libpq takes whole seconds and treats 1 as 2; round up, never to 0 (= forever).
                "connect_timeout": max(2, math.ceil(db.connect_timeout_s)),
                "application_name": settings.observe.service_name,
            },
        )
        return engine
    raise ValueError(f"unsupported database backend {backend!r}: use sqlite or postgresql")


def _install_sqlite_events(engine: Engine, settings: Settings) -> None:
    db = settings.database
    pragmas = (
        f"PRAGMA busy_timeout={int(db.busy_timeout_ms)}",
        f"PRAGMA synchronous={db.sqlite_synchronous}",
        "PRAGMA foreign_keys=ON",
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # None = driver autocommit: pysqlite stops issuing its own BEGIN/COMMIT
        # (which skips DDL) and SQLAlchemy's "begin" hook below takes over.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
            _switch_to_wal(cursor, db.busy_timeout_ms / 1000)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
        if mode is None:
            connection.exec_driver_sql("BEGIN")
            return
        if mode not in _SQLITE_BEGIN_MODES:
            raise ValueError(f"{SQLITE_BEGIN_OPTION} must be one of {sorted(_SQLITE_BEGIN_MODES)}")
        connection.exec_driver_sql(f"BEGIN {mode}")


# Retry pause while another connection holds the lock a switch to WAL needs.
_WAL_RETRY_PAUSE_S = 0.02


def _switch_to_wal(cursor: Any, timeout_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried for up to the busy timeout.

    Switching a new database to WAL needs an exclusive lock, and SQLite answers "database
    is locked" at once — without its busy handler — while another connection (a second
    process migrating the same new file) holds one; waiting is what the caller wants.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_WAL_RETRY_PAUSE_S)
        else:
            return


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction that holds the write lock from its first statement on SQLite.

    Writers that append to sequenced tables (deny-list events) rely on it: commit order
    is then sequence order, so a reader tailing by sequence number never skips a row.
    On SQLite, writers also queue for the file first (:class:`_WriterQueue`).
    """
    if not is_sqlite(engine):
        with engine.begin() as connection:
            yield connection
        return
    bind = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    with _writer_queue(engine).turn(), bind.begin() as connection:
        yield connection


class _WriterQueue:
    """The writers of one SQLite file on this host, waiting in the kernel for their turn.

    SQLite's own wait for its write lock is a busy handler that sleeps and polls (up to
    100 ms a nap): with two pod processes writing, a writer can nap through many turns of
    the other, and one in a hundred transfers waited ~1 s (bench/ledger.py). An exclusive
    ``flock`` on a file beside the database wakes the next writer as soon as the lock is
    released; SQLite's lock still decides, so a writer that skips this queue stays safe.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        # flock belongs to an open file, so the threads of a process queue here first.
        # Reentrant: a transaction opened inside another on the same thread gets SQLite's
        # own answer (busy, then an error), as before, instead of waiting on itself.
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._threads:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._fd is None or self._pid != os.getpid():  # not inherited across fork
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            # Blocking: a writer that kept its turn forever (a hung process) would hold
            # SQLite's write lock as long; the supervisor's health checks end it.
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class _NoQueue:
    """In-memory databases: one process, nothing to queue for."""

    @contextmanager
    def turn(self) -> Iterator[None]:
        yield


_WRITER_QUEUES: dict[str, _WriterQueue] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


def _writer_queue(engine: Engine) -> _WriterQueue | _NoQueue:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return _NoQueue()
    path = os.path.abspath(database) + "-writers.lock"
    with _WRITER_QUEUES_LOCK:
        queue = _WRITER_QUEUES.get(path)
        if queue is None:
            queue = _WRITER_QUEUES[path] = _WriterQueue(path)
    return queue
