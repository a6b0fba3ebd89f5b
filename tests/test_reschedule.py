"""Long throttling without holding the message lock: a copy is scheduled back onto the archive queue."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from emulators import ArmEmulator, Fault
from shared.errors import ArchiverError, PublishFailed
from shared.publisher import ServiceBusPublisher
from shared.reschedule import ServiceBusScheduler, make_scheduler
from shared.service import MAX_RESCHEDULES
from shared.settings import Settings
from tests import support
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB
from tests.fakes import RecordingServiceBus

QUEUE, TOPIC = "acr-archive-events", "acr-archive-outcomes"
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}
MAX_DELIVERIES = 3


@pytest.fixture
def bus(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RecordingServiceBus:
    """The app wired to the recording Service Bus for both the outcome topic and the archive queue."""
    bus = RecordingServiceBus()
    monkeypatch.delenv("OUTCOME_FILE")
    monkeypatch.setenv("OUTCOME_TOPIC_NAME", TOPIC)
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "sb-test.servicebus.windows.net")
    monkeypatch.setenv("MAX_DELIVERY_COUNT", str(MAX_DELIVERIES))
    return bus


@pytest.fixture
def functions(bus: RecordingServiceBus) -> dict[str, Any]:
    """The app's functions, built once the environment and the recording Service Bus are in place."""
    return support.functions(
        publisher_factory=lambda s: ServiceBusPublisher(bus.client, s.outcome_topic_name or ""),
        scheduler_factory=lambda s: ServiceBusScheduler(bus.client, s.archive_queue_name or ""),
    )


def _message(delivery_count: int = 1, **properties: Any) -> ServiceBusMessage:
    return ServiceBusMessage(
        body=json.dumps(EVENT).encode(),
        message_id=properties.pop("message_id", "orig-1"),
        correlation_id=properties.pop("correlation_id", "corr-1"),
        content_type="application/json",
        delivery_count=delivery_count,
        application_properties=properties,
        user_properties={},
    )


def _deliver(copy: Any, delivery_count: int = 1) -> ServiceBusMessage:
    """What the trigger would receive when the scheduled copy comes due."""
    return ServiceBusMessage(
        body=b"".join(copy.body),
        message_id=copy.message_id,
        correlation_id=copy.correlation_id,
        content_type=copy.content_type,
        delivery_count=delivery_count,
        application_properties=dict(copy.application_properties),
        user_properties={},
    )


def test_a_throttle_longer_than_the_budget_schedules_a_copy_and_completes(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """Retry-After past ARM_RETRY_MAX_SECONDS: a copy is scheduled at now + Retry-After, no outcome yet, the original completes."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    before = datetime.now(timezone.utc)
    assert functions["archive_queue"](_message()) is None
    (scheduled,) = bus.sent
    assert scheduled.entity == QUEUE
    assert before + timedelta(seconds=599) <= scheduled.scheduled_for <= datetime.now(timezone.utc) + timedelta(seconds=601)
    copy = scheduled.message
    assert json.loads(b"".join(copy.body)) == EVENT
    assert copy.correlation_id == "corr-1" and copy.content_type == "application/json"
    assert copy.application_properties["rescheduleCount"] == 1
    assert copy.application_properties["originalMessageId"] == "orig-1"
    assert copy.message_id == "orig-1:rescheduled:1"
    assert bus.messages(TOPIC) == []
    assert arm.stats()["patches"] == 1


def test_the_copy_when_it_succeeds_reports_the_original_ids(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """The outcome of the copy carries the original message id, so it deduplicates like the original's would."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    functions["archive_queue"](_message())
    functions["archive_queue"](_deliver(bus.sent[0].message))
    (outcome,) = bus.messages(TOPIC)
    body = json.loads(b"".join(outcome.body))
    assert body["outcome"] == "succeeded" and body["inboundMessageId"] == "orig-1" and body["correlationId"] == "corr-1"
    assert outcome.message_id == "orig-1:outcome"
    assert arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)["properties"]["isArchiveEnabled"] is True


