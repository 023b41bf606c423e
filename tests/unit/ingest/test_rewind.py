"""Where the consumer reads again after Redis went back (pure logic of the seek-back)."""

from __future__ import annotations

from aiokafka import TopicPartition

from stream.ingest.consumer import Consumer


class _Seeks:
    """Records where the consumer seeks (the one call ``_seek_back`` makes on aiokafka)."""

    def __init__(self) -> None:
        self.at: dict[TopicPartition, int] = {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.at[tp] = offset


def _consumer(applied: int) -> tuple[Consumer, _Seeks, TopicPartition]:
    tp = TopicPartition("events", 0)
    consumer = Consumer.__new__(Consumer)
    seeks = _Seeks()
    consumer._consumer = seeks  # type: ignore[assignment]
    consumer._assigned, consumer._applied, consumer._origin = {tp}, {0: applied}, {0: 0}
    consumer._rewind = None
    return consumer, seeks, tp


def test_reads_again_from_the_first_offset_redis_lost() -> None:
    consumer, seeks, tp = _consumer(applied=99)
    consumer._went_back({"events:0": 40})
    consumer._seek_back()
    assert seeks.at[tp] == 40


def test_a_second_rewind_before_the_gap_is_read_again_keeps_the_gap() -> None:
    """The run id watcher's rewind, finding nothing more lost, comes after the consumer's
    own: the partition must still be read again from the gap, not from where this
    instance had been before Redis went back."""
    consumer, seeks, tp = _consumer(applied=99)
    consumer._went_back({"events:0": 40})
    consumer._seek_back()
    consumer._went_back({})
    consumer._seek_back()
    assert seeks.at[tp] == 40


def test_with_nothing_lost_reads_on_after_the_last_batch_applied() -> None:
    consumer, seeks, tp = _consumer(applied=99)
    consumer._went_back({})
    consumer._seek_back()
    assert seeks.at[tp] == 100
