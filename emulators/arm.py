"""ARM/ACR emulator for Runs - Get and Runs - Update (api-version 2019-04-01), with faults and LROs.

Run `python -m emulators.arm --port N [--latency S] [--auto-create]` to serve it from another
process; the first stdout line is its URL. Drive it with `ArmEmulatorClient`.
"""

from __future__ import annotations

import argparse
import copy
import json
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable, Sequence

from emulators.arm_client import ArmEmulatorClient
from emulators.arm_control import handle_control
from emulators.arm_routes import (
    API_VERSION,
    OperationRoute,
    RunRoute,
    check_api_version,
    check_auth,
    check_run_route,
    match_route,
    parse_update_body,
)
from emulators.errors import ArmError
from emulators.faults import Fault
from emulators.lro import LroPlan, Operation
from emulators.server import Exchange, LoopbackServer
from emulators.state import ArmState, run_key

__all__ = ["ArmEmulator", "ArmEmulatorClient", "Fault", "SEED_RUN", "main"]

SEED_RUN = (
    "4385cf00-2d3a-425a-832f-f4285b1c9dce",
    "myResourceGroup",
    "myRegistry",
    "0accec26-d6de-4757-8e74-d080f38eaaab",
)
LOCATION = "eastus"
CONTROL_PREFIX = "_emulator"
_SECRET_HEADERS = frozenset({"authorization", "x-identity-header"})


class _ArmExchange(Exchange):
    """Adds ARM's tracing headers to every reply; one instance serves one keep-alive connection."""

    counted_generation = -1  # state generation in which this connection was last counted

    def default_headers(self) -> dict[str, str]:
        """x-ms-request-id, x-ms-correlation-request-id and the echoed x-ms-client-request-id."""
        headers = super().default_headers()
        headers["x-ms-correlation-request-id"] = self.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4())
        client_request_id = self.headers.get("x-ms-client-request-id")
        if client_request_id:
            headers["x-ms-client-request-id"] = client_request_id
        return headers


def _redact(name: str, value: str) -> str:
    """Hide credentials in logged headers."""
    if name.lower() not in _SECRET_HEADERS:
        return value
    return "Bearer ***" if value.lower().startswith("bearer ") else "***"


def _log_entry(exchange: Exchange) -> dict[str, Any]:
    """A request-log record, with credentials redacted."""
    try:
        body: Any = json.loads(exchange.body) if exchange.body else None
    except ValueError:
        body = exchange.body.decode("utf-8", "replace")
    return {
        "method": exchange.method,
        "path": exchange.raw_path,
        "query": {name: values[0] for name, values in exchange.query.items()},
        "headers": {name: _redact(name, value) for name, value in exchange.headers.items()},
        "body": body,
    }


