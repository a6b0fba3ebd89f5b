"""The clients compared, each sending one archive event per call against the same ARM emulator.

- `BareClient`: the physical limit, a bare `requests.Session` PATCH loop with a fixed bearer token.
  `floor` is the same loop with `trust_env = False`: requests then skips re-reading the proxy
  variables and ~/.netrc on every request, the cheapest a requests round trip gets (reported beside).
- `AppClient`: the app's queue function end to end (`function_app.app.get_functions()`, a real
  `azure.functions.ServiceBusMessage`): parse, cached token, PATCH, outcome built as an
  `azure.servicebus.ServiceBusMessage` and handed to the real `ServiceBusPublisher`, whose sender
  serializes it (its body and every property the wire carries) and drops it instead of sending it.
  `app_amqp` is the same with the sender also running azure-servicebus's AMQP encoder over the
  message, as ServiceBusSender does before it writes a frame (reported beside).
- `SdkClient`: what a user would write instead, `ContainerRegistryTasksMgmtClient.runs.update`.
  `sdk_tuned` is the same client told not to read the environment per request
  (`use_env_settings=False`) and with its HTTP logging policy below INFO (reported beside).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import requests
from azure.functions.servicebus import ServiceBusMessage as InboundMessage
from azure.servicebus import ServiceBusMessage
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport

from shared.publisher import ServiceBusPublisher
from shared.app import build_app

__all__ = ["AppClient", "BareClient", "DiscardingServiceBus", "SdkClient", "app_settings", "run_ids"]

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "myRegistry"
API_VERSION = "2019-04-01"
TOPIC = "acr-archive-outcomes"


def run_ids(client: str, count: int = 16) -> list[str]:
    """The runs one client archives in turn (the emulator creates them on first use)."""
    return [f"bench-{client}-{n:02d}" for n in range(count)]


def app_settings(arm_url: str, identity_env: dict[str, str]) -> dict[str, str]:
    """App settings of a production-like deployment: identity-based Service Bus, ARM at the emulator."""
    return {
        **identity_env,
        "ARM_ENDPOINT": arm_url,
        "ARCHIVE_QUEUE_NAME": "acr-archive-events",
        "OUTCOME_TOPIC_NAME": TOPIC,
        "ServiceBusConnection__fullyQualifiedNamespace": "bench.servicebus.windows.net",
    }


class BareClient:
    """One PATCH per event on one Session, a fixed token and a prebuilt body: nothing but the round trip."""

    def __init__(self, arm_url: str, token: str, *, trust_env: bool = True) -> None:
        self.name = "bare" if trust_env else "floor"
        self._session = requests.Session()
        self._session.trust_env = trust_env
        self._headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        self._body = json.dumps({"isArchiveEnabled": True}).encode()
        base = (
            f"{arm_url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
            f"/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/runs/"
        )
        self._urls = [f"{base}{run}?api-version={API_VERSION}" for run in run_ids(self.name)]

    def __call__(self, n: int) -> None:
        """Archive run n."""
        response = self._session.patch(self._urls[n % len(self._urls)], data=self._body, headers=self._headers)
        if response.status_code != 200:
            raise RuntimeError(f"bare PATCH answered {response.status_code}")

    def close(self) -> None:
        """Close the Session."""
        self._session.close()


class DiscardingServiceBus:
    """Stands in for ServiceBusClient: its sender serializes each real message, then drops it.

    `amqp` switches the AMQP encoding on (pyamqp's encoder, as ServiceBusSender.send_messages runs it).
    """

    def __init__(self) -> None:
        self.amqp = False
        self.clients_created = 0
        self.subjects: Counter[str] = Counter()
        self.serialized_bytes = 0
        self._lock = threading.Lock()

    def client(self) -> _Client:
        """A new client, as ServiceBusClient(...) would be."""
        self.clients_created += 1
        return _Client(self)

    def serialize(self, message: ServiceBusMessage) -> None:
        """What the sender reads off the message for the wire (its AMQP form: body, properties,
        application properties), as bytes and values; AMQP-encoded too when `amqp` is on."""
        if not isinstance(message, ServiceBusMessage):
            raise TypeError(f"not a ServiceBusMessage: {type(message)!r}")
        amqp = message.raw_amqp_message
        properties = amqp.properties
        carried = (properties.message_id, properties.correlation_id, properties.subject, properties.content_type)
        if None in carried or not amqp.application_properties:
            raise ValueError(f"the outcome message lacks a property: {carried!r}")
        size = len(b"".join(amqp.body))
        if self.amqp:
            size = len(encode_payload(bytearray(), PyamqpTransport.to_outgoing_amqp_message(amqp)))
        with self._lock:
            self.subjects[str(carried[2])] += 1
            self.serialized_bytes += size


class _Client:
    def __init__(self, bus: DiscardingServiceBus) -> None:
        self._bus = bus

    def get_topic_sender(self, topic_name: str, **_: Any) -> _Sender:
        return _Sender(self._bus)

    def close(self) -> None:
        pass


class _Sender:
    def __init__(self, bus: DiscardingServiceBus) -> None:
        self._bus = bus

    def send_messages(self, message: ServiceBusMessage, **_: Any) -> None:
        self._bus.serialize(message)

    def close(self) -> None:
        pass


class AppClient:
    """The queue function as the Functions host calls it, on a Runtime whose publisher sends nowhere."""

    name = "app"
    amqp = False

    def __init__(self, settings: dict[str, str]) -> None:
        os.environ.update(settings)  # the host's app settings: azure-identity reads the identity endpoint from there
        self.bus = DiscardingServiceBus()
        self.publishers: list[ServiceBusPublisher] = []
        self.app = build_app(dict(os.environ), publisher_factory=self._publisher)
        functions = {f.get_function_name(): f.get_user_function() for f in self.app.get_functions()}
        self._function: Callable[[InboundMessage], None] = functions["archive_queue"]
        self._bodies = [
            json.dumps(
                {"subscriptionId": SUBSCRIPTION, "resourceGroupName": GROUP, "registryName": REGISTRY,
                 "runId": run, "isArchiveEnabled": True}
            ).encode()
            for run in run_ids(self.name)
        ]

    def _publisher(self, settings: Any) -> ServiceBusPublisher:
        publisher = ServiceBusPublisher(self.bus.client, settings.outcome_topic_name)
        self.publishers.append(publisher)
        return publisher

    @property
    def senders_created(self) -> int:
        """Senders the real publisher opened."""
        return sum(p.senders_created for p in self.publishers)

    def message(self, n: int) -> InboundMessage:
        """The n-th inbound queue message, as the worker hands it to the function."""
        return InboundMessage(
            body=self._bodies[n % len(self._bodies)],
            message_id=f"bench-message-{n}",
            correlation_id=None,
            delivery_count=1,
            application_properties={},
            user_properties={},
        )

    def __call__(self, n: int) -> None:
        """Deliver message n to the queue function (the worker builds the message, then invokes)."""
        self.bus.amqp = self.amqp
        self._function(self.message(n))

    def with_amqp(self) -> AppClient:
        """The same app (same Runtime, publisher and sender) whose sender also AMQP-encodes."""
        variant = copy.copy(self)
        variant.name, variant.amqp = "app_amqp", True
        return variant

    def close(self) -> None:
        """Release the Runtime's Session and sender."""
        self.app.close()


class SdkClient:
    """`ContainerRegistryTasksMgmtClient.runs.update` with managed identity, as a user would call it."""

    def __init__(self, arm_url: str, *, tuned: bool = False) -> None:
        from azure.identity import ManagedIdentityCredential
        from azure.mgmt.containerregistrytasks import ContainerRegistryTasksMgmtClient

        self.name = "sdk_tuned" if tuned else "sdk"
        options: dict[str, Any] = {}
        if tuned:
            from azure.core.pipeline.transport import RequestsTransport
            from azure.mgmt.core.policies import ARMHttpLoggingPolicy

            quiet = logging.getLogger("bench.sdk_tuned.http")
            quiet.setLevel(logging.WARNING)
            options = {
                "transport": RequestsTransport(use_env_settings=False),
                "http_logging_policy": ARMHttpLoggingPolicy(logger=quiet),
            }
        # 1.0.0b1 passes a per-call api_version down to requests (TypeError), so it is set on the client.
        self._client = ContainerRegistryTasksMgmtClient(
            ManagedIdentityCredential(), SUBSCRIPTION, base_url=arm_url, api_version=API_VERSION, **options
        )
        self._runs = run_ids(self.name)
        self._update = {"isArchiveEnabled": True}

    def __call__(self, n: int) -> None:
        """Archive run n; http:// to the loopback emulator needs enforce_https=False."""
        run = self._client.runs.update(GROUP, REGISTRY, self._runs[n % len(self._runs)], self._update, enforce_https=False)
        if run is None:
            raise RuntimeError("the SDK returned no Run")

    def close(self) -> None:
        """Close the client's pipeline."""
        self._client.close()
