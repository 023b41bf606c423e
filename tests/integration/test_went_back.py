"""A Redis found to have lost writes: no batch is applied over the gap before the
consumer has gone back to read it again (the state store's side of the rewind)."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pytest

from stream.batching import PreparedBatch, add
from stream.snapshots import bucket_windows, iso
from stream.state.keys import KeySpace
from stream.state.store import QueueRules, RedisWentBack, StateStore

REDIS_URL = os.environ.get("CALLSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class Rec:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset = "events", 0, offset
        self.key, self.value, self.headers = None, value, ()


async def apply(store: StateStore, offsets: range) -> None:
    """Calls queued on `sales`, one per offset, applied as the consumer applies them."""
    now_ms = int(time.time() * 1000)
    records = [Rec(o, json.dumps({
        "event_id": f"e{o}", "type": "call.queued", "ts": iso(now_ms - 1000),
        "call_id": f"c{o}", "queue_id": "sales"}).encode()) for o in offsets]
    batch = PreparedBatch()
    add(batch, records, now_ms, event_clock=False)  # type: ignore[arg-type]
    await store.admit(batch.state, now_ms)

    async def no_failure(failed: list[tuple[int, str]]) -> None:
        raise AssertionError(f"not applied: {failed}")

    await store.apply(batch.state, {"sales": QueueRules(20_000, 5_000)}, now_ms, no_failure)


async def waiting(store: StateStore) -> Any:
    return (await store.read_queues(["sales"], int(time.time() * 1000)))["sales"]["waiting"]


@pytest.fixture
async def store() -> Any:
    state = await StateStore.connect(REDIS_URL, bucket_windows([300]),
                                     KeySpace(f"w{uuid.uuid4().hex[:8]}"))
    yield state
    await state.close()


async def test_a_batch_past_the_gap_waits_for_the_gap_to_be_read_again(
        store: StateStore) -> None:
    await apply(store, range(0, 10))
    # Redis comes back without the queue's writes (an AOF cut, a failover).
    lost = [k async for k in store.client.scan_iter(match=store.keys.queue("sales") + "*")]
    await store.client.delete(*lost)
    assert await store.lost_positions() == {"events:0": 0}
    # The next batch (fetched before the consumer heard) is refused, not applied over the
    # gap, where the gap's offsets, once read again, would be skipped as applied.
    with pytest.raises(RedisWentBack):
        await apply(store, range(10, 20))
    store.rewound()  # the consumer reads again from offset 0
    await apply(store, range(0, 20))
    assert await waiting(store) == 20
