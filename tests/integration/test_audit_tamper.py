"""The tamper suite: a superuser who rewrites the audit log is caught by `audit verify` and the witness.

On SQLite and on a real PostgreSQL server (throwaway database; without a reachable server the
PostgreSQL half skips, except under ``CI=true``). Entries are written as the application
writes them, sequenced by the real sequencer into the real store with one signed checkpoint
per batch (exported to a file, as ``audit.export_path`` does), then a superuser disables the
append-only triggers and edits rows. The witness follows the log over HTTP through a small
server that answers ``/v1/audit/*`` from the same store.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from strongroom.adapters.db.audit_events import record_event
from strongroom.adapters.db.audit_store import SqlAuditStore
from strongroom.adapters.db.schema import audit_entries, audit_leaves
from strongroom.audit.checkpoint import Checkpoint, sign_checkpoint
from strongroom.audit.ports import StoredCheckpoint
from strongroom.audit.rfc9162_merkle import (
    CompactRange,
    consistency_nodes,
    consistency_proof,
    leaf_hash,
)
from strongroom.audit.sequencer import Sequencer
from strongroom.cli.main import app
from strongroom.config import Settings
from strongroom.runtime.audit_export import CheckpointExporter
from strongroom.runtime.audit_key import load_or_create_signer

runner = CliRunner()
ENTRIES = 20
BATCH = 4  # one checkpoint per 4 entries
TOKEN = "audit-reader"


@pytest.fixture
def export_path(tmp_path: Path) -> Path:
    return tmp_path / "outside" / "checkpoints.jsonl"


def write_entries(engine: Engine, count: int, first: int = 0) -> None:
    for i in range(first, first + count):
        with engine.begin() as connection:
            record_event(
                connection,
                event_type="transfer.posted",
                tenant_id="tenant-1",
                actor_kind="client",
                actor_id="client-1",
                request_id=f"req-{i}",
                subject_ids=[f"tr-{i}"],
                data={"amount": 100 + i},
                occurred_at_us=1_700_000_000_000_000 + i,
            )


def sequence(settings: Settings, engine: Engine, export_path: Path) -> None:
    """Sequence everything, publishing a checkpoint after every batch (the clock races on)."""
    ticks = iter(range(0, 10**9, 10))
    exporter = CheckpointExporter(export_path, None, 2.0)
    sequencer = Sequencer(
        SqlAuditStore(engine),
        load_or_create_signer(settings.audit_key_path, settings.audit.origin),
        origin=settings.audit.origin,
        checkpoint_interval_s=1.0,
        gap_grace_s=60.0,
        clock=lambda: float(next(ticks)),
        now_us=lambda: 1_700_000_000_000_000,
        batch_max=BATCH,
        on_publish=exporter,
    )
    while sequencer.run_once()[0].sequenced:
        pass
    exporter.close()


@pytest.fixture
def log(settings: Settings, engine: Engine, export_path: Path) -> Engine:
    write_entries(engine, ENTRIES)
    sequence(settings, engine, export_path)
    return engine


def verify(settings: Settings, *extra: str) -> Any:
    args = ["audit", "verify", "--data-dir", str(settings.data_dir), "--json", *extra]
    env = {"STRONGROOM_DATABASE__URL": settings.database.url or ""}
    return runner.invoke(app, args, env=env)


# -- the superuser ------------------------------------------------------------------------------


def as_superuser(engine: Engine, table: str, statement: str, **params: Any) -> None:
    """Run ``statement`` with ``table``'s append-only triggers out of the way."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            connection.execute(sa.text(statement), params)
            connection.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
            return
        triggers = connection.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name=:t"),
            {"t": table},
        ).all()
        for name, _ in triggers:
            connection.execute(sa.text(f"DROP TRIGGER {name}"))
        connection.execute(sa.text(statement), params)
        for _, sql in triggers:
            connection.execute(sa.text(sql))


def seq_of(engine: Engine, index: int) -> int:
    with engine.connect() as connection:
        seq = connection.execute(
            sa.select(audit_leaves.c.entry_seq).where(audit_leaves.c.leaf_index == index)
        ).scalar_one()
    return int(seq)


def rewrite_amount(engine: Engine, index: int, amount: int) -> bytes:
    """Change the amount of the entry at leaf ``index``; the new leaf's hash."""
    seq = seq_of(engine, index)
    as_superuser(
        engine,
        "audit_entries",
        "UPDATE audit_entries SET data = :d WHERE seq = :s",
        d=json.dumps({"amount": amount}),
        s=seq,
    )
    leaf = SqlAuditStore(engine).leaves(index, index + 1)[0]
    return leaf_hash(leaf)


# -- verify -------------------------------------------------------------------------------------


def test_an_untouched_log_verifies(settings: Settings, log: Engine, export_path: Path) -> None:
    result = verify(settings, "--checkpoints", str(export_path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["checked_entries"] == ENTRIES
    assert report["verified_size"] == ENTRIES
    # Every checkpoint twice: from the database and from the export file.
    assert report["checkpoints_checked"] == ENTRIES // BATCH


def test_the_application_cannot_rewrite_an_entry(log: Engine) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), log.begin() as connection:
        connection.execute(sa.update(audit_entries).values(data="{}"))


def test_a_rewritten_entry_is_named_by_its_index(settings: Settings, log: Engine) -> None:
    rewrite_amount(log, 13, 10**9)
    result = verify(settings)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["reason"], report["first_bad_index"]) == ("leaf-hash-mismatch", 13)


