"""Outcome publishers (contract §4): Service Bus properties, one sender, thread safety, reconnects, the file sink."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.servicebus.exceptions import ServiceBusConnectionError, ServiceBusError

from shared.arm import ArmResult
from shared.errors import InvalidEvent, PublishFailed
from shared.events import ArchiveRequest
from shared.outcome import Inbound, Outcome, build_outcome
from shared.publisher import FilePublisher, ServiceBusPublisher
from tests.fakes import RecordingServiceBus
from tests.strict import strict_json, strict_lines

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
REQUEST = ArchiveRequest(SUB, "myResourceGroup", "myRegistry", "cab7", True)
RUN = {"id": "/subscriptions/x/runs/cab7", "name": "cab7", "properties": {"isArchiveEnabled": True, "provisioningState": "Succeeded"}}


def _succeeded(message_id: str = "m-1") -> Outcome:
    inbound = Inbound(source="servicebus", correlation_id="corr-1", message_id=message_id, delivery_count=1, raw="{}")
    return build_outcome(inbound, REQUEST, result=ArmResult(RUN, 200, 1, "req-1"))


def test_message_carries_the_contract_properties() -> None:
    """Subject, ids, content type and the filterable application properties, with their JSON types."""
    bus = RecordingServiceBus()
    publisher = ServiceBusPublisher(bus.client, "outcomes")
    publisher.publish(_succeeded())
    (sent,) = bus.sent
    message = sent.message
    assert sent.entity == "outcomes"
    assert message.subject == "RunArchiveUpdated"
    assert message.content_type == "application/json"
    assert message.correlation_id == "corr-1"
    assert message.message_id == "m-1:outcome"
    assert message.application_properties == {
        "outcome": "succeeded", "source": "servicebus", "registryName": "myRegistry", "runId": "cab7",
        "isArchiveEnabled": True, "httpStatus": 200,
    }
    body = json.loads(b"".join(message.body))
    assert body["outcome"] == "succeeded" and body["run"] == RUN and body["attempts"] == 1


def test_rejected_message_leaves_unknown_properties_out() -> None:
    """No registryName, runId or httpStatus when the event never named a run nor reached ARM."""
    bus = RecordingServiceBus()
    error = InvalidEvent("runId", "required")
    outcome = build_outcome(Inbound(source="http", correlation_id="c", raw='{"x":1}'), None, error=error)
    ServiceBusPublisher(bus.client, "outcomes").publish(outcome)
    message = bus.sent[0].message
    assert message.subject == "RunArchiveEventRejected"
    assert message.application_properties == {"outcome": "rejected", "source": "http", "errorCode": "InvalidEvent"}


def test_one_sender_serves_a_hundred_publishes() -> None:
    """The client and sender are opened once, lazily, and reused."""
    bus = RecordingServiceBus()
    publisher = ServiceBusPublisher(bus.client, "outcomes")
    assert bus.clients_created == 0
    for n in range(100):
        publisher.publish(_succeeded(f"m-{n}"))
    assert (bus.clients_created, bus.senders_created, len(bus.sent)) == (1, 1, 100)


def test_sixteen_threads_never_share_the_sender_at_once() -> None:
    """Sends are serialized: the sender is never used by two threads at the same time, and nothing is lost."""
    bus = RecordingServiceBus(send_delay=0.002)
    publisher = ServiceBusPublisher(bus.client, "outcomes")
    start = threading.Barrier(16)

    def publish_many(worker: int) -> None:
        start.wait()
        for n in range(10):
            publisher.publish(_succeeded(f"w{worker}-{n}"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(publish_many, range(16)))
    assert bus.concurrent_use == 0
    assert bus.senders_created == 1
    ids = [m.message_id for m in bus.messages()]
    assert len(ids) == 160 and len(set(ids)) == 160


def test_a_dropped_connection_reconnects_once() -> None:
    """After a connection error the client is rebuilt and the same message is sent again, once."""
    bus = RecordingServiceBus()
    publisher = ServiceBusPublisher(bus.client, "outcomes")
    publisher.publish(_succeeded("first"))
    bus.fail_next(ServiceBusConnectionError(message="idle link detached"))
    publisher.publish(_succeeded("second"))
    assert [m.message_id for m in bus.messages()] == ["first:outcome", "second:outcome"]
    assert (bus.clients_created, bus.senders_created) == (2, 2)


def test_a_connection_that_stays_down_raises_publish_failed() -> None:
    """Two connection errors in a row: PublishFailed, so the queue message is redelivered."""
    bus = RecordingServiceBus()
    publisher = ServiceBusPublisher(bus.client, "outcomes")
    bus.fail_next(ServiceBusConnectionError(message="down"), ServiceBusConnectionError(message="still down"))
    with pytest.raises(PublishFailed):
        publisher.publish(_succeeded())
    assert bus.sent == []
    publisher.publish(_succeeded("later"))
    assert [m.message_id for m in bus.messages()] == ["later:outcome"]


def test_other_service_bus_errors_are_not_retried() -> None:
    """A refusal that is not a dropped connection fails at once."""
    bus = RecordingServiceBus()
    bus.fail_next(ServiceBusError(message="entity disabled"))
    with pytest.raises(PublishFailed, match="ServiceBusError"):
        ServiceBusPublisher(bus.client, "outcomes").publish(_succeeded())
    assert bus.clients_created == 1


def test_file_sink_appends_one_json_line_per_outcome(tmp_path: Path) -> None:
    """OUTCOME_FILE lines hold message_id, correlation_id, subject, content_type, application_properties and body."""
    path = tmp_path / "outcomes.jsonl"
    sink = FilePublisher(str(path))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: sink.publish(_succeeded(f"m-{n}")), range(200)))
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    record = json.loads(lines[0])
    assert set(record) == {"message_id", "correlation_id", "subject", "content_type", "application_properties", "body"}
    assert record["content_type"] == "application/json" and record["body"]["outcome"] == "succeeded"


def test_file_sink_failure_raises_publish_failed(tmp_path: Path) -> None:
    """An unwritable OUTCOME_FILE is a publish failure, not a crash."""
    with pytest.raises(PublishFailed, match="OUTCOME_FILE"):
        FilePublisher(str(tmp_path / "missing-dir" / "o.jsonl")).publish(_succeeded())


HOSTILE_RUN = {**RUN, "tags": {"nan": float("nan"), "inf": float("-inf"), "lone": "\ud800", "line": "a\u2028b"}}
"""What json.loads hands over of a Run holding NaN, -Infinity and a \\ud800 escape."""


def test_both_sinks_write_a_hostile_run_as_strict_json(tmp_path: Path) -> None:
    """NaN/Infinity become null, a lone surrogate U+FFFD, on the topic and in OUTCOME_FILE (one ASCII line)."""
    inbound = Inbound(source="servicebus", correlation_id="corr-1", message_id="m-1", delivery_count=1, raw="{}")
    outcome = build_outcome(inbound, REQUEST, result=ArmResult(HOSTILE_RUN, 200, 1, "req-1"))
    bus, path = RecordingServiceBus(), tmp_path / "o.jsonl"
    ServiceBusPublisher(bus.client, "outcomes").publish(outcome)
    FilePublisher(str(path)).publish(outcome)
    on_topic = strict_json(b"".join(bus.messages()[0].body))
    (line,) = strict_lines(path)
    expected = {"nan": None, "inf": None, "lone": "\ufffd", "line": "a\u2028b"}
    assert on_topic["run"]["tags"] == expected == line["body"]["run"]["tags"]
