"""Any bytes get an outcome, and everything written is strict JSON (contract §2, last rule), at every entry point.

Each body class is fed to the queue trigger, POST archive-events (alone and as a batch element) and the
ARM-compatible mirror; a loopback ARM that answers Runs holding NaN, 1e999 and lone surrogates checks the
other direction. Every outcome line, response body and Run is read back with tests.strict, a parser
written apart from the app's encoder.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage

from emulators.server import Exchange, LoopbackServer
from emulators.state import build_run
from tests.strict import strict_json, strict_lines
from tests.support import GROUP, REGISTRY, SUB, Emulators, functions, http_request, run_route_params, start_emulators

RUN = "cab7"
EVENT = {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": RUN, "isArchiveEnabled": True}
EVENT_TEXT = json.dumps(EVENT)

# (body, the words the InvalidEvent message must hold): one row per class of body that is not strict JSON.
HOSTILE = {
    "not-utf-8": (b'{"runId": "\xff"}', "body: is not UTF-8"),
    "utf-16": ('{"runId": "a"}'.encode("utf-16"), "body: is not UTF-8"),
    "nan": (EVENT_TEXT.replace("true", "NaN").encode(), "body: holds NaN"),
    "infinity": (EVENT_TEXT[:-1].encode() + b', "x": -Infinity}', "body: holds -Infinity"),
    "huge-float": (EVENT_TEXT[:-1].encode() + b', "x": 1e999}', "body: holds a number too large"),
    "integer-past-digit-limit": (EVENT_TEXT[:-1].encode() + b', "x": ' + b"7" * 5000 + b"}", "body: holds an integer"),
    "nested-100k": (b"[" * 100_000 + b"]" * 100_000, "body: is nested deeper"),
    "objects-nested-100k": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "body: is nested deeper"),
    "lone-surrogate-value": (EVENT_TEXT[:-1].encode() + b', "x": "\\ud800"}', "body: holds a lone surrogate"),
    "lone-surrogate-key": (EVENT_TEXT[:-1].encode() + b', "\\udc00": 1}', "body: holds a lone surrogate"),
    "duplicate-key": (EVENT_TEXT[:-1].encode() + b', "runId": "other"}', "body: repeats the key 'runId'"),
    "whitespace-only": (b" \r\n\t ", "body: is not valid JSON"),
    "bom-only": (b"\xef\xbb\xbf", "body: is not valid JSON"),
    "empty": (b"", "body: is not valid JSON"),
    "trailing-garbage": (EVENT_TEXT.encode() + b"}", "body: is not valid JSON"),
}
BATCH_HOSTILE = {
    "batch-element-lone-surrogate": (f'[{EVENT_TEXT}, {{"runId": "\\ud800"}}]'.encode(), "body: holds a lone surrogate"),
    "batch-element-nested": (f"[{EVENT_TEXT}, ".encode() + b"[" * 5000 + b"]" * 5000 + b"]", "body: is nested deeper"),
    "batch-element-nan": (f"[{EVENT_TEXT}, NaN]".encode(), "body: holds NaN"),
    "validation-code-nan": (
        b'[{"id": "1", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": {"validationCode": NaN}}]',
        "body: holds NaN",
    ),
}


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """Emulators that create any run they are asked about."""
    with start_emulators(monkeypatch, tmp_path) as emulators:
        emulators.arm.auto_create = True
        yield emulators


def queue_message(body: bytes, message_id: str = "hostile-1", **properties: Any) -> ServiceBusMessage:
    """A real azure.functions ServiceBusMessage as the host hands it over."""
    return ServiceBusMessage(body=body, message_id=message_id, delivery_count=1, application_properties=properties, user_properties={})


def post(body: bytes, content_type: str = "application/json") -> Any:
    """POST /api/archive-events."""
    return functions()["archive_events"](http_request("POST", "archive-events", body=body, headers={"Content-Type": content_type}))


def assert_rejected_naming(record: dict[str, Any], words: str) -> None:
    """One rejected InvalidEvent outcome whose message holds `words`."""
    body = record["body"]
    assert body["outcome"] == "rejected" and body["error"]["code"] == "InvalidEvent", body["error"]
    assert words in body["error"]["message"]


@pytest.mark.parametrize(("body", "words"), HOSTILE.values(), ids=HOSTILE.keys())
def test_the_queue_rejects_each_hostile_body_with_one_strict_outcome(body: bytes, words: str, running: Emulators) -> None:
    """The function returns (message completed), one rejected outcome names the body, ARM is never called."""
    assert functions()["archive_queue"](queue_message(body)) is None
    (record,) = strict_lines(running.outcome_file)
    assert_rejected_naming(record, words)
    assert running.arm.stats()["requests"] == 0


@pytest.mark.parametrize(("body", "words"), [*HOSTILE.values(), *BATCH_HOSTILE.values()], ids=[*HOSTILE, *BATCH_HOSTILE])
def test_posting_a_hostile_body_answers_400_with_its_one_outcome(body: bytes, words: str, running: Emulators) -> None:
    """400 whose body is the outcome; one outcome in all (a batch's good element is not processed alone); no ARM call."""
    response = post(body)
    assert response.status_code == 400
    answered = strict_json(response.get_body())
    (record,) = strict_lines(running.outcome_file)
    assert_rejected_naming(record, words)
    assert answered == record["body"] and running.arm.stats()["requests"] == 0


@pytest.mark.parametrize(("body", "words"), HOSTILE.values(), ids=HOSTILE.keys())
def test_the_mirror_answers_a_hostile_body_400_in_arm_error_shape(body: bytes, words: str, running: Emulators) -> None:
    """The PATCH mirror: ARM's error shape naming the body, one rejected outcome, no ARM call."""
    request = http_request("PATCH", "x", body=body, headers={"Content-Type": "application/json"}, route_params=run_route_params(RUN))
    response = functions()["arm_patch_run"](request)
    assert response.status_code == 400
    error = strict_json(response.get_body())["error"]
    (record,) = strict_lines(running.outcome_file)
    assert error["code"] == "InvalidEvent" and words in error["message"]
    assert_rejected_naming(record, words)


# -- a Run that is not strict JSON -------------------------------------------------------------

HOSTILE_FIELDS = '"hostile": {"nan": NaN, "inf": Infinity, "big": 1e999, "lone": "\\ud800x", "pair": "\\ud83d\\ude00", "nested": [[-Infinity]]}'
STRICT_FIELDS = {"nan": None, "inf": None, "big": None, "lone": "\ufffdx", "pair": "\U0001f600", "nested": [[None]]}


class HostileArm(LoopbackServer):
    """ARM answering every request 200 with a Run that json.loads accepts but strict JSON does not allow."""

    def handle(self, exchange: Exchange) -> None:
        run = json.dumps(build_run(SUB, GROUP, REGISTRY, RUN, example="RunsUpdate", is_archive_enabled=True))
        body = ("{" + HOSTILE_FIELDS + "," + run[1:]).encode()
        exchange.reply(200, body, {"Content-Type": "application/json"})


@pytest.fixture
def hostile_arm(running: Emulators, monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileArm]:
    """The app pointed at HostileArm (tokens still from the identity emulator)."""
    with HostileArm() as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        yield server


def test_a_run_holding_nan_and_lone_surrogates_is_written_as_strict_json(running: Emulators, hostile_arm: HostileArm) -> None:
    """Queue, single POST, batch POST and mirror: each answer and outcome is strict; only the unwritable parts changed."""
    entry = functions()
    assert entry["archive_queue"](queue_message(EVENT_TEXT.encode())) is None
    single = post(EVENT_TEXT.encode())
    batch = post(json.dumps([EVENT, EVENT]).encode())
    mirror = entry["arm_patch_run"](
        http_request("PATCH", "x", body=b'{"isArchiveEnabled": true}', headers={"Content-Type": "application/json"}, route_params=run_route_params(RUN))
    )
    assert [r.status_code for r in (single, batch, mirror)] == [200, 200, 200]
    runs = [strict_json(single.get_body())["run"], *(o["run"] for o in strict_json(batch.get_body())["outcomes"]), strict_json(mirror.get_body())]
    runs += [record["body"]["run"] for record in strict_lines(running.outcome_file)]
    assert len(runs) == 4 + 5
    assert all(run["hostile"] == STRICT_FIELDS and run["name"] == RUN for run in runs)


# -- rawEvent is bounded in bytes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["\x01" * 65_536, "\u00e9" * 40_000, "\U0001f600" * 20_000, "\u2028" * 30_000],
    ids=["65536-control-characters", "40000-two-byte-characters", "20000-four-byte-characters", "30000-line-separators"],
)
def test_raw_event_is_the_longest_prefix_whose_json_fits_64_kib(text: str, running: Emulators) -> None:
    """Capped by bytes of its JSON form, not characters: each of these is at most 64 Ki characters yet must be cut."""
    functions()["archive_queue"](queue_message(text.encode()))
    (record,) = strict_lines(running.outcome_file)
    raw = record["body"]["rawEvent"]

    def size(value: str) -> int:
        return len(json.dumps(value, ensure_ascii=False).encode()) - 2

    assert len(text) <= 65_536 < size(text)
    assert text.startswith(raw) and size(raw) <= 65_536 < size(text[: len(raw) + 1])


class HostileArmError(LoopbackServer):
    """ARM refusing every request 409 with an error whose code holds a lone surrogate and whose message is 1 MB."""

    def handle(self, exchange: Exchange) -> None:
        body = b'{"error": {"code": "Conflict\\ud800' + b"C" * 300 + b'", "message": "' + b"m" * 1_000_000 + b'"}}'
        exchange.reply(409, body, {"Content-Type": "application/json", "x-ms-request-id": "req-1"})


def test_an_arm_error_of_hostile_text_is_bounded_and_strict_in_the_outcome(running: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    """ARM's error code (also an application property) and message are cut and freed of lone surrogates."""
    with HostileArmError() as server:
        monkeypatch.setenv("ARM_ENDPOINT", server.url)
        assert functions()["archive_queue"](queue_message(EVENT_TEXT.encode())) is None
    (record,) = strict_lines(running.outcome_file)
    error, code_property = record["body"]["error"], record["application_properties"]["errorCode"]
    assert record["body"]["outcome"] == "failed" and error["httpStatus"] == 409
    assert code_property == error["code"] and code_property.startswith("Conflict\ufffdC") and len(code_property) <= 128
    assert 0 < len(error["message"]) <= 4096
