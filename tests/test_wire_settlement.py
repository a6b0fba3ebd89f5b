"""Settlement over the wire: each Service Bus row of the README's failure model, through the host stand-in (contract §5).

The event goes onto the queue with `acr-archiver send` (or raw bytes for an invalid one); the stand-in receives it in
peek-lock, runs the real queue function and settles as `autoCompleteMessages: true` does; the broker redelivers,
dead-letters and schedules; the outcomes are read from the topic's subscriptions with the real client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage

from emulators.arm import SEED_RUN
from emulators.faults import Fault
from emulators.host import HostOptions
from emulators.servicebus import SendRejection
from scripts.wire import WireStack, drain, entity_config, receive_outcomes, send_events, wire_stack

SUBSCRIPTION, GROUP, REGISTRY, RUN = SEED_RUN
MAX_DELIVERIES = 3
FAST = {
    "ARM_MAX_ATTEMPTS": "1",
    "ARM_RETRY_MAX_SECONDS": "1",
    "MAX_DELIVERY_COUNT": str(MAX_DELIVERIES),
    "LRO_TIMEOUT_SECONDS": "1",
}


@pytest.fixture
def stack() -> Iterator[WireStack]:
    with wire_stack(FAST, config=entity_config(max_delivery_count=MAX_DELIVERIES)) as running:
        yield running


def _send_raw(stack: WireStack, body: bytes, message_id: str) -> str:
    with stack.client() as client, client.get_queue_sender(stack.queue) as sender:
        sender.send_messages(ServiceBusMessage(body, message_id=message_id))
    return message_id


@dataclass(frozen=True)
class Row:
    """One failure-model row: how to provoke it, and where the event must end."""

    provoke: Callable[[WireStack], None]
    outcome: str | None  # the outcome published last, None when none is
    code: str | None
    delivery: int  # the delivery that ended it
    completed: int
    abandoned: int
    dead_lettered: bool
    event: dict[str, Any] | None = None
    armed_after_send: bool = False  # a Service Bus fault must not hit the CLI's own send


def _nothing(stack: WireStack) -> None:
    pass


def _unavailable(times: int) -> Callable[[WireStack], None]:
    return lambda stack: stack.arm.script(RUN, *[Fault.status(503, error_code="ServiceUnavailable")] * times)


def _lro_failed(stack: WireStack) -> None:
    stack.arm.set_lro(RUN, polls=1, final="Failed")


def _publish_refused_once(stack: WireStack) -> None:
    stack.servicebus.reject_sends(1, SendRejection("amqp:not-allowed", "refused by the test"))


ROWS = {
    "arm-404-is-final-failed-completed": Row(
        _nothing, "failed", "ResourceNotFound", 1, 1, 0, False, {"runId": "missing1", "isArchiveEnabled": True}
    ),
    "invalid-event-rejected-completed": Row(
        _nothing, "rejected", "InvalidEvent", 1, 1, 0, False, {"runId": "../x", "isArchiveEnabled": True}
    ),
    "transient-redelivered-then-succeeded": Row(_unavailable(2), "succeeded", None, 3, 1, 2, False),
    "transient-on-the-last-delivery-failed-and-dead-lettered": Row(
        _unavailable(MAX_DELIVERIES), "failed", "ServiceUnavailable", 3, 0, 3, True
    ),
    "update-ended-failed-completed": Row(_lro_failed, "failed", "LroFailed", 1, 1, 0, False),
    "publish-refused-redelivered-then-published": Row(
        _publish_refused_once, "succeeded", None, 2, 1, 1, False, armed_after_send=True
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_each_failure_model_row_settles_the_queue_message_as_the_readme_says(stack: WireStack, row: Row) -> None:
    """Provoke the row, send one event, and check the outcome, its delivery count, the settlements and the dead-letter queue."""
    if not row.armed_after_send:
        row.provoke(stack)
    event = row.event or {"runId": RUN, "isArchiveEnabled": True}
    if event["runId"] == "../x":
        message_id = _send_raw(stack, b'{"runId": "../x", "isArchiveEnabled": true}', "raw-invalid-1")
    else:
        (message_id,) = send_events(stack, [event])
    if row.armed_after_send:
        row.provoke(stack)
    settled = stack.listener.settlement
    assert settled.wait_for(lambda s: (s.completed, s.abandoned) == (row.completed, row.abandoned), 30), settled
    if row.dead_lettered:
        (dead,) = _wait(lambda: stack.servicebus.dead_letters(stack.queue))
        assert (dead["message_id"], dead["dead_letter_reason"]) == (message_id, "MaxDeliveryCountExceeded")
    assert stack.servicebus.messages(stack.queue) == []
    outcomes = drain(stack, "all-outcomes") if row.outcome is None else receive_outcomes(stack, "all-outcomes", 1)
    assert [o["body"]["outcome"] for o in outcomes] == ([row.outcome] if row.outcome else [])
    if row.outcome is not None:
        body = outcomes[0]["body"]
        assert (body["inboundMessageId"], body["deliveryCount"]) == (message_id, row.delivery)
        assert (body["error"] or {}).get("code") == row.code
        if row.dead_lettered:
            assert body["error"]["retryable"] is True
    assert drain(stack, "all-outcomes") == []


def _wait(observe: Callable[[], Any], attempts: int = 3000) -> Any:
    import time

    for _ in range(attempts):
        value = observe()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("never observed")


def test_a_transient_fault_is_redelivered_by_the_broker_with_a_growing_delivery_count(stack: WireStack) -> None:
    """Two 503s: the broker hands the same message id back with delivery count 1, 2, then 3, which succeeds."""
    seen: list[int] = []
    stack.arm.script(RUN, *[Fault.status(503)] * 2)
    function = stack.listener.function
    original = function.call

    def spy(**kwargs: Any) -> Any:
        seen.append(next(iter(kwargs.values())).delivery_count)
        return original(**kwargs)

    object.__setattr__(function, "call", spy)
    (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    assert seen == [1, 2, 3]
    assert (record["body"]["outcome"], record["body"]["deliveryCount"], record["body"]["inboundMessageId"]) == (
        "succeeded",
        3,
        message_id,
    )


def test_the_lock_is_renewed_through_an_arm_call_longer_than_the_lock() -> None:
    """Lock duration 2 s, ARM answers after 4 s: the stand-in's AutoLockRenewer keeps the lock; one PATCH, one completion."""
    # 2 s, not 1: the SDK's renewer wakes every 0.5 s and the renewal hops to the receive thread (Service Bus's minimum is 5 s).
    with wire_stack(
        FAST,
        config=entity_config(lock_seconds=2, max_delivery_count=MAX_DELIVERIES),
        options=HostOptions(max_auto_lock_renewal_duration=60.0),
    ) as stack:
        stack.arm.script(RUN, Fault.delay(4))
        (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
        (record,) = receive_outcomes(stack, "all-outcomes", 1)
        settled = stack.listener.settlement
        assert settled.wait_for(lambda s: s.completed == 1, 30)
        assert (settled.abandoned, settled.failed_settlements, stack.arm.stats()["patches"]) == (0, 0, 1)
        assert (record["body"]["deliveryCount"], record["body"]["inboundMessageId"]) == (1, message_id)


def test_without_renewal_the_lock_expires_during_the_arm_call_and_the_broker_redelivers() -> None:
    """maxAutoLockRenewalDuration 0: the 1 s lock lapses under a 3 s ARM call; the broker redelivers (count 2), the late completion fails."""
    with wire_stack(
        FAST,
        config=entity_config(lock_seconds=1, max_delivery_count=MAX_DELIVERIES),
        options=HostOptions(max_auto_lock_renewal_duration=0.0),
    ) as stack:
        stack.arm.script(RUN, Fault.delay(3))
        send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
        # every delivery is one invocation, one PATCH and one settlement; on a loaded machine a redelivery may lapse too
        assert stack.listener.settlement.wait_for(
            lambda s: s.completed == 1 and s.completed + s.failed_settlements == stack.arm.stats()["patches"], 30
        )
        invocations = stack.arm.stats()["patches"]
        (record,) = drain(stack, "all-outcomes")  # the later publishes of the same outcome id were duplicates
        assert invocations >= 2 and stack.servicebus.duplicates_dropped(stack.topic) == invocations - 1
        assert 1 <= record["body"]["deliveryCount"] <= invocations


def test_a_long_throttle_schedules_a_copy_that_is_processed_later(stack: WireStack) -> None:
    """429 with Retry-After 2 s beyond the 1 s budget: a copy is scheduled (originalMessageId, rescheduleCount 1), the original completed, the copy succeeds."""
    stack.arm.script(RUN, Fault.status(429, retry_after=2, error_code="TooManyRequests"))
    (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
    (scheduled,) = _wait(lambda: stack.servicebus.scheduled(stack.queue))
    assert scheduled["message_id"] == f"{message_id}:rescheduled:1"
    assert scheduled["application_properties"] == {"originalMessageId": message_id, "rescheduleCount": 1}
    assert stack.listener.settlement.wait_for(lambda s: s.completed >= 1, 10)
    assert drain(stack, "all-outcomes", quiet=0.2) == []  # nothing is published for the original
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    assert (record["body"]["outcome"], record["body"]["inboundMessageId"], record["correlation_id"]) == (
        "succeeded",
        message_id,
        message_id,
    )
    assert record["message_id"].startswith(message_id)
    assert stack.arm.get_run(SUBSCRIPTION, GROUP, REGISTRY, RUN)["properties"]["isArchiveEnabled"] is True
