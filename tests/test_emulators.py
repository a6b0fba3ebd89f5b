"""Specification of the local emulators: ARM Runs Get/Update (api-version 2019-04-01) and managed identity."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from emulators import ArmEmulator, Fault, IdentityEmulator
from emulators.arm import SEED_RUN
from emulators.arm_client import ArmEmulatorClient
from emulators.specs import EXAMPLE_NAMES, LIST_EXAMPLE, SWAGGER_FILE, bundled_dir, schema_errors, shared_specs_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
SUB, RG, REG, RUN = SEED_RUN
AUTH = {"Authorization": "Bearer test-token"}
ARM_SCOPE = "https://management.azure.com/.default"


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def arm() -> Iterator[ArmEmulator]:
    """A started ARM emulator seeded with the official example run."""
    with ArmEmulator() as emulator:
        yield emulator


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A keep-alive session that ignores proxy settings (loopback only)."""
    with requests.Session() as http:
        http.trust_env = False
        yield http


@pytest.fixture
def identity(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEmulator]:
    """A started identity emulator, with the App Service managed identity environment pointing at it."""
    with IdentityEmulator() as emulator:
        for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**emulator.environ(), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}.items():
            monkeypatch.setenv(name, value)
        yield emulator


def run_url(base: str, run_id: str = RUN, *, sub: str = SUB, rg: str = RG, reg: str = REG,
            api_version: str | None = "2019-04-01", runs: str = "runs") -> str:
    """URL of Runs - Get / Runs - Update."""
    url = f"{base}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{reg}/{runs}/{run_id}"
    return url if api_version is None else f"{url}?api-version={api_version}"


@pytest.fixture(scope="module")
def assert_valid_run() -> Callable[[Any], None]:
    """Assert that a body validates against the swagger's `Run` definition (strictly: no unknown keys)."""

    def check(body: Any) -> None:
        errors = schema_errors("Run", body)
        assert not errors, errors

    return check


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- specification copies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*(f"examples/{name}.json" for name in (*EXAMPLE_NAMES, LIST_EXAMPLE)), SWAGGER_FILE])
def test_bundled_spec_files_are_verbatim_copies_of_shared_specs(name: str) -> None:
    """The copies in emulators/examples/ are byte-identical to ../shared/specs when it exists."""
    shared = shared_specs_dir()
    if shared is None:
        pytest.skip("../shared/specs is not beside this checkout")
    assert (bundled_dir() / Path(name).name).read_bytes() == (shared / name).read_bytes()


@pytest.mark.parametrize("example", EXAMPLE_NAMES)
def test_runs_built_from_each_example_validate_against_swagger(
    arm: ArmEmulator, session: requests.Session, assert_valid_run: Callable[[Any], None], example: str
) -> None:
    """A run added from any official example is served as a valid Run with rewritten identity."""
    arm.add_run(SUB, RG, "otherRegistry", "run-1", example=example, is_archive_enabled=True)

    response = session.get(run_url(arm.url, "run-1", reg="otherRegistry"), headers=AUTH)

    assert response.status_code == 200
    run = response.json()
    assert_valid_run(run)
    assert run["name"] == run["properties"]["runId"] == "run-1"
    assert run["id"].endswith("/registries/otherRegistry/runs/run-1")
    assert run["properties"]["isArchiveEnabled"] is True
    assert ("timerTrigger" in run["properties"]) == (example == "RunsGet_WithTimerTrigger")


def test_seeded_run_is_the_official_example_with_archiving_off(arm: ArmEmulator) -> None:
    """The emulator starts with the example's run, isArchiveEnabled false."""
    run = arm.get_run(SUB.upper(), RG.lower(), REG.upper(), RUN)

    assert run is not None
    assert run["id"] == run_url("", api_version=None)
    assert run["properties"]["isArchiveEnabled"] is False
    assert run["properties"]["provisioningState"] == "Succeeded"


# -- Runs - Update / Runs - Get ---------------------------------------------------------------------