def test_copies_of_copies_count_up_and_reuse_one_queue_sender(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """Each re-schedule increments the counter; one queue sender serves them all."""
    arm.script(SEED_RUN, *[Fault.status(429, retry_after="600")] * 3)
    functions["archive_queue"](_message())
    functions["archive_queue"](_deliver(bus.sent[-1].message))
    functions["archive_queue"](_deliver(bus.sent[-1].message))
    counts = [s.message.application_properties["rescheduleCount"] for s in bus.sent]
    assert counts == [1, 2, 3]
    assert {s.message.application_properties["originalMessageId"] for s in bus.sent} == {"orig-1"}
    assert bus.senders_created == 1


@pytest.mark.parametrize(("delivery", "published"), [(1, False), (MAX_DELIVERIES, True)], ids=["early-delivery", "last-delivery"])
def test_past_the_cap_the_normal_failure_path_is_taken(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus, delivery: int, published: bool) -> None:
    """After MAX_RESCHEDULES copies: raise for redelivery, and on the last delivery publish `failed` first."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    with pytest.raises(ArchiverError) as caught:
        functions["archive_queue"](_message(delivery, rescheduleCount=MAX_RESCHEDULES, originalMessageId="orig-0"))
    assert caught.value.code == "TooManyRequests" and caught.value.retryable
    assert bus.messages(QUEUE) == []
    outcomes = bus.messages(TOPIC)
    assert len(outcomes) == (1 if published else 0)
    if published:
        assert outcomes[0].application_properties["errorCode"] == "TooManyRequests"
        assert json.loads(b"".join(outcomes[0].body))["inboundMessageId"] == "orig-0"


def test_a_failed_schedule_raises_so_the_original_stays(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """If Service Bus refuses the copy the function raises: the original is redelivered, never completed."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    bus.fail_next(ServiceBusError(message="queue disabled"))
    with pytest.raises(PublishFailed):
        functions["archive_queue"](_message())
    assert bus.sent == []


def test_a_failed_schedule_on_the_last_delivery_publishes_failed(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """On the last delivery a refused copy ends as the normal dead-letter path, with its outcome."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    bus.fail_next(ServiceBusError(message="queue disabled"))
    with pytest.raises(ArchiverError):
        functions["archive_queue"](_message(MAX_DELIVERIES))
    (outcome,) = bus.messages(TOPIC)
    assert outcome.subject == "RunArchiveUpdateFailed"


def test_a_short_throttle_is_still_retried_in_process(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus) -> None:
    """A Retry-After that fits the budget is waited for, not re-scheduled."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="0"))
    functions["archive_queue"](_message())
    assert bus.messages(QUEUE) == []
    assert json.loads(b"".join(bus.messages(TOPIC)[0].body))["attempts"] == 2


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ARCHIVE_QUEUE_NAME": QUEUE, "ServiceBusConnection__fullyQualifiedNamespace": "n.servicebus.windows.net"}, True),
        ({"ARCHIVE_QUEUE_NAME": QUEUE, "ServiceBusConnection": "Endpoint=sb://localhost;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;"}, True),
        ({"ARCHIVE_QUEUE_NAME": QUEUE, "ServiceBusConnection__fullyQualifiedNamespace": "n.servicebus.windows.net", "OUTCOME_FILE": "o.jsonl"}, False),
        ({"ServiceBusConnection__fullyQualifiedNamespace": "n.servicebus.windows.net"}, False),
    ],
    ids=["identity", "connection-string", "outcome-file-mode", "no-queue"],
)
def test_rescheduling_needs_service_bus(env: dict[str, str], expected: bool) -> None:
    """With OUTCOME_FILE (no Service Bus) a long throttle takes the normal transient path."""
    assert (make_scheduler(Settings.from_env(env)) is not None) is expected


@pytest.mark.parametrize(
    "forged",
    [
        {"originalMessageId": "x" * 10_240, "rescheduleCount": "inf"},
        {"originalMessageId": b"forged", "rescheduleCount": float("inf")},
        {"originalMessageId": 12, "rescheduleCount": -1},
        {"originalMessageId": "", "rescheduleCount": True},
        {"originalMessageId": "x" * 129, "rescheduleCount": 2.0},
    ],
    ids=["10kb-id-and-string-inf", "bytes-id-and-float-inf", "number-id-and-negative", "empty-id-and-bool", "129-id-and-float"],
)
def test_forged_lineage_is_replaced_on_the_copy(functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus, forged: dict[str, Any]) -> None:
    """Properties of the wrong shape are ignored: the copy is the first re-schedule of the message's own id."""
    arm.script(SEED_RUN, Fault.status(429, retry_after="600"))
    assert functions["archive_queue"](_message(**forged)) is None
    (scheduled,) = bus.sent
    assert scheduled.message.message_id == "orig-1:rescheduled:1"
    assert scheduled.message.application_properties["originalMessageId"] == "orig-1"
    assert scheduled.message.application_properties["rescheduleCount"] == 1


def test_a_copy_of_a_message_with_a_128_character_id_keeps_a_bounded_deterministic_id(
    functions: dict[str, Any], arm: ArmEmulator, bus: RecordingServiceBus
) -> None:
    """Past 128 characters the copy's id is the SHA-256 form, the same each time the same message is re-scheduled."""
    arm.script(SEED_RUN, *[Fault.status(429, retry_after="600")] * 2)
    functions["archive_queue"](_message(message_id="m" * 128))
    functions["archive_queue"](_message(message_id="m" * 128, delivery_count=2))
    first, again = (s.message.message_id for s in bus.sent)
    assert first == again and len(first) <= 128 and first.endswith(":rescheduled:1")
