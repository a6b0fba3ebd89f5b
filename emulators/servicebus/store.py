"""The namespace's state: queues, topics, subscriptions, their dead-letter sub-queues, locks and schedules.

Everything here runs on the broker's one reactor thread; readers on other threads go through
`ServiceBusEmulator`, which hops onto that thread. Times are epoch seconds from the injected clock.
Service Bus rules implemented here, with their documentation:
- peek-lock, lock expiry, abandon and delivery count:
  https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement
- MaxDeliveryCountExceeded, TTLExpiredException and the `$deadletterqueue` sub-queue:
  https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues
- duplicate detection by message id within a window:
  https://learn.microsoft.com/azure/service-bus-messaging/duplicate-detection
- sequence numbers and scheduled messages:
  https://learn.microsoft.com/azure/service-bus-messaging/message-sequencing
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from proton import Message

from emulators.servicebus import wire
from emulators.servicebus.config import NamespaceConfig, QueueConfig, SubscriptionConfig, TopicConfig

__all__ = [
    "EntityError",
    "LockLost",
    "MessageQueue",
    "Namespace",
    "Sender",
    "StoredMessage",
    "entity_path",
]

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"
_DEAD_LETTER_QUEUE = "$deadletterqueue"
_MANAGEMENT = "$management"


class EntityError(Exception):
    """A request names no entity, or one that cannot do what was asked; `condition` is the AMQP error."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition
        self.description = description


class LockLost(EntityError):
    """The lock token is unknown or its lock has expired."""

    def __init__(self, token: uuid.UUID) -> None:
        super().__init__("com.microsoft:message-lock-lost", f"The lock supplied is invalid: {token}")


def entity_path(address: str | None) -> str:
    """The entity path of a link address: `amqps://host:port/q`, `sb://host/q`, `/q` and `q` all give `q`."""
    text = (address or "").strip()
    if "://" in text:
        text = text.split("://", 1)[1]
        text = text.split("/", 1)[1] if "/" in text else ""
    return text.strip("/")


@dataclass
class StoredMessage:
    """One message as an entity holds it: the sender's bytes plus the broker's bookkeeping."""

    sequence_number: int
    encoded: bytes
    message_id: str | None
    enqueued_at: float
    expires_at: float
    application_properties: Mapping[str, Any]
    system_properties: Mapping[str, Any]
    ttl_ms: int | None = None
    scheduled_at: float | None = None
    delivery_count: int = 0
    lock_token: uuid.UUID | None = None
    locked_until: float = 0.0
    dead_letter: tuple[str, str] | None = None

    def copy(self) -> StoredMessage:
        """A fresh copy for another subscription (own count and lock)."""
        return StoredMessage(
            self.sequence_number, self.encoded, self.message_id, self.enqueued_at, self.expires_at,
            self.application_properties, self.system_properties, self.ttl_ms, self.scheduled_at,
        )

    def wire_bytes(self, extra: Mapping[str, Any] | None = None) -> bytes:
        """The message as delivered: sender's sections, broker header and annotations."""
        annotations: dict[str, Any] = {
            "x-opt-sequence-number": self.sequence_number,
            "x-opt-enqueued-time": wire.ms(self.enqueued_at),
        }
        if self.scheduled_at is not None:
            annotations["x-opt-scheduled-enqueue-time"] = wire.ms(self.scheduled_at)
        if self.lock_token is not None:
            annotations["x-opt-locked-until"] = wire.ms(self.locked_until)
        annotations.update(extra or {})
        return wire.build(
            self.encoded, delivery_count=self.delivery_count, annotations=annotations, ttl_ms=self.ttl_ms,
            dead_letter=self.dead_letter,
        )