def test_patch_sets_the_archive_flag_and_returns_the_run(
    arm: ArmEmulator, session: requests.Session, assert_valid_run: Callable[[Any], None]
) -> None:
    """PATCH 200: the Run with the new flag, a fresh lastUpdatedTime and ARM's tracing headers."""
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    headers = {**AUTH, "x-ms-client-request-id": "client-1"}

    response = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=headers)

    assert response.status_code == 200
    run = response.json()
    assert_valid_run(run)
    assert run["properties"]["isArchiveEnabled"] is True
    assert run["properties"]["provisioningState"] == "Succeeded"
    assert run["properties"]["lastUpdatedTime"].endswith("Z")
    assert _parse_time(run["properties"]["lastUpdatedTime"]) >= before
    assert uuid.UUID(response.headers["x-ms-request-id"])
    assert response.headers["x-ms-client-request-id"] == "client-1"
    assert response.headers["Content-Type"].startswith("application/json")
    assert arm.get_run(SUB, RG, REG, RUN) == run


def test_request_log_never_keeps_the_token(arm: ArmEmulator, session: requests.Session) -> None:
    """The request log records method, path, query, headers and body, with the token redacted."""
    session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers={"Authorization": "Bearer s3cret"})

    (entry,) = arm.requests_log

    assert entry["method"] == "PATCH"
    assert entry["query"] == {"api-version": "2019-04-01"}
    assert entry["headers"]["Authorization"] == "Bearer ***"
    assert entry["body"] == {"isArchiveEnabled": True}
    assert "s3cret" not in json.dumps(entry)


def test_names_are_matched_case_insensitively_but_run_ids_exactly(arm: ArmEmulator, session: requests.Session) -> None:
    """Subscription, resource group, registry and fixed segments ignore case; the run id does not."""
    url = run_url(arm.url, sub=SUB.upper(), rg=RG.upper(), reg=REG.lower()).replace("resourceGroups", "RESOURCEGROUPS")

    assert session.get(url, headers=AUTH).status_code == 200
    assert session.get(run_url(arm.url, RUN.upper()), headers=AUTH).status_code == 404


def test_unknown_run_is_404_resource_not_found(arm: ArmEmulator, session: requests.Session) -> None:
    """A run that does not exist answers ARM's ResourceNotFound."""
    response = session.patch(run_url(arm.url, "nope"), json={"isArchiveEnabled": True}, headers=AUTH)

    assert response.status_code == 404
    assert response.json() == {"error": {
        "code": "ResourceNotFound",
        "message": f"The Resource 'Microsoft.ContainerRegistry/registries/{REG}/runs/nope' "
                   f"under resource group '{RG}' was not found.",
    }}


def test_auto_create_makes_unknown_runs_on_first_request(session: requests.Session) -> None:
    """With auto_create, any valid run path exists (built from the RunsUpdate example)."""
    with ArmEmulator(auto_create=True, seed=False) as emulator:
        response = session.patch(run_url(emulator.url, "fresh"), json={"isArchiveEnabled": True}, headers=AUTH)

        assert response.status_code == 200
        assert response.json()["properties"]["isArchiveEnabled"] is True
        assert emulator.get_run(SUB, RG, REG, SEED_RUN[3]) is None


