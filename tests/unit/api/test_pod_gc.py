"""The pod's garbage-collector tuning: start-up objects frozen, young collections rarer."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from strongroom.config import Settings
from strongroom.gc_tuning import tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_startup_objects_and_raises_the_young_threshold() -> None:
    _, middle, old = gc.get_threshold()
    tune_gc(Settings().pods.gc_young_threshold)
    assert gc.get_threshold() == (20_000, middle, old)
    assert gc.get_freeze_count() > 0


def test_young_threshold_below_pythons_default_is_refused() -> None:
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings(pods={"gc_young_threshold": 10})
