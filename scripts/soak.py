"""`make soak`: thousands of events through the queue function, under faults, with Service Bus redelivery.

    python -m scripts.soak --events 5000 --workers 16 --seed 1

The real `archive_queue` function (from `app.get_functions()`, real `azure.functions.ServiceBusMessage`s)
runs on a pool of worker threads, as the Functions host runs sync functions, against the loopback ARM
emulator (runs created on first use) and managed-identity endpoint, with outcomes in OUTCOME_FILE.
The events and their faults come from `scripts.soak_plan` (seeded). The harness plays Service Bus:
returning completes the message; raising abandons it, and it comes back later with `delivery_count + 1`,
until MAX_DELIVERY_COUNT deliveries, after which it is dead-lettered.

Each run's events go to one worker, in order (as a session-enabled queue keyed by run would deliver
them), so "the last event that succeeded for a run" is well defined; a redelivery goes to the back of
that worker's queue. Before a worker moves on, it waits until the emulator is no longer answering any
request for that run: a PATCH the app gave up on (read timeout) may still land, and must land first.

Afterwards every event must have ended exactly once, as succeeded, failed, rejected or dead-lettered
(with its `failed` outcome); `lost` counts those that did not, `duplicates` those with more than one
outcome, `wrong_ends` those that ended otherwise than their scenario says (`PlannedEvent.expected_end`:
an absorbed `arm-401-refresh` must succeed, not fail).
Each run's final `isArchiveEnabled` in the emulator must be the flag of the last event that
succeeded for it. `soak-report.json` holds the figures; the exit status is 0 only if all of that holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, IdentityEmulator
from emulators.arm_routes import OperationRoute, RunRoute, match_route
from emulators.server import Exchange
from scripts.soak_plan import ATTEMPTS, GROUP, REGISTRY, SUB, PlannedEvent, plan_events
from shared.errors import ArchiverError, PublishFailed
from shared.outcome import Outcome
from shared.publisher import FilePublisher, Publisher
from shared.app import build_app
from shared.runtime import IDENTITY_ENVIRONMENT
from shared.settings import SETTING_NAMES
from tests.leaks import LeakWatch, find_leaks, outcome_texts

__all__ = ["SoakConfig", "SoakReport", "main", "run_soak"]

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ("events", "succeeded", "failed", "rejected", "dead_lettered", "lost", "duplicates", "redeliveries")


@dataclass(frozen=True)
class SoakConfig:
    """How big, how concurrent and how faulty the soak is."""

    events: int = 5000
    workers: int = 16
    seed: int = 1
    runs: int | None = None
    """Distinct run ids; by default one per ten events, so each run gets several events."""
    fault_rate: float = 0.10
    invalid_rate: float = 0.02
    max_delivery_count: int = 5

    @property
    def run_count(self) -> int:
        """The number of distinct runs the events address."""
        return self.runs or max(self.events // 10, 1)

    def settings(self) -> dict[str, str]:
        """App settings: small budgets keep the soak fast; the behaviour is the production code's."""
        return {
            "ARCHIVE_QUEUE_NAME": "acr-archive-events",
            "ARM_MAX_ATTEMPTS": str(ATTEMPTS),
            "ARM_RETRY_MAX_SECONDS": "0.1",
            "ARM_TIMEOUT_SECONDS": "0.5",
            "LRO_TIMEOUT_SECONDS": "1",  # room for polls on a loaded 2-core machine; never-finishing ones cost 1 s
            "MAX_DELIVERY_COUNT": str(self.max_delivery_count),
        }


class Patcher(Protocol):
    """Where the soak puts its settings: os.environ, or a pytest monkeypatch."""

    def setenv(self, name: str, value: str) -> None: ...

    def delenv(self, name: str, raising: bool = True) -> None: ...

    def setattr(self, target: Any, name: str, value: Any) -> None: ...


