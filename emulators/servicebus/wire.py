"""AMQP 1.0 message sections as bytes: split a received message, rebuild it with broker annotations.

A stored message keeps the bytes the sender wrote, so properties, application property types and body
sections leave exactly as they arrived; only the header (delivery count) and message annotations (sequence
number, enqueued time, lock) are replaced when the broker delivers it. (AMQP 1.0 §3.2: header,
delivery-annotations, message-annotations, properties, application-properties, body, footer.)
"""

from __future__ import annotations

from typing import Any, Mapping

from proton import Data, Described, symbol, timestamp, ubyte, uint, ulong

__all__ = ["DATA", "HEADER", "MESSAGE_ANNOTATIONS", "Section", "annotations_of", "build", "ms", "split", "split_batch"]

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
_BODY = frozenset({0x75, 0x76, 0x77})
_KNOWN = frozenset(range(0x70, 0x79))

Section = tuple[int, bytes]


def _code(value: Any) -> int:
    if not isinstance(value, Described) or not isinstance(value.descriptor, int):
        raise ValueError("not an AMQP message section")
    return int(value.descriptor)


def split(encoded: bytes) -> list[Section]:
    """Split an encoded AMQP message into (section code, section bytes); raise ValueError if it is not one."""
    sections: list[Section] = []
    rest = memoryview(encoded)
    while rest:
        data = Data()
        try:
            used = data.decode(bytes(rest))
            data.rewind()
            data.next()
            code = _code(data.get_object())
        except Exception as error:  # noqa: BLE001 - proton raises its DataException or Python errors alike
            raise ValueError(f"malformed AMQP message: {error}") from error
        if code not in _KNOWN or used <= 0:
            raise ValueError(f"malformed AMQP message: section code {code:#x}")
        sections.append((code, bytes(rest[:used])))
        rest = rest[used:]
    if not sections:
        raise ValueError("empty AMQP message")
    return sections


def _value(section: bytes) -> Any:
    data = Data()
    data.decode(section)
    data.rewind()
    data.next()
    value = data.get_object().value
    # proton hands binaries out as views into its own buffer, which dies with `data`.
    return bytes(value) if isinstance(value, memoryview) else value


def split_batch(encoded: bytes) -> list[bytes] | None:
    """The inner messages of a Service Bus batch (format 0x80013700: each data section one message), else None.

    proton does not expose a delivery's message format, so a batch is recognised by its shape: every body
    section is a data section holding a complete AMQP message with a body.
    """
    sections = split(encoded)
    bodies = [s for s in sections if s[0] in _BODY]
    if not bodies or any(code != DATA for code, _ in bodies):
        return None
    inner: list[bytes] = []
    for _, section in bodies:
        payload = _value(section)
        try:
            parts = split(bytes(payload))
        except ValueError:
            return None
        if not any(code in _BODY for code, _ in parts) or parts[0][0] not in _KNOWN:
            return None
        inner.append(bytes(payload))
    return inner


def annotations_of(sections: list[Section]) -> dict[Any, Any]:
    """The message annotations a sender set (empty when none)."""
    for code, section in sections:
        if code == MESSAGE_ANNOTATIONS:
            value = _value(section)
            return dict(value) if isinstance(value, Mapping) else {}
    return {}


def _encode(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return data.encode()


def build(
    encoded: bytes,
    *,
    delivery_count: int,
    annotations: Mapping[str, Any],
    ttl_ms: int | None = None,
    dead_letter: tuple[str, str] | None = None,
) -> bytes:
    """Re-encode a stored message: fresh header, broker annotations over the sender's, dead-letter properties."""
    sections = split(encoded)
    merged = annotations_of(sections)
    merged.update({symbol(k): v for k, v in annotations.items()})
    replaced = {
        HEADER: _encode(HEADER, [True, ubyte(4), None if ttl_ms is None else uint(ttl_ms), False, uint(delivery_count)]),
        MESSAGE_ANNOTATIONS: _encode(MESSAGE_ANNOTATIONS, merged),
    }
    if dead_letter is not None:
        # Service Bus reports a dead letter's reason as application properties of the message itself.
        current = next((_value(s) for code, s in sections if code == APPLICATION_PROPERTIES), None) or {}
        props = {**dict(current), "DeadLetterReason": dead_letter[0], "DeadLetterErrorDescription": dead_letter[1]}
        replaced[APPLICATION_PROPERTIES] = _encode(APPLICATION_PROPERTIES, props)
    kept = {code: s for code, s in sections if code in (DELIVERY_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES)}
    kept.update(replaced)
    order = (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES)
    head = [kept[code] for code in order if code in kept]
    tail = [s for code, s in sections if code in _BODY or code == 0x78]
    return b"".join([*head, *tail])


def ms(seconds: float) -> timestamp:
    """An AMQP timestamp (milliseconds since the epoch) from epoch seconds."""
    return timestamp(int(seconds * 1000))
