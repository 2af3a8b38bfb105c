"""`strongroom audit verify|witness|witness-keygen` against a fake `/v1/audit` API.

The fake serves an in-memory log exactly in the issue's formats (plain HTTP on loopback:
the client's TLS set-up is `strongroom token`'s, tested there), so each test can rewrite,
truncate or fork the log it serves.
"""

from __future__ import annotations

import base64
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import CliRunner

from strongroom.audit.canonical import AuditRecord, leaf_bytes
from strongroom.audit.checkpoint import Checkpoint, sign_checkpoint
from strongroom.audit.rfc9162_merkle import CompactRange, consistency_proof, leaf_hash
from strongroom.audit.signed_note import Signer, open_note
from strongroom.audit.witness import CosignatureVerifier
from strongroom.cli.main import app

runner = CliRunner()
ORIGIN = "audit.strongroom.test/log"
TOKEN = "test-token"


def said(result: Any) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def entry(i: int, amount: int | None = None) -> bytes:
    return leaf_bytes(
        AuditRecord(
            event_type="transfer.posted",
            tenant_id="tenant-1",
            actor_kind="client",
            actor_id="client-1",
            request_id=f"req-{i}",
            subject_ids=(f"tr-{i}",),
            data={"amount": i if amount is None else amount},
            occurred_at_us=1_700_000_000_000_000 + i,
        )
    )


