"""`acr-archiver backfill`: list, then enqueue a sweep's archive events; ARM emulator, recording Service Bus."""

from __future__ import annotations

import io
import json
import os
from datetime import datetime, timezone
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import ServiceBusError

from archiver_cli import main
from shared.app import build_app
from shared.publisher import ServiceBusPublisher
from shared.reschedule import ServiceBusScheduler
from tests.fakes import RecordingServiceBus
from tests.support import GROUP, SUB, Emulators
from tests.test_cli import QUEUE, TOPIC, Result, _Terminal, assert_one_line_error, cli, emulators  # noqa: F401 - a fixture

REG = "seededRegistry"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
COUNT = 60
PAGE = 10


def seeded(emulators: Emulators) -> list[dict[str, Any]]:
    """COUNT seeded runs (about a tenth archived), PAGE per Runs - List page."""
    emulators.arm.set_page_size(PAGE)
    return emulators.arm.seed_registry(SUB, GROUP, REG, COUNT, seed=5, now=NOW)


def backfill(*argv: str, bus: RecordingServiceBus, **seams: Any) -> Result:
    """`acr-archiver backfill -r seededRegistry …` with the emulators' environment."""
    return cli("backfill", "-r", REG, *argv, bus=bus, env=dict(os.environ), **seams)


def sent(bus: RecordingServiceBus) -> list[ServiceBusMessage]:
    """What reached the archive queue."""
    return bus.messages(QUEUE)


def first_filter(emulators: Emulators) -> str:
    """The $filter of the first Runs - List request."""
    return next(e for e in emulators.arm.requests_log if e["path"].split("?")[0].endswith("/runs"))["query"].get("$filter", "")


def run_ids(runs: list[dict[str, Any]], flag: bool = False, task: str | None = None) -> set[str]:
    """The runs whose archive flag is `flag` (of one task when given)."""
    return {r["name"] for r in runs
            if r["properties"]["isArchiveEnabled"] is flag and (task is None or r["properties"].get("task") == task)}


def test_backfill_enqueues_one_sweep_event_per_run_not_yet_archived(emulators: Emulators) -> None:
    """Every unarchived run, over several pages: shape 2, id policy:backfill:{runId}:true, property policy, in batches."""
    runs = seeded(emulators)
    bus = RecordingServiceBus()
    result = backfill(bus=bus)
    assert result.status == 0, result.err
    wanted = run_ids(runs)
    messages, ids = sent(bus), {r["name"]: r["id"] for r in runs}
    assert {m.message_id for m in messages} == {f"policy:backfill:{run}:true" for run in wanted} and len(messages) == len(wanted)
    for message in messages:
        run_id = message.message_id.split(":")[2]
        assert json.loads(b"".join(message.body)) == {"runResourceId": ids[run_id], "isArchiveEnabled": True}
        assert message.application_properties == {"policy": "backfill"} and message.content_type == "application/json"
    assert first_filter(emulators) == "IsArchiveEnabled eq false"
    assert sum(bus.batch_sizes) == len(wanted) and len(bus.batch_sizes) < len(wanted)
    assert f"enqueued {len(wanted)} archive event(s) to {QUEUE}" in result.err and result.err.count("\n") == 1


def test_filters_are_azs_plus_the_wanted_state(emulators: Emulators) -> None:
    """--task and --status: az's clauses, then IsArchiveEnabled eq false; only those runs are enqueued."""
    runs = seeded(emulators)
    bus = RecordingServiceBus()
    result = backfill("--task", "build-api", "--status", "Succeeded", bus=bus)
    assert result.status == 0, result.err
    assert first_filter(emulators) == "TaskName eq 'build-api' and Status eq 'Succeeded' and IsArchiveEnabled eq false"
    wanted = {r["name"] for r in runs if r["properties"].get("task") == "build-api" and r["properties"]["status"] == "Succeeded"
              and not r["properties"]["isArchiveEnabled"]}
    assert {m.message_id.split(":")[2] for m in sent(bus)} == wanted


def test_no_archive_lists_the_archived_runs_and_clears_their_flag(emulators: Emulators) -> None:
    """--no-archive: IsArchiveEnabled eq true listed, events with false, ids ending :false."""
    runs = seeded(emulators)
    bus = RecordingServiceBus()
    assert backfill("--no-archive", bus=bus).status == 0
    assert first_filter(emulators) == "IsArchiveEnabled eq true"
    messages = sent(bus)
    assert {m.message_id for m in messages} == {f"policy:backfill:{run}:false" for run in run_ids(runs, True)} != set()
    assert all(json.loads(b"".join(m.body))["isArchiveEnabled"] is False for m in messages)


