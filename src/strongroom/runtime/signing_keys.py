"""Signing keys exist before any pod starts, and rotate on schedule.

Pods only read keys; creating them here (under the supervisor's lock) and in the
worker's scheduled job means two pods never race to create a first key.
"""

from __future__ import annotations

import structlog

from strongroom.adapters.db.auth_repositories import SqlKeyRepository
from strongroom.adapters.db.engine import make_engine
from strongroom.auth.provisioning import rotate_keys
from strongroom.config import Settings

log = structlog.get_logger("strongroom.keys")

# How often the worker looks whether the signing key is due for rotation.
ROTATION_CHECK_INTERVAL_S = 60.0
SECONDS_PER_DAY = 86_400


def _repository(settings: Settings) -> tuple[SqlKeyRepository, object]:
    engine = make_engine(settings)
    return SqlKeyRepository(engine, settings.secrets.key_encryption_key.get_secret_value()), engine


def ensure_signing_keys(settings: Settings) -> None:
    """First boot: an active key and a published next key; otherwise leave keys alone."""
    keys, engine = _repository(settings)
    try:
        if not any(k.state == "active" for k in keys.load()):
            auth = settings.auth
            _, after = rotate_keys(
                keys,
                alg=auth.signing_alg,
                publish_ahead_s=auth.key_publish_ahead_s,
                token_lifetime_s=auth.access_token_lifetime_s,
                active_for_s=None,
            )
            log.info("keys.created", kids=[k.kid for k in after])
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def rotate_if_due(settings: Settings) -> bool:
    """Scheduled rotation: promote the published next key after `key_rotation_days`."""
    auth = settings.auth
    keys, engine = _repository(settings)
    try:
        before, after = rotate_keys(
            keys,
            alg=auth.signing_alg,
            publish_ahead_s=auth.key_publish_ahead_s,
            token_lifetime_s=auth.access_token_lifetime_s,
            active_for_s=auth.key_rotation_days * SECONDS_PER_DAY,
        )
    finally:
        engine.dispose()  # type: ignore[attr-defined]
    rotated = {k.kid for k in before if k.state == "active"} != {
        k.kid for k in after if k.state == "active"
    }
    if rotated:
        log.info("keys.rotated", active=[k.kid for k in after if k.state == "active"])
    return rotated
