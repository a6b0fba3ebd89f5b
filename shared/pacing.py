"""Pacing of ARM writes (contract §3): spend ARM's write bucket at its refill rate instead of emptying it.

ARM answers every write with `x-ms-ratelimit-remaining-subscription-writes`, the tokens left in the
bucket of this principal and subscription, shared by every process writing as that identity. While
that count is above ARM_WRITE_RESERVE, writes go at once. Below it, this process's writes (all threads
together) take turns on one next-slot clock, spaced at `1 / pace`:

    pace = rate × gain(level)        level = remaining − this process's writes still in flight
    gain(level) = 2 ** ((level − S) / (S / 2)),   S = reserve / 2, clamped to [1/8, 4]

`rate` is what this process learned the bucket can take: on every reading it is multiplied by
exp((level − S) / S × dt / INTEGRAL_SECONDS), so it grows while the level stays above the setpoint S
and shrinks while below; a 429 halves it (at most once a second). The gain acts at once on the level
(draining fast → slower at once), the rate corrects slowly what the gain leaves over. Every process on
one identity reads the same bucket through the header and scales its own rate by the same factor, so
together they converge on the refill rate without knowing how many they are or sharing any store.

A write that would have to wait longer than its event's retry budget has left does not wait: the
caller ends the attempt as the long-throttle path (§5) with that wait as `reschedule_after`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["ASSUMED_REFILL", "REMAINING_WRITES", "Pacer", "remaining_writes"]

REMAINING_WRITES = "x-ms-ratelimit-remaining-subscription-writes"
ASSUMED_REFILL = 10.0
"""Writes a second ARM refills a principal's bucket with (documented); the first rate when pacing starts."""
INTEGRAL_SECONDS = 2.0
"""How slowly the learned rate follows the level: e-fold in this many seconds at the bucket's edges."""
MIN_GAIN, MAX_GAIN = 1 / 8, 4.0
MIN_RATE, MAX_RATE = 0.05, 100_000.0
"""Bounds of the learned rate (writes a second): never stalled for good, never an overflow."""
HALVING_SECONDS = 1.0
"""A burst of 429s answers one overshoot: the rate is halved at most once in this time."""
_MAX_STEP_SECONDS = 1.0  # a reading after a long idle time says nothing about the pace in between
_DIGITS = re.compile(r"[0-9]{1,9}")


def remaining_writes(headers: Mapping[str, str]) -> int | None:
    """The remaining-writes count of an ARM answer, or None when absent or not a plain count (hostile input)."""
    value = headers.get(REMAINING_WRITES)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return int(value) if _DIGITS.fullmatch(value) else None


@dataclass(slots=True)
class _Lane:
    """The pacing state of one bucket (one subscription) in this process."""

    remaining: int | None = None
    read_at: float = 0.0
    in_flight: int = 0
    rate: float = ASSUMED_REFILL
    next_slot: float = 0.0
    halved_at: float = -math.inf


class Pacer:
    """One per process: spaces the writes of every thread once ARM's write bucket runs below the reserve."""

    def __init__(
        self,
        reserve: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        assumed_refill: float = ASSUMED_REFILL,
    ) -> None:
        self.reserve = reserve
        self._setpoint = reserve / 2
        self._clock = clock
        self._assumed_refill = assumed_refill
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}

    @property
    def enabled(self) -> bool:
        """ARM_WRITE_RESERVE 0 turns pacing off."""
        return self.reserve > 0

    def slot(self, key: str, budget_left: float) -> float:
        """Take the next write slot of `key`'s bucket and return the seconds to wait for it.

        A wait longer than `budget_left` is returned without taking the slot (the write is not sent);
        every slot taken must be followed by `answered`.
        """
        with self._lock:
            lane = self._lane(key)
            now = self._clock()
            wait = 0.0
            pace = self._pace(lane)
            if pace is not None:
                start = max(now, lane.next_slot)
                wait = start - now
                if wait > budget_left:
                    return wait
                lane.next_slot = start + 1 / pace
            lane.in_flight += 1
            return wait

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
            level = remaining - lane.in_flight
            if level < self.reserve:
                error = max(min((level - self._setpoint) / self._setpoint, 1.0), -1.0)
                lane.rate *= math.exp(error * step / INTEGRAL_SECONDS)
            if status == 429 and now - lane.halved_at >= HALVING_SECONDS:
                lane.rate, lane.halved_at = lane.rate / 2, now
            lane.rate = min(max(lane.rate, MIN_RATE), MAX_RATE)

    def pace(self, key: str) -> float | None:
        """Writes a second `key`'s writes are spaced at now, or None while they go unpaced."""
        with self._lock:
            return self._pace(self._lane(key))

    def _pace(self, lane: _Lane) -> float | None:
        if not self.enabled or lane.remaining is None:
            return None
        level = lane.remaining - lane.in_flight
        if level >= self.reserve:
            return None
        gain = 2 ** ((level - self._setpoint) / (self._setpoint / 2))
        return lane.rate * min(max(gain, MIN_GAIN), MAX_GAIN)

    def _lane(self, key: str) -> _Lane:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(rate=self._assumed_refill)
        return lane
