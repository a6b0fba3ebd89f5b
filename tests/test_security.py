"""Security checks (contract §7): what must never leak, never be trusted and never be called.

Where each check lives:

| check | tests |
|---|---|
| no token, secret, key or signature in any log record (every logger, DEBUG up) or outcome, in every test | `tests/conftest.py::no_secret_leaks` (autouse) with `tests/leaks.py`; proven to bite here; also `test_tokens.py::test_no_token_reaches_a_log_record` |
| no secret in any HTTP response or header | `test_http.py::test_no_response_or_outcome_contains_a_setting_value` |
| the signature is compared in constant time (`hmac.compare_digest`) | `test_http.py::test_the_signature_is_compared_in_constant_time` |
| size, then signature, then content type; refused requests publish nothing | `test_http.py::test_size_signature_and_content_type_refusals_publish_nothing` |
| body size limits: 1 MiB per request, 64 KiB of `rawEvent` | `test_http.py::test_a_body_may_be_up_to_1_mib`, `test_http.py::test_a_rejected_events_raw_event_is_cut_to_64_kib`, `test_queue.py::test_a_huge_rejected_event_keeps_at_most_64_kib`; the PATCH mirror here |
| `ARM_ENDPOINT` must be https unless its host is loopback | `test_settings.py::test_arm_endpoint_must_be_https_unless_loopback`; here: no token is fetched and nothing is sent |
| a polling URL on another scheme, host or port is never called | `test_arm.py::test_a_polling_url_on_another_host_is_never_called`; here through the queue function, for both polling headers |
| `ALLOWED_REGISTRIES` for every event shape and both HTTP write routes | `test_http.py::test_a_registry_not_in_allowed_registries_is_refused_403_without_calling_arm`; here: the queue for every shape, and batch elements |
| a URL is only built from validated input; segments percent-encoded | `test_properties.py` |
| `local.settings.json` is git-ignored | `test_wiring.py::test_git_ignores_local_settings_but_not_the_sample` |
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, IdentityEmulator
from shared.errors import ConfigurationError
from shared.webhook import MAX_BODY_BYTES
from tests.support import GROUP, REGISTRY, SEED_RUN, SUB, read_outcomes
from tests.leaks import SECRETS, LeakWatch, find_leaks, outcome_texts
from tests.support import Emulators, functions, http_request, response_json, run_resource_id, run_route_params, start_emulators

EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}


def message(body: Any) -> ServiceBusMessage:
    """A real azure.functions ServiceBusMessage."""
    return ServiceBusMessage(
        body=json.dumps(body).encode(), message_id=str(uuid.uuid4()), delivery_count=1,
        application_properties={}, user_properties={},
    )


# -- the leak watch bites ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logger", "level", "template"),
    [
        ("shared.arm", logging.WARNING, "ARM refused Authorization: Bearer %s"),
        ("shared.auth", logging.DEBUG, "cached token %.30s…"),
        ("urllib3.connectionpool", logging.DEBUG, "header %s"),
        ("azure.identity", logging.INFO, "got {'access_token': 'abc%s'}"),
    ],
    ids=["app-warning", "app-debug", "library-debug", "library-info"],
)
def test_an_issued_token_in_any_log_record_is_caught(
    logger: str, level: int, template: str, functions: Any, identity: IdentityEmulator, leak_watch: LeakWatch
) -> None:
    """A token the identity endpoint issued is found in a record of any logger and level, from any thread."""
    # given a token the app really fetched
    functions["archive_queue"](message(EVENT))
    (token,) = identity.issued
    # when some code logs it, from a worker thread
    worker = threading.Thread(target=lambda: logging.getLogger(logger).log(level, template, token))
    worker.start()
    worker.join()
    # then the watch saw it, and reports it without repeating it
    leaks = find_leaks([(str(n), text) for n, text in enumerate(leak_watch.texts)], SECRETS.values())
    assert leaks and all(token not in leak for leak in leaks)
    leak_watch.texts.clear()  # leaked on purpose; the rest of this test's records were scanned above


@pytest.mark.parametrize(
    ("text", "leaks"),
    [
        ("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi", True),
        ("Authorization: Bearer abcdefghijkl", True),
        ("Authorization: Bearer ***", False),
        ('WWW-Authenticate: Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"', False),
        ("a bearer token was refused", False),
        ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey=c2VjcmV0a2V5", True),
        ("SharedAccessKey=***", False),
        ("https://ns.servicebus.windows.net/q?sr=x&sig=AbCdEfGhIjKlMnOpQrStUv%3D&se=1", True),
        ("X-Signature-256: sha256=" + "ab" * 32, True),
        ("X-Signature-256 is missing or does not match the body", False),
        ("run 0accec26-d6de-4757-8e74-d080f38eaaab: TooManyRequests (429)", False),
    ],
    ids=[
        "jwt-bearer", "opaque-bearer", "redacted-bearer", "challenge", "prose", "connection-string-key",
        "redacted-key", "sas-signature", "hmac-signature", "signature-header-named", "ordinary-line",
    ],
)
def test_the_leak_finder_tells_credentials_from_their_mentions(text: str, leaks: bool) -> None:
    """Credential-shaped strings are leaks whoever issued them; redacted forms and prose are not."""
    assert bool(find_leaks([("line", text)], set())) is leaks


@pytest.mark.parametrize(
    ("logged", "leaks"),
    [(lambda t: t, True), (lambda t: t[:20] + "...", True), (lambda t: t[-18:], True), (lambda t: t[:10], False)],
    ids=["whole", "first-20-characters", "last-18-characters", "first-10-characters"],
)
def test_part_of_a_long_secret_is_a_leak(logged: Callable[[str], str], leaks: bool) -> None:
    """Sixteen characters in a row of a long secret give it away; a short prefix does not."""
    token = "Zk" + uuid.uuid4().hex + uuid.uuid4().hex[:12]
    assert bool(find_leaks([("line", f"token {logged(token)} refused")], {token})) is leaks


def test_a_secret_in_an_outcome_file_is_caught(tmp_path: Path) -> None:
    """Outcomes are scanned like log records."""
    path = tmp_path / "outcomes.jsonl"
    path.write_text(json.dumps({"body": {"error": {"message": "signature did not match s3cr3t-webhook-value"}}}) + "\n")
    assert find_leaks(outcome_texts([path]), {"s3cr3t-webhook-value"})
    assert not find_leaks(outcome_texts([path]), {"another-secret-value"})


# -- ARM_ENDPOINT --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["http://management.azure.com", "http://10.0.0.4:8080", "http://localhost.attacker.example", "http://127.0.0.1.nip.io"],
    ids=["public-host", "private-address", "localhost-prefix", "loopback-lookalike"],
)
def test_a_plain_http_arm_endpoint_off_this_machine_gets_no_token(
    endpoint: str, functions: Any, identity: IdentityEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue raises ConfigurationError naming ARM_ENDPOINT before a token is fetched or a request sent."""
    monkeypatch.setenv("ARM_ENDPOINT", endpoint)
    with pytest.raises(ConfigurationError, match="ARM_ENDPOINT") as caught:
        functions["archive_queue"](message(EVENT))
    assert endpoint not in str(caught.value)
    assert identity.calls == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_on_loopback_is_accepted(host: str, functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path) -> None:
    """Loopback (the emulators, a local proxy) may use http."""
    monkeypatch.setenv("ARM_ENDPOINT", arm.url.replace("127.0.0.1", host))
    functions["archive_queue"](message(EVENT))
    assert read_outcomes(outcome_file)[0]["body"]["outcome"] == "succeeded"


