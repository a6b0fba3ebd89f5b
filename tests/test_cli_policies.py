"""`acr-archiver policies`: ARCHIVE_POLICIES checked as the app checks it, effective filters, one sweep through the app's code."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from archiver_cli.policies import effective_filter
from shared.policies import ArchivePolicy
from tests.fakes import RecordingServiceBus
from tests.support import GROUP, SUB, Emulators
from tests.test_cli import QUEUE, TOPIC, assert_one_line_error, cli, emulators  # noqa: F401 - a fixture

REG = "seededRegistry"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
RELEASE = {"name": "release-builds", "registry": f"{SUB}/{GROUP}/{REG}", "filter": "TaskName eq 'release'"}
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REG}"
FAILED = {"name": "failed-runs", "registry": REGISTRY_ID, "filter": "Status eq 'Failed'", "isArchiveEnabled": True}
UNFILTERED = {"name": "unarchive-all", "registry": f"{SUB}/{GROUP}/{REG}", "isArchiveEnabled": False}


def policies_env(*policies: dict[str, Any], outcome_file: bool = False, **more: str) -> dict[str, str]:
    """The emulators' environment with these policies; Service Bus for the queue and topic unless `outcome_file`."""
    env = {**os.environ, "ARCHIVE_POLICIES": json.dumps(list(policies)), "ARCHIVE_POLICY_LOOKBACK_DAYS": "45",
           "OUTCOME_TOPIC_NAME": TOPIC, "ServiceBusConnection__fullyQualifiedNamespace": "test.servicebus.windows.net", **more}
    if not outcome_file:
        env.pop("OUTCOME_FILE", None)
    return env


def seeded(emulators: Emulators, count: int = 80) -> list[dict[str, Any]]:
    """Seeded runs, ten per page."""
    emulators.arm.set_page_size(10)
    return emulators.arm.seed_registry(SUB, GROUP, REG, count, seed=9, now=NOW)


# -- list ------------------------------------------------------------------------------------------


def test_list_shows_each_policys_effective_filter() -> None:
    """-o json: every policy with the $filter a sweep would send now: its filter, the wanted state, the lookback."""
    result = cli("policies", "list", "-o", "json", env=policies_env(RELEASE, UNFILTERED))
    assert result.status == 0, result.err
    shown = json.loads(result.out)
    assert [p["name"] for p in shown] == ["release-builds", "unarchive-all"]
    release, unarchive = (p["filter"] for p in shown)
    head, since = release.rsplit(" and CreateTime ge ", 1)
    assert head == "(TaskName eq 'release') and IsArchiveEnabled eq false"
    assert abs(datetime.fromisoformat(since) - (datetime.now(timezone.utc) - timedelta(days=45))) < timedelta(minutes=5)
    assert unarchive.startswith("IsArchiveEnabled eq true and CreateTime ge ")
    assert "2 valid archive policies; lookback 45 day(s)" in result.err


def test_the_effective_filter_is_the_sweeps() -> None:
    """The filter shown is §8's, for a policy with and without its own filter."""
    policy = ArchivePolicy("p", SUB, GROUP, REG, filter="Status eq 'Failed' or Status eq 'Error'")
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert effective_filter(policy, 30, moment) == (
        "(Status eq 'Failed' or Status eq 'Error') and IsArchiveEnabled eq false and CreateTime ge 2026-10-31T12:00:00Z"
    )


