"""Service Bus message rules, in one place: id limits and derivation, lineage properties, envelope sniffing.

- Ids: Service Bus takes message and correlation ids of at most 128 characters. Every id the app sends is
  derived deterministically from what came in, so a redelivery (or a caller's retry of the same HTTP
  request) yields the same id and topic/queue duplicate detection drops the repeat (contract §4, §5).
- Lineage: a re-scheduled copy carries `originalMessageId` and `rescheduleCount` (contract §5). Whoever can
  send to the queue can set them, so they are parsed as hostile input: anything but a string of 1-128
  characters, or an integer 0-MAX_RESCHEDULES, is ignored.
- Envelopes: which events are CloudEvents, Event Grid, Event Grid's subscription-validation handshake or
  ACR's ImagePushed, and the envelope id a sender may reuse as the message id.
- Discovery: a policy sweep's archive events carry `policy:{name}:{runId}:{flag}` ids, its summary
  `sweep:{name}:{start time}` (contract §8); both hash past 128 characters.

The operator CLI's resubmissions (`resubmitted_message_id`) and envelope ids follow the same rules.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ACR_EVENT_PREFIX",
    "IMAGE_PUSHED",
    "MAX_RESCHEDULES",
    "MESSAGE_ID_LIMIT",
    "ORIGINAL_MESSAGE_ID",
    "POLICY_PROPERTY",
    "RESCHEDULE_COUNT",
    "SUBSCRIPTION_VALIDATION",
    "Envelope",
    "Lineage",
    "QueueMessage",
    "bounded_correlation_id",
    "envelope_message_id",
    "envelope_of",
    "event_type_of",
    "http_id_base",
    "image_run_id_base",
    "is_image_pushed",
    "is_validation_event",
    "lineage_of",
    "outcome_message_id",
    "policy_message_id",
    "rescheduled_message_id",
    "resubmitted_message_id",
    "sweep_id",
]

MESSAGE_ID_LIMIT = 128
"""Service Bus's limit on message_id and correlation_id."""
MAX_RESCHEDULES = 5
"""Past this many re-schedules an event takes the normal transient-failure path (redelivery, then DLQ)."""
ORIGINAL_MESSAGE_ID = "originalMessageId"
RESCHEDULE_COUNT = "rescheduleCount"
"""Application properties of a re-scheduled copy (shared.reschedule)."""
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
ACR_EVENT_PREFIX = "Microsoft.ContainerRegistry."
POLICY_PROPERTY = "policy"
"""Application property of a policy sweep's archive event: the policy's name (contract §8)."""

Envelope = Literal["CloudEvents", "Event Grid"]
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


# -- ids ---------------------------------------------------------------------------------------------


def outcome_message_id(base: str | None) -> str:
    """The outcome's message id: `<base>:outcome`, a SHA-256 form past 128 characters, random without a base."""
    if base is None:
        return uuid.uuid4().hex
    derived = f"{base}:outcome"
    return derived if len(derived) <= MESSAGE_ID_LIMIT else "outcome-" + _sha256(base)


def rescheduled_message_id(original: str, count: int) -> str:
    """The id of the n-th re-scheduled copy: `<original>:rescheduled:<n>`, hashed past 128 characters."""
    derived = f"{original}:rescheduled:{count}"
    return derived if len(derived) <= MESSAGE_ID_LIMIT else f"{_sha256(original)}:rescheduled:{count}"


def resubmitted_message_id(first_id: str, count: int) -> str:
    """The id of the n-th operator resubmission of a dead letter: `<first id>:resubmit-<n>`, hashed past 128."""
    derived = f"{first_id}:resubmit-{count}"
    return derived if len(derived) <= MESSAGE_ID_LIMIT else "resubmit-" + _sha256(derived)


def policy_message_id(policy: str, run_id: str, flag: bool) -> str:
    """A sweep's archive event id: `policy:{name}:{runId}:{flag}`, a SHA-256 form past 128 characters.

    The same run found by two sweeps (or by a sweep and the operator's backfill) gets the same id, so
    the queue's duplicate detection drops the repeat while the first is still being processed.
    """
    derived = f"policy:{policy}:{run_id}:{'true' if flag else 'false'}"
    return derived if len(derived) <= MESSAGE_ID_LIMIT else "policy-" + _sha256(derived)


