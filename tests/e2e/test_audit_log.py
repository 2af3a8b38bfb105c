"""The audit log end to end, through the TLS edge of a real `strongroom up` (two pods, SQLite).

After a burst of concurrent transfers, every transfer has exactly one audit entry, and an
inclusion proof for it verifies against the latest signed checkpoint fetched over HTTPS,
whose signature verifies with the log key on the platform's disk (the trust anchor is
not what the API says it is).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from strongroom.audit.canonical import parse_leaf
from strongroom.audit.checkpoint import Checkpoint, open_checkpoint
from strongroom.audit.rfc9162_merkle import leaf_hash, verify_inclusion
from strongroom.audit.signed_note import Signer
from strongroom.config import Settings
from tests.dpop_proofs import Dpop
from tests.e2e.platform_harness import Platform, running_platform, tenant_auth

pytestmark = pytest.mark.slow

SCOPES = "accounts:read accounts:write transfers:read transfers:write audit:read"
BURST = 40
BURST_CLIENTS = 8
# The sequencer checkpoints every 0.5 s while entries arrive; allow a slow CI box plenty.
CHECKPOINT_WAIT_S = 20.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("audit"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def http(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client() as c:
        yield c


@pytest.fixture(scope="module")
def tenant(platform: Platform, http: httpx.Client) -> Dpop:
    return tenant_auth(platform, http, "shop", SCOPES)


@pytest.fixture(scope="module")
def operator(platform: Platform, http: httpx.Client) -> dict[str, str]:
    """An operator client's bearer header: only operators read raw leaves."""
    ops = platform.cli("tenant", "create", "operators")["tenant_id"]
    client = platform.cli(
        "client", "create", "--tenant", ops, "--scopes", "audit:read", "--operator"
    )
    r = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def log_key(platform: Platform) -> Signer:
    settings = Settings(data_dir=platform.data_dir)
    return Signer.from_key(settings.audit_key_path.read_text().strip())


def burst_of_transfers(http: httpx.Client, auth: Dpop) -> list[str]:
    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        return http.request(method, path, auth=auth, **kwargs)

    wallets = []
    for _ in range(2):
        r = call("POST", "/v1/accounts", json={"kind": "wallet", "currency": "EUR"})
        assert r.status_code == 201, r.text
        wallets.append(r.json()["id"])
    r = call("GET", "/v1/accounts", params={"kind": "system", "currency": "EUR"})
    (clearing,) = [a["id"] for a in r.json()["accounts"] if a["code"] == "clearing"]
    funded = call(
        "POST",
        "/v1/transfers",
        json={
            "debit_account_id": clearing,
            "credit_account_id": wallets[0],
            "amount": 1_000_000,
            "currency": "EUR",
        },
    )
    assert funded.status_code == 201, funded.text

    def pay(_: int) -> str:
        body = {
            "id": str(uuid.uuid4()),
            "debit_account_id": wallets[0],
            "credit_account_id": wallets[1],
            "amount": 7,
            "currency": "EUR",
        }
        paid = call("POST", "/v1/transfers", json=body)
        assert paid.status_code == 201, paid.text
        return str(body["id"])

    with ThreadPoolExecutor(BURST_CLIENTS) as pool:
        return [funded.json()["id"], *pool.map(pay, range(BURST))]


def test_every_transfer_has_one_audit_entry_provable_against_the_signed_checkpoint(
    platform: Platform, http: httpx.Client, tenant: Dpop, operator: dict[str, str]
) -> None:
    transfer_ids = burst_of_transfers(http, tenant)
    verifier = log_key(platform).verifier()
    served_key = http.get("/v1/audit/public-key", auth=tenant)
    assert served_key.status_code == 200
    assert served_key.text.strip() == verifier.key_string()

    found: dict[str, dict[str, Any]] = {}
    checkpoint: Checkpoint | None = None
    deadline = time.monotonic() + CHECKPOINT_WAIT_S
    while time.monotonic() < deadline:
        for transfer_id in transfer_ids:
            if transfer_id in found:
                continue
            r = http.get(
                "/v1/audit/search",
                params={"subject_id": transfer_id, "event_type": "transfer.created"},
                auth=tenant,
            )
            assert r.status_code == 200, r.text
            entries = r.json()["entries"]
            assert len(entries) <= 1, entries  # never two entries for one transfer
            if entries and entries[0]["index"] is not None:
                found[transfer_id] = entries[0]
        note = http.get("/v1/audit/checkpoint", auth=tenant)
        if note.status_code == 200:
            checkpoint = open_checkpoint(note.text, [verifier])
            covered = max((e["index"] for e in found.values()), default=-1) < checkpoint.size
            if len(found) == len(transfer_ids) and covered:
                break
        time.sleep(0.2)
    assert len(found) == len(transfer_ids), f"not sequenced in time: {len(found)} of them"
    assert checkpoint is not None

    for transfer_id, entry in found.items():
        index = entry["index"]
        assert entry["subject_ids"][0] == transfer_id
        leaf = http.get(
            "/v1/audit/entries", params={"start": index, "end": index + 1}, headers=operator
        )
        assert leaf.status_code == 200, leaf.text
        (served,) = leaf.json()["entries"]
        data = base64.b64decode(served["data"])
        record = parse_leaf(data)
        assert record.event_type == "transfer.created"
        assert record.subject_ids[0] == transfer_id
        proof = http.get(
            "/v1/audit/proofs/inclusion",
            params={"index": index, "tree_size": checkpoint.size},
            auth=tenant,
        )
        assert proof.status_code == 200, proof.text
        hashes = [base64.b64decode(h) for h in proof.json()["hashes"]]
        assert verify_inclusion(
            leaf_hash(data), index, checkpoint.size, hashes, checkpoint.root_hash
        )


def test_a_tenant_token_may_not_read_raw_leaves(http: httpx.Client, tenant: Dpop) -> None:
    r = http.get("/v1/audit/entries", params={"start": 0, "end": 1}, auth=tenant)
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
