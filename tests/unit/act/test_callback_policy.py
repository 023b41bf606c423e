"""The callback policy's pure parts: callback hours across time zones and daylight saving,
the next opening, and the order of the first refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from stream.act.callbacks import first_verdict, next_opening, offer_id_for, within_hours
from stream.config import QueuePolicy

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Pacific/Kiritimati", "Asia/Kolkata",
         "Australia/Lord_Howe"]
hours = st.builds(lambda a, b: f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}",
                  st.integers(0, 1439), st.integers(1, 1440)).filter(
    lambda h: h[:5] != h[6:] and (h[6:] != "24:00" or h == "00:00-24:00"))
moments = st.integers(1_700_000_000_000, 1_900_000_000_000)
kinds = st.sampled_from(["wait_threshold", "ewt_threshold", "missed_call"])


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_hours_are_read_in_the_queues_time_zone() -> None:
    paris = QueuePolicy(callback_hours="08:00-20:00", timezone="Europe/Paris")
    assert within_hours(paris, ms(datetime(2026, 7, 1, 6, 30, tzinfo=UTC)))  # 08:30 CEST
    assert not within_hours(paris, ms(datetime(2026, 7, 1, 18, 30, tzinfo=UTC)))  # 20:30
    night = QueuePolicy(callback_hours="22:00-06:00")
    assert within_hours(night, ms(datetime(2026, 7, 1, 23, 0, tzinfo=UTC)))
    assert within_hours(night, ms(datetime(2026, 7, 1, 5, 59, tzinfo=UTC)))
    assert not within_hours(night, ms(datetime(2026, 7, 1, 6, 0, tzinfo=UTC)))  # end excluded


def test_next_opening_across_a_daylight_saving_change() -> None:
    paris = QueuePolicy(callback_hours="08:00-20:00", timezone="Europe/Paris")
    # Saturday 28 March 2026, 21:00 CET; the clocks go forward that night
    evening = datetime(2026, 3, 28, 21, 0, tzinfo=ZoneInfo("Europe/Paris"))
    opening = next_opening(paris, ms(evening))
    assert opening == ms(datetime(2026, 3, 29, 6, 0, tzinfo=UTC))  # 08:00 CEST = 06:00 UTC
    assert opening - ms(evening) == (10 * 3600 * 1000)  # an hour short of 11


@given(hours, st.sampled_from(ZONES), moments)
def test_the_next_opening_is_open_and_nothing_earlier_is(hours: str, zone: str, now: int
                                                         ) -> None:
    policy = QueuePolicy(callback_hours=hours, timezone=zone)
    opening = next_opening(policy, now)
    assert opening >= now and within_hours(policy, opening)
    assert opening - now < 8 * 86400_000
    if opening > now:  # closed until then, minute by minute
        step = max(60_000, (opening - now) // 50)
        assert not any(within_hours(policy, t) for t in range(now, opening - 1000, step))


@given(kinds, hours, st.sampled_from(ZONES), st.booleans(), moments)
def test_first_verdict(kind: str, hours: str, zone: str, opted_out: bool, now: int) -> None:
    policy = QueuePolicy(callback_hours=hours, timezone=zone)
    verdict = first_verdict(kind, policy, opted_out, now)
    if opted_out:  # never offered, whatever the hour
        assert verdict.refusal == "opted_out" and verdict.due_ms is None
    elif within_hours(policy, now):
        assert verdict.refusal is None and verdict.due_ms == now
    elif kind == "missed_call":  # deferred to the next opening, never dropped
        assert verdict.refusal is None and verdict.due_ms == next_opening(policy, now)
    else:  # a caller still waiting cannot be called back tomorrow
        assert verdict.refusal == "outside_hours"


def test_an_offer_id_names_the_call_alone() -> None:
    assert offer_id_for("c-1") == offer_id_for("c-1") != offer_id_for("c-2")
    assert offer_id_for("c-1").startswith("cb-")


def test_all_day_is_always_open() -> None:
    always = QueuePolicy(callback_hours="00:00-24:00", timezone="Pacific/Kiritimati")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert all(within_hours(always, ms(start + timedelta(minutes=m))) for m in range(0, 1440, 7))


def test_hours_that_never_open_are_refused_at_start() -> None:
    import pytest
    from pydantic import ValidationError

    for never in ("08:00-08:00", "00:00-00:00"):
        with pytest.raises(ValidationError, match="never open"):
            QueuePolicy(callback_hours=never)
