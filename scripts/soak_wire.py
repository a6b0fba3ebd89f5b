"""`make soak WIRE=1`: the soak over the wire: the local Service Bus, the host stand-in, the real publisher.

    python -m scripts.soak --wire --events 2000 --seed 1

The same seeded plan as the in-process soak (`scripts.soak_plan`), with the broker doing what the harness
does there: events go onto the archive queue with the real client, the stand-in receives them in peek-lock
on `maxConcurrentCalls` workers and settles as autoComplete does, the broker redelivers abandoned messages
and dead-letters them after MaxDeliveryCount, and the topic's duplicate detection drops repeated outcomes.
Every event is accounted for from what the topic's subscriptions received: one outcome each (`lost`: none,
`duplicates`: more than one), ending as its scenario says (`wrong_ends`), the dead-lettered ones in the
queue's dead-letter sub-queue with their `failed` outcome, and `failed-outcomes` holding exactly the failed.

Over the wire each event gets a run of its own (the broker, not the harness, orders deliveries, so faults
scripted on a shared run would meet whichever event came first). Faults scripted per delivery need to know
the delivery, so those the plan draws as identity failures or never-finishing updates on several deliveries
are left out here (the in-process soak covers them); outcome publishing fails through the broker itself
(`reject_sends`), for the first publishes after the events are queued.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode

from emulators.servicebus import SendRejection
from scripts.soak_plan import ATTEMPTS, PlannedEvent, plan_events
from scripts.wire import WireStack, entity_config, outcome_record, wire_stack

__all__ = ["WireSoakConfig", "WireSoakReport", "run_wire_soak", "wire_plan"]

log = logging.getLogger("scripts.soak_wire")


@dataclass(frozen=True)
class WireSoakConfig:
    """How big and how faulty the wire soak is."""

    events: int = 2000
    seed: int = 1
    fault_rate: float = 0.10
    invalid_rate: float = 0.02
    max_delivery_count: int = 5
    publish_rejections: float = 0.01
    """The share of events whose first outcome publish the broker refuses."""
    lock_seconds: float = 20.0
    """The queue's lock duration: a delivery the stand-in never got back comes round again after it."""
    quiet_seconds: float = 30.0
    """Give up waiting once no outcome arrived for this long (longer than a lock)."""

    def settings(self) -> dict[str, str]:
        """The in-process soak's budgets (small, so faults cost little time); the code is the production code."""
        return {
            "ARM_MAX_ATTEMPTS": str(ATTEMPTS),  # the plan scripts this many faults per faulted delivery
            "ARM_RETRY_MAX_SECONDS": "0.1",
            "ARM_TIMEOUT_SECONDS": "0.5",
            "LRO_TIMEOUT_SECONDS": "1",
            "MAX_DELIVERY_COUNT": str(self.max_delivery_count),
        }