def test_list_reads_the_policies_of_a_settings_file(tmp_path: Path) -> None:
    """--settings local.settings.json: its ARCHIVE_POLICIES is the one listed, as a table."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"ARCHIVE_POLICIES": json.dumps([FAILED]), "ARCHIVE_POLICY_SCHEDULE": "0 0 * * * *"}}))
    result = cli("--settings", str(path), "policies", env={})
    assert result.status == 0, result.err
    header, _, row = result.out.splitlines()
    assert header.split()[:3] == ["NAME", "REGISTRY", "SETS"] and row.split()[0] == "failed-runs"
    assert "(Status eq 'Failed') and IsArchiveEnabled eq false" in row


@pytest.mark.parametrize(
    ("policies", "fragment"),
    [
        ([{**RELEASE, "isArchiveEnable": False}], "ARCHIVE_POLICIES[release-builds].isArchiveEnable"),
        ([{**RELEASE, "registry": "not/a/registry"}], "ARCHIVE_POLICIES[release-builds].registry"),
        ([RELEASE, {**RELEASE, "name": "Release-Builds"}], "ARCHIVE_POLICIES[Release-Builds].name"),
        ([{"registry": RELEASE["registry"]}], "ARCHIVE_POLICIES[0].name"),
    ],
    ids=["misspelt-field", "bad-registry", "duplicate-name", "no-name"],
)
def test_malformed_policies_are_refused_naming_the_policy_and_field(policies: list[dict[str, Any]], fragment: str) -> None:
    """The app's own validation: exit 2, one line naming ARCHIVE_POLICIES[name].field."""
    result = cli("policies", "list", env={"ARCHIVE_POLICIES": json.dumps(policies), "ARCHIVE_POLICY_SCHEDULE": "0 0 * * * *"})
    assert_one_line_error(result, 2, fragment)
    assert result.out == ""


def test_a_policy_outside_allowed_registries_is_refused() -> None:
    """ALLOWED_REGISTRIES applies to the policies as the app reads them."""
    env = {"ARCHIVE_POLICIES": json.dumps([RELEASE]), "ARCHIVE_POLICY_SCHEDULE": "0 0 * * * *",
           "ALLOWED_REGISTRIES": "otherRegistry"}
    assert_one_line_error(cli("policies", env=env), 2, "ARCHIVE_POLICIES[release-builds].registry", "ALLOWED_REGISTRIES")


@pytest.mark.parametrize(("schedule", "warned"), [(None, True), ("0 */15 * * * *", False)], ids=["unset", "set"])
def test_list_warns_when_the_timer_has_no_schedule(schedule: str | None, warned: bool) -> None:
    """Policies without ARCHIVE_POLICY_SCHEDULE are valid but never swept on a timer: a warning says so."""
    env = {"ARCHIVE_POLICIES": json.dumps([RELEASE]), **({"ARCHIVE_POLICY_SCHEDULE": schedule} if schedule else {})}
    result = cli("policies", env=env)
    assert result.status == 0, result.err
    assert ("warning: ARCHIVE_POLICY_SCHEDULE is required when ARCHIVE_POLICIES is set" in result.err) is warned


def test_without_policies_list_says_so() -> None:
    """ARCHIVE_POLICIES unset: nothing listed, exit 0, a line saying so."""
    result = cli("policies", env={})
    assert (result.status, result.out) == (0, "") and "ARCHIVE_POLICIES is unset" in result.err


# -- sweep -----------------------------------------------------------------------------------------


def test_sweep_enqueues_the_policys_runs_and_publishes_its_summary(emulators: Emulators) -> None:
    """sweep NAME: the app's sweep over several pages: policy ids on the queue, one ArchivePolicySwept on the topic."""
    runs = seeded(emulators)
    bus = RecordingServiceBus()
    result = cli("policies", "sweep", "release-builds", "-o", "json", bus=bus, env=policies_env(RELEASE))
    assert result.status == 0, result.err
    wanted = {r["name"] for r in runs if r["properties"].get("task") == "release" and not r["properties"]["isArchiveEnabled"]}
    assert {m.message_id for m in bus.messages(QUEUE)} == {f"policy:release-builds:{run}:true" for run in wanted} != set()
    (summary,) = bus.messages(TOPIC)
    body = json.loads(b"".join(summary.body))
    assert summary.subject == "ArchivePolicySwept" and summary.application_properties["source"] == "http"
    assert body == json.loads(result.out)
    assert (body["outcome"], body["policy"]) == ("succeeded", "release-builds")
    assert body["matched"] == body["enqueued"] == len(wanted)
    assert body["filter"].startswith("(TaskName eq 'release') and IsArchiveEnabled eq false and CreateTime ge ")


