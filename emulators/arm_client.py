"""Client of the ARM emulator's control API, mirroring ArmEmulator's test-facing methods."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from emulators.faults import Fault

__all__ = ["ArmEmulatorClient"]


class ArmEmulatorClient:
    """Drives an ArmEmulator running in another process (`python -m emulators.arm`)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
        """Send a control request; returns (status, parsed JSON body or None)."""
        data = json.dumps(payload).encode("utf-8") if payload is not None else None
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
            if status != 404:
                raise RuntimeError(f"control API {method} {path}: HTTP {status} {raw[:500]!r}") from None
        return status, json.loads(raw) if raw else None

    def add_run(self, subscription_id: str, resource_group: str, registry: str, run_id: str, *,
                example: str = "RunsUpdate", is_archive_enabled: bool = False) -> dict[str, Any]:
        """Create (or replace) a run from an official example body."""
        payload = {
            "subscriptionId": subscription_id,
            "resourceGroupName": resource_group,
            "registryName": registry,
            "runId": run_id,
            "example": example,
            "isArchiveEnabled": is_archive_enabled,
        }
        return self._call("POST", "runs", payload)[1]

    def get_run(self, subscription_id: str, resource_group: str, registry: str, run_id: str) -> dict[str, Any] | None:
        """Current state of a run, or None."""
        path = "/".join(quote(part, safe="") for part in (subscription_id, resource_group, registry, run_id))
        status, body = self._call("GET", f"runs/{path}")
        return body if status == 200 else None

    def script(self, run_id: str, *faults: Fault) -> None:
        """Queue faults for a run id."""
        self._call("POST", "script", {"runId": run_id, "faults": [fault.to_dict() for fault in faults]})

    def script_list(self, registry: str, *faults: Fault) -> None:
        """Queue faults for a registry's Runs - List requests."""
        self._call("POST", "script", {"registryName": registry, "faults": [fault.to_dict() for fault in faults]})

    def seed_registry(self, subscription_id: str, resource_group: str, registry: str, count: int, *,
                      seed: int = 0, now: str | None = None, archived_share: float = 0.1) -> int:
        """Add `count` seeded runs to a registry (`now`: RFC 3339 anchor); returns how many were added."""
        payload = {"subscriptionId": subscription_id, "resourceGroupName": resource_group, "registryName": registry,
                   "count": count, "seed": seed, "now": now, "archivedShare": archived_share}
        return self._call("POST", "seed", payload)[1]["added"]

    def set_paging(self, *, page_size: int | None = None, next_link_origin: str | None | bool = False) -> None:
        """Set the page size and/or the nextLink origin (None: the emulator's own; False: unchanged)."""
        payload: dict[str, Any] = {}
        if page_size is not None:
            payload["pageSize"] = page_size
        if next_link_origin is not False:
            payload["nextLinkOrigin"] = next_link_origin
        self._call("POST", "paging", payload)

    def set_throttling(self, enabled: bool = True, *, writes: tuple[float, float] | None = None,
                       reads: tuple[float, float] | None = None, global_factor: float | None = None) -> dict[str, Any]:
        """Switch ARM throttling (see ArmEmulator.set_throttling); returns the settings in force."""
        payload: dict[str, Any] = {"enabled": enabled, "globalFactor": global_factor}
        for name, bucket in (("writes", writes), ("reads", reads)):
            if bucket is not None:
                payload[name] = {"size": bucket[0], "refill": bucket[1]}
        return self._call("POST", "throttling", payload)[1]

    def throttling(self) -> dict[str, Any]:
        """The throttling settings in force."""
        return self._call("GET", "throttling")[1]

    def set_lro(self, run_id: str, *, polls: int = 2, final: str = "Succeeded", via: str = "async",
                retry_after: int | None = None, poll_host: str | None = None) -> None:
        """Answer the next PATCH of this run 201 (see ArmEmulator.set_lro)."""
        payload = {"runId": run_id, "polls": polls, "final": final, "via": via,
                   "retryAfter": retry_after, "pollHost": poll_host}
        self._call("POST", "lro", payload)

    def set_latency(self, seconds: float) -> None:
        """Delay every ARM answer by `seconds`."""
        self._call("POST", "latency", {"seconds": seconds})

    def stats(self) -> dict[str, Any]:
        """Counter snapshot."""
        return self._call("GET", "stats")[1]

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        """The emulator's request log (tokens redacted)."""
        return self._call("GET", "log")[1]["requests"]

    def reset(self) -> None:
        """Clear runs, faults, counters and log (the seed run comes back)."""
        self._call("POST", "reset")
