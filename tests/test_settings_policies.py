"""ARCHIVE_POLICIES (contract §8): parsed into frozen ArchivePolicy objects when the settings are read."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from shared.errors import ConfigurationError
from shared.policies import ArchivePolicy
from shared.settings import Settings

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/platform-rg/providers/Microsoft.ContainerRegistry/registries/platformRegistry"


def read(policies: list[Any], **env: str) -> Settings:
    """Settings holding `policies` as ARCHIVE_POLICIES."""
    return Settings.from_env({"ARCHIVE_POLICIES": json.dumps(policies), **env})


def problem(policies: list[Any], **env: str) -> str:
    """The ConfigurationError's text for `policies`."""
    with pytest.raises(ConfigurationError) as caught:
        read(policies, **env)
    assert caught.value.settings == ("ARCHIVE_POLICIES",)
    return str(caught.value)


def test_a_policy_becomes_a_frozen_archive_policy() -> None:
    """Name, registry triple, filter and flag are kept; the registry id is derived."""
    [policy] = read(
        [
            {
                "name": "failed-runs",
                "registry": f"{SUB}/platform-rg/platformRegistry",
                "filter": "Status eq 'Failed'",
                "isArchiveEnabled": False,
            }
        ]
    ).archive_policies
    assert policy == ArchivePolicy("failed-runs", SUB, "platform-rg", "platformRegistry", "Status eq 'Failed'", False)
    assert policy.registry_id == REGISTRY_ID
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "registry",
    [
        REGISTRY_ID,
        f"/SUBSCRIPTIONS/{SUB}/resourcegroups/platform-rg/PROVIDERS/microsoft.containerregistry/Registries/platformRegistry",
    ],
    ids=["resource-id", "resource-id-lower-case-segments"],
)
def test_a_registry_resource_id_is_read_with_case_insensitive_fixed_segments(registry: str) -> None:
    """As ARM ids are: /subscriptions/…/resourceGroups/…/providers/Microsoft.ContainerRegistry/registries/…."""
    [policy] = read([{"name": "p1", "registry": registry}]).archive_policies
    assert (policy.subscription_id, policy.resource_group_name, policy.registry_name) == (SUB, "platform-rg", "platformRegistry")


def test_filter_and_flag_are_optional() -> None:
    """Without them a policy archives every run it lists (isArchiveEnabled true, no filter)."""
    [policy] = read([{"name": "everything", "registry": f"{SUB}/rg/platformRegistry"}]).archive_policies
    assert (policy.filter, policy.is_archive_enabled) == (None, True)


def test_an_empty_array_means_no_policies() -> None:
    """[] sweeps nothing, like the setting left unset."""
    assert read([]).archive_policies == ()