class ArmEmulator(LoopbackServer):
    """Loopback ARM endpoint serving Runs - Get/Update from example-based runs."""

    handler_class = _ArmExchange

    def __init__(
        self,
        *,
        token_validator: Callable[[str], bool] | None = None,
        latency: float = 0.0,
        auto_create: bool = False,
        seed: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token_validator = token_validator
        self.latency = latency
        self.auto_create = auto_create
        self.seed = seed
        self._state = ArmState()
        self._seed()

    # -- test-facing API -------------------------------------------------------------------------

    def add_run(self, subscription_id: str, resource_group: str, registry: str, run_id: str, *,
                example: str = "RunsUpdate", is_archive_enabled: bool = False) -> dict[str, Any]:
        """Create (or replace) a run from an official example body; returns a copy."""
        return self._state.add_run(subscription_id, resource_group, registry, run_id,
                                   example=example, is_archive_enabled=is_archive_enabled)

    def get_run(self, subscription_id: str, resource_group: str, registry: str, run_id: str) -> dict[str, Any] | None:
        """Deep copy of a run's current state, or None."""
        return self._state.get_run(run_key(subscription_id, resource_group, registry, run_id))

    def script(self, run_id: str, *faults: Fault) -> None:
        """Queue faults; each request for that run (PATCH, GET, operation poll) pops one first."""
        self._state.script(run_id, faults)

    def set_lro(self, run_id: str, *, polls: int = 2, final: str = "Succeeded", via: str = "async",
                retry_after: int | None = None, poll_host: str | None = None) -> None:
        """Answer the next PATCH of this run 201, finishing as `final` after `polls` polls (-1: never)."""
        plan = LroPlan(polls=polls, final=final, via=via, retry_after=retry_after, poll_host=poll_host)
        self._state.set_lro(run_id, plan)

    def set_latency(self, seconds: float) -> None:
        """Delay every ARM answer (not control-API answers) by `seconds`."""
        self.latency = float(seconds)

    def stats(self) -> dict[str, Any]:
        """Counters: connections (that carried ARM requests), requests, patches, gets, polls, faults, status."""
        return self._state.snapshot()

    @property
    def requests_log(self) -> list[dict[str, Any]]:
        """Copy of the logged ARM requests ({method, path, query, headers, body}; tokens redacted)."""
        with self._state.lock:
            return copy.deepcopy(self._state.log)

    def reset(self) -> None:
        """Clear runs, faults, LROs, counters (connections included) and the log; re-seed if seeding."""
        self._state.clear()
        self._httpd.reset_accepted()
        self._seed()

    def _seed(self) -> None:
        """Add the official example run when seeding is on."""
        if self.seed:
            self._state.add_run(*SEED_RUN, example="RunsUpdate", is_archive_enabled=False)

    # -- HTTP ------------------------------------------------------------------------------------

    def handle(self, exchange: Exchange) -> None:
        """Serve the control API or an ARM request."""
        if exchange.segments[:1] == [CONTROL_PREFIX]:
            handle_control(self, exchange)
            return
        assert isinstance(exchange, _ArmExchange)
        exchange.counted_generation = self._state.count_connection(exchange.counted_generation)
        self._state.count("requests")
        self._state.record(_log_entry(exchange))
        exchange.observer = self._state.count_status
        if self.latency > 0:
            time.sleep(self.latency)
        try:
            self._route(exchange)
        except ArmError as error:
            exchange.reply(error.status, error.body, error.headers)

    def _route(self, exchange: Exchange) -> None:
        """Dispatch to the run or operation handler."""
        route = match_route(exchange.segments)
        if isinstance(route, RunRoute):
            self._run_request(exchange, route)
        elif isinstance(route, OperationRoute):
            self._operation_request(exchange, route)
        else:
            message = f"The requested resource path '{exchange.raw_path}' was not found."
            raise ArmError(404, "NotFound", message)

    def _run_request(self, exchange: Exchange, route: RunRoute) -> None:
        """Runs - Get / Runs - Update."""
        if exchange.method not in ("GET", "PATCH"):
            message = f"The HTTP method '{exchange.method}' is not supported for runs."
            raise ArmError(405, "MethodNotAllowed", message, {"Allow": "GET, PATCH"})
        self._state.count("patches" if exchange.method == "PATCH" else "gets")
        fault = self._state.pop_fault(route.run_id)
        if fault is not None and fault.answer(exchange):
            return
        check_auth(exchange.headers, self.token_validator)
        check_api_version(exchange.query_value("api-version"))
        check_run_route(route)
        archive = parse_update_body(exchange.headers, exchange.body) if exchange.method == "PATCH" else None
        key = self._existing_key(route)
        if archive is None:
            exchange.reply(200, self._state.read_run(key))
            return
        run, operation = self._state.patch(key, archive)
        if operation is None:
            exchange.reply(200, run)
        else:
            exchange.reply(201, run, self._accepted_headers(route, operation))

    def _existing_key(self, route: RunRoute) -> tuple[str, str, str, str]:
        """Key of the addressed run, creating it when auto_create is on; else 404."""
        key = run_key(route.subscription_id, route.resource_group, route.registry, route.run_id)
        with self._state.lock:
            if key in self._state.runs:
                return key
            if self.auto_create:
                self._state.add_run(route.subscription_id, route.resource_group, route.registry, route.run_id)
                return key
        message = (
            f"The Resource 'Microsoft.ContainerRegistry/registries/{route.registry}/runs/{route.run_id}' "
            f"under resource group '{route.resource_group}' was not found."
        )
        raise ArmError(404, "ResourceNotFound", message)

    def _accepted_headers(self, route: RunRoute, operation: Operation) -> dict[str, str]:
        """Polling headers of a 201, per the plan's `via`."""
        plan = operation.plan
        headers = {"Retry-After": str(plan.retry_after)} if plan.retry_after is not None else {}
        kind = {"async": "operationStatuses", "location": "operationResults"}.get(plan.via)
        if kind is not None:
            base = (plan.poll_host or self.url).rstrip("/")
            url = (
                f"{base}/subscriptions/{route.subscription_id}/providers/Microsoft.ContainerRegistry"
                f"/locations/{LOCATION}/{kind}/{operation.op_id}?api-version={API_VERSION}"
            )
            headers["Azure-AsyncOperation" if plan.via == "async" else "Location"] = url
        return headers

    def _operation_request(self, exchange: Exchange, route: OperationRoute) -> None:
        """Polls of Azure-AsyncOperation / Location URLs."""
        self._state.count("polls")
        if exchange.method != "GET":
            raise ArmError(405, "MethodNotAllowed", "Operation URLs only support GET.", {"Allow": "GET"})
        with self._state.lock:
            known = self._state.operations.get(route.op_id)
        if known is None:
            raise ArmError(404, "NotFound", f"The operation '{route.op_id}' was not found.")
        fault = self._state.pop_fault(known.run_id)
        if fault is not None and fault.answer(exchange):
            return
        check_auth(exchange.headers, self.token_validator)
        operation = self._state.poll_operation(route.op_id)
        assert operation is not None  # operations are never deleted except by reset()
        retry = {"Retry-After": str(operation.plan.retry_after)} if operation.plan.retry_after is not None else {}
        if route.kind == "operationStatuses":
            exchange.reply(200, operation.status_body(route.subscription_id, route.location),
                           retry if not operation.done else {})
        elif not operation.done:
            exchange.reply(202, None, retry)
        else:
            exchange.reply(200, self._state.get_run(operation.key))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve an ArmEmulator until SIGTERM/SIGINT; prints its URL first."""
    parser = argparse.ArgumentParser(prog="python -m emulators.arm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every ARM answer")
    parser.add_argument("--auto-create", action="store_true", help="create unknown runs on first GET/PATCH")
    parser.add_argument("--no-seed", action="store_true", help="do not add the official example run")
    args = parser.parse_args(argv)
    emulator = ArmEmulator(latency=args.latency, auto_create=args.auto_create, seed=not args.no_seed,
                           host=args.host, port=args.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with emulator:
        print(emulator.url, flush=True)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
