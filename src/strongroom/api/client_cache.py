"""A per-pod, short-lived cache of client records for the OAuth endpoints.

Token, introspection and revocation requests each need the client's record; reading it
from the database every time dominated their cost. Records change rarely, and the one
change that must take effect at once — suspension — also reaches every pod through the
deny list, which callers check beside this cache; so a TTL of seconds is safe.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import anyio.to_thread

from strongroom.auth.ports import ClientRecord

# Scope/redirect changes to a client show up on every pod within this time.
CLIENT_CACHE_TTL_S = 2.0
# Bounded: a flood of random client ids must not grow memory.
CLIENT_CACHE_ENTRIES_MAX = 10_000


class ClientCache:
    def __init__(
        self,
        load: Callable[[str], ClientRecord | None],
        *,
        ttl_s: float = CLIENT_CACHE_TTL_S,
        entries_max: int = CLIENT_CACHE_ENTRIES_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._entries_max = entries_max
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, ClientRecord | None]] = OrderedDict()

    async def get(self, client_id: str) -> ClientRecord | None:
        now = self._clock()
        hit = self._entries.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await anyio.to_thread.run_sync(self._load, client_id)
        self._entries[client_id] = (now + self._ttl_s, record)
        self._entries.move_to_end(client_id)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)
        return record

    def forget(self, client_id: str) -> None:
        self._entries.pop(client_id, None)
