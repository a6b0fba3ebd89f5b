"""openapi.yaml: a valid OpenAPI 3.1 document that describes every HTTP function, and every response they give."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema
import pytest
from openapi_spec_validator import validate

from emulators import Fault
from shared.events import is_validation_event, parse_event
from shared.settings import Settings
from tests.openapi_check import assert_matches_openapi, assert_response_matches_openapi, operation, spec
from tests.support import (
    GROUP,
    REGISTRY,
    SEED_RUN,
    SUB,
    Emulators,
    closed_port_url,
    functions,
    http_request,
    run_resource_id,
    run_route_params,
    sign,
    start_emulators,
)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}
EVENTS_ROUTE = "archive-events"
RUN_ROUTE = run_resource_id(SEED_RUN).lstrip("/")
SECRET = "openapi-test-secret"

Call = Callable[[Emulators, pytest.MonkeyPatch, Path], tuple[str, str, func.HttpResponse]]


def test_openapi_yaml_is_a_valid_openapi_3_1_document() -> None:
    """openapi-spec-validator accepts it, as OpenAPI 3.1."""
    document = spec()
    assert document["openapi"].startswith("3.1.")
    validate(document)


def _http_functions() -> dict[tuple[str, str], str]:
    """(path, METHOD) → auth level of every HTTP trigger, as the Functions host indexes them."""
    from shared.app import build_app

    found = {}
    for function in build_app({}).get_functions():
        for binding in function.get_bindings_dict()["bindings"]:
            if binding["type"] == "httpTrigger":
                for method in binding["methods"]:
                    found[("/" + binding["route"], str(method.value))] = str(binding["authLevel"].value)
    return found


def test_every_http_function_is_documented_and_nothing_else() -> None:
    """The documented (path, method) pairs are exactly the HTTP triggers of app.get_functions()."""
    documented = {(path, method.upper()) for path, item in spec()["paths"].items() for method in item if method in HTTP_METHODS}
    assert documented == set(_http_functions())


def test_security_matches_each_functions_auth_level() -> None:
    """Anonymous functions declare `security: []`; function-key functions use the document's key schemes."""
    schemes = spec()["components"]["securitySchemes"]
    assert {s["name"] for s in schemes.values()} == {"x-functions-key", "code"}
    for (path, method), auth_level in _http_functions().items():
        _, op = operation(path, method)
        if auth_level == "anonymous":
            assert op.get("security") == [], (path, method)
        else:
            assert "security" not in op and spec()["security"], (path, method)


def test_request_examples_are_events_the_app_accepts() -> None:
    """Every documented request example validates against its schema and parses with parse_event."""
    _, op = operation(EVENTS_ROUTE, "POST")
    content = op["requestBody"]["content"]["application/json"]
    schema = {"$ref": "urn:example#/request"}
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:example", Resource.from_contents({**spec(), "request": content["schema"]}, default_specification=DRAFT202012))
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    for name, example in content["examples"].items():
        validator.validate(example["value"])
        if not is_validation_event(example["value"]):
            request = parse_event(example["value"], Settings())
            assert request.registry_name == REGISTRY, name


def test_the_checker_refuses_what_is_not_documented() -> None:
    """A missing outcome key, an undocumented status and a missing required header all fail the check."""
    outcome = {"outcome": "succeeded", "source": "http"}
    with pytest.raises(AssertionError, match="required property"):
        assert_matches_openapi(EVENTS_ROUTE, "POST", 200, outcome)
    with pytest.raises(AssertionError, match="does not document status 302"):
        assert_matches_openapi(EVENTS_ROUTE, "POST", 302, None)
    with pytest.raises(AssertionError, match="required header x-correlation-id"):
        assert_matches_openapi(EVENTS_ROUTE, "POST", 413, {"error": {"code": "PayloadTooLarge", "message": "x"}}, headers={})
    with pytest.raises(AssertionError, match="documents no path"):
        assert_matches_openapi("/api/nowhere", "GET", 200, None)


# -- every route and status class, through the real functions ---------------------------------------


def _post(body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None) -> func.HttpRequest:
    return http_request("POST", EVENTS_ROUTE, json_body=body, body=raw, headers=headers)


