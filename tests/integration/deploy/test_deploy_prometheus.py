"""The shipped dashboards and rules, run on a real Prometheus scraping a real callstream.

Debian's `prometheus` server loads the shipped rules and scrapes an in-process processor
fed with a scripted stream: a calm hour on `sales`, then an abandonment spike (12 of 40
calls abandoned in the last five minutes), a transfer, a callback acceptance, calls still
waiting, one bad message, and a trickle of live calls on `support` while Prometheus
scrapes. Then every query of every panel of every shipped dashboard and every rule goes
through Prometheus's HTTP API, and each must return data: a misspelt metric, a label that
does not exist or a panel that stays empty on a live system fails here. The spike alert
must fire, and the shipped Alertmanager config (its webhooks pointed at this test) must
bring it to the supervisors.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from harness import (
    InProcessProcessor,
    produce,
    queue_figures,
    unique_settings,
    wait_until,
)
from harness.deploy_files import (
    ALERTMANAGER_CONFIG,
    PROMETHEUS_CONFIG,
    alerting_rules,
    dashboard_files,
    dashboard_queries,
    load_dashboard,
    load_yaml,
    recording_rules,
    rule_files,
    running,
    substitute,
    variable_names,
    variables,
)
from stream.config import Settings
from stream.ingest.kafka import make_producer
from stream.timefmt import rfc3339 as iso
from stream.tools.broker import EmbeddedBroker, free_port

#: Families of the contract that the processor does not compute yet. A query that names
#: one is only checked for syntax (Prometheus's /api/v1/query must accept it); every other
#: query must return data. Shrink this set as the features land.
NOT_COMPUTED_YET: frozenset[str] = frozenset()  # every family of section 5 is computed now

SCRAPE_SECONDS = 1
#: Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval).
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
QUEUES = ("sales", "support")

PROMETHEUS = shutil.which("prometheus") or "prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or ""
pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or not ALERTMANAGER,
    reason="needs Debian's `prometheus` and `prometheus-alertmanager` packages",
)


# --- The scripted stream ------------------------------------------------------------------


def event(event_id: str, kind: str, ts_ms: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "ts": iso(ts_ms), **fields}


def answered_call(call: str, queue: str, queued_ms: int, wait_s: int, talk_s: int,
                  agent: str) -> list[dict[str, Any]]:
    answered = queued_ms + wait_s * 1000
    return [
        event(f"{call}-q", "call.queued", queued_ms, call_id=call, queue_id=queue),
        event(f"{call}-a", "call.answered", answered, call_id=call, queue_id=queue,
              agent_id=agent),
        event(f"{call}-e", "call.ended", answered + talk_s * 1000, call_id=call,
              queue_id=queue, agent_id=agent),
    ]


def abandoned_call(call: str, queue: str, queued_ms: int, wait_s: int) -> list[dict[str, Any]]:
    return [
        event(f"{call}-q", "call.queued", queued_ms, call_id=call, queue_id=queue),
        event(f"{call}-b", "call.abandoned", queued_ms + wait_s * 1000, call_id=call,
              queue_id=queue),
    ]


def scripted_stream(now_ms: int) -> list[dict[str, Any] | bytes]:
    """A calm hour, then a spike on `sales` (contract section 4: 0.3 over 40 calls)."""
    minute = 60_000
    events: list[dict[str, Any] | bytes] = [
        event(f"agent-{n}-on", "agent.state", now_ms - 70 * minute, agent_id=f"agent-{n}",
              state=state, queues=list(QUEUES))
        for n, state in enumerate(["available", "available", "busy", "wrapup", "away"])
    ]
    # The calm hour before the alert window: 30 calls, one abandoned.
    for n in range(30):
        queued = now_ms - 65 * minute + n * 2 * minute
        call = f"calm-{n}"
        events += (abandoned_call(call, "sales", queued, 40) if n == 7
                   else answered_call(call, "sales", queued, 12, 90, f"agent-{n % 4}"))
    # The spike: 40 calls in the last five minutes, 12 abandoned after 30 s (not short).
    for n in range(40):
        queued = now_ms - 290_000 + n * 5_000
        call = f"spike-{n}"
        events += (abandoned_call(call, "sales", queued, 30) if n % 10 in (1, 4, 7)
                   else answered_call(call, "sales", queued, 8, 20, f"agent-{n % 4}"))
    # A call sent on from sales to support, one that takes a callback, two still waiting.
    events += [
        event("xfer-q", "call.queued", now_ms - 3 * minute, call_id="xfer", queue_id="sales"),
        event("xfer-a", "call.answered", now_ms - 3 * minute + 4_000, call_id="xfer",
              queue_id="sales", agent_id="agent-0"),
        event("xfer-t", "call.transferred", now_ms - 2 * minute, call_id="xfer",
              queue_id="sales", to_queue_id="support", agent_id="agent-0"),
        event("cb-q", "call.queued", now_ms - 2 * minute, call_id="cb", queue_id="support"),
        event("cb-c", "call.callback_accepted", now_ms - 90_000, call_id="cb",
              queue_id="support"),
        event("wait-1-q", "call.queued", now_ms - 40_000, call_id="wait-1", queue_id="sales"),
        event("wait-2-q", "call.queued", now_ms - 20_000, call_id="wait-2",
              queue_id="support"),
        b"this is not an event",
    ]
    # A caller missed on sales who calls again and is answered: a repeat call, recovered.
    for record in events:
        if isinstance(record, dict) and record["event_id"] in ("calm-7-q", "calm-8-q"):
            record["caller"] = "+44 20 7946 0007"
    return events


async def trickle(settings: Settings, stop: asyncio.Event) -> None:
    """Live calls on `support` every half second, so rates are those of a working day."""
    producer = make_producer(settings)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            now = int(time.time() * 1000)
            for record in answered_call(f"live-{n}", "support", now - 3_000, 1, 1,
                                        "agent-1"):
                await producer.send(settings.topic_events, json.dumps(record).encode(),
                                    key=b"support")
            n += 1
            await asyncio.sleep(0.5)
    finally:
        await producer.stop()


# --- A real Prometheus --------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    started: float
    #: (receiver, Alertmanager's webhook payload) for every notification, in order.
    notifications: list[tuple[str, dict[str, Any]]]

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(
            self.url + path, params=params
        ) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            return body

    async def query(self, expr: str) -> dict[str, Any]:
        return await self.get("/api/v1/query", query=expr)


def prometheus_config(directory: Path, target: str, alertmanager: str) -> Path:
    """The shipped prometheus.yml, scraping ``target`` every second with the shipped rules."""
    config = load_yaml(PROMETHEUS_CONFIG)
    interval = f"{SCRAPE_SECONDS}s"
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(path) for path in rule_files()]
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "callstream")
    job.update(scrape_interval=interval, scrape_timeout=interval,
               static_configs=[{"targets": [target]}])
    job.pop("dns_sd_configs", None)
    config["scrape_configs"] = [job]
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def alertmanager_config(directory: Path, webhooks: str) -> Path:
    """The shipped alertmanager.yml, every receiver's webhook at ``webhooks``/{receiver}."""
    config = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        assert receiver.get("webhook_configs"), f"receiver {receiver['name']} has no webhook"
        for webhook in receiver["webhook_configs"]:
            webhook["url"] = f"{webhooks}/{receiver['name']}"
    path = directory / "alertmanager.yml"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@contextmanager
