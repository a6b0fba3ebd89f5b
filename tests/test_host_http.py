"""The host stand-in's HTTP triggers: routes under /api, route parameters, function keys, the real app's routes.

Requests go over loopback with `requests`; inputs are built by azure-functions' own HttpRequestConverter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import requests

from emulators.host import FunctionsHost
from emulators.servicebus import ServiceBusEmulator
from shared.app import build_app
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, Emulators, run_resource_id, start_emulators

KEY = "local-test-function-key"


def echo_app() -> func.FunctionApp:
    """An app whose functions answer with what the request object held."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.function_name("echo")
    @app.route(route="things/{kind}/{thingId}", methods=["POST", "PUT"])
    def echo(req: func.HttpRequest) -> func.HttpResponse:
        seen = {"type": type(req).__module__ + "." + type(req).__name__, "method": req.method, "url": req.url,
                "params": dict(req.params), "route": dict(req.route_params), "body": req.get_body().decode(),
                "header": req.headers.get("X-Custom")}
        return func.HttpResponse(json.dumps(seen), status_code=201, mimetype="application/json", headers={"x-echo": "1"})

    @app.function_name("broken")
    @app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
    def broken(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("a bug with a secret-looking text")

    return app


@pytest.fixture
def echo_host() -> Iterator[FunctionsHost]:
    """The echo app behind the stand-in on a free port."""
    with FunctionsHost(echo_app(), {}, key=KEY, port=0) as host:
        yield host


def test_the_request_is_azure_functions_own_with_route_parameters(echo_host: FunctionsHost) -> None:
    """Method, URL, query, route parameters, headers and body reach the function in azure-functions' HttpRequest."""
    response = requests.post(f"{echo_host.url}/api/things/widgets/w%201?x=1&code={KEY}", data=b"hello",
                             headers={"X-Custom": "yes"}, timeout=10)

    assert response.status_code == 201 and response.headers["x-echo"] == "1"
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "type": "azure.functions.http.HttpRequest", "method": "POST",
        "url": f"{echo_host.url}/api/things/widgets/w%201?x=1&code={KEY}",
        "params": {"x": "1", "code": KEY}, "route": {"kind": "widgets", "thingId": "w 1"}, "body": "hello", "header": "yes",
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/things/a/b", 401),
        ("GET", "/api/things/a/b", 404),
        ("POST", "/api/things/a", 404),
        ("POST", "/things/a/b", 404),
        ("POST", "/api/things/a/b/c", 404),
        ("GET", "/api/broken", 500),
    ],
    ids=["no-key", "method-not-declared", "too-few-segments", "outside-prefix", "too-many-segments", "function-raised"],
)
def test_unmatched_unauthorised_and_failing_requests(echo_host: FunctionsHost, method: str, path: str, status: int) -> None:
    """No route, no key, or an exception: the host's status, and nothing of the exception in the answer."""
    response = requests.request(method, echo_host.url + path, timeout=10)

    assert response.status_code == status
    assert "secret" not in response.text


@pytest.fixture
def real_app_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FunctionsHost, Emulators]]:
    """The real app (build_app) behind the stand-in, against the ARM and identity emulators and a Service Bus emulator."""
    with ServiceBusEmulator() as broker, start_emulators(monkeypatch, tmp_path) as emulators:
        monkeypatch.setenv("ServiceBusConnection", broker.connection_string)
        import os

        env = dict(os.environ)
        app = build_app(env)
        try:
            with FunctionsHost(app, env, host_json=Path(__file__).resolve().parents[1] / "host.json", key=KEY, port=0) as host:
                yield host, emulators
        finally:
            app.close()


EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        ({"headers": {"x-functions-key": KEY}}, 200),
        ({"params": {"code": KEY}}, 200),
        ({}, 401),
        ({"headers": {"x-functions-key": KEY + "x"}}, 401),
        ({"params": {"code": ""}}, 401),
    ],
    ids=["header-key", "code-query", "no-key", "wrong-key", "empty-code"],
)
def test_archive_events_needs_the_function_key(real_app_host: tuple[FunctionsHost, Emulators],
                                               credentials: dict[str, Any], status: int) -> None:
    """The webhook runs with the key in x-functions-key or ?code=, and is refused with 401 before the app otherwise."""
    host, emulators = real_app_host
    response = requests.post(f"{host.url}/api/archive-events", json=EVENT, timeout=30, **credentials)

    assert response.status_code == status
    assert len(emulators.outcomes()) == (1 if status == 200 else 0)
    if status == 200:
        assert response.json()["outcome"] == "succeeded" and response.json()["source"] == "http"


def test_health_is_anonymous(real_app_host: tuple[FunctionsHost, Emulators]) -> None:
    """GET /api/health needs no key (authLevel anonymous)."""
    host, _ = real_app_host
    response = requests.get(f"{host.url}/api/health", timeout=10)

    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_the_arm_mirror_gets_its_route_parameters(real_app_host: tuple[FunctionsHost, Emulators]) -> None:
    """PATCH on the ARM-shaped route: the run named by the route's parameters is updated and returned."""
    host, emulators = real_app_host
    response = requests.patch(f"{host.url}/api{run_resource_id(SEED_RUN)}", json={"isArchiveEnabled": True},
                              headers={"x-functions-key": KEY}, timeout=30)

    assert response.status_code == 200
    assert response.json()["name"] == SEED_RUN and response.json()["properties"]["isArchiveEnabled"] is True
    assert emulators.arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)["properties"]["isArchiveEnabled"] is True


def test_one_route_serves_each_declared_method(real_app_host: tuple[FunctionsHost, Emulators]) -> None:
    """archive-events is two functions (POST, OPTIONS): OPTIONS reaches the CloudEvents handshake."""
    host, _ = real_app_host
    response = requests.options(f"{host.url}/api/archive-events", headers={"x-functions-key": KEY,
                                "WebHook-Request-Origin": "eventgrid.azure.net"}, timeout=10)

    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
