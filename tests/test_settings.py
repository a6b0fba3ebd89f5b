"""Settings (contract §1): defaults, parsing, failing closed, and one clear error naming every bad setting."""

from __future__ import annotations

import math

import pytest

from shared.errors import ConfigurationError
from shared.settings import DEFAULTS, SETTING_NAMES, Settings, missing_settings, unmet_requirements
from tests.settings_cases import GOOD, MALFORMED, malformed_cases

CASES = malformed_cases()


def test_defaults_follow_the_contract() -> None:
    """An empty environment gives the contract's defaults."""
    settings = Settings.from_env({})
    assert settings == DEFAULTS
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.arm_scope == "https://management.azure.com/.default"
    assert settings.arm_api_version == "2019-04-01"
    assert (settings.arm_max_attempts, settings.arm_timeout_seconds) == (4, 30)
    assert (settings.arm_retry_max_seconds, settings.lro_timeout_seconds) == (60, 120)
    assert settings.max_delivery_count == 10
    assert (settings.archive_policy_lookback_days, settings.arm_write_reserve) == (30, 20)
    assert settings.archive_policies == () and settings.archive_policy_schedule is None
    assert settings.allowed_registries is None and settings.webhook_secret is None


def test_every_setting_accepts_a_well_formed_value() -> None:
    """The GOOD table (one value per setting) is read without a problem, and covers every setting."""
    assert set(GOOD) == set(SETTING_NAMES)
    settings = Settings.from_env(GOOD)
    assert settings.allowed_registries == {"myregistry", "4385cf00-2d3a-425a-832f-f4285b1c9dce/platform-rg/platformregistry"}
    assert isinstance(settings.arm_max_attempts, int) and isinstance(settings.arm_write_reserve, int)


def test_empty_values_count_as_unset() -> None:
    """An empty value is the same as no value."""
    settings = Settings.from_env({name: "" for name in SETTING_NAMES})
    assert settings == DEFAULTS


def test_surrounding_whitespace_is_not_part_of_a_value() -> None:
    """A value pasted with a trailing newline or spaces reads as the value itself."""
    settings = Settings.from_env({"ARM_MAX_ATTEMPTS": " 7\n", "ARCHIVE_QUEUE_NAME": "  q1  ", "WEBHOOK_SECRET": " s3cret-value "})
    assert (settings.arm_max_attempts, settings.archive_queue_name, settings.webhook_secret) == (7, "q1", "s3cret-value")


def test_every_setting_has_malformed_cases_of_its_own() -> None:
    """The table below walks every setting with values that only that setting refuses, not just the generic ones."""
    assert {name for name, _, _ in MALFORMED} == set(SETTING_NAMES)


