"""Control API (`/_emulator/...`) of the ARM emulator, for driving it from another process.

| route | body | answer |
|---|---|---|
| `POST /_emulator/runs` | {subscriptionId, resourceGroupName, registryName, runId, example?, isArchiveEnabled?} | 201 Run |
| `GET /_emulator/runs/{s}/{g}/{r}/{id}` | | 200 Run, 404 |
| `POST /_emulator/script` | {runId or registryName (its Runs - List), faults: [Fault.to_dict()]} | 204 |
| `POST /_emulator/seed` | {subscriptionId, resourceGroupName, registryName, count, seed?, now?, archivedShare?} | 200 {added} |
| `POST /_emulator/paging` | {pageSize?, nextLinkOrigin? (null: own origin)} | 204 |
| `POST /_emulator/throttling` | {enabled, writes?: {size, refill}, reads?: {size, refill}, globalFactor?} | 200 settings |
| `GET /_emulator/throttling` | | 200 settings |
| `POST /_emulator/lro` | {runId, polls?, final?, via?, retryAfter?, pollHost?} | 204 |
| `POST /_emulator/latency` | {seconds} | 204 |
| `GET /_emulator/stats` | | 200 stats |
| `GET /_emulator/log` | | 200 {"requests": [...]} |
| `POST /_emulator/reset` | | 204 |
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from emulators.errors import arm_error_body
from emulators.faults import Fault
from emulators.server import Exchange

if TYPE_CHECKING:
    from emulators.arm import ArmEmulator

__all__ = ["handle_control"]


class _BadControlRequest(ValueError):
    """A malformed control request."""


def _json_object(exchange: Exchange) -> dict[str, Any]:
    """The request body as a JSON object."""
    try:
        document = json.loads(exchange.body or b"{}")
    except ValueError as exc:
        raise _BadControlRequest(f"body is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _BadControlRequest("body must be a JSON object")
    return document


def _text(document: dict[str, Any], name: str) -> str:
    """A required string field."""
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise _BadControlRequest(f"'{name}' must be a non-empty string")
    return value


def _add_run(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    names = [_text(document, name) for name in ("subscriptionId", "resourceGroupName", "registryName", "runId")]
    run = emulator.add_run(*names, example=document.get("example") or "RunsUpdate",
                           is_archive_enabled=bool(document.get("isArchiveEnabled", False)))
    exchange.reply(201, run)


def _get_run(emulator: ArmEmulator, exchange: Exchange) -> None:
    if len(exchange.segments) != 6:
        raise _BadControlRequest("use GET /_emulator/runs/{subscriptionId}/{resourceGroup}/{registry}/{runId}")
    run = emulator.get_run(*exchange.segments[2:6])
    if run is None:
        exchange.reply(404, arm_error_body("ResourceNotFound", "no such run"))
    else:
        exchange.reply(200, run)


def _script(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    faults = document.get("faults")
    if not isinstance(faults, list) or not all(isinstance(item, dict) for item in faults):
        raise _BadControlRequest("'faults' must be a list of fault objects")
    parsed = [Fault.from_dict(item) for item in faults]
    if "registryName" in document and "runId" not in document:
        emulator.script_list(_text(document, "registryName"), *parsed)
    else:
        emulator.script(_text(document, "runId"), *parsed)
    exchange.reply(204)


def _number(document: dict[str, Any], name: str, default: float | None = None) -> float | None:
    """An optional number field."""
    value = document.get(name, default)
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise _BadControlRequest(f"'{name}' must be a number")
    return value


def _seed(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    names = [_text(document, name) for name in ("subscriptionId", "resourceGroupName", "registryName")]
    count, seed = document.get("count"), document.get("seed", 0)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 1_000_000:
        raise _BadControlRequest("'count' must be an integer from 0 to 1000000")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _BadControlRequest("'seed' must be an integer")
    now = datetime.fromisoformat(_text(document, "now").replace("Z", "+00:00")) if document.get("now") else None
    share = _number(document, "archivedShare", 0.1)
    runs = emulator.seed_registry(*names, count, seed=seed, now=now, archived_share=float(share or 0.0))
    exchange.reply(200, {"added": len(runs)})


def _paging(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    if "pageSize" in document:
        emulator.set_page_size(document["pageSize"])
    if "nextLinkOrigin" in document:
        origin = document["nextLinkOrigin"]
        if origin is not None and not isinstance(origin, str):
            raise _BadControlRequest("'nextLinkOrigin' must be a string or null")
        emulator.set_next_link_origin(origin)
    exchange.reply(204)


def _bucket(document: dict[str, Any], name: str) -> tuple[float, float] | None:
    """An optional {size, refill} field."""
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _BadControlRequest(f"'{name}' must be an object {{size, refill}}")
    size, refill = _number(value, "size"), _number(value, "refill")
    if size is None or refill is None:
        raise _BadControlRequest(f"'{name}' needs numbers 'size' and 'refill'")
    return size, refill


def _set_throttling(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    enabled = document.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _BadControlRequest("'enabled' must be a boolean")
    config = emulator.set_throttling(enabled, writes=_bucket(document, "writes"), reads=_bucket(document, "reads"),
                                     global_factor=_number(document, "globalFactor"))
    exchange.reply(200, config.to_dict())


def _get_throttling(emulator: ArmEmulator, exchange: Exchange) -> None:
    exchange.reply(200, emulator.throttling.to_dict())


def _lro(emulator: ArmEmulator, exchange: Exchange) -> None:
    document = _json_object(exchange)
    retry_after = document.get("retryAfter")
    emulator.set_lro(
        _text(document, "runId"),
        polls=int(document.get("polls", 2)),
        final=str(document.get("final", "Succeeded")),
        via=str(document.get("via", "async")),
        retry_after=None if retry_after is None else int(retry_after),
        poll_host=document.get("pollHost") or None,
    )
    exchange.reply(204)


def _latency(emulator: ArmEmulator, exchange: Exchange) -> None:
    seconds = _json_object(exchange).get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise _BadControlRequest("'seconds' must be a non-negative number")
    emulator.set_latency(seconds)
    exchange.reply(204)


def _stats(emulator: ArmEmulator, exchange: Exchange) -> None:
    exchange.reply(200, emulator.stats())


def _log(emulator: ArmEmulator, exchange: Exchange) -> None:
    exchange.reply(200, {"requests": emulator.requests_log})


def _reset(emulator: ArmEmulator, exchange: Exchange) -> None:
    emulator.reset()
    exchange.reply(204)


_ROUTES: dict[tuple[str, str], Callable[[ArmEmulator, Exchange], None]] = {
    ("POST", "runs"): _add_run,
    ("GET", "runs"): _get_run,
    ("POST", "script"): _script,
    ("POST", "seed"): _seed,
    ("POST", "paging"): _paging,
    ("POST", "throttling"): _set_throttling,
    ("GET", "throttling"): _get_throttling,
    ("POST", "lro"): _lro,
    ("POST", "latency"): _latency,
    ("GET", "stats"): _stats,
    ("GET", "log"): _log,
    ("POST", "reset"): _reset,
}


def handle_control(emulator: ArmEmulator, exchange: Exchange) -> None:
    """Serve one `/_emulator/...` request."""
    name = exchange.segments[1] if len(exchange.segments) > 1 else ""
    handler = _ROUTES.get((exchange.method, name))
    if handler is None:
        exchange.reply(404, arm_error_body("NotFound", f"no control route {exchange.method} /_emulator/{name}"))
        return
    try:
        handler(emulator, exchange)
    except (ValueError, TypeError) as exc:  # includes _BadControlRequest and Fault/LroPlan validation
        exchange.reply(400, arm_error_body("InvalidControlRequest", str(exc)))
