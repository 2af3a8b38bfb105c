"""A per-pod, short-lived cache of tenant status for the token endpoint.

Every token request checks that the client's tenant is active (a suspended tenant's
clients get no tokens). Reading the tenant row each time would add a database round trip
to the hottest OAuth path, so the answer is kept for seconds, like ``api.client_cache``.
Staleness is harmless: suspending a tenant also suspends each of its clients, which
reaches every pod through the deny list within a second; this check only closes the
window of a client created while its tenant was being suspended.

The cache lives on ``app.state`` and is made on first use, so wiring it costs nothing
at start-up and a pod that never issues a token never holds one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import anyio.to_thread
from fastapi import Request

from strongroom.auth.ports import TenantRecord

# A tenant's suspension (checked on every /v1 request) and reactivation show up on every
# pod within this time: under the 1 s revocation promise, at two reads a second per tenant.
TENANT_CACHE_TTL_S = 0.5
# Bounded: tenants are few, but a bound must not depend on that staying true.
TENANT_CACHE_ENTRIES_MAX = 10_000


class TenantStatusCache:
    def __init__(
        self,
        load: Callable[[str], TenantRecord | None],
        *,
        ttl_s: float = TENANT_CACHE_TTL_S,
        entries_max: int = TENANT_CACHE_ENTRIES_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._entries_max = entries_max
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    async def is_active(self, tenant_id: str) -> bool:
        """``False`` for a suspended, closed or missing tenant."""
        now = self._clock()
        hit = self._entries.get(tenant_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await anyio.to_thread.run_sync(self._load, tenant_id)
        active = record is not None and record.status == "active"
        self._entries[tenant_id] = (now + self._ttl_s, active)
        self._entries.move_to_end(tenant_id)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)
        return active

    def forget(self, tenant_id: str) -> None:
        self._entries.pop(tenant_id, None)


def tenant_cache(request: Request) -> TenantStatusCache:
    """This pod's cache, made on first use over ``app.state.auth.tenants``."""
    state = request.app.state
    cache: TenantStatusCache | None = getattr(state, "tenant_cache", None)
    if cache is None:
        # No await between the check and the assignment: one cache per app.
        cache = TenantStatusCache(state.auth.tenants.get)
        state.tenant_cache = cache
    return cache
