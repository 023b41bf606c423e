"""Fixtures of the state tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from harness.centre import Centre, new_store
from stream.config import Policy


@pytest.fixture
async def centre() -> AsyncIterator[Centre]:
    """A centre with keys of its own, under the default policy."""
    store = await new_store()
    yield Centre(store, Policy())
    await store.close()
