"""Small script calls taken many at a time (`StateStore.many`): each call answers as it
would alone, in order, whatever the grouping."""

from __future__ import annotations

from harness import REDIS_URL
from harness.offers import asks, reserve_all
from stream.state import scripts as store_module


async def test_many_calls_answer_in_order_on_one_redis() -> None:
    assert len(asks()[0]) > 2 * store_module.MANY_PER_CALL  # several script calls
    await reserve_all(REDIS_URL)
