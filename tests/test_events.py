"""Archive-change events (contract §2): every shape and every validation rule."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import InvalidEvent, RegistryNotAllowed
from shared.events import ArchiveRequest, check_allowed, decode_json, parse_event
from shared.settings import Settings

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
FLAT = {"subscriptionId": SUB, "resourceGroupName": "myResourceGroup", "registryName": "myRegistry", "runId": "cab7", "isArchiveEnabled": True}
EXPECTED = ArchiveRequest(SUB, "myResourceGroup", "myRegistry", "cab7", True)
RESOURCE_ID = f"/subscriptions/{SUB}/resourceGroups/myResourceGroup/providers/Microsoft.ContainerRegistry/registries/myRegistry/runs/cab7"
NO_DEFAULTS = Settings()


@pytest.mark.parametrize(
    "event",
    [
        FLAT,
        {**FLAT, "somethingElse": [1, 2], "note": None},
        {"runResourceId": RESOURCE_ID, "isArchiveEnabled": True},
        {"runResourceId": RESOURCE_ID.replace("providers/Microsoft.ContainerRegistry", "PROVIDERS/microsoft.containerregistry").replace("/runs/", "/RUNS/"), "isArchiveEnabled": True},
        {"specversion": "1.0", "id": "e1", "source": "/pipelines", "type": "Acr.Run.ArchiveRequested", "data": FLAT},
        {"specversion": "1.0", "id": "e1", "source": "/pipelines", "type": "x", "data": {"runResourceId": RESOURCE_ID, "isArchiveEnabled": True}},
        {"id": "e2", "eventType": "Acr.Run.ArchiveRequested", "subject": "runs/cab7", "data": FLAT, "dataVersion": "1.0", "eventTime": "2026-11-27T10:00:00Z"},
    ],
    ids=["flat", "flat-extra-fields", "resource-id", "resource-id-any-case", "cloudevent-flat", "cloudevent-resource-id", "eventgrid"],
)
def test_every_accepted_shape_gives_the_same_request(event: dict[str, Any]) -> None:
    """Flat, resource id, CloudEvents and Event Grid events all name the same run."""
    assert parse_event(event, NO_DEFAULTS) == EXPECTED


def test_defaults_fill_the_fields_an_event_leaves_out() -> None:
    """DEFAULT_* settings stand in for a missing subscription, group or registry."""
    settings = Settings.from_env({"DEFAULT_SUBSCRIPTION_ID": SUB, "DEFAULT_RESOURCE_GROUP": "myResourceGroup", "DEFAULT_REGISTRY_NAME": "myRegistry"})
    assert parse_event({"runId": "cab7", "isArchiveEnabled": True}, settings) == EXPECTED
    assert parse_event({**FLAT, "registryName": "otherRegistry"}, settings).registry_name == "otherRegistry"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subscriptionId": "not-a-guid"}, "subscriptionId"),
        ({"subscriptionId": 42}, "subscriptionId"),
        ({"resourceGroupName": ""}, "resourceGroupName"),
        ({"resourceGroupName": "x" * 91}, "resourceGroupName"),
        ({"resourceGroupName": "rg."}, "resourceGroupName"),
        ({"resourceGroupName": "rg/../x"}, "resourceGroupName"),
        ({"resourceGroupName": "rg\n"}, "resourceGroupName"),
        ({"registryName": "abcd"}, "registryName"),
        ({"registryName": "a" * 51}, "registryName"),
        ({"registryName": "my-registry"}, "registryName"),
        ({"runId": ""}, "runId"),
        ({"runId": "."}, "runId"),
        ({"runId": ".."}, "runId"),
        ({"runId": "a/b"}, "runId"),
        ({"runId": "a%2Fb"}, "runId"),
        ({"runId": "r" * 129}, "runId"),
        ({"runId": None}, "runId"),
        ({"isArchiveEnabled": "true"}, "isArchiveEnabled"),
        ({"isArchiveEnabled": 1}, "isArchiveEnabled"),
        ({"isArchiveEnabled": None}, "isArchiveEnabled"),
    ],
    ids=lambda v: str(v)[:30] if isinstance(v, dict) else v,
)
def test_each_rule_names_its_field(change: dict[str, Any], field: str) -> None:
    """A broken rule raises InvalidEvent naming the field."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event({**FLAT, **change}, NO_DEFAULTS)
    assert caught.value.field == field
    assert field in caught.value.message