REFUSALS = [
    ("api-version-wrong", lambda u: run_url(u, api_version="2018-09-01"), "PATCH", {}, 400, "InvalidApiVersionParameter"),
    ("api-version-missing", lambda u: run_url(u, api_version=None), "PATCH", {}, 400, "InvalidApiVersionParameter"),
    ("registry-too-short", lambda u: run_url(u, reg="abcd"), "PATCH", {}, 400, "InvalidParameter"),
    ("registry-with-dash", lambda u: run_url(u, reg="my-registry"), "GET", {}, 400, "InvalidParameter"),
    ("resource-group-empty", lambda u: run_url(u, rg=""), "GET", {}, 400, "InvalidParameter"),
    ("subscription-not-guid", lambda u: run_url(u, sub="sub"), "GET", {}, 400, "InvalidSubscriptionId"),
    ("no-authorization", run_url, "PATCH", {"headers": {}}, 401, "AuthenticationFailed"),
    ("basic-authorization", run_url, "PATCH", {"headers": {"Authorization": "Basic eA=="}}, 401, "AuthenticationFailed"),
    ("body-string-true", run_url, "PATCH", {"json": {"isArchiveEnabled": "true"}}, 400, "InvalidRequestContent"),
    ("body-missing-flag", run_url, "PATCH", {"json": {}}, 400, "InvalidRequestContent"),
    ("body-array", run_url, "PATCH", {"json": [True]}, 400, "InvalidRequestContent"),
    ("body-not-json", run_url, "PATCH", {"data": b"{", "headers": {**AUTH, "Content-Type": "application/json"}},
     400, "InvalidRequestContent"),
    ("body-not-json-type", run_url, "PATCH", {"data": b'{"isArchiveEnabled":true}', "headers": {
        **AUTH, "Content-Type": "text/plain"}}, 400, "InvalidRequestContent"),
    ("delete-method", run_url, "DELETE", {}, 405, "MethodNotAllowed"),
    ("unknown-route", lambda u: run_url(u, runs="tasks"), "GET", {}, 404, "NotFound"),
]


@pytest.mark.parametrize(
    ("make_url", "method", "kwargs", "status", "code"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_invalid_requests_are_refused_like_arm(
    arm: ArmEmulator, session: requests.Session, make_url: Callable[[str], str], method: str,
    kwargs: dict[str, Any], status: int, code: str,
) -> None:
    """Parameter, authorization and body checks answer ARM's error envelope."""
    options = {"headers": AUTH, "json": {"isArchiveEnabled": True}} if method == "PATCH" else {"headers": AUTH}
    options.update(kwargs)

    response = session.request(method, make_url(arm.url), **options)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert response.headers["x-ms-request-id"]
    assert arm.get_run(SUB, RG, REG, RUN)["properties"]["isArchiveEnabled"] is False


def test_rejected_token_is_401_and_never_echoed(session: requests.Session) -> None:
    """A token the validator refuses answers InvalidAuthenticationToken without repeating the token."""
    with ArmEmulator(token_validator=lambda token: token == "good") as emulator:
        refused = session.get(run_url(emulator.url), headers={"Authorization": "Bearer bad-token-123"})
        accepted = session.get(run_url(emulator.url), headers={"Authorization": "Bearer good"})

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert "bad-token-123" not in refused.text + json.dumps(dict(refused.headers))
    assert accepted.status_code == 200


# -- faults -------------------------------------------------------------------------------------------

STATUS_FAULTS = [
    ("429-retry-after", Fault.status(429, retry_after="1"), 429, "TooManyRequests", "1"),
    ("503", Fault.status(503), 503, "ServiceUnavailable", None),
    ("500-custom-code", Fault.status(500, error_code="Boom", message="it broke"), 500, "Boom", None),
    ("409", Fault.status(409), 409, "Conflict", None),
]


@pytest.mark.parametrize(("fault", "status", "code", "retry_after"), [c[1:] for c in STATUS_FAULTS],
                         ids=[c[0] for c in STATUS_FAULTS])
def test_status_fault_answers_an_arm_error_once(
    arm: ArmEmulator, session: requests.Session, fault: Fault, status: int, code: str, retry_after: str | None
) -> None:
    """A scripted status answers one request with ARM's error envelope; the next one succeeds."""
    arm.script(RUN, fault)

    faulted = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)
    after = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)

    assert faulted.status_code == status
    assert faulted.json()["error"]["code"] == code
    assert faulted.headers.get("Retry-After") == retry_after
    assert after.status_code == 200
    assert arm.stats()["status"] == {str(status): 1, "200": 1}


