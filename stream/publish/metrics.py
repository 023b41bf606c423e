"""Prometheus families (contract §5): queue figures from the snapshot, pipeline health live.

Queue figures are read from Redis by the snapshot refresher, so every instance exports
the same numbers and a scrape never waits on Redis.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from stream.publish.hub import SnapshotHub
from stream.vocabulary import AGENT_STATES, ALERT_KINDS, OUTCOMES

_RATIOS = (
    ("callstream_queue_service_level_ratio", "service_level",
     "answered_in_sla / (answered + abandoned - short_abandoned), known waits only"),
    ("callstream_queue_abandon_ratio", "abandon_ratio",
     "(abandoned - short_abandoned) / (answered + abandoned - short_abandoned)"),
    ("callstream_queue_asa_seconds", "asa_seconds", "Mean wait of answered calls"),
    ("callstream_queue_aht_seconds", "aht_seconds", "Mean handle time of legs ended"),
)


class QueueCollector(Collector):
    """Exports the latest snapshot of every queue."""

    def __init__(self, hub: SnapshotHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        queues: list[dict[str, Any]] = self.hub.snapshot["queues"]
        waiting = GaugeMetricFamily("callstream_queue_calls_waiting", "Calls waiting now",
                                    labels=["queue"])
        longest = GaugeMetricFamily("callstream_queue_longest_wait_seconds",
                                    "Wait of the oldest waiting call", labels=["queue"])
        ewt = GaugeMetricFamily("callstream_queue_ewt_seconds",
                                "Estimated wait for a caller joining now", labels=["queue"])
        agents = GaugeMetricFamily("callstream_queue_agents", "Agents per state",
                                   labels=["queue", "state"])
        required = GaugeMetricFamily("callstream_queue_agents_required",
                                     "Agents needed to meet the service level target (Erlang C)",
                                     labels=["queue"])
        window_calls = GaugeMetricFamily("callstream_queue_window_calls",
                                         "Calls per outcome over a rolling window",
                                         labels=["queue", "window", "outcome"])
        ratios = {
            key: GaugeMetricFamily(name, doc, labels=["queue", "window"])
            for name, key, doc in _RATIOS
        }
        totals = CounterMetricFamily("callstream_calls", "Calls per outcome since the start",
                                     labels=["queue", "outcome"])
        offers = CounterMetricFamily("callstream_callback_offers", "Callback offers made",
                                     labels=["queue", "kind"])
        results = CounterMetricFamily("callstream_callback_results",
                                      "Callback offers closed, or refused, by result",
                                      labels=["queue", "result"])
        refusals = CounterMetricFamily("callstream_callback_refusals",
                                       "Callback offers refused by policy, by reason",
                                       labels=["queue", "reason"])
        for queue in queues:
            q = queue["queue_id"]
            waiting.add_metric([q], queue["waiting"])
            longest.add_metric([q], queue["longest_wait_seconds"])
            if queue["ewt_seconds"] is not None:
                ewt.add_metric([q], queue["ewt_seconds"])
            if queue["agents_required"] is not None:
                required.add_metric([q], queue["agents_required"])
            for state in AGENT_STATES:
                agents.add_metric([q, state], queue["agents"][state])
            for window, figures in queue["windows"].items():
                for outcome in OUTCOMES:
                    window_calls.add_metric([q, window, outcome], figures[outcome])
                for key, family in ratios.items():
                    if figures[key] is not None:
                        family.add_metric([q, window], figures[key])
            for outcome in OUTCOMES:
                totals.add_metric([q, outcome], queue["totals"][outcome])
            callbacks = queue["callbacks"]
            for counter, group in ((offers, "offered"), (results, "results"),
                                   (refusals, "refusals")):
                for name, n in callbacks[group].items():
                    counter.add_metric([q, name], n)
        yield from (waiting, longest, ewt, agents, required, window_calls, *ratios.values(),
                    totals, offers, results, refusals, _alert_firing(queues))
        yield from journey_families(queues)


class AgentCollector(Collector):
    """Exports the latest per-agent figures (contract §5 "per agent")."""

    def __init__(self, hub: SnapshotHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        agents: list[dict[str, Any]] = self.hub.snapshot.get("agents", [])
        state = GaugeMetricFamily("callstream_agent_state",
                                  "1 for the agent's current state, 0 for the others",
                                  labels=["agent", "state"])
        seconds = GaugeMetricFamily("callstream_agent_state_seconds",
                                    "Seconds in the current state", labels=["agent"])
        answered = GaugeMetricFamily("callstream_agent_answered",
                                     "Calls answered by the agent over a rolling window",
                                     labels=["agent", "window"])
        aht = GaugeMetricFamily("callstream_agent_aht_seconds",
                                "Mean handle time of the agent's legs ended in the window",
                                labels=["agent", "window"])
        occupancy = GaugeMetricFamily("callstream_agent_occupancy_ratio",
                                      "(busy + wrapup) / (available + busy + wrapup) time",
                                      labels=["agent", "window"])
        for agent in agents:
            a = agent["agent_id"]
            for name in AGENT_STATES:
                state.add_metric([a, name], 1 if agent["state"] == name else 0)
            seconds.add_metric([a], agent["state_seconds"])
            for window, figures in agent["windows"].items():
                answered.add_metric([a, window], figures["answered"])
                if figures["aht_seconds"] is not None:
                    aht.add_metric([a, window], figures["aht_seconds"])
                if figures["occupancy"] is not None:
                    occupancy.add_metric([a, window], figures["occupancy"])
        yield from (state, seconds, answered, aht, occupancy)


def _alert_firing(queues: list[dict[str, Any]]) -> Metric:
    """``callstream_alert_firing{queue,kind}``: 1 while an episode is open, else 0."""
    family = GaugeMetricFamily("callstream_alert_firing",
                               "1 while callstream's own alert of this kind is firing",
                               labels=["queue", "kind"])
    for queue in queues:
        open_kinds = {alert["kind"] for alert in queue.get("alerts", [])
                      if alert["status"] == "firing"}
        for kind in ALERT_KINDS:
            family.add_metric([queue["queue_id"], kind], int(kind in open_kinds))
    return family


#: The exclusive states of a queue's missed callers over the last day (contract §2).
CALLER_STATES = ("missed", "recovered", "lost")


def journey_families(queues: list[dict[str, Any]]) -> Iterator[Metric]:
    """Caller journey families, only once the snapshot carries journeys (the feature on)."""
    with_journeys = [q for q in queues if "journeys" in q]
    if not with_journeys:
        return
    callers = GaugeMetricFamily("callstream_queue_callers",
                                "Callers missed by the queue over the last 24 h, by state",
                                labels=["queue", "state"])
    repeat = GaugeMetricFamily("callstream_queue_repeat_call_ratio",
                               "Repeat calls / offered calls with a caller, last 24 h",
                               labels=["queue"])
    recovery = GaugeMetricFamily("callstream_queue_recovery_seconds",
                                 "Mean time from a miss to the caller's answer, last 24 h",
                                 labels=["queue"])
    lost = CounterMetricFamily("callstream_lost_callers",
                               "Callers missed and not answered within 24 h, since the start",
                               labels=["queue"])
    for queue in with_journeys:
        q, figures = queue["queue_id"], queue["journeys"]
        for state in CALLER_STATES:
            callers.add_metric([q, state], figures[state])
        if figures["repeat_call_ratio"] is not None:
            repeat.add_metric([q], figures["repeat_call_ratio"])
        if figures["recovery_seconds"] is not None:
            recovery.add_metric([q], figures["recovery_seconds"])
        lost.add_metric([q], figures["lost_total"])
    yield from (callers, repeat, recovery, lost)


class DelayHistogram(Collector):
    """``callstream_event_delay_seconds``, observed a batch at a time.

    Every event of a batch is applied at the same moment, so its delays are that moment
    minus each event time: one sort and a bisection per bucket count the whole batch,
    where observing event by event would cost more than parsing it.
    """

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)

    def __init__(self) -> None:
        self._le_counts = [0] * len(self.BUCKETS)
        self._count = 0
        self._sum_seconds = 0.0

    def observe_batch(self, applied_ms: float, event_ts_ms: Sequence[int]) -> None:
        """Delays (negative ones as 0) of events with times ``event_ts_ms``."""
        if not event_ts_ms:
            return
        times = sorted(event_ts_ms)
        n = len(times)
        for i, bound in enumerate(self.BUCKETS):
            self._le_counts[i] += n - bisect_left(times, applied_ms - bound * 1000)
        self._count += n
        past = bisect_right(times, applied_ms)  # the later ones count as 0
        self._sum_seconds += (past * applied_ms - sum(times[:past])) / 1000

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("callstream_event_delay_seconds",
                                       "Processing time minus event time")
        buckets = [(str(b), c) for b, c in zip(self.BUCKETS, self._le_counts, strict=True)]
        family.add_metric([], [*buckets, ("+Inf", self._count)], self._sum_seconds)
        yield family


class PipelineMetrics:
    """This instance's pipeline health: results per message, event delay, consumer lag
    (the consumer's ``PipelineObserver``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("callstream_events", "Consumed messages by type and result",
                              ["type", "result"], registry=registry)
        self.delay = DelayHistogram()
        registry.register(self.delay)
        self.lag = Gauge("callstream_consumer_lag_messages",
                         "Messages behind the end of each assigned partition", ["partition"],
                         registry=registry)

    def counted(self, results: Mapping[tuple[str, str], int]) -> None:
        for (event_type, result), n in results.items():
            self.events.labels(event_type, result).inc(n)

    def delayed(self, now_ms: float, event_ts_ms: Sequence[int]) -> None:
        self.delay.observe_batch(now_ms, event_ts_ms)

    def behind(self, partition: int, messages: int) -> None:
        self.lag.labels(str(partition)).set(messages)

    def released(self, partition: int) -> None:
        self.lag.remove(str(partition))


def build_registry(hub: SnapshotHub) -> tuple[CollectorRegistry, PipelineMetrics]:
    """A registry of its own (not the global one), so tests can run many processors."""
    registry = CollectorRegistry()
    registry.register(QueueCollector(hub))
    registry.register(AgentCollector(hub))
    return registry, PipelineMetrics(registry)
