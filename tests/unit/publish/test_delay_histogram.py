"""callstream_event_delay_seconds, observed a batch at a time, against delays counted one
by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from stream.publish.metrics import DelayHistogram


def _exposed(histogram: DelayHistogram) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(histogram)
    lines = generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in lines if line.startswith("callstream_event_delay_seconds")}


def test_batch_delays_bucketed_and_summed_with_future_events_as_zero() -> None:
    histogram = DelayHistogram()
    applied = 1_000_000.5
    # delays 0.0005 s, 0.02 s, 0.7 s, 120 s, and two events dated after the moment applied
    histogram.observe_batch(applied, [999_999, 999_980, 1_000_001, 999_300, 880_000,
                                      1_000_900])
    histogram.observe_batch(applied + 1000, [1_000_000])  # one more: 1.0005 s
    exposed = _exposed(histogram)
    expected_sum = 0.0015 + 0.0205 + 0 + 0.7005 + 120.0005 + 0 + 1.0005
    assert abs(exposed["callstream_event_delay_seconds_sum"] - expected_sum) < 1e-9
    assert exposed["callstream_event_delay_seconds_count"] == 7
    bucket = 'callstream_event_delay_seconds_bucket{le="%s"}'
    assert exposed[bucket % "0.005"] == 3  # 0.0015 and the two future ones
    assert exposed[bucket % "0.025"] == 4
    assert exposed[bucket % "1"] == 5
    assert exposed[bucket % "2.5"] == 6
    assert exposed[bucket % "60"] == 6
    assert exposed[bucket % "300"] == 7
    assert exposed[bucket % "+Inf"] == 7