def test_sweep_under_outcome_file_archives_the_runs_here(emulators: Emulators) -> None:
    """OUTCOME_FILE set: the sweep PATCHes each run itself, one `policy` outcome each, then the summary."""
    runs = seeded(emulators, 30)
    result = cli("policies", "sweep", "failed-runs", env=policies_env(FAILED, outcome_file=True))
    assert result.status == 0, result.err
    wanted = {r["name"] for r in runs if r["properties"]["status"] == "Failed" and not r["properties"]["isArchiveEnabled"]}
    assert wanted and all(emulators.arm.get_run(SUB, GROUP, REG, run)["properties"]["isArchiveEnabled"] for run in wanted)
    outcomes = emulators.outcomes()
    assert sorted(o["body"]["source"] for o in outcomes if o["subject"] != "ArchivePolicySwept") == ["policy"] * len(wanted)
    assert [o["body"]["outcome"] for o in outcomes if o["subject"] == "ArchivePolicySwept"] == ["succeeded"]
    header, _, row = result.out.splitlines()
    assert header.split() == ["POLICY", "OUTCOME", "MATCHED", "ENQUEUED", "PAGES", "ERROR"]
    assert row.split()[:4] == ["failed-runs", "succeeded", str(len(wanted)), str(len(wanted))]


def test_a_sweep_whose_listing_fails_exits_1_with_its_failed_summary(emulators: Emulators) -> None:
    """nextLink off ARM's origin: the summary says failed (PolicyFailed), what was listed is enqueued, exit 1."""
    seeded(emulators)
    emulators.arm.set_next_link_origin("http://127.0.0.1:9")
    bus = RecordingServiceBus()
    archive_all = {"name": "archive-all", "registry": RELEASE["registry"]}
    result = cli("policies", "sweep", "archive-all", "-o", "json", bus=bus, env=policies_env(archive_all))
    assert result.status == 1, result.err
    body = json.loads(result.out)
    assert (body["outcome"], body["error"]["code"], body["pages"]) == ("failed", "PolicyFailed", 1)
    assert len(bus.messages(QUEUE)) == body["enqueued"] == body["matched"]


@pytest.mark.parametrize(
    ("argv", "status", "fragment"),
    [
        (["sweep", "nope"], 2, "no policy named 'nope'"),
        (["sweep"], 2, "which policy"),
        (["list", "release-builds"], 2, "list takes no policy name"),
    ],
    ids=["unknown-name", "no-name", "list-with-name"],
)
def test_sweep_needs_a_known_policy(argv: list[str], status: int, fragment: str) -> None:
    """A missing or unknown name is a usage error naming the known policies; nothing is listed."""
    result = cli("policies", *argv, env=policies_env(RELEASE))
    assert_one_line_error(result, status, fragment)


def test_sweep_names_are_case_insensitive_as_the_route_is(emulators: Emulators) -> None:
    """RELEASE-BUILDS finds release-builds."""
    seeded(emulators, 20)
    assert cli("policies", "sweep", "RELEASE-BUILDS", bus=RecordingServiceBus(), env=policies_env(RELEASE)).status == 0


def test_over_amqp_a_sweep_fills_the_queue_and_the_topic_gets_its_summary(emulators: Emulators) -> None:
    """The real client and the loopback AMQP emulator: the events on the queue, ArchivePolicySwept on all-outcomes."""
    from emulators.servicebus import ServiceBusEmulator

    runs = seeded(emulators)
    wanted = {r["name"] for r in runs if r["properties"].get("task") == "release" and not r["properties"]["isArchiveEnabled"]}
    with ServiceBusEmulator() as bus:
        env = {**policies_env(RELEASE), "ServiceBusConnection": bus.connection_string}
        env.pop("ServiceBusConnection__fullyQualifiedNamespace")
        result = cli("policies", "sweep", "release-builds", env=env)
        assert result.status == 0, result.err
        assert sorted(m["message_id"] for m in bus.messages(QUEUE)) == sorted(f"policy:release-builds:{run}:true" for run in wanted)
        (summary,) = bus.messages(f"{TOPIC}/Subscriptions/all-outcomes")
        assert summary["message_id"].startswith("sweep:release-builds:")
        assert summary["application_properties"]["outcome"] == "succeeded"
        assert summary["application_properties"]["enqueued"] == len(wanted)
