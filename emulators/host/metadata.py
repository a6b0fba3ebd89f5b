"""A received Service Bus message as the host hands it to the Python worker: a body Datum and trigger metadata Datums.

The host sends .NET strings as `string` and every other value JSON-encoded as `json` (numbers, DateTimes as
ISO 8601 UTC, TimeSpans as `d.hh:mm:ss`, dictionaries). azure-functions' own
`ServiceBusMessageInConverter.decode` then builds the `func.ServiceBusMessage` the function receives.
Application properties are untrusted: keys and values that JSON cannot carry are turned into text.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import azure.functions as func
from azure.functions.meta import Datum
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpMessageBodyType

__all__ = ["body_datum", "decode_message", "trigger_metadata"]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json_value(value: Any) -> Any:
    """A value JSON can carry, as .NET's serializer would write it (bytes become text here)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")  # Json.NET's string form
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, timedelta):
        return _timespan(value)
    if isinstance(value, Enum):
        return _json_value(value.value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {_text(key): _json_value(item) for key, item in value.items()}
    return _text(value)  # bytes, UUIDs, AMQP described types


def _datetime(value: datetime) -> str:
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timespan(value: timedelta) -> str:
    hours, rest = divmod(int(value.total_seconds()) % 86400, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{value.days}.{clock}" if value.days else clock


def _datum(value: Any) -> Datum:
    if isinstance(value, str):
        return Datum(value, "string")
    return Datum(json.dumps(_json_value(value), allow_nan=False), "json")


def body_datum(message: ServiceBusReceivedMessage) -> Datum:
    """The body as the host sends a binary payload; AMQP value and sequence bodies as their JSON."""
    if message.body_type == AmqpMessageBodyType.DATA:
        return Datum(b"".join(message.body), "bytes")
    return Datum(json.dumps(_json_value(message.body), allow_nan=False), "json")


def trigger_metadata(message: ServiceBusReceivedMessage) -> dict[str, Datum]:
    """The trigger metadata the host sends with each message (names as the Service Bus extension binds them)."""
    properties = _json_value(dict(message.application_properties or {}))
    values: dict[str, Any] = {
        "MessageId": message.message_id,
        "CorrelationId": message.correlation_id,
        "ContentType": message.content_type,
        # AMQP's header counts *prior* attempts (0 on the first delivery); the host's .NET client reports
        # deliveries, header + 1, so a function sees 1 first (Azure.Messaging.ServiceBus AmqpMessageConverter).
        "DeliveryCount": (message.delivery_count or 0) + 1,
        "SequenceNumber": message.sequence_number,
        "EnqueuedSequenceNumber": message.enqueued_sequence_number,
        "EnqueuedTimeUtc": message.enqueued_time_utc,
        "ExpiresAtUtc": message.expires_at_utc,
        "LockedUntil": message.locked_until_utc,
        "ScheduledEnqueueTimeUtc": message.scheduled_enqueue_time_utc,
        "TimeToLive": message.time_to_live,
        "LockToken": str(uuid.UUID(str(message.lock_token))) if message.lock_token else None,
        "Subject": message.subject,
        "Label": message.subject,  # the pre-v5 name of Subject, still bound
        "To": message.to,
        "ReplyTo": message.reply_to,
        "ReplyToSessionId": message.reply_to_session_id,
        "SessionId": message.session_id,
        "PartitionKey": message.partition_key,
        "DeadLetterSource": message.dead_letter_source,
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
        "State": message.state,
        "UserProperties": properties,
        "ApplicationProperties": properties,
    }
    return {name: _datum(value) for name, value in values.items() if value is not None}


def decode_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The function's input, built by azure-functions' own converter from host-shaped Datums."""
    return ServiceBusMessageInConverter.decode(body_datum(message), trigger_metadata=trigger_metadata(message))
