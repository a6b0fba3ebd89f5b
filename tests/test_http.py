"""The HTTP API (contract §4, §6) through the real functions, real azure.functions requests and the emulators."""

from __future__ import annotations

import hmac
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.servicebus.exceptions import ServiceBusError

from emulators import Fault
from shared.publisher import ServiceBusPublisher
from shared.service import BATCH_CONCURRENCY
from shared.webhook import MAX_BODY_BYTES
from tests.fakes import RecordingServiceBus
from tests.strict import strict_json
from tests.support import (
    BASE_SETTINGS,
    GROUP,
    REGISTRY,
    SUB,
    Emulators,
    assert_valid_run,
    closed_port_url,
    LazyFunctions,
    functions,
    http_request,
    response_json,
    run_resource_id,
    run_route_params,
    sign,
    start_emulators,
)

OUTCOME_KEYS = {
    "outcome", "source", "request", "run", "error", "attempts",
    "correlationId", "inboundMessageId", "deliveryCount", "rawEvent", "completedAt",
}
SECRET = "test-webhook-secret-5f1c0d"
RUN = "cab7"
MISSING_RUN = "doesnotexist1"
VALIDATION_CODE = "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
FIVE_XX = range(500, 600)


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """ARM and identity emulators, an isolated environment pointing at them, and RUN not yet archived."""
    with start_emulators(monkeypatch, tmp_path) as running:
        running.arm.add_run(SUB, GROUP, REGISTRY, RUN, example="RunsGet", is_archive_enabled=False)
        yield running


@pytest.fixture
def app() -> dict[str, Callable[..., Any]]:
    """The app's functions by name."""
    return LazyFunctions()


def flat(run_id: str = RUN, flag: bool = True, **changes: Any) -> dict[str, Any]:
    """A flat archive event (contract §2 shape 1)."""
    return {
        "subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY,
        "runId": run_id, "isArchiveEnabled": flag, **changes,
    }


def cloud_event(data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 structured event carrying `data`."""
    return {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/pipelines/nightly",
        "type": "Acr.Run.ArchiveRequested", "data": data,
    }


def event_grid(data: dict[str, Any]) -> dict[str, Any]:
    """An Event Grid schema event carrying `data`."""
    return {
        "id": str(uuid.uuid4()), "eventType": "Acr.Run.ArchiveRequested", "subject": "runs/archive",
        "data": data, "dataVersion": "1.0", "eventTime": "2026-11-27T10:00:00Z",
    }


def resource_id_event(data: dict[str, Any]) -> dict[str, Any]:
    """The same event in resource-id shape (contract §2 shape 2)."""
    resource_id = run_resource_id(data["runId"], registry=data["registryName"])
    return {"runResourceId": resource_id, "isArchiveEnabled": data["isArchiveEnabled"]}


SHAPES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "flat": lambda data: data,
    "resource-id": resource_id_event,
    "cloudevent": cloud_event,
    "event-grid": event_grid,
}


def post_events(app: dict[str, Callable[..., Any]], payload: Any = None, *, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> func.HttpResponse:
    """POST /api/archive-events with a JSON payload (or raw bytes)."""
    if payload is not None:
        body = json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return app["archive_events"](http_request("POST", "archive-events", body=body, headers=all_headers))


def patch_run(app: dict[str, Callable[..., Any]], run_id: str = RUN, payload: Any = None, *, body: bytes | None = None,
              params: dict[str, str] | None = None, headers: dict[str, str] | None = None,
              route_params: dict[str, str] | None = None) -> func.HttpResponse:
    """PATCH the ARM-compatible mirror route of a run."""
    if body is None:
        body = json.dumps({"isArchiveEnabled": True} if payload is None else payload).encode()
    route = route_params or run_route_params(run_id)
    request = http_request(
        "PATCH", run_resource_id(route["runId"], registry=route["registryName"]).lstrip("/"),
        body=body, headers={"Content-Type": "application/json", **(headers or {})}, params=params, route_params=route,
    )
    return app["arm_patch_run"](request)


def assert_arm_error_shape(body: Any) -> dict[str, Any]:
    """The body is ARM's error envelope {"error": {"code", "message"}}; returns the inner error."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"]
    assert isinstance(error.get("message"), str) and error["message"]
    return error


def assert_outcome_body(body: Any) -> None:
    """Every key of contract §4 is present, with the HTTP source's nulls."""
    assert OUTCOME_KEYS <= set(body), OUTCOME_KEYS - set(body)
    assert body["source"] == "http"
    assert body["inboundMessageId"] is None and body["deliveryCount"] is None
    assert body["completedAt"].endswith("Z") and datetime.fromisoformat(body["completedAt"]).utcoffset().total_seconds() == 0


def the_only_outcome(emulators: Emulators) -> dict[str, Any]:
    """The single OUTCOME_FILE line written so far."""
    records = emulators.outcomes()
    assert len(records) == 1, records
    return records[0]


# -- single events ------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
def test_a_single_event_answers_200_with_its_published_outcome(shape: str, emulators: Emulators, app: Any) -> None:
    """Each accepted shape updates the run and answers the outcome that was published, source http."""
    # given a run that is not archived
    event = SHAPES[shape](flat(RUN, True))
    # when the event is posted
    response = post_events(app, event)
    # then the run is archived and the response is the outcome
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response_json(response)
    assert_outcome_body(body)
    assert body["outcome"] == "succeeded" and body["error"] is None and body["rawEvent"] is None
    assert body["request"] == flat(RUN, True)
    assert body["attempts"] == 1
    assert_valid_run(body["run"])
    assert body["run"]["properties"]["isArchiveEnabled"] is True
    assert body["run"] == emulators.arm.get_run(SUB, GROUP, REGISTRY, RUN)
    record = the_only_outcome(emulators)
    assert record["body"] == body
    assert record["subject"] == "RunArchiveUpdated" and record["content_type"] == "application/json"
    assert record["application_properties"]["source"] == "http"
    assert record["application_properties"]["httpStatus"] == 200
    assert record["application_properties"]["isArchiveEnabled"] is True


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "application/cloudevents+json"],
    ids=["json", "json-charset", "cloudevents-json"],
)
def test_json_content_types_are_accepted(content_type: str, emulators: Emulators, app: Any) -> None:
    """Any JSON media type, parameters included, is an event body."""
    response = post_events(app, cloud_event(flat()), headers={"Content-Type": content_type})
    assert response.status_code == 200
    assert response_json(response)["outcome"] == "succeeded"