def test_a_policy_is_found_by_name_regardless_of_case() -> None:
    """The sweep route's {name} finds its policy; an unknown name finds none."""
    settings = read([{"name": "Release-Builds", "registry": f"{SUB}/rg/platformRegistry"}])
    assert settings.archive_policy("release-builds") is settings.archive_policies[0]
    assert settings.archive_policy("other") is None


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({"name": "release-builds", "registry": "platformRegistry"}, "ARCHIVE_POLICIES[release-builds].registry:"),
        (
            {"name": "release-builds", "registry": "not-a-guid/rg/platformRegistry"},
            "ARCHIVE_POLICIES[release-builds].registry: subscriptionId",
        ),
        (
            {"name": "release-builds", "registry": f"{SUB}/rg./platformRegistry"},
            "ARCHIVE_POLICIES[release-builds].registry: resourceGroupName",
        ),
        ({"name": "release-builds", "registry": f"{SUB}/rg/bad-name"}, "ARCHIVE_POLICIES[release-builds].registry: registryName"),
        ({"name": "release-builds", "registry": REGISTRY_ID + "/runs/x"}, "ARCHIVE_POLICIES[release-builds].registry:"),
        ({"name": "release-builds"}, "ARCHIVE_POLICIES[release-builds].registry: required"),
        ({"name": "release-builds", "registry": ["x"]}, "ARCHIVE_POLICIES[release-builds].registry: required"),
        ({"name": "release builds", "registry": f"{SUB}/rg/platformRegistry"}, "ARCHIVE_POLICIES[0].name: required"),
        ({"name": 7, "registry": f"{SUB}/rg/platformRegistry"}, "ARCHIVE_POLICIES[0].name: required"),
        ({"name": "r" * 65, "registry": f"{SUB}/rg/platformRegistry"}, "ARCHIVE_POLICIES[0].name"),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "filter": ""}, "ARCHIVE_POLICIES[p1].filter"),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "filter": "   "}, "ARCHIVE_POLICIES[p1].filter"),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "filter": "x" * 1025}, "ARCHIVE_POLICIES[p1].filter"),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "filter": "a\x00b"}, "ARCHIVE_POLICIES[p1].filter"),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "filter": 3}, "ARCHIVE_POLICIES[p1].filter"),
        (
            {"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "isArchiveEnabled": "false"},
            "ARCHIVE_POLICIES[p1].isArchiveEnabled",
        ),
        (
            {"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "isArchiveEnabled": 0},
            "ARCHIVE_POLICIES[p1].isArchiveEnabled",
        ),
        (
            {"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "isArchiveEnable": False},
            "ARCHIVE_POLICIES[p1].isArchiveEnable:",
        ),
        ({"name": "p1", "registry": f"{SUB}/rg/platformRegistry", "a b\n": 1}, "ARCHIVE_POLICIES[p1].(a key):"),
        ("release-builds", "ARCHIVE_POLICIES[0]: must be a JSON object"),
    ],
    ids=[
        "registry-name-only",
        "registry-subscription-not-guid",
        "registry-group-ends-in-dot",
        "registry-name-with-hyphen",
        "registry-id-of-a-run",
        "registry-missing",
        "registry-not-a-string",
        "name-with-space",
        "name-not-a-string",
        "name-too-long",
        "filter-empty",
        "filter-blank",
        "filter-too-long",
        "filter-control-character",
        "filter-not-a-string",
        "flag-string",
        "flag-number",
        "unknown-key",
        "unknown-key-not-an-identifier",
        "policy-not-an-object",
    ],
)
def test_a_malformed_policy_names_the_policy_and_the_field(policy: Any, expected: str) -> None:
    """Every problem reads ARCHIVE_POLICIES[<name or position>].<field>: <rule>."""
    assert expected in problem([policy])


def test_a_policy_registry_must_pass_allowed_registries() -> None:
    """Checked when the settings are read, by name or by triple, case-insensitive."""
    policy = {"name": "release-builds", "registry": f"{SUB}/rg/platformRegistry"}
    assert "ARCHIVE_POLICIES[release-builds].registry: is not in ALLOWED_REGISTRIES" in problem(
        [policy], ALLOWED_REGISTRIES="otherRegistry"
    )
    assert read([policy], ALLOWED_REGISTRIES="PLATFORMREGISTRY").archive_policies[0].name == "release-builds"
    assert read([policy], ALLOWED_REGISTRIES=f"{SUB}/RG/platformregistry").archive_policies[0].name == "release-builds"


def test_names_are_unique_regardless_of_case() -> None:
    """Two policies answering the same sweep route are refused."""
    registry = f"{SUB}/rg/platformRegistry"
    text = problem([{"name": "nightly", "registry": registry}, {"name": "Nightly", "registry": registry}])
    assert "ARCHIVE_POLICIES[Nightly].name: is used by an earlier policy" in text


def test_every_problem_of_every_policy_is_named_at_once() -> None:
    """Two broken policies and two broken fields: four problems in one error."""
    text = problem(
        [
            {"name": "a1", "registry": "x", "isArchiveEnabled": "yes"},
            {"name": "b2", "registry": f"{SUB}/rg/platformRegistry", "filter": "", "extra": 1},
        ]
    )
    for part in ("[a1].registry", "[a1].isArchiveEnabled", "[b2].filter", "[b2].extra"):
        assert f"ARCHIVE_POLICIES{part}" in text


@pytest.mark.parametrize(
    "text",
    [
        "{}",
        '"x"',
        "[",
        "[NaN]",
        "[Infinity]",
        "[1e99999]",
        "[" * 50000 + "]" * 50000,
        '[{"name": "a", "name": "b"}]',
        "[1" + "0" * 5000 + "]",
    ],
    ids=["object", "string", "truncated", "nan", "infinity", "huge-float", "nested-deeply", "duplicate-key", "past-digit-limit"],
)
def test_a_document_that_is_not_a_json_array_of_policies_is_malformed(text: str) -> None:
    """Whatever the text, the answer is a ConfigurationError naming ARCHIVE_POLICIES, never a crash."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"ARCHIVE_POLICIES": text})
    assert caught.value.settings == ("ARCHIVE_POLICIES",)


def test_pretty_printed_policies_are_read() -> None:
    """JSON's own whitespace (newlines, indentation) is fine in ARCHIVE_POLICIES, unlike in other settings."""
    text = json.dumps([{"name": "nightly", "registry": f"{SUB}/rg/platformRegistry"}], indent=2)
    assert "\n" in text
    assert Settings.from_env({"ARCHIVE_POLICIES": text}).archive_policies[0].name == "nightly"
