"""The worker's audit sequencer: its key file, its checkpoint export, and the job end to end."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.unit.runtime.test_worker_jobs import run_until

from strongroom.adapters.db.audit_store import SqlAuditStore
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.audit.checkpoint import open_checkpoint
from strongroom.audit.ports import StoredCheckpoint
from strongroom.audit.signed_note import Verifier
from strongroom.config import Settings
from strongroom.runtime.audit_export import CheckpointExporter
from strongroom.runtime.audit_key import AuditKeyError, load_or_create_signer
from strongroom.runtime.worker import audit_sequencer_job


def test_the_signing_key_is_created_private_once_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "log.key"
    first = load_or_create_signer(path, "log.example/a")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+log.example/a+")
    again = load_or_create_signer(path, "log.example/a")
    assert again.verifier_key() == first.verifier_key()


def test_a_key_made_for_another_origin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_signer(path, "log.example/a")
    with pytest.raises(AuditKeyError, match="origin"):
        load_or_create_signer(path, "log.example/b")


def test_exported_checkpoints_are_appended_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "anchor" / "checkpoints.jsonl"
    exporter = CheckpointExporter(path, None, 1.0)
    for size in (1, 2):
        exporter(StoredCheckpoint(size, bytes(32), f"note {size}\n", size))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(x["size"], x["note"]) for x in lines] == [(1, "note 1\n"), (2, "note 2\n")]


def test_the_job_runs_on_worker_zero_only() -> None:
    assert audit_sequencer_job(Settings(), 1) is None
    assert audit_sequencer_job(Settings(), 0) is not None


def test_the_job_sequences_entries_and_publishes_an_exported_signed_checkpoint(
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        workers={"shutdown_timeout_s": 2.0},
        audit={"export_path": tmp_path / "export.jsonl", "poll_interval_s": 0.02},
    )
    upgrade(settings)
    engine = make_engine(settings)
    with engine.begin() as connection:
        for i in range(3):
            connection.execute(
                sa.text(
                    "INSERT INTO audit_entries (tenant_id, event_type, actor_kind, actor_id,"
                    " request_id, subject_ids, data, occurred_at_us)"
                    " VALUES ('t', 'account.created', 'system', 'test', NULL, '[]', :d, 1)"
                ),
                {"d": json.dumps({"i": i})},
            )
    store = SqlAuditStore(engine)
    job = audit_sequencer_job(settings, 0)
    assert job is not None
    run_until([job], lambda: store.latest_checkpoint() is not None, settings)
    latest = store.latest_checkpoint()
    assert latest is not None and latest.size == 3
    key = store.public_key()
    assert key is not None
    assert open_checkpoint(latest.note, [Verifier.from_key(key)]).size == 3
    assert json.loads((tmp_path / "export.jsonl").read_text())["note"] == latest.note
    assert settings.audit_key_path.exists()
    engine.dispose()
