"""End to end through a real Service Bus: the Azure Service Bus emulator or a namespace (`pytest -m live`).

Never part of `make test` (pyproject's addopts deselect the `live` marker). The tests run only when a
connection is configured, and are skipped with the reason otherwise:

- `ServiceBusConnection`: a connection string, e.g. the emulator's
  (`Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;`);
- or `ServiceBusConnection__fullyQualifiedNamespace` (signed in with `az login`; Data Sender and Receiver).

`ARCHIVE_QUEUE_NAME`, `OUTCOME_TOPIC_NAME` and `OUTCOME_SUBSCRIPTION_NAME` default to the names of
local.settings.sample.json and infra/main.bicep. The path: `acr-archiver send` puts an event for a run
that does not exist on the queue; the app turns it into a `failed` outcome (ARM answers 404); `acr-archiver
outcomes` receives it from the `failed-outcomes` subscription (filter `outcome = 'failed'`).

`LIVE_APP=in-process` (default): the test plays the Functions host: it receives the message from the
queue, calls the real `archive_queue` function (which publishes to the real topic) against the local ARM
emulator, and completes the message. Nothing else may be consuming the queue.
`LIVE_APP=running`: an app already processes the queue (`func start`, or the deployed app); the test
only sends and waits. `LIVE_REGISTRY_ID` names a registry the app may update (its resource id).
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage as FunctionsMessage

from emulators import ArmEmulator
from archiver_cli import main
from archiver_cli.context import DEFAULT_SUBSCRIPTION, Context, load_settings
from shared.app import build_app
from tests.transport import FixedTokens
from tests.support import GROUP, REGISTRY, SUB, isolate_environment

pytestmark = pytest.mark.live

# Read once, at import: fixtures of other tests clear these names from the environment.
CONNECTION = os.environ.get("ServiceBusConnection") or None
NAMESPACE = os.environ.get("ServiceBusConnection__fullyQualifiedNamespace") or None
QUEUE = os.environ.get("ARCHIVE_QUEUE_NAME") or "acr-archive-events"
TOPIC = os.environ.get("OUTCOME_TOPIC_NAME") or "acr-archive-outcomes"
SUBSCRIPTION = os.environ.get("OUTCOME_SUBSCRIPTION_NAME") or DEFAULT_SUBSCRIPTION
MODE = os.environ.get("LIVE_APP", "in-process")
REGISTRY_ID = os.environ.get("LIVE_REGISTRY_ID") or None
TIMEOUT = float(os.environ.get("LIVE_TIMEOUT_SECONDS") or "120")

SKIP_REASON = (
    "live tests need a Service Bus: set ServiceBusConnection (e.g. the emulator's connection string, "
    "see README 'Local Service Bus emulator') or ServiceBusConnection__fullyQualifiedNamespace"
)


def live_settings() -> dict[str, str]:
    """The Service Bus settings of the live run, with the app's setting names."""
    connection = {"ServiceBusConnection": CONNECTION} if CONNECTION else {"ServiceBusConnection__fullyQualifiedNamespace": NAMESPACE or ""}
    return {**connection, "ARCHIVE_QUEUE_NAME": QUEUE, "OUTCOME_TOPIC_NAME": TOPIC}


@pytest.fixture(autouse=True)
def _needs_a_service_bus() -> None:
    if not (CONNECTION or NAMESPACE):
        pytest.skip(SKIP_REASON)
    if MODE not in ("in-process", "running"):
        pytest.skip(f"LIVE_APP must be in-process or running, not {MODE!r}")


def cli(*argv: str) -> tuple[int, str, str]:
    """The operator CLI against the live Service Bus."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), env=live_settings(), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def app_in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real function app wired to the live Service Bus and to a local ARM emulator; yields archive_queue."""
    with ArmEmulator() as arm:
        isolate_environment(monkeypatch, {**live_settings(), "ARM_ENDPOINT": arm.url, "ARM_MAX_ATTEMPTS": "1"})
        # The local ARM emulator, started without a validator, accepts any bearer token.
        app = build_app(dict(os.environ), token_factory=lambda settings: FixedTokens("live-test-token"))
        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
        try:
            yield functions["archive_queue"]
        finally:
            app.close()


