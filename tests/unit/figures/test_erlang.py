"""Erlang C against textbook figures; Erlang A against its limits and its own consistency."""

from __future__ import annotations

import math

import pytest

from stream.figures.erlang import (
    ErlangA,
    agents_required,
    asa,
    erlang_a,
    erlang_c,
    service_level,
)

# 100 calls in 30 minutes, 3 minutes each: A = 10 Erlangs (the classic staffing example).
RATE = 100 / 1800
AHT = 180.0
LOAD = RATE * AHT


@pytest.mark.parametrize(
    ("agents", "waiting", "answered_in_20s"),
    [
        (11, 0.6821, 0.3896),
        (12, 0.4494, 0.6402),
        (13, 0.2853, 0.7956),
        (14, 0.1741, 0.8884),
        (15, 0.1020, 0.9415),
    ],
)
def test_erlang_c_textbook_values(agents: int, waiting: float, answered_in_20s: float) -> None:
    assert erlang_c(agents, LOAD) == pytest.approx(waiting, abs=5e-5)
    assert service_level(agents, LOAD, AHT, 20) == pytest.approx(answered_in_20s, abs=5e-5)


def test_asa_textbook_value() -> None:
    assert asa(14, LOAD, AHT) == pytest.approx(0.1741 * 180 / 4, abs=0.01)


def test_agents_required_textbook_case() -> None:
    # 13 agents give 79.6 % in 20 s, 14 give 88.8 %: 14 meet 80/20.
    assert agents_required(RATE, AHT, 20, 0.8) == 14
    assert agents_required(RATE, AHT, 20, 0.7) == 13


def test_agents_required_edges() -> None:
    assert agents_required(0.0, AHT, 20, 0.8) == 0
    assert agents_required(0.0, None, 20, 0.8) == 0
    assert agents_required(RATE, None, 20, 0.8) is None
    assert agents_required(RATE, 0.0, 20, 0.8) is None
    with pytest.raises(ValueError, match="service_level_target"):
        agents_required(RATE, AHT, 20, 1.0)
    with pytest.raises(ValueError, match="arrival_rate_per_s"):
        agents_required(-1.0, AHT, 20, 0.8)


def test_unstable_queue() -> None:
    assert erlang_c(10, 10.0) == 1.0
    assert service_level(10, 12.0, AHT, 20) == 0.0
    assert asa(10, 10.0, AHT) == math.inf
    assert erlang_c(10, 0.0) == 0.0
    assert asa(10, 0.0, AHT) == 0.0


def test_large_centres_stay_finite() -> None:
    # A**N / N! overflows a float long before this; the recursion does not.
    waiting = erlang_c(2000, 1950.0)
    assert 0.0 < waiting < 1.0
    required = agents_required(10.0, 195.0, 20, 0.8)
    assert required is not None and 1950 < required < 2100
    assert service_level(required, 1950.0, 195.0, 20) >= 0.8
    assert service_level(required - 1, 1950.0, 195.0, 20) < 0.8


def test_erlang_a_with_infinite_patience_is_erlang_c() -> None:
    for agents in range(11, 16):
        exact = erlang_a(agents, RATE, AHT, math.inf, 20, 5)
        assert exact.abandoned == 0.0
        assert exact.answered_within == pytest.approx(
            service_level(agents, LOAD, AHT, 20), abs=1e-9
        )


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    previous = 1.0
    for patience in (1e3, 1e4, 1e5, 1e6, 1e7):
        result = erlang_a(12, RATE, AHT, patience, 20, 5)
        gap = abs(result.answered_within - service_level(12, LOAD, AHT, 20))
        assert gap < previous / 5
        previous = gap
    assert previous < 2e-5


def test_erlang_a_tends_to_erlang_b_as_patience_vanishes() -> None:
    # Callers who hang up at once are blocked calls: the loss probability is Erlang B.
    blocking = 1.0
    for n in range(1, 13):
        blocking = LOAD * blocking / (n + LOAD * blocking)
    result = erlang_a(12, RATE, AHT, 1e-6, 20, 5)
    assert result.abandoned == pytest.approx(blocking, abs=1e-6)
    assert result.short_abandoned == pytest.approx(blocking, abs=1e-6)


def test_erlang_a_reference_value() -> None:
    # 5 agents, 4.5 Erlangs, 60 s AHT and patience; also found by uniformizing the tagged
    # caller's chain numerically, a method independent of the closed form used here.
    result = erlang_a(5, 4.5 / 60, 60, 60, 20, 5)
    assert result.answered_within == pytest.approx(0.7419506620506, abs=1e-12)
    assert result.abandoned == pytest.approx(0.1378191290262, abs=1e-12)
    assert result.short_abandoned == pytest.approx(0.0346501297926, abs=1e-12)


def test_erlang_a_flows_add_up() -> None:
    # Two independent routes: flow balance (gamma x mean queue) and the tagged caller's chain.
    long_ = erlang_a(10, RATE, AHT, 120, 3000, 3000)
    assert long_.answered_within == pytest.approx(long_.answered, abs=1e-9)
    assert long_.short_abandoned == pytest.approx(long_.abandoned, abs=1e-9)
    none_short = erlang_a(10, RATE, AHT, 120, 20, 0)
    assert none_short.short_abandoned == 0.0


def test_erlang_a_in_overload_abandons_the_excess() -> None:
    # 20 Erlangs on 10 agents: about half the callers must leave, whatever their patience.
    result = erlang_a(10, 20 / AHT, AHT, 60, 20, 5)
    assert 0.45 < result.abandoned < 0.6
    assert erlang_a(10, 20 / AHT, AHT, math.inf, 20, 5).answered_within == 0.0


def test_erlang_a_contract_ratios() -> None:
    outcome = ErlangA(answered_within=0.6, abandoned=0.2, short_abandoned=0.05)
    assert outcome.answered == pytest.approx(0.8)
    assert outcome.service_level == pytest.approx(0.6 / 0.95)
    assert outcome.abandon_ratio == pytest.approx(0.15 / 0.95)


def test_erlang_a_handles_hundreds_of_agents() -> None:
    result = erlang_a(500, 480 / 180, 180, 60, 20, 5)
    assert 0.0 < result.abandoned < 0.05
    assert 0.9 < result.service_level <= 1.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="agents"):
        erlang_c(-1, 1.0)
    with pytest.raises(ValueError, match="aht_seconds"):
        service_level(10, 5.0, 0.0, 20)
    with pytest.raises(ValueError, match="patience_seconds"):
        erlang_a(10, RATE, AHT, 0.0, 20)