def test_dry_run_lists_and_shows_the_events_but_enqueues_nothing(emulators: Emulators) -> None:
    """--dry-run -o json: one line per event with its id; nothing reaches Service Bus, no queue is needed."""
    runs = seeded(emulators)
    bus = RecordingServiceBus()
    env = {k: v for k, v in os.environ.items() if k != "ARCHIVE_QUEUE_NAME"}
    result = cli("backfill", "-r", REG, "--dry-run", "-o", "json", bus=bus, env=env)
    assert result.status == 0, result.err
    assert bus.sent == [] and bus.senders_created == 0
    shown = result.json_lines()
    assert {line["messageId"] for line in shown} == {f"policy:backfill:{run}:true" for run in run_ids(runs)}
    assert f"would enqueue {len(shown)} archive event(s) (--dry-run: nothing sent)" in result.err


def test_a_repeated_backfill_sends_the_same_ids(emulators: Emulators) -> None:
    """Deterministic ids: the second run's ids are the first's, so the queue's duplicate detection drops them."""
    seeded(emulators)
    first, second = RecordingServiceBus(), RecordingServiceBus()
    assert backfill(bus=first).status == 0 and backfill(bus=second).status == 0
    assert [m.message_id for m in sent(first)] == [m.message_id for m in sent(second)] != []


def test_ids_and_events_equal_a_sweep_of_the_policy_named(emulators: Emulators) -> None:
    """--policy release-builds --task release enqueues what the app's sweep of that policy enqueues: ids, bodies, properties."""
    runs = seeded(emulators)
    policy = {"name": "release-builds", "registry": f"{SUB}/{GROUP}/{REG}", "filter": "TaskName eq 'release'"}
    env = {**{k: v for k, v in os.environ.items() if k != "OUTCOME_FILE"}, "ARCHIVE_POLICIES": json.dumps([policy]),
           "ARCHIVE_POLICY_SCHEDULE": "0 0 * * * *", "ARCHIVE_POLICY_LOOKBACK_DAYS": "60", "OUTCOME_TOPIC_NAME": TOPIC,
           "ServiceBusConnection__fullyQualifiedNamespace": "test.servicebus.windows.net"}
    swept = RecordingServiceBus()
    app = build_app(env, publisher_factory=lambda s: ServiceBusPublisher(swept.client, TOPIC),
                    scheduler_factory=lambda s: ServiceBusScheduler(swept.client, QUEUE))
    try:
        settings = app.runtime.settings()
        (summary,) = app.runtime.archiver().sweep(settings.archive_policies, "timer")
    finally:
        app.close()
    assert summary.body["outcome"] == "succeeded", summary.body
    filled = RecordingServiceBus()
    assert backfill("--policy", "release-builds", "--task", "release", bus=filled).status == 0

    def shape(bus: RecordingServiceBus) -> dict[str, Any]:
        return {m.message_id: (b"".join(m.body), m.application_properties, m.content_type) for m in bus.messages(QUEUE)}

    assert shape(filled) == shape(swept) and len(shape(filled)) == len(run_ids(runs, task="release")) > 0


def test_a_listing_cut_short_enqueues_what_it_listed_then_fails(emulators: Emulators) -> None:
    """nextLink off ARM's origin after page 1: page 1's runs are enqueued, then one error line, exit 1."""
    seeded(emulators)
    emulators.arm.set_next_link_origin("http://127.0.0.1:9")
    bus = RecordingServiceBus()
    result = backfill(bus=bus)
    assert_one_line_error(result, 1, "PolicyFailed", "nextLink")
    assert 0 < len(sent(bus)) <= PAGE
    assert f"enqueued {len(sent(bus))} archive event(s)" in result.err and "stopped: PolicyFailed" in result.err


def test_a_filter_arm_refuses_is_arms_error_alone(emulators: Emulators) -> None:
    """ARM's 400 on the first page: one line with InvalidFilter, no summary, nothing sent."""
    seeded(emulators)
    bus = RecordingServiceBus()
    result = backfill("--filter", "Status eq", bus=bus)
    assert_one_line_error(result, 1, "ARM refused the request", "InvalidFilter", "HTTP 400")
    assert result.err.count("\n") == 1 and bus.sent == []


