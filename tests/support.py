"""Helpers for driving the real functions: emulators on loopback, an isolated environment, real HTTP requests.

Test modules import these; nothing here is a pytest fixture, so a conftest.py may wrap them freely.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.functions as func
import jsonschema
import pytest

from emulators import ArmEmulator, IdentityEmulator
from emulators.specs import swagger
from shared.app import ArchiverApp, build_app
from shared.runtime import IDENTITY_ENVIRONMENT
from shared.settings import SETTING_NAMES
from tests.leaks import SECRETS

__all__ = [
    "BASE_SETTINGS",
    "BUILT_APPS",
    "Emulators",
    "LazyFunctions",
    "FakeTime",
    "GROUP",
    "REGISTRY",
    "SEED_RUN",
    "SUB",
    "assert_valid_run",
    "closed_port_url",
    "functions",
    "http_request",
    "isolate_environment",
    "read_outcomes",
    "response_json",
    "run_resource_id",
    "run_route_params",
    "sign",
    "start_emulators",
]

SUB = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "myRegistry"
SEED_RUN = "0accec26-d6de-4757-8e74-d080f38eaaab"

BASE_SETTINGS: dict[str, str] = {
    "ARCHIVE_QUEUE_NAME": "acr-archive-events",
    # Small budgets keep retries fast; faults answer Retry-After: 0 where a wait would otherwise happen.
    "ARM_MAX_ATTEMPTS": "2",
    "ARM_RETRY_MAX_SECONDS": "5",
}
"""Settings every HTTP test starts from, besides the emulator endpoints and OUTCOME_FILE."""
BUILT_APPS: list[ArchiverApp] = []
"""Apps built by `functions()` during the current test; conftest closes them when it ends."""


class FakeTime:
    """A clock and a sleep that only move when slept on, recording every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


@dataclass
class Emulators:
    """The loopback ARM and identity endpoints a test runs against, and where outcomes land."""

    identity: IdentityEmulator
    arm: ArmEmulator
    outcome_file: Path

    def outcomes(self) -> list[dict[str, Any]]:
        """The OUTCOME_FILE lines written so far."""
        return read_outcomes(self.outcome_file)


def isolate_environment(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    """Clear every contract setting and identity variable, then set `settings`."""
    for name in (*SETTING_NAMES, *IDENTITY_ENVIRONMENT):
        monkeypatch.delenv(name, raising=False)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


@contextmanager
def start_emulators(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **settings: str) -> Iterator[Emulators]:
    """Start IdentityEmulator + ArmEmulator and point an otherwise empty environment at them."""
    with IdentityEmulator() as identity, ArmEmulator(token_validator=identity.is_valid) as arm:
        SECRETS.add(identity.header_secret)
        SECRETS.watch(lambda: identity.issued)
        outcome_file = tmp_path / "outcomes.jsonl"
        env = {
            **identity.environ(),
            "ARM_ENDPOINT": arm.url,
            "OUTCOME_FILE": str(outcome_file),
            **BASE_SETTINGS,
            **settings,
        }
        isolate_environment(monkeypatch, env)
        yield Emulators(identity, arm, outcome_file)


def functions(env: Mapping[str, str] | None = None, **factories: Any) -> dict[str, Callable[..., Any]]:
    """The functions of an app built for `env` (the current environment by default), by name, as the host indexes them.

    Every HTTP response they give is checked against openapi.yaml (status, headers, body) for the
    function's own route and method, so each body an HTTP test observes is validated against the
    published API description. The app is closed when the test ends (`close_apps`).
    """
    app = build_app(dict(os.environ) if env is None else env, **factories)
    BUILT_APPS.append(app)
    found = {}
    for function in app.get_functions():
        user_function = function.get_user_function()
        bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
        trigger = next((b for b in bindings if b["type"] == "httpTrigger"), None)
        if trigger is not None:
            user_function = _checked_against_openapi(user_function, trigger["route"], trigger["methods"][0])
        found[function.get_function_name()] = user_function
    return found


class LazyFunctions(Mapping[str, Callable[..., Any]]):
    """`functions()` of the environment as it is at the first lookup, built once."""

    def __init__(self, **factories: Any) -> None:
        self._factories = factories
        self._functions: dict[str, Callable[..., Any]] | None = None

    def _built(self) -> dict[str, Callable[..., Any]]:
        if self._functions is None:
            self._functions = functions(**self._factories)
        return self._functions

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return self._built()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _checked_against_openapi(function: Callable[[func.HttpRequest], func.HttpResponse], route: str, method: str) -> Callable[[func.HttpRequest], func.HttpResponse]:
    from tests.openapi_check import assert_response_matches_openapi

    def checked(request: func.HttpRequest) -> func.HttpResponse:
        response = function(request)
        assert_response_matches_openapi(route, method, response)
        return response

    return checked


def http_request(
    method: str,
    route: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    route_params: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A real azure.functions.HttpRequest; `json_body` is encoded and sent as application/json."""
    all_headers = dict(headers or {})
    if json_body is not None:
        body = json.dumps(json_body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    return func.HttpRequest(
        method,
        f"http://localhost:7071/api/{route}",
        headers=all_headers,
        params=params or {},
        route_params=route_params or {},
        body=body or b"",
    )


def sign(body: bytes, secret: str) -> str:
    """The X-Signature-256 value of `body`: sha256=<hex HMAC-SHA256>; both are secrets no log may hold."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    SECRETS.add(secret, digest)
    return "sha256=" + digest


def read_outcomes(path: Path) -> list[dict[str, Any]]:
    """OUTCOME_FILE lines, decoded; empty when nothing was published.

    JSON Lines end in "\n" only: str.splitlines() would also split at U+2028, U+0085 or U+001C…,
    which JSON leaves unescaped inside strings.
    """
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def response_json(response: func.HttpResponse) -> Any:
    """The decoded JSON body of a function's response."""
    return json.loads(response.get_body())


def run_resource_id(run_id: str, *, sub: str = SUB, group: str = GROUP, registry: str = REGISTRY) -> str:
    """The ARM id of a run."""
    return (
        f"/subscriptions/{sub}/resourceGroups/{group}"
        f"/providers/Microsoft.ContainerRegistry/registries/{registry}/runs/{run_id}"
    )


def run_route_params(run_id: str, *, sub: str = SUB, group: str = GROUP, registry: str = REGISTRY) -> dict[str, str]:
    """The route parameters the host extracts for the PATCH mirror."""
    return {"subscriptionId": sub, "resourceGroupName": group, "registryName": registry, "runId": run_id}


def closed_port_url() -> str:
    """A loopback URL on which nothing listens (connection refused), for as long as the test process lives.

    The port belongs to a socket that stays bound and never listens, so no other program or test can
    take the number between here and the connection attempt (freeing a port and reusing its number could).
    """
    return f"http://127.0.0.1:{_refusing_socket().getsockname()[1]}"


@lru_cache(maxsize=1)
def _refusing_socket() -> socket.socket:
    """A TCP socket bound to a loopback port and never listening: connecting to it is refused."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    return holder


@lru_cache(maxsize=1)
def _run_validator() -> jsonschema.Draft4Validator:
    definitions = swagger()["definitions"]
    return jsonschema.Draft4Validator({"$ref": "#/definitions/Run", "definitions": definitions})


def assert_valid_run(run: Any) -> None:
    """Fail unless `run` validates against the specification's `Run` definition."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _run_validator().iter_errors(run)]
    assert not errors, errors
