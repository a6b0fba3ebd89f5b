"""`acr-archiver runs list`: az acr task list-runs' filters, paging and table, against the ARM and identity emulators."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archiver_cli.runs import DEFAULT_TOP, RUN_HEADERS, list_filter, run_row
from emulators import Fault
from emulators.run_filter import filter_view, output_image_manifests, parse_run_filter
from emulators.seed import seeded_runs
from tests.support import GROUP, SUB, Emulators
from tests.test_cli import assert_one_line_error, cli, emulators  # noqa: F401 - `emulators` is a fixture

REG = "seededRegistry"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
COUNT = 60
PAGE = 10


def az_filter(name: str | None, run_status: str | None, image: str | None) -> str | None:
    """azure-cli's `_add_run_filter` chain of `az acr task list-runs`, verbatim: the reference for plain values."""
    filter_str = None
    options = (("TaskName", name, "eq"), ("Status", run_status, "eq"), ("OutputImageManifests", image, "contains"))
    for field, value, operator in options:
        if not value:
            continue
        clause = f"contains({field}, '{value}')" if operator == "contains" else f"{field} {operator} '{value}'"
        filter_str = f"{filter_str} and {clause}" if filter_str else clause
    return filter_str


def seeded(emulators: Emulators) -> list[dict[str, Any]]:
    """A registry of COUNT seeded runs listed PAGE per page; returns the run bodies."""
    emulators.arm.set_page_size(PAGE)
    return emulators.arm.seed_registry(SUB, GROUP, REG, COUNT, seed=3, now=NOW)


def newest_first(runs: list[dict[str, Any]]) -> list[str]:
    """Run ids in the order Runs - List returns them."""
    return [r["name"] for r in sorted(runs, key=lambda r: (r["properties"]["createTime"], r["name"]), reverse=True)]


def list_requests(emulators: Emulators) -> list[dict[str, Any]]:
    """The Runs - List requests ARM received."""
    log = emulators.arm.requests_log
    return [entry for entry in log if entry["method"] == "GET" and entry["path"].split("?")[0].endswith("/runs")]


# -- the $filter -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "status", "image"),
    [
        ("release", None, None),
        (None, "Failed", None),
        (None, None, "release/app@sha256:" + "0" * 64),
        ("build-api", "Succeeded", "services/api:ca12"),
        (None, None, None),
    ],
    ids=["task", "status", "image", "all-three", "none"],
)
def test_plain_values_give_exactly_azs_filter(task: str | None, status: str | None, image: str | None) -> None:
    """--task, --status and --image map to az's TaskName/Status/contains clauses, in az's order, joined with `and`."""
    assert list_filter(task, status, image, None) == az_filter(task, status, image)


@pytest.mark.parametrize(
    ("odata", "expected"),
    [
        ("RunType eq 'QuickRun'", "RunType eq 'QuickRun'"),
        ("  Status eq 'Failed' or Status eq 'Error' ", "Status eq 'Failed' or Status eq 'Error'"),
        ("   ", None),
    ],
    ids=["alone-as-given", "alone-stripped", "blank-is-none"],
)
def test_a_raw_filter_alone_is_sent_as_given(odata: str, expected: str | None) -> None:
    """--filter without other options is the whole $filter."""
    assert list_filter(None, None, None, odata) == expected


def test_a_raw_filter_beside_others_is_parenthesized_so_its_or_stays_inside() -> None:
    """An `or` in --filter cannot widen the other clauses."""
    text = list_filter("release", None, None, "Status eq 'Failed' or Status eq 'Error'", "IsArchiveEnabled eq false")
    assert text == "TaskName eq 'release' and (Status eq 'Failed' or Status eq 'Error') and IsArchiveEnabled eq false"


values = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12))