def test_a_refused_send_stops_the_backfill_and_says_how_many_went(emulators: Emulators) -> None:
    """Service Bus refuses the second batch: the first stays sent, exit 1 naming PublishFailed."""
    seeded(emulators)
    bus = RecordingServiceBus()
    bus.fail_next(None, ServiceBusError("refused"))
    result = backfill(bus=bus)
    assert_one_line_error(result, 1, "PublishFailed")
    assert len(sent(bus)) == bus.batch_sizes[0] and f"enqueued {len(sent(bus))} archive event(s)" in result.err


def test_a_registry_outside_allowed_registries_is_refused_before_listing(emulators: Emulators) -> None:
    """ALLOWED_REGISTRIES binds the operator: exit 2, no ARM request, nothing sent."""
    bus = RecordingServiceBus()
    result = cli("backfill", "-r", REG, bus=bus, env={**os.environ, "ALLOWED_REGISTRIES": "otherRegistry"})
    assert_one_line_error(result, 2, "ALLOWED_REGISTRIES")
    assert emulators.arm.stats()["requests"] == 0 and bus.sent == []


@pytest.mark.parametrize("name", ["has space", "x" * 65, ""], ids=["space", "too-long", "empty"])
def test_a_policy_name_that_cannot_be_one_is_refused(emulators: Emulators, name: str) -> None:
    """--policy follows the policy-name rule: exit 2 before anything is listed."""
    result = backfill("--policy", name, bus=RecordingServiceBus())
    assert_one_line_error(result, 2, "--policy")
    assert emulators.arm.stats()["requests"] == 0


def test_progress_when_piped_is_plain_lines_and_a_summary(emulators: Emulators) -> None:
    """--progress into a pipe: the listing's count, the enqueueing's tenths, then the summary line."""
    listed = len(run_ids(seeded(emulators)))
    result = cli("--progress", "backfill", "-r", REG, bus=RecordingServiceBus(), env=dict(os.environ))
    assert result.status == 0, result.err
    lines = result.err.splitlines()
    assert lines[0].startswith(f"listing {REG}: {listed} (") and lines[0].endswith("/s)")
    assert [line.split(" (")[0] for line in lines[1:-1]][-1] == f"enqueueing to {QUEUE}: {listed}/{listed}"
    assert lines[-1].startswith(f"listed {listed} run(s) of {REG} in {-(-listed // PAGE)} page(s)")
    assert "\r" not in result.err and "\x1b" not in result.err


def test_progress_on_a_terminal_is_richs_bar_with_counts_and_rate(emulators: Emulators) -> None:
    """On a terminal: rich's bars for the listing (a count) and the enqueueing (count of total, rate)."""
    runs = seeded(emulators)
    out, err = io.StringIO(), _Terminal()
    bus = RecordingServiceBus()
    status = main(["backfill", "-r", REG], env=dict(os.environ), open_servicebus=bus.client, stdout=out, stderr=err)
    assert status == 0, err.getvalue()
    drawn = err.getvalue()
    total = len(run_ids(runs))
    assert f"listing {REG}" in drawn and f"enqueueing to {QUEUE}" in drawn and f"{total}/{total}" in drawn and "/s" in drawn



# -- over AMQP, against the Service Bus emulator ---------------------------------------------------


def test_over_amqp_a_repeated_backfill_is_dropped_by_duplicate_detection(emulators: Emulators) -> None:
    """The real azure-servicebus client and the loopback AMQP emulator: each event stored once; a re-run is all duplicates."""
    from emulators.servicebus import ServiceBusEmulator

    wanted = run_ids(seeded(emulators))
    with ServiceBusEmulator() as bus:
        env = {**os.environ, "ServiceBusConnection": bus.connection_string}
        first = cli("backfill", "-r", REG, env=env)
        assert first.status == 0, first.err
        stored = bus.messages(QUEUE)
        assert sorted(m["message_id"] for m in stored) == sorted(f"policy:backfill:{run}:true" for run in wanted)
        assert {m["application_properties"]["policy"] for m in stored} == {"backfill"}
        again = cli("backfill", "-r", REG, env=env)
        assert again.status == 0, again.err
        assert len(bus.messages(QUEUE)) == len(wanted) and bus.duplicates_dropped(QUEUE) == len(wanted)
