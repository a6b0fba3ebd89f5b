"""Service Bus message rules (contract §4, §5): id limits and derivation, untrusted lineage properties, envelopes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.messaging import (
    MAX_RESCHEDULES,
    MESSAGE_ID_LIMIT,
    ORIGINAL_MESSAGE_ID,
    RESCHEDULE_COUNT,
    bounded_correlation_id,
    envelope_message_id,
    envelope_of,
    http_id_base,
    lineage_of,
    outcome_message_id,
    rescheduled_message_id,
    resubmitted_message_id,
)

PURE = settings(max_examples=300, deadline=None)
ids_of_any_length = st.text(min_size=1, max_size=400)
hostile_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300), st.binary(max_size=300),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@PURE
@given(base=ids_of_any_length)
def test_an_outcome_id_is_deterministic_and_fits_service_bus(base: str) -> None:
    """The same inbound id gives the same outcome id, whatever its length, never over 128 characters."""
    first, again = outcome_message_id(base), outcome_message_id(base)
    assert first == again and len(first) <= MESSAGE_ID_LIMIT
    assert first == f"{base}:outcome" or len(f"{base}:outcome") > MESSAGE_ID_LIMIT


@PURE
@given(one=ids_of_any_length, other=ids_of_any_length)
def test_different_inbound_ids_give_different_outcome_ids(one: str, other: str) -> None:
    """Long ids are hashed, not cut: two ids sharing their first 128 characters stay apart."""
    assert (outcome_message_id(one) == outcome_message_id(other)) is (one == other)


def test_an_outcome_without_an_inbound_id_gets_a_fresh_one() -> None:
    """No base (HTTP without x-correlation-id): each outcome id is new."""
    assert outcome_message_id(None) != outcome_message_id(None)


@PURE
@given(original=ids_of_any_length, count=st.integers(1, MAX_RESCHEDULES))
def test_a_rescheduled_copy_id_names_its_count_and_fits(original: str, count: int) -> None:
    """`<original>:rescheduled:<n>`, or its SHA-256 form past 128 characters; the count always shows."""
    derived = rescheduled_message_id(original, count)
    assert len(derived) <= MESSAGE_ID_LIMIT and derived.endswith(f":rescheduled:{count}")
    assert derived == rescheduled_message_id(original, count) != rescheduled_message_id(original, count + 1)


@PURE
@given(correlation=st.text(max_size=300), position=st.integers(0, 99))
def test_http_outcome_ids_follow_correlation_and_position(correlation: str, position: int) -> None:
    """The same header and position give the same outcome id; another position another id."""
    bounded = bounded_correlation_id(correlation)
    if bounded is None:
        assert not correlation.strip() or any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF or c in "\u2028\u2029" for c in correlation)
        return
    assert len(bounded) <= MESSAGE_ID_LIMIT
    same = outcome_message_id(http_id_base(bounded, position))
    assert same == outcome_message_id(http_id_base(bounded, position)) != outcome_message_id(http_id_base(bounded, position + 1))


@pytest.mark.parametrize(
    ("properties", "original", "count"),
    [
        ({ORIGINAL_MESSAGE_ID: "first", RESCHEDULE_COUNT: 2}, "first", 2),
        ({ORIGINAL_MESSAGE_ID: "x" * 128, RESCHEDULE_COUNT: MAX_RESCHEDULES}, "x" * 128, MAX_RESCHEDULES),
        ({ORIGINAL_MESSAGE_ID: "x" * 129}, "own-id", 0),
        ({ORIGINAL_MESSAGE_ID: "x" * 10_240}, "own-id", 0),
        ({ORIGINAL_MESSAGE_ID: ""}, "own-id", 0),
        ({ORIGINAL_MESSAGE_ID: b"first"}, "own-id", 0),
        ({ORIGINAL_MESSAGE_ID: 42}, "own-id", 0),
        ({RESCHEDULE_COUNT: "inf"}, "own-id", 0),
        ({RESCHEDULE_COUNT: float("inf")}, "own-id", 0),
        ({RESCHEDULE_COUNT: float("nan")}, "own-id", 0),
        ({RESCHEDULE_COUNT: 2.0}, "own-id", 0),
        ({RESCHEDULE_COUNT: "2"}, "own-id", 0),
        ({RESCHEDULE_COUNT: True}, "own-id", 0),
        ({RESCHEDULE_COUNT: -1}, "own-id", 0),
        ({RESCHEDULE_COUNT: MAX_RESCHEDULES + 1}, "own-id", 0),
        ({RESCHEDULE_COUNT: 10**100}, "own-id", 0),
        ({RESCHEDULE_COUNT: b"3"}, "own-id", 0),
        ({}, "own-id", 0),
    ],
    ids=[
        "well-formed", "at-the-limits", "id-of-129", "forged-10kb-id", "empty-id", "id-as-bytes", "id-as-number",
        "count-string-inf", "count-float-inf", "count-nan", "count-float", "count-digit-string", "count-bool",
        "count-negative", "count-past-max", "count-googol", "count-bytes", "none",
    ],
)
def test_lineage_properties_of_the_wrong_shape_are_ignored(properties: dict[str, Any], original: str, count: int) -> None:
    """originalMessageId: a string of 1-128 characters; rescheduleCount: an integer 0-5; anything else is ignored."""
    lineage = lineage_of("own-id", properties)
    assert (lineage.original_message_id, lineage.reschedule_count) == (original, count)


@PURE
@given(original=hostile_values, count=hostile_values)
def test_any_lineage_properties_give_a_usable_lineage(original: Any, count: Any) -> None:
    """Whatever the properties hold, the lineage is a bounded id and a count 0-5."""
    lineage = lineage_of("own-id", {ORIGINAL_MESSAGE_ID: original, RESCHEDULE_COUNT: count})
    assert isinstance(lineage.original_message_id, str) and 0 < len(lineage.original_message_id) <= MESSAGE_ID_LIMIT
    assert type(lineage.reschedule_count) is int and 0 <= lineage.reschedule_count <= MAX_RESCHEDULES


@pytest.mark.parametrize(
    ("event", "envelope"),
    [
        ({"specversion": "1.0", "data": {}}, "CloudEvents"),
        ({"eventType": "x", "data": {}}, "Event Grid"),
        ({"eventType": "x", "dataVersion": "1"}, "Event Grid"),
        ({"eventType": "x"}, None),
        ({"runId": "r"}, None),
        ([{"specversion": "1.0"}], None),
        ("specversion", None),
    ],
    ids=["cloudevents", "event-grid-with-data", "event-grid-with-data-version", "event-type-alone", "flat", "array", "string"],
)
def test_envelopes_are_told_apart(event: Any, envelope: str | None) -> None:
    """CloudEvents by specversion, Event Grid by eventType with data or dataVersion; anything else is bare."""
    assert envelope_of(event) == envelope


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        ("  abc-123  ", "abc-123"),
        ("c" * 300, "c" * 128),
        ("caf\u00e9", "caf\u00e9"),
        ("", None),
        ("   ", None),
        ("a\r\nSet-Cookie: x=1", None),
        ("a\x00b", None),
        ("a\u2028b", None),
        ("a\ud800b", None),
        (None, None),
    ],
    ids=["stripped", "cut-to-128", "non-ascii-letter", "empty", "blank", "header-splitting", "nul", "line-separator", "lone-surrogate", "absent"],
)
def test_a_correlation_header_is_kept_only_when_service_bus_and_http_can_carry_it(header: str | None, kept: str | None) -> None:
    """Stripped and cut to 128; a value with control characters or surrogates is ignored like an absent header."""
    assert bounded_correlation_id(header) == kept


@pytest.mark.parametrize(
    ("event", "message_id"),
    [
        ({"specversion": "1.0", "id": "ce-1", "data": {}}, "ce-1"),
        ({"eventType": "x", "id": "eg-1", "data": {}}, "eg-1"),
        ({"specversion": "1.0", "id": "i" * 129}, None),
        ({"specversion": "1.0", "id": ""}, None),
        ({"specversion": "1.0", "id": 7}, None),
        ({"runId": "r", "id": "flat-1"}, None),
    ],
    ids=["cloudevents", "event-grid", "id-of-129", "empty-id", "numeric-id", "bare-event"],
)
def test_an_envelope_id_is_a_message_id_only_when_service_bus_can_carry_it(event: dict[str, Any], message_id: str | None) -> None:
    """A CloudEvents/Event Grid id of 1-128 characters; a bare event's `id` is no envelope id."""
    assert envelope_message_id(event) == message_id


@PURE
@given(first=ids_of_any_length, count=st.integers(1, 50))
def test_a_resubmission_id_is_deterministic_and_fits(first: str, count: int) -> None:
    """`<first id>:resubmit-<n>` or its SHA-256 form; the same inputs give the same id, another count another."""
    derived = resubmitted_message_id(first, count)
    assert len(derived) <= MESSAGE_ID_LIMIT and derived == resubmitted_message_id(first, count) != resubmitted_message_id(first, count + 1)