@settings(max_examples=150, deadline=None)
@given(task=values, status=values, image=values)
def test_any_values_select_what_azs_options_mean(task: str | None, status: str | None, image: str | None) -> None:
    """Quotes and all: the emulator's OData parser reads the filter as task equals, status equals, manifests contain."""
    text = list_filter(task, status, image, None)
    runs = [
        {"properties": {"runId": "a1", "task": task or "t", "status": status or "s",
                        "outputImages": [{"repository": image, "tag": "t"}] if image else []}},
        {"properties": {"runId": "a2", "task": (task or "") + "'", "status": "x" + (status or ""), "outputImages": []}},
    ]
    if text is None:
        assert task is status is image is None
        return
    predicate = parse_run_filter(text)
    for run in runs:
        properties = run["properties"]
        meant = (
            (task is None or properties["task"] == task)
            and (status is None or properties["status"] == status)
            and (image is None or image in output_image_manifests(properties))
        )
        assert predicate(filter_view(run)) is meant, text


# -- listing ---------------------------------------------------------------------------------------


def test_list_shows_the_newest_15_runs_as_az_does(emulators: Emulators) -> None:
    """No options: $top=15 and no $filter (two pages of 10 and 5); a table of az's columns, 15 rows, newest first."""
    runs = seeded(emulators)
    result = cli("runs", "list", "-r", REG, env=dict(os.environ))
    assert result.status == 0, result.err
    header, rule, *rows = result.out.splitlines()
    assert header.split() == " ".join(RUN_HEADERS).split() and set(rule) <= {"-", " "}
    assert [row.split()[0] for row in rows] == newest_first(runs)[:DEFAULT_TOP]
    first, second = list_requests(emulators)
    assert first["query"].get("$top") == str(DEFAULT_TOP) and "$filter" not in first["query"] | second["query"]


def test_list_all_follows_every_page_and_sends_the_filter(emulators: Emulators) -> None:
    """--all --task --status: every matching run over several pages; the first page carries az's $filter and no $top."""
    runs = seeded(emulators)
    result = cli("runs", "list", "-r", REG, "-g", GROUP, "--subscription", SUB, "--task", "build-api", "--status", "Succeeded",
                 "--all", "-o", "json", env=dict(os.environ))
    assert result.status == 0, result.err
    listed = json.loads(result.out)
    wanted = [r for r in runs if r["properties"].get("task") == "build-api" and r["properties"]["status"] == "Succeeded"]
    assert [r["name"] for r in listed] == newest_first(wanted) and len(wanted) > PAGE
    requests = list_requests(emulators)
    assert len(requests) == -(-len(wanted) // PAGE)
    assert requests[0]["query"]["$filter"] == "TaskName eq 'build-api' and Status eq 'Succeeded'"
    assert "$top" not in requests[0]["query"]


def test_top_stops_the_listing_at_n_runs(emulators: Emulators) -> None:
    """--top 23 over pages of 10: 23 runs, the newest, and no request past the third page."""
    runs = seeded(emulators)
    result = cli("runs", "list", "-r", REG, "--top", "23", "-o", "json", env=dict(os.environ))
    assert result.status == 0, result.err
    assert [r["name"] for r in json.loads(result.out)] == newest_first(runs)[:23]
    assert len(list_requests(emulators)) == 3


def test_image_selects_the_run_that_pushed_it(emulators: Emulators) -> None:
    """--image repo@digest: the run whose output images hold that manifest, and only it."""
    runs = seeded(emulators)
    pusher = next(r for r in runs if r["properties"].get("outputImages"))
    image = pusher["properties"]["outputImages"][0]
    reference = f"{image['repository']}@{image['digest']}"
    result = cli("runs", "list", "-r", REG, "--image", reference, "--all", "-o", "json", env=dict(os.environ))
    assert result.status == 0, result.err
    assert [r["name"] for r in json.loads(result.out)] == [pusher["name"]]
    assert list_requests(emulators)[0]["query"]["$filter"] == f"contains(OutputImageManifests, '{reference}')"


def test_a_next_link_on_another_origin_ends_the_listing_without_sending_the_token(emulators: Emulators) -> None:
    """nextLink elsewhere: one error line (PolicyFailed, the listing stopped), exit 1, and no second request."""
    seeded(emulators)
    emulators.arm.set_next_link_origin("http://127.0.0.1:9")
    result = cli("runs", "list", "-r", REG, "--all", env=dict(os.environ))
    assert_one_line_error(result, 1, "PolicyFailed", "nextLink")
    assert len(list_requests(emulators)) == 1 and result.out == ""


def test_a_filter_arm_refuses_is_one_line_with_arms_code(emulators: Emulators) -> None:
    """ARM's 400 for an unparsable $filter: exit 1, one line with InvalidFilter and the request id."""
    seeded(emulators)
    result = cli("runs", "list", "-r", REG, "--filter", "TaskName eq", env=dict(os.environ))
    assert_one_line_error(result, 1, "InvalidFilter", "HTTP 400", "x-ms-request-id")


def test_a_throttled_listing_is_retried(emulators: Emulators) -> None:
    """ARM's 429 with Retry-After 0 on a page is retried under the app's retry policy."""
    runs = seeded(emulators)
    emulators.arm.script_list(REG, Fault.status(429, retry_after=0))
    result = cli("runs", "list", "-r", REG, "--top", "5", "-o", "json", env=dict(os.environ))
    assert result.status == 0, result.err
    assert [r["name"] for r in json.loads(result.out)] == newest_first(runs)[:5]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["-r", "no"], "--registry"),
        (["-r", REG, "--subscription", "not-a-guid"], "--subscription"),
        (["-r", REG, "-g", "bad/group"], "--resource-group"),
        (["-r", REG, "-g", "gr\u00fcppe"], "--resource-group"),
    ],
    ids=["short-registry", "subscription", "group-with-slash", "non-ascii-group"],
)
def test_bad_coordinates_are_refused_before_calling_arm(emulators: Emulators, argv: list[str], fragment: str) -> None:
    """Exit 2, one line naming the option; no request reaches ARM."""
    result = cli("runs", "list", *argv, env=dict(os.environ))
    assert_one_line_error(result, 2, fragment)
    assert emulators.arm.stats()["requests"] == 0