def test_the_correlation_id_header_is_echoed_and_carried_by_the_outcome(emulators: Emulators, app: Any) -> None:
    """x-correlation-id comes back in the response and becomes the outcome's correlation id."""
    # given a caller's correlation id
    correlation_id = "caller-" + uuid.uuid4().hex
    # when it posts an event with it
    response = post_events(app, flat(), headers={"x-correlation-id": correlation_id})
    # then the response, the outcome body and the published message all carry it
    assert response.headers["x-correlation-id"] == correlation_id
    assert response_json(response)["correlationId"] == correlation_id
    assert the_only_outcome(emulators)["correlation_id"] == correlation_id


def test_a_correlation_id_is_generated_when_none_is_sent(emulators: Emulators, app: Any) -> None:
    """Without x-correlation-id, each request gets a fresh id, echoed and used by its outcome."""
    # when two events are posted without a correlation id
    first, second = post_events(app, flat()), post_events(app, flat(flag=False))
    # then each response names a different id, the one its outcome carries
    ids = [response.headers.get("x-correlation-id") for response in (first, second)]
    assert all(ids) and ids[0] != ids[1]
    assert [response_json(r)["correlationId"] for r in (first, second)] == ids
    assert [record["correlation_id"] for record in emulators.outcomes()] == ids


@pytest.mark.parametrize(
    ("size", "status"),
    [(MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)],
    ids=["exactly-1-MiB", "one-byte-over"],
)
def test_a_body_may_be_up_to_1_mib(size: int, status: int, emulators: Emulators, app: Any) -> None:
    """The size limit is 1 MiB inclusive."""
    # given a valid event padded with JSON whitespace to `size` bytes
    event = json.dumps(flat()).encode()
    body = event + b" " * (size - len(event))
    # when it is posted
    response = post_events(app, body=body)
    # then it is processed at the limit and refused past it
    assert response.status_code == status
    assert len(emulators.outcomes()) == (1 if status == 200 else 0)


def test_a_rejected_events_raw_event_is_cut_to_64_kib(emulators: Emulators, app: Any) -> None:
    """rawEvent keeps at most 64 KiB of a large invalid body."""
    # given an invalid event of about 200 KiB
    body = json.dumps(flat(registryName="no", padding="x" * 200_000)).encode()
    # when it is posted
    response = post_events(app, body=body)
    # then its outcome carries the beginning of the body, no more than 64 KiB
    raw = response_json(response)["rawEvent"]
    assert response.status_code == 400
    assert 0 < len(raw.encode()) <= 64 * 1024 and body.decode().startswith(raw)


