"""The Service Bus queue trigger (contract §4, §5), driven through app.get_functions().

Settlement: returning completes the message; raising leaves it to Service Bus (redelivery, then the
dead-letter queue after MAX_DELIVERY_COUNT deliveries).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, Fault, IdentityEmulator
from shared.errors import ArchiverError, ConfigurationError, PublishFailed
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, read_outcomes

Functions = dict[str, Callable[..., Any]]
MAX_DELIVERIES = 3
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}
BODY_KEYS = {
    "outcome", "source", "request", "run", "error", "attempts", "correlationId",
    "inboundMessageId", "deliveryCount", "rawEvent", "completedAt",
}


def message(body: Any, *, delivery_count: int = 1, message_id: str | None = None, correlation_id: str | None = None) -> ServiceBusMessage:
    """A real azure.functions ServiceBusMessage as the host would hand it over."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ServiceBusMessage(
        body=raw,
        message_id=message_id or str(uuid.uuid4()),
        correlation_id=correlation_id,
        delivery_count=delivery_count,
        application_properties={},
        user_properties={},
    )


@pytest.fixture
def queue(functions: Functions, monkeypatch: pytest.MonkeyPatch) -> Callable[[ServiceBusMessage], Any]:
    """The queue function, with a small delivery limit and fast retries."""
    monkeypatch.setenv("MAX_DELIVERY_COUNT", str(MAX_DELIVERIES))
    monkeypatch.setenv("ARM_MAX_ATTEMPTS", "2")
    return lambda msg: functions["archive_queue"](msg)  # looked up when called: the test may still set settings


def test_a_valid_event_archives_the_run_and_publishes_succeeded(queue: Any, arm: ArmEmulator, outcome_file: Path) -> None:
    """The run's isArchiveEnabled changes in ARM and one succeeded outcome carries the final Run."""
    inbound = message(EVENT, message_id="msg-1", correlation_id="corr-1", delivery_count=2)
    assert queue(inbound) is None
    run = arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)
    assert run["properties"]["isArchiveEnabled"] is True
    (record,) = read_outcomes(outcome_file)
    body = record["body"]
    assert set(body) == BODY_KEYS
    assert record["subject"] == "RunArchiveUpdated" and record["content_type"] == "application/json"
    assert record["correlation_id"] == "corr-1" and record["message_id"] == "msg-1:outcome"
    assert body["outcome"] == "succeeded" and body["source"] == "servicebus"
    assert body["run"] == run and body["error"] is None and body["rawEvent"] is None
    assert body["request"] == EVENT
    assert (body["attempts"], body["inboundMessageId"], body["deliveryCount"], body["correlationId"]) == (1, "msg-1", 2, "corr-1")
    assert body["completedAt"].endswith("Z")
    assert record["application_properties"] == {
        "outcome": "succeeded", "source": "servicebus", "registryName": REGISTRY, "runId": SEED_RUN,
        "isArchiveEnabled": True, "httpStatus": 200,
    }


def test_the_correlation_id_defaults_to_the_message_id(queue: Any, outcome_file: Path) -> None:
    """Without an inbound correlation id, the message id correlates."""
    queue(message(EVENT, message_id="only-id"))
    (record,) = read_outcomes(outcome_file)
    assert record["correlation_id"] == "only-id" == record["body"]["correlationId"]


def test_a_redelivered_message_gets_the_same_outcome_message_id(queue: Any, outcome_file: Path) -> None:
    """The outcome id is derived from the inbound id, so topic duplicate detection can drop repeats."""
    queue(message(EVENT, message_id="same"))
    queue(message(EVENT, message_id="same", delivery_count=2))
    queue(message(EVENT, message_id="x" * 128))
    first, second, long = read_outcomes(outcome_file)
    assert first["message_id"] == second["message_id"]
    assert len(long["message_id"]) <= 128


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        ({**EVENT, "runId": "../x"}, "runId"),
        ({**EVENT, "isArchiveEnabled": "true"}, "isArchiveEnabled"),
        ([EVENT], "event"),
    ],
    ids=["not-json", "bad-run-id", "string-boolean", "array"],
)
@pytest.mark.parametrize("delivery", [1, MAX_DELIVERIES], ids=["first-delivery", "last-delivery"])
def test_an_invalid_event_is_rejected_and_completed(queue: Any, arm: ArmEmulator, outcome_file: Path, body: Any, field: str, delivery: int) -> None:
    """Rejected: the outcome names the field and carries the raw event; the message completes; ARM is not called."""
    inbound = message(body, delivery_count=delivery)
    assert queue(inbound) is None
    (record,) = read_outcomes(outcome_file)
    assert record["subject"] == "RunArchiveEventRejected"
    assert record["body"]["error"]["code"] == "InvalidEvent" and field in record["body"]["error"]["message"]
    assert record["body"]["rawEvent"] == inbound.get_body().decode()
    assert record["body"]["request"] is None and record["body"]["attempts"] == 0
    assert arm.stats()["requests"] == 0