class ProcessPatcher:
    """Changes the process for good (the CLI exits afterwards)."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value

    def delenv(self, name: str, raising: bool = True) -> None:
        os.environ.pop(name, None)

    def setattr(self, target: Any, name: str, value: Any) -> None:
        setattr(target, name, value)


class SoakArm(ArmEmulator):
    """The ARM emulator, also knowing which runs it is still answering a request for."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._busy: Counter[str | None] = Counter()
        self._idle = threading.Condition()

    def handle(self, exchange: Exchange) -> None:
        """Answer as ArmEmulator does, counting the request as in flight for its run meanwhile."""
        run_id = self._run_of(exchange)
        with self._idle:
            self._busy[run_id] += 1
        try:
            super().handle(exchange)
        finally:
            with self._idle:
                self._busy[run_id] -= 1
                self._idle.notify_all()

    def quiet(self, run_id: str, timeout: float = 10.0) -> bool:
        """Wait until no request for the run is being answered (a late PATCH has landed)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy[run_id] == 0, timeout)

    def leftovers(self, run_id: str) -> int:
        """Drop the faults and LRO plan still queued for the run; how many there were."""
        with self._state.lock:
            left = len(self._state.faults.pop(run_id, ()))
            return left + (self._state.plans.pop(run_id, None) is not None)

    def _run_of(self, exchange: Exchange) -> str | None:
        route = match_route(exchange.segments)
        if isinstance(route, RunRoute):
            return route.run_id
        if isinstance(route, OperationRoute):
            with self._state.lock:
                operation = self._state.operations.get(route.op_id)
            return operation.run_id if operation is not None else None
        return None


class SoakIdentity(IdentityEmulator):
    """The identity endpoint, able to drop an injected failure no request took."""

    def drop_failures(self) -> int:
        """Forget the injected failures still queued; how many there were."""
        with self._lock:
            left, self._failures = len(self._failures), []
            return left


class FlakyPublisher:
    """OUTCOME_FILE, failing to publish on the deliveries the plan says (as a Service Bus outage would)."""

    def __init__(self, inner: Publisher, failing: Mapping[str, int]) -> None:
        self._inner = inner
        self._failing = failing
        self._lock = threading.Lock()
        self.outcomes: dict[str, list[str]] = defaultdict(list)
        """Outcome kinds published per inbound message id, in order (the harness reads the last one)."""

    def publish(self, outcome: Outcome) -> None:
        """Fail as planned, else append the outcome to OUTCOME_FILE."""
        message_id, delivery = outcome.body["inboundMessageId"], outcome.body["deliveryCount"] or 1
        if delivery <= self._failing.get(message_id, 0):
            raise PublishFailed(f"could not publish outcome {outcome.message_id}: the topic is unavailable (soak)")
        self._inner.publish(outcome)
        with self._lock:
            self.outcomes[message_id].append(outcome.outcome)

    def close(self) -> None:
        """Close the file publisher."""
        self._inner.close()


@dataclass
class Settlement:
    """What the harness, playing Service Bus, saw of one event."""

    deliveries: int = 0
    completed_at: int | None = None
    dead_lettered: bool = False
    raised: list[str] = field(default_factory=list)


@dataclass
class SoakReport:
    """The figures of one soak."""

    events: int
    succeeded: int
    failed: int
    rejected: int
    dead_lettered: int
    lost: int
    duplicates: int
    redeliveries: int
    final_state_mismatches: int
    wrong_ends: int
    leaks: int
    unexpected_exceptions: int
    harness_leftovers: int
    deliveries: int
    runs: int
    workers: int
    seed: int
    seconds: float
    events_per_second: float
    raised: dict[str, int]
    scenarios: dict[str, dict[str, int]]
    arm: dict[str, Any]
    settings: dict[str, str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        """Every event accounted for exactly once, none lost or duplicated, every run in its expected state."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """soak-report.json: the issue's integer fields first."""
        data = asdict(self)
        return {**{name: data.pop(name) for name in COUNTS}, **data}