def test_an_outcome_that_cannot_be_published_answers_503_to_retry(
    emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """When the outcome cannot be published the caller is told to retry (the PATCH is idempotent)."""
    # given an outcome destination that cannot be written
    monkeypatch.setenv("OUTCOME_FILE", str(tmp_path))
    # when an event is posted
    response = post_events(app, flat())
    # then the caller gets a retryable 5xx although the run was updated
    assert response.status_code == 503 and response.headers.get("Retry-After")
    assert assert_arm_error_shape(response_json(response))["code"] == "PublishFailed"
    assert emulators.arm.get_run(SUB, GROUP, REGISTRY, RUN)["properties"]["isArchiveEnabled"] is True


# -- batches and Event Grid validation ----------------------------------------------------------


def test_a_batch_answers_one_outcome_per_event_in_input_order(emulators: Emulators, app: Any) -> None:
    """Outcomes follow the input order even when an earlier event finishes last."""
    # given three runs, the first one slow to answer
    runs = ["run1", "run2", "run3"]
    for run_id in runs:
        emulators.arm.add_run(SUB, GROUP, REGISTRY, run_id, example="RunsGet")
    emulators.arm.script("run1", Fault.delay(0.3))
    events = [flat("run1", True), cloud_event(flat("run2", False)), event_grid(flat("run3", True))]
    # when they are posted as one batch
    response = post_events(app, events)
    # then the outcomes come back in input order, each published once
    assert response.status_code == 200
    body = response_json(response)
    assert set(body) == {"outcomes"}
    outcomes = body["outcomes"]
    assert [o["request"]["runId"] for o in outcomes] == runs
    assert [o["request"]["isArchiveEnabled"] for o in outcomes] == [True, False, True]
    assert all(o["outcome"] == "succeeded" for o in outcomes)
    for outcome in outcomes:
        assert_outcome_body(outcome)
    records = emulators.outcomes()
    assert len(records) == 3
    assert sorted((r["body"] for r in records), key=lambda b: b["request"]["runId"]) == outcomes


def test_an_invalid_batch_element_is_rejected_with_that_element_as_its_raw_event(emulators: Emulators, app: Any) -> None:
    """One bad element does not fail the batch; its outcome carries the element re-serialized."""
    # given a batch with one invalid element among valid ones
    invalid = flat(registryName="no", note="ü")
    events = [flat(RUN, True), invalid, 42]
    # when it is posted
    response = post_events(app, events)
    # then the batch answers 200 with a rejected outcome for each bad element
    assert response.status_code == 200
    good, bad, number = response_json(response)["outcomes"]
    assert good["outcome"] == "succeeded" and good["rawEvent"] is None
    assert bad["outcome"] == "rejected" and bad["error"]["code"] == "InvalidEvent"
    assert "registryName" in bad["error"]["message"]
    assert json.loads(bad["rawEvent"]) == invalid
    assert number["outcome"] == "rejected" and json.loads(number["rawEvent"]) == 42
    assert len(emulators.outcomes()) == 3


@pytest.mark.parametrize(("count", "status"), [(0, 400), (100, 200), (101, 400)], ids=["empty", "100-events", "101-events"])
def test_a_batch_holds_1_to_100_events(count: int, status: int, emulators: Emulators, app: Any) -> None:
    """An empty batch or one over 100 is refused whole, with one rejected outcome and no ARM call."""
    # when a batch of `count` events for the same run is posted
    response = post_events(app, [flat()] * count)
    # then it is processed or refused as a whole
    assert response.status_code == status
    body = response_json(response)
    records = emulators.outcomes()
    if status == 200:
        assert len(body["outcomes"]) == count == len(records)
        assert emulators.arm.stats()["patches"] == count
    else:
        assert_outcome_body(body)
        assert body["outcome"] == "rejected" and body["error"]["code"] == "InvalidEvent"
        assert json.loads(body["rawEvent"]) == [flat()] * count
        assert [record["body"] for record in records] == [body]
        assert emulators.arm.stats()["requests"] == 0


@pytest.mark.parametrize("as_array", [False, True], ids=["alone", "only-element-of-array"])
def test_event_grid_subscription_validation_is_answered_with_its_code(as_array: bool, emulators: Emulators, app: Any) -> None:
    """The validation handshake is answered, not treated as an archive event."""
    # given Event Grid's subscription validation event
    validation = {
        "id": str(uuid.uuid4()), "topic": "/subscriptions/x", "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2026-11-27T10:00:00Z", "metadataVersion": "1", "dataVersion": "2",
        "data": {"validationCode": VALIDATION_CODE, "validationUrl": "https://rp-eastus.eventgrid.azure.net/validate"},
    }
    # when it is posted
    response = post_events(app, [validation] if as_array else validation)
    # then the code is echoed and nothing is published or updated
    assert response.status_code == 200
    assert response_json(response) == {"validationResponse": VALIDATION_CODE}
    assert emulators.outcomes() == []
    assert emulators.arm.stats()["requests"] == 0


# -- the status table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusCase:
    """One row: how to arrange the emulators, what to post, and the status and outcome it gives."""

    status: int | range
    outcome: str
    error_code: str
    body: bytes = field(default_factory=lambda: json.dumps(flat()).encode())
    arrange: Callable[[Emulators, pytest.MonkeyPatch], None] = lambda emulators, monkeypatch: None


def every_attempt(status: int) -> list[Fault]:
    """`status` with Retry-After: 0 for each of the ARM_MAX_ATTEMPTS (2) tries."""
    return [Fault.status(status, retry_after="0")] * int(BASE_SETTINGS["ARM_MAX_ATTEMPTS"])


def _fault(*faults: Fault) -> Callable[[Emulators, pytest.MonkeyPatch], None]:
    return lambda emulators, monkeypatch: emulators.arm.script(RUN, *faults)


def _lro(**plan: Any) -> Callable[[Emulators, pytest.MonkeyPatch], None]:
    # Retry-After: 0 on the 201 and on each poll keeps polling free of waits.
    return lambda emulators, monkeypatch: emulators.arm.set_lro(RUN, **{"retry_after": 0, **plan})


def _unreachable(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARM_ENDPOINT", closed_port_url())
    monkeypatch.setenv("ARM_RETRY_MAX_SECONDS", "0.01")  # the second attempt follows at once


def _no_token(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    emulators.identity.fail_next(5, 400)


def _lro_never_ends(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    emulators.arm.set_lro(RUN, polls=-1)
    monkeypatch.setenv("LRO_TIMEOUT_SECONDS", "0.05")


STATUS_TABLE = {
    "invalid-event": StatusCase(400, "rejected", "InvalidEvent", body=json.dumps(flat(registryName="no")).encode()),
    "flag-is-a-string": StatusCase(400, "rejected", "InvalidEvent", body=json.dumps(flat(isArchiveEnabled="true")).encode()),
    "invalid-json": StatusCase(400, "rejected", "InvalidEvent", body=b'{"runId": '),
    "arm-404": StatusCase(404, "failed", "ResourceNotFound", body=json.dumps(flat(MISSING_RUN)).encode()),
    "arm-409": StatusCase(409, "failed", "Conflict", arrange=_fault(Fault.status(409))),
    "arm-429-after-retries": StatusCase(429, "failed", "TooManyRequests", arrange=_fault(*every_attempt(429))),
    "arm-503-after-retries": StatusCase(503, "failed", "ServiceUnavailable", arrange=_fault(*every_attempt(503))),
    "arm-unreachable": StatusCase(502, "failed", "ArmUnavailable", arrange=_unreachable),
    "lro-failed": StatusCase(FIVE_XX, "failed", "LroFailed", arrange=_lro(polls=1, final="Failed")),
    "lro-canceled": StatusCase(FIVE_XX, "failed", "LroFailed", arrange=_lro(polls=1, final="Canceled", via="location")),
    "lro-timeout": StatusCase(504, "failed", "LroTimeout", arrange=_lro_never_ends),
    "token-unavailable": StatusCase(FIVE_XX, "failed", "TokenUnavailable", arrange=_no_token),
}


@pytest.mark.parametrize("case", list(STATUS_TABLE.values()), ids=list(STATUS_TABLE))
def test_each_result_has_its_status_and_publishes_its_outcome(
    case: StatusCase, emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rejected and failed single events answer contract §6's status with the published outcome as body."""
    # given the row's ARM behaviour
    case.arrange(emulators, monkeypatch)
    # when the event is posted
    response = post_events(app, body=case.body)
    # then the status is the row's and the body is the outcome that was published
    if isinstance(case.status, range):
        assert response.status_code in case.status
    else:
        assert response.status_code == case.status
    body = response_json(response)
    assert_outcome_body(body)
    assert body["outcome"] == case.outcome
    assert body["error"]["code"] == case.error_code
    assert body["run"] is None
    assert (body["rawEvent"] == case.body.decode()) is (case.outcome == "rejected")
    record = the_only_outcome(emulators)
    assert record["body"] == body
    assert record["application_properties"]["source"] == "http"
    assert record["application_properties"]["errorCode"] == case.error_code


@pytest.mark.parametrize(
    ("faults", "attempts", "asked"),
    [
        (every_attempt(429), 2, 0),
        ([Fault.status(429, retry_after="30")], 1, 30),
    ],
    ids=["throttled-on-every-attempt", "retry-after-beyond-budget"],
)
def test_a_throttled_update_answers_429_with_retry_after(
    faults: list[Fault], attempts: int, asked: int, emulators: Emulators, app: Any
) -> None:
    """ARM's 429 passes through with a Retry-After at least as long as ARM asked."""
    # given ARM throttling the run
    emulators.arm.script(RUN, *faults)
    # when the event is posted
    response = post_events(app, flat())
    # then the caller is told to come back later
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= asked
    assert response_json(response)["attempts"] == attempts
    assert emulators.arm.stats()["patches"] == attempts


def test_a_429_without_retry_after_from_arm_still_carries_retry_after(
    emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A throttled caller always learns when to come back, even when ARM's 429 did not say."""
    # given ARM throttling without a Retry-After header (and a tiny backoff budget)
    monkeypatch.setenv("ARM_RETRY_MAX_SECONDS", "0.01")
    emulators.arm.script(RUN, *[Fault.status(429)] * 2)
    # when the event is posted
    response = post_events(app, flat())
    # then the 429 still carries Retry-After
    assert response.status_code == 429
    assert "Retry-After" in response.headers


# -- refusals before a request counts as an event ------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A request refused by the size, signature or content-type check."""

    status: int
    code: str
    body: bytes = field(default_factory=lambda: json.dumps(flat()).encode())
    content_type: str = "application/json"
    signature: Callable[[bytes], str | None] = lambda body: sign(body, SECRET)
    secret: str | None = SECRET


def unsigned(body: bytes) -> None:
    """No X-Signature-256 header."""
    return None


OVERSIZE = json.dumps(flat()).encode() + b" " * MAX_BODY_BYTES
REFUSALS = {
    "oversize-signed": Refusal(413, "PayloadTooLarge", body=OVERSIZE),
    "oversize-unsigned-text": Refusal(413, "PayloadTooLarge", body=OVERSIZE, content_type="text/plain", signature=unsigned),
    "missing-signature": Refusal(401, "InvalidSignature", signature=unsigned),
    "signature-of-another-body": Refusal(401, "InvalidSignature", signature=lambda body: sign(body + b" ", SECRET)),
    "signature-with-another-secret": Refusal(401, "InvalidSignature", signature=lambda body: sign(body, "another-secret")),
    "signature-other-scheme": Refusal(401, "InvalidSignature", signature=lambda body: "sha1=" + sign(body, SECRET)[7:]),
    "unsigned-text": Refusal(401, "InvalidSignature", content_type="text/plain", signature=unsigned),
    "signed-text": Refusal(415, "UnsupportedMediaType", content_type="text/plain"),
    "text-without-secret": Refusal(415, "UnsupportedMediaType", content_type="text/plain", secret=None),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_size_signature_and_content_type_refusals_publish_nothing(
    case: Refusal, emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checks run size, then signature, then content type; a refused request is never an event."""
    # given WEBHOOK_SECRET (unless the row says otherwise)
    if case.secret:
        monkeypatch.setenv("WEBHOOK_SECRET", case.secret)
    headers = {"Content-Type": case.content_type}
    signature = case.signature(case.body)
    if signature is not None:
        headers["X-Signature-256"] = signature
    # when the request is posted
    response = post_events(app, body=case.body, headers=headers)
    # then it is refused without an outcome and without calling ARM
    assert response.status_code == case.status
    assert assert_arm_error_shape(response_json(response))["code"] == case.code
    assert response.headers.get("x-correlation-id")
    assert emulators.outcomes() == []
    assert emulators.arm.stats()["requests"] == 0


def test_a_correctly_signed_request_is_processed(emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With WEBHOOK_SECRET, the HMAC-SHA256 of the raw body admits the request."""
    # given a secret and a body signed with it
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    body = json.dumps(flat()).encode()
    # when it is posted
    response = post_events(app, body=body, headers={"X-Signature-256": sign(body, SECRET)})
    # then it is processed like any event
    assert response.status_code == 200
    assert the_only_outcome(emulators)["body"]["outcome"] == "succeeded"


def test_the_signature_is_compared_in_constant_time(emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest decides whether the signature matches, for good and bad signatures alike."""
    # given a spy on hmac.compare_digest
    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr("shared.webhook.hmac.compare_digest", spy)
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    body = json.dumps(flat()).encode()
    good, bad = sign(body, SECRET), sign(body, "another-secret")
    # when a correctly and a wrongly signed request are posted
    accepted = post_events(app, body=body, headers={"X-Signature-256": good})
    refused = post_events(app, body=body, headers={"X-Signature-256": bad})
    # then both verdicts came from compare_digest
    assert (accepted.status_code, refused.status_code) == (200, 401)
    digests = {tuple(bytes(x) if isinstance(x, (bytes, bytearray)) else x.encode() for x in call) for call in calls}
    expected = good.removeprefix("sha256=").encode()
    assert (expected, expected) in digests
    assert (expected, bad.removeprefix("sha256=").encode()) in digests


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OUTCOME_FILE": ""}, ("OUTCOME_TOPIC_NAME", "OUTCOME_FILE")),
        ({"OUTCOME_FILE": "", "OUTCOME_TOPIC_NAME": "acr-archive-outcomes"}, ("ServiceBusConnection",)),
        ({"ARM_MAX_ATTEMPTS": "four"}, ("ARM_MAX_ATTEMPTS",)),
    ],
    ids=["no-outcome-destination", "topic-without-namespace", "malformed-setting"],
)
def test_a_missing_or_malformed_setting_answers_500_naming_it(
    env: dict[str, str], named: tuple[str, ...], emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the app cannot carry out for want of a setting says which one, and touches nothing."""
    # given a setting missing or malformed
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # when an event is posted
    response = post_events(app, flat())
    # then the answer is 500 naming the setting, never its value
    assert response.status_code == 500
    message = assert_arm_error_shape(response_json(response))["message"]
    for name in named:
        assert name in message
    assert "four" not in message
    assert emulators.arm.stats()["requests"] == 0


# -- ALLOWED_REGISTRIES --------------------------------------------------------------------------

NOT_ALLOWED = "otherRegistry1,ANOTHERREGISTRY,{sub}/otherGroup/{registry}".format(sub=SUB, registry=REGISTRY)


@pytest.mark.parametrize("shape", [*SHAPES, "patch-mirror"], ids=[*SHAPES, "patch-mirror"])
def test_a_registry_not_in_allowed_registries_is_refused_403_without_calling_arm(
    shape: str, emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry outside ALLOWED_REGISTRIES is rejected and published, and ARM never hears of it."""
    # given an allow-list that names other registries (and this one only in another group)
    monkeypatch.setenv("ALLOWED_REGISTRIES", NOT_ALLOWED)
    # when an event for the registry arrives
    if shape == "patch-mirror":
        response = patch_run(app, RUN)
        error = assert_arm_error_shape(response_json(response))
    else:
        response = post_events(app, SHAPES[shape](flat()))
        error = response_json(response)["error"]
    # then it is refused, its rejected outcome published, and ARM not called
    assert response.status_code == 403
    assert error["code"] == "RegistryNotAllowed"
    record = the_only_outcome(emulators)
    assert record["body"]["outcome"] == "rejected" and record["body"]["source"] == "http"
    assert record["subject"] == "RunArchiveEventRejected"
    assert emulators.arm.stats()["requests"] == 0
    assert emulators.arm.get_run(SUB, GROUP, REGISTRY, RUN)["properties"]["isArchiveEnabled"] is False


@pytest.mark.parametrize(
    "allowed",
    ["otherRegistry1,MYREGISTRY", f"{SUB.upper()}/MYRESOURCEGROUP/myregistry"],
    ids=["registry-name-any-case", "scoped-entry-any-case"],
)
def test_a_registry_in_allowed_registries_is_updated(
    allowed: str, emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries match case-insensitively, by name or by subscription/group/name."""
    monkeypatch.setenv("ALLOWED_REGISTRIES", allowed)
    response = post_events(app, flat())
    assert response.status_code == 200


# -- the ARM-compatible PATCH mirror --------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"api-version": "2019-04-01"}], ids=["no-api-version", "api-version-2019-04-01"])
def test_the_mirror_answers_200_with_the_final_run(params: dict[str, str], emulators: Emulators, app: Any) -> None:
    """PATCH on the mirror route updates the run and answers it as ARM returned it."""
    # given a run that is not archived
    # when the mirror is asked to archive it
    response = patch_run(app, RUN, {"isArchiveEnabled": True}, params=params)
    # then the answer is the updated Run and the run did change
    assert response.status_code == 200
    run = response_json(response)
    assert_valid_run(run)
    assert run["properties"]["isArchiveEnabled"] is True
    assert run == emulators.arm.get_run(SUB, GROUP, REGISTRY, RUN)
    assert response.headers.get("x-correlation-id")
    record = the_only_outcome(emulators)
    assert record["body"]["outcome"] == "succeeded" and record["body"]["source"] == "http"
    assert record["body"]["run"] == run
    assert record["correlation_id"] == response.headers["x-correlation-id"]


@pytest.mark.parametrize("via", ["async", "location", "run"], ids=["azure-asyncoperation", "location", "run-itself"])
def test_the_mirror_follows_an_accepted_update_to_its_end(via: str, emulators: Emulators, app: Any) -> None:
    """A 201 from ARM is polled; the mirror answers 200 with the final, Succeeded Run."""
    # given ARM accepting the update and finishing it on the second poll
    emulators.arm.set_lro(RUN, polls=1, via=via, retry_after=0)
    # when the mirror is asked to archive the run
    response = patch_run(app, RUN, {"isArchiveEnabled": True})
    # then the answer is the finished Run
    assert response.status_code == 200
    run = response_json(response)
    assert_valid_run(run)
    assert run["properties"]["provisioningState"] == "Succeeded"
    assert run["properties"]["isArchiveEnabled"] is True
    assert emulators.arm.stats()["patches"] == 1
    assert the_only_outcome(emulators)["application_properties"]["httpStatus"] == 201


def test_the_mirror_refuses_another_api_version_in_arm_error_shape(emulators: Emulators, app: Any) -> None:
    """An api-version other than ARM_API_VERSION is a 400 ARM error, with a rejected outcome."""
    # when the mirror is called with another api-version
    response = patch_run(app, RUN, {"isArchiveEnabled": True}, params={"api-version": "2018-09-01"})
    # then it is refused like ARM would, published as rejected, and ARM is not called
    assert response.status_code == 400
    error = assert_arm_error_shape(response_json(response))
    assert "api-version" in error["message"]
    record = the_only_outcome(emulators)
    assert record["body"]["outcome"] == "rejected" and record["body"]["source"] == "http"
    assert emulators.arm.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("body", "route"),
    [
        (b'[{"isArchiveEnabled": true}]', None),
        (b'{"isArchiveEnabled": "true"}', None),
        (b"{}", None),
        (b'{"isArchiveEnabled": ', None),
        (b'{"isArchiveEnabled": true}', run_route_params(RUN, registry="no")),
        (b'{"isArchiveEnabled": true}', run_route_params("..")),
    ],
    ids=["body-not-an-object", "flag-is-a-string", "flag-missing", "invalid-json", "registry-too-short", "run-id-dot-dot"],
)
def test_the_mirror_refuses_an_invalid_request_400_in_arm_error_shape(
    body: bytes, route: dict[str, str] | None, emulators: Emulators, app: Any
) -> None:
    """A body or route ARM would refuse is a 400 ARM error, published as rejected, with no ARM call."""
    response = patch_run(app, RUN, body=body, route_params=route)
    assert response.status_code == 400
    assert assert_arm_error_shape(response_json(response))["code"] == "InvalidEvent"
    record = the_only_outcome(emulators)
    assert record["body"]["outcome"] == "rejected" and record["body"]["rawEvent"] == body.decode()
    assert emulators.arm.stats()["requests"] == 0


def test_the_mirror_passes_arms_404_through_in_arm_error_shape(emulators: Emulators, app: Any) -> None:
    """ARM's own status and error code come back for a run that does not exist."""
    response = patch_run(app, MISSING_RUN, {"isArchiveEnabled": True})
    assert response.status_code == 404
    assert assert_arm_error_shape(response_json(response))["code"] == "ResourceNotFound"
    record = the_only_outcome(emulators)
    assert record["body"]["outcome"] == "failed" and record["application_properties"]["httpStatus"] == 404


def test_the_mirror_requires_the_signature_when_a_secret_is_set(
    emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WEBHOOK_SECRET guards the mirror as it guards archive-events."""
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    body = json.dumps({"isArchiveEnabled": True}).encode()
    unsigned = patch_run(app, RUN, body=body)
    signed = patch_run(app, RUN, body=body, headers={"X-Signature-256": sign(body, SECRET)})
    assert (unsigned.status_code, signed.status_code) == (401, 200)
    assert assert_arm_error_shape(response_json(unsigned))["code"] == "InvalidSignature"
    assert len(emulators.outcomes()) == 1


# -- OPTIONS and health ---------------------------------------------------------------------------


def test_the_cloudevents_webhook_handshake_allows_the_requesting_origin(emulators: Emulators, app: Any) -> None:
    """OPTIONS with WebHook-Request-Origin answers 200 allowing that origin at any rate."""
    request = http_request("OPTIONS", "archive-events", headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    response = app["archive_events_options"](request)
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert response.headers["WebHook-Allowed-Rate"] == "*"
    assert emulators.outcomes() == []


def test_the_webhook_handshake_needs_a_request_origin(emulators: Emulators, app: Any) -> None:
    """OPTIONS without WebHook-Request-Origin is a 400."""
    response = app["archive_events_options"](http_request("OPTIONS", "archive-events"))
    assert response.status_code == 400
    assert "WebHook-Allowed-Origin" not in response.headers


def test_health_is_ok_when_configured(emulators: Emulators, app: Any) -> None:
    """A configured app answers 200 {"status": "ok"}."""
    response = app["health"](http_request("GET", "health"))
    assert response.status_code == 200
    assert response_json(response)["status"] == "ok"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ARCHIVE_QUEUE_NAME": ""}, ("ARCHIVE_QUEUE_NAME",)),
        ({"OUTCOME_FILE": ""}, ("OUTCOME_FILE", "OUTCOME_TOPIC_NAME")),
        ({"OUTCOME_FILE": "", "OUTCOME_TOPIC_NAME": "acr-archive-outcomes"}, ("ServiceBusConnection",)),
        ({"MAX_DELIVERY_COUNT": "zero"}, ("MAX_DELIVERY_COUNT",)),
    ],
    ids=["no-queue", "no-outcome-destination", "topic-without-namespace", "malformed-setting"],
)
def test_health_answers_503_naming_what_is_missing(
    env: dict[str, str], named: tuple[str, ...], emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app that cannot run names the missing or malformed settings, never their values."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    response = app["health"](http_request("GET", "health"))
    assert response.status_code == 503
    text = response.get_body().decode()
    assert response_json(response)["status"] != "ok"
    for name in named:
        assert name in text
    assert "zero" not in text


def test_health_names_a_missing_setting_even_when_another_is_malformed(
    emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every missing and every malformed setting is named at once, as the settings error does."""
    # given one setting missing and another malformed
    monkeypatch.setenv("ARCHIVE_QUEUE_NAME", "")
    monkeypatch.setenv("MAX_DELIVERY_COUNT", "zero")
    # when health is asked
    response = app["health"](http_request("GET", "health"))
    # then both are named
    assert response.status_code == 503
    text = response.get_body().decode()
    assert "MAX_DELIVERY_COUNT" in text and "ARCHIVE_QUEUE_NAME" in text


def test_no_response_or_outcome_contains_a_setting_value(
    emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets and connection strings never appear in a response body, header or outcome."""
    # given secrets in the settings
    access_key = "sAsKeY" + uuid.uuid4().hex
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv(
        "ServiceBusConnection",
        f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=app;SharedAccessKey={access_key}",
    )
    identity_header = emulators.identity.header_secret
    body = json.dumps(flat()).encode()
    bad = json.dumps(flat(registryName="no")).encode()
    responses: list[func.HttpResponse] = []
    # when every route answers, in good and bad states
    responses.append(app["health"](http_request("GET", "health")))
    handshake = http_request("OPTIONS", "archive-events", headers={"WebHook-Request-Origin": "x"})
    responses.append(app["archive_events_options"](handshake))
    responses.append(post_events(app, body=body))
    responses.append(post_events(app, body=body, headers={"X-Signature-256": sign(body, SECRET)}))
    responses.append(post_events(app, body=bad, headers={"X-Signature-256": sign(bad, SECRET)}))
    responses.append(patch_run(app, RUN, body=b"{}", headers={"X-Signature-256": sign(b"{}", SECRET)}))
    monkeypatch.setenv("ARCHIVE_QUEUE_NAME", "")
    monkeypatch.setenv("ARM_TIMEOUT_SECONDS", "x" + access_key)
    broken = LazyFunctions()  # the host restarts the worker when app settings change
    responses.append(broken["health"](http_request("GET", "health")))
    responses.append(post_events(broken, body=body, headers={"X-Signature-256": sign(body, SECRET)}))
    # then no secret is in any of them
    assert [r.status_code for r in responses] == [200, 200, 401, 200, 400, 400, 503, 500]
    texts = [r.get_body().decode() + json.dumps(dict(r.headers)) for r in responses]
    texts.append(emulators.outcome_file.read_text())
    for text in texts:
        for secret in (SECRET, access_key, identity_header):
            assert secret not in text


def test_a_correlation_id_longer_than_service_bus_allows_is_cut_to_128(emulators: Emulators, app: dict[str, Callable[..., Any]]) -> None:
    """x-correlation-id becomes the outcome message's correlation id, which Service Bus caps at 128 characters."""
    response = app["archive_events"](http_request("POST", "archive-events", json_body=flat(), headers={"x-correlation-id": "c" * 300}))
    assert response.headers["x-correlation-id"] == "c" * 128
    assert emulators.outcomes()[0]["correlation_id"] == "c" * 128


# -- batches: their own threads, a time bound, retries without duplicates ------------------------


def wait_until(condition: Callable[[], bool], while_alive: threading.Thread) -> None:
    """Wait on observable state, for as long as the thread that should bring it about runs."""
    while not condition() and while_alive.is_alive():
        while_alive.join(0.005)


def test_a_large_batch_does_not_hold_up_another_request(emulators: Emulators, app: Any) -> None:
    """While a 100-event batch waits on a slow ARM, a small batch is answered: each batch runs on threads of its own."""
    # given a slow ARM and a 100-event batch in flight
    emulators.arm.auto_create = True
    emulators.arm.set_latency(0.2)
    answers: dict[str, Any] = {}
    big = threading.Thread(target=lambda: answers.setdefault("big", post_events(app, [flat(f"big{i}") for i in range(100)])))
    big.start()
    wait_until(lambda: emulators.arm.stats()["patches"] >= BATCH_CONCURRENCY, big)
    # when a two-event batch is posted meanwhile
    small = post_events(app, [flat("small1"), flat("small2")])
    # then it is answered while the large batch is still running
    still_running, patched = big.is_alive(), emulators.arm.stats()["patches"]
    big.join()
    assert small.status_code == 200 and still_running and patched < 100
    assert answers["big"].status_code == 200 and len(response_json(answers["big"])["outcomes"]) == 100


def test_a_batch_starts_no_event_past_its_time_bound(emulators: Emulators, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events not started within the batch's time (ARM_TIMEOUT_SECONDS + ARM_RETRY_MAX_SECONDS) fail retryable, unsent."""
    # given a batch time of 1 s and an ARM that needs 0.2 s per answer: 100 events at 8 a time need at least 2.6 s
    monkeypatch.setenv("ARM_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("ARM_RETRY_MAX_SECONDS", "0.5")
    emulators.arm.auto_create = True
    emulators.arm.set_latency(0.2)
    # when a 100-event batch is posted
    response = post_events(app, [flat(f"late{i}") for i in range(100)])
    # then every event has its outcome; those never started are retryable ArmUnavailable and never reached ARM
    outcomes = response_json(response)["outcomes"]
    unsent = [o for o in outcomes if o["error"] and o["error"]["message"].startswith("not attempted")]
    assert response.status_code == 200 and len(outcomes) == 100 == len(emulators.outcomes())
    assert unsent and all(o["error"]["code"] == "ArmUnavailable" and o["error"]["retryable"] and o["attempts"] == 0 for o in unsent)
    assert emulators.arm.stats()["patches"] == 100 - len(unsent)


@pytest.fixture
def bus(emulators: Emulators, monkeypatch: pytest.MonkeyPatch) -> RecordingServiceBus:
    """Outcomes go to a recording Service Bus topic instead of OUTCOME_FILE."""
    bus = RecordingServiceBus()
    monkeypatch.delenv("OUTCOME_FILE")
    monkeypatch.setenv("OUTCOME_TOPIC_NAME", "acr-archive-outcomes")
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "sb-test.servicebus.windows.net")
    return bus


@pytest.fixture
def bus_app(bus: RecordingServiceBus) -> LazyFunctions:
    """The app's functions publishing to the recording topic."""
    return LazyFunctions(publisher_factory=lambda s: ServiceBusPublisher(bus.client, s.outcome_topic_name or ""))


def test_a_retried_batch_after_a_failed_publish_repeats_its_outcome_ids(emulators: Emulators, bus_app: Any, bus: RecordingServiceBus) -> None:
    """Publishing fails part-way: 503 with Retry-After; the retry (same x-correlation-id) sends the same ids, so no duplicates."""
    # given a topic that refuses the second outcome once
    emulators.arm.auto_create = True
    bus.fail_next(None, ServiceBusError("refused"))
    events, headers = [flat("r1"), flat("r2"), flat("r3")], {"x-correlation-id": "client-request-7"}
    # when the batch is posted, then posted again as the caller retries
    first = post_events(bus_app, events, headers=headers)
    sent_first = [m.message_id for m in bus.messages()]
    again = post_events(bus_app, events, headers=headers)
    sent_again = [m.message_id for m in bus.messages()][len(sent_first):]
    # then the first answer says when to retry, and the retry publishes only ids already known or new positions
    assert first.status_code == 503 and int(first.headers["Retry-After"]) >= 1
    assert again.status_code == 200 and len(sent_again) == 3 == len(set(sent_again))
    assert sent_first == sent_again[:1]
    assert sent_again == [outcome_id for outcome_id in sent_again if "client-request-7" in outcome_id]


def test_without_a_correlation_header_each_request_has_new_outcome_ids(emulators: Emulators, bus_app: Any, bus: RecordingServiceBus) -> None:
    """No x-correlation-id: nothing ties two requests together, so their outcome ids differ."""
    emulators.arm.auto_create = True
    post_events(bus_app, [flat("r1")])
    post_events(bus_app, [flat("r1")])
    first, second = (m.message_id for m in bus.messages())
    assert first != second


def test_a_single_event_outcome_id_derives_from_the_correlation_header(emulators: Emulators, bus_app: Any, bus: RecordingServiceBus) -> None:
    """The same x-correlation-id on a single event and on the mirror gives the same id each time it is sent."""
    for _ in range(2):
        post_events(bus_app, flat(), headers={"x-correlation-id": "one"})
        patch_run(bus_app, payload={"isArchiveEnabled": True}, headers={"x-correlation-id": "two"})
    ids = [m.message_id for m in bus.messages()]
    assert ids[0] == ids[2] != ids[1] == ids[3]


def test_a_batch_with_a_lone_surrogate_element_is_one_rejection_before_any_update(
    emulators: Emulators, bus_app: Any, bus: RecordingServiceBus
) -> None:
    """With Service Bus: the whole body is refused (400, one strict outcome on the topic); the good element is not PATCHed."""
    body = ("[" + json.dumps(flat()) + ', {"runId": "\\ud800"}]').encode()
    response = post_events(bus_app, body=body)
    (outcome,) = bus.messages()
    published = strict_json(b"".join(outcome.body))
    assert response.status_code == 400 and response_json(response) == published
    assert published["error"]["code"] == "InvalidEvent" and published["error"]["message"].startswith("body:")
    assert emulators.arm.stats()["patches"] == 0
