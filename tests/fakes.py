"""A recording stand-in for azure.servicebus.ServiceBusClient: the one seam the tests replace.

It receives the real azure.servicebus.ServiceBusMessage objects the app builds, records them, and
checks what the real client would not tolerate: a sender used by two threads at once, or used after
close. It can be told to fail the next sends with the errors a dropped connection raises.

It also holds messages waiting to be received: dead letters of a queue (`dead_letter`) and messages on
a topic subscription (`deliver`). Receivers hand them out as real `ServiceBusReceivedMessage` objects,
decoded from AMQP bytes as the real client decodes them off the wire (so application property keys
and string values arrive as bytes), and track peek-lock settlement: complete, abandon, dead-letter.
`log` records sends and settlements in the order they happened.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus._common.message import ServiceBusReceivedMessage
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.exceptions import MessageAlreadySettled

__all__ = ["RecordingServiceBus", "Sent", "Stored", "dead_letter_path", "subscription_path"]


def dead_letter_path(queue: str) -> str:
    """The entity path of a queue's dead-letter sub-queue, as Service Bus names it."""
    return f"{queue}/$DeadLetterQueue"


def subscription_path(topic: str, subscription: str) -> str:
    """The entity path of a topic subscription."""
    return f"{topic}/Subscriptions/{subscription}"


@dataclass
class Sent:
    """One message as the broker would have accepted it."""

    entity: str
    message: ServiceBusMessage
    scheduled_for: datetime | None = None


@dataclass
class Stored:
    """A message waiting in an entity: its AMQP form and its broker state."""

    sequence_number: int
    amqp: Any
    enqueued: datetime
    delivery_count: int = 0
    locked_by: Any = None


@dataclass
class RecordingServiceBus:
    """A fake namespace: hands out clients, senders and receivers, records every message sent through them."""

    send_delay: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    clients_created: int = 0
    senders_created: int = 0
    receivers_created: int = 0
    failures: list[BaseException | None] = field(default_factory=list)
    settle_failures: list[BaseException] = field(default_factory=list)
    failing_ids: dict[str, BaseException] = field(default_factory=dict)
    concurrent_use: int = 0
    entities: dict[str, list[Stored]] = field(default_factory=dict)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    """("send" | "complete" | "abandon" | "dead-letter", entity path, message id), in order."""
    batch_sizes: list[int] = field(default_factory=list)
    """Messages of each ServiceBusMessageBatch sent, in order."""
    max_batch_bytes: int = 256 * 1024
    """What create_message_batch allows, as a Standard namespace's link does."""
    _sequence: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> FakeClient:
        """A new client, as ServiceBusClient(...) would be."""
        with self._lock:
            self.clients_created += 1
        return FakeClient(self)

    def fail_next(self, *errors: BaseException | None) -> None:
        """Make the next sends raise these errors, one each (None: that send succeeds)."""
        with self._lock:
            self.failures.extend(errors)

    def fail_send_of(self, message_id: str, error: BaseException) -> None:
        """Make the send that carries this message id raise `error` (once)."""
        with self._lock:
            self.failing_ids[message_id] = error

    def fail_next_settlement(self, *errors: BaseException) -> None:
        """Make the next complete/abandon/dead-letter calls raise these errors, one each."""
        with self._lock:
            self.settle_failures.extend(errors)

    def messages(self, entity: str | None = None) -> list[ServiceBusMessage]:
        """The messages sent, optionally to one queue or topic."""
        return [s.message for s in self.sent if entity is None or s.entity == entity]

    def dead_letter(
        self,
        queue: str,
        message: ServiceBusMessage,
        *,
        reason: str = "MaxDeliveryCountExceeded",
        description: str = "Message could not be consumed after 10 delivery attempts.",
        delivery_count: int = 10,
    ) -> int:
        """Put `message` on the queue's dead-letter sub-queue, as Service Bus would; returns its sequence number."""
        extra = {b"DeadLetterReason": reason.encode(), b"DeadLetterErrorDescription": description.encode()}
        return self._store(dead_letter_path(queue), message, extra, delivery_count)

    def deliver(self, topic: str, subscription: str, message: ServiceBusMessage) -> int:
        """Put `message` on a topic subscription (as if it matched the subscription's rule); returns its sequence number."""
        return self._store(subscription_path(topic, subscription), message, {}, 0)

    def waiting(self, path: str) -> list[Stored]:
        """The messages still in an entity (settled ones are gone), in sequence order."""
        with self._lock:
            return list(self.entities.get(path, []))

    def _store(self, path: str, message: ServiceBusMessage, extra_properties: dict[bytes, bytes], delivery_count: int) -> int:
        # Encode to AMQP bytes and decode again, so received messages look exactly like ones off the wire.
        outgoing = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
        amqp = decode_payload(memoryview(encode_payload(bytearray(), outgoing)))
        amqp = amqp._replace(application_properties={**(amqp.application_properties or {}), **extra_properties})
        with self._lock:
            self._sequence += 1
            stored = Stored(self._sequence, amqp, datetime.now(timezone.utc), delivery_count)
            self.entities.setdefault(path, []).append(stored)
            return stored.sequence_number


