"""Outcomes over the wire: what the topic's subscriptions receive from the real publisher (contract §4).

Every test runs the real app behind the Functions host stand-in, against the local AMQP Service Bus, and reads
outcomes with the real azure-servicebus receiver, as a subscriber would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.arm import SEED_RUN
from emulators.faults import Fault
from emulators.host import HostOptions
from emulators.servicebus import ServiceBusEmulator
from scripts.wire import WireStack, drain, entity_config, receive_outcomes, send_events, wire_stack
from shared.outcome import Outcome
from shared.publisher import ServiceBusPublisher, servicebus_client_factory
from shared.settings import Settings

SUBSCRIPTION, GROUP, REGISTRY, RUN = SEED_RUN
BODY_KEYS = {
    "outcome",
    "source",
    "request",
    "run",
    "error",
    "attempts",
    "correlationId",
    "inboundMessageId",
    "deliveryCount",
    "rawEvent",
    "completedAt",
}


@pytest.fixture
def stack() -> Iterator[WireStack]:
    with wire_stack() as running:
        yield running


def _post(stack: WireStack, payload: Any, **headers: str) -> requests.Response:
    return requests.post(
        f"{stack.host.url}/api/archive-events", json=payload, timeout=30, headers={"x-functions-key": stack.host.key, **headers}
    )


def test_a_succeeded_outcome_carries_the_contract_properties_with_their_amqp_types(stack: WireStack) -> None:
    """A queued event's outcome: subject, content type, ids, and application properties typed bool/int as §4 says."""
    (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    properties = record["application_properties"]
    assert (record["subject"], record["content_type"], record["correlation_id"]) == (
        "RunArchiveUpdated",
        "application/json",
        message_id,
    )
    assert record["message_id"].startswith(message_id) and len(record["message_id"]) <= 128
    assert properties == {
        "outcome": "succeeded",
        "source": "servicebus",
        "registryName": REGISTRY,
        "runId": RUN,
        "isArchiveEnabled": True,
        "httpStatus": 200,
    }
    assert type(properties["isArchiveEnabled"]) is bool and type(properties["httpStatus"]) is int
    body = record["body"]
    assert set(body) == BODY_KEYS
    assert (body["inboundMessageId"], body["correlationId"], body["deliveryCount"], body["rawEvent"]) == (
        message_id,
        message_id,
        1,
        None,
    )
    assert body["run"]["properties"]["isArchiveEnabled"] is True


def test_a_failed_outcome_names_the_arm_error_code_and_status(stack: WireStack) -> None:
    """ARM's final 404: subject RunArchiveUpdateFailed, `errorCode` and integer `httpStatus` properties."""
    send_events(stack, [{"runId": "missingrun1", "isArchiveEnabled": False}])
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    assert record["subject"] == "RunArchiveUpdateFailed"
    assert record["application_properties"] == {
        "outcome": "failed",
        "source": "servicebus",
        "registryName": REGISTRY,
        "runId": "missingrun1",
        "isArchiveEnabled": False,
        "httpStatus": 404,
        "errorCode": "ResourceNotFound",
    }
    assert record["body"]["error"]["httpStatus"] == 404 and record["body"]["error"]["retryable"] is False


def test_an_http_outcome_is_published_with_the_callers_correlation_id(stack: WireStack) -> None:
    """POST through the stand-in with the function key: the outcome on the topic has source http and the x-correlation-id."""
    response = _post(stack, {"runId": RUN, "isArchiveEnabled": True}, **{"x-correlation-id": "caller-123"})
    assert response.status_code == 200
    (record,) = receive_outcomes(stack, "all-outcomes", 1)
    assert record["correlation_id"] == "caller-123" and record["application_properties"]["source"] == "http"
    assert record["body"] == response.json()


def test_the_failed_outcomes_subscription_receives_exactly_the_failed_outcomes(stack: WireStack) -> None:
    """Config.json's rule `outcome = 'failed'`: of succeeded, failed and rejected outcomes only the failed ones arrive."""
    stack.arm.add_run(SUBSCRIPTION, GROUP, REGISTRY, "other1", example="RunsGet")
    events = [
        {"runId": RUN, "isArchiveEnabled": True},
        {"runId": "missingrun1", "isArchiveEnabled": True},
        {"runId": "other1", "isArchiveEnabled": True},
        {"runId": "missingrun2", "isArchiveEnabled": True},
    ]
    send_events(stack, events)
    response = _post(stack, {"runId": "../../etc", "isArchiveEnabled": "yes"})  # rejected over HTTP: published too
    assert response.status_code == 400
    everything = receive_outcomes(stack, "all-outcomes", 5)
    failed = receive_outcomes(stack, "failed-outcomes", 2)
    assert sorted(r["body"]["outcome"] for r in everything) == ["failed", "failed", "rejected", "succeeded", "succeeded"]
    assert sorted(r["message_id"] for r in failed) == sorted(
        r["message_id"] for r in everything if r["body"]["outcome"] == "failed"
    )
    assert drain(stack, "failed-outcomes") == []


def test_a_redelivered_events_outcome_is_dropped_by_the_topics_duplicate_detection() -> None:
    """The lock expires during a slow ARM call (no renewal) and the broker redelivers: both invocations publish one id, the topic keeps one."""
    with wire_stack(config=entity_config(lock_seconds=1), options=HostOptions(max_auto_lock_renewal_duration=0.0)) as stack:
        stack.arm.script(RUN, Fault.delay(2.5))  # the first PATCH outlives the 1 s lock; the redelivery's PATCH does not
        (message_id,) = send_events(stack, [{"runId": RUN, "isArchiveEnabled": True}])
        # every delivery is one invocation, one PATCH and one settlement; on a loaded machine a redelivery may lapse too
        assert stack.listener.settlement.wait_for(
            lambda s: s.completed == 1 and s.completed + s.failed_settlements == stack.arm.stats()["patches"], 30
        )
        invocations = stack.arm.stats()["patches"]
        assert invocations >= 2 and stack.servicebus.duplicates_dropped(stack.topic) == invocations - 1
        (record,) = drain(stack, "all-outcomes")
        assert record["body"]["inboundMessageId"] == message_id


# azure-servicebus encodes a Python int as AMQP int (32 bits) and refuses larger ones; httpStatus is 100-599.
_property_values = st.one_of(st.booleans(), st.integers(-(2**31), 2**31 - 1), st.text(max_size=40))


@pytest.fixture(scope="module")
def publisher_and_receiver() -> Iterator[tuple[ServiceBusPublisher, Any]]:
    """The app's publisher (from a connection string) and a subscriber's receiver, held open across examples."""
    from azure.servicebus import ServiceBusClient, ServiceBusReceiveMode

    with ServiceBusEmulator() as broker:
        env = {
            "ServiceBusConnection": broker.connection_string,
            "ARCHIVE_QUEUE_NAME": "acr-archive-events",
            "OUTCOME_TOPIC_NAME": "acr-archive-outcomes",
        }
        publisher = ServiceBusPublisher(servicebus_client_factory(Settings.from_env(env)), "acr-archive-outcomes")
        with (
            ServiceBusClient.from_connection_string(broker.connection_string) as client,
            client.get_subscription_receiver(
                "acr-archive-outcomes", "all-outcomes", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
            ) as receiver,
        ):
            yield publisher, receiver
        publisher.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    properties=st.dictionaries(
        st.sampled_from(["runId", "registryName", "isArchiveEnabled", "httpStatus", "errorCode"]), _property_values
    ),
    correlation=st.text(min_size=1, max_size=128),
)
def test_the_publisher_keeps_every_property_value_and_type_on_the_wire(
    publisher_and_receiver: tuple[ServiceBusPublisher, Any], properties: dict[str, Any], correlation: str
) -> None:
    """ServiceBusPublisher from a connection string: any bool, int or text property and any correlation id arrive unchanged."""
    publisher, receiver = publisher_and_receiver
    outcome = Outcome(
        str(uuid.uuid4()), correlation, "RunArchiveUpdated", {"outcome": "probe", **properties}, {"outcome": "probe"}
    )
    publisher.publish(outcome)
    (message,) = receiver.receive_messages(max_message_count=1, max_wait_time=10)
    received = {
        k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
        for k, v in message.application_properties.items()
    }
    assert received == outcome.application_properties
    assert {k: type(v) for k, v in received.items()} == {k: type(v) for k, v in outcome.application_properties.items()}
    assert (message.message_id, message.correlation_id, message.subject) == (outcome.message_id, correlation, "RunArchiveUpdated")
    assert message.content_type == "application/json"
    assert json.loads(b"".join(message.body)) == outcome.body
