"""ARM/ACR emulator for Runs - Get, Update and List (api-version 2019-04-01), with faults, LROs and throttling.

Run `python -m emulators.arm --port N [--latency S] [--auto-create] [--throttle] [--seed-registry S/G/R=N]`
to serve it from another process; the first stdout line is its URL. Drive it with `ArmEmulatorClient`.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import uuid
from datetime import datetime
from typing import Any, Callable, Sequence

from emulators.arm_client import ArmEmulatorClient
from emulators.arm_control import handle_control
from emulators.arm_list import DEFAULT_PAGE_SIZE, list_page
from emulators.arm_routes import (
    API_VERSION,
    OperationRoute,
    RunRoute,
    RunsRoute,
    check_api_version,
    check_auth,
    check_run_route,
    match_route,
    parse_update_body,
)
from emulators.errors import ArmError
from emulators.faults import Fault
from emulators.lro import LroPlan, Operation
from emulators.seed import seeded_runs
from emulators.server import Exchange, LoopbackServer
from emulators.state import ArmState, run_key
from emulators.throttle import BucketSpec, Throttle, ThrottleConfig, operation_of, principal_of

__all__ = ["ArmEmulator", "ArmEmulatorClient", "BucketSpec", "Fault", "SEED_RUN", "ThrottleConfig", "main"]

SEED_RUN = (
    "4385cf00-2d3a-425a-832f-f4285b1c9dce",
    "myResourceGroup",
    "myRegistry",
    "0accec26-d6de-4757-8e74-d080f38eaaab",
)
LOCATION = "eastus"

CONTROL_PREFIX = "_emulator"
_SECRET_HEADERS = frozenset({"authorization", "x-identity-header"})


def list_fault_key(registry: str) -> str:
    """Fault-queue key of a registry's Runs - List requests (run ids never contain ':')."""
    return f"list:{registry.lower()}"