def server(args: list[str], log: Path) -> Iterator[None]:
    """A server process for the length of a with block, its output in ``log``."""
    with log.open("wb") as output, running(args, output):
        yield


@asynccontextmanager
async def webhook_sink(notifications: list[tuple[str, dict[str, Any]]]) -> AsyncIterator[str]:
    """A local HTTP endpoint that keeps what Alertmanager sends; yields its base URL."""

    async def receive(request: web.Request) -> web.Response:
        notifications.append((request.match_info["receiver"], await request.json()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/{receiver}", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def live(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Prometheus]:
    """A processor fed with the scripted stream and a live trickle, Prometheus scraping it
    with the shipped rules, and the shipped Alertmanager routing its alerts to webhooks."""
    settings = unique_settings(broker.bootstrap)
    await produce(settings, scripted_stream(int(time.time() * 1000)))
    stop = asyncio.Event()
    notifications: list[tuple[str, dict[str, Any]]] = []
    async with InProcessProcessor(settings) as processor, webhook_sink(notifications) as sink:

        async def spike_applied() -> bool:
            sales = await queue_figures(processor.url, "sales")
            return sales is not None and sales["totals"]["abandoned"] == 13

        await wait_until(spike_applied, timeout=20)
        feeder = asyncio.create_task(trickle(settings, stop))
        port, manager_port = free_port(), free_port()
        manager = [
            ALERTMANAGER,
            f"--config.file={alertmanager_config(tmp_path, sink)}",
            f"--storage.path={tmp_path / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{manager_port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]
        config = prometheus_config(
            tmp_path, f"127.0.0.1:{settings.http_port}", f"127.0.0.1:{manager_port}"
        )
        prometheus = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        try:
            with server(manager, tmp_path / "alertmanager.log"), server(
                prometheus, tmp_path / "prometheus.log"
            ):
                yield Prometheus(f"http://127.0.0.1:{port}", time.monotonic(), notifications)
        finally:
            stop.set()
            await feeder


async def samples(prometheus: Prometheus, expr: str) -> int:
    """How many samples ``expr`` has now (0 while Prometheus is not up yet)."""
    try:
        body = await prometheus.query(expr)
    except (aiohttp.ClientError, ValueError):  # not listening yet, or not answering JSON yet
        return 0
    return len(body["data"]["result"]) if body.get("status") == "success" else 0


# --- Expressions as they run on a fresh Prometheus ----------------------------------------

_OFFSET = re.compile(r"\s+offset\s+-?\d+[smhdwy]\b")
_SUBQUERY_STEP = re.compile(r"(\[\s*[^\]:]+):\s*\d+[smhdwy]\s*\]")
_SCALAR_COMPARISON = re.compile(
    r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?-?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?(?![\w.])"
)


def on_fresh_prometheus(expr: str) -> str:
    """The same metrics and labels over the minute of data this test has.

    An ``offset`` (the spike's baseline is the hour before the alert window) looks past the
    start of this Prometheus, and a subquery stepped by hours (the hour-of-day heatmap)
    has no step inside that minute: the offset is dropped and the subquery is stepped by
    the scrape interval.
    """
    expr = _OFFSET.sub("", expr)
    return _SUBQUERY_STEP.sub(rf"\1:{SCRAPE_SECONDS}s]", expr)


def without_conditions(expr: str) -> str:
    """An alert's expression with its thresholds taken out: what it compares.

    ``x > 0.2`` becomes ``x``, ``absent(x)`` becomes ``(x)``; comparisons between two
    vectors stay (the other branches of the spike alert still have data).
    """
    return _SCALAR_COMPARISON.sub("", expr.replace("absent(", "("))


def test_the_expression_rewrites() -> None:
    assert on_fresh_prometheus("max(x{window=\"1h\"} offset 5m)") == 'max(x{window="1h"})'
    assert on_fresh_prometheus("sum_over_time((a * b)[1d:1h])") == "sum_over_time((a * b)[1d:1s])"
    assert on_fresh_prometheus("rate(x[5m])") == "rate(x[5m])"
    assert without_conditions("a:b >= 0.2 and on (q) c >= 10") == "a:b and on (q) c"
    assert without_conditions("x / y > 0.01") == "x / y"
    assert without_conditions("absent(up{job=\"a\"})") == '(up{job="a"})'
    assert without_conditions("(r >= 0.1) >= on (q) 3 * (b > 0)") == "(r) >= on (q) 3 * (b)"
    assert without_conditions("histogram_quantile(0.99, x) > 5") == "histogram_quantile(0.99, x)"


# --- What a query must give ---------------------------------------------------------------


def not_computed_yet(expr: str) -> set[str]:
    return {name for name in NOT_COMPUTED_YET if re.search(rf"\b{name}(?!\w)", expr)}


def problem(body: dict[str, Any], expect_data: bool) -> str | None:
    """Why a query's answer is not good enough (None when it is)."""
    if body.get("status") != "success":
        return f"refused: {body.get('errorType')}: {body.get('error')}"
    if not expect_data:
        return None
    data = body["data"]
    if data["resultType"] == "scalar":
        values = [float(data["result"][1])]
    else:
        values = [float(sample["value"][1]) for sample in data["result"]]
    if not values:
        return "no data"
    if all(math.isnan(v) for v in values):
        return "only NaN"
    return None


async def check(prometheus: Prometheus, where: str, expr: str,
                expect_data: bool = True) -> list[str]:
    skipped = not_computed_yet(expr)
    why = problem(await prometheus.query(expr), expect_data and not skipped)
    return [f"{where}: {why} in {expr!r}"] if why else []


async def grafana_values(prometheus: Prometheus, board: dict[str, Any]) -> dict[str, str]:
    """Each variable as Grafana would fill it in, its options read from this Prometheus."""
    elapsed = max(2, round(time.monotonic() - prometheus.started))
    values = {
        "__rate_interval": RATE_INTERVAL,
        "__interval": f"{SCRAPE_SECONDS}s",
        "__interval_ms": str(SCRAPE_SECONDS * 1000),
        "__range": f"{elapsed}s",
        "__range_s": str(elapsed),
        "__range_ms": str(elapsed * 1000),
    }
    for name, variable in variables(board).items():
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", variable["definition"])
        assert match, f"variable {name}: {variable['definition']!r} is not label_values(...)"
        family, label = match.groups()
        body = await prometheus.get(f"/api/v1/label/{label}/values", **{"match[]": family})
        options = body["data"]
        assert options, f"variable {name} has no options: {variable['definition']}"
        current = variable.get("current", {}).get("value")
        chosen = current if isinstance(current, list) else [current]
        if "$__all" in chosen:
            chosen = options
        chosen = [value for value in chosen if value in options] or options[:1]
        # Grafana writes several values of a multi-value variable as a regex alternation.
        values[name] = chosen[0] if len(chosen) == 1 else "(" + "|".join(chosen) + ")"
    return values


# --- The test -----------------------------------------------------------------------------


async def test_every_dashboard_query_and_rule_returns_data_on_a_live_system(
    live: Prometheus,
) -> None:
    up = 'up{job="callstream"} == 1'
    await wait_until(lambda: samples(live, up), timeout=20)

    async def spike_alert_fires() -> bool:
        expr = 'ALERTS{alertname="CallstreamAbandonmentSpike", alertstate="firing"}'
        return await samples(live, expr) > 0

    await wait_until(spike_alert_fires, timeout=15)
    # A few scrapes of the live trickle, so that every rate has points to work on.
    await asyncio.sleep(5 * SCRAPE_SECONDS)

    problems: list[str] = []
    boards = [load_dashboard(path) for path in dashboard_files()]
    assert boards
    for board in boards:
        values = await grafana_values(live, board)
        queries = dashboard_queries(board)
        assert queries, f"dashboard {board['uid']} has no query"
        for where, expr in queries:
            unknown = sorted(variable_names(expr) - set(values))
            assert not unknown, f"{where}: unknown variables {unknown}"
            query = on_fresh_prometheus(substitute(expr, values.__getitem__))
            problems += await check(live, where, query)

    for name, rule in recording_rules().items():
        problems += await check(live, f"record {name}", on_fresh_prometheus(rule["expr"]))
    for name, rule in alerting_rules().items():
        expr = on_fresh_prometheus(rule["expr"])
        problems += await check(live, f"alert {name}", expr, expect_data=False)
        problems += await check(live, f"alert {name} without its thresholds",
                                without_conditions(expr))
    assert problems == []

    alerts = (await live.get("/api/v1/alerts"))["data"]["alerts"]
    spikes = {a["labels"]["queue"]: a["state"] for a in alerts
              if a["labels"]["alertname"] == "CallstreamAbandonmentSpike"}
    assert spikes == {"sales": "firing"}, alerts

    # The shipped Alertmanager config sends the spike to the supervisors, for its queue.
    async def supervisors_told() -> bool:
        return any(receiver == "supervisors" for receiver, _ in live.notifications)

    await wait_until(supervisors_told, timeout=15)
    told = [(receiver, alert["labels"]["alertname"], alert["labels"].get("queue"),
             alert["status"])
            for receiver, payload in live.notifications for alert in payload["alerts"]]
    assert ("supervisors", "CallstreamAbandonmentSpike", "sales", "firing") in told
    assert {receiver for receiver, *_ in told} == {"supervisors"}, told
