"""Where outcomes go (contract §4): a Service Bus topic, or the OUTCOME_FILE JSON-lines sink."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import (
    MessageSizeExceededError,
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from shared import jsontext
from shared.errors import PublishFailed
from shared.outcome import Outcome
from shared.settings import Settings

__all__ = [
    "FilePublisher",
    "Publisher",
    "ServiceBusPublisher",
    "SharedSender",
    "make_publisher",
    "send_batched",
    "servicebus_client_factory",
    "to_message",
]

log = logging.getLogger(__name__)

# What an idle connection that Service Bus (or a NAT) dropped looks like on the next send.
_DROPPED = (ServiceBusConnectionError, ServiceBusCommunicationError, OperationTimeoutError)


class Publisher(Protocol):
    """Sends one outcome; raises PublishFailed when it could not."""

    def publish(self, outcome: Outcome) -> None: ...

    def close(self) -> None: ...


def to_message(outcome: Outcome) -> ServiceBusMessage:
    """The outcome as a Service Bus message with the contract's properties."""
    return ServiceBusMessage(
        outcome.body_bytes(),
        content_type="application/json",
        subject=outcome.subject,
        correlation_id=outcome.correlation_id,
        message_id=outcome.message_id,
        application_properties=outcome.application_properties,
    )


class SharedSender:
    """One client and one sender, opened on first use and shared by every invocation of the process.

    A ServiceBusSender is not thread-safe, and the Functions host runs sync invocations on a thread
    pool, so uses are serialized by a lock. A use that fails because the connection was dropped while
    idle closes the client and retries once on a fresh one; any other Service Bus error raises
    PublishFailed at once.
    """

    def __init__(self, client_factory: Callable[[], Any], open_sender: Callable[[Any], Any]) -> None:
        self._client_factory = client_factory
        self._open_sender = open_sender
        self._lock = threading.Lock()
        self._client: Any = None
        self._sender: Any = None
        self.senders_created = 0

    def use(self, action: Callable[[Any], Any], what: str) -> Any:
        """Run `action(sender)` under the lock, reconnecting once after a dropped connection."""
        with self._lock:
            try:
                try:
                    return action(self._open())
                except _DROPPED as dropped:
                    log.warning("Service Bus sender lost its connection (%s); reconnecting once", type(dropped).__name__)
                    self._close()
                    return action(self._open())
            except ServiceBusError as error:
                self._close()
                raise PublishFailed(f"could not {what}: {type(error).__name__}") from None

    def close(self) -> None:
        """Close the sender and the client."""
        with self._lock:
            self._close()

    def _open(self) -> Any:
        if self._sender is None:
            self._client = self._client_factory()
            self._sender = self._open_sender(self._client)
            self.senders_created += 1
        return self._sender

    def _close(self) -> None:
        for closable in (self._sender, self._client):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # closing a broken link must not hide the original failure
                    log.debug("ignoring an error while closing a Service Bus handler", exc_info=True)
        self._sender = self._client = None


def send_batched(sender: SharedSender, messages: Sequence[ServiceBusMessage], what: str) -> int:
    """Send `messages` in order in as few ServiceBusMessageBatches as fit; returns how many batches were sent.

    Each batch is one use of the shared sender, so a dropped connection re-sends only the batch it cut
    (and a repeat of an earlier one would carry the same message ids, which duplicate detection drops).
    A message too large for any batch raises PublishFailed.
    """
    sent, batches = 0, 0
    while sent < len(messages):
        sent += sender.use(lambda handler, start=sent: _fill_and_send(handler, messages, start), what)
        batches += 1
    return batches


def _fill_and_send(handler: Any, messages: Sequence[ServiceBusMessage], start: int) -> int:
    batch = handler.create_message_batch()
    for message in messages[start:]:
        try:
            batch.add_message(message)
        except MessageSizeExceededError:
            if len(batch) == 0:
                raise  # alone it does not fit: no batch ever will
            break
    handler.send_messages(batch)
    return len(batch)


class ServiceBusPublisher:
    """Publishes outcomes to the topic through one SharedSender."""

    def __init__(self, client_factory: Callable[[], Any], topic_name: str) -> None:
        self._sender = SharedSender(client_factory, lambda client: client.get_topic_sender(topic_name=topic_name))

    @property
    def senders_created(self) -> int:
        """How many topic senders were opened (1 unless a connection was dropped)."""
        return self._sender.senders_created

    def publish(self, outcome: Outcome) -> None:
        """Send the outcome to the topic; raise PublishFailed if Service Bus would not take it."""
        message = to_message(outcome)
        self._sender.use(lambda sender: sender.send_messages(message), f"publish outcome {outcome.message_id}")

    def close(self) -> None:
        """Close the sender and the client."""
        self._sender.close()


class FilePublisher:
    """Appends each outcome as one JSON line; one write per line, so concurrent lines never interleave."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def publish(self, outcome: Outcome) -> None:
        """Append the outcome's record to the file."""
        # ASCII escapes keep U+2028/U+0085 from looking like line breaks to line-splitting readers.
        line = jsontext.dumps(outcome.as_record(), ascii_only=True) + "\n"
        try:
            with self._lock, open(self._path, "a", encoding="utf-8") as sink:
                sink.write(line)
        except OSError as error:
            raise PublishFailed(f"could not append outcome to OUTCOME_FILE: {error.strerror}") from None

    def close(self) -> None:
        """Nothing is held open between outcomes."""


def servicebus_client_factory(settings: Settings, *, for_outcomes: bool = True) -> Callable[[], ServiceBusClient]:
    """How to open a client: for outcomes OUTCOME_SERVICEBUS_NAMESPACE, else the trigger's connection."""
    namespace = settings.publisher_namespace if for_outcomes else settings.servicebus_namespace
    if settings.servicebus_connection_string and not (for_outcomes and settings.outcome_namespace):
        connection_string = settings.servicebus_connection_string
        return lambda: ServiceBusClient.from_connection_string(connection_string)

    def open_with_identity() -> ServiceBusClient:
        return ServiceBusClient(namespace, credential=_servicebus_credential(settings))

    return open_with_identity


def make_publisher(settings: Settings) -> Publisher:
    """The publisher the settings ask for: OUTCOME_FILE instead of Service Bus when it is set."""
    settings.require_outcome_destination()
    if settings.outcome_file:
        return FilePublisher(settings.outcome_file)
    return ServiceBusPublisher(servicebus_client_factory(settings), settings.outcome_topic_name or "")


def _servicebus_credential(settings: Settings) -> Any:
    """The credential Functions would use for ServiceBusConnection (`__credential`, `__clientId`)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = settings.servicebus_client_id or settings.azure_client_id
    if (settings.servicebus_credential or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id)