class _Harness:
    """Plays Service Bus for the queue function, one worker per partition of the runs."""

    def __init__(self, config: SoakConfig, events: list[PlannedEvent], queue: Callable[[ServiceBusMessage], Any],
                 arm: SoakArm, identity: SoakIdentity, publisher: FlakyPublisher) -> None:
        self.config = config
        self.events = events
        self.queue = queue
        self.arm = arm
        self.identity = identity
        self.publisher = publisher
        self.settlements = {event.message_id: Settlement() for event in events}
        self.successes: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        self.leftovers = 0
        self.leftover_details: list[str] = []
        self._lock = threading.Lock()
        self._identity_fault = threading.Lock()
        """Held by the delivery whose 401 refresh is scripted to meet an identity 500 (see `_deliver`)."""

    def run(self) -> None:
        """Deliver every event until it completes or is dead-lettered."""
        partitions: list[list[PlannedEvent]] = [[] for _ in range(self.config.workers)]
        for event in self.events:
            key = int(event.run_id.rsplit("-", 1)[1]) if event.run_id else event.index
            partitions[key % self.config.workers].append(event)
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="soak-worker") as pool:
            for finished in [pool.submit(self._work, partition) for partition in partitions]:
                finished.result()

    def _work(self, partition: list[PlannedEvent]) -> None:
        pending = deque((event, 1) for event in partition)
        while pending:
            event, delivery = pending.popleft()
            if self._deliver(event, delivery):
                continue
            if delivery < self.config.max_delivery_count:
                pending.append((event, delivery + 1))
            else:
                self.settlements[event.message_id].dead_lettered = True

    def _deliver(self, event: PlannedEvent, delivery: int) -> bool:
        """One delivery; True when the function returned (the message is completed).

        An identity failure is one process-wide queue that any worker's next token request takes. Two such
        deliveries at once stacked two 500s in front of one refresh: msal retries once, then caches the 500
        for 5 s, so every worker's refresh failed meanwhile and absorbed 401s ended otherwise. So one such
        delivery runs at a time, and a failure no request took is dropped before the next.
        """
        if event.scenario is None or not event.scenario.token or not event.faulted(delivery):
            return self._deliver_now(event, delivery)
        with self._identity_fault:
            try:
                return self._deliver_now(event, delivery)
            finally:
                self.identity.drop_failures()

    def _deliver_now(self, event: PlannedEvent, delivery: int) -> bool:
        self._arrange(event, delivery)
        settlement = self.settlements[event.message_id]
        settlement.deliveries = delivery
        message = ServiceBusMessage(
            body=event.body, message_id=event.message_id, delivery_count=delivery,
            application_properties={}, user_properties={},
        )
        try:
            self.queue(message)
        except Exception as error:  # noqa: BLE001 - the host abandons the message whatever was raised
            settlement.raised.append(error.code if isinstance(error, ArchiverError) else "unexpected:" + type(error).__name__)
            completed = False
        else:
            settlement.completed_at = delivery
            completed = True
        if event.run_id is not None:
            self.arm.quiet(event.run_id)
            left = self.arm.leftovers(event.run_id)
            published = self.publisher.outcomes.get(event.message_id) or [None]
            with self._lock:
                self.leftovers += left
                if left:
                    scenario = event.scenario.name if event.scenario else "no fault"
                    self.leftover_details.append(f"{event.message_id} ({scenario}, delivery {delivery}): {left} scripted fault(s) never reached")
                if completed and published[-1] == "succeeded":
                    self.successes[event.run_id].append((event.index, event.flag))
        return completed

    def _arrange(self, event: PlannedEvent, delivery: int) -> None:
        scenario = event.scenario
        if scenario is None or event.run_id is None or not event.faulted(delivery):
            return
        if scenario.lro is not None:
            self.arm.set_lro(event.run_id, **scenario.lro)
        if scenario.token:
            self.identity.fail_next(1, status=500)
        faults = event.script(delivery)
        if faults:
            self.arm.script(event.run_id, *faults)


def run_soak(config: SoakConfig, workdir: Path, patch: Patcher, *, progress: Callable[[str], None] = lambda line: None) -> SoakReport:
    """Run the soak with the settings applied through `patch`; return its report."""

    events = plan_events(
        config.events, config.run_count, config.seed,
        fault_rate=config.fault_rate, invalid_rate=config.invalid_rate, max_deliveries=config.max_delivery_count,
    )
    outcome_file = workdir / "soak-outcomes.jsonl"
    outcome_file.unlink(missing_ok=True)
    failing = {e.message_id: e.faulted_deliveries for e in events if e.scenario is not None and e.scenario.publish}
    watch = LeakWatch()
    root = logging.getLogger()
    level = root.level
    with SoakIdentity() as identity, SoakArm(token_validator=identity.is_valid, auto_create=True, seed=False) as arm:
        for name in (*SETTING_NAMES, *IDENTITY_ENVIRONMENT):
            patch.delenv(name, raising=False)
        settings = {**identity.environ(), "ARM_ENDPOINT": arm.url, "OUTCOME_FILE": str(outcome_file), **config.settings()}
        for name, value in settings.items():
            patch.setenv(name, value)
        publishers: list[FlakyPublisher] = []

        def publisher_factory(app_settings: Any) -> FlakyPublisher:
            publishers.append(FlakyPublisher(FilePublisher(app_settings.outcome_file), failing))
            return publishers[-1]

        app = build_app(dict(os.environ), publisher_factory=publisher_factory)
        queue = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}["archive_queue"]
        app.runtime.archiver()  # builds the publisher (and checks the settings) before the clock starts
        progress(f"soak: {config.events} events over {config.run_count} runs, {config.workers} workers, seed {config.seed}, "
                 f"MAX_DELIVERY_COUNT {config.max_delivery_count}; outcomes in {outcome_file}")
        root.addHandler(watch)
        root.setLevel(logging.DEBUG)
        started = time.perf_counter()
        try:
            harness = _Harness(config, events, queue, arm, identity, publishers[0])
            harness.run()
        finally:
            seconds = time.perf_counter() - started
            root.removeHandler(watch)
            root.setLevel(level)
            app.close()
        final_state = {run: (arm.get_run(SUB, GROUP, REGISTRY, run) or {}).get("properties", {}).get("isArchiveEnabled")
                       for run in {e.run_id for e in events if e.run_id}}
        secrets = identity.issued | {identity.header_secret}
        arm_stats = arm.stats()
    leaks = find_leaks([(f"log record {n}", text) for n, text in enumerate(watch.texts, 1)] + outcome_texts([outcome_file]), secrets)
    return _report(config, events, harness, outcome_file, final_state, leaks, arm_stats, settings, seconds)


