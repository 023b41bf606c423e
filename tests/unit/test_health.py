"""Readiness and liveness rules of ``Health``, on a clock the test moves."""

from __future__ import annotations

import asyncio

from stream.health import Health, watch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def healthy(clock: Clock, stall_seconds: float = 60) -> Health:
    health = Health(stall_seconds=stall_seconds, clock=clock)
    health.reachable("kafka", True)
    health.reachable("redis", True)
    health.assigned = True
    return health


def test_not_ready_until_both_dependencies_answered_and_partitions_are_assigned() -> None:
    health = Health()
    assert not health.ready
    body = health.readiness()
    assert set(body["down"]) == {"kafka", "redis", "consumer"}
    assert "not reached yet" in body["down"]["kafka"]
    health.reachable("kafka", True)
    health.reachable("redis", True)
    assert not health.ready and set(health.readiness()["down"]) == {"consumer"}
    health.assigned = True
    assert health.ready and health.readiness()["down"] == {}


def test_readiness_names_the_dependency_that_is_down_and_its_setting() -> None:
    health = healthy(Clock())
    health.reachable("kafka", False, ConnectionRefusedError("refused"))
    body = health.readiness()
    assert not body["ready"] and body["redis"] is True and body["kafka"] is False
    assert list(body["down"]) == ["kafka"]
    assert "ConnectionRefusedError: refused" in body["down"]["kafka"]
    assert "CALLSTREAM_KAFKA_BOOTSTRAP" in body["down"]["kafka"]
    health.reachable("kafka", True)
    health.reachable("redis", False, TimeoutError())
    body = health.readiness()
    assert list(body["down"]) == ["redis"]
    assert "no answer within 2 s" in body["down"]["redis"]
    assert "CALLSTREAM_REDIS_URL" in body["down"]["redis"]


def test_the_consumers_flags_still_work() -> None:
    health = Health()
    health.kafka_ok = True
    health.redis_ok = True
    health.assigned = True
    assert health.ready
    health.redis_ok = False
    assert not health.ready and "redis" in health.readiness()["down"]


def test_a_loop_without_progress_while_work_waits_is_wedged() -> None:
    clock = Clock()
    health = healthy(clock, stall_seconds=60)
    health.waiting(500)  # a batch fetched, handed to apply
    clock.now += 59
    assert health.live
    clock.now += 2
    assert not health.live
    body = health.liveness()
    assert body["status"] == "wedged" and body["waiting"] == 500
    assert "no progress for 61.0 s" in body["reason"]
    health.progressed(waiting=0)
    assert health.live and health.liveness()["status"] == "ok"


def test_an_idle_loop_is_live_however_long_it_is_idle() -> None:
    clock = Clock()
    health = healthy(clock)
    health.progressed(waiting=0)
    clock.now += 3600
    assert health.live and health.stalled_seconds == 0


def test_progress_with_work_left_restarts_the_count() -> None:
    clock = Clock()
    health = healthy(clock)
    for _ in range(10):  # a long catch-up: every batch is progress
        clock.now += 30
        health.progressed(waiting=10_000)
    assert health.live
    clock.now += 61
    assert not health.live


def test_an_outage_is_not_a_wedged_loop() -> None:
    clock = Clock()
    health = healthy(clock)
    health.waiting(10)
    clock.now += 600
    health.reachable("redis", False, ConnectionError("down"))
    assert health.live  # restarting would not bring Redis back
    health.reachable("redis", True)
    assert not health.live


async def test_watch_marks_a_probe_that_does_not_answer_in_time_unreachable() -> None:
    health = Health()
    stop = asyncio.Event()
    answer = asyncio.Event()

    async def probe() -> None:
        await answer.wait()

    task = asyncio.create_task(watch(health, "redis", probe, stop, every=0.05, timeout=0.2))
    await asyncio.sleep(0.35)
    assert health.readiness()["redis"] is False
    assert "no answer within" in health.readiness()["down"]["redis"]
    answer.set()
    await asyncio.sleep(0.3)
    assert health.redis_ok
    stop.set()
    await asyncio.wait_for(task, 1)
