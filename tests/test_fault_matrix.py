"""The fault matrix: every failure the app must survive, and how each one ends (contract §3, §4, §5).

Each row injects one fault into the loopback ARM emulator, the managed-identity endpoint or the outcome
publisher, then hands the queue function a real ServiceBusMessage twice over: on a delivery before
MAX_DELIVERY_COUNT and on the last one. It states what the contract says must happen:

| result        | before the last delivery                 | on the last delivery                              |
|---------------|------------------------------------------|---------------------------------------------------|
| `succeeded`   | `succeeded` published, returns           | the same                                          |
| `final`       | `failed` (retryable false), returns      | the same                                          |
| `transient`   | nothing published, raises (redelivery)   | `failed` (retryable true) published, raises (DLQ) |
| `unpublished` | nothing published, raises (redelivery)   | nothing published, raises (DLQ)                   |

and the state the emulator's run is left in (`isArchiveEnabled`, `provisioningState`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any, Literal

import pytest
from azure.functions.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusConnectionError, ServiceBusError

from emulators import Fault, IdentityEmulator
from scripts.soak import SoakArm
from shared.auth import ManagedIdentityTokens
from shared.errors import ArchiverError, PublishFailed
from shared.publisher import ServiceBusPublisher
from tests.fakes import RecordingServiceBus
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, closed_port_url, functions, read_outcomes

MAX_DELIVERIES = 3
ATTEMPTS = 2
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}
SUBJECTS = {"succeeded": "RunArchiveUpdated", "failed": "RunArchiveUpdateFailed"}
Result = Literal["succeeded", "final", "transient", "unpublished"]


@dataclass
class Harness:
    """What a row may arrange: the emulators, the environment and the outcome topic."""

    arm: SoakArm
    identity: IdentityEmulator
    monkeypatch: pytest.MonkeyPatch
    outcome_file: Path
    bus: RecordingServiceBus | None = None
    _queue: Callable[[ServiceBusMessage], Any] | None = None

    def queue(self) -> Callable[[ServiceBusMessage], Any]:
        """The queue function of an app built from the environment and Service Bus the row arranged."""
        if self._queue is None:
            bus = self.bus
            factories: dict[str, Any] = {"token_factory": _tokens}
            if bus is not None:
                factories["publisher_factory"] = lambda settings: ServiceBusPublisher(bus.client, "outcomes")
            self._queue = functions(**factories)["archive_queue"]
        return self._queue

    def script(self, *faults: Fault) -> None:
        """Queue faults on the run the event names."""
        self.arm.script(SEED_RUN, *faults)

    def use_service_bus(self) -> RecordingServiceBus:
        """Publish outcomes to a recording Service Bus topic instead of OUTCOME_FILE."""
        self.bus = RecordingServiceBus()
        return self.bus

    def published(self) -> list[dict[str, Any]]:
        """Every outcome published so far, as {subject, application_properties, body}."""
        if self.bus is None:
            return read_outcomes(self.outcome_file)
        return [
            {"subject": m.subject, "application_properties": dict(m.application_properties), "body": json.loads(b"".join(m.body))}
            for m in self.bus.messages("outcomes")
        ]


@dataclass(frozen=True)
class Row:
    """One fault, and how the event must end."""

    arrange: Callable[[Harness], Any]
    result: Result
    code: str | None = None
    http_status: int | None = None
    attempts: int = 1
    archived: bool = True
    state: str = "Succeeded"
    token_requests: int | None = None
    env: dict[str, str] = field(default_factory=dict)


def faults(*items: Fault) -> Callable[[Harness], None]:
    return lambda h: h.script(*items)


def every_attempt(fault: Fault) -> Callable[[Harness], None]:
    return faults(*[fault] * ATTEMPTS)


def retry_after_date() -> str:
    """An HTTP-date Retry-After that has already come (it is rendered when the row runs)."""
    return formatdate(time.time() - 1, usegmt=True)


def throttled_until_a_date(times: int) -> Callable[[Harness], None]:
    return lambda h: h.script(*[Fault.status(429, retry_after=retry_after_date())] * times)


def lro(**plan: Any) -> Callable[[Harness], None]:
    return lambda h: h.arm.set_lro(SEED_RUN, **plan)


def lro_then_poll_faults(*poll_faults: Fault) -> Callable[[Harness], None]:
    """ARM accepts the PATCH (201), then the polls meet `poll_faults` (the PATCH itself passes)."""

    def arrange(h: Harness) -> None:
        h.arm.set_lro(SEED_RUN, polls=1, via="async", retry_after=0)
        h.script(Fault.delay(0), *poll_faults)

    return arrange


def arm_unreachable(h: Harness) -> None:
    h.monkeypatch.setenv("ARM_ENDPOINT", closed_port_url())


def identity_down(h: Harness) -> None:
    h.monkeypatch.setenv("IDENTITY_ENDPOINT", closed_port_url() + "/msi/token")


def identity_fails(times: int) -> Callable[[Harness], None]:
    return lambda h: h.identity.fail_next(times, status=500)


def publish_fails(*errors: BaseException) -> Callable[[Harness], None]:
    return lambda h: h.use_service_bus().fail_next(*errors)


def _status_rows() -> dict[str, Row]:
    """408 and the 5xx ARM may answer: retried in-process; persistent, they are transient failures."""
    rows: dict[str, Row] = {}
    for status, code in [(408, "RequestTimeout"), (500, "InternalServerError"), (502, "BadGateway"),
                         (503, "ServiceUnavailable"), (504, "GatewayTimeout")]:
        rows[f"arm-{status}-once"] = Row(faults(Fault.status(status)), "succeeded", http_status=200, attempts=2)
        rows[f"arm-{status}-every-attempt"] = Row(
            every_attempt(Fault.status(status)), "transient", code, status, attempts=2, archived=False
        )
    return rows


def _broken_answer_rows() -> dict[str, Row]:
    """Answers that never arrive whole: retried in-process; persistent, ArmUnavailable.

    A 200 whose body cannot be read carries no httpStatus, like a broken connection: it is unusable,
    and a subscription filter on httpStatus = 200 must not match a failure.
    """
    rows: dict[str, Row] = {}
    for name, fault, status in [
        ("connection-reset", Fault.reset(), None),
        ("reset-mid-response", Fault.reset_mid(), None),
        ("200-body-truncated", Fault.truncated(), None),
        ("200-body-not-json", Fault.not_json(), None),
    ]:
        rows[f"{name}-once"] = Row(faults(fault), "succeeded", http_status=200, attempts=2)
        # The fault answers before the emulator applies the PATCH, so the run is untouched.
        rows[f"{name}-every-attempt"] = Row(every_attempt(fault), "transient", "ArmUnavailable", status, attempts=2, archived=False)
    return rows


READ_TIMEOUT = {"ARM_TIMEOUT_SECONDS": "0.2"}
SLOW_ANSWER = 0.5

ROWS: dict[str, Row] = {
    # -- throttling: Retry-After in seconds, as an HTTP date, or absent (exponential backoff)
    "arm-429-retry-after-seconds-once": Row(faults(Fault.status(429, retry_after="0")), "succeeded", http_status=200, attempts=2),
    "arm-429-retry-after-seconds-every-attempt": Row(
        every_attempt(Fault.status(429, retry_after="0")), "transient", "TooManyRequests", 429, attempts=2, archived=False
    ),
    "arm-429-retry-after-http-date-once": Row(throttled_until_a_date(1), "succeeded", http_status=200, attempts=2),
    "arm-429-retry-after-http-date-every-attempt": Row(
        throttled_until_a_date(ATTEMPTS), "transient", "TooManyRequests", 429, attempts=2, archived=False
    ),
    "arm-429-no-retry-after-once": Row(faults(Fault.status(429)), "succeeded", http_status=200, attempts=2),
    "arm-429-no-retry-after-every-attempt": Row(
        every_attempt(Fault.status(429)), "transient", "TooManyRequests", 429, attempts=2, archived=False
    ),
    # -- 408 and 5xx
    **_status_rows(),
    # -- the network
    "connection-refused": Row(arm_unreachable, "transient", "ArmUnavailable", attempts=2, archived=False),
    **_broken_answer_rows(),
    "read-timeout-once": Row(
        faults(Fault.delay(SLOW_ANSWER)), "succeeded", http_status=200, attempts=2, env=READ_TIMEOUT
    ),
    # Both PATCHes time out on the client, yet both land on the server: the run is archived all the same.
    "read-timeout-every-attempt": Row(
        every_attempt(Fault.delay(SLOW_ANSWER)), "transient", "ArmUnavailable", attempts=2, env=READ_TIMEOUT
    ),
    # -- long-running updates (201)
    "201-then-poll-error-once": Row(lro_then_poll_faults(Fault.status(503, retry_after="0")), "succeeded", http_status=201),
    "201-then-poll-errors-every-attempt": Row(
        lro_then_poll_faults(*[Fault.status(503, retry_after="0")] * ATTEMPTS),
        "transient", "ServiceUnavailable", 503, state="Updating",
    ),
    "201-then-poll-connection-reset": Row(lro_then_poll_faults(Fault.reset()), "succeeded", http_status=201),
    "lro-ends-failed": Row(
        lro(polls=1, final="Failed", retry_after=0), "final", "LroFailed", 201, archived=False, state="Failed"
    ),
    "lro-ends-canceled": Row(
        lro(polls=1, final="Canceled", via="location", retry_after=0), "final", "LroFailed", 201, archived=False, state="Canceled"
    ),
    "lro-never-finishes": Row(
        lro(polls=-1, via="run"), "transient", "LroTimeout", 201, state="Updating", env={"LRO_TIMEOUT_SECONDS": "0.3"}
    ),
    # -- tokens (azure-identity retries the identity endpoint itself for about 5 s before giving up)
    "identity-endpoint-down": Row(identity_down, "transient", "TokenUnavailable", attempts=0, archived=False),
    "identity-endpoint-500": Row(identity_fails(10), "transient", "TokenUnavailable", attempts=0, archived=False, token_requests=4),
    "identity-endpoint-500-once": Row(identity_fails(1), "succeeded", http_status=200, token_requests=2),
    "arm-401-refresh-then-retry": Row(
        faults(Fault.status(401)), "succeeded", http_status=200, attempts=2, token_requests=2
    ),
    "arm-401-again-after-refresh": Row(
        every_attempt(Fault.status(401)), "final", "InvalidAuthenticationToken", 401, attempts=2, archived=False, token_requests=2
    ),
    # -- publishing the outcome
    "publish-connection-dropped-once": Row(
        publish_fails(ServiceBusConnectionError(message="idle link detached")), "succeeded", http_status=200
    ),
    "publish-refused-once": Row(publish_fails(ServiceBusError(message="entity disabled")), "unpublished"),
    "publish-fails-every-time": Row(
        publish_fails(*[ServiceBusConnectionError(message="namespace unreachable")] * 10), "unpublished"
    ),
}


def message(delivery_count: int, message_id: str | None = None) -> ServiceBusMessage:
    """A real azure.functions ServiceBusMessage carrying EVENT, as the host hands it over."""
    return ServiceBusMessage(
        body=json.dumps(EVENT).encode(),
        message_id=message_id or str(uuid.uuid4()),
        delivery_count=delivery_count,
        application_properties={},
        user_properties={},
    )


def deliver(queue: Callable[[ServiceBusMessage], Any], inbound: ServiceBusMessage) -> BaseException | None:
    """Run the queue function; the exception it raised (Service Bus would abandon the message), or None."""
    try:
        queue(inbound)
    except Exception as raised:  # noqa: BLE001 - anything raised leaves the message to Service Bus
        return raised
    return None


def _tokens(settings: Any) -> ManagedIdentityTokens:
    """azure-identity retries a failing identity endpoint as in Azure, without its ~4.8 s of backoff."""
    return ManagedIdentityTokens.for_settings(settings.azure_client_id, settings.arm_scope, retry_backoff_factor=0)


@pytest.fixture
def arm(identity: IdentityEmulator) -> Iterator[SoakArm]:
    """The ARM emulator, also telling when it answers no request for a run (the soak's; see SoakArm.quiet)."""
    with SoakArm(token_validator=identity.is_valid) as emulator:
        yield emulator


@pytest.fixture
def harness(app_env: dict[str, str], arm: SoakArm, identity: IdentityEmulator,
            monkeypatch: pytest.MonkeyPatch, outcome_file: Path) -> Harness:
    """Small budgets: two tries per request and at most 50 ms of backoff, three deliveries."""
    monkeypatch.setenv("MAX_DELIVERY_COUNT", str(MAX_DELIVERIES))
    monkeypatch.setenv("ARM_MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("ARM_RETRY_MAX_SECONDS", "0.05")
    return Harness(arm, identity, monkeypatch, outcome_file)


def _assert_outcome(record: dict[str, Any], row: Row, kind: str, delivery: int, retryable: bool | None) -> None:
    body, properties = record["body"], record["application_properties"]
    assert record["subject"] == SUBJECTS[kind]
    assert body["outcome"] == properties["outcome"] == kind
    assert body["request"] == EVENT and body["deliveryCount"] == delivery and body["attempts"] == row.attempts
    assert properties.get("httpStatus") == row.http_status
    if kind == "succeeded":
        assert body["error"] is None and "errorCode" not in properties
        assert body["run"]["properties"]["isArchiveEnabled"] is True
        return
    assert body["run"] is None
    assert body["error"]["code"] == properties["errorCode"] == row.code
    assert body["error"]["httpStatus"] == row.http_status
    assert body["error"]["retryable"] is retryable


@pytest.mark.parametrize("delivery", [1, MAX_DELIVERIES], ids=["before-last-delivery", "last-delivery"])
@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_each_fault_ends_as_the_contract_says(row: Row, delivery: int, harness: Harness) -> None:
    """Raised or returned, the outcome published (if any) with its code and status, and the run's state."""
    # given the row's fault
    for name, value in row.env.items():
        harness.monkeypatch.setenv(name, value)
    row.arrange(harness)
    last = delivery == MAX_DELIVERIES
    # when the message is delivered
    raised = deliver(harness.queue(), message(delivery))
    # then it settles as the contract says
    published = harness.published()
    if row.result in ("succeeded", "final"):
        assert raised is None, raised
        (record,) = published
        _assert_outcome(record, row, "succeeded" if row.result == "succeeded" else "failed", delivery, False)
    elif row.result == "transient":
        assert isinstance(raised, ArchiverError) and raised.retryable, raised
        assert (raised.code, raised.attempts) == (row.code, row.attempts)
        if last:
            (record,) = published
            _assert_outcome(record, row, "failed", delivery, True)
        else:
            assert published == []
    else:
        assert isinstance(raised, PublishFailed), raised
        assert published == []
    # and the run is left as ARM would leave it, once a timed-out PATCH that still lands has landed
    assert harness.arm.quiet(SEED_RUN)
    run = harness.arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)
    assert (run["properties"]["isArchiveEnabled"], run["properties"]["provisioningState"]) == (row.archived, row.state)
    if row.token_requests is not None:
        assert harness.identity.calls == row.token_requests


REDELIVERED = [name for name, row in ROWS.items() if row.result in ("transient", "unpublished") and "every-attempt" in name]
REDELIVERED += ["publish-refused-once"]


@pytest.mark.parametrize("name", REDELIVERED)
def test_a_fault_that_has_passed_is_healed_by_redelivery(name: str, harness: Harness) -> None:
    """What raised for redelivery succeeds on the next delivery, with exactly one outcome for the message."""
    # given a fault that lasts one delivery
    row = ROWS[name]
    for setting, value in row.env.items():
        harness.monkeypatch.setenv(setting, value)
    row.arrange(harness)
    # when the message fails once, then Service Bus redelivers it
    queue = harness.queue()
    first = deliver(queue, message(1, "m-1"))
    second = deliver(queue, message(2, "m-1"))
    # then the redelivery succeeds and only its outcome is published
    assert first is not None and second is None
    (record,) = harness.published()
    assert record["body"]["outcome"] == "succeeded" and record["body"]["deliveryCount"] == 2
    assert record["body"]["inboundMessageId"] == "m-1"
    assert harness.arm.quiet(SEED_RUN)  # a timed-out PATCH still lands after the client gave up
    assert harness.arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)["properties"]["isArchiveEnabled"] is True


def test_the_closed_port_refuses_and_no_one_else_can_take_it() -> None:
    """closed_port_url: connecting is refused, and the port stays held (binding it again fails): it never becomes a listener."""
    import socket

    port = int(closed_port_url().rsplit(":", 1)[1])
    with socket.socket() as client, pytest.raises(ConnectionRefusedError):
        client.connect(("127.0.0.1", port))
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))
    assert closed_port_url() == f"http://127.0.0.1:{port}"