def _report(config: SoakConfig, events: list[PlannedEvent], harness: _Harness, outcome_file: Path,
            final_state: dict[str, bool | None], leaks: list[str], arm_stats: dict[str, Any],
            settings: dict[str, str], seconds: float) -> SoakReport:
    """Account for every event from OUTCOME_FILE and the settlements, and check each run's final state."""
    records: dict[str, list[dict[str, Any]]] = defaultdict(list)
    lines = outcome_file.read_text(encoding="utf-8").split("\n") if outcome_file.exists() else []
    for line in filter(None, lines):  # JSON Lines end in "\n" only; splitlines() would also split at U+2028
        body = json.loads(line)["body"]
        records[body["inboundMessageId"]].append(body)
    counts: Counter[str] = Counter()
    scenarios: dict[str, Counter[str]] = defaultdict(Counter)
    raised: Counter[str] = Counter()
    problems: list[str] = []
    for event in events:
        settlement = harness.settlements[event.message_id]
        bodies = records.get(event.message_id, [])
        end = _end_of(event, settlement, bodies)
        label = event.scenario.name if event.scenario else ("invalid-event" if event.run_id is None else "no-fault")
        if end == "lost":
            problems.append(f"{event.message_id} ({event.scenario.name if event.scenario else 'no fault'}) lost: "
                            f"deliveries {settlement.deliveries}, completed at {settlement.completed_at}, outcomes {[b['outcome'] for b in bodies]}")
        counts[end] += 1
        if end not in ("lost", event.expected_end):
            counts["wrong_ends"] += 1
            how = event.persistence or "no fault"
            problems.append(f"{event.message_id} ({label}, {how}) ended {end}, expected {event.expected_end}")
        counts["duplicates"] += len(bodies) > 1
        counts["deliveries"] += settlement.deliveries
        raised.update(settlement.raised)
        scenarios[label].update({"events": 1, end: 1, "deliveries": settlement.deliveries})
    expected = {run: None for run in final_state}
    for run, successes in harness.successes.items():
        expected[run] = successes[-1][1]
    mismatches = [run for run, flag in expected.items() if (final_state[run] or False) != (flag or False)]
    problems += [f"run {run}: isArchiveEnabled {final_state[run]} but the last event that succeeded set {expected[run]}" for run in mismatches]
    if counts["duplicates"]:
        problems.append(f"{counts['duplicates']} events have more than one outcome")
    problems += leaks[:10]
    unexpected = sum(n for code, n in raised.items() if code.startswith("unexpected:"))
    if unexpected:
        problems.append(f"{unexpected} deliveries raised something other than an ArchiverError")
    problems += harness.leftover_details[:10]
    return SoakReport(
        events=len(events), succeeded=counts["succeeded"], failed=counts["failed"], rejected=counts["rejected"],
        dead_lettered=counts["dead_lettered"], lost=counts["lost"], duplicates=counts["duplicates"],
        redeliveries=counts["deliveries"] - len(events), final_state_mismatches=len(mismatches),
        wrong_ends=counts["wrong_ends"], leaks=len(leaks),
        unexpected_exceptions=unexpected, harness_leftovers=harness.leftovers, deliveries=counts["deliveries"],
        runs=len(final_state), workers=config.workers, seed=config.seed, seconds=round(seconds, 2),
        events_per_second=round(len(events) / seconds, 1) if seconds else 0.0,
        raised=dict(sorted(raised.items())), scenarios={name: dict(c) for name, c in sorted(scenarios.items())},
        arm=arm_stats, settings=settings | {"IDENTITY_HEADER": "***"}, problems=problems,
    )


