"""Retry policy of ARM requests (contract §3): bounded in attempts and in total waiting time."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

__all__ = ["RETRYABLE_STATUSES", "RetryBudget", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# One generator for every budget: seeding a new random.Random reads os.urandom (~8 µs an event), and
# its random() is atomic under the GIL, so invocations on other threads may share it.
_JITTER = random.Random()


@dataclass(slots=True)
class RetryBudget:
    """The waiting one event may do between retries, shared by its PATCH and its polls."""

    max_attempts: int
    max_wait_seconds: float
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    waited: float = 0.0
    jitter: random.Random = _JITTER

    @property
    def remaining(self) -> float:
        """Seconds of waiting left to this event."""
        return max(self.max_wait_seconds - self.waited, 0.0)

    def next_wait(self, attempts: int, retry_after: float | None) -> float | None:
        """Seconds to wait before another try after `attempts` tries, or None when retrying is over.

        A Retry-After longer than the budget left ends the retries at once (the caller reports a
        transient failure), rather than sleeping past ARM_RETRY_MAX_SECONDS.
        """
        if attempts >= self.max_attempts:
            return None
        if retry_after is not None:
            wait = retry_after
            if wait > self.remaining:
                return None
        else:
            if self.remaining <= 0:
                return None
            # Exponential backoff with "equal jitter": between half and all of the exponential step.
            step = min(self.cap_seconds, self.base_seconds * 2 ** (attempts - 1))
            wait = min(step * (0.5 + self.jitter.random() / 2), self.remaining)
        self.waited += wait
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header, in delta-seconds or HTTP-date form (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
    return max((when - current).total_seconds(), 0.0)
