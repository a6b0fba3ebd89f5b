"""`python -m emulators.stack`: the whole local system in one process, driven from outside as a script would.

The stack is started with `--json --free-ports`; these tests read its one JSON line, then talk to it only
through what that line says: HTTP with the function key, and the real azure-servicebus client.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from emulators.stack import DEFAULT_PORTS
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB

ROOT = Path(__file__).resolve().parents[1]
START_LIMIT = 90.0  # seconds the stack may take to announce itself before the test fails


class Stack:
    """A running stack subprocess and the endpoints it announced."""

    def __init__(self, process: subprocess.Popen[str], endpoints: dict[str, Any]) -> None:
        self.process = process
        self.endpoints = endpoints

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        """Signal the stack; its exit code and what else it wrote."""
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err


def start_stack() -> Stack:
    """Start the stack on free ports and wait for its JSON line (the only line it prints)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "emulators.stack", "--json", "--free-ports"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_LIMIT)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        pytest.fail(f"the stack did not start: {process.communicate(timeout=10)[1][-3000:]}")
    return Stack(process, json.loads(line))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """One stack for the module's request tests; SIGTERM at the end must exit 0."""
    running = start_stack()
    yield running
    code, _, err = running.stop()
    assert code == 0, err[-3000:]


def receive_until(stack: Stack, subscription: str, message_id: str, limit: int = 30) -> ServiceBusReceivedMessage:
    """Receive (and complete) from a subscription until the message with `message_id` arrives.

    One message per call: credit left open after a receive lets a message arrive while the client completes
    another, and the SDK releases such a message; `limit` covers one subscription lock (PT1M) in case one is.
    """
    endpoints = stack.endpoints
    with ServiceBusClient.from_connection_string(endpoints["servicebus"]) as client, \
            client.get_subscription_receiver(endpoints["topic"], subscription) as receiver:
        for _ in range(limit):
            for message in receiver.receive_messages(max_message_count=1, max_wait_time=5):
                receiver.complete_message(message)
                if message.message_id == message_id:
                    return message
    pytest.fail(f"{message_id} never reached {subscription}")


def event(run_id: str = SEED_RUN, archive: bool = True) -> dict[str, Any]:
    """A flat archive event for the ARM emulator's seeded registry."""
    return {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": archive}


def test_the_stack_announces_every_endpoint_on_loopback(stack: Stack) -> None:
    """One JSON line: ARM, identity, Service Bus, functions on 127.0.0.1, the key, and the entities of Config.json."""
    endpoints = stack.endpoints
    config = json.loads((ROOT / "servicebus-emulator" / "Config.json").read_text())["UserConfig"]["Namespaces"][0]
    topic = config["Topics"][0]

    assert set(endpoints) == {"arm", "identity", "servicebus", "functions", "functionKey", "queue", "topic", "subscriptions"}
    assert {urlsplit(endpoints[name]).hostname for name in ("arm", "identity", "functions")} == {"127.0.0.1"}
    assert endpoints["servicebus"].startswith("Endpoint=sb://127.0.0.1:") and "UseDevelopmentEmulator=true" in endpoints["servicebus"]
    assert endpoints["queue"] == config["Queues"][0]["Name"] and endpoints["topic"] == topic["Name"]
    assert endpoints["subscriptions"] == [s["Name"] for s in topic["Subscriptions"]]
    assert len(endpoints["functionKey"]) >= 32


@pytest.mark.parametrize(
    ("headers", "status"),
    [({"x-functions-key": None}, 200), ({}, 401), ({"x-functions-key": "not-the-key"}, 401)],
    ids=["with-key", "without-key", "wrong-key"],
)
def test_an_event_over_http_needs_the_announced_key(stack: Stack, headers: dict[str, Any], status: int) -> None:
    """POST /api/archive-events with the announced key archives the run; without it, 401."""
    sent = {name: value or stack.endpoints["functionKey"] for name, value in headers.items()}
    response = requests.post(f"{stack.endpoints['functions']}/api/archive-events", json=event(), headers=sent, timeout=60)

    assert response.status_code == status
    if status == 200:
        assert (response.json()["outcome"], response.json()["source"]) == ("succeeded", "http")


def test_health_needs_no_key(stack: Stack) -> None:
    """GET /api/health is anonymous and names Service Bus as the outcome destination."""
    response = requests.get(f"{stack.endpoints['functions']}/api/health", timeout=30)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "outcomeDestination": "servicebus"}


def test_a_queue_message_is_archived_and_its_outcome_reaches_the_topic(stack: Stack) -> None:
    """A message sent with the real client is processed by the app; its outcome arrives on all-outcomes."""
    message_id = f"stack-{uuid.uuid4()}"
    with ServiceBusClient.from_connection_string(stack.endpoints["servicebus"]) as client, \
            client.get_queue_sender(stack.endpoints["queue"]) as sender:
        sender.send_messages(ServiceBusMessage(json.dumps(event(archive=False)), message_id=message_id,
                                               content_type="application/json"))

    outcome = receive_until(stack, "all-outcomes", f"{message_id}:outcome")
    body = json.loads(b"".join(outcome.body))
    properties = {key.decode(): value for key, value in (outcome.application_properties or {}).items()}

    assert (body["outcome"], body["source"], body["inboundMessageId"], body["deliveryCount"]) == ("succeeded", "servicebus",
                                                                                                 message_id, 1)
    assert properties["outcome"] == b"succeeded" and properties["isArchiveEnabled"] is False


def test_a_failed_outcome_reaches_the_failed_outcomes_subscription(stack: Stack) -> None:
    """A run ARM does not know fails (404); its outcome passes the failed-outcomes rule."""
    message_id = f"stack-missing-{uuid.uuid4()}"
    with ServiceBusClient.from_connection_string(stack.endpoints["servicebus"]) as client, \
            client.get_queue_sender(stack.endpoints["queue"]) as sender:
        sender.send_messages(ServiceBusMessage(json.dumps(event(run_id="no-such-run")), message_id=message_id))

    outcome = receive_until(stack, "failed-outcomes", f"{message_id}:outcome")

    assert json.loads(b"".join(outcome.body))["error"]["httpStatus"] == 404


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_everything_with_exit_0(signum: int) -> None:
    """SIGTERM or Ctrl-C: every server stops, the process exits 0, and stdout held exactly the one JSON line."""
    running = start_stack()
    ports = [urlsplit(running.endpoints[name]).port for name in ("arm", "functions")]

    code, rest, err = running.stop(signum)

    assert code == 0, err[-3000:]
    assert rest == ""
    for port in ports:
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=5)


def test_the_emulator_settings_file_points_at_the_stack_s_default_ports() -> None:
    """local.settings.emulator.json works unchanged against `make run`: its endpoints are the stack's default ports."""
    values = json.loads((ROOT / "local.settings.emulator.json").read_text())["Values"]
    connection = dict(part.split("=", 1) for part in values["ServiceBusConnection"].strip(";").split(";"))
    endpoint = urlsplit(connection["Endpoint"])

    assert urlsplit(values["ARM_ENDPOINT"]).port == DEFAULT_PORTS["arm"]
    assert urlsplit(values["IDENTITY_ENDPOINT"]).port == DEFAULT_PORTS["identity"]
    assert (endpoint.port or 5672) == DEFAULT_PORTS["servicebus"] and connection["UseDevelopmentEmulator"] == "true"
    assert (connection["SharedAccessKeyName"], connection["SharedAccessKey"]) == ("RootManageSharedAccessKey", "SAS_KEY_VALUE")