class FakeLog:
    """An honest log the tests can then tamper with: what it serves, not what it signed."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.leaves: list[bytes] = []
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.tree = CompactRange()
        self.notes: list[str] = []
        self.served_note: str | None = None  # overrides the latest note

    def append(self, count: int, new: list[bytes] | None = None) -> None:
        start = len(self.leaves)
        new = new or [entry(i) for i in range(start, start + count)]
        self.leaves.extend(new)
        for level, index, h in self.tree.append_many(map(leaf_hash, new)):
            self.nodes[level, index] = h
        checkpoint = Checkpoint(ORIGIN, self.tree.size, self.tree.root())
        self.notes.append(sign_checkpoint(checkpoint, [self.signer]))

    def latest(self) -> str:
        return self.served_note or self.notes[-1]

    def answer(self, path: str, query: dict[str, int]) -> tuple[int, str, bytes]:
        if path == "/v1/audit/checkpoint":
            return 200, "text/plain", self.latest().encode()
        if path == "/v1/audit/public-key":
            return 200, "text/plain", self.signer.verifier_key().encode()
        if path == "/v1/audit/entries":
            start, end = query["start"], min(query["end"], len(self.leaves), query["start"] + 3)
            entries = [
                {"index": i, "data": base64.b64encode(self.leaves[i]).decode()}
                for i in range(start, end)
            ]
            return 200, "application/json", json.dumps({"entries": entries}).encode()
        if path == "/v1/audit/proofs/consistency":
            old, new = query["old"], query["new"]
            proof = consistency_proof(old, new, lambda level, i: self.nodes[level, i])
            body = {"old": old, "new": new, "hashes": [base64.b64encode(h).decode() for h in proof]}
            return 200, "application/json", json.dumps(body).encode()
        return 404, "text/plain", b"not found"


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


@pytest.fixture
def log(signer: Signer) -> Iterator[tuple[FakeLog, str]]:
    fake = FakeLog(signer)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                status, kind, body = 401, "text/plain", b"invalid_token"
            else:
                query = {k: int(v[0]) for k, v in parse_qs(parts.query).items()}
                status, kind, body = fake.answer(parts.path, query)
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def verify_args(url: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["audit", "verify", "--url", url, "--token", TOKEN, "--data-dir", str(tmp_path), *extra]


# -- verify -------------------------------------------------------------------------------------


def test_verify_passes_an_honest_log(log: tuple[FakeLog, str], tmp_path: Path) -> None:
    fake, url = log
    fake.append(10)
    key = fake.signer.verifier_key()
    result = runner.invoke(app, verify_args(url, tmp_path, "--log-key", key))
    assert result.exit_code == 0, result.output
    assert "ok: 10 entries" in said(result)


def test_verify_warns_when_it_trusts_the_served_key(
    log: tuple[FakeLog, str], tmp_path: Path
) -> None:
    fake, url = log
    fake.append(3)
    result = runner.invoke(app, verify_args(url, tmp_path))
    assert result.exit_code == 0, result.output
    assert "pin it with --log-key" in said(result)


def test_verify_names_the_exact_index_of_a_rewritten_entry(
    log: tuple[FakeLog, str], tmp_path: Path
) -> None:
    fake, url = log
    fake.append(25)
    fake.leaves[17] = entry(17, amount=10**6)  # the row, not the stored tree
    key = fake.signer.verifier_key()
    result = runner.invoke(app, verify_args(url, tmp_path, "--log-key", key, "--json"))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["reason"], report["first_bad_index"]) == ("root-mismatch", 17)


def test_verify_uses_exported_checkpoints_to_catch_a_rewritten_log(
    log: tuple[FakeLog, str], tmp_path: Path, signer: Signer
) -> None:
    fake, url = log
    fake.append(8)
    export = tmp_path / "checkpoints.jsonl"
    export.write_text(json.dumps({"size": 8, "note": fake.latest()}) + "\n")
    # A superuser with the log key's file rewrote the log and re-signed: not this log's
    # history any more, and the exported checkpoint says so.
    forged = FakeLog(signer)
    forged.append(8, [entry(0, amount=5), *fake.leaves[1:]])
    fake.leaves, fake.served_note = forged.leaves, forged.latest()
    key = signer.verifier_key()
    result = runner.invoke(
        app, verify_args(url, tmp_path, "--log-key", key, "--checkpoints", str(export))
    )
    assert result.exit_code == 1
    assert "conflicting-checkpoints" in said(result)


def test_verify_reports_a_truncated_log(log: tuple[FakeLog, str], tmp_path: Path) -> None:
    fake, url = log
    fake.append(9)
    del fake.leaves[6:]
    key = fake.signer.verifier_key()
    result = runner.invoke(app, verify_args(url, tmp_path, "--log-key", key))
    assert result.exit_code == 1
    assert "truncated" in said(result)


def test_verify_refuses_a_checkpoint_signed_by_another_key(
    log: tuple[FakeLog, str], tmp_path: Path
) -> None:
    fake, url = log
    fake.append(4)
    other = Signer.generate(ORIGIN).verifier_key()
    result = runner.invoke(app, verify_args(url, tmp_path, "--log-key", other))
    assert result.exit_code == 1
    assert "bad-checkpoint" in said(result)


def test_verify_reads_the_log_key_from_a_file(log: tuple[FakeLog, str], tmp_path: Path) -> None:
    fake, url = log
    fake.append(2)
    key_file = tmp_path / "log.pub"
    key_file.write_text(fake.signer.verifier_key() + "\n")
    result = runner.invoke(app, verify_args(url, tmp_path, "--log-key", str(key_file)))
    assert result.exit_code == 0, result.output


def test_verify_without_a_token_says_so(log: tuple[FakeLog, str], tmp_path: Path) -> None:
    _, url = log
    result = runner.invoke(app, ["audit", "verify", "--url", url, "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--token" in said(result)


def test_verify_reports_a_rejected_token(log: tuple[FakeLog, str], tmp_path: Path) -> None:
    fake, url = log
    fake.append(2)
    args = ["audit", "verify", "--url", url, "--token", "wrong", "--data-dir", str(tmp_path)]
    result = runner.invoke(app, [*args, "--log-key", fake.signer.verifier_key()])
    assert result.exit_code == 1
    assert "HTTP 401" in said(result)


def test_verify_reads_one_note_as_a_checkpoint_file(
    log: tuple[FakeLog, str], tmp_path: Path
) -> None:
    fake, url = log
    fake.append(5)
    saved = tmp_path / "seen.note"
    saved.write_text(fake.latest())
    fake.append(5)
    key = fake.signer.verifier_key()
    result = runner.invoke(
        app, verify_args(url, tmp_path, "--log-key", key, "--checkpoints", str(saved), "--json")
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoints_checked"] == 2


# -- witness ------------------------------------------------------------------------------------


@pytest.fixture
def witness_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "witness.key"
    result = runner.invoke(
        app, ["audit", "witness-keygen", "--name", "witness.test/w1", "--out", str(path)]
    )
    assert result.exit_code == 0, result.output
    return path, result.stdout.strip().splitlines()[-1]


def witness_args(url: str, state: Path, key: Path, tmp_path: Path) -> list[str]:
    return [
        "audit",
        "witness",
        "--url",
        url,
        "--token",
        TOKEN,
        "--state",
        str(state),
        "--key",
        str(key),
        "--once",
        "--data-dir",
        str(tmp_path),
    ]


def test_witness_keygen_writes_a_private_key_file(witness_key: tuple[Path, str]) -> None:
    path, verifier_key = witness_key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+witness.test/w1+")
    CosignatureVerifier.from_key(verifier_key)


def test_witness_cosigns_each_proven_advance(
    log: tuple[FakeLog, str], tmp_path: Path, witness_key: tuple[Path, str]
) -> None:
    fake, url = log
    key, verifier_key = witness_key
    state = tmp_path / "state.note"
    for count in (3, 5, 0):
        if count:
            fake.append(count)
        result = runner.invoke(app, witness_args(url, state, key, tmp_path))
        assert result.exit_code == 0, result.output
    assert "unchanged" in said(result)
    opened = open_note(
        state.read_text(), [fake.signer.verifier(), CosignatureVerifier.from_key(verifier_key)]
    )
    assert opened.verified_names == (ORIGIN, "witness.test/w1")
    assert opened.text.split("\n")[1] == "8"


@pytest.mark.parametrize("attack", ["rollback", "fork"])
def test_witness_alarms_and_keeps_the_evidence(
    log: tuple[FakeLog, str], tmp_path: Path, witness_key: tuple[Path, str], attack: str
) -> None:
    fake, url = log
    key, _ = witness_key
    state = tmp_path / "state.note"
    fake.append(4)
    fake.append(2)
    assert runner.invoke(app, witness_args(url, state, key, tmp_path)).exit_code == 0
    held = state.read_text()
    if attack == "rollback":
        fake.served_note = fake.notes[0]  # the log's own, older checkpoint
    else:
        forked = [*fake.leaves[:5], entry(5, amount=-1)]
        fake.served_note = sign_checkpoint(Checkpoint(ORIGIN, 6, _root(forked)), [fake.signer])
    result = runner.invoke(app, witness_args(url, state, key, tmp_path))
    assert result.exit_code == 2
    assert f"ALARM ({attack})" in said(result)
    assert state.read_text() == held
    (evidence,) = tmp_path.glob("state.note.alarm-*.json")
    kept = json.loads(evidence.read_text())
    assert (kept["verdict"], kept["held_note"], kept["received_note"]) == (
        attack,
        held,
        fake.served_note,
    )


def test_witness_refuses_growth_the_log_cannot_prove(
    log: tuple[FakeLog, str], tmp_path: Path, witness_key: tuple[Path, str]
) -> None:
    fake, url = log
    key, _ = witness_key
    state = tmp_path / "state.note"
    fake.append(4)
    assert runner.invoke(app, witness_args(url, state, key, tmp_path)).exit_code == 0
    # A different history of 8 leaves: no proof from the held tree of 4 can verify.
    other = [entry(i, amount=-i) for i in range(8)]
    fake.served_note = sign_checkpoint(Checkpoint(ORIGIN, 8, _root(other)), [fake.signer])
    fake.append(4)  # what the proof endpoint proves: the honest log, not the served root
    result = runner.invoke(app, witness_args(url, state, key, tmp_path))
    assert result.exit_code == 2
    assert "ALARM (inconsistent)" in said(result)


def test_witness_refuses_a_state_signed_by_another_log_key(
    log: tuple[FakeLog, str], tmp_path: Path, witness_key: tuple[Path, str]
) -> None:
    fake, url = log
    key, _ = witness_key
    state = tmp_path / "state.note"
    state.write_text(
        sign_checkpoint(Checkpoint(ORIGIN, 1, _root([entry(0)])), [Signer.generate(ORIGIN)])
    )
    fake.append(2)
    result = runner.invoke(app, witness_args(url, state, key, tmp_path))
    assert result.exit_code == 1
    assert "not a checkpoint of this log's key" in said(result)


def _root(leaves: list[bytes]) -> bytes:
    tree = CompactRange()
    tree.extend(map(leaf_hash, leaves))
    return tree.root()
