"""Thread-safe state of the ARM emulator: runs, fault queues, LROs, counters and request log."""

from __future__ import annotations

import copy
import threading
import uuid
from collections import Counter, deque
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from emulators.faults import Fault
from emulators.lro import LroPlan, Operation, RunKey
from emulators.specs import example_run

__all__ = ["ArmState", "ListCursor", "RegistryKey", "RunKey", "build_run", "list_order", "run_key", "utc_now"]

RUN_TYPE = "Microsoft.ContainerRegistry/registries/runs"
RegistryKey = tuple[str, str, str]
ListCursor = tuple[datetime, str]  # (createTime, runId) of the last run a page returned
_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


def list_order(run: dict[str, Any]) -> ListCursor:
    """Where a run sorts in Runs - List (newest first, then by run id): its createTime and runId."""
    properties = run.get("properties") or {}
    created = properties.get("createTime")
    try:
        moment = datetime.fromisoformat(created.replace("Z", "+00:00")) if isinstance(created, str) else _EPOCH
    except ValueError:
        moment = _EPOCH
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc), str(properties.get("runId", "")))


def utc_now() -> str:
    """Current UTC time, RFC 3339 with milliseconds and `Z`."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_key(subscription_id: str, resource_group: str, registry: str, run_id: str) -> RunKey:
    """Lookup key: ARM names are case-insensitive, the run id is exact."""
    return (subscription_id.lower(), resource_group.lower(), registry.lower(), run_id)


def build_run(subscription_id: str, resource_group: str, registry: str, run_id: str, *,
              example: str, is_archive_enabled: bool) -> dict[str, Any]:
    """A Run from an official example body, rewritten for these path values."""
    run = example_run(example)
    run["id"] = (
        f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry}/runs/{run_id}"
    )
    run["name"] = run_id
    run["type"] = RUN_TYPE
    properties = run["properties"]
    properties.update(runId=run_id, provisioningState="Succeeded", isArchiveEnabled=is_archive_enabled)
    for image in properties.get("outputImages", []):
        if image.get("registry") == "myregistry.azurecr.io":
            image["registry"] = f"{registry.lower()}.azurecr.io"
    return run


class ArmState:
    """Everything the ARM emulator remembers, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[RunKey, dict[str, Any]] = {}
        self.faults: dict[str, deque[Fault]] = {}
        self.plans: dict[str, LroPlan] = {}
        self.operations: dict[str, Operation] = {}
        self.active: dict[RunKey, str] = {}
        self.counters: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.log: list[dict[str, Any]] = []
        self.generation = 0  # bumped by clear(), so open connections are counted again afterwards
        # Per registry, in list order; dropped when runs are added (a PATCH never moves a run in the order).
        self._listing: dict[RegistryKey, list[tuple[ListCursor, RunKey]]] = {}

    def clear(self) -> None:
        """Forget runs, faults, LROs, counters and the log."""
        with self.lock:
            for container in (self.runs, self.faults, self.plans, self.operations, self.active,
                              self.counters, self.statuses, self.log):
                container.clear()
            self._listing.clear()
            self.generation += 1

    def add_run(self, subscription_id: str, resource_group: str, registry: str, run_id: str, *,
                example: str = "RunsUpdate", is_archive_enabled: bool = False) -> dict[str, Any]:
        """Create or replace a run; returns a copy."""
        run = build_run(subscription_id, resource_group, registry, run_id,
                        example=example, is_archive_enabled=is_archive_enabled)
        key = run_key(subscription_id, resource_group, registry, run_id)
        with self.lock:
            self.runs[key] = run
            self.active.pop(key, None)
            self._listing.pop(key[:3], None)
            return copy.deepcopy(run)

    def add_bodies(self, runs: Iterable[dict[str, Any]]) -> int:
        """Store complete Run bodies (keyed by their `id`); returns how many."""
        added = 0
        with self.lock:
            for run in runs:
                parts = run["id"].split("/")
                key = run_key(parts[2], parts[4], parts[8], parts[10])
                self.runs[key] = copy.deepcopy(run)
                self.active.pop(key, None)
                self._listing.pop(key[:3], None)
                added += 1
        return added

    def list_runs(self, registry: RegistryKey, predicate: Callable[[dict[str, Any]], bool],
                  after: ListCursor | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to `limit` matching runs of a registry after the cursor, in list order; and whether more match."""
        registry = (registry[0].lower(), registry[1].lower(), registry[2].lower())
        page: list[dict[str, Any]] = []
        with self.lock:
            listing = self._listing.get(registry)
            if listing is None:
                listing = sorted(((list_order(run), key) for key, run in self.runs.items() if key[:3] == registry),
                                 reverse=True)
                self._listing[registry] = listing
            for order, key in listing:
                if after is not None and order >= after:
                    continue
                run = self.runs[key]
                if predicate(run):
                    if len(page) == limit:
                        return page, True
                    page.append(copy.deepcopy(run))
        return page, False

    def get_run(self, key: RunKey) -> dict[str, Any] | None:
        """Deep copy of a run, or None."""
        with self.lock:
            run = self.runs.get(key)
            return copy.deepcopy(run) if run is not None else None

    def script(self, run_id: str, faults: Iterable[Fault]) -> None:
        """Append faults to a run id's queue."""
        with self.lock:
            self.faults.setdefault(run_id, deque()).extend(faults)

    def pop_fault(self, run_id: str) -> Fault | None:
        """Take the next scripted fault of a run id, if any."""
        with self.lock:
            queue = self.faults.get(run_id)
            if not queue:
                return None
            self.counters["faults"] += 1
            return queue.popleft()

    def set_lro(self, run_id: str, plan: LroPlan) -> None:
        """Make the next PATCH of this run id a 201 following `plan`."""
        with self.lock:
            self.plans[run_id] = plan

    def patch(self, key: RunKey, is_archive_enabled: bool) -> tuple[dict[str, Any], Operation | None]:
        """Apply an update; returns the Run copy and, when an LRO plan was pending, its operation."""
        with self.lock:
            run = self.runs[key]
            properties = run["properties"]
            previous = bool(properties.get("isArchiveEnabled", False))
            self._supersede(key)
            properties["isArchiveEnabled"] = is_archive_enabled
            properties["lastUpdatedTime"] = utc_now()
            plan = self.plans.pop(key[3], None)
            if plan is None:
                properties["provisioningState"] = "Succeeded"
                return copy.deepcopy(run), None
            operation = Operation(uuid.uuid4().hex, key, plan, utc_now(), previous)
            self.operations[operation.op_id] = operation
            self.active[key] = operation.op_id
            properties["provisioningState"] = "Updating"
            return copy.deepcopy(run), operation

    def read_run(self, key: RunKey) -> dict[str, Any]:
        """A GET of the run: counts as a poll of its active operation; returns a copy."""
        with self.lock:
            op_id = self.active.get(key)
            if op_id is not None:
                self._advance(self.operations[op_id])
            return copy.deepcopy(self.runs[key])

    def poll_operation(self, op_id: str) -> Operation | None:
        """A poll of an operation URL; returns a snapshot of the operation (None if unknown)."""
        with self.lock:
            operation = self.operations.get(op_id)
            if operation is None:
                return None
            self._advance(operation)
            return copy.deepcopy(operation)

    def _advance(self, operation: Operation) -> None:
        """Count a poll and finish the operation when its turn has come."""
        if not operation.poll():
            return
        operation.status, operation.end_time = operation.plan.final, utc_now()
        run = self.runs.get(operation.key)
        if run is not None:
            properties = run["properties"]
            properties["provisioningState"] = operation.plan.final
            if operation.plan.final != "Succeeded":
                properties["isArchiveEnabled"] = operation.previous_archive  # the update did not happen
        self.active.pop(operation.key, None)

    def _supersede(self, key: RunKey) -> None:
        """A new PATCH replaces an operation still in progress, which ends Canceled."""
        op_id = self.active.pop(key, None)
        if op_id is not None:
            operation = self.operations[op_id]
            operation.status, operation.end_time = "Canceled", utc_now()

    def count(self, *names: str) -> None:
        """Increment named counters."""
        with self.lock:
            self.counters.update(names)

    def count_connection(self, counted_generation: int) -> int:
        """Count a connection's first ARM request since the last clear(); returns the generation."""
        with self.lock:
            if counted_generation != self.generation:
                self.counters["connections"] += 1
            return self.generation

    def count_status(self, status: str) -> None:
        """Increment the counter of one response status (or "reset")."""
        with self.lock:
            self.statuses[status] += 1

    def record(self, entry: dict[str, Any]) -> None:
        """Append a request to the log."""
        with self.lock:
            self.log.append(entry)

    def snapshot(self) -> dict[str, Any]:
        """Counter snapshot."""
        with self.lock:
            names = ("connections", "requests", "patches", "gets", "polls", "lists", "faults", "throttled")
            stats: dict[str, Any] = {name: self.counters[name] for name in names}
            stats["status"] = dict(sorted(self.statuses.items()))
            return stats
