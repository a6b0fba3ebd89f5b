"""What the soak sends: seeded events over a pool of runs, 2% invalid, 10% meeting one fault each.

A fault lasts *in-process* (one failed try that the app's own retry absorbs), *k deliveries* (every try of
the first k deliveries fails, 1 <= k < MAX_DELIVERY_COUNT, so Service Bus redelivers and the event
succeeds afterwards) or *every delivery* (the event is dead-lettered with its `failed` outcome). Faults
whose failed request still changes the run (a read timeout lands late; a 201 leaves the update running)
never last every delivery: the run's final state must follow the last event that succeeded.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Literal

from emulators import Fault

__all__ = ["ATTEMPTS", "GROUP", "INVALID_BODIES", "REGISTRY", "SCENARIOS", "SUB", "PlannedEvent", "Scenario", "plan_events"]

SUB = "5e7d0c1a-3b9f-4c2e-8d6a-1f0e9b8c7a65"
GROUP = "soak-rg"
REGISTRY = "soakRegistry"
ATTEMPTS = 2
"""ARM_MAX_ATTEMPTS of the soak: a faulted delivery scripts this many faults, one per try."""

Persistence = Literal["in-process", "deliveries", "every-delivery", "final"]


@dataclass(frozen=True)
class Scenario:
    """One kind of fault: what is scripted on the event's run for each faulted delivery."""

    name: str
    weight: int
    fault: Callable[[], Fault] | None = None
    """Scripted once (in-process) or once per try (a faulted delivery)."""
    lro: dict[str, Any] | None = None
    """An accepted (201) update for each faulted delivery; the PATCH itself passes, `fault` hits the polls."""
    lands: bool = False
    """The failed request still changes the run, so the event must succeed in the end."""
    final: bool = False
    """The event ends `failed` at once (not retryable)."""
    in_process_only: bool = False
    token: bool = False
    """Also fail the identity endpoint's next answer (the 401's refresh meets a 500, retried by azure-identity)."""
    publish: bool = False
    """Publishing the outcome fails on the first k deliveries."""

    def persistences(self) -> tuple[Persistence, ...]:
        """How long this fault may last."""
        if self.final:
            return ("final",)
        if self.in_process_only:
            return ("in-process",)
        if self.publish or (self.lro is not None and self.lro.get("polls") == -1):
            return ("deliveries",)
        if self.lands:
            return ("in-process", "deliveries")
        return ("in-process", "deliveries", "every-delivery")


def _status(code: int, retry_after: str | None = None) -> Callable[[], Fault]:
    return lambda: Fault.status(code, retry_after=retry_after)


def _throttled_until_now() -> Fault:
    """429 with Retry-After as an HTTP date that has already come."""
    return Fault.status(429, retry_after=formatdate(time.time() - 5, usegmt=True))


READ_TIMEOUT_ANSWER = 0.75
"""Seconds the emulator holds a slow answer; ARM_TIMEOUT_SECONDS is 0.5 in the soak."""

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("429-retry-after-seconds", 8, _status(429, "0")),
    Scenario("429-retry-after-http-date", 6, _throttled_until_now),
    Scenario("429-no-retry-after", 6, _status(429)),
    Scenario("408", 4, _status(408)),
    Scenario("500", 5, _status(500)),
    Scenario("502", 5, _status(502)),
    Scenario("503", 6, _status(503)),
    Scenario("504", 5, _status(504)),
    Scenario("connection-reset", 6, Fault.reset),
    Scenario("reset-mid-response", 6, Fault.reset_mid),
    Scenario("200-body-truncated", 5, Fault.truncated),
    Scenario("200-body-not-json", 5, Fault.not_json),
    Scenario("read-timeout", 4, lambda: Fault.delay(READ_TIMEOUT_ANSWER), lands=True),
    Scenario("201-then-poll-errors", 5, _status(503, "0"), lro={"polls": 1, "retry_after": 0}, lands=True),
    Scenario("lro-never-finishes", 4, lro={"polls": -1}, lands=True),
    Scenario("lro-ends-failed", 3, lro={"polls": 1, "final": "Failed", "retry_after": 0}, final=True),
    Scenario("lro-ends-canceled", 3, lro={"polls": 1, "final": "Canceled", "via": "location", "retry_after": 0}, final=True),
    Scenario("arm-401-refresh", 4, _status(401), in_process_only=True),
    Scenario("arm-401-refresh-identity-500", 2, _status(401), in_process_only=True, token=True),
    Scenario("arm-401-after-refresh", 2, _status(401), final=True),
    Scenario("publish-fails", 6, publish=True),
)