@pytest.mark.parametrize(("name", "value"), [case[:2] for case in CASES], ids=[case[2] for case in CASES])
def test_a_malformed_value_is_a_configuration_error_naming_the_setting(name: str, value: str) -> None:
    """Each malformed value, among otherwise good settings, is a ConfigurationError naming only that setting, not the value."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({**GOOD, name: value})
    assert caught.value.settings == (name,)
    assert name in str(caught.value)
    if len(value.strip()) >= 5:
        assert value.strip() not in str(caught.value)


def test_every_malformed_setting_is_named_in_one_error() -> None:
    """All problems are reported at once, by name."""
    env = {name: value for name, value, _ in reversed(MALFORMED)}
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(env)
    assert set(caught.value.settings) == set(env)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("ALLOWED_REGISTRIES", " , ,"), ("WEBHOOK_SECRET", "   "), ("ALLOWED_REGISTRIES", ",,")],
    ids=["allowlist-of-separators", "secret-of-spaces", "allowlist-of-commas"],
)
def test_a_restricting_setting_of_only_blanks_fails_closed(setting: str, value: str) -> None:
    """Blank or separators-only never means "no allowlist" or "no signature": it is malformed."""
    with pytest.raises(ConfigurationError, match=setting):
        Settings.from_env({setting: value})


def test_an_unresolved_key_vault_reference_says_so() -> None:
    """App Service leaves @Microsoft.KeyVault(...) in place when it cannot resolve it; that text is never a secret."""
    reference = "@Microsoft.KeyVault(VaultName=kv-archiver;SecretName=webhook-secret)"
    with pytest.raises(ConfigurationError, match="WEBHOOK_SECRET: is a Key Vault reference that did not resolve") as caught:
        Settings.from_env({"WEBHOOK_SECRET": reference})
    assert "kv-archiver" not in str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "stored"),
    [
        ("https://management.azure.com", "https://management.azure.com"),
        ("https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net"),
        ("HTTPS://Management.Azure.com:443", "https://management.azure.com:443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[0:0::1]:65535", "http://[::1]:65535"),
    ],
    ids=[
        "https",
        "sovereign-cloud-with-slash",
        "upper-case",
        "loopback-v4",
        "localhost",
        "loopback-v6",
        "ipv6-compressed-top-port",
    ],
)
def test_arm_endpoint_is_stored_in_one_plain_form(endpoint: str, stored: str) -> None:
    """A well-formed endpoint is kept as lower-case scheme://host[:port] without a trailing slash."""
    assert Settings.from_env({"ARM_ENDPOINT": endpoint}).arm_endpoint == stored


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("30", 30.0), ("0.5", 0.5), ("1e2", 100.0), ("+2", 2.0), (".25", 0.25)],
    ids=["integer", "fraction", "exponent", "plus-sign", "leading-dot"],
)
def test_seconds_are_finite_decimal_numbers(value: str, parsed: float) -> None:
    """Decimal forms of a finite number are accepted."""
    settings = Settings.from_env({"ARM_TIMEOUT_SECONDS": value})
    assert settings.arm_timeout_seconds == parsed and math.isfinite(settings.arm_timeout_seconds)


@pytest.mark.parametrize("value", ["2019-04-01", "2023-01-01-preview"], ids=["ga", "preview"])
def test_api_version_is_a_date_optionally_preview(value: str) -> None:
    """ARM's api-version forms are accepted as they are."""
    assert Settings.from_env({"ARM_API_VERSION": value}).arm_api_version == value


def test_allowed_registries_are_case_insensitive_entries() -> None:
    """Entries are lower-cased names or subscription/group/registry triples."""
    settings = Settings.from_env({"ALLOWED_REGISTRIES": " myRegistry , 4385CF00-2d3a-425a-832f-f4285b1c9dce/RG/Other1 "})
    assert settings.allowed_registries == {"myregistry", "4385cf00-2d3a-425a-832f-f4285b1c9dce/rg/other1"}


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, ["ARCHIVE_QUEUE_NAME", "OUTCOME_FILE", "OUTCOME_TOPIC_NAME"]),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_FILE": "/tmp/o"}, []),
        (
            {"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t"},
            ["ServiceBusConnection__fullyQualifiedNamespace", "ServiceBusConnection", "OUTCOME_SERVICEBUS_NAMESPACE"],
        ),
        (
            {
                "ARCHIVE_QUEUE_NAME": "q",
                "OUTCOME_TOPIC_NAME": "t",
                "ServiceBusConnection__fullyQualifiedNamespace": "n.servicebus.windows.net",
            },
            [],
        ),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t", "ServiceBusConnection": GOOD["ServiceBusConnection"]}, []),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_TOPIC_NAME": "t", "OUTCOME_SERVICEBUS_NAMESPACE": "o.servicebus.windows.net"}, []),
        (
            {"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_FILE": "/tmp/o", "ARCHIVE_POLICIES": GOOD["ARCHIVE_POLICIES"]},
            ["ARCHIVE_POLICY_SCHEDULE"],
        ),
        ({"ARCHIVE_QUEUE_NAME": "q", "OUTCOME_FILE": "/tmp/o", "ARCHIVE_POLICIES": "[]"}, []),
    ],
    ids=[
        "nothing",
        "file-sink",
        "topic-without-namespace",
        "topic-with-identity",
        "topic-with-connection-string",
        "other-namespace",
        "policies-without-schedule",
        "no-policies-no-schedule",
    ],
)
def test_missing_settings_name_the_alternatives(env: dict[str, str], missing: list[str]) -> None:
    """The health route's list: each unmet need names every setting that would meet it."""
    assert missing_settings(Settings.from_env(env)) == missing


