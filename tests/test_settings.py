"""Settings (contract §1): defaults, parsing, and one clear error naming every bad setting."""

from __future__ import annotations

import pytest

from shared.errors import ConfigurationError
from shared.settings import Settings, missing_settings


def test_defaults_follow_the_contract() -> None:
    """An empty environment gives the contract's defaults."""
    settings = Settings.from_env({})
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.arm_scope == "https://management.azure.com/.default"
    assert settings.arm_api_version == "2019-04-01"
    assert (settings.arm_max_attempts, settings.arm_timeout_seconds) == (4, 30)
    assert (settings.arm_retry_max_seconds, settings.lro_timeout_seconds) == (60, 120)
    assert settings.max_delivery_count == 10
    assert settings.allowed_registries is None and settings.webhook_secret is None


def test_empty_values_count_as_unset() -> None:
    """An empty or blank value is the same as no value."""
    settings = Settings.from_env({"ARM_MAX_ATTEMPTS": "", "WEBHOOK_SECRET": "  ", "OUTCOME_FILE": ""})
    assert settings.arm_max_attempts == 4
    assert settings.webhook_secret is None and settings.outcome_file is None


def test_every_malformed_setting_is_named_in_one_error() -> None:
    """All problems are reported at once, by name, and never with the value."""
    env = {
        "ARM_MAX_ATTEMPTS": "four",
        "ARM_TIMEOUT_SECONDS": "-1",
        "DEFAULT_SUBSCRIPTION_ID": "not-a-guid",
        "DEFAULT_REGISTRY_NAME": "my-registry!",
        "ALLOWED_REGISTRIES": "a/b",
        "MAX_DELIVERY_COUNT": "0",
        "ARM_ENDPOINT": "ftp://x",
    }
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert set(caught.value.settings) == set(env)
    for name in env:
        assert name in str(caught.value)
    assert "not-a-guid" not in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "accepted"),
    [
        ("https://management.azure.com", True),
        ("https://management.usgovcloudapi.net/", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://[::1]:8080", True),
        ("http://management.azure.com", False),
        ("http://10.0.0.4", False),
        ("management.azure.com", False),
    ],
    ids=["https", "sovereign-cloud", "loopback-v4", "localhost", "loopback-v6", "plain-http", "private-http", "no-scheme"],
)
def test_arm_endpoint_must_be_https_unless_loopback(endpoint: str, accepted: bool) -> None:
    """A token must never travel over plain HTTP off this machine."""
    if accepted:
        assert Settings.from_env({"ARM_ENDPOINT": endpoint}).arm_endpoint == endpoint.rstrip("/")
    else:
        with pytest.raises(ConfigurationError, match="ARM_ENDPOINT"):
            Settings.from_env({"ARM_ENDPOINT": endpoint})


def test_allowed_registries_are_case_insensitive_entries() -> None:
    """Entries are lower-cased names or subscription/group/registry triples."""
    settings = Settings.from_env({"ALLOWED_REGISTRIES": " myRegistry , 4385CF00-2d3a-425a-832f-f4285b1c9dce/RG/Other1 "})
    assert settings.allowed_registries == {"myregistry", "4385cf00-2d3a-425a-832f-f4285b1c9dce/rg/other1"}


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["ARCHIVE_QUEUE_NAME", "OUTCOME_TOPIC_NAME", "OUTCOME_FILE"]),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_FILE": "/tmp/o"}, []),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t"}, ["ServiceBusConnection__fullyQualifiedNamespace"]),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t", "ServiceBusConnection__fullyQualifiedNamespace": "n.servicebus.windows.net"}, []),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t", "ServiceBusConnection": "Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"}, []),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t", "OUTCOME_SERVICEBUS_NAMESPACE": "o.servicebus.windows.net"}, []),
    ],
    ids=["nothing", "file-sink", "topic-without-namespace", "topic-with-identity", "topic-with-connection-string", "other-namespace"],
)
def test_missing_settings_name_the_outcome_destination(env: dict[str, str], missing: list[str]) -> None:
    """The health route's list of required settings that are absent."""
    assert missing_settings(Settings.from_env(env)) == missing
