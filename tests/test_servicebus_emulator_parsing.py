"""Hostile input to the emulator's parsers: SQL filters, put-tokens and AMQP bytes fail only in their own way."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulators.servicebus import cbs, wire
from emulators.servicebus.sqlfilter import parse_sql_filter

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False), st.text(max_size=8))
_PROPS = st.dictionaries(st.sampled_from(["a", "outcome", "n", "x"]), _VALUES, max_size=4)
_FILTER_WORDS = st.sampled_from(
    ["a", "outcome", "n", "sys.Label", "=", "<>", "<", ">=", "AND", "OR", "NOT", "IN"]
    + ["(", ")", ",", "IS", "NULL", "'v'", "1", "2.5", "TRUE"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_FILTER_WORDS, min_size=1, max_size=12).map(" ".join), _PROPS, _PROPS)
def test_filter_grammar_either_parses_or_raises_value_error(expression: str, props: dict, system: dict) -> None:
    """Any token soup is parsed or refused with ValueError; a parsed filter answers a bool for any properties."""
    try:
        predicate = parse_sql_filter(expression)
    except ValueError:
        return
    assert predicate(props, {k.lower(): v for k, v in system.items()}) in (True, False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_filter_text_never_crashes_the_parser(expression: str) -> None:
    """Free text is a filter or a ValueError, nothing else."""
    try:
        parse_sql_filter(expression)
    except ValueError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_a_message_or_a_value_error(data: bytes) -> None:
    """A transfer's payload either splits into AMQP sections or is refused with ValueError."""
    try:
        sections = wire.split(data)
    except ValueError:
        return
    assert b"".join(s for _, s in sections) == data


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120), st.sampled_from(["jwt", "servicebus.windows.net:sastoken", "other", None]))
def test_forged_put_tokens_grant_nothing_unless_bearer(token: str, token_type: str | None) -> None:
    """A token that is not a valid SAS signature is refused, unless it is a non-SAS bearer token."""
    try:
        granted = cbs.authorize(token, token_type, "sb://h/q", cbs.Keys())
    except cbs.CbsRefused:
        return
    assert token_type == "jwt" and token and not token.startswith("SharedAccessSignature ") and granted == "q"


@pytest.mark.parametrize(
    ("resource", "key", "expiry", "ok"),
    [
        ("sb://h/q", cbs.DEFAULT_KEY, 3600, True),
        ("sb://h/", cbs.DEFAULT_KEY, 3600, True),
        ("sb://h/q", "other", 3600, False),
        ("sb://h/q", cbs.DEFAULT_KEY, -10, False),
        ("sb://h/other", cbs.DEFAULT_KEY, 3600, False),
    ],
    ids=["signed-for-entity", "signed-for-namespace", "wrong-key", "expired", "other-entity"],
)
def test_sas_tokens_are_verified(resource: str, key: str, expiry: int, ok: bool) -> None:
    """SAS: right key name and key, unexpired, signed for the audience or a path above it."""
    from azure.servicebus._pyamqp.utils import generate_sas_token

    token = generate_sas_token(resource, cbs.DEFAULT_KEY_NAME, key, int(time.time()) + expiry)
    if ok:
        assert cbs.authorize(token, "jwt", "sb://h/q", cbs.Keys()) == "q"
    else:
        with pytest.raises(cbs.CbsRefused):
            cbs.authorize(token, "jwt", "sb://h/q", cbs.Keys())
