"""Archive policies (contract §8): the ARCHIVE_POLICIES setting parsed into frozen ArchivePolicy objects.

    [{"name": "release-builds",
      "registry": "{subscriptionId}/{resourceGroupName}/{registryName}" | "<registry resource id>",
      "filter": "TaskName eq 'release'",      # optional OData, 1-1024 characters
      "isArchiveEnabled": true}]              # optional, default true

Unknown keys are refused: an operator's misspelt `isArchiveEnable: false` must not silently sweep with
the default `true`. Names are unique regardless of case, because they are also a route segment
(`/api/archive-policies/{name}/sweep`). Each problem names the policy and the field,
`ARCHIVE_POLICIES[release-builds].registry: …` (by position when the name itself is unusable), never a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.setting_parsers import GUID, REGISTRY, RESOURCE_GROUP, Malformed

__all__ = ["ArchivePolicy", "parse_policies", "registry_allowed"]

SETTING = "ARCHIVE_POLICIES"
KEYS = frozenset({"name", "registry", "filter", "isArchiveEnabled"})
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$", re.ASCII)
MAX_FILTER = 1024
REGISTRY_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]*)/resourceGroups/(?P<group>[^/]*)/providers/Microsoft\.ContainerRegistry/registries/(?P<registry>[^/]*)$",
    re.IGNORECASE | re.ASCII,  # fixed segments are case-insensitive, as ARM ids are
)


@dataclass(frozen=True, slots=True)
class ArchivePolicy:
    """One policy: which registry's runs to sweep, which of them (the OData filter), and the flag to set."""

    name: str
    subscription_id: str
    resource_group_name: str
    registry_name: str
    filter: str | None = None
    is_archive_enabled: bool = True

    @property
    def registry_id(self) -> str:
        """The registry's ARM resource id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group_name}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.registry_name}"
        )


def parse_policies(value: str, allowed: frozenset[str] | None) -> tuple[ArchivePolicy, ...]:
    """Parse ARCHIVE_POLICIES; raise Malformed listing every problem, each naming the policy and the field."""
    try:
        document = json.loads(value, parse_constant=_no_constant, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
        raise Malformed("must be a JSON array of policy objects (contract §8)") from None
    if not isinstance(document, list):
        raise Malformed("must be a JSON array of policy objects (contract §8)")
    problems: list[str] = []
    policies: list[ArchivePolicy] = []
    seen: set[str] = set()
    for index, item in enumerate(document):
        policy = _policy(index, item, allowed, problems)
        if policy is None:
            continue
        if policy.name.lower() in seen:
            problems.append(f"{SETTING}[{policy.name}].name: is used by an earlier policy (names are unique, case-insensitive)")
            continue
        seen.add(policy.name.lower())
        policies.append(policy)
    if problems:
        raise Malformed("; ".join(problems))
    return tuple(policies)


def registry_allowed(allowed: frozenset[str] | None, subscription_id: str, resource_group_name: str, registry_name: str) -> bool:
    """ALLOWED_REGISTRIES' rule (contract §1): unset allows all; else the name or the full triple, case-insensitive."""
    if allowed is None:
        return True
    return registry_name.lower() in allowed or f"{subscription_id}/{resource_group_name}/{registry_name}".lower() in allowed


def _policy(index: int, item: Any, allowed: frozenset[str] | None, problems: list[str]) -> ArchivePolicy | None:
    if not isinstance(item, dict):
        problems.append(f"{SETTING}[{index}]: must be a JSON object")
        return None
    name = item.get("name")
    label = name if isinstance(name, str) and NAME.fullmatch(name) else str(index)
    before = len(problems)

    def problem(field: str, why: str) -> None:
        problems.append(f"{SETTING}[{label}].{field}: {why}")

    for key in sorted(set(item) - KEYS):
        # The key is the operator's text; name it only when it is a plain identifier.
        shown = key if re.fullmatch(r"[A-Za-z0-9_$-]{1,64}", key, re.ASCII) else "(a key)"
        problem(shown, "is not a policy field (name, registry, filter, isArchiveEnabled)")
    if label == str(index):
        problem("name", "required: 1-64 letters, digits, - _")
    registry = _registry(item.get("registry"), problem)
    filter_text = item.get("filter")
    if filter_text is not None and not _is_filter(filter_text):
        rule = f"must be an OData filter of 1-{MAX_FILTER} characters without control characters"
        problem("filter", rule + ", its parentheses and quotes closed")
    flag = item.get("isArchiveEnabled", True)
    if not isinstance(flag, bool):
        problem("isArchiveEnabled", "must be true or false (a JSON boolean)")
    if registry is not None and not registry_allowed(allowed, *registry):
        problem("registry", "is not in ALLOWED_REGISTRIES")
    if len(problems) > before or registry is None:
        return None
    return ArchivePolicy(label, *registry, filter=filter_text, is_archive_enabled=flag)


def _registry(value: Any, problem: Any) -> tuple[str, str, str] | None:
    rule = "must be subscriptionId/resourceGroupName/registryName or a registry resource id"
    if not isinstance(value, str):
        problem("registry", "required: " + rule)
        return None
    match = REGISTRY_ID.fullmatch(value)
    parts = (match["sub"], match["group"], match["registry"]) if match else tuple(value.split("/"))
    if len(parts) != 3:
        problem("registry", rule)
        return None
    sub, group, registry = parts
    if not GUID.fullmatch(sub):
        problem("registry", "subscriptionId must be a GUID")
    elif not RESOURCE_GROUP.fullmatch(group) or group.endswith("."):
        problem("registry", "resourceGroupName must be 1-90 letters, digits, _ - . ( ), not ending in '.'")
    elif not REGISTRY.fullmatch(registry):
        problem("registry", "registryName must be 5-50 letters or digits")
    else:
        return sub, group, registry
    return None


def _is_filter(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_FILTER
        and value.strip() != ""
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in value)
        and _closed(value)
    )


def _closed(value: str) -> bool:
    """Every string literal ends, and every ')' outside one closes a '(' of the filter itself.

    The sweep sends `({filter}) and IsArchiveEnabled eq … and CreateTime ge …`: a filter such as
    `a) or (b` would escape those parentheses and, `and` binding tighter than `or`, drop both conjuncts.
    A quote toggles the literal state; a doubled quote inside a literal toggles it twice, as OData reads it.
    """
    depth, literal = 0, False
    for char in value:
        if char == "'":
            literal = not literal
        elif not literal and char in "()":
            depth += 1 if char == "(" else -1
            if depth < 0:
                return False
    return depth == 0 and not literal


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> Mapping[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")  # which of two "isArchiveEnabled" wins is a guess we refuse to make
    return dict(pairs)
