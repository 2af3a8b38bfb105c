"""Operator actions on tenants, clients and keys, over the ports (no I/O of its own).

The CLI and later the admin API call these, so the rules live once: operator scopes
only for operator clients, secrets shown once and stored as argon2id hashes,
suspension that reaches every pod through the deny list, keys rotated with overlap.
"""

from __future__ import annotations

import secrets as pysecrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from strongroom.auth.keys import SigningKey, plan_rotation
from strongroom.auth.ports import (
    ClientRecord,
    ClientRepository,
    KeyRepository,
    RevocationStore,
    TenantRecord,
    TenantRepository,
)
from strongroom.auth.scopes import OPERATOR_SCOPES, SCOPES
from strongroom.auth.secrets import SecretHasher, generate_client_secret
from strongroom.ledger.ports import Actor


class ProvisioningError(ValueError):
    """An operator request that cannot be carried out; the message says why."""


class AuditedTenantRepository(TenantRepository, Protocol):
    def create(
        self,
        tenant_id: str,
        name: str,
        *,
        actor: Actor | None = None,
        request_id: str | None = None,
    ) -> None:
        """Store the tenant and its audit entry (who created it, for which request) at once."""
        ...


def create_tenant(
    tenants: AuditedTenantRepository,
    name: str,
    tenant_id: str | None = None,
    *,
    actor: Actor | None = None,
    request_id: str | None = None,
) -> str:
    """A new tenant's id; ``actor`` and ``request_id`` go into its audit entry."""
    if not name.strip():
        raise ProvisioningError("a tenant needs a name")
    new_id = tenant_id or str(uuid.uuid4())
    if tenants.get(new_id) is not None:
        raise ProvisioningError(f"tenant {new_id} exists")
    tenants.create(new_id, name.strip(), actor=actor, request_id=request_id)
    return new_id


def create_client(
    tenants: TenantRepository,
    clients: ClientRepository,
    hasher: SecretHasher,
    *,
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
    dpop_required: bool = False,
    operator: bool = False,
    now: float | None = None,
) -> tuple[ClientRecord, str]:
    """Register a confidential client; the plain secret is returned once, never stored."""
    tenant: TenantRecord | None = tenants.get(tenant_id)
    if tenant is None:
        raise ProvisioningError(f"no tenant {tenant_id}")
    if tenant.status != "active":
        raise ProvisioningError(f"tenant {tenant_id} is {tenant.status}")
    granted = frozenset(scopes)
    unknown = granted - SCOPES
    if unknown:
        raise ProvisioningError(f"unknown scopes: {' '.join(sorted(unknown))}")
    if not granted:
        raise ProvisioningError("a client needs at least one scope")
    if granted & OPERATOR_SCOPES and not operator:
        raise ProvisioningError(
            "operator scopes (" + " ".join(sorted(OPERATOR_SCOPES)) + ") need an operator client"
        )
    secret = generate_client_secret()
    record = ClientRecord(
        client_id="sr_" + pysecrets.token_urlsafe(16),
        tenant_id=tenant_id,
        name=name.strip() or "client",
        secret_hash=hasher.hash(secret),
        scopes=granted,
        status="active",
        dpop_required=dpop_required,
        is_operator=operator,
        created_at=time.time() if now is None else now,
    )
    clients.create(record)
    return record, secret


def suspend_client(
    clients: ClientRepository, revocations: RevocationStore, client_id: str, reason: str
) -> None:
    if clients.get(client_id) is None:
        raise ProvisioningError(f"no client {client_id}")
    revocations.suspend_client(client_id, reason=reason)


class RotatingKeyRepository(KeyRepository, Protocol):
    def rotate(self, plan: Callable[[list[SigningKey]], Sequence[SigningKey]]) -> list[SigningKey]:
        """Load, plan and store in one locked transaction (no two rotators interleave)."""
        ...


def rotate_keys(
    keys: RotatingKeyRepository,
    *,
    alg: str,
    publish_ahead_s: float,
    token_lifetime_s: float,
    active_for_s: float | None,
    now: float | None = None,
) -> tuple[list[SigningKey], list[SigningKey]]:
    """One rotation step (see `keys.plan_rotation`), atomically; returns (before, after)."""
    seen: list[SigningKey] = []

    def plan(current: list[SigningKey]) -> Sequence[SigningKey]:
        seen[:] = current
        return plan_rotation(
            current,
            time.time() if now is None else now,
            publish_ahead_s=publish_ahead_s,
            token_lifetime_s=token_lifetime_s,
            alg=alg,
            active_for_s=active_for_s,
        )

    after = keys.rotate(plan)
    return list(seen), after