def test_bare_status_fault_has_an_empty_body(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.status(code, bare=True) sends no error envelope."""
    arm.script(RUN, Fault.status(502, bare=True))

    response = session.get(run_url(arm.url), headers=AUTH)

    assert (response.status_code, response.content, response.headers["Content-Length"]) == (502, b"", "0")


def test_reset_fault_closes_the_connection_without_a_response(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.reset() surfaces as a connection error; the emulator keeps serving."""
    arm.script(RUN, Fault.reset())

    with pytest.raises(requests.ConnectionError):
        session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)
    assert session.get(run_url(arm.url), headers=AUTH).status_code == 200
    assert arm.stats()["status"] == {"reset": 1, "200": 1}


def test_reset_mid_fault_truncates_the_body(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.reset_mid() promises more body than it sends (requests raises ChunkedEncodingError)."""
    arm.script(RUN, Fault.reset_mid())

    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)
    assert arm.stats()["status"] == {"reset_mid": 1}


def test_delay_fault_answers_normally_after_sleeping(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.delay(s) holds the answer for s seconds, then answers normally."""
    arm.script(RUN, Fault.delay(0.2))
    started = time.perf_counter()

    response = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)

    assert time.perf_counter() - started >= 0.2
    assert response.status_code == 200


def test_not_json_fault_answers_html(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.not_json() answers 200 text/html."""
    arm.script(RUN, Fault.not_json())

    response = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)

    assert (response.status_code, response.text) == (200, "<html>oops</html>")
    assert response.headers["Content-Type"] == "text/html"


def test_truncated_fault_answers_a_complete_response_with_broken_json(arm: ArmEmulator, session: requests.Session) -> None:
    """Fault.truncated() answers 200 application/json, correctly framed, whose JSON ends early."""
    arm.script(RUN, Fault.truncated())

    response = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)
    assert arm.stats()["status"] == {"200": 1}


def test_faults_are_queued_per_run_id_in_order(arm: ArmEmulator, session: requests.Session) -> None:
    """Each request to a run pops that run's next fault; other runs are unaffected."""
    arm.add_run(SUB, RG, REG, "other")
    arm.script(RUN, Fault.status(429), Fault.status(503))

    other = session.get(run_url(arm.url, "other"), headers=AUTH).status_code
    statuses = [session.get(run_url(arm.url), headers=AUTH).status_code for _ in range(3)]

    assert other == 200
    assert statuses == [429, 503, 200]


@pytest.mark.parametrize("fault", [
    Fault.status(429, retry_after="2", error_code="Throttled", message="slow down"),
    Fault.status(502, bare=True), Fault.reset(), Fault.reset_mid(), Fault.delay(0.5), Fault.not_json(),
    Fault.truncated(),
], ids=lambda fault: fault.kind)
def test_faults_round_trip_through_dicts(fault: Fault) -> None:
    """The control-API dict form of a fault parses back to the same fault."""
    assert Fault.from_dict(json.loads(json.dumps(fault.to_dict()))) == fault


def test_status_fault_dict_uses_camel_case() -> None:
    """Fault dicts use the control API's camelCase keys."""
    assert Fault.status(429, retry_after=1).to_dict() == {"kind": "status", "code": 429, "retryAfter": "1"}


# -- long-running updates ---------------------------------------------------------------------------


def _accept(arm: ArmEmulator, session: requests.Session, **lro: Any) -> requests.Response:
    """PATCH the seed run to true after scripting an LRO; asserts the 201."""
    arm.set_lro(RUN, **lro)
    response = session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH)
    assert response.status_code == 201
    return response


