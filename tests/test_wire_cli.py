"""The operator CLI over the wire: `send`, `outcomes` and `dead-letters list/resubmit` against the local Service Bus and the running app."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from emulators.arm import SEED_RUN
from emulators.faults import Fault
from scripts.wire import WireStack, entity_config, receive_outcomes, send_events, wire_stack

SUBSCRIPTION, GROUP, REGISTRY, RUN = SEED_RUN
MAX_DELIVERIES = 2


@pytest.fixture
def stack() -> Iterator[WireStack]:
    settings = {"ARM_MAX_ATTEMPTS": "1", "ARM_RETRY_MAX_SECONDS": "1", "MAX_DELIVERY_COUNT": str(MAX_DELIVERIES)}
    with wire_stack(settings, config=entity_config(max_delivery_count=MAX_DELIVERIES)) as running:
        yield running


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_send_enqueues_validated_events_that_the_app_archives(stack: WireStack) -> None:
    """`send` puts each event on the queue under the id it prints; the app's outcome names that id."""
    status, out, err = stack.cli("send", "-o", "json", json.dumps({"runId": RUN, "isArchiveEnabled": True}))
    assert status == 0, err
    ((sent),) = _lines(out)
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    assert (sent["queue"], record["body"]["inboundMessageId"], record["body"]["outcome"]) == (
        stack.queue,
        sent["messageId"],
        "succeeded",
    )


def test_send_refuses_an_invalid_event_and_enqueues_nothing(stack: WireStack) -> None:
    """An invalid event among valid ones: exit 2 naming it, and the queue stays empty."""
    status, _, err = stack.cli(
        "send", json.dumps({"runId": RUN, "isArchiveEnabled": True}), json.dumps({"runId": RUN, "isArchiveEnabled": "yes"})
    )
    assert status == 2 and "argument 2" in err
    assert stack.servicebus.messages(stack.queue) == [] and stack.arm.stats()["patches"] == 0


def test_outcomes_prints_the_failed_outcomes_subscription_as_json_lines(stack: WireStack) -> None:
    """`outcomes` (default subscription failed-outcomes) prints the failed outcome, one OUTCOME_FILE-style line, and removes it."""
    send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}, {"runId": "missing1", "isArchiveEnabled": True}])
    assert stack.listener.settlement.wait_for(lambda s: s.completed == 2, 30)
    status, out, err = stack.cli("outcomes", "-o", "json", "--max", "5", "--wait", "2")
    assert status == 0, err
    (line,) = _lines(out)
    assert line["subject"] == "RunArchiveUpdateFailed" and line["application_properties"]["errorCode"] == "ResourceNotFound"
    assert line["body"]["request"]["runId"] == "missing1"
    assert stack.servicebus.messages(stack.subscription("failed-outcomes")) == []


def test_dead_letters_list_then_resubmit_brings_the_event_back_to_success(stack: WireStack) -> None:
    """A transient fault on every delivery dead-letters the event with its failed outcome; `resubmit` after the fault clears archives it."""
    stack.arm.script(RUN, *[Fault.status(503, error_code="ServiceUnavailable")] * MAX_DELIVERIES)
    (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
    (failed,) = receive_outcomes(stack, "failed-outcomes", 1)
    assert (failed["body"]["deliveryCount"], failed["body"]["error"]["retryable"]) == (MAX_DELIVERIES, True)
    status, out, err = stack.cli("dead-letters", "list", "-o", "json", "--wait", "2")
    assert status == 0, err
    (dead,) = _lines(out)
    assert (dead["messageId"], dead["deadLetterReason"], dead["deliveryCount"]) == (
        message_id,
        "MaxDeliveryCountExceeded",
        MAX_DELIVERIES,
    )
    status, out, err = stack.cli("dead-letters", "resubmit", "-o", "json", "--wait", "2")
    assert status == 0, err
    (resubmitted,) = _lines(out)
    assert resubmitted["messageId"] == message_id and resubmitted["resubmittedAs"] != message_id
    records = receive_outcomes(stack, "all-outcomes", 2)
    assert [r["body"]["outcome"] for r in records] == ["failed", "succeeded"]
    assert records[1]["body"]["inboundMessageId"] == resubmitted["resubmittedAs"]
    assert stack.servicebus.dead_letters(stack.queue) == []
    assert stack.arm.get_run(SUBSCRIPTION, GROUP, REGISTRY, RUN)["properties"]["isArchiveEnabled"] is True
