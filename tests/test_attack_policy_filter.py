"""Attack on ARCHIVE_POLICIES' filter (contract §8): a sweep sends `({filter}) and IsArchiveEnabled eq … and CreateTime ge`.

A filter whose parentheses close outside its string literals, or whose literal never ends, escapes those
parentheses: `a) or (b` turns the sweep's `$filter` into `(a) or (b) and …`, and the OData precedence of
`and` over `or` drops the lookback and the flag conjuncts for `a`. Such a filter is not OData of the §8 shape:
a ConfigurationError naming ARCHIVE_POLICIES, when the settings are read. Parentheses and quotes inside a
string literal (`''` is a quote inside one) are text and stay allowed.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.discovery import odata_string
from shared.errors import ConfigurationError
from shared.settings import Settings

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"

ESCAPING = {
    "close-then-reopen": "TaskName eq 'x') or (IsArchiveEnabled eq true",
    "close-only": "TaskName eq 'x')",
    "close-first": ")(TaskName eq 'x'",
    "open-only": "(TaskName eq 'x'",
    "unterminated-literal": "TaskName eq 'x",
    "doubled-quote-left-open": "TaskName eq 'x''",
}
KEPT = {
    "plain": "TaskName eq 'release' and Status eq 'Succeeded'",
    "nested-parentheses": "(TaskName eq 'a' or (TaskName eq 'b')) and Status eq 'Succeeded'",
    "parenthesis-in-literal": "TaskName eq 'a) or (b'",
    "doubled-quote-in-literal": "TaskName eq 'it''s'",
    "contains": "contains(OutputImageManifests, 'app@sha256:12')",
}


def read(filter_text: str) -> Settings:
    policy = {"name": "p1", "registry": f"{SUB}/platform-rg/platformRegistry", "filter": filter_text}
    return Settings.from_env({"ARCHIVE_POLICIES": json.dumps([policy])})


@pytest.mark.parametrize("filter_text", ESCAPING.values(), ids=ESCAPING.keys())
def test_a_filter_that_escapes_its_parentheses_is_malformed(filter_text: str) -> None:
    """ConfigurationError naming ARCHIVE_POLICIES and the filter field; the filter text itself is not quoted."""
    with pytest.raises(ConfigurationError) as caught:
        read(filter_text)
    assert caught.value.settings == ("ARCHIVE_POLICIES",)
    assert "ARCHIVE_POLICIES[p1].filter" in str(caught.value) and filter_text not in str(caught.value)


@pytest.mark.parametrize("filter_text", KEPT.values(), ids=KEPT.keys())
def test_a_balanced_filter_is_kept_as_written(filter_text: str) -> None:
    """Parentheses and quotes inside string literals are text."""
    (policy,) = read(filter_text).archive_policies
    assert policy.filter == filter_text


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40))
def test_any_text_as_a_string_literal_makes_a_valid_filter(text: str) -> None:
    """Whatever a literal holds (parentheses, quotes), `TaskName eq <literal>` is a filter the settings accept."""
    filter_text = f"(TaskName eq {odata_string(text)})"
    (policy,) = read(filter_text).archive_policies
    assert policy.filter == filter_text


@hypothesis_settings(max_examples=400, deadline=None)
@given(st.text(alphabet="()' ab", min_size=1, max_size=30))
def test_an_accepted_filter_never_escapes_the_sweeps_parentheses(filter_text: str) -> None:
    """Accepted: every ')' outside literals closes a '(' of the filter itself, and every literal ends."""
    try:
        read(filter_text)
    except ConfigurationError:
        return
    depth, in_literal, position = 0, False, 0
    while position < len(filter_text):
        char = filter_text[position]
        if in_literal:
            if char == "'" and filter_text[position + 1 : position + 2] == "'":
                position += 1
            elif char == "'":
                in_literal = False
        elif char == "'":
            in_literal = True
        elif char in "()":
            depth += 1 if char == "(" else -1
            assert depth >= 0, filter_text
        position += 1
    assert depth == 0 and not in_literal, filter_text
