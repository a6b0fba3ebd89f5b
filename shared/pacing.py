"""Pacing of ARM writes (contract §3): spend ARM's write bucket at its refill rate instead of emptying it.

ARM answers every write with `x-ms-ratelimit-remaining-subscription-writes`, the tokens left in the
bucket of this principal and subscription, shared by every process writing as that identity. While
the count is at or above ARM_WRITE_RESERVE, writes go at once. Below it, this process's writes (all
threads together) take turns, one every `1 / pace` seconds:

    level = remaining − in_flight / share     the count once the writes already sent have landed
    pace  = rate × gain(level)                writes a second, this process
    gain  = 2 ** ((level − S) / (S / 2))      S = reserve / 2, the setpoint; at least 1/8

- `gain` answers the level at once: each S / 2 writes below the setpoint halve the pace.
- `rate` is what this process learned the bucket takes from it: every reading multiplies it by
  exp((level − S) / S × dt / INTEGRAL_SECONDS), so it grows while the level stays above S and shrinks
  below; a 429 halves it (at most once a second). It starts at ARM's documented 10 a second.
- `share` is this process's part of the bucket's fall (own answers / writes the count fell by), so
  the writes other processes have in flight count too, as many per share as this one's.

Every process on one identity reads the same bucket through the header and scales its own rate by the
same factor, so together they converge on the refill rate without knowing how many they are and
without a shared store. A waiting write looks at the pace again every RECHECK_SECONDS, and a write that
would wait longer than its event's retry budget has left does not wait (OverBudget): the caller ends
the attempt as the long-throttle path (§5).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["ASSUMED_REFILL", "REMAINING_WRITES", "OverBudget", "PaceView", "Pacer", "remaining_writes"]

REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"
ASSUMED_REFILL = 10.0
"""Writes a second ARM refills a principal's bucket with (documented); the first rate when pacing starts."""
INTEGRAL_SECONDS = 2.0
"""How slowly the learned rate follows the level: e-fold in this many seconds at the bucket's edges."""
MIN_GAIN = 1 / 8
"""Below the setpoint the gain halves every S / 2 writes; this far and no further (never a stall)."""
MIN_RATE, MAX_RATE = 0.05, 100_000.0
"""Bounds of the learned rate (writes a second): never stalled for good, never an overflow."""
HALVING_SECONDS = 1.0
"""A burst of 429s answers one overshoot: the rate is halved at most once in this time."""
SHARE_WINDOW = 8
"""The bucket must fall this many writes before its fall says how much of it is this process's."""
MIN_SHARE = 1 / 256
MAX_LANES = 256
"""Buckets (subscriptions) tracked at once; the longest known idle one is forgotten first."""
RECHECK_SECONDS = 0.05
"""A waiting write looks at the pace again this often: a reading that came meanwhile may let it go sooner."""
_MAX_STEP_SECONDS = 1.0  # a reading after a long idle time says nothing about the pace in between
_DIGITS = re.compile(r"[0-9]{1,9}")


def remaining_writes(headers: Mapping[str, str]) -> int | None:
    """The remaining-writes count of an ARM answer, or None when absent or not a plain count (hostile input)."""
    value = headers.get(REMAINING_WRITES)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return int(value) if _DIGITS.fullmatch(value) else None


@dataclass(frozen=True, slots=True)
class PaceView:
    """The pacing state of one bucket at one moment."""

    remaining: int | None
    """The count of the latest answer, None before any."""
    in_flight: int
    rate: float
    """The learned rate, writes a second."""
    share: float
    pace: float | None
    """Writes a second this process's writes are spaced at, None while unpaced."""


class OverBudget(Exception):
    """Pacing would hold a write longer than its event's retry budget has left."""

    def __init__(self, wait: float, waited: float) -> None:
        super().__init__(f"pacing would wait {wait:.2f} s more")
        self.wait = wait
        """Seconds still ahead of the write."""
        self.waited = waited
        """Seconds it already waited."""