def test_async_operation_lro_ends_succeeded(
    arm: ArmEmulator, session: requests.Session, assert_valid_run: Callable[[Any], None]
) -> None:
    """201 + Azure-AsyncOperation: InProgress for `polls` polls, then Succeeded; the run follows."""
    accepted = _accept(arm, session, polls=2, via="async")
    assert_valid_run(accepted.json())
    assert accepted.json()["properties"]["provisioningState"] == "Updating"
    assert accepted.json()["properties"]["isArchiveEnabled"] is True
    poll_url = accepted.headers["Azure-AsyncOperation"]
    assert poll_url.startswith(arm.url + f"/subscriptions/{SUB}/providers/Microsoft.ContainerRegistry/")
    assert "Location" not in accepted.headers

    statuses = [session.get(poll_url, headers=AUTH).json() for _ in range(3)]
    run = session.get(run_url(arm.url), headers=AUTH).json()

    assert [status["status"] for status in statuses] == ["InProgress", "InProgress", "Succeeded"]
    assert "endTime" in statuses[2] and "error" not in statuses[2]
    assert_valid_run(run)
    assert run["properties"]["provisioningState"] == "Succeeded"
    assert run["properties"]["isArchiveEnabled"] is True
    assert arm.stats()["polls"] == 3


def test_location_lro_answers_202_then_the_run(
    arm: ArmEmulator, session: requests.Session, assert_valid_run: Callable[[Any], None]
) -> None:
    """201 + Location: 202 with Retry-After while in progress, then 200 with the Run."""
    accepted = _accept(arm, session, polls=1, via="location", retry_after=0)
    assert accepted.headers["Retry-After"] == "0"
    location = accepted.headers["Location"]

    first, second = (session.get(location, headers=AUTH) for _ in range(2))

    assert (first.status_code, first.headers["Retry-After"]) == (202, "0")
    assert second.status_code == 200
    assert_valid_run(second.json())
    assert second.json()["properties"]["provisioningState"] == "Succeeded"


def test_run_polled_lro_ends_failed_and_keeps_the_old_flag(
    arm: ArmEmulator, session: requests.Session, assert_valid_run: Callable[[Any], None]
) -> None:
    """via="run": no polling header; GETs of the run see Updating, then Failed with the flag unchanged."""
    accepted = _accept(arm, session, polls=2, final="Failed", via="run")
    assert "Azure-AsyncOperation" not in accepted.headers and "Location" not in accepted.headers

    runs = [session.get(run_url(arm.url), headers=AUTH).json() for _ in range(3)]

    assert [run["properties"]["provisioningState"] for run in runs] == ["Updating", "Updating", "Failed"]
    assert runs[2]["properties"]["isArchiveEnabled"] is False
    assert_valid_run(runs[2])


@pytest.mark.parametrize("final", ["Failed", "Canceled"])
def test_async_operation_reports_unsuccessful_end(arm: ArmEmulator, session: requests.Session, final: str) -> None:
    """A Failed operation status carries error RunUpdateFailed; the run's provisioningState matches."""
    accepted = _accept(arm, session, polls=0, final=final)

    status = session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH).json()

    assert status["status"] == final
    assert ("error" in status) == (final == "Failed")
    if final == "Failed":
        assert status["error"]["code"] == "RunUpdateFailed"
    assert arm.get_run(SUB, RG, REG, RUN)["properties"]["provisioningState"] == final


def test_run_gets_and_operation_polls_share_the_poll_budget(arm: ArmEmulator, session: requests.Session) -> None:
    """Both a GET of the run and an operation poll count as polls."""
    accepted = _accept(arm, session, polls=1)

    session.get(run_url(arm.url), headers=AUTH)
    status = session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH).json()

    assert status["status"] == "Succeeded"


def test_lro_with_minus_one_polls_never_finishes(arm: ArmEmulator, session: requests.Session) -> None:
    """polls=-1 keeps the operation InProgress forever."""
    accepted = _accept(arm, session, polls=-1)

    statuses = {session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH).json()["status"] for _ in range(5)}

    assert statuses == {"InProgress"}
    assert arm.get_run(SUB, RG, REG, RUN)["properties"]["provisioningState"] == "Updating"


@pytest.mark.parametrize(("via", "header"), [("async", "Azure-AsyncOperation"), ("location", "Location")])
def test_poll_host_puts_the_poll_url_on_another_host(
    arm: ArmEmulator, session: requests.Session, via: str, header: str
) -> None:
    """poll_host builds the polling URL on a foreign host; nothing reaches the operation URLs here."""
    accepted = _accept(arm, session, via=via, poll_host="https://evil.example.com")

    assert accepted.headers[header].startswith("https://evil.example.com/subscriptions/")
    assert arm.stats()["polls"] == 0


