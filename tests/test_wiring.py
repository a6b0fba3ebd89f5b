"""What the Functions host reads: binding metadata, host.json, the sample settings and .gitignore."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shared.settings import DEFAULTS, SETTING_NAMES

ROOT = Path(__file__).resolve().parents[1]
RUN_ROUTE = (
    "subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    "/providers/Microsoft.ContainerRegistry/registries/{registryName}/runs/{runId}"
)


def bindings() -> dict[str, list[dict[str, Any]]]:
    """Each function's bindings, decoded from the JSON the host indexes."""
    from shared.app import build_app

    return {f.get_function_name(): [json.loads(raw) for raw in f.get_raw_bindings()] for f in build_app({}).get_functions()}


def trigger(name: str) -> dict[str, Any]:
    """The one input trigger binding of a function."""
    triggers = [b for b in bindings()[name] if b["direction"] == "IN" and b["type"].endswith("Trigger")]
    assert len(triggers) == 1, triggers
    return triggers[0]


def host_json() -> dict[str, Any]:
    """host.json, decoded."""
    return json.loads((ROOT / "host.json").read_text(encoding="utf-8"))


def seconds(timespan: str) -> float:
    """A host.json timespan ([d.]hh:mm:ss[.fff]) in seconds."""
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", timespan)
    assert match, f"not a timespan: {timespan!r}"
    days, hours, minutes, secs = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(secs)


def worst_case_seconds() -> float:
    """The longest one event may take with the default settings: retry waits, every attempt timing out, and polling."""
    return (
        DEFAULTS.arm_retry_max_seconds
        + DEFAULTS.arm_max_attempts * DEFAULTS.arm_timeout_seconds
        + DEFAULTS.lro_timeout_seconds
    )


def test_the_app_registers_exactly_the_contracts_functions() -> None:
    """One queue trigger and five HTTP functions (the policy timer only with a schedule: tests/test_timer.py)."""
    assert set(bindings()) == {"archive_queue", "arm_patch_run", "archive_events", "archive_events_options", "sweep_policy", "health"}


def test_the_queue_trigger_listens_on_the_configured_queue_with_an_identity_connection() -> None:
    """serviceBusTrigger on %ARCHIVE_QUEUE_NAME% through the ServiceBusConnection settings."""
    binding = trigger("archive_queue")
    assert binding["type"] == "serviceBusTrigger"
    assert binding["queueName"] == "%ARCHIVE_QUEUE_NAME%"
    assert binding["connection"] == "ServiceBusConnection"
    # Auto-complete is the host.json default the settlement rules (contract §5) rely on.
    assert binding.get("autoCompleteMessages", True) is True


@pytest.mark.parametrize(
    ("function", "route", "methods", "auth"),
    [
        ("arm_patch_run", RUN_ROUTE, ["PATCH"], "FUNCTION"),
        ("archive_events", "archive-events", ["POST"], "FUNCTION"),
        ("archive_events_options", "archive-events", ["OPTIONS"], "FUNCTION"),
        ("sweep_policy", "archive-policies/{name}/sweep", ["POST"], "FUNCTION"),
        ("health", "health", ["GET"], "ANONYMOUS"),
    ],
    ids=["patch-mirror", "archive-events-post", "archive-events-options", "sweep", "health"],
)
def test_each_http_function_has_its_route_method_and_auth_level(function: str, route: str, methods: list[str], auth: str) -> None:
    """Routes, methods and auth levels are those of contract §6."""
    binding = trigger(function)
    assert binding["type"] == "httpTrigger"
    assert binding["route"] == route
    assert [m.upper() for m in binding["methods"]] == methods
    assert binding["authLevel"].upper() == auth
    outputs = [b for b in bindings()[function] if b["direction"] == "OUT"]
    assert outputs == [{"direction": "OUT", "type": "http", "name": "$return"}]


def test_host_json_uses_runtime_2_and_the_v4_extension_bundle() -> None:
    """Version 2.0 and Microsoft.Azure.Functions.ExtensionBundle [4.*, 5.0.0)."""
    host = host_json()
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}


def test_host_json_keeps_the_api_route_prefix() -> None:
    """Routes live under /api, as contract §6 says."""
    assert host_json().get("extensions", {}).get("http", {}).get("routePrefix", "api") == "api"


def test_host_json_auto_completes_messages() -> None:
    """Return completes the message and raising abandons it (contract §5)."""
    assert host_json()["extensions"]["serviceBus"]["autoCompleteMessages"] is True


def test_the_message_lock_is_renewed_for_longer_than_the_worst_case_event() -> None:
    """maxAutoLockRenewalDuration outlasts retries, timeouts and polling with the default settings."""
    renewal = seconds(host_json()["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"])
    assert renewal > worst_case_seconds()


def test_the_function_timeout_outlasts_the_worst_case_event_and_the_lock_outlasts_the_timeout() -> None:
    """functionTimeout is set, longer than one event's worst case, and the lock is renewed at least that long."""
    host = host_json()
    timeout = seconds(host["functionTimeout"])
    assert timeout > worst_case_seconds()
    assert seconds(host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"]) >= timeout


def test_the_sample_settings_name_every_setting() -> None:
    """local.settings.sample.json is valid JSON naming every setting (the connection-string alternative aside)."""
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    expected = set(SETTING_NAMES) - {"ServiceBusConnection"}
    assert expected <= set(values), sorted(expected - set(values))


def test_the_sample_settings_pick_one_service_bus_connection_style() -> None:
    """The sample does not set both the connection string and the identity-based namespace."""
    values = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
    assert not (values.get("ServiceBusConnection") and values.get("ServiceBusConnection__fullyQualifiedNamespace"))


@pytest.mark.parametrize(
    ("path", "ignored"),
    [("local.settings.json", True), ("local.settings.sample.json", False)],
    ids=["local", "sample"],
)
def test_git_ignores_local_settings_but_not_the_sample(path: str, ignored: bool) -> None:
    """Per-developer settings with secrets stay out of git; the sample is committed."""
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert result.returncode in (0, 1), "git check-ignore failed"
    assert (result.returncode == 0) is ignored