def deliver_to_function(message_id: str, archive_queue: Any) -> None:
    """Do what the Functions host does for one message: receive it, call the function, complete it."""
    ctx = Context(load_settings(live_settings()), io.StringIO(), io.StringIO())
    deadline = time.monotonic() + TIMEOUT
    with ctx.queue_client() as client, client.get_queue_receiver(queue_name=QUEUE, max_wait_time=5) as receiver:
        while time.monotonic() < deadline:
            for received in receiver.receive_messages(max_message_count=10, max_wait_time=5):
                if received.message_id != message_id:
                    receiver.abandon_message(received)  # not ours: leave it
                    continue
                archive_queue(
                    FunctionsMessage(
                        body=b"".join(received.body),
                        message_id=received.message_id,
                        correlation_id=received.correlation_id,
                        delivery_count=received.delivery_count,
                        application_properties={},
                        user_properties={},
                    )
                )
                receiver.complete_message(received)
                return
    raise AssertionError(f"message {message_id} did not arrive on {QUEUE} within {TIMEOUT:g} s")


def wait_for_outcome(correlation_id: str) -> dict[str, Any]:
    """Receive outcomes from the subscription (with the CLI) until the one for `correlation_id` arrives."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        status, out, err = cli("outcomes", "--subscription", SUBSCRIPTION, "-o", "json", "--wait", "5", "--max", "50")
        assert status == 0, err
        for line in out.splitlines():
            record = json.loads(line)
            if record["correlation_id"] == correlation_id:
                return record
    raise AssertionError(f"no outcome for {correlation_id} on {TOPIC}/{SUBSCRIPTION} within {TIMEOUT:g} s")


def test_an_event_on_the_queue_comes_back_as_a_failed_outcome_on_the_subscription(request: pytest.FixtureRequest) -> None:
    """send → queue → the app → ARM 404 → outcome topic → failed-outcomes subscription → outcomes."""
    run_id = f"live-{uuid.uuid4().hex[:12]}"
    if MODE == "running":
        if not REGISTRY_ID:
            pytest.skip("LIVE_APP=running needs LIVE_REGISTRY_ID, the resource id of a registry the app may update")
        event: dict[str, Any] = {"runResourceId": f"{REGISTRY_ID.rstrip('/')}/runs/{run_id}", "isArchiveEnabled": True}
    else:
        event = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": True}

    status, out, err = cli("send", json.dumps(event), "-o", "json")
    assert status == 0, err
    (sent,) = [json.loads(line) for line in out.splitlines()]
    message_id = sent["messageId"]

    if MODE == "in-process":
        deliver_to_function(message_id, request.getfixturevalue("app_in_process"))

    record = wait_for_outcome(message_id)
    body = record["body"]
    assert record["subject"] == "RunArchiveUpdateFailed" and record["message_id"] == f"{message_id}:outcome"
    assert record["application_properties"]["outcome"] == "failed"
    assert record["application_properties"]["runId"] == run_id
    assert body["outcome"] == "failed" and body["source"] == "servicebus"
    assert body["request"]["runId"] == run_id and body["inboundMessageId"] == message_id
    assert body["error"]["retryable"] is False
    if MODE == "in-process":
        assert body["error"]["code"] == "ResourceNotFound" and body["error"]["httpStatus"] == 404


def test_the_dead_letter_queue_can_be_listed() -> None:
    """`acr-archiver dead-letters list` browses the real dead-letter sub-queue."""
    status, _, err = cli("dead-letters", "list", "--max", "5", "--wait", "1")
    assert status == 0, err
