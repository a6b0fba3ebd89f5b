"""GET /api/health (contract §6) answers 503 naming each missing or malformed setting, never its value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.settings import SETTING_NAMES
from tests.settings_cases import GOOD, malformed_cases
from tests.support import functions, http_request, isolate_environment, response_json

CASES = [case for case in malformed_cases() if "\x00" not in case[1]]  # a process environment cannot hold NUL


@pytest.fixture
def health(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[dict[str, str]], tuple[int, dict[str, Any], str]]:
    """Ask the app's real health function, with the environment holding exactly `env`."""
    def ask(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
        isolate_environment(monkeypatch, env)
        # a new app for each environment, as the host restarts the worker when app settings change
        response = functions()["health"](http_request("GET", "health"))
        return response.status_code, response_json(response), response.get_body().decode()

    return ask


def configured(tmp_path: Path, **changes: str) -> dict[str, str]:
    """Every setting well formed, outcomes to a file; `changes` on top (an empty value unsets)."""
    return {**GOOD, "OUTCOME_FILE": str(tmp_path / "outcomes.jsonl"), **changes}


def test_health_is_ok_with_every_setting_well_formed(health: Any, tmp_path: Path) -> None:
    """The GOOD table, policies and schedule included, is a healthy app."""
    status, body, _ = health(configured(tmp_path))
    assert (status, body["status"]) == (200, "ok")


@pytest.mark.parametrize(("name", "value"), [case[:2] for case in CASES], ids=[case[2] for case in CASES])
def test_health_answers_503_naming_a_malformed_setting(name: str, value: str, health: Any, tmp_path: Path) -> None:
    """Each malformed value of contract §1 makes health 503 with the setting in invalidSettings, the value nowhere."""
    status, body, text = health(configured(tmp_path, **{name: value}))
    assert status == 503 and body["status"] == "unhealthy"
    assert body["invalidSettings"] == [name]
    assert any(line.startswith(f"invalid configuration: {name}: ") for line in body["detail"])
    if len(value.strip()) >= 5:
        assert value.strip() not in text


@pytest.mark.parametrize(
    ("changes", "missing", "words"),
    [
        ({"ARCHIVE_QUEUE_NAME": ""}, ["ARCHIVE_QUEUE_NAME"], "ARCHIVE_QUEUE_NAME: required"),
        (
            {
                "OUTCOME_FILE": "",
                "OUTCOME_TOPIC_NAME": "",
                "ServiceBusConnection": "",
                "ServiceBusConnection__fullyQualifiedNamespace": "",
            },
            ["OUTCOME_FILE", "OUTCOME_TOPIC_NAME"],
            "OUTCOME_FILE, or OUTCOME_TOPIC_NAME with one of ServiceBusConnection__fullyQualifiedNamespace, ServiceBusConnection",
        ),
        (
            {
                "OUTCOME_FILE": "",
                "ServiceBusConnection": "",
                "ServiceBusConnection__fullyQualifiedNamespace": "",
                "OUTCOME_SERVICEBUS_NAMESPACE": "",
            },
            ["ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection", "OUTCOME_SERVICEBUS_NAMESPACE"],
            "OUTCOME_TOPIC_NAME needs a namespace",
        ),
        ({"ARCHIVE_POLICY_SCHEDULE": ""}, ["ARCHIVE_POLICY_SCHEDULE"], "required when ARCHIVE_POLICIES is set"),
    ],
    ids=["no-queue", "no-outcome-destination", "topic-without-namespace", "policies-without-schedule"],
)
def test_health_names_what_is_missing_and_its_alternatives(
    changes: dict[str, str], missing: list[str], words: str, health: Any, tmp_path: Path
) -> None:
    """A missing need is named with every setting that would meet it, and the words say one of them is enough."""
    status, body, _ = health(configured(tmp_path, **changes))
    assert status == 503
    assert (body["missingSettings"], body["invalidSettings"]) == (missing, [])
    assert any(words in line for line in body["detail"])


@pytest.mark.parametrize(
    "changes",
    [
        {"OUTCOME_FILE": "", "ServiceBusConnection": "", "OUTCOME_SERVICEBUS_NAMESPACE": ""},
        {"OUTCOME_FILE": "", "ServiceBusConnection__fullyQualifiedNamespace": "", "OUTCOME_SERVICEBUS_NAMESPACE": ""},
        {"OUTCOME_FILE": "", "ServiceBusConnection": "", "ServiceBusConnection__fullyQualifiedNamespace": ""},
        {"OUTCOME_TOPIC_NAME": "", "ServiceBusConnection": "", "ServiceBusConnection__fullyQualifiedNamespace": ""},
        {"ARCHIVE_POLICIES": "", "ARCHIVE_POLICY_SCHEDULE": ""},
    ],
    ids=[
        "topic-with-identity",
        "topic-with-connection-string",
        "topic-on-other-namespace",
        "file-only",
        "no-policies-no-schedule",
    ],
)
def test_one_alternative_is_enough(changes: dict[str, str], health: Any, tmp_path: Path) -> None:
    """Any one outcome destination makes a healthy app; without policies no schedule is needed."""
    status, body, _ = health(configured(tmp_path, **changes))
    assert (status, body["status"]) == (200, "ok")


def test_health_names_a_missing_and_a_malformed_setting_together(health: Any, tmp_path: Path) -> None:
    """Both lists are filled at once, as the settings error names every problem."""
    status, body, _ = health(configured(tmp_path, ARCHIVE_QUEUE_NAME="", WEBHOOK_SECRET="   ", ALLOWED_REGISTRIES=" , ,"))
    assert status == 503
    assert body["missingSettings"] == ["ARCHIVE_QUEUE_NAME"]
    assert sorted(body["invalidSettings"]) == ["ALLOWED_REGISTRIES", "WEBHOOK_SECRET"]


def test_every_setting_is_cleared_between_health_cases(health: Any, tmp_path: Path) -> None:
    """The helper's isolation covers every declared setting, so one case never leaks into the next."""
    health(configured(tmp_path))
    status, body, _ = health({})
    assert status == 503 and set(body["missingSettings"]) >= {"ARCHIVE_QUEUE_NAME", "OUTCOME_FILE"}
    assert set(GOOD) == set(SETTING_NAMES)
