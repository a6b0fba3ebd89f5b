"""The timer trigger: fire on the binding's NCRONTAB schedule, or on demand, with a `func.TimerRequest`.

The input is built by azure-functions' own `TimerRequestConverter` from the JSON the host sends
(`Schedule`, `ScheduleStatus` with Last/Next/LastUpdated, `IsPastDue`). Runs of one function never overlap
(one lock, as the host's singleton lock for timers ensures); a schedule missed while one ran fires once, past due.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.functions.meta import Datum
from azure.functions.timer import TimerRequestConverter

from emulators.host.index import IndexedFunction, resolve_setting_references
from emulators.host.ncrontab import Schedule

__all__ = ["TimerRunner"]

log = logging.getLogger("emulators.host.timer")


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


class TimerRunner:
    """Drives one `timerTrigger` function: a scheduling thread plus `fire()` for tests."""

    def __init__(self, function: IndexedFunction, env: Mapping[str, str], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.function = function
        self.expression = resolve_setting_references(str(function.trigger["schedule"]), env)
        self.schedule = Schedule.parse(self.expression)
        self.run_on_startup = bool(function.trigger.get("runOnStartup", False))
        self.fired = 0
        self.failures = 0
        self._clock = clock
        self._last: datetime | None = None
        self._running = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"host-timer-{function.name}", daemon=True)

    def start(self) -> None:
        """Start firing on schedule."""
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; a running invocation finishes on its own thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _request_datum(self, now: datetime, past_due: bool) -> Datum:
        info: dict[str, Any] = {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {"Last": _iso(self._last), "Next": _iso(self.schedule.next_after(now)), "LastUpdated": _iso(now)},
            "IsPastDue": past_due,
        }
        return Datum(json.dumps(info), "json")

    def fire(self, *, past_due: bool = False) -> Any:
        """Invoke the function now (waits for a running invocation); its exceptions propagate to the caller."""
        with self._running:
            now = self._clock()
            request = TimerRequestConverter.decode(self._request_datum(now, past_due), trigger_metadata={})
            self._last = now
            self.fired += 1
            return self.function.call(**{self.function.trigger["name"]: request})

    def _fire_logged(self, past_due: bool) -> None:
        try:
            self.fire(past_due=past_due)
        except Exception as exc:  # noqa: BLE001 - the host logs a failed timer run and keeps the schedule
            self.failures += 1
            log.error("timer function %s raised %s", self.function.name, type(exc).__name__)

    def _run(self) -> None:
        if self.run_on_startup:
            self._fire_logged(False)
        due = self.schedule.next_after(self._clock())
        while not self._stop.wait(max(0.0, (due - self._clock()).total_seconds())):
            now = self._clock()
            if now < due:
                continue
            self._fire_logged(past_due=(now - due).total_seconds() > 1.0)
            due = self.schedule.next_after(max(due, self._clock()))
