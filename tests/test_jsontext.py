"""Strict JSON in and out (contract §2, last rule): what shared.jsontext refuses, and that all it writes is strict."""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.jsontext import MAX_DEPTH, UnreadableJson, dumps, encoded_size, loads
from tests.strict import strict_json

PURE = settings(max_examples=300, deadline=None)

# Any text Python can hold, lone surrogates included, and every float, NaN and infinities included.
any_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=20)
any_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), any_text)
any_value = st.recursive(any_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=30)
strict_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
strict_value = st.recursive(
    strict_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=30
)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("NaN", "NaN"),
        ('{"a": -Infinity}', "-Infinity"),
        ("1e999", "too large"),
        ("[-1e400]", "too large"),
        ("9" * 5000, "digits"),
        ('"\\ud800"', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ('["ok", "\\ud83d"]', "lone surrogate"),
        ('{"a": 1, "a": 2}', "repeats the key 'a'"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper"),
        ('{"a":' * 100_000, "nested deeper"),
        ("[" * 200_000, "nested deeper"),
        ("", "not valid JSON"),
        ("   \n\t", "not valid JSON"),
        ("{} {}", "not valid JSON"),
        ("\ufeff{}", "not valid JSON"),
    ],
    ids=[
        "nan", "minus-infinity", "overflowing-float", "overflowing-negative-float", "integer-past-digit-limit",
        "lone-high-surrogate", "lone-low-surrogate-in-a-key", "unpaired-high-surrogate-in-an-array", "duplicate-key",
        "one-level-too-deep", "100k-open-objects", "200k-open-arrays", "empty", "whitespace-only", "two-values", "bom-in-text",
    ],
)
def test_a_body_that_is_not_strict_json_is_unreadable_naming_why(text: str, problem: str) -> None:
    """Each class of non-strict JSON raises UnreadableJson (a ValueError), never another exception."""
    with pytest.raises(UnreadableJson) as caught:
        loads(text)
    assert problem in caught.value.problem


@pytest.mark.parametrize(
    "text",
    ["[" * MAX_DEPTH + "]" * MAX_DEPTH, '"\\ud83d\\ude00"', "1e308", "-" + "9" * 1000, '{"a": {"a": 1}}'],
    ids=["exactly-max-depth", "surrogate-pair-escape", "largest-decimal-exponent", "thousand-digit-integer", "same-key-at-two-levels"],
)
def test_strict_json_at_the_edges_is_read(text: str) -> None:
    """The limits are limits, not lower: the deepest allowed nesting, a proper surrogate pair, big finite numbers."""
    assert loads(text) == json.loads(text)


@PURE
@given(value=any_value, ascii_only=st.booleans())
def test_whatever_a_value_holds_it_is_written_as_strict_json(value: Any, ascii_only: bool) -> None:
    """NaN, infinities and lone surrogates anywhere: the text written is strict JSON (and ASCII when asked)."""
    text = dumps(value, ascii_only=ascii_only)
    strict_json(text)
    assert text.isascii() or not ascii_only


@PURE
@given(value=strict_value, ascii_only=st.booleans())
def test_a_strict_value_round_trips_unchanged(value: Any, ascii_only: bool) -> None:
    """Nothing is replaced in a value that was strict already, whichever form is written."""
    assert loads(dumps(value, ascii_only=ascii_only)) == value


@PURE
@given(value=any_value)
def test_only_the_unwritable_parts_change(value: Any) -> None:
    """NaN/Infinity become null and lone surrogates U+FFFD; every other number and character stays."""
    written = json.loads(dumps(value))

    def same(before: Any, after: Any) -> None:
        if isinstance(before, float) and not math.isfinite(before):
            assert after is None
        elif isinstance(before, str):
            assert after == "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in before)
        elif isinstance(before, list):
            assert len(after) == len(before)
            for b, a in zip(before, after):
                same(b, a)
        elif isinstance(before, dict):
            assert len(after) <= len(before)  # two keys may differ only in their surrogates
        else:
            assert after == before

    same(value, written)


@PURE
@given(text=st.text(max_size=200))
def test_encoded_size_is_the_bytes_inside_the_quotes(text: str) -> None:
    """encoded_size counts UTF-8 bytes of the escaped form, as the outcome carries it."""
    assert encoded_size(text) == len(json.dumps(text, ensure_ascii=False).encode()) - 2


def _full_check(text: str) -> Any:
    """The reading without the shortcut: decode, then always walk the whole tree."""
    from shared import jsontext

    value = jsontext._DECODER.decode(text)
    jsontext._check_tree(value)
    return value


# JSON texts near the refusals the shortcut skips: escapes (\u, surrogates among them), raw
# non-ASCII and lone surrogates, and nesting on both sides of MAX_DEPTH, in arrays and objects.
_escape = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u00e9", "\\u0041", "\\\\u", "\\n", "é", "\ud800", "a"])
_string = st.lists(_escape, max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
_nested = st.tuples(st.integers(0, MAX_DEPTH + 3), st.sampled_from(["[]", "{}"]), _string).map(
    lambda t: (t[1][0] if t[1] == "[]" else '{"k":') * t[0] + t[2] + (t[1][1] if t[1] == "[]" else "}") * t[0]
)


@PURE
@given(text=st.one_of(_nested, _string, any_value.filter(lambda v: _finite_tree(v)).map(partial(json.dumps, ensure_ascii=False))))
def test_the_fast_path_refuses_exactly_what_the_full_walk_refuses(text: str) -> None:
    """loads skips the tree walk only for texts that cannot hold a lone surrogate or MAX_DEPTH+1 levels."""
    try:
        expected: Any = ("value", _full_check(text))
    except UnreadableJson as error:
        expected = ("refused", error.problem)
    try:
        got: Any = ("value", loads(text))
    except UnreadableJson as error:
        got = ("refused", error.problem)
    assert got == expected


def _finite_tree(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite_tree(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite_tree(v) for v in value)
    return True
