"""Long throttling without holding the message lock: re-schedule a copy of the event onto the queue.

When ARM asks to wait (Retry-After) longer than what is left of ARM_RETRY_MAX_SECONDS, holding the
queue message (and its lock) for that long is wasteful, and redelivering it at once only meets the
same throttle. Instead a copy is scheduled onto the archive queue at now + Retry-After, and only once
Service Bus accepted it does the trigger return, so the original is completed: at every moment the
event is in the queue, as the original, the scheduled copy, or both.

The copy keeps the body, the correlation id and content type; the original message id travels in
`originalMessageId` (outcomes use it), and `rescheduleCount` counts the re-schedules. Its own message
id is derived from the original and that count, so a re-schedule repeated after a crash is dropped by
the queue's duplicate detection, while the copy itself is not mistaken for a duplicate of the original.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.servicebus import ServiceBusMessage

from shared.messaging import ORIGINAL_MESSAGE_ID, RESCHEDULE_COUNT, QueueMessage, rescheduled_message_id
from shared.publisher import SharedSender, send_batched, servicebus_client_factory
from shared.settings import Settings

__all__ = ["ServiceBusScheduler", "make_scheduler", "queue_message", "rescheduled_copy"]


class ServiceBusScheduler:
    """Schedules copies onto the archive queue, and enqueues a sweep's new events, through one shared queue sender."""

    def __init__(self, client_factory: Callable[[], Any], queue_name: str, *, now: Callable[[], datetime] | None = None) -> None:
        self._sender = SharedSender(client_factory, lambda client: client.get_queue_sender(queue_name=queue_name))
        self._now = now or (lambda: datetime.now(timezone.utc))

    @property
    def senders_created(self) -> int:
        """How many queue senders were opened."""
        return self._sender.senders_created

    def schedule(self, message: QueueMessage, delay_seconds: float) -> None:
        """Schedule the copy at now + delay_seconds; raise PublishFailed if Service Bus refused it."""
        copy = rescheduled_copy(message)
        when = self._now() + timedelta(seconds=delay_seconds)
        self._sender.use(lambda sender: sender.schedule_messages(copy, when), f"re-schedule message {message.message_id}")

    def enqueue(self, messages: Sequence[QueueMessage]) -> int:
        """Send new events in ServiceBusMessageBatches; returns the batches sent, raises PublishFailed."""
        outgoing = [queue_message(message) for message in messages]
        return send_batched(self._sender, outgoing, f"enqueue {len(outgoing)} archive event(s)")

    def close(self) -> None:
        """Close the sender and the client."""
        self._sender.close()


def queue_message(message: QueueMessage) -> ServiceBusMessage:
    """A new archive event as a Service Bus message: body, ids, content type and properties as given."""
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        application_properties=dict(message.application_properties),
    )


def rescheduled_copy(message: QueueMessage) -> ServiceBusMessage:
    """The copy to schedule: same body and correlation, counter incremented, original id kept."""
    lineage = message.lineage
    count, original = lineage.reschedule_count + 1, lineage.original_message_id
    properties = {**message.application_properties, RESCHEDULE_COUNT: count, ORIGINAL_MESSAGE_ID: original}
    return ServiceBusMessage(
        message.body,
        message_id=rescheduled_message_id(original, count),
        correlation_id=message.correlation_id or original,
        content_type=message.content_type,
        application_properties=properties,
    )


def make_scheduler(settings: Settings) -> ServiceBusScheduler | None:
    """A scheduler on the trigger's own queue and connection; None where Service Bus is not in use.

    With OUTCOME_FILE set the app runs without Service Bus (local runs, tests), so a long throttle
    takes the normal transient path there: redelivery, then the dead-letter queue.
    """
    if settings.outcome_file or not settings.archive_queue_name:
        return None
    if not (settings.servicebus_connection_string or settings.servicebus_namespace):
        return None
    return ServiceBusScheduler(servicebus_client_factory(settings, for_outcomes=False), settings.archive_queue_name)