# -- polling URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["async", "location"], ids=["azure-asyncoperation", "location"])
def test_a_polling_url_on_another_origin_never_sees_a_request(
    via: str, functions: Any, arm: ArmEmulator, identity: IdentityEmulator, outcome_file: Path
) -> None:
    """An accepted update pointing its polls at another port is polled on the run itself; the token stays home."""
    with ArmEmulator(token_validator=identity.is_valid) as elsewhere:
        # given ARM answering 201 with a polling URL on another origin
        arm.set_lro(SEED_RUN, polls=1, via=via, retry_after=0, poll_host=elsewhere.url)
        # when the event is processed
        functions["archive_queue"](message(EVENT))
        # then the update is followed to its end without a single request elsewhere
        assert elsewhere.stats()["requests"] == 0
    (record,) = read_outcomes(outcome_file)
    assert record["body"]["outcome"] == "succeeded"
    assert record["body"]["run"]["properties"]["provisioningState"] == "Succeeded"
    assert {entry["path"] for entry in arm.requests_log} == {run_resource_id(SEED_RUN)}


# -- ALLOWED_REGISTRIES ----------------------------------------------------------------------------

SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "flat": lambda data: data,
    "resource-id": lambda data: {
        "runResourceId": run_resource_id(data["runId"], registry=data["registryName"]), "isArchiveEnabled": data["isArchiveEnabled"],
    },
    "resource-id-other-case": lambda data: {
        "runResourceId": run_resource_id(data["runId"], group=GROUP.upper(), registry=data["registryName"].upper())
        .replace("/providers/Microsoft.ContainerRegistry/registries/", "/PROVIDERS/microsoft.containerregistry/Registries/"),
        "isArchiveEnabled": data["isArchiveEnabled"],
    },
    "cloudevent": lambda data: {"specversion": "1.0", "id": "e1", "source": "/x", "type": "t", "data": data},
    "event-grid": lambda data: {"id": "e2", "eventType": "t", "subject": "s", "data": data, "dataVersion": "1", "eventTime": "2026-11-27T10:00:00Z"},
}
NOT_ALLOWED = f"otherRegistry1,{SUB}/otherGroup/{REGISTRY}"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_queue_refuses_a_registry_outside_allowed_registries_in_every_shape(
    shape: str, functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """Rejected (RegistryNotAllowed), completed, and ARM never hears of it."""
    monkeypatch.setenv("ALLOWED_REGISTRIES", NOT_ALLOWED)
    assert functions["archive_queue"](message(SHAPES[shape](EVENT))) is None
    (record,) = read_outcomes(outcome_file)
    assert (record["body"]["outcome"], record["body"]["error"]["code"]) == ("rejected", "RegistryNotAllowed")
    assert arm.stats()["requests"] == 0


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """Emulators for the HTTP routes, with a second registry's run."""
    with start_emulators(monkeypatch, tmp_path) as running:
        running.arm.add_run(SUB, GROUP, "allowedRegistry", "run1")
        yield running


def test_a_batch_refuses_each_element_outside_allowed_registries(http: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a batch, the allowed element is updated and the others are rejected without an ARM call."""
    monkeypatch.setenv("ALLOWED_REGISTRIES", "allowedRegistry")
    events = [
        {**EVENT, "registryName": "allowedRegistry", "runId": "run1"},
        EVENT,
        SHAPES["resource-id"](EVENT),
        SHAPES["cloudevent"](EVENT),
    ]
    body = json.dumps(events).encode()
    response = functions()["archive_events"](http_request("POST", "archive-events", body=body, headers={"Content-Type": "application/json"}))
    assert response.status_code == 200
    outcomes = response_json(response)["outcomes"]
    assert [o["outcome"] for o in outcomes] == ["succeeded", "rejected", "rejected", "rejected"]
    assert {o["error"]["code"] for o in outcomes[1:]} == {"RegistryNotAllowed"}
    assert [entry["path"] for entry in http.arm.requests_log] == [run_resource_id("run1", registry="allowedRegistry")]


# -- body size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "status"), [(MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)], ids=["exactly-1-MiB", "one-byte-over"])
def test_the_mirror_takes_a_body_of_at_most_1_mib(size: int, status: int, http: Emulators) -> None:
    """The PATCH mirror has the same 1 MiB limit; over it nothing is published and ARM is not called."""
    payload = json.dumps({"isArchiveEnabled": True}).encode()
    body = payload + b" " * (size - len(payload))
    request = http_request(
        "PATCH", run_resource_id("run1", registry="allowedRegistry").lstrip("/"), body=body,
        headers={"Content-Type": "application/json"}, route_params=run_route_params("run1", registry="allowedRegistry"),
    )
    response = functions()["arm_patch_run"](request)
    assert response.status_code == status
    assert len(http.outcomes()) == (1 if status == 200 else 0)
    assert http.arm.stats()["patches"] == (1 if status == 200 else 0)
