"""Callback offers (contract §3) end to end: real tansu, Redis, processors."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import redis

from harness import (
    MQTT_HOST,
    MQTT_PORT,
    MQTT_URL,
    InProcessProcessor,
    ProcessorProcess,
    _event,
    crash_and_cut_aof,
    metric_value,
    produce,
    read_topic,
    start_redis,
    unique_settings,
    wait_until,
)
from stream.act.callbacks import offer_id_for
from stream.config import Policy, QueuePolicy, Settings
from stream.tools.broker import EmbeddedBroker, free_port

ALL_DAY = "00:00-24:00"


def policy(**overrides: Any) -> Policy:
    return Policy(defaults=QueuePolicy(**({"callback_hours": ALL_DAY} | overrides)))


def queued(call: str, queue: str, ts_ms: int, caller: str | None = None) -> dict[str, Any]:
    extra = {"caller": caller} if caller else {}
    return _event(f"{call}-q", "call.queued", ts_ms, call_id=call, queue_id=queue, **extra)


def answered(call: str, queue: str, ts_ms: int) -> dict[str, Any]:
    return _event(f"{call}-a", "call.answered", ts_ms, call_id=call, queue_id=queue,
                  agent_id="a1")


def abandoned(call: str, queue: str, ts_ms: int) -> dict[str, Any]:
    return _event(f"{call}-b", "call.abandoned", ts_ms, call_id=call, queue_id=queue)


def attempt(offer_id: str, call: str, queue: str, result: str, n: int) -> dict[str, Any]:
    return _event(f"{call}-k{n}", "call.callback_attempt", int(time.time() * 1000),
                  call_id=call, queue_id=queue, offer_id=offer_id, result=result)


async def offers(settings: Settings, at_least: int, timeout: float = 20) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in
            await read_topic(settings.kafka_bootstrap, settings.topic_offers, at_least, timeout)]


async def test_a_wait_crossing_the_threshold_gets_one_offer_within_a_second(
        broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    history = [e for i in range(4) for e in (
        queued(f"h{i}", "cb", now - 600_000 + i), answered(f"h{i}", "cb", now - 590_000 + i),
        _event(f"h{i}-e", "call.ended", now - 500_000 + i, call_id=f"h{i}", queue_id="cb"))]
    agent = _event("ag", "agent.state", now - 600_000, agent_id="a1", state="busy",
                   queues=["cb"])
    async with InProcessProcessor(settings, policy(callback_wait_seconds=2)) as processor:
        await produce(settings, [agent, *history])
        start = int(time.time() * 1000)
        await produce(settings, [queued("c1", "cb", start, "+44 20 7946 0001"),
                                 queued("c2", "cb", start, "+44 20 7946 0002"),
                                 queued("c3", "cb", start, "+44 20 7946 0003")])
        await produce(settings, [answered("c2", "cb", start + 1000),
                                 abandoned("c3", "cb", start + 1000)])
        got = await read_topic(settings.kafka_bootstrap, settings.topic_offers, 1, timeout=10)
        await asyncio.sleep(1.5)  # nothing else comes
        got += (await read_topic(settings.kafka_bootstrap, settings.topic_offers, 99,
                                 timeout=1))[len(got):]
        assert len(got) == 1
        offer = json.loads(got[0].value)
        assert offer["kind"] == "wait_threshold" and offer["call_id"] == "c1"
        assert offer["offer_id"] == offer_id_for("c1") and offer["attempt"] == 1
        assert offer["caller"] == "442079460001" and offer["queue_id"] == "cb"
        assert offer["position"] == 1 and offer["wait_seconds"] >= 2
        assert offer["ewt_seconds"] > 0  # the queue's EWT (AHT known, an agent staffed)
        assert got[0].timestamp - (start + 2000) <= 1500  # on the topic within 1.5 s
        assert await metric_value(processor.url, "callstream_callback_offers_total",
                                  queue="cb", kind="wait_threshold") == 1
        assert await metric_value(processor.url, "callstream_queue_window_calls",
                                  queue="cb", window="5m", outcome="callback_offered") == 1


async def test_a_missed_caller_answered_elsewhere_gets_a_cancel(broker: EmbeddedBroker
                                                                ) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    async with InProcessProcessor(settings, policy()) as processor:
        await produce(settings, [queued("m1", "sales", now - 20_000, "555 0100"),
                                 abandoned("m1", "sales", now - 10_000),  # waited 10 s
                                 queued("m2", "sales", now - 20_000, "555 0101"),
                                 abandoned("m2", "sales", now - 18_000)])  # short: none
        [offer] = await offers(settings, 1)
        assert (offer["kind"], offer["call_id"]) == ("missed_call", "m1")
        await produce(settings, [queued("m3", "support", now, "5550100"),
                                 answered("m3", "support", now + 2_000)])
        cancels = await read_topic(settings.kafka_bootstrap, settings.topic_cancels, 1)
        assert [json.loads(m.value)["offer_id"] for m in cancels] == [offer["offer_id"]]
        await wait_until(lambda: _result(processor.url, "sales", "cancelled", 1), timeout=5)


async def _result(url: str, queue: str, result: str, n: int) -> bool:
    return await metric_value(url, "callstream_callback_results_total", queue=queue,
                              result=result) == n


async def _refused(url: str, queue: str, reason: str, n: int) -> bool:
    return await metric_value(url, "callstream_callback_refusals_total", queue=queue,
                              reason=reason) == n


def closed_now(zone: str) -> str:
    """Callback hours that exclude this moment in ``zone``."""
    hour = datetime.now(ZoneInfo(zone)).hour
    return f"{(hour + 2) % 24:02d}:00-{(hour + 3) % 24:02d}:00"


async def test_every_refusal_is_counted_by_its_reason(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    redis.Redis.from_url(settings.redis_url).sadd(f"{settings.redis_prefix}:optout",
                                                  "447700900001")
    rules = Policy(
        defaults=QueuePolicy(callback_hours=ALL_DAY),
        queues={
            "capped": QueuePolicy(callback_hours=ALL_DAY, callback_max_per_caller=1),
            "closed": QueuePolicy(callback_hours=closed_now("Pacific/Kiritimati"),
                                  timezone="Pacific/Kiritimati", callback_wait_seconds=1),
            "full": QueuePolicy(callback_hours=ALL_DAY, callback_max_pending=1,
                                callback_wait_seconds=1),
        })
    now = int(time.time() * 1000)

    def missed(call: str, queue: str, caller: str) -> list[dict[str, Any]]:
        return [queued(call, queue, now - 30_000, caller), abandoned(call, queue, now - 10_000)]

    async with InProcessProcessor(settings, rules) as processor:
        await produce(settings, [
            *missed("o1", "open", "+44 7700 900001"),  # opted out
            *missed("k1", "capped", "447700900002"), *missed("k2", "capped", "447700900002"),
            queued("s1", "closed", now, "447700900003"),  # crosses at 1 s, outside hours
            queued("f1", "full", now, "447700900004"), queued("f2", "full", now, "447700900005"),
        ])
        url = processor.url
        await wait_until(lambda: _refused(url, "open", "opted_out", 1), timeout=10)
        await wait_until(lambda: _refused(url, "capped", "caller_cap", 1), timeout=10)
        await wait_until(lambda: _refused(url, "closed", "outside_hours", 1), timeout=10)
        await wait_until(lambda: _refused(url, "full", "max_pending", 1), timeout=10)
        await wait_until(lambda: _result(url, "full", "refused", 1), timeout=5)
        sent = {o["call_id"] for o in await offers(settings, 2)}
        assert len(sent) == 2 and "k1" in sent and len(sent & {"f1", "f2"}) == 1


async def test_a_missed_call_after_closing_is_offered_at_the_next_opening(
        broker: EmbeddedBroker) -> None:
    """With the event clock, time moves with the events: no waiting for the morning."""
    settings = unique_settings(broker.bootstrap, clock="event")
    evening = int(datetime(2026, 11, 20, 21, 30, tzinfo=ZoneInfo("Europe/Paris"))
                  .timestamp() * 1000)
    opening = datetime(2026, 11, 21, 8, 0, tzinfo=ZoneInfo("Europe/Paris"))
    rules = policy(callback_hours="08:00-20:00", timezone="Europe/Paris")
    async with InProcessProcessor(settings, rules):
        await produce(settings, [queued("n1", "night", evening, "331234567"),
                                 abandoned("n1", "night", evening + 30_000)])
        assert await offers(settings, 1, timeout=3) == []  # not before the opening
        morning = int((opening + timedelta(seconds=5)).timestamp() * 1000)
        await produce(settings, [queued("x", "night", morning)])  # the clock moves on
        [offer] = await offers(settings, 1)
        assert offer["call_id"] == "n1"
        assert offer["ts"] == opening.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def test_retries_then_reached_and_unreached(broker: EmbeddedBroker) -> None:
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    rules = policy(callback_retry_minutes=0.02, callback_max_attempts=3)  # 1.2 s apart
    async with InProcessProcessor(settings, rules) as processor:
        await produce(settings, [queued("r1", "retry", now - 20_000, "4915112345671"),
                                 abandoned("r1", "retry", now - 10_000),
                                 queued("r2", "retry", now - 20_000, "4915112345672"),
                                 abandoned("r2", "retry", now - 10_000)])
        await offers(settings, 2)
        ids = {c: offer_id_for(c) for c in ("r1", "r2")}
        for n, (r1, r2) in enumerate([("no_answer", "busy"), ("busy", "failed"),
                                      ("answered", "no_answer")], start=1):
            await wait_until(lambda n=n: _attempts_sent(settings, n), timeout=10)
            await produce(settings, [attempt(ids["r1"], "r1", "retry", r1, n),
                                     attempt(ids["r2"], "r2", "retry", r2, n)])
        await wait_until(lambda: _result(processor.url, "retry", "reached", 1), timeout=10)
        await wait_until(lambda: _result(processor.url, "retry", "unreached", 1), timeout=10)
        await asyncio.sleep(2)  # past another retry interval: nothing more goes out
        sent = await offers(settings, 6)
        by_call = {c: [(o["attempt"], o["ts"]) for o in sent if o["call_id"] == c]
                   for c in ids}
        assert [a for a, _ in by_call["r1"]] == [1, 2, 3]
        assert [a for a, _ in by_call["r2"]] == [1, 2, 3]
        assert len({o["offer_id"] for o in sent if o["call_id"] == "r1"}) == 1
        times = [datetime.fromisoformat(t) for _, t in by_call["r1"]]
        assert all((b - a).total_seconds() >= 1.2 for a, b in itertools.pairwise(times))


async def _attempts_sent(settings: Settings, n: int) -> bool:
    return len(await offers(settings, 2 * n, timeout=0.5)) >= 2 * n


async def test_two_instances_one_killed_still_one_offer_per_call(broker: EmbeddedBroker,
                                                                 tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text('[defaults]\ncallback_hours = "00:00-24:00"\n'
                           'callback_wait_seconds = 1\ncallback_max_pending = 5000\n')
    settings = unique_settings(broker.bootstrap, policy_file=str(policy_file))
    first = await ProcessorProcess(settings).start()
    second = await ProcessorProcess(settings.model_copy(update={
        "http_port": free_port()})).start()
    calls = [f"k{i}" for i in range(300)]
    try:
        start = int(time.time() * 1000)
        for chunk in range(6):  # crossings spread over three seconds
            await produce(settings, [
                queued(c, f"kq{i % 4}", start + chunk * 500, f"3361234{i:04d}")
                for i, c in enumerate(calls) if i % 6 == chunk])
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.3)
        first.kill()  # kill -9 while offers are being claimed and sent
        got = await offers(settings, len(calls), timeout=45)
        ids = [o["call_id"] for o in got]
        assert sorted(ids) == sorted(calls)  # every call once: none lost, none twice
    finally:
        second.terminate()


async def test_redis_cut_back_while_offers_go_out_loses_none_sends_none_twice(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    port = free_port()
    server = start_redis(port, str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    settings = unique_settings(broker.bootstrap, redis_url=f"redis://127.0.0.1:{port}/0",
                               kafka_batch_max=50)
    now = int(time.time() * 1000)

    def missed(calls: range) -> list[dict[str, Any]]:
        return [e for i in calls for e in (queued(f"x{i}", f"xq{i % 3}", now - 30_000,
                                                  f"3312345{i:04d}"),
                                           abandoned(f"x{i}", f"xq{i % 3}", now - 10_000))]

    rules = policy(callback_max_pending=1000)
    try:
        async with InProcessProcessor(settings, rules):
            await produce(settings, missed(range(60)))
            assert len(await offers(settings, 60)) == 60
            server = crash_and_cut_aof(server, port, str(tmp_path))
            await produce(settings, missed(range(60, 80)))
            await offers(settings, 80)
            await asyncio.sleep(3)  # what Redis forgot is re-read and decided again
            sent = [o["call_id"] for o in await offers(settings, 81, timeout=2)]
            assert sorted(sent) == sorted(f"x{i}" for i in range(80))
    finally:
        server.kill()
        server.wait()


async def test_the_example_dialler_closes_the_loop(broker: EmbeddedBroker) -> None:
    """The example dialler (python -m stream.tools.dialler) as the telephony side: offer ->
    attempt -> reached."""
    settings = unique_settings(broker.bootstrap)
    now = int(time.time() * 1000)
    async with InProcessProcessor(settings, policy()) as processor:
        await produce(settings, [queued("d1", "dial", now - 20_000, "3312340001"),
                                 abandoned("d1", "dial", now - 10_000)])
        dialler = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream.tools.dialler",
            "--bootstrap", broker.bootstrap, "--answer-rate", "1",
            "--offers-topic", settings.topic_offers, "--cancels-topic", settings.topic_cancels,
            "--events-topic", settings.topic_events, "--stop-after", "15",
            stdout=asyncio.subprocess.PIPE)
        try:
            await wait_until(lambda: _result(processor.url, "dial", "reached", 1), timeout=20)
        finally:
            dialler.kill()
            await dialler.wait()


async def test_offers_also_go_to_mqtt(broker: EmbeddedBroker) -> None:
    import aiomqtt

    root = f"cs-{uuid.uuid4().hex[:8]}"
    settings = unique_settings(broker.bootstrap, mqtt_url=MQTT_URL, mqtt_prefix=root)
    now = int(time.time() * 1000)
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT) as client:
        await client.subscribe(f"{root}/callbacks/#", qos=1)
        async with InProcessProcessor(settings, policy()):
            await produce(settings, [queued("q1", "mq", now - 20_000, "3312340002"),
                                     abandoned("q1", "mq", now - 10_000)])
            async with asyncio.timeout(15):
                async for message in client.messages:
                    assert str(message.topic) == f"{root}/callbacks/mq"
                    offer = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                    assert (offer["call_id"], offer["kind"]) == ("q1", "missed_call")
                    assert offer["caller"] == "3312340002"  # the offer's twin carries it
                    break