def test_faults_also_hit_operation_polls(arm: ArmEmulator, session: requests.Session) -> None:
    """A run's fault queue applies to polls of its operation URLs too."""
    accepted = _accept(arm, session, polls=0)
    arm.script(RUN, Fault.status(503, retry_after="0"))

    faulted = session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH)
    status = session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH)

    assert faulted.status_code == 503
    assert status.json()["status"] == "Succeeded"


def test_a_new_patch_supersedes_an_operation_in_progress(arm: ArmEmulator, session: requests.Session) -> None:
    """A later PATCH answers 200 and the earlier, unfinished operation ends Canceled."""
    accepted = _accept(arm, session, polls=-1)

    again = session.patch(run_url(arm.url), json={"isArchiveEnabled": False}, headers=AUTH)
    status = session.get(accepted.headers["Azure-AsyncOperation"], headers=AUTH).json()

    assert again.status_code == 200
    assert again.json()["properties"]["provisioningState"] == "Succeeded"
    assert status["status"] == "Canceled"


# -- the loopback server ----------------------------------------------------------------------------


def test_every_response_is_one_socket_write(arm: ArmEmulator, session: requests.Session, socket_writes: list[bytes]) -> None:
    """Status line, headers and body leave in a single write (Nagle would add ~40 ms otherwise)."""
    writes = socket_writes
    arm.script(RUN, Fault.status(429, retry_after="1"))
    arm.set_lro(RUN, polls=0)

    responses = [
        session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH),  # 429 fault
        session.patch(run_url(arm.url), json={"isArchiveEnabled": True}, headers=AUTH),  # 201
        session.get(run_url(arm.url), headers=AUTH),  # 200
        session.get(run_url(arm.url, "missing"), headers=AUTH),  # 404
    ]

    assert [response.status_code for response in responses] == [429, 201, 200, 404]
    assert len(writes) == len(responses)
    for data, response in zip(writes, responses):
        assert data.startswith(f"HTTP/1.1 {response.status_code} ".encode())
        assert data.endswith(response.content)


def test_keep_alive_serves_many_requests_on_one_connection(arm: ArmEmulator, session: requests.Session) -> None:
    """50 requests over one session use one TCP connection (each answer is one write: see the test above)."""
    statuses = {session.patch(run_url(arm.url), json={"isArchiveEnabled": i % 2 == 0}, headers=AUTH).status_code
                for i in range(50)}

    assert statuses == {200}
    assert arm.stats()["connections"] == 1


def test_a_wake_up_without_a_pending_connection_never_blocks_the_server_or_its_stop() -> None:
    """The serving loop asked to accept when no connection is queued (a spurious "readable") returns at once.

    Found as a hung test session: the identity emulator's stop() waited for a serving thread blocked in
    accept() with nothing to accept. With a non-blocking listening socket that accept raises, and
    socketserver drops the wake-up; the server still serves the next request and stops.
    """
    emulator = IdentityEmulator().start()
    httpd = emulator._httpd
    handled = threading.Thread(target=httpd._handle_request_noblock, daemon=True)
    handled.start()
    handled.join(5)
    blocked = handled.is_alive()
    if blocked:  # unblock the stuck accept so the test ends: one connection for it to take
        socket.create_connection(httpd.server_address[:2], timeout=5).close()
        handled.join(5)
    answered = requests.get(emulator.endpoint, timeout=5).status_code
    emulator.stop()
    assert not blocked, "accept() blocked with no connection pending"
    assert answered == 401  # served afterwards (without the identity header, refused as the real endpoint refuses)


def test_stop_closes_idle_keep_alive_connections_and_the_port(session: requests.Session) -> None:
    """After stop(), the URL refuses connections."""
    emulator = ArmEmulator().start()
    session.get(run_url(emulator.url), headers=AUTH)

    emulator.stop()

    with pytest.raises(requests.ConnectionError):
        session.get(run_url(emulator.url), headers=AUTH, timeout=2)


