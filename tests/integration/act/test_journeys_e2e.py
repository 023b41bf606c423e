"""Caller journeys end to end (contract §2, §5): events through Kafka into a running
processor, read back from the API, /metrics and the missed-callers list; and the same
figures after a kill -9 of the processor and a crash of Redis under load."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from typing import Any

import aiohttp
import pytest

from harness import (
    InProcessProcessor,
    ProcessorProcess,
    _event,
    http_json,
    http_status,
    metric_value,
    produce,
    queue_figures,
    unique_settings,
    wait_until,
)
from harness.journeys import (
    DAY_MS,
    HOUR_MS,
    abandoned,
    all_journeys_match,
    answered,
    journeys_of,
    model,
    queued,
    repeat_caller_stream,
    shown_journeys,
    timeline_of,
    wanted,
)
from stream.config import Policy
from stream.tools.broker import EmbeddedBroker, free_port, wait_for_port


async def _journeys(url: str, queue: str, **expected: Any) -> bool:
    shown = journeys_of(await queue_figures(url, queue))
    return shown is not None and all(shown.get(k) == v for k, v in expected.items())


async def test_journeys_through_kafka_api_metrics_and_missed_list(
        broker: EmbeddedBroker) -> None:
    t0 = int(time.time() * 1000) - 3 * DAY_MS
    settings = unique_settings(broker.bootstrap, clock="event")
    policy = Policy.model_validate({"queues": {"sales": {"lost_caller_value": 25}}})
    events = [
        # A: missed on sales, answered on support an hour later: recovered in 3580 s.
        queued("a1", "sales", t0, "+49 151 000-0001"), abandoned("a1", "sales", t0 + 30_000),
        queued("a2", "support", t0 + HOUR_MS, "+4915100000 01"),
        answered("a2", "support", t0 + HOUR_MS + 10_000),
        # B: missed on sales, never answered.
        queued("b1", "sales", t0 + 60_000, "+49 151 0000002"),
        abandoned("b1", "sales", t0 + 90_000),
        # C: a short abandon is no miss.
        queued("c1", "sales", t0 + 120_000, "+49 151 0000003"),
        abandoned("c1", "sales", t0 + 122_000),
        # D: missed, then a callback attempt that reaches the caller recovers it.
        queued("d1", "sales", t0 + 2 * HOUR_MS, "+49 151 0000004"),
        abandoned("d1", "sales", t0 + 2 * HOUR_MS + 20_000),
        _event("d1-k1", "call.callback_attempt", t0 + 3 * HOUR_MS - 60_000, call_id="d1",
               queue_id="sales", offer_id="o-d1", result="busy"),
        _event("d1-k2", "call.callback_attempt", t0 + 3 * HOUR_MS, call_id="d1",
               queue_id="sales", offer_id="o-d1", result="answered"),
        # No caller: takes no part.
        queued("n1", "sales", t0 + 3 * HOUR_MS, "anonymous"),
        abandoned("n1", "sales", t0 + 3 * HOUR_MS + 60_000),
    ]
    async with InProcessProcessor(settings, policy) as processor:
        await produce(settings, events)
        await wait_until(lambda: _journeys(processor.url, "sales", missed=1, recovered=2,
                                           lost=0), timeout=30)
        sales = journeys_of(await queue_figures(processor.url, "sales"))
        assert sales is not None
        assert sales["recovery_seconds"] == pytest.approx((3580 + 3600 - 20) / 2)
        assert sales["offered_with_caller"] == 4 and sales["repeat_calls"] == 0
        assert sales["lost_value"] == 0
        await wait_until(lambda: _journeys(processor.url, "support", repeat_calls=1))
        assert await metric_value(processor.url, "callstream_queue_repeat_call_ratio",
                                  queue="support") == 1.0
        assert await metric_value(processor.url, "callstream_queue_callers", queue="sales",
                                  state="recovered") == 2
        # Without an API token, the list shows only the last 4 digits.
        missed = await http_json(processor.url + "/api/queues/sales/missed")
        assert [m["caller"] for m in missed["missed"]] == ["********0002"]
        assert missed["missed"][0]["missed_at"].endswith("Z")
        assert await http_status(processor.url + "/api/queues/nowhere/missed") == 404
        # A day and more later (the event clock moves): B is lost.
        await produce(settings, [queued("z1", "other", t0 + DAY_MS + 2 * HOUR_MS, None)])
        await wait_until(lambda: _journeys(processor.url, "sales", missed=0, lost=1,
                                           lost_total=1, lost_value=25), timeout=30)
        assert await metric_value(processor.url, "callstream_lost_callers_total",
                                  queue="sales") == 1
        assert (await http_json(processor.url + "/api/queues/sales/missed"))["missed"] == []
        text = await (await _get(processor.url + "/metrics")).text()
        assert "0002" not in text and "4915100000" not in text


async def _get(url: str, token: str | None = None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session:
        response = await session.get(url, headers=headers)
        await response.read()
        return response


class GuardedProcessor(InProcessProcessor):
    """A processor whose every path but /healthz needs the API token."""

    async def ready(self) -> bool:
        try:
            response = await _get(self.url + "/readyz",
                                  self.settings.http_token.get_secret_value())
        except aiohttp.ClientError:
            return False
        return response.status == 200


async def test_missed_callers_show_their_numbers_behind_the_token(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap, http_token="s3cret")
    now = int(time.time() * 1000)
    async with GuardedProcessor(settings) as processor:
        await produce(settings, [queued("m1", "sales", now - 120_000, "+1 (555) 010-9999"),
                                 abandoned("m1", "sales", now - 60_000),
                                 queued("m2", "sales", now - 100_000, "5550100001"),
                                 abandoned("m2", "sales", now - 90_000)])

        async def listed() -> bool:
            response = await _get(processor.url + "/api/queues/sales/missed", "s3cret")
            return response.status == 200 and len((await response.json())["missed"]) == 2

        await wait_until(listed, timeout=30)
        response = await _get(processor.url + "/api/queues/sales/missed", "s3cret")
        body = await response.json()
        # Oldest miss first, numbers in full (normalised).
        assert [m["caller"] for m in body["missed"]] == ["5550100001", "15550109999"]
        assert (await _get(processor.url + "/api/queues/sales/missed")).status == 401


# --- kill -9 and a Redis crash change nothing -------------------------------------------


async def test_kill_9_and_a_redis_crash_under_load_change_no_journey(
        broker: EmbeddedBroker, tmp_path: Any) -> None:
    port = free_port()

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
             str(tmp_path), "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        return process

    redis = start_redis()
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=200)
    events, timeline = repeat_caller_stream(3000, seed=3,
                                            start_ms=int(time.time() * 1000) - 3 * HOUR_MS)
    expected = model(timeline)
    try:
        processor = await ProcessorProcess(settings).start()
        producing = asyncio.create_task(produce(settings, events))
        await asyncio.sleep(0.6)
        processor.kill()  # the processor dies mid-stream ...
        restarted = await ProcessorProcess(settings).start()
        await asyncio.sleep(0.4)
        redis.kill()  # ... and Redis crashes under load (AOF everysec)
        redis.wait()
        await asyncio.sleep(1)
        redis = start_redis()
        await producing
        try:
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: all_journeys_match(restarted.url, expected), timeout=90)
            assert await shown_journeys(restarted.url, list(expected)) == wanted(expected)
        finally:
            assert restarted.terminate() == 0
    finally:
        redis.kill()
        redis.wait()


async def test_a_redis_that_lost_its_last_writes_changes_no_journey(
        broker: EmbeddedBroker, tmp_path: Any) -> None:
    """An AOF cut: Redis comes back without the last third of its writes (queues' state,
    outboxes, journeys alike); what it lost is read again from Kafka, and the journeys
    end as if nothing had happened."""
    port = free_port()

    def start_redis(*extra: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
             str(tmp_path), "--save", "", "--appendonly", "yes", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        return process

    server = start_redis("--appendfsync", "always")
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=200)
    start = int(time.time() * 1000) - 3 * HOUR_MS
    events, timeline = repeat_caller_stream(2400, seed=8, start_ms=start)
    cut = len(events) * 2 // 3
    first_timeline = timeline_of(events[:cut])
    try:
        async with InProcessProcessor(settings) as processor:
            await produce(settings, events[:cut])
            await wait_until(lambda: all_journeys_match(processor.url, model(first_timeline)),
                             timeout=60)
            server.kill()
            server.wait()
            incr = next(tmp_path.glob("appendonlydir/*.incr.aof"))
            size = incr.stat().st_size
            with open(incr, "r+b") as aof:
                aof.truncate(size * 2 // 3)
            subprocess.run(["redis-check-aof", "--fix", str(incr)], input=b"y\n",
                           capture_output=True, check=True)
            server = start_redis()
            await produce(settings, events[cut:])
            expected = model(timeline)
            assert timeline_of(events) == timeline
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: all_journeys_match(processor.url, expected),
                                 timeout=90)
            assert await shown_journeys(processor.url, list(expected)) == wanted(expected)
    finally:
        server.kill()
        server.wait()
