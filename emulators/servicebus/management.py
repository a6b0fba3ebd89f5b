"""Request/response operations on `<entity>/$management`, as the Service Bus client sends them.

Request: application property `operation`, body an AMQP map. Response: application properties `statusCode`,
`statusDescription` and, on failure, `errorCondition`; body an AMQP map.
(https://learn.microsoft.com/azure/service-bus-messaging/service-bus-amqp-request-response)
Supported: peek-message, schedule-message, cancel-scheduled-message, renew-lock, update-disposition
(completed, abandoned, suspended). Anything else answers 501 `amqp:not-implemented`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from proton import Array, Data, symbol

from emulators.servicebus import wire
from emulators.servicebus.store import EntityError, MessageQueue, Namespace

__all__ = ["Reply", "handle"]

_STATUS = {
    "com.microsoft:message-lock-lost": 410,
    "com.microsoft:message-not-found": 404,
    "amqp:not-found": 404,
    "com.microsoft:argument-error": 400,
    "amqp:not-implemented": 501,
    "amqp:not-allowed": 400,
}


@dataclass(frozen=True)
class Reply:
    """A management response: status, description, error condition (failures only) and body."""

    status: int
    description: str
    body: Any = None
    condition: str | None = None

    def application_properties(self) -> dict[str, Any]:
        """The response's application properties in the client's spelling."""
        props: dict[str, Any] = {"statusCode": self.status, "statusDescription": self.description}
        if self.condition:
            props["errorCondition"] = symbol(self.condition)
        return props


def _items(value: Any) -> list[Any]:
    """An AMQP array or list as a Python list."""
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise EntityError("com.microsoft:argument-error", "Expected an array.")


def _tokens(body: Mapping[str, Any]) -> list[uuid.UUID]:
    tokens = []
    for item in _items(body.get("lock-tokens")):
        if isinstance(item, uuid.UUID):
            tokens.append(item)
        elif isinstance(item, str):
            try:
                tokens.append(uuid.UUID(item))
            except ValueError as error:
                raise EntityError("com.microsoft:argument-error", "A lock token is not a UUID.") from error
        else:
            raise EntityError("com.microsoft:argument-error", "A lock token is not a UUID.")
    return tokens


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EntityError("com.microsoft:argument-error", f"'{name}' must be an integer.")
    return int(value)


def _peek(namespace: Namespace, queue: MessageQueue, body: Mapping[str, Any]) -> Reply:
    start = _int(body.get("from-sequence-number", 0), "from-sequence-number")
    count = _int(body.get("message-count", 1), "message-count")
    found = queue.peek(start, max(count, 0))
    if queue.path.lower() in namespace.senders:  # a queue's scheduled messages are browsable too
        scheduled = [m for m in namespace.senders[queue.path.lower()].scheduled.values() if m.sequence_number >= start]
        found = sorted(found + scheduled, key=lambda m: m.sequence_number)[: max(count, 0)]
    if not found:
        return Reply(204, "No messages to peek.")
    return Reply(200, "OK", {"messages": [{"message": m.wire_bytes()} for m in found]})


def _settle(queue: MessageQueue, body: Mapping[str, Any], now: float) -> Reply:
    status = body.get("disposition-status")
    tokens = _tokens(body)
    for token in tokens:
        queue.locked(token, now)  # all or nothing: check every lock before settling any
    for token in tokens:
        if status == "completed":
            queue.complete(token, now)
        elif status == "abandoned":
            queue.abandon(token, now)
        elif status == "suspended":
            queue.dead_letter(token, now, body.get("deadletter-reason"), body.get("deadletter-description"))
        else:
            raise EntityError("amqp:not-implemented", f"disposition-status {status!r} is not supported by this emulator.")
    return Reply(200, "OK")


def _schedule(namespace: Namespace, path: str, body: Mapping[str, Any], now: float) -> Reply:
    sender = namespace.sender(path)
    numbers = []
    for item in _items(body.get("messages")):
        encoded = item.get("message") if isinstance(item, Mapping) else None
        if not isinstance(encoded, (bytes, bytearray, memoryview)):
            raise EntityError("com.microsoft:argument-error", "Each scheduled message needs 'message' bytes.")
        try:
            numbers.append(sender.schedule(bytes(encoded), now))
        except ValueError as error:
            raise EntityError("com.microsoft:argument-error", str(error)) from error
    return Reply(200, "OK", {"sequence-numbers": Array(Data.NULL, Data.LONG, *numbers)})


def _dispatch(namespace: Namespace, path: str, operation: Any, body: Mapping[str, Any], now: float) -> Reply:
    if operation == "com.microsoft:schedule-message":
        return _schedule(namespace, path, body, now)
    if operation == "com.microsoft:cancel-scheduled-message":
        namespace.sender(path).cancel([_int(n, "sequence-numbers") for n in _items(body.get("sequence-numbers"))])
        return Reply(200, "OK")
    if operation == "com.microsoft:peek-message":
        return _peek(namespace, namespace.receiver(path), body)
    if operation == "com.microsoft:renew-lock":
        queue = namespace.receiver(path)
        expirations = [wire.ms(queue.renew(token, now)) for token in _tokens(body)]
        return Reply(200, "OK", {"expirations": Array(Data.NULL, Data.TIMESTAMP, *expirations)})
    if operation == "com.microsoft:update-disposition":
        return _settle(namespace.receiver(path), body, now)
    raise EntityError("amqp:not-implemented", f"Operation {operation!r} is not supported by this emulator.")


def handle(namespace: Namespace, path: str, operation: Any, body: Any) -> Reply:
    """Run one management request against the entity at `path`; failures become error replies."""
    try:
        if not isinstance(body, Mapping):
            raise EntityError("com.microsoft:argument-error", "The request body must be an AMQP map.")
        return _dispatch(namespace, path, operation, body, namespace.clock())
    except EntityError as error:
        return Reply(_STATUS.get(error.condition, 500), error.description, None, error.condition)