@dataclass
class MessageQueue:
    """A receivable entity: a queue, a subscription, or a dead-letter sub-queue of either."""

    path: str
    lock_duration: float
    max_delivery_count: int
    dead_letter_on_expiration: bool
    dlq: MessageQueue | None = None
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    locks: dict[uuid.UUID, int] = field(default_factory=dict)

    def available(self) -> Iterator[StoredMessage]:
        """Messages a receiver may take now, in enqueue order."""
        return (m for m in self.messages.values() if m.lock_token is None)

    def take(self, now: float, peek_lock: bool) -> StoredMessage | None:
        """Lock (peek-lock) or remove (receive-and-delete) the next available message."""
        message = next(self.available(), None)
        if message is None:
            return None
        if not peek_lock:
            del self.messages[message.sequence_number]
            return message
        message.lock_token = uuid.uuid4()
        message.locked_until = now + self.lock_duration
        self.locks[message.lock_token] = message.sequence_number
        return message

    def locked(self, token: uuid.UUID, now: float) -> StoredMessage:
        """The message a live lock holds, or LockLost."""
        seq = self.locks.get(token)
        message = self.messages.get(seq) if seq is not None else None
        if message is None or message.lock_token != token or message.locked_until <= now:
            raise LockLost(token)
        return message

    def _unlock(self, message: StoredMessage) -> None:
        if message.lock_token is not None:
            self.locks.pop(message.lock_token, None)
        message.lock_token = None
        message.locked_until = 0.0

    def complete(self, token: uuid.UUID, now: float) -> None:
        """Remove the locked message."""
        message = self.locked(token, now)
        self._unlock(message)
        del self.messages[message.sequence_number]

    def release(self, token: uuid.UUID, now: float) -> None:
        """Unlock without counting a delivery (the receiver never handed it to the application)."""
        self._unlock(self.locked(token, now))

    def abandon(self, token: uuid.UUID, now: float) -> None:
        """Unlock and count a failed delivery, dead-lettering past MaxDeliveryCount."""
        self._failed_delivery(self.locked(token, now))

    def _failed_delivery(self, message: StoredMessage) -> None:
        self._unlock(message)
        message.delivery_count += 1
        if message.delivery_count >= self.max_delivery_count and self.dlq is not None:
            description = f"Message could not be consumed after {self.max_delivery_count} delivery attempts."
            self._move_to_dlq(message, MAX_DELIVERY_COUNT_EXCEEDED, description)

    def dead_letter(self, token: uuid.UUID, now: float, reason: str | None, description: str | None) -> None:
        """Move the locked message to the dead-letter sub-queue with the receiver's reason."""
        message = self.locked(token, now)
        if self.dlq is None:
            raise EntityError("amqp:not-allowed", "A dead-letter queue message cannot be dead-lettered again.")
        self._unlock(message)
        self._move_to_dlq(message, reason, description)

    def _move_to_dlq(self, message: StoredMessage, reason: str | None, description: str | None) -> None:
        assert self.dlq is not None
        del self.messages[message.sequence_number]
        message.dead_letter = (reason or "", description or "")
        message.expires_at = float("inf")  # dead-lettered messages do not expire
        self.dlq.messages[message.sequence_number] = message

    def renew(self, token: uuid.UUID, now: float) -> float:
        """Extend a live lock by the lock duration; return the new expiry."""
        message = self.locked(token, now)
        message.locked_until = now + self.lock_duration
        return message.locked_until

    def tick(self, now: float) -> bool:
        """Expire locks (a failed delivery) and messages past their time to live; True when anything changed."""
        changed = False
        for message in list(self.messages.values()):
            if message.lock_token is not None and message.locked_until <= now:
                self._failed_delivery(message)
                changed = True
            elif message.lock_token is None and message.expires_at <= now and message.sequence_number in self.messages:
                if self.dead_letter_on_expiration and self.dlq is not None:
                    self._move_to_dlq(message, TTL_EXPIRED, "The message expired and was dead lettered.")
                else:
                    del self.messages[message.sequence_number]
                changed = True
        return changed

    def peek(self, from_sequence: int, count: int) -> list[StoredMessage]:
        """Browse without locking: messages at or after `from_sequence`, in sequence order."""
        found = (m for m in self.messages.values() if m.sequence_number >= from_sequence)
        ordered = sorted(found, key=lambda m: m.sequence_number)
        return ordered[:count]


