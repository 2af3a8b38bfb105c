"""Get a data dir ready before any child starts: directories, TLS material, schema.

Run once by the supervisor under its lock, so two supervisors never race to
create a CA or migrate the same database.
"""

from __future__ import annotations

from strongroom.adapters.db.migrate import upgrade
from strongroom.config import Settings
from strongroom.edge.local_ca import TlsPaths, ensure_local_pki
from strongroom.runtime.signing_keys import ensure_signing_keys

# The data dir holds the CA key and the database: owner only.
DATA_DIR_MODE = 0o700


def prepare(settings: Settings) -> TlsPaths:
    """Create the data dir and the local PKI (or configured files), migrate, make keys."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
    tls = ensure_local_pki(settings)
    upgrade(settings)
    ensure_signing_keys(settings)
    return tls
