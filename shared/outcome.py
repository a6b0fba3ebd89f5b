"""Outcome messages (contract §4): the document, its Service Bus properties and its OUTCOME_FILE line."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from shared import jsontext
from shared.errors import ArchiverError, EventRejected
from shared.events import ArchiveRequest
from shared.jsontext import encoded_size, has_lone_surrogate, replace_lone_surrogates
from shared.messaging import outcome_message_id

__all__ = [
    "RAW_EVENT_LIMIT",
    "RUN_LIMIT",
    "SUBJECTS",
    "ArmAnswer",
    "Inbound",
    "Outcome",
    "build_outcome",
    "error_body",
    "new_correlation_id",
    "utc_stamp",
]

SUBJECTS = {
    "succeeded": "RunArchiveUpdated",
    "failed": "RunArchiveUpdateFailed",
    "rejected": "RunArchiveEventRejected",
}
RAW_EVENT_LIMIT = 64 * 1024
"""Bytes of `rawEvent` as it is written inside the outcome's JSON (UTF-8, escapes included)."""
ERROR_CODE_LIMIT = 128
ERROR_MESSAGE_LIMIT = 4096
"""Characters kept of an error's code (and ARM request id) and message."""

RUN_LIMIT = 64 * 1024
"""Bytes of `run` inside the outcome's JSON; past it the Run is abridged (`_bounded_run`), so the outcome
always fits a Service Bus standard-tier message (256 KiB) beside a full rawEvent."""
_RUN_KEYS = ("id", "name", "type")
_RUN_PROPERTY_KEYS = (
    "runId", "status", "provisioningState", "isArchiveEnabled", "runType", "createTime", "startTime", "finishTime",
    "lastUpdatedTime", "task", "runErrorMessage",
)
_FIELD_LIMIT = 1024
"""Bytes an abridged Run's field may take; a longer one is left out."""

Source = Literal["servicebus", "http", "policy"]
"""`policy`: a run a sweep processed itself, under OUTCOME_FILE (contract §8)."""