def test_latency_delays_arm_answers_but_not_the_control_api(arm: ArmEmulator, session: requests.Session) -> None:
    """The global latency is waited before every ARM answer, and never before a control answer."""
    waits: list[float] = []
    arm.sleep = waits.append
    arm.set_latency(0.15)
    session.get(f"{arm.url}/_emulator/stats")
    assert waits == []

    session.get(run_url(arm.url), headers=AUTH)

    assert waits == [0.15]


# -- managed identity ---------------------------------------------------------------------------------


def test_managed_identity_credential_gets_a_token_from_the_emulator(identity: IdentityEmulator) -> None:
    """azure-identity's ManagedIdentityCredential (App Service flavour) gets a valid token; MSAL caches it."""
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential()
    token = credential.get_token(ARM_SCOPE)
    again = credential.get_token(ARM_SCOPE)

    assert identity.is_valid(token.token)
    assert token.token in identity.issued
    assert abs(token.expires_on - (time.time() + identity.lifetime)) < 60
    assert again.token == token.token
    assert identity.calls == 1
    assert identity.calls_by_client_id == {None: 1}


def test_user_assigned_client_id_is_passed_through(identity: IdentityEmulator) -> None:
    """ManagedIdentityCredential(client_id=...) sends it as the client_id query parameter."""
    from azure.identity import ManagedIdentityCredential

    client_id = "11111111-2222-3333-4444-555555555555"
    ManagedIdentityCredential(client_id=client_id).get_token(ARM_SCOPE)

    assert identity.calls_by_client_id == {client_id: 1}


def test_identity_tokens_authorize_arm_until_revoked(identity: IdentityEmulator, session: requests.Session) -> None:
    """ArmEmulator(token_validator=identity.is_valid) accepts issued tokens and refuses revoked ones."""
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token(ARM_SCOPE).token
    headers = {"Authorization": f"Bearer {token}"}
    with ArmEmulator(token_validator=identity.is_valid) as emulator:
        before = session.get(run_url(emulator.url), headers=headers)
        identity.revoke_all()
        after = session.get(run_url(emulator.url), headers=headers)

    assert before.status_code == 200
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert token not in after.text


def test_identity_endpoint_speaks_the_app_service_protocol(identity: IdentityEmulator, session: requests.Session) -> None:
    """Wrong secret 401, missing resource 400, injected failures, then a token with expires_on as a string."""
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    secret = {"X-IDENTITY-HEADER": identity.header_secret}
    identity.fail_next(1, 503)

    wrong_secret = session.get(identity.endpoint, params=params, headers={"X-IDENTITY-HEADER": "nope"})
    failed = session.get(identity.endpoint, params=params, headers=secret)
    no_resource = session.get(identity.endpoint, params={"api-version": "2019-08-01"}, headers=secret)
    issued = session.get(identity.endpoint, params=params, headers=secret)

    assert [r.status_code for r in (wrong_secret, failed, no_resource, issued)] == [401, 503, 400, 200]
    body = issued.json()
    assert set(body) == {"access_token", "expires_on", "resource", "token_type", "client_id"}
    assert body["expires_on"].isdigit() and body["token_type"] == "Bearer"
    assert body["resource"] == "https://management.azure.com"
    assert identity.calls == 4


