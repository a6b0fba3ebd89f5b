"""Malformed values for every setting (contract §1), shared by the settings and health tests."""

from __future__ import annotations

import json

from shared.settings import SETTING_NAMES

__all__ = ["GOOD", "MALFORMED", "SUB", "malformed_cases"]

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
KEY_VAULT = "@Microsoft.KeyVault(SecretUri=https://kv-archiver.vault.azure.net/secrets/webhook-secret/)"


def _policies(**changes: object) -> str:
    policy = {"name": "release-builds", "registry": f"{SUB}/platform-rg/platformRegistry", **changes}
    return json.dumps([{k: v for k, v in policy.items() if v is not None}])


GOOD: dict[str, str] = {
    "ServiceBusConnection__fullyQualifiedNamespace": "sb-acr-archiver.servicebus.windows.net",
    "ServiceBusConnection__credential": "managedidentity",
    "ServiceBusConnection__clientId": "00000000-0000-0000-0000-000000000000",
    "ServiceBusConnection": "Endpoint=sb://localhost;SharedAccessKeyName=Root;SharedAccessKey=k;UseDevelopmentEmulator=true;",
    "ARCHIVE_QUEUE_NAME": "acr-archive-events",
    "OUTCOME_TOPIC_NAME": "acr-archive-outcomes",
    "OUTCOME_SERVICEBUS_NAMESPACE": "sb-outcomes.servicebus.windows.net",
    "OUTCOME_FILE": "/tmp/outcomes.jsonl",
    "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
    "ARM_ENDPOINT": "https://management.azure.com",
    "ARM_SCOPE": "https://management.azure.com/.default",
    "ARM_API_VERSION": "2019-04-01",
    "ARM_MAX_ATTEMPTS": "4",
    "ARM_TIMEOUT_SECONDS": "30",
    "ARM_RETRY_MAX_SECONDS": "60",
    "LRO_TIMEOUT_SECONDS": "120",
    "DEFAULT_SUBSCRIPTION_ID": SUB,
    "DEFAULT_RESOURCE_GROUP": "myResourceGroup",
    "DEFAULT_REGISTRY_NAME": "myRegistry",
    "ALLOWED_REGISTRIES": f"myRegistry,{SUB}/platform-rg/platformRegistry",
    "WEBHOOK_SECRET": "0123456789abcdef0123456789abcdef",
    "MAX_DELIVERY_COUNT": "10",
    "ARCHIVE_POLICIES": _policies(),
    "ARCHIVE_POLICY_SCHEDULE": "0 */15 * * * *",
    "ARCHIVE_POLICY_LOOKBACK_DAYS": "30",
    "ARM_WRITE_RESERVE": "20",
}
"""A value every setting accepts (the same shapes as local.settings.sample.json)."""

_NAMES = ("ARCHIVE_QUEUE_NAME", "OUTCOME_TOPIC_NAME")
_NAMESPACES = ("ServiceBusConnection__fullyQualifiedNamespace", "OUTCOME_SERVICEBUS_NAMESPACE")
_SECONDS = ("ARM_TIMEOUT_SECONDS", "ARM_RETRY_MAX_SECONDS", "LRO_TIMEOUT_SECONDS", "ARCHIVE_POLICY_LOOKBACK_DAYS")
_INTEGERS = ("ARM_MAX_ATTEMPTS", "MAX_DELIVERY_COUNT", "ARM_WRITE_RESERVE")