def test_a_registry_not_allowed_is_rejected_without_calling_arm(queue: Any, arm: ArmEmulator, outcome_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ALLOWED_REGISTRIES refuses other registries before ARM."""
    monkeypatch.setenv("ALLOWED_REGISTRIES", "someOtherRegistry")
    assert queue(message(EVENT)) is None
    (record,) = read_outcomes(outcome_file)
    assert record["body"]["outcome"] == "rejected" and record["body"]["error"]["code"] == "RegistryNotAllowed"
    assert record["body"]["request"] == EVENT
    assert arm.stats()["requests"] == 0


def test_a_huge_rejected_event_keeps_at_most_64_kib(queue: Any, outcome_file: Path) -> None:
    """rawEvent is cut to 64 KiB."""
    inbound = message({"junk": "x" * 100_000})
    queue(inbound)
    (record,) = read_outcomes(outcome_file)
    raw = record["body"]["rawEvent"]
    assert 60 * 1024 < len(raw.encode()) <= 64 * 1024
    assert inbound.get_body().decode().startswith(raw)


def test_a_rejected_event_of_escapes_stays_within_64_kib_as_json(queue: Any, outcome_file: Path) -> None:
    """Control characters expand six-fold in JSON; rawEvent is cut so its JSON form fits 64 KiB too."""
    body = b"\x01" * 100_000
    queue(message(body))
    (record,) = read_outcomes(outcome_file)
    raw = record["body"]["rawEvent"]
    assert 0 < len(json.dumps(raw)) - 2 <= 64 * 1024 and body.decode().startswith(raw)


@pytest.mark.parametrize(
    ("arrange", "code"),
    [
        (lambda arm: None, "ResourceNotFound"),
        (lambda arm: arm.script(SEED_RUN, Fault.status(409, error_code="Conflict")), "Conflict"),
        (lambda arm: arm.set_lro(SEED_RUN, polls=1, final="Failed"), "LroFailed"),
        (lambda arm: arm.set_lro(SEED_RUN, polls=1, final="Canceled"), "LroFailed"),
    ],
    ids=["arm-404", "arm-409", "lro-failed", "lro-canceled"],
)
@pytest.mark.parametrize("delivery", [1, MAX_DELIVERIES], ids=["first-delivery", "last-delivery"])
def test_a_final_failure_publishes_failed_and_completes(queue: Any, arm: ArmEmulator, outcome_file: Path, arrange: Any, code: str, delivery: int) -> None:
    """Final ARM errors and failed updates: `failed` (retryable false), message completed."""
    arrange(arm)
    event = EVENT if code != "ResourceNotFound" else {**EVENT, "runId": "missing"}
    assert queue(message(event, delivery_count=delivery)) is None
    (record,) = read_outcomes(outcome_file)
    body = record["body"]
    assert record["subject"] == "RunArchiveUpdateFailed"
    assert body["outcome"] == "failed" and body["error"]["code"] == code and body["error"]["retryable"] is False
    assert record["application_properties"]["errorCode"] == code
    assert body["error"]["httpStatus"] == record["application_properties"]["httpStatus"]


def _transient(kind: str, arm: ArmEmulator, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "arm-503":
        arm.script(SEED_RUN, *[Fault.status(503, retry_after="0")] * 2)
    elif kind == "arm-429-beyond-budget":
        arm.script(SEED_RUN, Fault.status(429, retry_after="3600"))
    elif kind == "lro-timeout":
        monkeypatch.setenv("LRO_TIMEOUT_SECONDS", "0.3")
        arm.set_lro(SEED_RUN, polls=-1, via="async")
    elif kind == "token-unavailable":
        identity.fail_next(100, status=500)


TRANSIENT = {
    "arm-503": "ServiceUnavailable",
    "arm-429-beyond-budget": "TooManyRequests",
    "lro-timeout": "LroTimeout",
    "token-unavailable": "TokenUnavailable",
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_a_transient_failure_before_the_last_delivery_raises_and_publishes_nothing(
    queue: Any, arm: ArmEmulator, identity: IdentityEmulator, outcome_file: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Service Bus will redeliver: no outcome yet."""
    _transient(kind, arm, identity, monkeypatch)
    with pytest.raises(ArchiverError) as caught:
        queue(message(EVENT, delivery_count=MAX_DELIVERIES - 1))
    assert caught.value.retryable and caught.value.code == TRANSIENT[kind]
    assert read_outcomes(outcome_file) == []


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_a_transient_failure_on_the_last_delivery_publishes_failed_and_raises(
    queue: Any, arm: ArmEmulator, identity: IdentityEmulator, outcome_file: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Dead-lettered next, so the outcome says why (retryable true)."""
    _transient(kind, arm, identity, monkeypatch)
    with pytest.raises(ArchiverError):
        queue(message(EVENT, delivery_count=MAX_DELIVERIES))
    (record,) = read_outcomes(outcome_file)
    assert record["body"]["outcome"] == "failed"
    assert record["body"]["error"]["code"] == TRANSIENT[kind] and record["body"]["error"]["retryable"] is True


def test_redelivery_after_a_transient_failure_succeeds(queue: Any, arm: ArmEmulator, outcome_file: Path) -> None:
    """The first delivery raises; the second archives the run and publishes once."""
    arm.script(SEED_RUN, *[Fault.status(503, retry_after="0")] * 2)
    with pytest.raises(ArchiverError):
        queue(message(EVENT, message_id="m", delivery_count=1))
    queue(message(EVENT, message_id="m", delivery_count=2))
    (record,) = read_outcomes(outcome_file)
    assert record["body"]["outcome"] == "succeeded" and record["body"]["deliveryCount"] == 2


@pytest.mark.parametrize("delivery", [1, MAX_DELIVERIES], ids=["first-delivery", "last-delivery"])
def test_a_failed_publish_raises_for_redelivery(queue: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, delivery: int) -> None:
    """An outcome that cannot be published is never dropped: the message is redelivered (the PATCH is idempotent)."""
    monkeypatch.setenv("OUTCOME_FILE", str(tmp_path / "no-such-dir" / "outcomes.jsonl"))
    with pytest.raises(PublishFailed):
        queue(message(EVENT, delivery_count=delivery))
    assert arm.stats()["patches"] == 1


def test_a_missing_outcome_destination_raises_naming_it(queue: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """No OUTCOME_FILE and no topic: a ConfigurationError naming the setting, and the message stays."""
    monkeypatch.delenv("OUTCOME_FILE")
    with pytest.raises(ConfigurationError, match="OUTCOME_TOPIC_NAME"):
        queue(message(EVENT))
    assert arm.stats()["requests"] == 0


@pytest.mark.parametrize("length", [121, 124, 128], ids=["121-characters", "124-characters", "128-characters"])
def test_a_redelivered_message_with_a_long_id_gets_the_same_outcome_id(queue: Any, outcome_file: Path, length: int) -> None:
    """Past 120 characters `<id>:outcome` no longer fits 128; the hashed id is still the same on every delivery."""
    long_id, other_id = "m" * length, "m" * (length - 1) + "n"
    queue(message(EVENT, message_id=long_id))
    queue(message(EVENT, message_id=long_id, delivery_count=2))
    queue(message(EVENT, message_id=other_id))
    first, again, other = read_outcomes(outcome_file)
    assert first["message_id"] == again["message_id"] != other["message_id"]
    assert all(len(record["message_id"]) <= 128 for record in (first, again, other))
    assert first["body"]["inboundMessageId"] == long_id


HOSTILE_PROPERTIES = {
    "forged-10kb-original-id": {"originalMessageId": "x" * 10_240},
    "original-id-129": {"originalMessageId": "x" * 129},
    "original-id-bytes": {"originalMessageId": b"forged"},
    "original-id-number": {"originalMessageId": 7},
    "count-string-inf": {"rescheduleCount": "inf"},
    "count-float-inf": {"rescheduleCount": float("inf")},
    "count-nan": {"rescheduleCount": float("nan")},
    "count-float": {"rescheduleCount": 1.5},
    "count-bool": {"rescheduleCount": True},
    "count-negative": {"rescheduleCount": -3},
    "count-googol": {"rescheduleCount": 10**100},
    "count-bytes": {"rescheduleCount": b"2"},
}


@pytest.mark.parametrize("properties", HOSTILE_PROPERTIES.values(), ids=HOSTILE_PROPERTIES.keys())
def test_forged_lineage_properties_are_ignored(queue: Any, outcome_file: Path, properties: dict[str, Any]) -> None:
    """originalMessageId / rescheduleCount of the wrong shape change nothing: the message's own id is the inbound id."""
    inbound = ServiceBusMessage(
        body=json.dumps(EVENT).encode(), message_id="own-id", delivery_count=1, application_properties=properties, user_properties={},
    )
    assert queue(inbound) is None
    (record,) = read_outcomes(outcome_file)
    assert record["body"]["outcome"] == "succeeded"
    assert record["body"]["inboundMessageId"] == "own-id" and record["message_id"] == "own-id:outcome"


@pytest.mark.parametrize("given", ["c" * 129, "é" * 300], ids=["129-ascii", "300-non-ascii"])
def test_a_correlation_id_past_service_bus_limit_is_cut_to_128_in_the_outcome(queue: Any, outcome_file: Path, given: str) -> None:
    """The outcome's correlation id is what Service Bus can carry: the inbound one cut to 128 characters."""
    queue(message(EVENT, correlation_id=given))
    (record,) = read_outcomes(outcome_file)
    assert record["correlation_id"] == record["body"]["correlationId"] == given[:128]