def _patch(run_id: str = SEED_RUN, body: Any = None, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> func.HttpRequest:
    return http_request(
        "PATCH", run_resource_id(run_id).lstrip("/"), json_body={"isArchiveEnabled": True} if body is None else body,
        params=params, headers=headers, route_params=run_route_params(run_id),
    )


def _call(name: str, request: func.HttpRequest) -> func.HttpResponse:
    return functions()[name](request)


def health_ok(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
    return "health", "GET", _call("health", http_request("GET", "health"))


def health_missing_settings(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
    mp.delenv("ARCHIVE_QUEUE_NAME")
    return "health", "GET", _call("health", http_request("GET", "health"))


def health_invalid_setting(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
    mp.setenv("ARM_MAX_ATTEMPTS", "many")
    return "health", "GET", _call("health", http_request("GET", "health"))


def options_ok(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
    request = http_request("OPTIONS", EVENTS_ROUTE, headers={"WebHook-Request-Origin": "eventemitter.example.com"})
    return EVENTS_ROUTE, "OPTIONS", _call("archive_events_options", request)


def options_without_origin(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
    return EVENTS_ROUTE, "OPTIONS", _call("archive_events_options", http_request("OPTIONS", EVENTS_ROUTE))


def post(body: Any = None, **kwargs: Any) -> Call:
    def call(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
        return EVENTS_ROUTE, "POST", _call("archive_events", _post(body, **kwargs))

    return call


def patch(run_id: str = SEED_RUN, **kwargs: Any) -> Call:
    def call(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
        return RUN_ROUTE, "PATCH", _call("arm_patch_run", _patch(run_id, **kwargs))

    return call


def with_setup(setup: Callable[[Emulators, pytest.MonkeyPatch, Path], None], call: Call) -> Call:
    def wrapped(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> tuple[str, str, func.HttpResponse]:
        setup(emu, mp, tmp)
        return call(emu, mp, tmp)

    return wrapped


def _secret(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("WEBHOOK_SECRET", SECRET)


def _allow_other(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("ALLOWED_REGISTRIES", "otherRegistry")


def _no_outcome_destination(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.delenv("OUTCOME_FILE")


def _unwritable_outcomes(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("OUTCOME_FILE", str(tmp / "missing-dir" / "outcomes.jsonl"))


def _arm_unreachable(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
    mp.setenv("ARM_ENDPOINT", closed_port_url())
    mp.setenv("ARM_MAX_ATTEMPTS", "1")


def _fault(*faults: Fault) -> Callable[[Emulators, pytest.MonkeyPatch, Path], None]:
    def setup(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
        emu.arm.script(SEED_RUN, *faults)

    return setup


def _lro(timeout: str = "10", **plan: Any) -> Callable[[Emulators, pytest.MonkeyPatch, Path], None]:
    def setup(emu: Emulators, mp: pytest.MonkeyPatch, tmp: Path) -> None:
        emu.arm.set_lro(SEED_RUN, **plan)
        mp.setenv("LRO_TIMEOUT_SECONDS", timeout)

    return setup


_SIGNED_BODY = json.dumps(EVENT).encode()
_THROTTLED = Fault.status(429, retry_after=30, error_code="TooManyRequests")
_ARM_500 = Fault.status(500, retry_after=0)
_CONFLICT = Fault.status(409, error_code="Conflict", message="Another update of this run is in progress.")

SCENARIOS: list[tuple[str, Call, int]] = [
    ("health-ok", health_ok, 200),
    ("health-missing", health_missing_settings, 503),
    ("health-invalid", health_invalid_setting, 503),
    ("options-ok", options_ok, 200),
    ("options-no-origin", options_without_origin, 400),
    ("post-succeeded", post(EVENT), 200),
    ("post-batch", post([EVENT, {"runId": "..", "isArchiveEnabled": True}]), 200),
    ("post-validation", post([{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "subject": "",
                               "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}, "dataVersion": "1", "eventTime": "2026-11-27T16:30:00Z"}]), 200),
    ("post-cloudevent", post({"specversion": "1.0", "id": "ce-1", "source": "/ci", "type": "Acr.Run.ArchiveRequested", "data": EVENT}), 200),
    ("post-invalid", post({**EVENT, "isArchiveEnabled": "true"}), 400),
    ("post-not-json", post(raw=b"{not json", headers={"Content-Type": "application/json"}), 400),
    ("post-batch-too-large", post([EVENT] * 101), 400),
    ("post-bad-signature", with_setup(_secret, post(raw=_SIGNED_BODY, headers={"X-Signature-256": "sha256=" + "0" * 64})), 401),
    ("post-signed", with_setup(_secret, post(raw=_SIGNED_BODY, headers={"X-Signature-256": sign(_SIGNED_BODY, SECRET), "Content-Type": "application/json"})), 200),
    ("post-not-allowed", with_setup(_allow_other, post(EVENT)), 403),
    ("post-not-found", post({**EVENT, "runId": "doesnotexist1"}), 404),
    ("post-conflict", with_setup(_fault(_CONFLICT), post(EVENT)), 409),
    ("post-too-large", post(raw=b" " * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}), 413),
    ("post-not-json-type", post(raw=_SIGNED_BODY, headers={"Content-Type": "text/plain"}), 415),
    ("post-throttled", with_setup(_fault(_THROTTLED), post(EVENT)), 429),
    ("post-no-destination", with_setup(_no_outcome_destination, post(EVENT)), 500),
    ("post-arm-500", with_setup(_fault(_ARM_500, _ARM_500), post(EVENT)), 500),
    ("post-arm-unreachable", with_setup(_arm_unreachable, post(EVENT)), 502),
    ("post-lro-failed", with_setup(_lro(polls=1, final="Failed"), post(EVENT)), 502),
    ("post-publish-failed", with_setup(_unwritable_outcomes, post(EVENT)), 503),
    ("post-lro-timeout", with_setup(_lro("0.4", polls=-1), post(EVENT)), 504),
    ("patch-succeeded", patch(), 200),
    ("patch-lro", with_setup(_lro(polls=2), patch()), 200),
    ("patch-api-version", patch(params={"api-version": "2017-10-01"}), 400),
    ("patch-invalid-body", patch(body={"isArchiveEnabled": "yes"}), 400),
    ("patch-bad-signature", with_setup(_secret, patch(headers={"X-Signature-256": "sha256=" + "0" * 64})), 401),
    ("patch-not-allowed", with_setup(_allow_other, patch()), 403),
    ("patch-not-found", patch("doesnotexist1"), 404),
    ("patch-conflict", with_setup(_fault(_CONFLICT), patch()), 409),
    ("patch-not-json-type", patch(headers={"Content-Type": "text/plain"}), 415),
    ("patch-throttled", with_setup(_fault(_THROTTLED), patch()), 429),
    ("patch-no-destination", with_setup(_no_outcome_destination, patch()), 500),
    ("patch-arm-unreachable", with_setup(_arm_unreachable, patch()), 502),
    ("patch-publish-failed", with_setup(_unwritable_outcomes, patch()), 503),
    ("patch-lro-timeout", with_setup(_lro("0.4", polls=-1), patch()), 504),
]


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """The ARM and identity emulators, the app pointed at them, outcomes to a file."""
    with start_emulators(monkeypatch, tmp_path) as running:
        yield running


@pytest.mark.parametrize(("call", "status"), [(call, status) for _, call, status in SCENARIOS], ids=[name for name, _, _ in SCENARIOS])
def test_every_response_matches_openapi(emulators: Emulators, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, call: Call, status: int) -> None:
    """Each route and status class, driven through the real function: status, body and headers as documented."""
    route, method, response = call(emulators, monkeypatch, tmp_path)
    assert response.status_code == status, response.get_body()[:500]
    assert_response_matches_openapi(route, method, response)


def test_every_documented_status_class_is_exercised() -> None:
    """The scenarios reach every operation, and the 2xx, 4xx and 5xx classes each operation documents."""
    reached: dict[tuple[str, str], set[str]] = {}
    for name, _, status in SCENARIOS:
        method = {"health": "GET", "options": "OPTIONS", "post": "POST", "patch": "PATCH"}[name.split("-")[0]]
        reached.setdefault((method,), set()).add(f"{status // 100}XX")
    for path, item in spec()["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            classes = {f"{key[0]}XX" for key in op["responses"] if key[0].isdigit()}
            assert classes <= reached[(method.upper(),)], (path, method, classes - reached[(method.upper(),)])
