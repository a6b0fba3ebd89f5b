"""Received Service Bus messages as plain data, and the copy a dead letter is re-submitted as."""

from __future__ import annotations

import json
from typing import Any

from azure.servicebus import ServiceBusMessage
from azure.servicebus.amqp import AmqpMessageBodyType

from shared.messaging import MESSAGE_ID_LIMIT, resubmitted_message_id

__all__ = [
    "RESUBMIT_COUNT",
    "RESUBMITTED_FROM",
    "body_bytes",
    "body_value",
    "describe_dead_letter",
    "properties",
    "resubmission",
]

RESUBMITTED_FROM = "resubmittedFrom"
"""Application property of a re-submitted copy: the message id of the first message in the chain."""
RESUBMIT_COUNT = "resubmitCount"
"""Application property of a re-submitted copy: how many times the event has been re-submitted."""

# Service Bus adds these when it dead-letters a message; they describe the old delivery, not the event.
_BROKER_PROPERTIES = frozenset({"DeadLetterReason", "DeadLetterErrorDescription", "DeadLetterSource"})


def _text(value: Any) -> Any:
    """AMQP strings come off the wire as bytes; give them back as text when they are UTF-8."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).hex()
    return value


def properties(message: Any) -> dict[str, Any]:
    """Application properties with text keys and text string values."""
    return {str(_text(key)): _text(value) for key, value in (message.application_properties or {}).items()}


def body_bytes(message: Any) -> bytes:
    """The message body as bytes (a data body joined; any other AMQP body JSON-encoded)."""
    body = message.body
    if getattr(message, "body_type", AmqpMessageBodyType.DATA) == AmqpMessageBodyType.DATA:
        return body if isinstance(body, (bytes, bytearray)) else b"".join(body)
    return json.dumps(_text(body), default=str).encode()


def body_value(message: Any) -> Any:
    """The body decoded as JSON when it is JSON, else as text."""
    raw = body_bytes(message)
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def describe_dead_letter(message: Any) -> dict[str, Any]:
    """What an operator needs to decide about a dead letter."""
    enqueued = message.enqueued_time_utc
    return {
        "sequenceNumber": message.sequence_number,
        "messageId": message.message_id,
        "correlationId": message.correlation_id,
        "enqueuedTime": enqueued.isoformat().replace("+00:00", "Z") if enqueued else None,
        "deliveryCount": message.delivery_count,
        "deadLetterReason": message.dead_letter_reason,
        "deadLetterErrorDescription": message.dead_letter_error_description,
        "applicationProperties": {k: v for k, v in properties(message).items() if k not in _BROKER_PROPERTIES},
        "body": body_value(message),
    }


def resubmission(dead: Any) -> ServiceBusMessage:
    """The copy of a dead letter to send to the queue again.

    Same body, content type, subject, correlation id and application properties. The message id is
    derived, `<first id>:resubmit-<n>`, not copied: the archive queue has duplicate detection, so a copy
    under the old id sent within its window would be dropped without an error, and the topic would drop
    the new outcome as a duplicate of the one the last delivery published. Derived deterministically, a
    re-send of the same copy (after a crash before the dead letter was completed) is the duplicate instead.
    """
    carried = properties(dead)
    first = carried.get(RESUBMITTED_FROM)  # anyone who can send to the queue can set it: keep only an id-shaped value
    first_id = first if isinstance(first, str) and 0 < len(first) <= MESSAGE_ID_LIMIT else str(dead.message_id)
    count = _int(carried.get(RESUBMIT_COUNT)) + 1
    kept = {k: v for k, v in carried.items() if k not in _BROKER_PROPERTIES}
    kept.update({RESUBMITTED_FROM: first_id, RESUBMIT_COUNT: count})
    return ServiceBusMessage(
        body_bytes(dead),
        message_id=resubmitted_message_id(first_id, count),
        correlation_id=dead.correlation_id or dead.message_id,
        content_type=dead.content_type,
        subject=dead.subject,
        application_properties=kept,
    )


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0