def test_credential_reports_a_refused_identity_header_as_unavailable(
    identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MSAL turns the endpoint's 401 into CredentialUnavailableError (a ClientAuthenticationError)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

    monkeypatch.setenv("IDENTITY_HEADER", "wrong")

    with pytest.raises(CredentialUnavailableError) as raised:
        ManagedIdentityCredential().get_token(ARM_SCOPE)
    assert isinstance(raised.value, ClientAuthenticationError)
    assert identity.calls == 1


# -- control API and standalone processes -------------------------------------------------------------


def test_control_api_round_trip(arm: ArmEmulator, session: requests.Session) -> None:
    """ArmEmulatorClient drives an emulator over HTTP exactly like the in-process methods."""
    client = ArmEmulatorClient(arm.url)

    created = client.add_run(SUB, RG, REG, "ctl/run 1", example="RunsGet", is_archive_enabled=True)
    client.script("ctl/run 1", Fault.status(429, retry_after=1))
    client.set_lro("ctl/run 1", polls=0, via="location")
    client.set_latency(0)
    url = run_url(arm.url, "ctl%2Frun%201")
    throttled = session.patch(url, json={"isArchiveEnabled": False}, headers=AUTH)
    accepted = session.patch(url, json={"isArchiveEnabled": False}, headers=AUTH)

    assert created["properties"]["runId"] == "ctl/run 1"
    assert client.get_run(SUB, RG, REG, "ctl/run 1") == arm.get_run(SUB, RG, REG, "ctl/run 1")
    assert (throttled.status_code, throttled.headers["Retry-After"], accepted.status_code) == (429, "1", 201)
    assert client.stats() == arm.stats()
    assert client.stats()["patches"] == 2
    assert [entry["method"] for entry in client.requests_log] == ["PATCH", "PATCH"]
    client.reset()
    assert client.get_run(SUB, RG, REG, "ctl/run 1") is None
    assert client.get_run(*SEED_RUN) is not None
    assert client.stats()["requests"] == 0


def test_control_api_refuses_malformed_requests(arm: ArmEmulator, session: requests.Session) -> None:
    """Bad control requests answer 400 InvalidControlRequest."""
    bad_fault = session.post(f"{arm.url}/_emulator/script", json={"runId": RUN, "faults": [{"kind": "explode"}]})
    bad_lro = session.post(f"{arm.url}/_emulator/lro", json={"runId": RUN, "via": "carrier-pigeon"})

    assert bad_fault.status_code == bad_lro.status_code == 400
    assert bad_fault.json()["error"]["code"] == "InvalidControlRequest"


def _spawn(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m module` in the repo root; returns the process and its first stdout line."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", module, "--port", "0", *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        process.kill()
        pytest.fail(f"{module} did not start: {process.communicate(timeout=5)[1]}")
    return process, line.strip()


def _terminate(process: subprocess.Popen[str]) -> str:
    """SIGTERM the process; asserts a clean exit and returns its stderr."""
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    return stderr


def test_arm_module_serves_from_another_process(session: requests.Session) -> None:
    """`python -m emulators.arm` prints its URL, serves ARM and the control API, and stops on SIGTERM."""
    process, url = _spawn("emulators.arm", "--auto-create", "--latency", "0")
    try:
        client = ArmEmulatorClient(url)
        client.script("proc-run", Fault.status(503))
        statuses = [session.patch(run_url(url, "proc-run"), json={"isArchiveEnabled": True}, headers=AUTH).status_code
                    for _ in range(2)]
        stats = client.stats()
    finally:
        stderr = _terminate(process)

    assert url.startswith("http://127.0.0.1:")
    assert statuses == [503, 200]
    assert stats["patches"] == 2 and stats["connections"] == 1
    assert "Warning" not in stderr


def test_identity_module_serves_from_another_process(session: requests.Session) -> None:
    """`python -m emulators.identity` prints its settings as one JSON line and issues tokens."""
    process, line = _spawn("emulators.identity")
    try:
        settings = json.loads(line)
        response = session.get(settings["IDENTITY_ENDPOINT"],
                               params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
                               headers={"X-IDENTITY-HEADER": settings["IDENTITY_HEADER"]})
    finally:
        _terminate(process)

    assert response.status_code == 200
    assert response.json()["access_token"].startswith("eyJ")


def test_servers_run_on_daemon_threads(arm: ArmEmulator) -> None:
    """The serving thread never keeps the interpreter alive."""
    assert all(thread.daemon for thread in threading.enumerate() if thread.name.startswith("ArmEmulator-"))
