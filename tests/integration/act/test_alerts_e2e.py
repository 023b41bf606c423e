"""Alerts from a running processor (contract §4): on the `alerts` topic, on MQTT, in
`callstream_alert_firing`, the API and the wallboard; one firing and one resolved per
episode with two instances, one of them killed with SIGKILL. Real tansu, Redis, Mosquitto
and chromium; `clock=event`, so an hour of scripted history plays in seconds."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
from playwright.async_api import Page, expect

from harness import (
    MQTT_URL,
    InProcessProcessor,
    ProcessorProcess,
    http_json,
    metric_value,
    produce,
    read_topic,
    unique_settings,
    wait_until,
)
from harness.alerts import START, calls, open_store, spike_history
from harness.centre import Centre
from harness.mqtt import needs_mosquitto, subscribed
from stream.act.alerts import CHANNEL, AlertWatch
from stream.act.publish_once import ID_HEADER, OncePublisher
from stream.config import Policy, Settings
from stream.ingest.kafka import all_topics, ensure_topics, make_producer
from stream.tools.broker import EmbeddedBroker, free_port

SPIKE_END_S = 3900


def before(events: list[dict[str, Any]], end_s: float) -> list[dict[str, Any]]:
    """The events of a scripted history up to ``end_s`` after START (by their time)."""
    limit = START + end_s * 1000
    return [e for e in events
            if datetime.fromisoformat(e["ts"]).timestamp() * 1000 < limit]


def after(events: list[dict[str, Any]], end_s: float) -> list[dict[str, Any]]:
    kept = {id(e) for e in before(events, end_s)}
    return [e for e in events if id(e) not in kept]


async def alerts_on(settings: Settings, broker: EmbeddedBroker, at_least: int,
                    timeout: float = 20) -> list[dict[str, Any]]:
    records = await read_topic(broker.bootstrap, settings.topic_alerts, at_least, timeout)
    for record in records:
        assert record.key.decode() == json.loads(record.value)["queue_id"]
        assert dict(record.headers)[ID_HEADER]
    return [json.loads(r.value) for r in records]


async def firing(url: str, queue: str) -> float:
    return await metric_value(url, "callstream_alert_firing", queue=queue,
                              kind="abandonment_spike")


@needs_mosquitto
async def test_an_episode_reaches_the_topic_mqtt_metrics_and_the_api(broker: EmbeddedBroker
                                                                     ) -> None:
    queue, quiet = f"sales-{uuid.uuid4().hex[:6]}", f"quiet-{uuid.uuid4().hex[:6]}"
    settings = unique_settings(broker.bootstrap, clock="event", mqtt_url=MQTT_URL)
    history = spike_history(queue) + calls(quiet, 0, 30, 160)
    async with subscribed(f"callstream/alerts/{queue}") as mqtt, \
            InProcessProcessor(settings) as processor:
        await produce(settings, before(history, SPIKE_END_S))
        fired = await alerts_on(settings, broker, 1)
        assert [(m["queue_id"], m["status"]) for m in fired] == [(queue, "firing")]

        async def shown() -> bool:
            return await firing(processor.url, queue) == 1
        await wait_until(shown, timeout=5)
        assert await firing(processor.url, quiet) == 0
        api = await http_json(f"{processor.url}/api/queues/{queue}")
        assert api["alerts"] == fired
        await mqtt.wait_for(f"callstream/alerts/{queue}", 1, timeout=5)

        await produce(settings, after(history, SPIKE_END_S))
        messages = await alerts_on(settings, broker, 2)
        assert [m["status"] for m in messages] == ["firing", "resolved"]
        assert messages[1]["alert_id"] == fired[0]["alert_id"]

        async def cleared() -> bool:
            return await firing(processor.url, queue) == 0
        await wait_until(cleared, timeout=5)
        assert (await http_json(f"{processor.url}/api/queues/{queue}"))["alerts"] == []
        await mqtt.wait_for(f"callstream/alerts/{queue}", 2, timeout=5)
        twins = [json.loads(m.payload) for m in mqtt.on(f"callstream/alerts/{queue}")]
        assert twins == messages


async def test_two_instances_one_killed_mid_episode_publish_each_message_once(
    broker: EmbeddedBroker,
) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    history = spike_history("sales") + spike_history("support")
    first = await ProcessorProcess(settings).start()
    second = await ProcessorProcess(settings.model_copy(
        update={"http_port": free_port()})).start()
    try:
        await produce(settings, before(history, SPIKE_END_S))
        fired = await alerts_on(settings, broker, 2)
        assert sorted(m["queue_id"] for m in fired) == ["sales", "support"]
        first.kill()
        await produce(settings, after(history, SPIKE_END_S))
        messages = await alerts_on(settings, broker, 4, timeout=60)
    finally:
        for process in (first, second):
            if process.process.poll() is None:
                process.terminate()
    for queue in ("sales", "support"):
        mine = [m for m in messages if m["queue_id"] == queue]
        assert [m["status"] for m in mine] == ["firing", "resolved"], messages
        assert mine[0]["alert_id"] == mine[1]["alert_id"]


async def test_a_message_sent_by_an_instance_that_died_before_confirming_is_not_sent_again(
    broker: EmbeddedBroker,
) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    await ensure_topics(settings, all_topics(settings))
    store = await open_store(settings.redis_prefix)
    producer = make_producer(settings)
    await producer.start()
    try:
        await Centre(store, Policy()).apply(*spike_history("sales"))
        now = START + SPIKE_END_S * 1000
        decided = await AlertWatch(settings, store, Policy(), None).evaluate(
            ["sales"], now, int(time.time() * 1000))
        assert [m["status"] for m in decided] == ["firing"]
        # An instance claims it, sends it, and dies before it can confirm.
        (claimed,) = await store.claim_outgoing(["sales"], CHANNEL, int(time.time() * 1000),
                                                "dying", 500, 10)
        await producer.send_and_wait(settings.topic_alerts, claimed.payload.encode(),
                                     key=b"sales", headers=[(ID_HEADER, claimed.msg_id.encode())])
        await asyncio.sleep(0.6)
        survivor = OncePublisher(settings, store, producer, settings.topic_alerts, CHANNEL,
                                 "survivor")
        taken = await survivor.tick(["sales"])
        assert [m.msg_id for m in taken] == [claimed.msg_id]
        assert await survivor.tick(["sales"]) == []
    finally:
        await producer.stop()
        await store.close()
    messages = await alerts_on(settings, broker, 1)
    assert [m["status"] for m in messages] == ["firing"]


@pytest.mark.browser
async def test_the_wallboard_shows_a_firing_alert_in_words_until_it_resolves(
    broker: EmbeddedBroker, page: Page,
) -> None:
    settings = unique_settings(broker.bootstrap, clock="event")
    history = spike_history("sales") + calls("support", 0, 30, 160)
    async with InProcessProcessor(settings) as processor:
        await produce(settings, before(history, SPIKE_END_S))
        await page.goto(f"{processor.url}/wallboard")
        sales = page.locator('[data-queue="sales"]')
        banner = sales.locator('[data-role="alert"]')
        await expect(banner).to_be_visible(timeout=15_000)
        await expect(banner).to_contain_text("ABANDONMENT SPIKE")
        await expect(sales.locator('[data-role="badge"]')).to_have_text("✖ ALERT")
        await expect(sales).to_have_attribute("data-alert", "abandonment_spike")
        await expect(sales.locator('[data-figure="abandon_ratio"]')).not_to_have_text("—")
        support = page.locator('[data-queue="support"]')
        await expect(support.locator('[data-role="alert"]')).to_be_hidden()
        await expect(support).to_have_attribute("data-alert", "")

        await produce(settings, after(history, SPIKE_END_S))
        await expect(banner).to_be_hidden(timeout=15_000)
        await expect(sales).to_have_attribute("data-alert", "")
