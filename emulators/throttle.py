"""ARM request throttling as "Understand how Azure Resource Manager throttles requests" describes it.

Token buckets per (subscription, principal, operation type): writes hold 200 and refill 10 a second, reads 250
and 25 a second; beside them one global bucket per (subscription, operation type) of 15 times both. A request
takes one token from its principal's bucket and from the global one; when either is empty it is refused
(429 `TooManyRequests`, `Retry-After` = whole seconds until both have a token). The clock is injected, so
tests pin the arithmetic without sleeping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

__all__ = ["BucketSpec", "Decision", "Operation", "Throttle", "ThrottleConfig", "operation_of", "principal_of"]

Operation = Literal["reads", "writes"]
_WRITE_METHODS = frozenset({"PUT", "PATCH", "POST", "DELETE"})


@dataclass(frozen=True)
class BucketSpec:
    """A bucket's capacity (tokens) and refill rate (tokens a second)."""

    size: float
    refill: float

    def __post_init__(self) -> None:
        if not (self.size >= 1 and math.isfinite(self.size)):
            raise ValueError("bucket size must be a finite number >= 1")
        if not (self.refill > 0 and math.isfinite(self.refill)):
            raise ValueError("refill rate must be a finite number > 0")

    def scaled(self, factor: float) -> BucketSpec:
        """The same bucket `factor` times larger and faster (the global limit)."""
        return BucketSpec(self.size * factor, self.refill * factor)


@dataclass(frozen=True)
class ThrottleConfig:
    """Throttling settings; ARM's published defaults, off unless `enabled`."""

    enabled: bool = False
    writes: BucketSpec = field(default_factory=lambda: BucketSpec(200, 10))
    reads: BucketSpec = field(default_factory=lambda: BucketSpec(250, 25))
    global_factor: float = 15

    def __post_init__(self) -> None:
        if not (self.global_factor >= 1 and math.isfinite(self.global_factor)):
            raise ValueError("global_factor must be a finite number >= 1")

    def spec(self, operation: Operation) -> BucketSpec:
        """The per-principal bucket of an operation type."""
        return self.writes if operation == "writes" else self.reads

    def to_dict(self) -> dict[str, object]:
        """Control-API form."""
        return {
            "enabled": self.enabled,
            "writes": {"size": self.writes.size, "refill": self.writes.refill},
            "reads": {"size": self.reads.size, "refill": self.reads.refill},
            "globalFactor": self.global_factor,
        }


@dataclass(frozen=True)
class Decision:
    """The verdict on one request and the counts its answer reports."""

    operation: Operation
    allowed: bool
    remaining: int
    global_remaining: int
    retry_after: int  # 0 when allowed

    @property
    def headers(self) -> dict[str, str]:
        """`x-ms-ratelimit-remaining-subscription-{op}` and its global form (plus `Retry-After` when refused)."""
        headers = {
            f"x-ms-ratelimit-remaining-subscription-{self.operation}": str(self.remaining),
            f"x-ms-ratelimit-remaining-subscription-global-{self.operation}": str(self.global_remaining),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class _Bucket:
    """A token bucket, full when created; not thread-safe (Throttle holds the lock)."""

    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.spec = spec
        self.tokens = spec.size
        self.updated = now

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last look (a clock that goes back earns nothing)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = self._earned(elapsed)
        self.updated = max(self.updated, now)

    def _earned(self, elapsed: float) -> float:
        """Tokens after `elapsed` more seconds; rounded to 1e-9 so that 0.6 + 0.4 makes a whole token."""
        return round(min(self.spec.size, self.tokens + elapsed * self.spec.refill), 9)

    def whole_seconds_to_token(self) -> int:
        """The fewest whole seconds after which this bucket holds a token, by the same rounding as `refill`."""
        seconds = max(0, math.ceil((1 - self.tokens) / self.spec.refill - 1e-12))
        while seconds > 0 and self._earned(seconds - 1) >= 1:
            seconds -= 1
        while self._earned(seconds) < 1:
            seconds += 1
        return seconds


class Throttle:
    """The buckets of one emulator, behind one lock."""

    def __init__(self, config: ThrottleConfig | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or ThrottleConfig()
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str, Operation], _Bucket] = {}

    def configure(self, config: ThrottleConfig) -> None:
        """Replace the settings; every bucket starts full again."""
        with self._lock:
            self.config = config
            self._buckets.clear()

    def reset(self) -> None:
        """Refill every bucket (forget them)."""
        with self._lock:
            self._buckets.clear()

    def charge(self, subscription_id: str, principal: str, operation: Operation) -> Decision | None:
        """Take a token for one request; None while throttling is off."""
        with self._lock:
            config = self.config
            if not config.enabled:
                return None
            now = self.clock()
            subscription = subscription_id.lower()
            own = self._bucket((subscription, principal, operation), config.spec(operation), now)
            whole = self._bucket((subscription, "", operation), config.spec(operation).scaled(config.global_factor), now)
            allowed = own.tokens >= 1 and whole.tokens >= 1
            if allowed:
                own.tokens = round(own.tokens - 1, 9)
                whole.tokens = round(whole.tokens - 1, 9)
            retry_after = 0 if allowed else max(1, own.whole_seconds_to_token(), whole.whole_seconds_to_token())
            return Decision(operation, allowed, math.floor(own.tokens), math.floor(whole.tokens), retry_after)

    def _bucket(self, key: tuple[str, str, Operation], spec: BucketSpec, now: float) -> _Bucket:
        """The bucket of a key, created full, refilled to `now`."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(spec, now)
        bucket.refill(now)
        return bucket


def operation_of(method: str) -> Operation:
    """Writes are PUT, PATCH, POST and DELETE; everything else (polls included) reads."""
    return "writes" if method.upper() in _WRITE_METHODS else "reads"


def principal_of(authorization: str | None) -> str:
    """The caller: the bearer JWT's `oid` (else `appid`, `azp`, `sub`), else a digest of the opaque token."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return "anonymous"
    claims = _jwt_claims(token)
    for name in ("oid", "appid", "azp", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    # An opaque token names no one: the same token is the same caller (never the token itself, kept in memory).
    return "token:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:16]


def _jwt_claims(token: str) -> dict[str, object]:
    """The payload of a JWT-shaped token (signature not checked: the emulator trusts its identity emulator)."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 16384:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}
