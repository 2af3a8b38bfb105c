"""SqlAuditStore and the sequencer on SQLite and PostgreSQL: sequencing, out-of-order commits,
racing sequencers, proofs against signed checkpoints, search, and the tamper suite."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from strongroom.adapters.db.audit_store import SequencerLock, SqlAuditStore, record_of
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import audit_tree_nodes
from strongroom.audit.canonical import AuditRecordError, leaf_bytes, parse_leaf
from strongroom.audit.checkpoint import open_checkpoint
from strongroom.audit.ports import AppendConflictError, EntryQuery
from strongroom.audit.rfc9162_merkle import (
    CompactRange,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from strongroom.audit.sequencer import Sequencer
from strongroom.audit.signed_note import Signer
from strongroom.config import Settings
from strongroom.ledger.model import now_us

ORIGIN = "test.example/audit"
AUDIT_TABLES = (
    "audit_leaves",
    "audit_tree_nodes",
    "audit_checkpoints",
    "audit_horizons",
    "audit_keys",
    "audit_subjects",
)
SIGNER = Signer.generate(ORIGIN)
# SQLite VM instructions between two calls of a progress handler.
PROGRESS_STEP = 100


def migrated(tmp_path: Path, database: dict[str, str]) -> Settings:
    settings = Settings(data_dir=tmp_path, database=database)
    upgrade(settings)
    return settings


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    database = (
        {"url": request.getfixturevalue("postgres_url")} if request.param == "postgresql" else {}
    )
    return migrated(tmp_path, database)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_settings(postgres_url: str, tmp_path: Path) -> Settings:
    """For behaviours only PostgreSQL has (concurrent writers, sequence gaps, roles)."""
    return migrated(tmp_path, {"url": postgres_url})


@pytest.fixture
def pg_engine(pg_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(pg_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant() -> str:
    """A fresh tenant per test: the PostgreSQL database (and its one log) is shared by the
    module, so tests look at their own entries only."""
    return str(uuid.uuid4())


def insert(
    bind: sa.Connection,
    tenant: str,
    n: int = 1,
    *,
    event_type: str = "transfer.created",
    subjects: tuple[str, ...] = (),
    at_us: int = 1_800_000_000_000_000,
) -> list[int]:
    rows = [
        {
            "tenant_id": tenant,
            "event_type": event_type,
            "actor_kind": "client",
            "actor_id": "c-1",
            "request_id": f"r-{i}",
            "subject_ids": json.dumps(list(subjects)),
            "data": json.dumps({"amount": 2**63 - 1, "i": i}),
            "occurred_at_us": at_us + i,
        }
        for i in range(n)
    ]
    seqs = []
    for row in rows:  # one statement a row: RETURNING seq on both backends
        seqs.append(
            bind.execute(
                sa.text(
                    "INSERT INTO audit_entries (tenant_id, event_type, actor_kind, actor_id,"
                    " request_id, subject_ids, data, occurred_at_us) VALUES (:tenant_id,"
                    " :event_type, :actor_kind, :actor_id, :request_id, :subject_ids, :data,"
                    " :occurred_at_us) RETURNING seq"
                ),
                row,
            ).scalar_one()
        )
    return seqs


def add(engine: Engine, tenant: str, n: int = 1, **kwargs: object) -> list[int]:
    with engine.begin() as connection:
        return insert(connection, tenant, n, **kwargs)  # type: ignore[arg-type]


def sequencer(store: SqlAuditStore, *, grace_s: float = 60.0, batch_max: int = 1000) -> Sequencer:
    return Sequencer(
        store,
        SIGNER,
        origin=ORIGIN,
        checkpoint_interval_s=0.001,
        gap_grace_s=grace_s,
        clock=time.monotonic,
        now_us=now_us,
        batch_max=batch_max,
    )


def index_of(engine: Engine, seq: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT leaf_index FROM audit_leaves WHERE entry_seq = :s"), {"s": seq}
            ).scalar_one()
        )


def drain(seq: Sequencer) -> None:
    while seq.step().sequenced:
        pass


# --- sequencing and proofs ------------------------------------------------------------------


def test_sequenced_entries_prove_inclusion_and_consistency_against_signed_checkpoints(
    engine: Engine, tenant: str
) -> None:
    store = SqlAuditStore(engine)
    seq = sequencer(store, batch_max=16)
    mine = add(engine, tenant, 21)
    drain(seq)
    time.sleep(0.002)
    old = seq.maybe_publish()
    mine += add(engine, tenant, 40)
    drain(seq)
    time.sleep(0.002)
    new = seq.maybe_publish()
    assert old is not None and new is not None and new.size == old.size + 40
    assert store.public_key() == SIGNER.verifier_key()
    assert store.latest_checkpoint() == new
    checkpoint = open_checkpoint(new.note, [SIGNER.verifier()])
    assert checkpoint.root_hash == new.root_hash
    for s in mine:
        index = index_of(engine, s)
        (leaf,) = store.leaves(index, index + 1)
        assert parse_leaf(leaf).data["amount"] == 2**63 - 1
        assert store.nodes([(0, index)])[(0, index)] == leaf_hash(leaf)
        nodes = store.nodes(inclusion_nodes(index, new.size))
        proof = inclusion_proof(index, new.size, lambda lv, i: nodes[(lv, i)])
        assert verify_inclusion(leaf_hash(leaf), index, new.size, proof, new.root_hash)
    nodes = store.nodes(consistency_nodes(old.size, new.size))
    proof = consistency_proof(old.size, new.size, lambda lv, i: nodes[(lv, i)])
    assert verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


def test_leaves_are_a_contiguous_run_that_stops_at_the_end_of_the_log(
    engine: Engine, tenant: str
) -> None:
    store = SqlAuditStore(engine)
    add(engine, tenant, 5)
    drain(sequencer(store))
    size = store.tree_size()
    assert len(store.leaves(size - 5, size + 10)) == 5
    assert store.leaves(size, size + 3) == [] and store.leaves(3, 3) == []


def test_a_restarted_sequencer_continues_the_same_tree(engine: Engine, tenant: str) -> None:
    store = SqlAuditStore(engine)
    add(engine, tenant, 7)
    first = sequencer(store)
    drain(first)
    add(engine, tenant, 9)
    second = sequencer(store)
    drain(second)
    time.sleep(0.002)
    published = second.maybe_publish()
    assert published is not None and published.size == store.tree_size()
    hashes = [leaf_hash(leaf) for leaf in store.leaves(0, published.size)]
    assert root_of(hashes) == published.root_hash


def test_a_proof_reads_its_nodes_by_key_without_scanning_the_tree(tmp_path: Path) -> None:
    """SQLite does not serve a row-value IN list from the primary key: a scan of every node
    per proof (~45 ms at 10^5 leaves). Counted in SQLite VM steps, independent of timing."""
    engine = make_engine(migrated(tmp_path, {}))
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # go on

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_progress_handler(count, PROGRESS_STEP)

    try:
        size = 2**14
        nodes = CompactRange().append_many(leaf_hash(b"%d" % i) for i in range(size))
        with engine.begin() as connection:
            connection.execute(
                sa.insert(audit_tree_nodes),
                [{"level": lv, "idx": i, "hash": h} for lv, i, h in nodes],
            )
        store = SqlAuditStore(engine)
        for coordinates in (inclusion_nodes(size // 3, size - 5), consistency_nodes(77, size)):
            steps[0] = 0
            found = store.nodes(coordinates)
            assert set(found) == set(coordinates)
            assert steps[0] * PROGRESS_STEP < len(nodes)  # far below one step per node
    finally:
        engine.dispose()


def test_an_entry_committed_after_a_larger_seq_is_sequenced_when_it_commits(
    pg_engine: Engine, tenant: str
) -> None:
    """PostgreSQL only: SQLite has one writer, so its commits are in seq order."""
    engine = pg_engine
    store = SqlAuditStore(engine)
    seq = sequencer(store)
    drain(seq)
    with engine.connect() as slow:
        slow_tx = slow.begin()
        (early,) = insert(slow, tenant)  # allocated first, still uncommitted
        (late,) = add(engine, tenant)
        assert early < late
        drain(seq)
        found = store.search(EntryQuery(tenant_id=tenant))
        assert [(e.seq, e.index is not None) for e in found] == [(late, True)]
        assert seq.horizon.gaps == (early,)
        slow_tx.commit()
    drain(seq)
    assert index_of(engine, early) == index_of(engine, late) + 1
    assert seq.horizon.gaps == () and seq.horizon.horizon >= late


def test_a_rolled_back_seq_is_given_up_after_the_grace_period(
    pg_engine: Engine, tenant: str
) -> None:
    """PostgreSQL only: SQLite reuses a rolled-back rowid, so it leaves no gap."""
    engine = pg_engine
    store = SqlAuditStore(engine)
    seq = sequencer(store, grace_s=0.3)
    drain(seq)
    with engine.connect() as connection, connection.begin() as tx:
        (lost,) = insert(connection, tenant)
        tx.rollback()
    (after,) = add(engine, tenant)
    drain(seq)
    assert lost in seq.horizon.gaps
    time.sleep(0.35)
    seq.step()
    assert lost not in seq.horizon.gaps and seq.horizon.horizon >= after
    (last,) = add(engine, tenant)
    drain(seq)  # the horizon is persisted with the next append
    assert sequencer(store).horizon.horizon >= last


def test_two_racing_sequencers_never_fork_the_log(engine: Engine, tenant: str) -> None:
    store = SqlAuditStore(engine)
    start = store.tree_size()
    conflicts = []

    def run(s: Sequencer) -> None:
        for _ in range(30):
            try:
                s.step()
            except AppendConflictError:
                conflicts.append(1)
            except sa.exc.IntegrityError:  # the unique index caught it first
                conflicts.append(1)

    racers = [sequencer(store, batch_max=3), sequencer(store, batch_max=3)]
    for s in racers:
        s.restore()
    mine = add(engine, tenant, 40)
    threads = [threading.Thread(target=run, args=(s,)) for s in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    drain(sequencer(store))
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT leaf_index, entry_seq FROM audit_leaves WHERE leaf_index >= :s"),
            {"s": start},
        ).all()
    assert sorted(r.leaf_index for r in rows) == list(range(start, start + len(rows)))
    assert set(mine) <= {r.entry_seq for r in rows}
    assert len({r.entry_seq for r in rows}) == len(rows)
    size = store.tree_size()
    hashes = [leaf_hash(leaf) for leaf in store.leaves(0, size)]
    stored = store.nodes([(0, i) for i in range(size)])
    assert hashes == [stored[(0, i)] for i in range(size)]


def test_the_sequencer_lock_admits_one_holder_at_a_time(engine: Engine) -> None:
    first, second = SequencerLock(engine), SequencerLock(engine)
    try:
        assert first.try_acquire()
        if engine.dialect.name == "postgresql":
            assert not second.try_acquire()
            first.release()
            assert second.try_acquire()
    finally:
        first.release()
        second.release()


# --- search ---------------------------------------------------------------------------------


def test_search_filters_by_tenant_subject_event_type_and_time(engine: Engine, tenant: str) -> None:
    store = SqlAuditStore(engine)
    other = str(uuid.uuid4())
    subject = str(uuid.uuid4())
    a = add(engine, tenant, 3, subjects=(subject, "x"), at_us=1_000)
    b = add(engine, tenant, 2, event_type="account.created", at_us=5_000)
    add(engine, other, 2, subjects=(subject,))
    drain(sequencer(store))
    unsequenced = add(engine, tenant, 1, at_us=9_000)

    def seqs(**filters: object) -> list[int]:
        return [e.seq for e in store.search(EntryQuery(**filters))]  # type: ignore[arg-type]

    assert seqs(tenant_id=tenant) == a + b + unsequenced
    assert seqs(tenant_id=tenant, subject_id=subject) == a
    assert len(seqs(subject_id=subject)) == 5  # operators: every tenant
    assert seqs(tenant_id=tenant, event_type="account.created") == b
    assert seqs(tenant_id=tenant, from_us=1_001, to_us=5_001) == a[1:] + b[:1]
    assert seqs(tenant_id=tenant, after_seq=a[1], limit=2) == [a[2], b[0]]
    found = store.search(EntryQuery(tenant_id=tenant))
    assert found[-1].index is None and all(e.index is not None for e in found[:-1])
    assert found[0].record.subject_ids == (subject, "x")


# --- tamper suite ---------------------------------------------------------------------------


def test_audit_tables_refuse_update_delete_and_truncate(engine: Engine, tenant: str) -> None:
    store = SqlAuditStore(engine)
    add(engine, tenant, 2, subjects=("s",))
    seq = sequencer(store)
    drain(seq)
    time.sleep(0.002)
    seq.maybe_publish()
    for table in AUDIT_TABLES:
        column = {
            "audit_leaves": "entry_seq",
            "audit_tree_nodes": "idx",
            "audit_checkpoints": "size",
            "audit_horizons": "tree_size",
            "audit_keys": "registered_at_us",
            "audit_subjects": "entry_seq",
        }[table]
        statements = [f"UPDATE {table} SET {column} = {column} + 1", f"DELETE FROM {table}"]
        if engine.dialect.name == "postgresql":
            statements.append(f"TRUNCATE {table}")
        for statement in statements:
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as c:
                c.execute(sa.text(statement))


def test_a_superuser_rewrite_changes_the_served_leaf_but_not_the_stored_hash(
    engine: Engine, tenant: str
) -> None:
    """What `strongroom audit verify` detects: leaves() recomputes from the rewritten row."""
    store = SqlAuditStore(engine)
    (target,) = add(engine, tenant)
    drain(sequencer(store))
    index = index_of(engine, target)
    (before,) = store.leaves(index, index + 1)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        else:
            connection.execute(sa.text("DROP TRIGGER audit_entries_no_update"))
        connection.execute(
            sa.text("UPDATE audit_entries SET data = :d WHERE seq = :s"),
            {"d": json.dumps({"amount": 1}), "s": target},
        )
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
    (after,) = store.leaves(index, index + 1)
    assert after != before
    assert store.nodes([(0, index)])[(0, index)] == leaf_hash(before) != leaf_hash(after)
    if not postgres:  # a row that no longer decodes is served as a non-leaf
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE audit_entries SET data = 'not json' WHERE seq = :s"),
                {"s": target},
            )
        (garbled,) = store.leaves(index, index + 1)
        assert leaf_hash(garbled) != leaf_hash(before)


def test_a_row_rewritten_into_an_invalid_record_is_served_as_a_leaf_no_verifier_accepts(
    engine: Engine, tenant: str
) -> None:
    """Rows are read back without re-validation (AuditRecord.trusted): the served leaf is
    what the row says, which matches neither the stored hash nor the leaf format."""
    store = SqlAuditStore(engine)
    (target,) = add(engine, tenant)
    drain(sequencer(store))
    index = index_of(engine, target)
    (before,) = store.leaves(index, index + 1)
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        else:
            connection.execute(sa.text("DROP TRIGGER audit_entries_no_update"))
        connection.execute(
            sa.text("UPDATE audit_entries SET event_type = 'account.teleported' WHERE seq = :s"),
            {"s": target},
        )
        if postgres:
            connection.execute(sa.text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
    (after,) = store.leaves(index, index + 1)
    assert leaf_hash(after) != leaf_hash(before) == store.nodes([(0, index)])[(0, index)]
    with pytest.raises(AuditRecordError) as raised:
        parse_leaf(after)
    assert raised.value.code == "malformed-leaf"


def test_the_least_privilege_role_can_insert_and_read_but_never_change_the_log(
    pg_settings: Settings, pg_engine: Engine, tenant: str
) -> None:
    settings, engine = pg_settings, pg_engine
    role = f"audit_app_{uuid.uuid4().hex[:8]}"
    tables = ", ".join(("audit_entries", *AUDIT_TABLES))
    with engine.begin() as connection:  # the docs/deployment.md "Audit log role" setup
        connection.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'"))
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        connection.execute(sa.text(f"GRANT SELECT, INSERT ON {tables} TO {role}"))
        connection.execute(sa.text(f"GRANT USAGE ON SEQUENCE audit_entries_seq_seq TO {role}"))
    url = make_url(settings.database_url).set(username=role, password="pw")
    app = make_engine(settings, url=url.render_as_string(hide_password=False))
    try:
        add(app, tenant, 2)
        store = SqlAuditStore(app)
        drain(sequencer(store))  # the sequencer itself needs nothing more
        refused = [
            "UPDATE audit_entries SET actor_id = 'x'",
            "DELETE FROM audit_leaves",
            "TRUNCATE audit_tree_nodes",
            "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_entries_no_change ON audit_entries",
            "UPDATE audit_leaves SET entry_seq = entry_seq",
        ]
        for statement in refused:
            with (
                pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"),
                app.begin() as connection,
            ):
                connection.execute(sa.text(statement))
    finally:
        app.dispose()
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP OWNED BY {role}"))
            connection.execute(sa.text(f"DROP ROLE {role}"))


def test_record_of_reads_amounts_beyond_doubles_exactly(engine: Engine, tenant: str) -> None:
    (s,) = add(engine, tenant)
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT * FROM audit_entries WHERE seq = :s"), {"s": s}
        ).one()
    assert b'"amount":9223372036854775807' in leaf_bytes(record_of(row))
