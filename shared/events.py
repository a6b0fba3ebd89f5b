"""Archive-change events (contract §2): parse any accepted shape into one validated ArchiveRequest."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import InvalidEvent, RegistryNotAllowed
from shared.jsontext import UnreadableJson, loads
from shared.messaging import envelope_of, is_validation_event
from shared.settings import GUID, REGISTRY, RESOURCE_GROUP, Settings

__all__ = ["ArchiveRequest", "check_allowed", "decode_json", "is_validation_event", "parse_event"]

RUN_ID = re.compile(r"^[A-Za-z0-9\-_.]{1,128}$")
RUN_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<subscriptionId>[^/]*)/resourceGroups/(?P<resourceGroupName>[^/]*)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]*)/runs/(?P<runId>[^/]*)$",
    re.IGNORECASE | re.ASCII,  # case-insensitive as ARM ids are, but only for ASCII letters
)


@dataclass(frozen=True, slots=True)
class ArchiveRequest:
    """One validated Runs - Update request: which run, and the archive flag to set."""

    subscription_id: str
    resource_group_name: str
    registry_name: str
    run_id: str
    is_archive_enabled: bool

    @property
    def path(self) -> str:
        """The ARM resource path of the run, every segment percent-encoded."""
        return (
            f"/subscriptions/{_segment(self.subscription_id)}/resourceGroups/{_segment(self.resource_group_name)}"
            f"/providers/Microsoft.ContainerRegistry/registries/{_segment(self.registry_name)}"
            f"/runs/{_segment(self.run_id)}"
        )

    def as_dict(self) -> dict[str, Any]:
        """The contract's `request` object of an outcome."""
        return {
            "subscriptionId": self.subscription_id,
            "resourceGroupName": self.resource_group_name,
            "registryName": self.registry_name,
            "runId": self.run_id,
            "isArchiveEnabled": self.is_archive_enabled,
        }


def decode_json(raw: bytes | str) -> Any:
    """Decode a message or request body as strict JSON (shared.jsontext), or raise InvalidEvent naming `body`."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.removeprefix("\ufeff")
        return loads(text)
    except UnicodeDecodeError:
        raise InvalidEvent("body", "is not UTF-8 text") from None
    except UnreadableJson as error:
        raise InvalidEvent("body", error.problem) from None


def parse_event(event: Any, settings: Settings) -> ArchiveRequest:
    """Turn one decoded event of any accepted shape into an ArchiveRequest, or raise InvalidEvent."""
    data = _unwrap(event)
    if "runResourceId" in data and data["runResourceId"] is not None:
        fields = _split_resource_id(data["runResourceId"])
    else:
        fields = {
            "subscriptionId": _field(data, "subscriptionId", settings.default_subscription_id, "DEFAULT_SUBSCRIPTION_ID"),
            "resourceGroupName": _field(data, "resourceGroupName", settings.default_resource_group, "DEFAULT_RESOURCE_GROUP"),
            "registryName": _field(data, "registryName", settings.default_registry_name, "DEFAULT_REGISTRY_NAME"),
            "runId": _field(data, "runId", None, None),
        }
    for name, value in fields.items():
        problem = _RULES[name](value)
        if problem:
            raise InvalidEvent(name, problem)
    flag = data.get("isArchiveEnabled")
    if not isinstance(flag, bool):
        raise InvalidEvent("isArchiveEnabled", "required, a JSON boolean (true or false)" if flag is None else "must be a JSON boolean, not " + _json_type(flag))
    return ArchiveRequest(fields["subscriptionId"], fields["resourceGroupName"], fields["registryName"], fields["runId"], flag)


def check_allowed(request: ArchiveRequest, settings: Settings) -> None:
    """Raise RegistryNotAllowed unless ALLOWED_REGISTRIES is unset or lists the request's registry."""
    allowed = settings.allowed_registries
    if allowed is None:
        return
    registry = request.registry_name.lower()
    scoped = f"{request.subscription_id}/{request.resource_group_name}/{request.registry_name}".lower()
    if registry not in allowed and scoped not in allowed:
        raise RegistryNotAllowed(f"registryName: registry '{request.registry_name}' is not in ALLOWED_REGISTRIES")


def _unwrap(event: Any) -> Mapping[str, Any]:
    """Return the archive data of a flat, CloudEvents or Event Grid event."""
    if not isinstance(event, Mapping):
        raise InvalidEvent("event", f"must be a JSON object, not {_json_type(event)}")
    envelope = envelope_of(event)
    if envelope is None:
        return event
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise InvalidEvent("data", f"the {envelope} event's data must be a JSON object, not {_json_type(data)}")
    return data


def _field(data: Mapping[str, Any], name: str, default: str | None, setting: str | None) -> Any:
    value = data.get(name)
    if value is not None:
        return value
    if default is not None:
        return default
    raise InvalidEvent(name, "required" + (f" (or set {setting})" if setting else ""))


def _split_resource_id(value: Any) -> dict[str, str]:
    if not isinstance(value, str):
        raise InvalidEvent("runResourceId", f"must be a string, not {_json_type(value)}")
    match = RUN_RESOURCE_ID.fullmatch(value)
    if not match:
        raise InvalidEvent(
            "runResourceId",
            "must look like /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}/runs/{id}",
        )
    fields = match.groupdict()
    for name, segment in fields.items():
        problem = _RULES[name](segment)
        if problem:
            raise InvalidEvent("runResourceId", f"its {name} {problem}")
    return fields


def _string_rule(pattern: re.Pattern[str], rule: str, extra: Any = None) -> Any:
    def check(value: Any) -> str | None:
        if not isinstance(value, str):
            return f"must be a string, not {_json_type(value)}"
        if not pattern.fullmatch(value) or (extra and extra(value)):
            return f"must be {rule}"
        return None

    return check


_RULES = {
    "subscriptionId": _string_rule(GUID, "a GUID"),
    "resourceGroupName": _string_rule(
        RESOURCE_GROUP, "1-90 characters of letters, digits, _ - . ( ), not ending in '.'", lambda v: v.endswith(".")
    ),
    "registryName": _string_rule(REGISTRY, "5-50 letters or digits"),
    "runId": _string_rule(RUN_ID, "1-128 characters of letters, digits, - _ ., and not '.' or '..'", lambda v: v in (".", "..")),
}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
