"""Archive-change events (contract §2): parse any accepted shape into a validated ArchiveRequest or ImagePush.

Shapes 1-3 name one run (ArchiveRequest). Shape 4, ACR's ImagePushed event, names an image; the runs
that produced it are found by listing (shared.discovery), each then archived as an ArchiveRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from shared.errors import InvalidEvent, RegistryNotAllowed
from shared.jsontext import UnreadableJson, loads
from shared.messaging import ACR_EVENT_PREFIX, IMAGE_PUSHED, envelope_of, event_type_of, is_validation_event
from shared.settings import GUID, REGISTRY, RESOURCE_GROUP, Settings

__all__ = ["ArchiveRequest", "ImagePush", "check_allowed", "decode_json", "is_validation_event", "parse_event", "request_for_run"]

RUN_ID = re.compile(r"^[A-Za-z0-9\-_.]{1,128}$")
RUN_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<subscriptionId>[^/]*)/resourceGroups/(?P<resourceGroupName>[^/]*)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]*)/runs/(?P<runId>[^/]*)$",
    re.IGNORECASE | re.ASCII,  # case-insensitive as ARM ids are, but only for ASCII letters
)
REGISTRY_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<subscriptionId>[^/]*)/resourceGroups/(?P<resourceGroupName>[^/]*)"
    r"/providers/Microsoft\.ContainerRegistry/registries/(?P<registryName>[^/]*)$",
    re.IGNORECASE | re.ASCII,
)
IMAGE_TEXT_LIMIT = 256
"""Characters of a repository name or digest: OCI allows 255 for a name; anything longer is not an image."""
REPOSITORY = re.compile(r"^[^\x00-\x20\x7f-\x9f\u2028\u2029\ud800-\udfff@,]{1,256}$")
"""Printable, no blanks, no `@` or `,` (they separate a manifest's repository from its digest, and manifests in a listing)."""
DIGEST = re.compile(r"^[A-Za-z0-9]+(?:[.+_-][A-Za-z0-9]+)*:[A-Za-z0-9=_-]{1,200}$", re.ASCII)
"""OCI image-spec digest grammar: `algorithm:encoded`, e.g. sha256:<64 hex>."""
_SAFE_TYPE = re.compile(r"^[A-Za-z0-9.]{1,100}$", re.ASCII)


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


@dataclass(frozen=True, slots=True)
class ImagePush:
    """An ACR ImagePushed event (contract §2 shape 4): archive the runs of this registry that produced this image."""

    subscription_id: str
    resource_group_name: str
    registry_name: str
    repository: str
    digest: str

    @property
    def registry_id(self) -> str:
        """The registry's ARM resource id (its segments were validated, so it is also its path)."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group_name}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.registry_name}"
        )

    @property
    def image(self) -> str:
        """`repository@digest`, as OutputImageManifests lists it."""
        return f"{self.repository}@{self.digest}"


def decode_json(raw: bytes | str) -> Any:
    """Decode a message or request body as strict JSON (shared.jsontext), or raise InvalidEvent naming `body`."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw.removeprefix("\ufeff")
        return loads(text)
    except UnicodeDecodeError:
        raise InvalidEvent("body", "is not UTF-8 text") from None
    except UnreadableJson as error:
        raise InvalidEvent("body", error.problem) from None


def parse_event(event: Any, settings: Settings) -> ArchiveRequest | ImagePush:
    """Turn one decoded event of any accepted shape into an ArchiveRequest (or an ImagePush), or raise InvalidEvent."""
    kind = event_type_of(event)
    if kind is not None and kind.lower().startswith(ACR_EVENT_PREFIX.lower()):
        return _image_push(event, kind)
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


def request_for_run(push: ImagePush, run: Any) -> ArchiveRequest:
    """The archive request for one run ARM listed for a push; InvalidEvent when the run is not one of that registry.

    ARM's answer is input too: a listed run whose id is malformed or names another registry is refused,
    so a listing can never make the app write to a registry the event did not name.
    """
    identifier = run.get("id") if isinstance(run, Mapping) else None
    fields = _split_resource_id(identifier)
    same = (fields["subscriptionId"].lower(), fields["resourceGroupName"].lower(), fields["registryName"].lower())
    if same != (push.subscription_id.lower(), push.resource_group_name.lower(), push.registry_name.lower()):
        raise InvalidEvent("runResourceId", f"ARM listed a run of another registry than '{push.registry_name}'")
    return ArchiveRequest(push.subscription_id, push.resource_group_name, push.registry_name, fields["runId"], True)


def check_allowed(request: ArchiveRequest | ImagePush, settings: Settings) -> None:
    """Raise RegistryNotAllowed unless ALLOWED_REGISTRIES is unset or lists the request's registry."""
    allowed = settings.allowed_registries
    if allowed is None:
        return
    registry = request.registry_name.lower()
    scoped = f"{request.subscription_id}/{request.resource_group_name}/{request.registry_name}".lower()
    if registry not in allowed and scoped not in allowed:
        raise RegistryNotAllowed(f"registryName: registry '{request.registry_name}' is not in ALLOWED_REGISTRIES")


def _image_push(event: Mapping[str, Any], kind: str) -> ImagePush:
    """Shape 4: the registry from `topic` (Event Grid) or `source` (CloudEvents), the image from data.target."""
    if kind != IMAGE_PUSHED:
        shown = kind if _SAFE_TYPE.fullmatch(kind) else "this ACR event type"
        raise InvalidEvent("eventType", f"{shown} is not an archive event; of ACR's events only {IMAGE_PUSHED} is")
    where = "topic" if envelope_of(event) == "Event Grid" else "source"
    registry = event.get(where)
    match = REGISTRY_RESOURCE_ID.fullmatch(registry) if isinstance(registry, str) else None
    if match is None:
        rule = "must be a registry resource id /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}"  # noqa: E501
        raise InvalidEvent(where, rule)
    fields = match.groupdict()
    for name, segment in fields.items():
        problem = _RULES[name](segment)
        if problem:
            raise InvalidEvent(where, f"its {name} {problem}")
    data = event.get("data")
    target = data.get("target") if isinstance(data, Mapping) else None
    if not isinstance(target, Mapping):
        raise InvalidEvent("data.target", "required: the pushed image's repository and digest")
    repository, digest = target.get("repository"), target.get("digest")
    if not isinstance(repository, str) or not REPOSITORY.fullmatch(repository):
        raise InvalidEvent("data.target.repository", f"required: a repository name of 1-{IMAGE_TEXT_LIMIT} printable characters")
    if not isinstance(digest, str) or len(digest) > IMAGE_TEXT_LIMIT or not DIGEST.fullmatch(digest):
        raise InvalidEvent("data.target.digest", "required: an image digest such as sha256:<64 hex digits>")
    return ImagePush(fields["subscriptionId"], fields["resourceGroupName"], fields["registryName"], repository, digest)


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
