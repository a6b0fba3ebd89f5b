"""The host stand-in's NCRONTAB schedules: six fields, `*`, `*/n`, lists, ranges; the next firing after a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.host.ncrontab import Schedule, ScheduleError

T0 = datetime(2026, 12, 1, 9, 7, 30, 250000, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */15 * * * *", T0, datetime(2026, 12, 1, 9, 15, 0, tzinfo=UTC)),
        ("* * * * * *", T0, datetime(2026, 12, 1, 9, 7, 31, tzinfo=UTC)),
        ("*/20 * * * * *", T0, datetime(2026, 12, 1, 9, 7, 40, tzinfo=UTC)),
        ("0 0 9-17 * * 1-5", T0, datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)),
        ("0 0 9 * * *", T0, datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)),
        ("0 0 0 * * 0", T0, datetime(2026, 12, 6, 0, 0, 0, tzinfo=UTC)),
        ("0 0 0 * * 7", T0, datetime(2026, 12, 6, 0, 0, 0, tzinfo=UTC)),
        ("0 0 0 1 1 *", T0, datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
        ("5,10,50 7 9 1 12 *", T0, datetime(2026, 12, 1, 9, 7, 50, tzinfo=UTC)),
        ("0 0 12 29 2 *", T0, datetime(2028, 2, 29, 12, 0, 0, tzinfo=UTC)),
        ("0 0 0 15 * 5", T0, datetime(2026, 12, 4, 0, 0, 0, tzinfo=UTC)),
    ],
    ids=["every-15-min", "every-second", "seconds-step", "weekday-hours", "daily", "sunday-0", "sunday-7",
         "new-year", "second-list", "leap-day", "day-or-weekday"],
)
def test_next_firing_follows_the_schedule(expression: str, after: datetime, expected: datetime) -> None:
    """next_after gives the first matching whole second strictly after the moment."""
    assert Schedule.parse(expression).next_after(after) == expected


@pytest.mark.parametrize(
    "expression",
    ["0 */15 * * *", "* * * * * * *", "60 * * * * *", "* 60 * * * *", "* * 24 * * *", "* * * 0 * *", "* * * * 13 *",
     "* * * * * 8", "*/0 * * * * *", "5-1 * * * * *", "a * * * * *", "-1 * * * * *", "", "0 0 0 31 2 *"],
    ids=["five-fields", "seven-fields", "second-60", "minute-60", "hour-24", "day-0", "month-13", "weekday-8",
         "step-0", "backwards-range", "letters", "negative", "empty", "never"],
)
def test_invalid_schedules_are_refused(expression: str) -> None:
    """A schedule that is not six valid fields, or never fires, raises ScheduleError."""
    with pytest.raises(ScheduleError):
        Schedule.parse(expression).next_after(T0)


fields = st.one_of(
    st.just("*"),
    st.integers(1, 23).map(lambda n: f"*/{n}"),
    st.lists(st.integers(0, 23), min_size=1, max_size=3).map(lambda ns: ",".join(map(str, ns))),
)


@settings(max_examples=60, deadline=None)
@given(second=fields, minute=fields, hour=fields,
       moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)))
def test_the_next_firing_matches_and_nothing_earlier_does(second: str, minute: str, hour: str, moment: datetime) -> None:
    """For any schedule, next_after is later than the moment, matches, and no second in between matches."""
    schedule = Schedule.parse(f"{second} {minute} {hour} * * *")
    found = schedule.next_after(moment)
    assert found > moment and schedule.matches(found)
    probe = moment.replace(microsecond=0) + timedelta(seconds=1)
    while probe < found and (found - probe) < timedelta(hours=2):
        assert not schedule.matches(probe)
        probe += timedelta(seconds=1)