def test_a_rewritten_entry_and_leaf_hash_are_located_by_consistency_proofs(
    settings: Settings, log: Engine
) -> None:
    new_hash = rewrite_amount(log, 9, 1)
    as_superuser(
        log,
        "audit_tree_nodes",
        "UPDATE audit_tree_nodes SET hash = :h WHERE level = 0 AND idx = 9",
        h=new_hash,
    )
    result = verify(settings)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["reason"] == "root-mismatch"
    # Proofs through the rewritten level-0 node fail too: its sibling is the first leaf the
    # log cannot prove, and the range holds the rewritten one.
    assert report["first_bad_index"] in (8, 9)
    assert report["bad_range"][0] <= 9 < report["bad_range"][1] <= 12


def test_a_deleted_entry_is_named_by_its_index(settings: Settings, log: Engine) -> None:
    seq = seq_of(log, 6)
    as_superuser(log, "audit_entries", "DELETE FROM audit_entries WHERE seq = :s", s=seq)
    result = verify(settings)
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["reason"], report["first_bad_index"]) == ("missing-entry", 6)


def test_a_truncated_log_is_caught_by_the_exported_checkpoints(
    settings: Settings, log: Engine, export_path: Path
) -> None:
    # The superuser drops the tail and every checkpoint that covered it.
    as_superuser(log, "audit_leaves", "DELETE FROM audit_leaves WHERE leaf_index >= 14")
    as_superuser(log, "audit_checkpoints", "DELETE FROM audit_checkpoints WHERE size > 12")
    assert verify(settings).exit_code == 0  # the database alone now tells a consistent story
    result = verify(settings, "--checkpoints", str(export_path))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["reason"] == "truncated"
    assert report["first_bad_index"] == 14


# -- witness over HTTP -------------------------------------------------------------------------


@pytest.fixture
def api(log: Engine) -> Iterator[str]:
    """``/v1/audit/{checkpoint,public-key,entries,proofs/consistency}`` from the store."""
    store = SqlAuditStore(log)

    def answer(path: str, q: dict[str, int]) -> tuple[int, bytes]:
        if path == "/v1/audit/checkpoint":
            latest = store.latest_checkpoint()
            return (404, b"") if latest is None else (200, latest.note.encode())
        if path == "/v1/audit/public-key":
            return 200, (store.public_key() or "").encode()
        if path == "/v1/audit/entries":
            leaves = store.leaves(q["start"], q["end"])
            items = [
                {"index": q["start"] + i, "data": base64.b64encode(d).decode()}
                for i, d in enumerate(leaves)
            ]
            return 200, json.dumps({"entries": items}).encode()
        if path == "/v1/audit/proofs/consistency":
            old, new = q["old"], q["new"]
            nodes = store.nodes(consistency_nodes(old, new))
            proof = consistency_proof(old, new, lambda level, i: nodes[level, i])
            hashes = [base64.b64encode(h).decode() for h in proof]
            return 200, json.dumps({"old": old, "new": new, "hashes": hashes}).encode()
        return 404, b""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: int(v[0]) for k, v in parse_qs(parts.query).items()}
            status, body = answer(parts.path, query)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def witness(settings: Settings, url: str, state: Path) -> Any:
    args = ["audit", "witness", "--url", url, "--token", TOKEN, "--state", str(state), "--once"]
    return runner.invoke(app, [*args, "--data-dir", str(settings.data_dir)])


def test_verify_over_http_names_a_rewritten_entry(
    settings: Settings, log: Engine, api: str
) -> None:
    rewrite_amount(log, 3, 7)
    args = ["audit", "verify", "--url", api, "--token", TOKEN, "--json"]
    result = runner.invoke(app, [*args, "--data-dir", str(settings.data_dir)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["reason"], report["first_bad_index"]) == ("root-mismatch", 3)


def test_the_witness_follows_growth_and_alarms_on_a_rollback(
    settings: Settings, log: Engine, api: str, tmp_path: Path, export_path: Path
) -> None:
    state = tmp_path / "witness.note"
    assert witness(settings, api, state).exit_code == 0
    write_entries(log, 6, first=ENTRIES)
    sequence(settings, log, export_path)
    assert witness(settings, api, state).exit_code == 0
    assert state.read_text().split("\n")[1] == str(ENTRIES + 6)
    as_superuser(log, "audit_checkpoints", "DELETE FROM audit_checkpoints WHERE size > :n", n=16)
    result = witness(settings, api, state)
    assert result.exit_code == 2
    assert "ALARM (rollback)" in " ".join(result.output.split())
    assert list(tmp_path.glob("witness.note.alarm-*.json"))


def test_the_witness_alarms_on_a_fork_signed_with_the_stolen_key(
    settings: Settings, log: Engine, api: str, tmp_path: Path
) -> None:
    state = tmp_path / "witness.note"
    assert witness(settings, api, state).exit_code == 0
    # Superuser and the key file: rewrite an entry, rebuild the tree, sign the same size.
    new_hash = rewrite_amount(log, 2, 5)
    store = SqlAuditStore(log)
    leaves = store.leaves(0, ENTRIES)
    tree = CompactRange()
    tree.extend(leaf_hash(d) for d in leaves)
    assert leaf_hash(leaves[2]) == new_hash
    signer = load_or_create_signer(settings.audit_key_path, settings.audit.origin)
    note = sign_checkpoint(Checkpoint(settings.audit.origin, ENTRIES, tree.root()), [signer])
    as_superuser(log, "audit_checkpoints", "DELETE FROM audit_checkpoints")
    store.publish(StoredCheckpoint(ENTRIES, tree.root(), note, 1_700_000_000_000_001))
    result = witness(settings, api, state)
    assert result.exit_code == 2
    assert "ALARM (fork)" in " ".join(result.output.split())
