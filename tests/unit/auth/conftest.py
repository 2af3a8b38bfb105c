"""Fixtures for the auth domain tests (helpers live in ``helpers.py``)."""

from __future__ import annotations

import pytest
from tests.unit.auth.helpers import FakeClock, fast_hasher

from strongroom.auth.secrets import SecretHasher


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def hasher() -> SecretHasher:
    return fast_hasher()
