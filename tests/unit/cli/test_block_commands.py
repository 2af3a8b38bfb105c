"""`strongroom block add|list|remove` against a migrated SQLite database in a temp dir."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import audit_entries
from strongroom.cli.block_commands import parse_duration
from strongroom.cli.main import app
from strongroom.config import Settings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    upgrade(Settings(data_dir=directory))
    return directory


def block(data_dir: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["block", *args, "--data-dir", str(data_dir)])
    return result.exit_code, result.output


def test_add_list_and_remove_an_entry(data_dir: Path) -> None:
    code, out = block(data_dir, "add", "203.0.113.0/24", "--reason", "scanner", "--ttl", "1h")
    assert code == 0, out
    assert "#1 203.0.113.0/24 blocked until" in out
    code, out = block(data_dir, "list")
    assert code == 0
    assert "203.0.113.0/24" in out and "scanner" in out and "in 59m" in out
    code, out = block(data_dir, "remove", "1")
    assert code == 0 and "removed" in out
    assert "no entries in force" in block(data_dir, "list")[1]
    assert "removed" in block(data_dir, "list", "--all")[1]


def test_json_output_carries_the_canonical_entry(data_dir: Path) -> None:
    before = time.time()
    code, out = block(data_dir, "add", "client:ops-console", "--allow", "--ttl", "2d", "--json")
    assert code == 0, out
    entry = json.loads(out)
    assert (entry["kind"], entry["value"], entry["action"]) == ("client", "ops-console", "allow")
    assert entry["target"] == "client:ops-console"
    assert entry["expires_at"] == pytest.approx(before + 2 * 86_400, abs=5)
    assert entry["created_by"].startswith("operator:") and entry["created_by"].endswith("@cli")
    [listed] = json.loads(block(data_dir, "list", "--json")[1])
    assert listed["id"] == entry["id"] and listed["state"] == "in force"


def test_every_change_is_an_audit_entry_naming_the_operator(data_dir: Path) -> None:
    block(data_dir, "add", "::ffff:192.0.2.7")
    block(data_dir, "remove", "1")
    engine = make_engine(Settings(data_dir=data_dir))
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_entries.c.event_type, audit_entries.c.actor_kind, audit_entries.c.data)
            .where(audit_entries.c.event_type.like("edge_block.%"))
            .order_by(audit_entries.c.seq)
        ).all()
    engine.dispose()
    assert [(r.event_type, r.actor_kind) for r in rows] == [
        ("edge_block.added", "operator"),
        ("edge_block.removed", "operator"),
    ]
    assert json.loads(rows[0].data)["value"] == "192.0.2.7"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "10.1.2.3/8"], "host bits set"),
        (["add", "0.0.0.0/0"], "/8 or narrower"),
        (["add", "example.com"], "not an IPv4 or IPv6 address"),
        (["add", "client:"], "client id"),
        (["add", "192.0.2.1", "--ttl", "soon"], "not a duration"),
        (["add", "192.0.2.1", "--reason", "x" * 201], "reason"),
        (["remove", "42"], "no block entry 42"),
    ],
)
def test_refusals_exit_1_with_the_reason(data_dir: Path, args: list[str], message: str) -> None:
    code, out = block(data_dir, *args)
    assert code == 1
    assert message in out.replace("\n", "")
    assert "Traceback" not in out


def test_an_unmigrated_database_is_reported_with_the_fix(tmp_path: Path) -> None:
    code, out = block(tmp_path / "empty", "list")
    assert code == 1
    assert "strongroom db upgrade" in out.replace("\n", " ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("1h30m", 5400), ("7d", 604_800), ("2W", 1_209_600)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 30m", "-5m", "1.5h"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