def test_top_and_all_exclude_each_other() -> None:
    """--top with --all is a usage error (exit 2)."""
    assert cli("runs", "list", "-r", REG, "--top", "3", "--all").status == 2


# -- rows ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "trigger"),
    [
        ({"sourceTrigger": {"eventType": "commit"}, "imageUpdateTrigger": {"id": "x"}}, "commit"),
        ({"imageUpdateTrigger": {"id": "x"}, "timerTrigger": {"timerTriggerName": "t"}}, "Image Update"),
        ({"timerTrigger": {"timerTriggerName": "t"}}, "Timer Trigger"),
        ({}, "Manual"),
    ],
    ids=["source-first", "image-update", "timer", "manual"],
)
def test_the_trigger_column_is_azs(properties: dict[str, Any], trigger: str) -> None:
    """The source trigger's event type, else Image Update, Timer Trigger, Manual."""
    assert run_row({"properties": properties})[RUN_HEADERS.index("TRIGGER")] == trigger


def test_started_and_duration_are_formatted_as_az_prints_them() -> None:
    """STARTED in whole UTC seconds with Z; DURATION HH:MM:SS, hours past a day kept."""
    row = run_row({"properties": {"startTime": "2026-11-01T10:00:00.1234567+01:00", "finishTime": "2026-11-02T12:01:02Z"}})
    assert row[RUN_HEADERS.index("STARTED")] == "2026-11-01T09:00:00Z"
    assert row[RUN_HEADERS.index("DURATION")] == "27:01:01"


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
))
def test_any_json_from_arm_makes_a_row_without_failing(run: Any) -> None:
    """ARM's answer is hostile: whatever a listed run holds, its row has one cell per column."""
    assert len(run_row(run)) == len(RUN_HEADERS)


def test_seeded_runs_have_every_column() -> None:
    """A finished seeded run fills RUN ID, STATUS, STARTED and DURATION."""
    finished = next(r for r in seeded_runs(SUB, GROUP, REG, 20, seed=3, now=NOW) if "finishTime" in r["properties"])
    row = run_row(finished)
    assert row[0] == finished["name"] and row[3] == finished["properties"]["status"] and row[5] and row[6]
