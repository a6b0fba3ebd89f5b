"""The parts of host.json the stand-in honours: the HTTP route prefix and the Service Bus trigger options."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HostOptions", "parse_timespan"]

_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?")


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan `[d.]hh:mm:ss[.fff]`, as host.json writes durations."""
    found = _TIMESPAN.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a TimeSpan (d.hh:mm:ss): {text!r}")
    days, hours, minutes, seconds, fraction = found.groups()
    whole = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return whole + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class HostOptions:
    """Route prefix and `extensions.serviceBus` options, with the Functions defaults where host.json is silent."""

    route_prefix: str = "api"
    max_concurrent_calls: int = 16
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: float = 300.0
    prefetch_count: int = 0

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> HostOptions:
        """Options from a parsed host.json document."""
        extensions = document.get("extensions") or {}
        http = extensions.get("http") or {}
        servicebus = extensions.get("serviceBus") or {}
        renewal = servicebus.get("maxAutoLockRenewalDuration")
        return cls(
            route_prefix=str(http.get("routePrefix", cls.route_prefix)).strip("/"),
            max_concurrent_calls=int(servicebus.get("maxConcurrentCalls", cls.max_concurrent_calls)),
            auto_complete_messages=bool(servicebus.get("autoCompleteMessages", cls.auto_complete_messages)),
            max_auto_lock_renewal_duration=parse_timespan(renewal) if renewal else cls.max_auto_lock_renewal_duration,
            prefetch_count=int(servicebus.get("prefetchCount", cls.prefetch_count)),
        )

    @classmethod
    def load(cls, path: str | Path) -> HostOptions:
        """Options from a host.json file."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