class ArmAnswer(Protocol):
    """What an outcome needs of a finished update (shared.arm.ArmResult is one)."""

    @property
    def run(self) -> Any: ...

    @property
    def http_status(self) -> int: ...

    @property
    def attempts(self) -> int: ...

    @property
    def answer_bytes(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where an event came from: what its outcome must echo."""

    source: Source
    correlation_id: str
    message_id: str | None = None
    delivery_count: int | None = None
    raw: str = ""
    """The original event as text (a batch element re-serialized); travels in `rawEvent` when rejected."""
    id_base: str | None = None
    """What the outcome's message id derives from when it is not `message_id` (HTTP: x-correlation-id and position)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One outcome message: Service Bus properties plus the JSON body."""

    message_id: str
    correlation_id: str
    subject: str
    application_properties: dict[str, Any]
    body: dict[str, Any]

    @property
    def outcome(self) -> str:
        """succeeded, failed or rejected."""
        return self.body["outcome"]

    def body_bytes(self) -> bytes:
        """The body as compact, strict UTF-8 JSON, as it goes on the wire."""
        return jsontext.encode(self.body)

    def as_record(self) -> dict[str, Any]:
        """The OUTCOME_FILE line of this outcome."""
        return {
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "subject": self.subject,
            "content_type": "application/json",
            "application_properties": self.application_properties,
            "body": self.body,
        }


def new_correlation_id() -> str:
    """A fresh id for HTTP callers that sent no x-correlation-id."""
    return str(uuid.uuid4())


def build_outcome(
    inbound: Inbound,
    request: ArchiveRequest | None,
    *,
    result: ArmAnswer | None = None,
    error: ArchiverError | None = None,
) -> Outcome:
    """The outcome of one event: succeeded with `result`, or rejected/failed with `error`."""
    if error is None and result is None:
        raise ValueError("an outcome needs a result or an error")
    kind = "succeeded" if error is None else "rejected" if isinstance(error, EventRejected) else "failed"
    http_status = result.http_status if result is not None else getattr(error, "status", None)
    properties: dict[str, Any] = {"outcome": kind, "source": inbound.source}
    if request is not None:
        properties["registryName"] = request.registry_name
        properties["runId"] = request.run_id
        properties["isArchiveEnabled"] = request.is_archive_enabled
    if http_status is not None:
        properties["httpStatus"] = http_status
    if error is not None:
        properties["errorCode"] = _bounded_text(error.code, ERROR_CODE_LIMIT)
    body = {
        "outcome": kind,
        "source": inbound.source,
        "request": request.as_dict() if request is not None else None,
        "run": _bounded_run(result.run, result.answer_bytes) if result is not None else None,
        "error": error_body(error) if error is not None else None,
        "attempts": result.attempts if result is not None else error.attempts,  # type: ignore[union-attr]
        "correlationId": inbound.correlation_id,
        "inboundMessageId": inbound.message_id,
        "deliveryCount": inbound.delivery_count,
        "rawEvent": _truncate(inbound.raw) if kind == "rejected" else None,
        "completedAt": utc_stamp(),
    }
    message_id = outcome_message_id(inbound.id_base if inbound.id_base is not None else inbound.message_id)
    return Outcome(message_id, inbound.correlation_id, SUBJECTS[kind], properties, body)


def utc_stamp(moment: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds (now by default), as outcomes and ARM write times."""
    utc = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_body(error: ArchiverError) -> dict[str, Any]:
    """The contract's `error` object of an outcome (or a sweep summary), every text bounded."""
    request_id = getattr(error, "request_id", None)
    return {
        "code": _bounded_text(error.code, ERROR_CODE_LIMIT),
        "message": _bounded_text(error.message, ERROR_MESSAGE_LIMIT),
        "httpStatus": getattr(error, "status", None),
        "retryable": error.retryable,
        "armRequestId": _bounded_text(request_id, ERROR_CODE_LIMIT) if isinstance(request_id, str) else None,
    }


def _bounded_text(text: str, limit: int) -> str:
    """ARM's error code and message are its input, not ours: cut, and free of what UTF-8 cannot carry.

    The code also travels as an application property, which Service Bus encodes itself (not through
    shared.jsontext), and a megabyte of message would push the outcome past Service Bus's size for good.
    """
    cut = text[:limit]
    return replace_lone_surrogates(cut) if has_lone_surrogate(cut) else cut


ANSWER_GROWTH = 6
"""Re-encoding a decoded answer makes it at most this many times longer (numbers: `1e15` becomes
`1000000000000000.0`; strings only shrink or keep their size), so a small answer needs no measuring."""


def _bounded_run(run: Any, answer_bytes: int | None = None) -> Any:
    """ARM's Run as it answered, or past RUN_LIMIT its identity and state fields of at most _FIELD_LIMIT bytes each.

    A Run too large for the topic would make the outcome unpublishable for good: every delivery would
    PATCH again and fail to publish, and the message would be dead-lettered without an outcome.
    """
    if not isinstance(run, dict):
        return run
    if answer_bytes is not None and answer_bytes * ANSWER_GROWTH <= RUN_LIMIT:
        return run  # the hot path: a Run of a few KiB is not encoded twice
    if len(jsontext.encode(run)) <= RUN_LIMIT:
        return run
    abridged = {key: run[key] for key in _RUN_KEYS if _small(run.get(key))}
    properties = run.get("properties")
    if isinstance(properties, dict):
        abridged["properties"] = {key: properties[key] for key in _RUN_PROPERTY_KEYS if _small(properties.get(key))}
    return abridged


def _small(value: Any) -> bool:
    return isinstance(value, (str, bool, int, float)) and len(jsontext.encode(value)) <= _FIELD_LIMIT


def _truncate(raw: str) -> str:
    """At most RAW_EVENT_LIMIT bytes as text and as the JSON string that carries it.

    Escapes can make the JSON several times longer than the text (a control character becomes
    \u0000); bounding the encoded form keeps a hostile body from pushing the outcome past Service
    Bus's message size, where it could never be published.
    """
    if encoded_size(raw) <= RAW_EVENT_LIMIT:
        return raw
    keep = raw[:RAW_EVENT_LIMIT]  # a character is at least one byte: no longer prefix can fit
    low, high = 0, len(keep)
    while low < high:  # the longest prefix whose JSON form fits
        middle = (low + high + 1) // 2
        low, high = (middle, high) if encoded_size(keep[:middle]) <= RAW_EVENT_LIMIT else (low, middle - 1)
    return keep[:low]