@dataclass(frozen=True)
class PlannedEvent:
    """One queue message of the soak and the fault it will meet."""

    index: int
    message_id: str
    body: bytes
    run_id: str | None
    """None for an invalid event (it names no run ARM would be asked about)."""
    flag: bool
    scenario: Scenario | None = None
    persistence: Persistence | None = None
    faulted_deliveries: int = 0
    """Deliveries whose every try fails (k); the delivery count for `every-delivery`; 1 for in-process and final."""

    @property
    def expected_end(self) -> str:
        """How the event must end: rejected (invalid), failed (final), dead_lettered (every delivery), else succeeded."""
        if self.run_id is None:
            return "rejected"
        return {"final": "failed", "every-delivery": "dead_lettered"}.get(self.persistence or "", "succeeded")

    def faulted(self, delivery: int) -> bool:
        """True when this delivery meets the fault."""
        return self.scenario is not None and delivery <= self.faulted_deliveries

    def script(self, delivery: int) -> list[Fault]:
        """The faults to queue on the run before this delivery."""
        scenario = self.scenario
        if scenario is None or not self.faulted(delivery) or scenario.publish:
            return []
        lead = [Fault.delay(0)] if scenario.lro is not None and scenario.fault is not None else []  # the PATCH passes
        if scenario.fault is None:
            return lead
        tries = 1 if self.persistence == "in-process" else ATTEMPTS
        return lead + [scenario.fault() for _ in range(tries)]


def _event_body(rng: random.Random, run_id: str, flag: bool) -> dict[str, Any]:
    """The event in one of the contract's shapes, chosen at random."""
    data = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": flag}
    resource_id = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/runs/{run_id}"
    shape = rng.randrange(4)
    if shape == 0:
        return data
    if shape == 1:
        return {"runResourceId": resource_id, "isArchiveEnabled": flag}
    if shape == 2:
        return {"specversion": "1.0", "id": f"ce-{rng.getrandbits(32):08x}", "source": "/soak", "type": "Acr.Run.ArchiveRequested", "data": data}
    return {"id": f"eg-{rng.getrandbits(32):08x}", "eventType": "Acr.Run.ArchiveRequested", "subject": "soak", "data": data,
            "dataVersion": "1.0", "eventTime": "2026-11-27T10:00:00Z"}


INVALID_BODIES: tuple[Callable[[str], bytes], ...] = (
    lambda run: b'{"runId": "' + run.encode(),
    lambda run: b"\xff\xfe\x00 not UTF-8",
    lambda run: json.dumps({"registryName": "no", "runId": run, "isArchiveEnabled": True}).encode(),
    lambda run: json.dumps({"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run, "isArchiveEnabled": "true"}).encode(),
    lambda run: json.dumps({"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": "..", "isArchiveEnabled": True}).encode(),
    lambda run: json.dumps([{"registryName": REGISTRY, "runId": run, "isArchiveEnabled": True}]).encode(),
    lambda run: json.dumps({"specversion": "1.0", "id": "x", "source": "/soak", "type": "t", "data": "runId=" + run}).encode(),
    lambda run: json.dumps({"runResourceId": f"/subscriptions/{SUB}/resourceGroups/{GROUP}/runs/{run}", "isArchiveEnabled": False}).encode(),
)


def plan_events(count: int, runs: int, seed: int, *, fault_rate: float, invalid_rate: float, max_deliveries: int) -> list[PlannedEvent]:
    """`count` events over `runs` run ids; the same seed gives the same events and faults."""
    rng = random.Random(seed)
    run_ids = [f"run-{n:04d}" for n in range(runs)]
    weights = [scenario.weight for scenario in SCENARIOS]
    events: list[PlannedEvent] = []
    for index in range(count):
        message_id = f"soak-{seed}-{index:05d}"
        run_id, flag = rng.choice(run_ids), rng.random() < 0.5
        draw = rng.random()
        if draw < invalid_rate:
            body = rng.choice(INVALID_BODIES)(run_id)
            events.append(PlannedEvent(index, message_id, body, None, flag))
            continue
        body = json.dumps(_event_body(rng, run_id, flag)).encode()
        if draw >= invalid_rate + fault_rate:
            events.append(PlannedEvent(index, message_id, body, run_id, flag))
            continue
        scenario = rng.choices(SCENARIOS, weights)[0]
        persistence = rng.choice(scenario.persistences())
        faulted = {
            "in-process": 1,
            "final": 1,
            "deliveries": rng.randint(1, max_deliveries - 1),
            "every-delivery": max_deliveries,
        }[persistence]
        events.append(PlannedEvent(index, message_id, body, run_id, flag, scenario, persistence, faulted))
    return events