@dataclass
class Sender:
    """A sendable entity (queue or topic): sequence numbers, duplicate detection and scheduled messages."""

    path: str
    default_ttl: float
    requires_duplicate_detection: bool
    duplicate_window: float
    targets: Callable[[StoredMessage], list[MessageQueue]]
    next_sequence: int = 1
    seen_ids: dict[str, float] = field(default_factory=dict)
    scheduled: dict[int, StoredMessage] = field(default_factory=dict)
    duplicates_dropped: int = 0

    def _stored(self, encoded: bytes, now: float) -> StoredMessage:
        sections = wire.split(encoded)
        message = Message()
        message.decode(encoded)
        annotations = wire.annotations_of(sections)
        scheduled = annotations.get("x-opt-scheduled-enqueue-time")
        ttl = message.ttl if message.ttl else None
        lifetime = min(self.default_ttl, ttl) if ttl else self.default_ttl
        props = {str(k): v for k, v in (message.properties or {}).items()}
        system = {
            "messageid": _text(message.id), "correlationid": _text(message.correlation_id), "label": message.subject,
            "contenttype": message.content_type, "to": message.address, "replyto": message.reply_to,
            "sessionid": message.group_id, "replytosessionid": message.reply_to_group_id,
        }
        seq = self.next_sequence
        self.next_sequence += 1
        return StoredMessage(
            seq, encoded, _text(message.id), now, now + lifetime, props, system,
            ttl_ms=int(ttl * 1000) if ttl else None,
            scheduled_at=float(scheduled) / 1000 if scheduled is not None else None,
        )

    def _duplicate(self, message_id: str | None, now: float) -> bool:
        if not self.requires_duplicate_detection or message_id is None:
            return False
        self.seen_ids = {k: t for k, t in self.seen_ids.items() if t + self.duplicate_window > now}
        if message_id in self.seen_ids:
            self.duplicates_dropped += 1
            return True
        self.seen_ids[message_id] = now
        return False

    def send(self, encoded: bytes, now: float) -> int | None:
        """Accept one message: drop a duplicate id inside the window, hold a future one, else enqueue it."""
        stored = self._stored(encoded, now)
        if self._duplicate(stored.message_id, now):
            return None
        if stored.scheduled_at is not None and stored.scheduled_at > now:
            self.scheduled[stored.sequence_number] = stored
        else:
            self._enqueue(stored, now)
        return stored.sequence_number

    def schedule(self, encoded: bytes, now: float) -> int:
        """Hold a message until its ScheduledEnqueueTime; its sequence number is assigned now."""
        stored = self._stored(encoded, now)
        if stored.scheduled_at is None:
            raise EntityError("com.microsoft:argument-error", "A scheduled message needs x-opt-scheduled-enqueue-time.")
        if not self._duplicate(stored.message_id, now):
            self.scheduled[stored.sequence_number] = stored
        return stored.sequence_number

    def cancel(self, sequence_numbers: list[int]) -> None:
        """Drop scheduled messages; an unknown number is an error, as the service reports it."""
        missing = [n for n in sequence_numbers if n not in self.scheduled]
        if missing:
            raise EntityError("com.microsoft:message-not-found", f"No scheduled message with sequence number {missing}.")
        for number in sequence_numbers:
            del self.scheduled[number]

    def _enqueue(self, stored: StoredMessage, now: float) -> None:
        # Time to live runs from the enqueue time, which for a scheduled message is when it comes due.
        stored.expires_at = now + (stored.expires_at - stored.enqueued_at)
        stored.enqueued_at = now
        for queue in self.targets(stored):
            copy = stored.copy()
            queue.messages[copy.sequence_number] = copy

    def tick(self, now: float) -> bool:
        """Enqueue scheduled messages whose time has come."""
        due = [m for m in self.scheduled.values() if m.scheduled_at is not None and m.scheduled_at <= now]
        for message in due:
            del self.scheduled[message.sequence_number]
            self._enqueue(message, now)
        return bool(due)


