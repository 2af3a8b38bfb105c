"""`/v1/audit` in-process on SQLite and PostgreSQL: after real ledger transfers and a
sequencer step, the checkpoint, key and proofs verify; entries are for operators only."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.api.conftest import bearer_headers, provision_clients
from tests.unit.api.test_ledger_routes import (  # the same backends, tokens and client
    LEDGER_SCOPES,
    Api,
    dpop_auth,
    settings,
)

from strongroom.adapters.db.audit_store import SqlAuditStore
from strongroom.api.audit_routes import (
    AuditEntryList,
    ConsistencyProof,
    EntryLeaves,
    InclusionProof,
)
from strongroom.audit.canonical import parse_leaf
from strongroom.audit.checkpoint import open_checkpoint
from strongroom.audit.rfc9162_merkle import leaf_hash, verify_consistency, verify_inclusion
from strongroom.audit.sequencer import Sequencer
from strongroom.audit.signed_note import Signer, Verifier
from strongroom.config import Settings
from strongroom.ledger.model import now_us

__all__ = ["settings"]  # the backend-parametrised fixture, re-used
pytestmark = pytest.mark.anyio
ORIGIN = "test.example/audit"
PROBLEM = "https://strongroom.dev/problems/"


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, Any]:
    return provision_clients(
        migrated_settings,
        app,
        (
            ("alpha", [*LEDGER_SCOPES, "audit:read"], False),
            ("beta", [*LEDGER_SCOPES, "audit:read"], False),
            ("ops", ["audit:read", "admin"], True),
            ("noaudit", ["accounts:read"], False),
        ),
    )


@pytest.fixture
async def tokens(client: httpx.AsyncClient, world: dict[str, Any]) -> dict[str, dict[str, str]]:
    scopes = {"alpha": "audit:read", "beta": "audit:read", "ops": None, "noaudit": None}
    return {
        name: await bearer_headers(client, world[name], scope) for name, scope in scopes.items()
    }


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def sequence(app: FastAPI, signer: Signer) -> Sequencer:
    """What the worker's audit-sequencer job does, one step at a time."""
    sequencer = Sequencer(
        SqlAuditStore(app.state.engine),
        signer,
        origin=ORIGIN,
        checkpoint_interval_s=0.001,
        gap_grace_s=60,
        clock=time.monotonic,
        now_us=now_us,
    )
    sequencer.step()
    time.sleep(0.002)
    sequencer.maybe_publish()
    return sequencer


