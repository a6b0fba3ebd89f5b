"""A sweep's bounds and filters, at unit level: pages and time stop it, fair shares, OData literals, hostile listings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.discovery import (
    SWEEP_MAX_PAGES,
    TIMER_SECONDS,
    archive_message,
    fair_deadline,
    image_filter,
    new_report,
    odata_string,
    policy_filter,
    run_sweep,
)
from shared.errors import ArmUnavailable
from shared.messaging import MESSAGE_ID_LIMIT, policy_message_id
from shared.policies import ArchivePolicy
from tests.support import SUB

POLICY = ArchivePolicy("release-builds", SUB, "rg", "myRegistry", filter="TaskName eq 'release'")
NOW = datetime(2026, 12, 1, 10, 30, 15, 999000, tzinfo=timezone.utc)


def run(n: int, registry_id: str = POLICY.registry_id) -> dict[str, Any]:
    return {"id": f"{registry_id}/runs/r{n}", "name": f"r{n}"}


class Clock:
    """A clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def endless() -> Iterator[list[dict[str, Any]]]:
    n = 0
    while True:
        yield [run(n), run(n + 1)]
        n += 2


def test_a_sweep_stops_at_its_page_bound_and_closes_the_listing() -> None:
    """An endless listing is cut at max_pages: no more pages requested, the sweep succeeded (the next finds the rest)."""
    delivered: list[int] = []
    pages = endless()
    report = run_sweep(
        new_report(POLICY, "timer", 30, NOW),
        pages,
        lambda m: delivered.append(len(m)) or len(m),
        deadline=float("inf"),
        max_pages=5,
    )
    assert (report.pages, report.matched, report.enqueued, report.error, report.stopped_early) == (5, 10, 10, None, True)
    assert delivered == [2] * 5
    with pytest.raises(StopIteration):
        next(pages)  # closed: the generator ends, as ArmClient.list_runs would stop requesting


def test_a_sweep_stops_at_its_deadline() -> None:
    """Each read of the clock moves it 10 s; with a 35 s deadline the sweep reads three pages, then stops."""
    report = run_sweep(new_report(POLICY, "timer", 30, NOW), endless(), len, deadline=35.0, clock=Clock(10.0))
    assert (report.pages, report.stopped_early) == (3, True)


def test_the_default_page_bound_covers_ten_thousand_runs_at_arms_page_size() -> None:
    """10,000 runs at 100 a page is 100 pages: well within one sweep's bound."""
    assert SWEEP_MAX_PAGES >= 10_000 // 100 * 2


def test_a_listing_error_keeps_what_was_handed_on() -> None:
    """Page two fails: page one's events were delivered, the error ends the sweep."""

    def pages() -> Iterator[list[dict[str, Any]]]:
        yield [run(1), run(2)]
        raise ArmUnavailable("ARM GET lost the connection")

    report = run_sweep(new_report(POLICY, "http", 30, NOW), pages(), len, deadline=float("inf"))
    assert (report.pages, report.enqueued, report.error.code if report.error else None) == (1, 2, "ArmUnavailable")


@pytest.mark.parametrize(
    "listed",
    [
        {"id": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/other/runs/r1"},
        {"id": POLICY.registry_id + "/runs/a/b"},
        {"id": POLICY.registry_id + "/runs/.."},
        {"id": POLICY.registry_id + "/runs/"},
        {"id": 42},
        {"name": "r1"},
        "not a run",
    ],
    ids=["other-registry", "nested-path", "dot-dot", "empty-run-id", "not-a-string", "no-id", "not-an-object"],
)
def test_a_listed_run_outside_the_policys_registry_is_not_sent_on(listed: Any) -> None:
    """ARM's answer is input: a run that is not one of the policy's registry gets no archive event."""
    assert archive_message(POLICY, listed, "sweep:x") is None


def test_registry_ids_compare_without_case() -> None:
    """ARM may answer with other casing of the fixed segments and names, as ARM ids are case-insensitive."""
    message = archive_message(POLICY, {"id": POLICY.registry_id.upper() + "/runs/r1"}, "sweep:x")
    assert message is not None and message.message_id == "policy:release-builds:r1:true"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (POLICY, "(TaskName eq 'release') and IsArchiveEnabled eq false and CreateTime ge 2026-11-01T10:30:15Z"),
        (ArchivePolicy("p", SUB, "rg", "myRegistry"), "IsArchiveEnabled eq false and CreateTime ge 2026-11-01T10:30:15Z"),
        (
            ArchivePolicy(
                "p", SUB, "rg", "myRegistry", filter="Status eq 'Failed' or Status eq 'Error'", is_archive_enabled=False
            ),
            "(Status eq 'Failed' or Status eq 'Error') and IsArchiveEnabled eq true and CreateTime ge 2026-11-01T10:30:15Z",
        ),
    ],
    ids=["filter", "no-filter", "unarchive-with-or"],
)
def test_the_policy_filter_is_the_contracts(policy: ArchivePolicy, expected: str) -> None:
    """Parenthesized filter (so an `or` cannot escape), the opposite flag, the lookback bound in RFC 3339 UTC."""
    assert new_report(policy, "timer", 30, NOW).filter == expected
    assert policy_filter(policy, NOW.replace(month=11, day=1)) == expected


def test_the_image_filter_doubles_quotes() -> None:
    """contains(OutputImageManifests, 'repo@digest'), a quote inside doubled as OData wants."""
    assert image_filter("release/app", "sha256:ab") == "contains(OutputImageManifests, 'release/app@sha256:ab')"
    assert image_filter("o'brien", "sha256:ab") == "contains(OutputImageManifests, 'o''brien@sha256:ab')"


@given(st.text())
def test_an_odata_string_literal_holds_any_text(text: str) -> None:
    """Undoing the doubling gives the text back, and no lone quote can end the literal early."""
    literal = odata_string(text)
    inner = literal[1:-1]
    assert literal[0] == literal[-1] == "'" and inner.replace("''", "'") == text
    assert inner.replace("''", "").count("'") == 0


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=128), st.booleans())
def test_policy_message_ids_are_deterministic_and_bounded(run_id: str, flag: bool) -> None:
    """The same run and flag give the same id, at most 128 characters, distinct for the other flag."""
    name = "p" * 64
    first, again, other = (
        policy_message_id(name, run_id, flag),
        policy_message_id(name, run_id, flag),
        policy_message_id(name, run_id, not flag),
    )
    assert first == again and first != other and len(first) <= MESSAGE_ID_LIMIT


@pytest.mark.parametrize(
    ("now", "end", "left", "expected"),
    [(0, 300, 3, 100), (100, 300, 2, 200), (290, 300, 1, 300), (400, 300, 2, 400)],
    ids=["first-of-three", "second-of-two", "last", "overrun"],
)
def test_each_policy_gets_a_fair_share_of_what_is_left(now: float, end: float, left: int, expected: float) -> None:
    """A slow policy cannot take the time of those after it; time one leaves unused passes on."""
    assert fair_deadline(now, end, left) == expected


def test_a_timer_invocation_stays_well_inside_the_function_timeout() -> None:
    """The timer's budget is at most half of host.json's functionTimeout: the page in flight at the deadline still fits."""
    from tests.test_wiring import host_json, seconds

    assert TIMER_SECONDS * 2 <= seconds(host_json()["functionTimeout"])