class _ArmExchange(Exchange):
    """Adds ARM's tracing headers to every reply; one instance serves one keep-alive connection."""

    counted_generation = -1  # state generation in which this connection was last counted
    ratelimit_headers: dict[str, str] = {}  # this request's x-ms-ratelimit-* headers, set per request

    def default_headers(self) -> dict[str, str]:
        """x-ms-request-id, x-ms-correlation-request-id, the echoed x-ms-client-request-id and the rate limits."""
        headers = super().default_headers()
        headers.update(self.ratelimit_headers)
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
    """Loopback ARM endpoint serving Runs - Get/Update/List from example-based and seeded runs."""

    handler_class = _ArmExchange

    def __init__(
        self,
        *,
        token_validator: Callable[[str], bool] | None = None,
        latency: float = 0.0,
        auto_create: bool = False,
        seed: bool = True,
        throttle: ThrottleConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = DEFAULT_PAGE_SIZE,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.token_validator = token_validator
        self.latency = latency
        self.sleep = sleep
        """How the global latency is waited (a test may record it)."""
        self.auto_create = auto_create
        self.seed = seed
        self.page_size = DEFAULT_PAGE_SIZE
        self.set_page_size(page_size)  # validates
        self.next_link_origin: str | None = None
        self._throttle = Throttle(throttle, clock=clock)
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

    def script_list(self, registry: str, *faults: Fault) -> None:
        """Queue faults; each Runs - List request of that registry (any page) pops one first."""
        self._state.script(list_fault_key(registry), faults)

    def set_lro(self, run_id: str, *, polls: int = 2, final: str = "Succeeded", via: str = "async",
                retry_after: int | None = None, poll_host: str | None = None) -> None:
        """Answer the next PATCH of this run 201, finishing as `final` after `polls` polls (-1: never)."""
        plan = LroPlan(polls=polls, final=final, via=via, retry_after=retry_after, poll_host=poll_host)
        self._state.set_lro(run_id, plan)

    def set_latency(self, seconds: float) -> None:
        """Delay every ARM answer (not control-API answers) by `seconds`."""
        self.latency = float(seconds)

    def seed_registry(self, subscription_id: str, resource_group: str, registry: str, count: int, *,
                      seed: int = 0, now: datetime | None = None, archived_share: float = 0.1) -> list[dict[str, Any]]:
        """Add `count` realistic runs to a registry, deterministic from (seed, now); returns copies."""
        runs = seeded_runs(subscription_id, resource_group, registry, count, seed=seed, now=now,
                           archived_share=archived_share)
        self._state.add_bodies(runs)
        return runs

    def set_page_size(self, size: int) -> None:
        """Most runs per Runs - List page (`$top` can ask for fewer)."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError("page size must be an integer >= 1")
        self.page_size = size

    def set_next_link_origin(self, origin: str | None) -> None:
        """Put `nextLink`s on another origin (e.g. "http://evil.example:8443"); None: this emulator's own."""
        self.next_link_origin = origin or None

    def set_throttling(self, enabled: bool = True, *, writes: tuple[float, float] | None = None,
                       reads: tuple[float, float] | None = None, global_factor: float | None = None) -> ThrottleConfig:
        """Switch ARM throttling; `writes`/`reads` are (bucket size, refill a second). Buckets start full."""
        current = self._throttle.config
        config = ThrottleConfig(
            enabled=enabled,
            writes=BucketSpec(*writes) if writes is not None else current.writes,
            reads=BucketSpec(*reads) if reads is not None else current.reads,
            global_factor=current.global_factor if global_factor is None else global_factor,
        )
        self._throttle.configure(config)
        return config

    @property
    def throttling(self) -> ThrottleConfig:
        """The throttling settings in force."""
        return self._throttle.config

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
        self._throttle.reset()
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
        exchange.ratelimit_headers = {}
        if self.latency > 0:
            self.sleep(self.latency)
        try:
            self._charge(exchange)
            self._route(exchange)
        except ArmError as error:
            exchange.reply(error.status, error.body, error.headers)

    def _charge(self, exchange: _ArmExchange) -> None:
        """Take a token from the caller's bucket (when throttling is on); 429 when it is empty."""
        subscription = exchange.segments[1] if exchange.segments[:1] == ["subscriptions"] and len(exchange.segments) > 1 else ""
        decision = self._throttle.charge(subscription, principal_of(exchange.headers.get("Authorization")),
                                         operation_of(exchange.method))
        if decision is None:
            return
        headers = decision.headers
        if decision.allowed:
            exchange.ratelimit_headers = headers
            return
        retry_after = headers.pop("Retry-After")
        exchange.ratelimit_headers = headers
        self._state.count("throttled")
        kind = "Write" if decision.operation == "writes" else "Read"
        message = (
            f"The request is being throttled as the limit has been reached for operation type - {kind}_Subscription. "
            "For more information, see - https://aka.ms/srpthrottlinglimits"
        )
        raise ArmError(429, "TooManyRequests", message, {"Retry-After": retry_after})

    def _route(self, exchange: Exchange) -> None:
        """Dispatch to the run or operation handler."""
        route = match_route(exchange.segments)
        if isinstance(route, RunRoute):
            self._run_request(exchange, route)
        elif isinstance(route, RunsRoute):
            self._list_request(exchange, route)
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

    def _list_request(self, exchange: Exchange, route: RunsRoute) -> None:
        """Runs - List: one page of the registry's runs that pass `$filter`."""
        if exchange.method != "GET":
            message = f"The HTTP method '{exchange.method}' is not supported for the runs collection."
            raise ArmError(405, "MethodNotAllowed", message, {"Allow": "GET"})
        self._state.count("lists")
        fault = self._state.pop_fault(list_fault_key(route.registry))
        if fault is not None and fault.answer(exchange):
            return
        check_auth(exchange.headers, self.token_validator)
        check_api_version(exchange.query_value("api-version"))
        check_run_route(route)
        origin = self.next_link_origin or self.url
        exchange.reply(200, list_page(self._state, route, exchange.query, page_size=self.page_size, origin=origin))

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


def _registry_seed(value: str) -> tuple[str, str, str, int]:
    """`SUBSCRIPTION/GROUP/REGISTRY=COUNT` of --seed-registry."""
    path, sep, count = value.rpartition("=")
    parts = path.split("/")
    if not sep or len(parts) != 3 or not all(parts) or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected SUBSCRIPTION/GROUP/REGISTRY=COUNT, not {value!r}")
    return parts[0], parts[1], parts[2], int(count)


def _bucket(value: str) -> tuple[float, float]:
    """`SIZE/REFILL` of --write-bucket / --read-bucket."""
    size, sep, refill = value.partition("/")
    try:
        spec = BucketSpec(float(size), float(refill)) if sep else None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if spec is None:
        raise argparse.ArgumentTypeError(f"expected SIZE/REFILL_PER_SECOND, not {value!r}")
    return spec.size, spec.refill


def main(argv: Sequence[str] | None = None) -> int:
    """Serve an ArmEmulator until SIGTERM/SIGINT; prints its URL first."""
    parser = argparse.ArgumentParser(prog="python -m emulators.arm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every ARM answer")
    parser.add_argument("--auto-create", action="store_true", help="create unknown runs on first GET/PATCH")
    parser.add_argument("--no-seed", action="store_true", help="do not add the official example run")
    parser.add_argument("--seed-registry", type=_registry_seed, action="append", default=[], metavar="S/G/R=N",
                        help="add N seeded runs to a registry (repeatable)")
    parser.add_argument("--random-seed", type=int, default=0, help="seed of --seed-registry's runs")
    parser.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="most runs per Runs - List page")
    parser.add_argument("--throttle", action="store_true", help="throttle requests as ARM does (off by default)")
    parser.add_argument("--write-bucket", type=_bucket, default=None, metavar="SIZE/REFILL",
                        help="per-principal write bucket (default 200/10)")
    parser.add_argument("--read-bucket", type=_bucket, default=None, metavar="SIZE/REFILL",
                        help="per-principal read bucket (default 250/25)")
    parser.add_argument("--global-factor", type=float, default=None, help="global bucket = this times (default 15)")
    args = parser.parse_args(argv)
    emulator = ArmEmulator(latency=args.latency, auto_create=args.auto_create, seed=not args.no_seed,
                           page_size=args.page_size, host=args.host, port=args.port)
    emulator.set_throttling(args.throttle, writes=args.write_bucket, reads=args.read_bucket,
                            global_factor=args.global_factor)
    for subscription_id, resource_group, registry, count in args.seed_registry:
        emulator.seed_registry(subscription_id, resource_group, registry, count, seed=args.random_seed)
    return emulator.serve_until_signalled()


if __name__ == "__main__":
    sys.exit(main())