@dataclass
class WireSoakReport:
    """Every event's end as the topic's subscriptions and the dead-letter queue show it."""

    events: int = 0
    succeeded: int = 0
    failed: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicates: int = 0
    wrong_ends: int = 0
    redelivered: int = 0
    dead_lettered_unpublished: int = 0
    """Dead-lettered without an outcome: the broker refused the publish of the last delivery (the README's row)."""
    final_repeated: int = 0
    """Events planned to fail at once whose outcome publish the broker refused: the redelivered PATCH succeeded."""
    topic_duplicates_dropped: int = 0
    failed_subscription_mismatch: int = 0
    publish_rejections: int = 0
    seconds: float = 0.0
    events_per_second: float = 0.0
    scenarios: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or ended wrongly, and the failed-outcomes rule matched."""
        counts = (self.lost, self.duplicates, self.wrong_ends, self.failed_subscription_mismatch)
        return not self.problems and counts == (0, 0, 0, 0)


def _wire_event(event: PlannedEvent) -> PlannedEvent:
    """The event on a run of its own; scenarios that need per-delivery scripting become plain events."""
    if event.run_id is None:
        return event
    run_id = f"wire-{event.index:05d}"
    body = event.body.replace(event.run_id.encode(), run_id.encode())
    scenario = event.scenario
    keep = (
        scenario is not None
        and not scenario.token
        and not scenario.publish
        and (scenario.lro is None or event.persistence in ("in-process", "final"))
    )
    if scenario is not None and not keep:
        return replace(event, run_id=run_id, body=body, scenario=None, persistence=None, faulted_deliveries=0)
    return replace(event, run_id=run_id, body=body)


def wire_plan(config: WireSoakConfig) -> list[PlannedEvent]:
    """The seeded plan, each event on its own run."""
    planned = plan_events(
        config.events,
        config.events,
        config.seed,
        fault_rate=config.fault_rate,
        invalid_rate=config.invalid_rate,
        max_deliveries=config.max_delivery_count,
    )
    return [_wire_event(event) for event in planned]


def _script(stack: WireStack, event: PlannedEvent) -> None:
    """Queue every delivery's faults on the event's run up front (its run is its own)."""
    scenario = event.scenario
    if scenario is None or event.run_id is None:
        return
    if scenario.lro is not None:
        stack.arm.set_lro(event.run_id, **scenario.lro)
    faults = [fault for delivery in range(1, event.faulted_deliveries + 1) for fault in event.script(delivery)]
    if faults:
        stack.arm.script(event.run_id, *faults)


def _receive_all(
    stack: WireStack, subscription: str, expected: int, quiet: float, progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    last = time.monotonic()
    with (
        stack.client() as client,
        client.get_subscription_receiver(
            stack.topic, subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=100
        ) as receiver,
    ):
        while len(records) < expected and time.monotonic() - last < quiet:
            batch = receiver.receive_messages(max_message_count=100, max_wait_time=1)
            if batch:
                last = time.monotonic()
                records.extend(outcome_record(message) for message in batch)
                if len(records) // 250 != (len(records) - len(batch)) // 250:
                    progress(f"  {subscription}: {len(records)}/{expected} outcomes")
    return records


def run_wire_soak(config: WireSoakConfig, *, progress: Callable[[str], None] = lambda line: None) -> WireSoakReport:
    """Queue the planned events, let the stack work, account for each one from the subscriptions."""
    events = wire_plan(config)
    report = WireSoakReport(events=len(events))
    report.scenarios = dict(Counter(event.scenario.name for event in events if event.scenario is not None))
    started = time.monotonic()
    entities = entity_config(max_delivery_count=config.max_delivery_count, lock_seconds=config.lock_seconds)
    with wire_stack(config.settings(), config=entities, arm_options={"auto_create": True}) as stack:
        for event in events:
            _script(stack, event)
        with stack.client() as client, client.get_queue_sender(stack.queue) as sender:
            for start in range(0, len(events), 100):
                sender.send_messages([ServiceBusMessage(e.body, message_id=e.message_id) for e in events[start : start + 100]])
        report.publish_rejections = round(len(events) * config.publish_rejections)
        if report.publish_rejections:
            refusal = SendRejection("amqp:not-allowed", "the topic is unavailable (soak)")
            stack.servicebus.reject_sends(report.publish_rejections, refusal)
        progress(f"queued {len(events)} events on {stack.queue}; {report.publish_rejections} outcome publishes will be refused")
        outcomes = _receive_all(stack, "all-outcomes", len(events), config.quiet_seconds, progress)
        failed = _receive_all(stack, "failed-outcomes", sum(o["body"]["outcome"] == "failed" for o in outcomes), 2.0, progress)
        dead = {m["message_id"] for m in stack.servicebus.dead_letters(stack.queue)}
        left = stack.servicebus.messages(stack.queue)
        report.topic_duplicates_dropped = stack.servicebus.duplicates_dropped(stack.topic)
        report.redelivered = stack.listener.settlement.abandoned
    report.seconds = round(time.monotonic() - started, 1)
    report.events_per_second = round(len(events) / report.seconds, 1)
    _account(report, events, outcomes, failed, dead, left)
    return report


def _account(
    report: WireSoakReport,
    events: list[PlannedEvent],
    outcomes: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    dead: set[str],
    left: list[dict[str, Any]],
) -> None:
    by_event: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in outcomes:
        by_event[str(record["body"]["inboundMessageId"])].append(record)
    for event in events:
        received = by_event.get(event.message_id, [])
        copies = {f"{event.message_id}:rescheduled:{n}" for n in range(1, 6)}  # a long throttle re-schedules under these ids
        if not received and dead & ({event.message_id} | copies) and report.publish_rejections:
            report.dead_lettered_unpublished += 1
            report.dead_lettered += 1
            if event.expected_end != "dead_lettered":
                report.wrong_ends += 1
                report.problems.append(f"{event.message_id}: dead-lettered without an outcome, planned {event.expected_end}")
            continue
        if not received:
            report.lost += 1
            report.problems.append(f"{event.message_id}: no outcome ({event.scenario.name if event.scenario else 'plain'})")
            continue
        if len(received) > 1:
            report.duplicates += 1
            report.problems.append(f"{event.message_id}: {len(received)} outcomes")
        body = received[-1]["body"]
        end = "dead_lettered" if dead & ({event.message_id} | copies) else body["outcome"]
        if event.expected_end == "failed" and end == "succeeded" and (body["deliveryCount"] or 1) > 1:
            report.final_repeated += 1  # the ARM emulator answers a repeated PATCH 200, as ARM does once the update ended
            end = "failed"
        if end == "dead_lettered" and not (body["outcome"] == "failed" and body["error"]["retryable"]):
            report.problems.append(f"{event.message_id}: dead-lettered without its retryable failed outcome")
        setattr(report, end, getattr(report, end) + 1)
        if end != event.expected_end:
            report.wrong_ends += 1
            report.problems.append(f"{event.message_id}: ended {end}, its plan says {event.expected_end}")
    expected_failed = sorted(r["message_id"] for r in outcomes if r["body"]["outcome"] == "failed")
    report.failed_subscription_mismatch = len(set(expected_failed) ^ {r["message_id"] for r in failed})
    if left:
        report.problems.append(
            f"{len(left)} message(s) still on the queue: "
            + ", ".join(f"{m['message_id']} (delivery {m['delivery_count']}, locked {m['locked']})" for m in left[:5])
        )


def summary(report: WireSoakReport) -> str:
    """The figures as a small table."""
    rows = [
        ("events", report.events),
        ("succeeded", report.succeeded),
        ("failed", report.failed),
        ("rejected", report.rejected),
        ("dead-lettered", report.dead_lettered),
        ("  of which without outcome (last publish refused)", report.dead_lettered_unpublished),
        ("lost", report.lost),
        ("duplicates", report.duplicates),
        ("wrong ends", report.wrong_ends),
        ("redeliveries (abandons)", report.redelivered),
        ("final failures repeated after a refused publish", report.final_repeated),
        ("outcome publishes refused by the broker", report.publish_rejections),
        ("repeated outcomes dropped by the topic", report.topic_duplicates_dropped),
        ("failed-outcomes mismatches", report.failed_subscription_mismatch),
        ("seconds", report.seconds),
        ("events/s", report.events_per_second),
    ]
    return "\n".join(f"{name:<42} {value:>8}" for name, value in rows)