@pytest.mark.parametrize("missing", ["subscriptionId", "resourceGroupName", "registryName", "runId", "isArchiveEnabled"])
def test_a_required_field_without_default_is_named(missing: str) -> None:
    """Without a DEFAULT_* setting each field is required."""
    event = {k: v for k, v in FLAT.items() if k != missing}
    with pytest.raises(InvalidEvent, match=missing):
        parse_event(event, NO_DEFAULTS)


@pytest.mark.parametrize(
    "resource_id",
    [
        "/subscriptions/x/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/myRegistry/runs/r",
        RESOURCE_ID + "/extra",
        RESOURCE_ID.replace("Microsoft.ContainerRegistry", "Microsoft.Storage"),
        RESOURCE_ID.replace("/runs/cab7", "/runs/.."),
        "https://management.azure.com" + RESOURCE_ID,
        42,
    ],
    ids=["bad-subscription", "extra-segment", "other-provider", "dot-dot-run", "absolute-url", "not-a-string"],
)
def test_a_malformed_resource_id_is_refused(resource_id: Any) -> None:
    """runResourceId must be exactly a run's ARM id."""
    with pytest.raises(InvalidEvent, match="runResourceId"):
        parse_event({"runResourceId": resource_id, "isArchiveEnabled": True}, NO_DEFAULTS)


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ([FLAT], "event"),
        ("text", "event"),
        ({"specversion": "1.0", "id": "e", "source": "s", "type": "t", "data": "x"}, "data"),
        ({"id": "e", "eventType": "t", "subject": "s", "dataVersion": "1", "eventTime": "now", "data": None}, "data"),
    ],
    ids=["array", "string", "cloudevent-string-data", "eventgrid-null-data"],
)
def test_an_event_that_is_not_an_object_is_refused(event: Any, field: str) -> None:
    """Only a JSON object (or an envelope around one) is an event."""
    with pytest.raises(InvalidEvent) as caught:
        parse_event(event, NO_DEFAULTS)
    assert caught.value.field == field


def test_path_segments_are_percent_encoded() -> None:
    """Even validated segments are encoded: a resource group may hold parentheses."""
    request = ArchiveRequest(SUB, "rg(prod)", "myRegistry", "run.1_a-b", False)
    assert request.path == f"/subscriptions/{SUB}/resourceGroups/rg%28prod%29/providers/Microsoft.ContainerRegistry/registries/myRegistry/runs/run.1_a-b"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"", "not valid JSON"),
        (b"NaN", "NaN"),
        (b"1e999", "too large"),
        (b"1" * 5000, "integer"),
        (b'"\\ud800"', "lone surrogate"),
        (b'{"a": 1, "a": 1}', "repeats"),
        (b"[" * 70 + b"]" * 70, "nested deeper"),
    ],
    ids=["truncated", "not-utf-8", "empty", "nan", "overflowing-float", "huge-integer", "lone-surrogate", "repeated-key", "too-deep"],
)
def test_undecodable_bodies_are_invalid_events(raw: bytes, problem: str) -> None:
    """Bytes that are not strict JSON give InvalidEvent on `body`, never another exception."""
    with pytest.raises(InvalidEvent, match=problem) as caught:
        decode_json(raw)
    assert caught.value.field == "body"


@pytest.mark.parametrize("raw", [b'\xef\xbb\xbf{"a": 1}', '\ufeff{"a": 1}'], ids=["bytes", "text"])
def test_a_leading_byte_order_mark_is_allowed(raw: bytes | str) -> None:
    """A UTF-8 BOM before the JSON is skipped, in bytes and in text alike."""
    assert decode_json(raw) == {"a": 1}


@pytest.mark.parametrize(
    ("allowed", "registry", "permitted"),
    [
        ("myRegistry", "MYREGISTRY", True),
        ("otherRegistry", "myRegistry", False),
        (f"{SUB}/MYRESOURCEGROUP/myregistry", "myRegistry", True),
        (f"{SUB}/otherGroup/myRegistry", "myRegistry", False),
    ],
    ids=["name-any-case", "other-name", "scoped-any-case", "scoped-other-group"],
)
def test_allowed_registries_is_enforced(allowed: str, registry: str, permitted: bool) -> None:
    """Registries outside ALLOWED_REGISTRIES are refused."""
    settings = Settings.from_env({"ALLOWED_REGISTRIES": allowed})
    request = ArchiveRequest(SUB, "myResourceGroup", registry, "cab7", True)
    if permitted:
        check_allowed(request, settings)
    else:
        with pytest.raises(RegistryNotAllowed, match="registryName"):
            check_allowed(request, settings)