class FakeClient:
    """The part of ServiceBusClient the app uses."""

    def __init__(self, bus: RecordingServiceBus) -> None:
        self._bus = bus
        self.closed = False

    def get_topic_sender(self, topic_name: str, **_: Any) -> FakeSender:
        return self._sender(topic_name)

    def get_queue_sender(self, queue_name: str, **_: Any) -> FakeSender:
        return self._sender(queue_name)

    def get_queue_receiver(
        self,
        queue_name: str,
        *,
        sub_queue: ServiceBusSubQueue | str | None = None,
        receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK,
        **_: Any,
    ) -> FakeReceiver:
        if sub_queue is None:
            path = queue_name
        else:
            assert ServiceBusSubQueue(sub_queue) is ServiceBusSubQueue.DEAD_LETTER, f"unsupported sub-queue {sub_queue!r}"
            path = dead_letter_path(queue_name)
        return self._receiver(path, receive_mode)

    def get_subscription_receiver(
        self,
        topic_name: str,
        subscription_name: str,
        *,
        receive_mode: ServiceBusReceiveMode | str = ServiceBusReceiveMode.PEEK_LOCK,
        **_: Any,
    ) -> FakeReceiver:
        return self._receiver(subscription_path(topic_name, subscription_name), receive_mode)

    def _receiver(self, path: str, receive_mode: ServiceBusReceiveMode | str) -> FakeReceiver:
        assert not self.closed, "receiver requested from a closed client"
        with self._bus._lock:
            self._bus.receivers_created += 1
        return FakeReceiver(self._bus, path, ServiceBusReceiveMode(receive_mode))

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _sender(self, entity: str) -> FakeSender:
        assert not self.closed, "sender requested from a closed client"
        with self._bus._lock:
            self._bus.senders_created += 1
        return FakeSender(self._bus, entity)

    def close(self) -> None:
        self.closed = True


