"""The policy timer (contract §8): registered only when its schedule resolves, sweeping every policy in turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.timer import TimerRequestConverter

from emulators import ArmEmulator
from shared.app import build_app
from tests import support
from tests.support import SUB, read_outcomes

GROUP, REGISTRY = "timerGroup", "timerRegistry"
POLICIES = json.dumps(
    [
        {"name": "keep-failures", "registry": f"{SUB}/{GROUP}/{REGISTRY}", "filter": "Status eq 'Failed'"},
        {"name": "keep-all", "registry": f"{SUB}/{GROUP}/{REGISTRY}"},
    ]
)


def timer_request(past_due: bool = False) -> Any:
    """The TimerRequest the worker builds, decoded by azure-functions' own converter from the host's JSON."""
    payload = json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due})
    return TimerRequestConverter.decode(meta.Datum(payload, "json"), trigger_metadata={})


def timer_binding(env: dict[str, str]) -> dict[str, Any] | None:
    """The timer function's trigger binding as the host indexes it, or None when the app has no timer."""
    app = build_app(env)
    support.BUILT_APPS.append(app)
    for function in app.get_functions():
        if function.get_function_name() == "archive_policy_timer":
            return json.loads(function.get_raw_bindings()[0])
    return None


@pytest.mark.parametrize(
    ("env", "registered"),
    [
        ({}, False),
        ({"ARCHIVE_POLICY_SCHEDULE": ""}, False),
        ({"ARCHIVE_POLICY_SCHEDULE": "   "}, False),
        ({"ARCHIVE_POLICY_SCHEDULE": "every quarter hour"}, False),
        ({"ARCHIVE_POLICIES": POLICIES}, False),
        ({"ARCHIVE_POLICY_SCHEDULE": "0 */15 * * * *"}, True),
        ({"ARCHIVE_POLICY_SCHEDULE": "0 */15 * * * *", "ARCHIVE_POLICIES": POLICIES}, True),
    ],
    ids=["nothing", "empty", "whitespace", "malformed", "policies-without-schedule", "schedule", "schedule-and-policies"],
)
def test_the_timer_exists_only_when_its_schedule_resolves(env: dict[str, str], registered: bool) -> None:
    """The host cannot index %ARCHIVE_POLICY_SCHEDULE% unresolved: without a usable schedule the app runs without the timer."""
    binding = timer_binding(env)
    assert (binding is not None) is registered
    if binding is not None:
        assert binding["type"] == "timerTrigger"
        assert binding["schedule"] == "%ARCHIVE_POLICY_SCHEDULE%"
        assert binding.get("runOnStartup", False) is False


def test_policies_without_a_schedule_are_named_by_health(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """ARCHIVE_POLICIES set, the schedule missing: no timer, and GET /api/health is 503 naming ARCHIVE_POLICY_SCHEDULE."""
    monkeypatch.setenv("ARCHIVE_POLICIES", POLICIES)
    functions = support.functions()
    assert "archive_policy_timer" not in functions
    response = functions["health"](support.http_request("GET", "health"))
    assert response.status_code == 503
    assert "ARCHIVE_POLICY_SCHEDULE" in support.response_json(response)["missingSettings"]


def test_a_schedule_without_policies_sweeps_nothing(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, arm: ArmEmulator, outcome_file: Path
) -> None:
    """The timer fires with no ARCHIVE_POLICIES: nothing is listed and nothing published."""
    monkeypatch.setenv("ARCHIVE_POLICY_SCHEDULE", "0 */15 * * * *")
    assert support.functions()["archive_policy_timer"](timer_request()) is None
    assert arm.stats()["lists"] == 0 and read_outcomes(outcome_file) == []


@pytest.mark.parametrize("past_due", [False, True], ids=["on-time", "past-due"])
def test_the_timer_sweeps_every_policy_in_turn(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, arm: ArmEmulator, outcome_file: Path, past_due: bool
) -> None:
    """One summary per policy, in order, source timer; the second policy does not re-archive what the first did."""
    arm.seed_registry(SUB, GROUP, REGISTRY, 80, seed=21)
    monkeypatch.setenv("ARCHIVE_POLICY_SCHEDULE", "0 */15 * * * *")
    monkeypatch.setenv("ARCHIVE_POLICIES", POLICIES)
    assert support.functions()["archive_policy_timer"](timer_request(past_due)) is None
    records = read_outcomes(outcome_file)
    summaries = [r for r in records if r["subject"] == "ArchivePolicySwept"]
    assert [(s["body"]["policy"], s["body"]["source"], s["body"]["outcome"]) for s in summaries] == [
        ("keep-failures", "timer", "succeeded"),
        ("keep-all", "timer", "succeeded"),
    ]
    failures, everything = (s["body"] for s in summaries)
    assert failures["enqueued"] > 0 and everything["enqueued"] > 0
    assert len(records) == 2 + failures["enqueued"] + everything["enqueued"]
    archived = [r["body"]["request"]["runId"] for r in records if r["subject"] == "RunArchiveUpdated"]
    assert len(archived) == len(set(archived))  # the second filter no longer lists what the first archived