def _text(value: Any) -> Any:
    """Message and correlation ids compare as strings in filters and duplicate detection."""
    return None if value is None else str(value)


def _receiver(path: str, config: QueueConfig | SubscriptionConfig) -> MessageQueue:
    dlq = MessageQueue(f"{path}/{_DEAD_LETTER_QUEUE}", config.lock_duration, 2**31 - 1, False)
    return MessageQueue(path, config.lock_duration, config.max_delivery_count, config.dead_letter_on_expiration, dlq)


class Namespace:
    """All entities of the one namespace, addressed by entity path (case-insensitively, as Service Bus does)."""

    def __init__(self, config: NamespaceConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.senders: dict[str, Sender] = {}
        self.receivers: dict[str, MessageQueue] = {}
        for queue in config.queues:
            self._add_queue(queue)
        for topic in config.topics:
            self._add_topic(topic)

    def _add_queue(self, config: QueueConfig) -> None:
        receiver = _receiver(config.name, config)
        self._register(receiver)
        self.senders[config.name.lower()] = Sender(
            config.name, config.default_ttl, config.requires_duplicate_detection, config.duplicate_window, lambda m: [receiver]
        )

    def _add_topic(self, config: TopicConfig) -> None:
        subscriptions: list[tuple[SubscriptionConfig, MessageQueue]] = []
        for sub in config.subscriptions:
            receiver = _receiver(f"{config.name}/Subscriptions/{sub.name}", sub)
            self._register(receiver)
            subscriptions.append((sub, receiver))

        def targets(message: StoredMessage) -> list[MessageQueue]:
            # A subscription without rules has the $Default TrueFilter; otherwise any matching rule selects it.
            return [
                queue for sub, queue in subscriptions
                if not sub.rules or any(r.predicate(message.application_properties, message.system_properties) for r in sub.rules)
            ]

        self.senders[config.name.lower()] = Sender(
            config.name, config.default_ttl, config.requires_duplicate_detection, config.duplicate_window, targets
        )

    def _register(self, receiver: MessageQueue) -> None:
        self.receivers[receiver.path.lower()] = receiver
        assert receiver.dlq is not None
        self.receivers[receiver.dlq.path.lower()] = receiver.dlq

    def sender(self, path: str) -> Sender:
        """The queue or topic a send link or schedule request names."""
        found = self.senders.get(path.lower())
        if found is None:
            raise EntityError("amqp:not-found", f"The messaging entity '{path}' could not be found for sending.")
        return found

    def receiver(self, path: str) -> MessageQueue:
        """The queue, subscription or dead-letter queue a receive link names."""
        found = self.receivers.get(path.lower())
        if found is None:
            raise EntityError("amqp:not-found", f"The messaging entity '{path}' could not be found for receiving.")
        return found

    def exists(self, path: str) -> bool:
        """Whether a path names an entity (management addresses are checked on their base)."""
        return path.lower() in self.senders or path.lower() in self.receivers

    def tick(self) -> bool:
        """Advance time: scheduled messages, expired locks and messages."""
        now = self.clock()
        changed = False
        for sender in self.senders.values():
            changed = sender.tick(now) or changed
        for receiver in self.receivers.values():
            changed = receiver.tick(now) or changed
        return changed


def management_base(path: str) -> str | None:
    """`q/$management` → `q`; None when the path is not a management node."""
    head, _, tail = path.rpartition("/")
    return head if tail.lower() == _MANAGEMENT and head else None
