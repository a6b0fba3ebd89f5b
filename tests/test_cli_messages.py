"""The CLI follows shared.messaging's Service Bus rules: envelope ids, resubmission ids and lineage, envelope sniffing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messaging import MESSAGE_ID_LIMIT, envelope_message_id, resubmitted_message_id
from tests.fakes import RecordingServiceBus
from tests.support import GROUP, REGISTRY, SUB
from tests.test_cli import DLQ, EVENT, QUEUE, cli, dead_letter

REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"


@pytest.mark.parametrize(
    "event",
    [
        {"specversion": "1.0", "id": "ce-7", "source": "/ci", "type": "Acr.Run.ArchiveRequested", "data": EVENT},
        {"eventType": "Acr.Run.ArchiveRequested", "id": "eg-7", "subject": "s", "dataVersion": "1", "data": EVENT},
        {"eventType": "Acr.Run.ArchiveRequested", "id": "eg-8", "subject": "s", "eventTime": "2026-12-01T00:00:00Z", "data": EVENT},
    ],
    ids=["cloudevents", "event-grid", "event-grid-without-dataVersion"],
)
def test_send_uses_an_envelope_id_exactly_when_the_app_reads_an_envelope(event: dict[str, Any]) -> None:
    """The message id is shared.messaging's envelope id: CloudEvents, and Event Grid with `data` or `dataVersion`."""
    bus = RecordingServiceBus()
    result = cli("send", json.dumps(event), bus=bus)
    assert result.status == 0, result.err
    (message,) = bus.messages(QUEUE)
    assert message.message_id == envelope_message_id(event) == event["id"]


def test_send_of_a_bare_event_with_an_id_field_gets_a_fresh_message_id() -> None:
    """A bare event's `id` is no envelope id (shared.messaging): the message id is random, not that text."""
    bus = RecordingServiceBus()
    assert cli("send", json.dumps({**EVENT, "id": "not-an-envelope"}), bus=bus).status == 0
    assert bus.messages(QUEUE)[0].message_id != "not-an-envelope"


@pytest.mark.parametrize(
    ("carried", "first"),
    [
        ({"resubmittedFrom": "m0", "resubmitCount": 2}, "m0"),
        ({"resubmittedFrom": "x" * 129, "resubmitCount": 1}, "dead-1"),
        ({"resubmittedFrom": 42}, "dead-1"),
        ({"resubmittedFrom": ""}, "dead-1"),
    ],
    ids=["kept", "too-long", "not-a-string", "empty"],
)
def test_a_resubmission_keeps_only_an_id_shaped_lineage(carried: dict[str, Any], first: str) -> None:
    """resubmittedFrom is anyone's to set: only a 1-128 character string is the chain's first id."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "dead-1", **carried)
    assert cli("dead-letters", "resubmit", bus=bus).status == 0
    (copy,) = bus.messages(QUEUE)
    count = int(carried.get("resubmitCount", 0)) + 1
    assert copy.application_properties["resubmittedFrom"] == first
    assert copy.message_id == resubmitted_message_id(first, count)


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=100, max_size=128))
def test_a_resubmission_of_a_long_id_fits_service_bus(message_id: str) -> None:
    """The copy's id is shared.messaging's: `<id>:resubmit-1`, or its SHA-256 form past 128 characters."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, message_id)
    assert cli("dead-letters", "resubmit", bus=bus).status == 0
    (copy,) = bus.messages(QUEUE)
    assert copy.message_id == resubmitted_message_id(message_id, 1) and len(copy.message_id) <= MESSAGE_ID_LIMIT
    assert bus.waiting(DLQ) == []


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        ({"specversion": "1.0", "id": "c", "source": "/ci", "type": "t", "data": {**EVENT, "runId": "ce1"}},
         f"{REGISTRY}/ce1 isArchiveEnabled=True"),
        ({"eventType": "Microsoft.ContainerRegistry.ImagePushed", "id": "p", "topic": REGISTRY_ID, "dataVersion": "1.0",
          "data": {"target": {"repository": "release/app", "digest": "sha256:12ab"}}},
         "ImagePushed release/app@sha256:12ab"),
        ({**EVENT, "runId": "bare1", "data": {"runId": "inner"}}, f"{REGISTRY}/bare1 isArchiveEnabled=True"),
    ],
    ids=["cloudevents", "image-pushed", "bare-event-with-a-data-field"],
)
def test_dead_letters_list_reads_envelopes_as_the_app_does(event: dict[str, Any], shown: str) -> None:
    """The EVENT column unwraps CloudEvents/Event Grid only (a bare event's `data` is a field) and shows a push's image."""
    bus = RecordingServiceBus()
    dead_letter(bus, event, "m1")
    result = cli("dead-letters", "list", "-o", "table", bus=bus)
    assert result.status == 0, result.err
    assert shown in result.out.splitlines()[2]
