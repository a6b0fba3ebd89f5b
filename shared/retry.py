"""Retry policy of ARM requests (contract §3): bounded in attempts and in total waiting time.

`RetryPolicy` is the frozen rule, built once from Settings; `RetryBudget` is the state of one event
(what it has waited so far), shared by its PATCH and its polls, as azure-core keeps its RetryPolicy
apart from each request's retry settings.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from shared.settings import Settings

__all__ = ["MAX_RETRY_AFTER_SECONDS", "MIN_POLL_SECONDS", "RETRYABLE_STATUSES", "RetryBudget", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECONDS = 86_400.0
"""A Retry-After beyond a day is not a time ARM means: it counts as absent, like garbage."""
MIN_POLL_SECONDS = 0.1
"""No poll follows another sooner than this, whatever ARM's Retry-After says."""
# One generator for every budget: seeding a new random.Random reads os.urandom (~8 µs an event), and
# its random() is atomic under the GIL, so invocations on other threads may share it.
_JITTER = random.Random()
_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_LONGEST_HEADER = 64  # an HTTP-date is 29 characters; anything far longer is not one


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many tries, how long waiting may last in all, and the backoff between tries."""

    max_attempts: int
    max_wait_seconds: float
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    poll_seconds: float = 0.25
    """First wait between polls of an accepted update when ARM sends no usable Retry-After."""
    jitter: random.Random = field(default=_JITTER, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, base_seconds: float = 0.5, poll_seconds: float = 0.25) -> RetryPolicy:
        """ARM_MAX_ATTEMPTS and ARM_RETRY_MAX_SECONDS as a policy."""
        return cls(
            settings.arm_max_attempts, settings.arm_retry_max_seconds, base_seconds=base_seconds, poll_seconds=poll_seconds
        )

    def budget(self) -> RetryBudget:
        """Fresh state for one event."""
        return RetryBudget(self)

    def poll_wait(self, polls: int, retry_after: float | None) -> float:
        """Seconds before poll number `polls`: a positive Retry-After, else a short growing default."""
        if retry_after is not None and retry_after > 0:
            return max(retry_after, MIN_POLL_SECONDS)
        return max(min(self.poll_seconds * 2 ** min(polls - 1, 3), 2.0), MIN_POLL_SECONDS)


@dataclass(slots=True)
class RetryBudget:
    """The waiting one event may still do between retries, shared by its PATCH and its polls."""

    policy: RetryPolicy
    waited: float = 0.0

    @property
    def max_attempts(self) -> int:
        """Tries of one request, the first included."""
        return self.policy.max_attempts

    @property
    def remaining(self) -> float:
        """Seconds of waiting left to this event."""
        return max(self.policy.max_wait_seconds - self.waited, 0.0)

    def next_wait(self, attempts: int, retry_after: float | None) -> float | None:
        """Seconds to wait before another try after `attempts` tries, or None when retrying is over.

        A Retry-After longer than the budget left ends the retries at once (the caller reports a
        transient failure), rather than sleeping past ARM_RETRY_MAX_SECONDS.
        """
        policy = self.policy
        if attempts >= policy.max_attempts:
            return None
        if retry_after is not None:
            wait = retry_after
            if wait > self.remaining:
                return None
        else:
            if self.remaining <= 0:
                return None
            # Exponential backoff with "equal jitter": between half and all of the exponential step.
            step = min(policy.cap_seconds, policy.base_seconds * 2 ** (attempts - 1))
            wait = min(step * (0.5 + policy.jitter.random() / 2), self.remaining)
        self.waited += wait
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by a Retry-After header (RFC 9110 §10.2.3), or None when absent or unusable.

    Unusable: not 1*DIGIT (a fraction is tolerated) nor an HTTP-date, negative, not finite, a date no
    calendar holds, or longer than MAX_RETRY_AFTER_SECONDS. A date already past means 0.
    """
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > _LONGEST_HEADER:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        return _usable(float(value))
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = datetime.fromtimestamp(time.time() if now is None else now, tz=timezone.utc)
        seconds = (when - current).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):  # email.utils raises all four on junk
        return None
    return _usable(max(seconds, 0.0))


def _usable(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and 0 <= seconds <= MAX_RETRY_AFTER_SECONDS else None
