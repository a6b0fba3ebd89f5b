"""The whole app on the wire, in-process: ARM, managed identity, Service Bus and the host stand-in on loopback.

Used by `make demo`, `make soak WIRE=1`, `make bench` and the tests/test_wire_* tests: the real app code
(`build_app`), the real azure-servicebus client on both sides, the Functions host stand-in driving the
queue trigger (peek-lock, autoComplete settlement, lock renewal) and the HTTP triggers (function key).
"""

from __future__ import annotations

import copy
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiveMode

from emulators.arm import ArmEmulator
from emulators.host import FunctionsHost, HostOptions
from emulators.identity import IdentityEmulator
from emulators.servicebus import ServiceBusEmulator
from shared.app import ArchiverApp, build_app

__all__ = ["ROOT", "WireStack", "entity_config", "outcome_record", "receive_outcomes", "wire_stack"]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "servicebus-emulator" / "Config.json"
EMULATOR_SETTINGS = ROOT / "local.settings.emulator.json"


def entity_config(*, lock_seconds: float | None = None, max_delivery_count: int | None = None) -> dict[str, Any]:
    """servicebus-emulator/Config.json, with the archive queue's lock duration or max delivery count changed."""
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    for namespace in config["UserConfig"]["Namespaces"]:
        for queue in namespace["Queues"]:
            if lock_seconds is not None:
                queue["Properties"]["LockDuration"] = f"PT{lock_seconds:g}S"
            if max_delivery_count is not None:
                queue["Properties"]["MaxDeliveryCount"] = max_delivery_count
    return config


@dataclass
class WireStack:
    """The running servers, the app's settings and the app the host stand-in drives."""

    arm: ArmEmulator
    identity: IdentityEmulator
    servicebus: ServiceBusEmulator
    host: FunctionsHost
    app: ArchiverApp
    env: dict[str, str]
    queue: str = field(init=False)
    topic: str = field(init=False)

    def __post_init__(self) -> None:
        self.queue = self.env["ARCHIVE_QUEUE_NAME"]
        self.topic = self.env["OUTCOME_TOPIC_NAME"]

    def client(self) -> ServiceBusClient:
        """A new client of the emulator, from its connection string (as an operator or subscriber would)."""
        return ServiceBusClient.from_connection_string(self.servicebus.connection_string)

    def cli(self, *argv: str) -> tuple[int, str, str]:
        """Run `acr-archiver ARGV` in-process with the app's settings: (exit status, stdout, stderr)."""
        from archiver_cli.app import main

        out, err = io.StringIO(), io.StringIO()
        status = main(["--no-progress", *argv], env=self.env, stdout=out, stderr=err)
        return status, out.getvalue(), err.getvalue()

    def subscription(self, name: str) -> str:
        """The emulator path of one outcome subscription."""
        return f"{self.topic}/Subscriptions/{name}"

    @property
    def listener(self) -> Any:
        """The queue trigger's listener (its `settlement` counts completes and abandons)."""
        return next(iter(self.host.listeners.values()))


def _settings(arm: ArmEmulator, identity: IdentityEmulator, servicebus: ServiceBusEmulator) -> dict[str, str]:
    values = json.loads(EMULATOR_SETTINGS.read_text(encoding="utf-8"))["Values"]
    return {
        **{str(k): str(v) for k, v in values.items()},
        "ARM_ENDPOINT": arm.url,
        **identity.environ(),
        "ServiceBusConnection": servicebus.connection_string,
    }


@contextmanager
def wire_stack(
    overrides: Mapping[str, str] | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    options: HostOptions | None = None,
    arm_options: Mapping[str, Any] | None = None,
    prepare: Callable[[ArmEmulator], None] | None = None,
) -> Iterator[WireStack]:
    """Start everything on free loopback ports; the app gets local.settings.emulator.json's settings plus `overrides`."""
    saved = {name: os.environ.get(name) for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    with ExitStack() as running:
        identity = running.enter_context(IdentityEmulator())
        arm = running.enter_context(ArmEmulator(token_validator=identity.is_valid, **dict(arm_options or {})))
        if prepare is not None:
            prepare(arm)
        servicebus = running.enter_context(ServiceBusEmulator(copy.deepcopy(dict(config)) if config else CONFIG))
        env = {**_settings(arm, identity, servicebus), **dict(overrides or {})}
        # azure-identity's managed-identity credential reads these from the process environment itself.
        os.environ.update(identity.environ())
        running.callback(_restore, saved)
        app = build_app(env)
        running.callback(app.close)
        options = options or HostOptions.load(ROOT / "host.json")
        host = running.enter_context(FunctionsHost(app, env, options=options, port=0, timers=False))
        yield WireStack(arm, identity, servicebus, host, app, env)


def _restore(saved: Mapping[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def outcome_record(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    """A received outcome as OUTCOME_FILE writes it, plus the broker's delivery count of the outcome itself."""
    properties = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in (message.application_properties or {}).items()
    }
    return {
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
        "subject": message.subject,
        "content_type": message.content_type,
        "application_properties": properties,
        "body": json.loads(b"".join(message.body)),
    }


def receive_outcomes(
    stack: WireStack, subscription: str, count: int, *, timeout: float = 30.0, settle: bool = True
) -> list[dict[str, Any]]:
    """Receive `count` outcomes from a subscription with the real client (fewer if `timeout` passes first)."""
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    mode = ServiceBusReceiveMode.RECEIVE_AND_DELETE if settle else ServiceBusReceiveMode.PEEK_LOCK
    with stack.client() as client, client.get_subscription_receiver(stack.topic, subscription, receive_mode=mode) as receiver:
        while len(records) < count and time.monotonic() < deadline:
            wait = max(0.1, min(1.0, deadline - time.monotonic()))
            for message in receiver.receive_messages(max_message_count=min(100, count - len(records)), max_wait_time=wait):
                records.append(outcome_record(message))
    return records


def drain(stack: WireStack, subscription: str, *, quiet: float = 0.5) -> list[dict[str, Any]]:
    """Every outcome the subscription holds now (receive until it stays empty for `quiet` seconds)."""
    records: list[dict[str, Any]] = []
    with (
        stack.client() as client,
        client.get_subscription_receiver(
            stack.topic, subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE
        ) as receiver,
    ):
        while True:
            batch = receiver.receive_messages(max_message_count=100, max_wait_time=quiet)
            if not batch:
                return records
            records.extend(outcome_record(message) for message in batch)


def send_events(stack: WireStack, events: Sequence[Any]) -> list[str]:
    """`acr-archiver send` the events to the archive queue; returns the message ids it printed."""
    status, out, err = stack.cli("send", "-o", "json", *(json.dumps(event) for event in events))
    if status != 0:
        raise RuntimeError(f"acr-archiver send failed ({status}): {err.strip()}")
    return [json.loads(line)["messageId"] for line in out.splitlines() if line.strip()]