def test_an_unmet_outcome_destination_is_worded_as_alternatives() -> None:
    """One of OUTCOME_FILE, or OUTCOME_TOPIC_NAME with a namespace or connection string, is enough: the words say so."""
    [queue, destination] = unmet_requirements(Settings.from_env({}))
    assert queue.names == ("ARCHIVE_QUEUE_NAME",)
    assert "OUTCOME_FILE, or OUTCOME_TOPIC_NAME with one of" in destination.why
    with pytest.raises(ConfigurationError, match="OUTCOME_TOPIC_NAME needs a namespace"):
        Settings.from_env({"OUTCOME_TOPIC_NAME": "t"}).require_outcome_destination()


@pytest.mark.parametrize(
    ("name", "value", "attribute", "parsed"),
    [
        ("ARM_WRITE_RESERVE", "0", "arm_write_reserve", 0),
        ("ARM_MAX_ATTEMPTS", "1", "arm_max_attempts", 1),
        ("ARM_RETRY_MAX_SECONDS", "0", "arm_retry_max_seconds", 0.0),
        ("LRO_TIMEOUT_SECONDS", "0", "lro_timeout_seconds", 0.0),
        ("ARCHIVE_POLICY_LOOKBACK_DAYS", "0.5", "archive_policy_lookback_days", 0.5),
        ("MAX_DELIVERY_COUNT", "2000", "max_delivery_count", 2000),
        ("ARM_MAX_ATTEMPTS", "100", "arm_max_attempts", 100),
    ],
    ids=["no-write-reserve", "one-attempt", "no-retry-wait", "no-lro-wait", "half-a-day", "top-delivery-count", "top-attempts"],
)
def test_numbers_at_the_edges_of_their_range_are_accepted(name: str, value: str, attribute: str, parsed: float) -> None:
    """The bounds themselves are in range: zero where zero means "none", the maximum where one is set."""
    assert getattr(Settings.from_env({name: value}), attribute) == parsed


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_DELIVERY_COUNT", "2001"), ("ARM_MAX_ATTEMPTS", "101"), ("ARM_TIMEOUT_SECONDS", "3600.5")],
    ids=["delivery-count-past-top", "attempts-past-top", "timeout-past-an-hour"],
)
def test_numbers_past_their_range_are_malformed(name: str, value: str) -> None:
    """Just past the maximum is refused, naming the setting."""
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize(
    "connection",
    [
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=a2V5+/==",
        "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        "endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y%3D&se=1;EntityPath=q",
        "Endpoint=sb://localhost:5672;SharedAccessKeyName=k;SharedAccessKey=v",
    ],
    ids=["portal-key-with-padding", "local-emulator", "signature-and-entity-path", "host-with-port"],
)
def test_service_bus_connection_strings_as_azure_writes_them_are_accepted(connection: str) -> None:
    """The portal's, the emulator's and a SAS form all read, kept exactly as written."""
    assert Settings.from_env({"ServiceBusConnection": connection}).servicebus_connection_string == connection


@pytest.mark.parametrize("value", [4, True, None, ["a"], {"a": 1}, 1.5], ids=["int", "bool", "null", "list", "object", "float"])
def test_a_value_that_is_not_a_string_is_malformed(value: object) -> None:
    """A settings file's JSON value that is not a string is named, not crashed on (None is unset, as absent)."""
    if value is None:
        assert Settings.from_env({"ARM_MAX_ATTEMPTS": value}) == DEFAULTS  # type: ignore[dict-item]
        return
    with pytest.raises(ConfigurationError, match="ARM_MAX_ATTEMPTS: must be a string"):
        Settings.from_env({"ARM_MAX_ATTEMPTS": value})  # type: ignore[dict-item]