MALFORMED: list[tuple[str, str, str]] = [
    # (setting, value, case id)
    ("ServiceBusConnection", "sb-acr-archiver.servicebus.windows.net", "a-namespace-not-a-connection-string"),
    ("ServiceBusConnection", "SharedAccessKeyName=Root;SharedAccessKey=k", "no-endpoint"),
    (
        "ServiceBusConnection",
        "Endpoint=https://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=k",
        "endpoint-not-sb",
    ),
    ("ServiceBusConnection", "Endpoint=sb://;SharedAccessKeyName=Root;SharedAccessKey=k", "endpoint-without-host"),
    ("ServiceBusConnection", "Endpoint=sb://ns.servicebus.windows.net/", "no-key-or-signature"),
    ("ServiceBusConnection", "Endpoint=sb://ns.servicebus.windows.net/;garbage", "not-key-value-pairs"),
    ("ServiceBusConnection__credential", "managed identity", "credential-with-space"),
    ("ServiceBusConnection__clientId", "my-identity", "client-id-not-a-guid"),
    ("AZURE_CLIENT_ID", "{11111111-2222-3333-4444-555555555555}", "client-id-in-braces"),
    *[(name, "queue\x00name", f"{name}-nul") for name in _NAMES],
    *[(name, "queue\nname", f"{name}-newline") for name in _NAMES],
    *[(name, "queue\x1bname", f"{name}-escape") for name in _NAMES],
    *[(name, "-queue", f"{name}-leading-hyphen") for name in _NAMES],
    *[(name, "q" * 261, f"{name}-too-long") for name in _NAMES],
    *[(name, "queue name", f"{name}-space") for name in _NAMES],
    *[(name, "https://ns.servicebus.windows.net/", f"{name}-url") for name in _NAMESPACES],
    *[(name, "ns .servicebus.windows.net", f"{name}-space") for name in _NAMESPACES],
    *[(name, "ns.servicebus.windows.net:99999", f"{name}-bad-port") for name in _NAMESPACES],
    ("OUTCOME_FILE", "/tmp/out\x00comes.jsonl", "outcome-file-nul"),
    ("OUTCOME_FILE", "/tmp/out\ncomes.jsonl", "outcome-file-newline"),
    ("ARM_ENDPOINT", "https://management.azure.com:99999", "port-99999"),
    ("ARM_ENDPOINT", "https://management.azure.com:0", "port-0"),
    ("ARM_ENDPOINT", "https://management.azure.com:abc", "port-abc"),
    ("ARM_ENDPOINT", "https://[::1", "broken-brackets"),
    ("ARM_ENDPOINT", "https://[not-an-address]", "brackets-not-ipv6"),
    ("ARM_ENDPOINT", "https://manage ment.azure.com", "space-in-host"),
    ("ARM_ENDPOINT", "https://user:pass@management.azure.com", "userinfo"),
    ("ARM_ENDPOINT", "https://evil.example:1\\@management.azure.com", "backslash-differential"),
    ("ARM_ENDPOINT", "https://management.azure.com/subscriptions", "path"),
    ("ARM_ENDPOINT", "https://management.azure.com?x=1", "query"),
    ("ARM_ENDPOINT", "https://management.azure.com#frag", "fragment"),
    ("ARM_ENDPOINT", "http://management.azure.com", "plain-http"),
    ("ARM_ENDPOINT", "ftp://127.0.0.1", "ftp"),
    ("ARM_ENDPOINT", "arm.example.org", "no-scheme"),
    ("ARM_ENDPOINT", "https://managément.azure.com", "non-ascii-host"),
    ("ARM_SCOPE", "https://management.usgovcloudapi.net", "scope-without-default"),
    ("ARM_SCOPE", "https://management.azure.com/.default extra", "scope-with-space"),
    ("ARM_API_VERSION", "2019-04-01&$expand=x", "api-version-query-injection"),
    ("ARM_API_VERSION", "2019-13-01", "api-version-month-13"),
    ("ARM_API_VERSION", "latest", "api-version-word"),
    ("ARM_API_VERSION", "2019-04-01-beta", "api-version-beta"),
    *[
        (name, value, f"{name}-{case}")
        for name in (*_SECONDS, *_INTEGERS)
        for value, case in [
            ("inf", "inf"),
            ("nan", "nan"),
            ("1e999", "1e999"),
            ("-1", "negative"),
            ("twelve", "word"),
            ("٣", "arabic-digit"),
            ("1_0", "underscore"),
            ("0x10", "hex"),
        ]
    ],
    *[(name, "2.5", f"{name}-fraction") for name in _INTEGERS],
    *[(name, "9" * 5000, f"{name}-past-digit-limit") for name in _INTEGERS],
    ("ARM_MAX_ATTEMPTS", "0", "attempts-zero"),
    ("MAX_DELIVERY_COUNT", "0", "delivery-count-zero"),
    ("ARM_TIMEOUT_SECONDS", "0", "timeout-zero"),
    ("ARCHIVE_POLICY_LOOKBACK_DAYS", "0", "lookback-zero"),
    ("DEFAULT_SUBSCRIPTION_ID", "not-a-guid", "subscription-not-a-guid"),
    ("DEFAULT_RESOURCE_GROUP", "rg.", "group-ends-in-dot"),
    ("DEFAULT_RESOURCE_GROUP", "r" * 91, "group-too-long"),
    ("DEFAULT_REGISTRY_NAME", "my-registry", "registry-with-hyphen"),
    ("DEFAULT_REGISTRY_NAME", "abcd", "registry-too-short"),
    ("ALLOWED_REGISTRIES", " , ,", "separators-only"),
    ("ALLOWED_REGISTRIES", ",", "one-comma"),
    ("ALLOWED_REGISTRIES", "myRegistry,,other1", "empty-entry"),
    ("ALLOWED_REGISTRIES", "a/b", "two-parts"),
    ("ALLOWED_REGISTRIES", "not-a-guid/rg/myRegistry", "triple-without-guid"),
    ("WEBHOOK_SECRET", "abc\x00def", "secret-nul"),
    ("ARCHIVE_POLICIES", "{}", "policies-object"),
    ("ARCHIVE_POLICIES", "[1]", "policy-number"),
    ("ARCHIVE_POLICIES", "[" * 100000 + "]" * 100000, "policies-nested-deeply"),
    ("ARCHIVE_POLICIES", "[NaN]", "policies-nan"),
    ("ARCHIVE_POLICIES", _policies(name="release builds"), "policy-name-with-space"),
    ("ARCHIVE_POLICIES", _policies(name="x" * 65), "policy-name-too-long"),
    ("ARCHIVE_POLICIES", _policies(name=None), "policy-without-name"),
    ("ARCHIVE_POLICIES", _policies(registry=None), "policy-without-registry"),
    ("ARCHIVE_POLICIES", _policies(registry="platformRegistry"), "policy-registry-name-only"),
    ("ARCHIVE_POLICIES", _policies(registry=f"{SUB}/platform-rg/notAllowed1"), "policy-registry-not-allowed"),
    ("ARCHIVE_POLICIES", _policies(filter=""), "policy-filter-empty"),
    ("ARCHIVE_POLICIES", _policies(filter="x" * 1025), "policy-filter-too-long"),
    ("ARCHIVE_POLICIES", _policies(isArchiveEnabled="true"), "policy-flag-string"),
    ("ARCHIVE_POLICIES", _policies(isArchiveEnable=False), "policy-unknown-key"),
    ("ARCHIVE_POLICIES", json.dumps([json.loads(_policies())[0]] * 2), "policy-names-repeat"),
    ("ARCHIVE_POLICIES", '[{"name": "a", "name": "b"}]', "policy-duplicate-key"),
    ("ARCHIVE_POLICY_SCHEDULE", "*/5 * * * *", "schedule-five-fields"),
    ("ARCHIVE_POLICY_SCHEDULE", "0 */15 * * * * *", "schedule-seven-fields"),
    ("ARCHIVE_POLICY_SCHEDULE", "0 */15 * * * ;rm", "schedule-punctuation"),
]
"""Values each setting must refuse, besides the ones every setting refuses (`malformed_cases`)."""


def malformed_cases() -> list[tuple[str, str, str]]:
    """MALFORMED, plus for every setting: only whitespace, and an unresolved Key Vault reference."""
    every = [
        (name, value, f"{name}-{case}")
        for name in SETTING_NAMES
        for value, case in [
            ("   ", "whitespace"),
            ("\t \n", "blank-lines"),
            (KEY_VAULT, "key-vault-reference"),
        ]
    ]
    return MALFORMED + every