class FakeReceiver:
    """Peek, receive and settle like a ServiceBusReceiver; a locked message is settled at most once."""

    def __init__(self, bus: RecordingServiceBus, path: str, receive_mode: ServiceBusReceiveMode) -> None:
        self._bus = bus
        self.path = path
        self._receive_mode = receive_mode
        self._last_peeked = 0
        self.closed = False

    def peek_messages(self, max_message_count: int = 1, *, sequence_number: int = 0, **_: Any) -> list[ServiceBusReceivedMessage]:
        """Browse without locking, from `sequence_number` or after the last peeked message."""
        assert not self.closed, "peek on a closed receiver"
        start = sequence_number or self._last_peeked + 1
        with self._bus._lock:
            found = [m for m in self._bus.entities.get(self.path, []) if m.sequence_number >= start][:max_message_count]
        if found:
            self._last_peeked = found[-1].sequence_number
        return [self._received(m, peeked=True) for m in found]

    def receive_messages(self, max_message_count: int | None = 1, max_wait_time: float | None = None) -> list[ServiceBusReceivedMessage]:
        """Lock (or, in receive-and-delete mode, remove) up to max_message_count unlocked messages."""
        assert not self.closed, "receive on a closed receiver"
        with self._bus._lock:
            stored = self._bus.entities.get(self.path, [])
            found = [m for m in stored if m.locked_by is None][: max_message_count or 1]
            for message in found:
                message.delivery_count += 1
                if self._receive_mode is ServiceBusReceiveMode.RECEIVE_AND_DELETE:
                    stored.remove(message)
                else:
                    message.locked_by = self
        return [self._received(m, peeked=False) for m in found]

    def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        """Remove the locked message from the entity."""
        self._settle("complete", message, remove=True)

    def abandon_message(self, message: ServiceBusReceivedMessage) -> None:
        """Release the lock: the message may be received again."""
        self._settle("abandon", message, remove=False)

    def dead_letter_message(self, message: ServiceBusReceivedMessage, reason: str | None = None, error_description: str | None = None) -> None:
        """Remove the message (this fake does not model a dead-letter queue's dead-letter queue)."""
        self._settle("dead-letter", message, remove=True)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeReceiver:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def _settle(self, action: str, message: ServiceBusReceivedMessage, *, remove: bool) -> None:
        assert not self.closed, f"{action} on a closed receiver"
        with self._bus._lock:
            failure = self._bus.settle_failures.pop(0) if self._bus.settle_failures else None
            if failure is not None:
                raise failure
            stored = self._bus.entities.get(self.path, [])
            match = next((m for m in stored if m.sequence_number == message.sequence_number), None)
            if match is None or match.locked_by is not self:
                raise MessageAlreadySettled(action=action)
            if remove:
                stored.remove(match)
            else:
                match.locked_by = None
            self._bus.log.append((action, self.path, message.message_id))

    def _received(self, stored: Stored, *, peeked: bool) -> ServiceBusReceivedMessage:
        annotations = {
            b"x-opt-sequence-number": stored.sequence_number,
            b"x-opt-enqueued-time": int(stored.enqueued.timestamp() * 1000),
        }
        amqp = stored.amqp._replace(message_annotations=annotations, header=Header(delivery_count=stored.delivery_count))
        mode = ServiceBusReceiveMode.PEEK_LOCK if peeked else self._receive_mode
        return ServiceBusReceivedMessage(amqp, receive_mode=mode, receiver=self, is_peeked_message=peeked)


class FakeSender:
    """Records sends; detects concurrent use, which the real ServiceBusSender does not support."""

    def __init__(self, bus: RecordingServiceBus, entity: str) -> None:
        self._bus = bus
        self._entity = entity
        self._in_use = threading.Lock()
        self.closed = False

    def create_message_batch(self, max_size_in_bytes: int | None = None) -> ServiceBusMessageBatch:
        assert not self.closed, "batch from a closed sender"
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or self._bus.max_batch_bytes)

    def send_messages(self, message: ServiceBusMessage | list[ServiceBusMessage] | ServiceBusMessageBatch, **_: Any) -> None:
        if isinstance(message, ServiceBusMessageBatch):
            messages = list(message._messages)
            self._use(messages, None)
            with self._bus._lock:
                self._bus.batch_sizes.append(len(messages))
            return
        self._use(message, None)

    def schedule_messages(self, message: ServiceBusMessage, schedule_time_utc: datetime, **_: Any) -> list[int]:
        self._use(message, schedule_time_utc)
        return [len(self._bus.sent)]

    def _use(self, message: Any, when: datetime | None) -> None:
        assert not self.closed, "send on a closed sender"
        if not self._in_use.acquire(blocking=False):
            with self._bus._lock:
                self._bus.concurrent_use += 1
            self._in_use.acquire()
        try:
            batch = message if isinstance(message, list) else [message]
            with self._bus._lock:
                failure = self._bus.failures.pop(0) if self._bus.failures else None
                for one in batch:
                    failure = failure or self._bus.failing_ids.pop(one.message_id, None)
            if failure is not None:
                raise failure
            if self._bus.send_delay:
                time.sleep(self._bus.send_delay)
            for one in batch:
                assert isinstance(one, ServiceBusMessage), f"not a ServiceBusMessage: {type(one)!r}"
                with self._bus._lock:
                    self._bus.sent.append(Sent(self._entity, one, when))
                    self._bus.log.append(("send", self._entity, one.message_id))
        finally:
            self._in_use.release()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeSender:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
