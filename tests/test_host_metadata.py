"""Trigger metadata as the host sends it, for any message: strict JSON, every property kept, never an exception.

Messages are encoded to AMQP bytes and decoded again (as they arrive off the wire), without a broker.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceiveMode
from azure.servicebus._common.message import ServiceBusReceivedMessage
from azure.servicebus._pyamqp._decode import decode_payload
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._pyamqp.message import Header
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.host.metadata import decode_message, trigger_metadata


def off_the_wire(message: ServiceBusMessage, *, delivery_count: int = 0, sequence_number: int = 7,
                 raw_properties: dict[bytes, Any] | None = None) -> ServiceBusReceivedMessage:
    """The message as a peek-lock receiver gets it: encoded, decoded, with broker annotations and a lock token.

    `raw_properties` replace the application properties as decoded AMQP values (keys and strings as bytes), so a
    test can hand the receiver what any sender could put on the wire, not only what this SDK would encode.
    """
    outgoing = PyamqpTransport.to_outgoing_amqp_message(message.raw_amqp_message)
    amqp = decode_payload(memoryview(encode_payload(bytearray(), outgoing)))
    if raw_properties is not None:
        amqp = amqp._replace(application_properties=raw_properties)
    annotations = {b"x-opt-sequence-number": sequence_number, b"x-opt-enqueued-time": 1_800_000_000_000,
                   b"x-opt-locked-until": 1_800_000_060_000}
    amqp = amqp._replace(message_annotations=annotations, header=Header(delivery_count=delivery_count))
    received = ServiceBusReceivedMessage(amqp, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, receiver=None)
    received._delivery_tag = uuid.UUID(int=42).bytes_le  # the receiver reads the lock token from the delivery tag
    return received


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.binary(max_size=40), st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.binary(max_size=5), scalars, max_size=3))


@settings(max_examples=80, deadline=None)
@given(properties=st.dictionaries(st.binary(min_size=1, max_size=20), values, max_size=6),
       body=st.binary(max_size=200), delivery_count=st.integers(0, 100))
def test_any_message_becomes_strict_json_metadata(properties: dict[bytes, Any], body: bytes, delivery_count: int) -> None:
    """Whatever a sender put in the properties (bad UTF-8, 64-bit, NaN, nesting), the metadata is strict JSON."""
    received = off_the_wire(ServiceBusMessage(body), delivery_count=delivery_count, raw_properties=properties)

    metadata = trigger_metadata(received)
    msg = decode_message(received)

    for datum in metadata.values():
        assert datum.type in ("string", "json")
        if datum.type == "json":
            _strict(datum.value)
    assert msg.get_body() == body
    assert msg.delivery_count == delivery_count + 1
    expected = {key.decode("utf-8", "replace"): value for key, value in properties.items()}  # bad keys may collide
    assert set(msg.application_properties) == set(expected)
    for name, value in expected.items():
        got = msg.application_properties[name]
        if isinstance(value, float) and not math.isfinite(value):
            assert got in ("NaN", "Infinity", "-Infinity")
        elif isinstance(value, bytes):
            assert got == value.decode("utf-8", "replace")
        elif isinstance(value, (bool, int, float)) or value is None:
            assert got == value


def test_broker_fields_arrive_typed() -> None:
    """Sequence number and counts as numbers, times as aware datetimes, the lock token as text, Label as Subject."""
    received = off_the_wire(ServiceBusMessage(b"x", message_id="m", correlation_id="c", subject="s", content_type="text/plain",
                                              to="t", reply_to="r"), delivery_count=2, sequence_number=99)

    msg = decode_message(received)

    assert (msg.sequence_number, msg.delivery_count, msg.lock_token) == (99, 3, str(uuid.UUID(int=42)))
    assert msg.enqueued_time_utc == datetime.fromtimestamp(1_800_000_000, UTC)
    assert msg.locked_until == datetime.fromtimestamp(1_800_000_060, UTC)
    assert (msg.message_id, msg.correlation_id, msg.subject, msg.label, msg.content_type, msg.to, msg.reply_to) == (
        "m", "c", "s", "s", "text/plain", "t", "r")
    assert trigger_metadata(received)["MessageId"].type == "string" and trigger_metadata(received)["DeliveryCount"].type == "json"