def problem(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/problem+json", r.text
    return str(r.json()["type"]).removeprefix(PROBLEM)


async def transfers(client: httpx.AsyncClient, app: FastAPI, who: dict[str, Any]) -> list[str]:
    api = Api(client, await dpop_auth(client, app, who))
    wallet = await api.account()
    made = []
    for amount in (100, 250, 7):
        made.append((await api.fund(wallet, amount))["id"])
    return made


async def test_no_checkpoint_or_key_before_the_sequencer_ran(client, tokens) -> None:
    for path in ("/v1/audit/checkpoint", "/v1/audit/public-key"):
        r = await client.get(path, headers=tokens["alpha"])
        assert r.status_code == 404 and problem(r) == "audit-log-empty"


async def test_every_audit_route_needs_the_audit_read_scope(client, tokens) -> None:
    r = await client.get("/v1/audit/checkpoint", headers=tokens["noaudit"])
    assert r.status_code == 403 and problem(r) == "insufficient-scope"


async def test_a_transfers_entry_is_proven_in_the_signed_checkpoint(
    client, app, world, tokens, signer
) -> None:
    ids = await transfers(client, app, world["alpha"])
    sequence(app, signer)
    note = await client.get("/v1/audit/checkpoint", headers=tokens["alpha"])
    key = await client.get("/v1/audit/public-key", headers=tokens["alpha"])
    assert note.headers["content-type"].startswith("text/plain")
    assert key.text == signer.verifier_key() + "\n"
    checkpoint = open_checkpoint(note.text, [Verifier.from_key(key.text.strip())])
    assert checkpoint.origin == ORIGIN
    for transfer_id in ids:
        r = await client.get(
            "/v1/audit/search", params={"subject_id": transfer_id}, headers=tokens["alpha"]
        )
        AuditEntryList.model_validate(r.json(), strict=True)
        (entry,) = r.json()["entries"]
        assert entry["event_type"] == "transfer.created" and entry["index"] is not None
        proof = await client.get(
            "/v1/audit/proofs/inclusion",
            params={"index": entry["index"], "tree_size": checkpoint.size},
            headers=tokens["alpha"],
        )
        assert proof.status_code == 200, proof.text
        InclusionProof.model_validate(proof.json(), strict=True)
        leaves = await client.get(
            "/v1/audit/entries",
            params={"start": entry["index"], "end": entry["index"] + 1},
            headers=tokens["ops"],
        )
        EntryLeaves.model_validate(leaves.json(), strict=True)
        (leaf,) = leaves.json()["entries"]
        data = base64.b64decode(leaf["data"])
        assert parse_leaf(data).subject_ids[0] == transfer_id
        hashes = [base64.b64decode(h) for h in proof.json()["hashes"]]
        assert verify_inclusion(
            leaf_hash(data), entry["index"], checkpoint.size, hashes, checkpoint.root_hash
        )


async def test_consistency_between_two_checkpoints_verifies(
    client, app, world, tokens, signer
) -> None:
    await transfers(client, app, world["alpha"])
    sequencer = sequence(app, signer)
    old = open_checkpoint(
        (await client.get("/v1/audit/checkpoint", headers=tokens["beta"])).text, [signer.verifier()]
    )
    await transfers(client, app, world["beta"])
    sequencer.step()
    time.sleep(0.002)
    sequencer.maybe_publish()
    new = open_checkpoint(
        (await client.get("/v1/audit/checkpoint", headers=tokens["beta"])).text, [signer.verifier()]
    )
    r = await client.get(
        "/v1/audit/proofs/consistency",
        params={"old": old.size, "new": new.size},
        headers=tokens["beta"],
    )
    ConsistencyProof.model_validate(r.json(), strict=True)
    hashes = [base64.b64decode(h) for h in r.json()["hashes"]]
    assert verify_consistency(old.size, new.size, old.root_hash, new.root_hash, hashes)


async def test_proofs_beyond_the_tree_and_bad_ranges_are_problems(
    client, app, world, tokens, signer
) -> None:
    await transfers(client, app, world["alpha"])
    size = sequence(app, signer).tree_size
    for path, params in (
        ("/v1/audit/proofs/inclusion", {"index": 0, "tree_size": size + 1}),
        ("/v1/audit/proofs/inclusion", {"index": size, "tree_size": size}),
        ("/v1/audit/proofs/consistency", {"old": 2, "new": 1}),
        ("/v1/audit/proofs/consistency", {"old": 1, "new": size + 1}),
    ):
        r = await client.get(path, params=params, headers=tokens["alpha"])
        assert r.status_code == 422 and problem(r) == "proof-out-of-range", (path, params)
    r = await client.get(
        "/v1/audit/proofs/inclusion", params={"index": -1, "tree_size": 1}, headers=tokens["alpha"]
    )
    assert r.status_code == 422 and problem(r) == "validation-failed"
    r = await client.get("/v1/audit/entries", params={"start": 3, "end": 3}, headers=tokens["ops"])
    assert r.status_code == 422 and problem(r) == "validation-failed"


async def test_leaf_bytes_are_for_operators_and_search_is_tenant_scoped(
    client, app, world, tokens, signer
) -> None:
    alpha_ids = await transfers(client, app, world["alpha"])
    await transfers(client, app, world["beta"])
    sequence(app, signer)
    r = await client.get(
        "/v1/audit/entries", params={"start": 0, "end": 5}, headers=tokens["alpha"]
    )
    assert r.status_code == 403 and problem(r) == "operator-required"
    r = await client.get(
        "/v1/audit/entries", params={"start": 0, "end": 5000}, headers=tokens["ops"]
    )
    assert r.status_code == 200 and 0 < len(r.json()["entries"]) <= 1000
    beta_view = await client.get(
        "/v1/audit/search", params={"subject_id": alpha_ids[0]}, headers=tokens["beta"]
    )
    assert beta_view.json()["entries"] == []
    mine = await client.get(
        "/v1/audit/search", params={"event_type": "transfer.created"}, headers=tokens["beta"]
    )
    assert {e["tenant_id"] for e in mine.json()["entries"]} == {world["beta"]["tenant"]}
    everyone = await client.get(
        "/v1/audit/search", params={"event_type": "transfer.created"}, headers=tokens["ops"]
    )
    # (on PostgreSQL the module's other tests share the log: their tenants show up too)
    assert {e["tenant_id"] for e in everyone.json()["entries"]} >= {
        world["alpha"]["tenant"],
        world["beta"]["tenant"],
    }
    page = await client.get("/v1/audit/search", params={"limit": 2}, headers=tokens["ops"])
    after = page.json()["next_after"]
    rest = await client.get("/v1/audit/search", params={"after": after}, headers=tokens["ops"])
    assert all(e["seq"] > after for e in rest.json()["entries"])
    r = await client.get("/v1/audit/search", params={"event_type": "nope"}, headers=tokens["ops"])
    assert r.status_code == 422 and problem(r) == "validation-failed"
    r = await client.get("/v1/audit/search", params={"from": "yesterday"}, headers=tokens["ops"])
    assert r.status_code == 422 and problem(r) == "validation-failed"