@dataclass(slots=True)
class _Lane:
    """The pacing state of one bucket (one subscription) in this process."""

    remaining: int | None = None
    read_at: float = 0.0
    in_flight: int = 0
    rate: float = ASSUMED_REFILL
    last_sent: float = -math.inf
    halved_at: float = -math.inf
    share: float = 1.0
    """This process's part of the bucket's draining (1: alone), measured while it falls."""
    window_from: int | None = None
    window_answers: int = 0

    def level(self) -> float:
        """The count once every write in flight has landed: this process's, and as many per share of the others'."""
        assert self.remaining is not None
        return self.remaining - self.in_flight / self.share

    def measure_share(self, remaining: int) -> None:
        """Own answers against the bucket's fall: whatever else fell, other processes on the identity took."""
        self.window_answers += 1
        if self.window_from is None or remaining > self.window_from:
            self.window_from, self.window_answers = remaining, 0
        elif self.window_from - remaining >= SHARE_WINDOW:
            sample = self.window_answers / (self.window_from - remaining)
            self.share = min(max((self.share + sample) / 2, MIN_SHARE), 1.0)
            self.window_from, self.window_answers = remaining, 0


class Pacer:
    """One per process: spaces the writes of every thread once ARM's write bucket runs below the reserve."""

    def __init__(
        self,
        reserve: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        assumed_refill: float = ASSUMED_REFILL,
    ) -> None:
        self.reserve = reserve
        self._setpoint = reserve / 2
        self._clock = clock
        self._sleep = sleep
        self._assumed_refill = assumed_refill
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}

    @property
    def enabled(self) -> bool:
        """ARM_WRITE_RESERVE 0 turns pacing off."""
        return self.reserve > 0

    def turn(self, key: str, budget_left: float) -> float:
        """Wait for this write's turn on `key`'s bucket; return the seconds waited.

        The turn is judged afresh every RECHECK_SECONDS at most, so a thread never keeps a pace the bucket
        has since recovered from. Raises OverBudget, with the wait still ahead, when the waiting would
        pass `budget_left`; each `turn` that returns must be followed by `answered`.
        """
        waited = 0.0
        while True:
            with self._lock:
                lane = self._lane(key)
                now = self._clock()
                pace = self._pace(lane)
                due = now if pace is None else lane.last_sent + 1 / pace
                if due <= now:
                    # A thread that woke a little late keeps the schedule (no turn lost); after an idle
                    # time the schedule starts again from now (no burst of turns saved up).
                    lane.last_sent = due if pace is not None and due >= now - 1 / pace else now
                    lane.in_flight += 1
                    return waited
                wait = due - now
                if waited + wait > budget_left:
                    raise OverBudget(wait, waited)
            step = min(wait, RECHECK_SECONDS)
            self._sleep(step)
            waited += step

    def answered(self, key: str, status: int | None, headers: Mapping[str, str]) -> None:
        """Read a write's answer (None: no answer came) and adapt the pace to the count it reports."""
        with self._lock:
            lane = self._lane(key)
            lane.in_flight = max(lane.in_flight - 1, 0)
            remaining = remaining_writes(headers)  # an answer without the count (not ARM's throttling) says nothing
            if remaining is None or not self.enabled:
                return
            now = self._clock()
            step = min(max(now - lane.read_at, 0.0), _MAX_STEP_SECONDS) if lane.remaining is not None else 0.0
            lane.remaining, lane.read_at = remaining, now
            lane.measure_share(remaining)
            level = lane.level()
            if level < self.reserve:
                error = max(min((level - self._setpoint) / self._setpoint, 1.0), -1.0)
                lane.rate *= math.exp(error * step / INTEGRAL_SECONDS)
            if status == 429 and now - lane.halved_at >= HALVING_SECONDS:
                lane.rate, lane.halved_at = lane.rate / 2, now
            lane.rate = min(max(lane.rate, MIN_RATE), MAX_RATE)

    def view(self, key: str) -> PaceView:
        """What the pacing of `key`'s bucket stands at now (for logs, benchmarks and tests)."""
        with self._lock:
            lane = self._lane(key)
            return PaceView(lane.remaining, lane.in_flight, lane.rate, lane.share, self._pace(lane))

    def _pace(self, lane: _Lane) -> float | None:
        if not self.enabled or lane.remaining is None:
            return None
        level = lane.level()
        if level >= self.reserve:
            return None
        gain = 2 ** ((level - self._setpoint) / (self._setpoint / 2))
        return lane.rate * max(gain, MIN_GAIN)

    def _lane(self, key: str) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= MAX_LANES:  # subscriptions come from events: hostile input must not grow this
                idle = next((name for name, old in self._lanes.items() if old.in_flight == 0), None)
                self._lanes.pop(idle if idle is not None else next(iter(self._lanes)))
            lane = self._lanes[key] = _Lane(rate=self._assumed_refill)
        return lane

    def __len__(self) -> int:
        """Buckets tracked (at most MAX_LANES)."""
        with self._lock:
            return len(self._lanes)
