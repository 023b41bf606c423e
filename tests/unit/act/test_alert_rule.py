"""The abandonment spike rule of contract §4, from plain numbers (stream/alerts.py)."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from stream.act.alerts import (
    BASELINE_SECONDS,
    Reading,
    bucket_ranges,
    decide,
    is_spike,
    needs_baseline,
    reading,
)
from stream.config import QueuePolicy

POLICY = QueuePolicy()  # 0.2 ratio, 10 calls, factor 3, resolve 0.1
BUCKETS = {300: 10, 900: 30, 3600: 120}

counts = st.integers(min_value=0, max_value=500)
baselines = st.none() | st.floats(min_value=0, max_value=1)
policies = st.builds(
    QueuePolicy,
    alert_abandon_ratio=st.floats(min_value=0.01, max_value=1),
    alert_min_calls=st.integers(min_value=1, max_value=50),
    alert_baseline_factor=st.floats(min_value=0.5, max_value=10),
    alert_resolve_ratio=st.floats(min_value=0, max_value=1),
)


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    calls = draw(counts)
    return Reading(draw(st.integers(min_value=0, max_value=calls)), calls, draw(baselines))


def test_the_ratio_threshold_fires_with_enough_calls() -> None:
    assert is_spike(Reading(12, 40, None), POLICY)  # 30 % of 40
    assert is_spike(Reading(2, 10, None), POLICY)  # exactly 20 % of exactly 10 calls
    assert not is_spike(Reading(2, 9, None), POLICY)  # too few calls
    assert not is_spike(Reading(1, 1, None), POLICY)  # a single abandon on an idle queue
    assert not is_spike(Reading(7, 40, None), POLICY)  # 17.5 %, no baseline


def test_the_baseline_branch_needs_a_baseline_above_zero_and_the_resolve_ratio() -> None:
    assert is_spike(Reading(6, 40, 0.04), POLICY)  # 15 % >= 3 x 4 %, >= 10 %
    assert not is_spike(Reading(6, 40, 0.06), POLICY)  # 15 % < 3 x 6 %
    assert not is_spike(Reading(6, 40, 0.0), POLICY)  # a baseline of 0 is no baseline
    assert not is_spike(Reading(3, 40, 0.01), POLICY)  # 7.5 %: below the resolve ratio
    assert not is_spike(Reading(2, 9, 0.01), POLICY)  # 22 % of too few calls
    assert is_spike(Reading(3, 10, 0.1), POLICY)  # 30 % = 3 x 10 %, float rounding aside


def test_an_episode_fires_then_resolves_below_the_resolve_ratio() -> None:
    assert decide(False, Reading(12, 40, 0.02), POLICY) == "fire"
    assert decide(True, Reading(12, 40, 0.02), POLICY) is None
    assert decide(True, Reading(5, 40, 0.02), POLICY) is None  # 12.5 %: still firing
    assert decide(True, Reading(4, 50, 0.02), POLICY) == "resolve"  # 8 %
    assert decide(True, Reading(0, 0, 0.02), POLICY) == "resolve"  # the calls stopped
    assert decide(False, Reading(0, 0, None), POLICY) is None


def test_a_single_call_cannot_resolve_an_episode_where_the_thresholds_meet() -> None:
    # Fired by the baseline branch at 10 %; one answered call takes it to 9.8 %, but
    # one more abandon would fire it again: it stays open.
    assert decide(False, Reading(4, 40, 0.02), POLICY) == "fire"
    assert decide(True, Reading(4, 41, 0.02), POLICY) is None
    assert decide(True, Reading(4, 60, 0.02), POLICY) == "resolve"


@given(readings(), policies)
def test_no_single_call_reopens_what_it_just_resolved(seen: Reading, policy: QueuePolicy
                                                      ) -> None:
    if decide(True, seen, policy) == "resolve":
        assert decide(False, Reading(seen.lost + 1, seen.calls + 1, seen.baseline),
                      policy) is None
        assert decide(False, Reading(seen.lost, seen.calls + 1, seen.baseline),
                      policy) is None


@given(readings(), policies)
def test_fire_and_resolve_never_hold_together(seen: Reading, policy: QueuePolicy) -> None:
    if decide(False, seen, policy) == "fire":
        assert decide(True, seen, policy) is None


@given(readings(), policies)
def test_nothing_fires_below_the_minimum_calls(seen: Reading, policy: QueuePolicy) -> None:
    if seen.calls < policy.alert_min_calls:
        assert decide(False, seen, policy) is None


@given(readings(), policies)
def test_the_ratio_threshold_alone_always_fires(seen: Reading, policy: QueuePolicy) -> None:
    ratio = seen.ratio
    if ratio is not None and seen.calls >= policy.alert_min_calls \
            and ratio >= policy.alert_abandon_ratio:
        assert decide(False, seen, policy) == "fire"


def test_the_reading_counts_calls_without_short_abandons() -> None:
    window = {"answered": 28, "abandoned": 14, "short_abandoned": 2}
    baseline = {"answered": 94, "abandoned": 8, "short_abandoned": 2}
    assert reading(window, baseline) == Reading(12, 40, 0.06)
    assert reading({}, {}) == Reading(0, 0, None)


@given(st.integers(min_value=10**12, max_value=2 * 10**12), st.sampled_from([300, 900]))
def test_the_baseline_is_the_whole_hour_before_the_window(now_ms: int, window_s: int) -> None:
    window, baseline = bucket_ranges(now_ms, window_s, BUCKETS)
    size = BUCKETS[window_s] * 1000
    assert window.first * size <= now_ms - window_s * 1000 < (window.first + 1) * size
    assert window.last == now_ms // size
    hour = BUCKETS[BASELINE_SECONDS] * 1000
    assert (baseline.last - baseline.first + 1) * hour == BASELINE_SECONDS * 1000
    end = (baseline.last + 1) * hour  # where the baseline stops
    assert now_ms - window_s * 1000 - hour < end <= now_ms - window_s * 1000


@given(readings(), st.booleans(), st.floats(min_value=0, max_value=1), policies)
@example(Reading(0, 1, None), False, 2.2607925112043046e-71, QueuePolicy(
    alert_abandon_ratio=1.0, alert_min_calls=1, alert_baseline_factor=2.0,
    alert_resolve_ratio=0.0))  # a baseline below the thresholds' tolerance
def test_the_baseline_is_read_wherever_it_can_change_the_decision(
    seen: Reading, firing: bool, baseline: float, policy: QueuePolicy
) -> None:
    window = Reading(seen.lost, seen.calls, None)
    if not needs_baseline(firing, window, policy):
        with_baseline = Reading(seen.lost, seen.calls, baseline)
        assert decide(firing, with_baseline, policy) == decide(firing, window, policy)