def sweep_id(policy: str, started_at: str) -> str:
    """The id (message and correlation) of a sweep and its summary: `sweep:{name}:{start time}`."""
    derived = f"sweep:{policy}:{started_at}"
    return derived if len(derived) <= MESSAGE_ID_LIMIT else "sweep-" + _sha256(derived)


def image_run_id_base(base: str | None, run_id: str) -> str | None:
    """What the outcome id of one run of an ImagePushed event derives from: the inbound id and the run id."""
    return None if base is None else f"{base}:run:{run_id}"


def http_id_base(correlation_id: str, position: int) -> str:
    """What an HTTP event's outcome id derives from: the caller's x-correlation-id and the event's position."""
    return f"http:{correlation_id}:{position}"


def bounded_correlation_id(value: str | None) -> str | None:
    """A caller's correlation id as Service Bus can carry it: stripped, cut to 128 characters.

    None when empty, or when it holds a control character or a surrogate: such a value could split the
    echoed response header or fail to encode, so it is ignored like an absent header.
    """
    cut = (value or "").strip()[:MESSAGE_ID_LIMIT]
    if not cut or _UNSAFE.search(cut):
        return None
    return cut


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


# -- lineage -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a queue message stands: the id it was first sent with, and how often it was re-scheduled."""

    original_message_id: str
    reschedule_count: int


def lineage_of(message_id: str, properties: Mapping[str, Any]) -> Lineage:
    """Read originalMessageId / rescheduleCount, ignoring any value that is not of the contract's shape."""
    original = properties.get(ORIGINAL_MESSAGE_ID)
    if not (isinstance(original, str) and 0 < len(original) <= MESSAGE_ID_LIMIT):
        original = message_id
    count = properties.get(RESCHEDULE_COUNT)
    if not (type(count) is int and 0 <= count <= MAX_RESCHEDULES):  # bool is an int; 2.0, "2" and "inf" are not
        count = 0
    return Lineage(original, count)


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """What the queue trigger hands over of a Service Bus message."""

    body: bytes
    message_id: str
    correlation_id: str | None = None
    delivery_count: int | None = None
    content_type: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lineage(self) -> Lineage:
        """The message's original id and re-schedule count, from its (untrusted) properties."""
        return lineage_of(self.message_id, self.application_properties)

    @property
    def original_message_id(self) -> str:
        """The id of the message as first sent, kept by re-scheduled copies."""
        return self.lineage.original_message_id

    @property
    def reschedule_count(self) -> int:
        """How many times this event was re-scheduled already."""
        return self.lineage.reschedule_count


# -- envelopes ---------------------------------------------------------------------------------------


def envelope_of(event: Any) -> Envelope | None:
    """CloudEvents 1.0 (`specversion`), Event Grid (`eventType` with `data` or `dataVersion`), or None for a bare event."""
    if not isinstance(event, Mapping):
        return None
    if "specversion" in event:
        return "CloudEvents"
    if "eventType" in event and ("dataVersion" in event or "data" in event):
        return "Event Grid"
    return None


def envelope_message_id(event: Any) -> str | None:
    """A CloudEvents/Event Grid `id` that fits a message id, so a re-sent event is a duplicate the queue drops."""
    identifier = event.get("id") if envelope_of(event) is not None else None
    return identifier if isinstance(identifier, str) and 0 < len(identifier) <= MESSAGE_ID_LIMIT else None


def event_type_of(event: Any) -> str | None:
    """The envelope's event type: Event Grid `eventType`, CloudEvents `type`; None for a bare event or a non-string."""
    envelope = envelope_of(event)
    if envelope is None:
        return None
    kind = event.get("eventType" if envelope == "Event Grid" else "type")
    return kind if isinstance(kind, str) else None


def is_image_pushed(event: Any) -> bool:
    """True for an ACR ImagePushed event (contract §2 shape 4), Event Grid or CloudEvents."""
    return event_type_of(event) == IMAGE_PUSHED


def is_validation_event(event: Any) -> bool:
    """True for Event Grid's subscription-validation handshake event."""
    return isinstance(event, Mapping) and event.get("eventType") == SUBSCRIPTION_VALIDATION
