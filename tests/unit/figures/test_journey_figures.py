"""Journey figures from stored sums (contract §2): pure arithmetic, no services."""

from __future__ import annotations

import pytest

from stream.figures.journeys import journey_figures
from stream.parse.events import mask_caller as masked
from stream.state.journeys import QueueJourneys


def sums(**values: int) -> QueueJourneys:
    fields = dict.fromkeys(("missed", "offered_with_caller", "repeat_calls", "recovered",
                            "recovery_ms", "lost", "lost_total"), 0) | values
    return QueueJourneys(**fields, due=[])


def test_ratio_and_mean_recovery_from_sums() -> None:
    figures = journey_figures(sums(offered_with_caller=40, repeat_calls=10, recovered=4,
                                   recovery_ms=4 * 90_000, missed=3, lost=2, lost_total=7),
                              lost_caller_value=12.5)
    assert figures["repeat_call_ratio"] == pytest.approx(0.25)
    assert figures["recovery_seconds"] == pytest.approx(90.0)
    assert (figures["missed"], figures["recovered"], figures["lost"]) == (3, 4, 2)
    assert figures["lost_total"] == 7 and figures["lost_value"] == pytest.approx(25.0)


def test_ratio_and_mean_are_absent_while_their_divisor_is_zero() -> None:
    figures = journey_figures(sums(lost=3), lost_caller_value=0)
    assert figures["repeat_call_ratio"] is None and figures["recovery_seconds"] is None
    assert figures["lost_value"] is None  # lost_caller_value 0: off


def test_masked_keeps_only_the_last_four_digits() -> None:
    assert masked("442079460001") == "********0001"
    assert masked("123") == "123"
