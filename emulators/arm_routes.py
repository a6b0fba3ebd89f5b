"""Route matching and ARM-like request validation for the Runs Get/Update emulator.

Parameter rules follow the swagger's `parameters` section (RegistryNameParameter: 5-50 characters
of `^[a-zA-Z0-9]*$`; ResourceGroupNameParameter: minLength 1; api-version required).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email.message import Message
from typing import Callable

from emulators.errors import ArmError

__all__ = [
    "API_VERSION",
    "OperationRoute",
    "RunRoute",
    "RunsRoute",
    "check_api_version",
    "check_auth",
    "check_run_route",
    "match_route",
    "parse_update_body",
]

API_VERSION = "2019-04-01"
PROVIDER = "microsoft.containerregistry"
_REGISTRY_NAME = re.compile(r"^[a-zA-Z0-9]{5,50}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_INVALID_TOKEN_CHALLENGE = (
    'Bearer authorization_uri="https://login.microsoftonline.com/common", '
    'error="invalid_token", error_description="The access token is invalid."'
)


@dataclass(frozen=True)
class RunRoute:
    """`/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}/runs/{id}`."""

    subscription_id: str
    resource_group: str
    registry: str
    run_id: str


@dataclass(frozen=True)
class RunsRoute:
    """`/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ContainerRegistry/registries/{r}/runs` (Runs - List)."""

    subscription_id: str
    resource_group: str
    registry: str


@dataclass(frozen=True)
class OperationRoute:
    """`/subscriptions/{s}/providers/Microsoft.ContainerRegistry/locations/{l}/operation{Statuses|Results}/{op}`."""

    subscription_id: str
    location: str
    kind: str  # "operationStatuses" or "operationResults"
    op_id: str


def _fixed(segments: list[str], expected: dict[int, str]) -> bool:
    """True when the fixed segments match, case-insensitively."""
    return all(segments[index].lower() == value for index, value in expected.items())


def match_route(segments: list[str]) -> RunRoute | RunsRoute | OperationRoute | None:
    """Match decoded path segments to an emulated route."""
    if len(segments) == 9 and _fixed(
        segments, {0: "subscriptions", 2: "resourcegroups", 4: "providers", 5: PROVIDER, 6: "registries", 8: "runs"}
    ):
        return RunsRoute(segments[1], segments[3], segments[7])
    if len(segments) == 10 and _fixed(
        segments, {0: "subscriptions", 2: "resourcegroups", 4: "providers", 5: PROVIDER, 6: "registries", 8: "runs"}
    ):
        if segments[9]:
            return RunRoute(segments[1], segments[3], segments[7], segments[9])
    if len(segments) == 8 and _fixed(segments, {0: "subscriptions", 2: "providers", 3: PROVIDER, 4: "locations"}):
        kind = {"operationstatuses": "operationStatuses", "operationresults": "operationResults"}.get(
            segments[6].lower()
        )
        if kind and segments[7]:
            return OperationRoute(segments[1], segments[5], kind, segments[7])
    return None


def check_auth(headers: Message, validator: Callable[[str], bool] | None) -> None:
    """Require `Authorization: Bearer <token>`, accepted by the validator if any (token never echoed)."""
    value = headers.get("Authorization")
    if value is None:
        raise ArmError(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        message = "Authentication failed. The 'Authorization' header is provided in an invalid format."
        raise ArmError(401, "AuthenticationFailed", message)
    if validator is not None and not validator(token.strip()):
        message = "The access token is invalid or has expired."
        raise ArmError(401, "InvalidAuthenticationToken", message, {"WWW-Authenticate": _INVALID_TOKEN_CHALLENGE})


def check_api_version(value: str | None) -> None:
    """Only api-version 2019-04-01 is emulated."""
    if value == API_VERSION:
        return
    if value is None:
        message = "The api-version query parameter (?api-version=) is required for all requests."
    else:
        message = f"The api-version '{value}' is invalid. The supported versions are '{API_VERSION}'."
    raise ArmError(400, "InvalidApiVersionParameter", message)


def check_run_route(route: RunRoute | RunsRoute) -> None:
    """Validate the path parameters of a run route."""
    if not _GUID.match(route.subscription_id):
        message = f"The provided subscription identifier '{route.subscription_id}' is malformed or invalid."
        raise ArmError(400, "InvalidSubscriptionId", message)
    if len(route.resource_group) < 1:
        raise ArmError(400, "InvalidParameter", "The resourceGroupName parameter must be at least 1 character.")
    if not _REGISTRY_NAME.match(route.registry):
        message = (
            f"The registryName '{route.registry}' is invalid: it must be 5-50 characters "
            "matching '^[a-zA-Z0-9]*$'."
        )
        raise ArmError(400, "InvalidParameter", message)


def parse_update_body(headers: Message, body: bytes) -> bool:
    """Parse RunUpdateParameters; returns the requested isArchiveEnabled."""
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        message = f"The content type '{content_type or '(none)'}' is not supported; use 'application/json'."
        raise ArmError(400, "InvalidRequestContent", message)
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ArmError(400, "InvalidRequestContent", "The request content is not valid JSON.") from None
    if not isinstance(document, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must be a JSON object.")
    value = document.get("isArchiveEnabled")
    if not isinstance(value, bool):
        message = "The request content must contain a boolean 'isArchiveEnabled'."
        raise ArmError(400, "InvalidRequestContent", message)
    return value