def _end_of(event: PlannedEvent, settlement: Settlement, bodies: list[dict[str, Any]]) -> str:
    """How one event ended: succeeded, failed, rejected, dead_lettered, or lost."""
    if settlement.dead_lettered:
        last = bodies[-1] if bodies else None
        dead_letter_outcome = (
            last is not None and last["outcome"] == "failed" and last["error"]["retryable"]
            and last["deliveryCount"] == settlement.deliveries
        )
        return "dead_lettered" if dead_letter_outcome else "lost"
    if settlement.completed_at is None or not bodies:
        return "lost"
    last = bodies[-1]
    if last["deliveryCount"] != settlement.completed_at:
        return "lost"
    return str(last["outcome"])


def summary(report: SoakReport) -> str:
    """The report as a table."""
    lines = [
        f"{'events':<24}{report.events:>8}",
        *(f"{name.replace('_', '-'):<24}{getattr(report, name):>8}" for name in COUNTS[1:]),
        f"{'final-state mismatches':<24}{report.final_state_mismatches:>8}",
        f"{'wrong ends':<24}{report.wrong_ends:>8}",
        f"{'secrets in logs/outcomes':<24}{report.leaks:>8}",
        f"{'deliveries':<24}{report.deliveries:>8}",
        f"{'runs':<24}{report.runs:>8}",
        f"{'seconds':<24}{report.seconds:>8.1f}   ({report.events_per_second:g} events/s, {report.workers} workers)",
        "",
        f"{'scenario':<32}{'events':>7}{'succeeded':>10}{'failed':>7}{'rejected':>9}{'dead-lettered':>14}{'lost':>5}{'deliveries':>11}",
    ]
    for name, c in report.scenarios.items():
        lines.append(f"{name:<32}{c.get('events', 0):>7}{c.get('succeeded', 0):>10}{c.get('failed', 0):>7}{c.get('rejected', 0):>9}"
                     f"{c.get('dead_lettered', 0):>14}{c.get('lost', 0):>5}{c.get('deliveries', 0):>11}")
    raised = ", ".join(f"{code} {n}" for code, n in report.raised.items()) or "nothing"
    lines += ["", f"raised for redelivery or dead-lettering: {raised}"]
    stats = report.arm
    lines.append(f"ARM emulator: {stats['requests']} requests ({stats['patches']} PATCH, {stats['gets']} GET, {stats['polls']} polls), "
                 f"{stats['faults']} faults injected, {stats['connections']} connections")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    """Run the soak, write the report, print the table; 0 when nothing was lost."""
    parser = argparse.ArgumentParser(prog="python -m scripts.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=None, help="distinct run ids (default: events / 10)")
    parser.add_argument("--max-delivery-count", type=int, default=5)
    parser.add_argument("--report", type=Path, default=ROOT / "soak-report.json")
    parser.add_argument("--wire", action="store_true", help="through the local Service Bus and the host stand-in (scripts.soak_wire)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.wire:
        return _main_wire(args)
    config = SoakConfig(events=args.events, workers=args.workers, seed=args.seed, runs=args.runs, max_delivery_count=args.max_delivery_count)
    with tempfile.TemporaryDirectory(prefix="acr-archiver-soak-") as workdir:
        report = run_soak(config, Path(workdir), ProcessPatcher(), progress=print)
    args.report.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
    print()
    print(summary(report))
    print(f"\nreport: {args.report}")
    for problem in report.problems[:20]:
        print("PROBLEM:", problem, file=sys.stderr)
    print("soak " + ("PASSED: every event accounted for, none lost" if report.ok else "FAILED"), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1


def _main_wire(args: argparse.Namespace) -> int:
    """`make soak WIRE=1`: the same plan over the wire; the report is `soak-report.json` too."""
    from scripts.soak_wire import WireSoakConfig, run_wire_soak
    from scripts.soak_wire import summary as wire_summary

    logging.getLogger("proton").setLevel(logging.CRITICAL)  # a client closing its socket is not news here
    report = run_wire_soak(WireSoakConfig(events=args.events, seed=args.seed, max_delivery_count=args.max_delivery_count), progress=print)
    args.report.write_text(json.dumps({**asdict(report), "ok": report.ok, "mode": "wire"}, indent=2) + "\n", encoding="utf-8")
    print()
    print(wire_summary(report))
    print(f"\nreport: {args.report}")
    for problem in report.problems[:20]:
        print("PROBLEM:", problem, file=sys.stderr)
    print("wire soak " + ("PASSED: every event accounted for from the topic's subscriptions, none lost" if report.ok else "FAILED"),
          file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
