"""NCRONTAB six-field schedules (`{second} {minute} {hour} {day} {month} {day-of-week}`), as the timer trigger reads them.

Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, or a comma list of those; day-of-week is
0-6 with Sunday 0 (7 is Sunday too). As in cron, when both day and day-of-week are restricted either may match.
(https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Schedule", "ScheduleError"]

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("day-of-week", 0, 7))
_SEARCH_LIMIT = timedelta(days=4 * 366)  # every valid schedule fires within a leap-year cycle


class ScheduleError(ValueError):
    """A schedule that is not six valid NCRONTAB fields."""


def _number(text: str, low: int, high: int, name: str) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ScheduleError(f"{name} field: {text!r} is not a number from {low} to {high}")
    return int(text)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        step = _number(step_text, 1, high, name) if slash else 1
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, stop = _number(first, low, high, name), _number(last, low, high, name)
            if start > stop:
                raise ScheduleError(f"{name} field: range {span!r} runs backwards")
        else:
            start = _number(span, low, high, name)
            stop = high if slash else start
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """A parsed NCRONTAB expression; `matches` one second, `next_after` finds the next firing."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        """Parse six whitespace-separated fields or raise ScheduleError naming the field."""
        parts = expression.split()
        if len(parts) != 6:
            raise ScheduleError(f"expected 6 fields (second minute hour day month day-of-week), got {len(parts)}")
        sets = [_field(text, name, low, high) for text, (name, low, high) in zip(parts, _FIELDS)]
        weekdays = frozenset(day % 7 for day in sets[5])  # 7 is Sunday, as 0
        return cls(*sets[:5], weekdays, parts[3] != "*", parts[5] != "*")

    def _day_matches(self, moment: datetime) -> bool:
        in_month = moment.day in self.days
        in_week = (moment.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return in_month or in_week
        return in_month and in_week

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires at this second."""
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first whole second strictly after `moment` at which the schedule fires."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + _SEARCH_LIMIT
        while candidate < limit:
            if not (candidate.month in self.months and self._day_matches(candidate)):
                candidate = candidate.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif candidate.hour not in self.hours:
                candidate = candidate.replace(minute=0, second=0) + timedelta(hours=1)
            elif candidate.minute not in self.minutes:
                candidate = candidate.replace(second=0) + timedelta(minutes=1)
            elif candidate.second not in self.seconds:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ScheduleError("the schedule never fires (e.g. 31 February)")
