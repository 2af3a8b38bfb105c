"""A pod's deny-list sync in its own process, for the cross-process revocation test.

Usage: ``python deny_list_sync_child.py DATABASE_URL JTI POLL_S``. Prints ``ready`` once
the first load is done, then ``revoked`` as soon as ``JTI`` is on its deny list, and
exits. Gives up (exit 1) after ``LIFETIME_S`` so a broken test never leaves it behind.
"""

from __future__ import annotations

import asyncio
import sys

from strongroom.adapters.db.auth_repositories import SqlDenyListFeed
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.deny_list_sync import DenyListSync
from strongroom.auth.deny_list import DenyList
from strongroom.config import Settings

LIFETIME_S = 30.0
CHECK_EVERY_S = 0.002


async def main(url: str, jti: str, poll_s: float) -> int:
    engine = make_engine(Settings(database={"url": url}))
    deny_list = DenyList()
    sync = DenyListSync(SqlDenyListFeed(engine), deny_list, poll_s=poll_s)
    task = asyncio.create_task(sync.run())
    try:
        async with asyncio.timeout(LIFETIME_S):
            await sync.ready.wait()
            print("ready", flush=True)
            while not deny_list.token_revoked(jti):
                await asyncio.sleep(CHECK_EVERY_S)
            print("revoked", flush=True)
            return 0
    except TimeoutError:
        return 1
    finally:
        task.cancel()
        engine.dispose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
