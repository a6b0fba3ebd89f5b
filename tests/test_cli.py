"""The operator CLI (`acr-archiver`), against the ARM and identity emulators and the recording Service Bus fake."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from hypothesis import given, settings
from hypothesis import strategies as st
from azure.servicebus import ServiceBusMessage
from azure.servicebus.exceptions import MessageLockLostError, ServiceBusConnectionError

from shared.arm import ArmResult
from archiver_cli import main
from archiver_cli.context import DEFAULT_SUBSCRIPTION
from shared.errors import ArmError, InvalidEvent
from shared.events import ArchiveRequest
from shared.outcome import Inbound, build_outcome
from shared.publisher import to_message
from tests.fakes import RecordingServiceBus, dead_letter_path, subscription_path
from emulators import ArmEmulator, IdentityEmulator
from tests.support import (
    GROUP, REGISTRY, SEED_RUN, SUB, Emulators, assert_valid_run, closed_port_url, run_resource_id, start_emulators,
)

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "acr-archive-events"
TOPIC = "acr-archive-outcomes"
DLQ = dead_letter_path(QUEUE)
SETTINGS = {"ARCHIVE_QUEUE_NAME": QUEUE, "OUTCOME_TOPIC_NAME": TOPIC, "DEFAULT_SUBSCRIPTION_ID": SUB, "DEFAULT_RESOURCE_GROUP": GROUP}
EVENT = {"registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True}


class Result:
    """Exit status and the text written to stdout and stderr."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def cli(*argv: str, bus: RecordingServiceBus | None = None, env: dict[str, str] | None = None, **seams: Any) -> Result:
    """Run the CLI in-process with the given environment and Service Bus fake."""
    out, err = io.StringIO(), io.StringIO()
    status = main(
        list(argv),
        env=SETTINGS if env is None else env,
        open_servicebus=bus.client if bus is not None else None,
        stdout=out,
        stderr=err,
        **seams,
    )
    return Result(status, out.getvalue(), err.getvalue())


def assert_one_line_error(result: Result, status: int, *fragments: str) -> None:
    """A failure is one `acr-archiver: error: …` line with a non-zero status, never a traceback."""
    assert result.status == status, (result.status, result.err)
    error_lines = [line for line in result.err.splitlines() if line.startswith("acr-archiver: error:")]
    assert len(error_lines) == 1, result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


@pytest.fixture
def emulators(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Emulators]:
    """ARM and identity emulators; os.environ points azure-identity at the identity endpoint."""
    with start_emulators(monkeypatch, tmp_path, **SETTINGS) as running:
        yield running


def dead_letter(bus: RecordingServiceBus, event: Any, message_id: str, **properties: Any) -> int:
    """A queue message as the app's senders make it, dead-lettered by Service Bus."""
    message = ServiceBusMessage(
        json.dumps(event).encode(), message_id=message_id, correlation_id=f"corr-{message_id}",
        content_type="application/json", application_properties=properties or None,
    )
    return bus.dead_letter(QUEUE, message)


# -- archive ------------------------------------------------------------------------------------


def test_archive_patches_the_run_and_prints_it_as_json(emulators: Emulators) -> None:
    """One PATCH through the real ArmClient with DefaultAzureCredential; stdout is the final Run."""
    result = cli("archive", "-r", REGISTRY, "--run-id", SEED_RUN, env=dict(os.environ))
    assert result.status == 0, result.err
    run = json.loads(result.out)
    assert_valid_run(run)
    assert run["properties"]["isArchiveEnabled"] is True
    assert emulators.arm.get_run(SUB, GROUP, REGISTRY, SEED_RUN)["properties"]["isArchiveEnabled"] is True
    assert emulators.arm.stats()["patches"] == 1


def test_archive_no_archive_true_clears_the_flag_as_az_does(emulators: Emulators) -> None:
    """`--no-archive true` sends isArchiveEnabled false (az acr task update-run semantics)."""
    emulators.arm.add_run(SUB, GROUP, REGISTRY, "cab7", is_archive_enabled=True)
    result = cli("archive", run_resource_id("cab7"), "--no-archive", "true", env=dict(os.environ))
    assert result.status == 0, result.err
    assert json.loads(result.out)["properties"]["isArchiveEnabled"] is False
    assert emulators.arm.requests_log[-1]["body"] == {"isArchiveEnabled": False}


def test_archive_prints_a_table_like_az(emulators: Emulators) -> None:
    """-o table: a header, a rule and one row with the run id, status and the archive flag."""
    result = cli("archive", "--registry", REGISTRY, "--run-id", SEED_RUN, "-o", "table", env=dict(os.environ))
    assert result.status == 0, result.err
    header, rule, row = result.out.splitlines()
    assert header.split() == ["RUN", "ID", "TASK", "PLATFORM", "STATUS", "TRIGGER", "STARTED", "DURATION", "ARCHIVED"]
    assert set(rule) <= {"-", " "}
    assert row.split()[:4] == [SEED_RUN, "myTask", "Linux", "Succeeded"] and row.split()[-1] == "True"


def test_archive_of_a_missing_run_is_one_line_with_arms_code(emulators: Emulators) -> None:
    """ARM's 404 becomes exit status 1 and one line naming ResourceNotFound and the request id."""
    result = cli("archive", "-r", REGISTRY, "--run-id", "doesnotexist1", env=dict(os.environ))
    assert_one_line_error(result, 1, "ResourceNotFound", "HTTP 404", "x-ms-request-id")
    assert result.out == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["-r", REGISTRY, "--run-id", "../etc"], "runId:"),
        (["-r", "no", "--run-id", "cab7"], "registryName:"),
        (["-r", REGISTRY], "runId: required"),
        (["/subscriptions/x/runs/y"], "runResourceId:"),
    ],
    ids=["bad-run-id", "bad-registry", "no-run-id", "bad-resource-id"],
)
def test_archive_refuses_bad_coordinates_before_calling_arm(emulators: Emulators, argv: list[str], fragment: str) -> None:
    """The event rules apply: exit status 2 naming the field, and no request reaches ARM."""
    result = cli("archive", *argv, env=dict(os.environ))
    assert_one_line_error(result, 2, fragment)
    assert emulators.arm.stats()["requests"] == 0


def test_archive_without_a_sign_in_says_how_to_get_one(emulators: Emulators) -> None:
    """No identity endpoint in the settings and a sign-in that gives no token: one line suggesting az login, exit status 1."""

    class SignedOut:
        def get_token(self, *scopes: str, **_: Any) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token.\nAttempted credentials: …")

    env = {name: value for name, value in os.environ.items() if name not in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER")}
    result = cli("archive", "-r", REGISTRY, "--run-id", SEED_RUN, env=env, credential_factory=lambda _: SignedOut())
    assert_one_line_error(result, 1, "no Azure token", "az login")
    assert emulators.arm.stats()["requests"] == 0


def _emulator_settings_file(tmp_path: Path, identity_endpoint: str, header: str, arm_url: str) -> Path:
    """A local.settings.emulator.json of our own: the identity endpoint lives in the file, not the environment."""
    path = tmp_path / "local.settings.emulator.json"
    values = {**SETTINGS, "ARM_ENDPOINT": arm_url, "IDENTITY_ENDPOINT": identity_endpoint, "IDENTITY_HEADER": header}
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


def test_a_settings_files_identity_endpoint_gives_archive_its_token(
    identity: IdentityEmulator, arm: ArmEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--settings local.settings.emulator.json archive …: the file's IDENTITY_ENDPOINT/HEADER reach azure-identity."""
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    path = _emulator_settings_file(tmp_path, identity.endpoint, identity.header_secret, arm.url)
    result = cli("--settings", str(path), "archive", "-r", REGISTRY, "--run-id", SEED_RUN, env={})
    assert result.status == 0, result.err
    assert json.loads(result.out)["properties"]["isArchiveEnabled"] is True
    assert identity.issued and arm.stats()["patches"] == 1
    assert "IDENTITY_ENDPOINT" not in os.environ and "IDENTITY_HEADER" not in os.environ  # lent for the command only


@pytest.mark.parametrize("endpoint", ["refused", "wrong-secret"])
def test_an_identity_endpoint_that_gives_no_token_is_one_line_saying_which(
    endpoint: str, identity: IdentityEmulator, arm: ArmEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token from the file's identity endpoint: one line naming it, no azure-identity report, no `az login`."""
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        monkeypatch.delenv(name, raising=False)
    refused = endpoint == "refused"
    url, header = (closed_port_url() + "/msi/token", identity.header_secret) if refused else (identity.endpoint, "not-the-secret")
    path = _emulator_settings_file(tmp_path, url, header, arm.url)
    result = cli("--settings", str(path), "archive", "-r", REGISTRY, "--run-id", SEED_RUN, env={})
    assert_one_line_error(result, 1, "no Azure token", f"IDENTITY_ENDPOINT={url}", "running")
    assert result.err.count("\n") == 1 and "az login" not in result.err and "not-the-secret" not in result.err
    assert arm.stats()["requests"] == 0


def test_archive_refuses_a_registry_outside_allowed_registries(emulators: Emulators) -> None:
    """ALLOWED_REGISTRIES binds `archive` as it binds `send` and the app: exit status 2, and no PATCH."""
    result = cli("archive", "-r", REGISTRY, "--run-id", SEED_RUN, env={**os.environ, "ALLOWED_REGISTRIES": "otherRegistry"})
    assert_one_line_error(result, 2, "ALLOWED_REGISTRIES")
    assert emulators.arm.stats()["requests"] == 0


# -- send ---------------------------------------------------------------------------------------


def test_send_enqueues_each_argument_as_a_json_message() -> None:
    """Each valid event becomes one application/json message on the archive queue; stdout lists their ids."""
    bus = RecordingServiceBus()
    other = {"runResourceId": run_resource_id("cab7"), "isArchiveEnabled": False}
    result = cli("send", json.dumps(EVENT), json.dumps(other), bus=bus)
    assert result.status == 0, result.err
    messages = bus.messages(QUEUE)
    assert [json.loads(b"".join(m.body)) for m in messages] == [EVENT, other]
    assert {m.content_type for m in messages} == {"application/json"}
    assert len({m.message_id for m in messages}) == 2
    listed = result.out.splitlines()[2:]
    assert [line.split()[0] for line in listed] == [m.message_id for m in messages]
    assert "sent 2 event(s) to acr-archive-events" in result.err


def test_send_reads_json_lines_and_uses_a_cloudevents_id_as_the_message_id(tmp_path: Path) -> None:
    """A JSONL file: one message per line; a CloudEvents id becomes the message id (so a re-send is a duplicate)."""
    cloud_event = {"specversion": "1.0", "id": "ce-1", "source": "/ci", "type": "Acr.Run.ArchiveRequested", "data": EVENT}
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(EVENT) + "\n\n" + json.dumps(cloud_event) + "\n")
    bus = RecordingServiceBus()
    result = cli("send", "--file", str(path), "-o", "json", bus=bus)
    assert result.status == 0, result.err
    assert [m.message_id for m in bus.messages(QUEUE)][1] == "ce-1"
    assert [line["source"] for line in result.json_lines()] == [f"{path} line 1", f"{path} line 3"]


def test_send_reads_a_json_array_file(tmp_path: Path) -> None:
    """A JSON array: one message per element."""
    path = tmp_path / "events.json"
    path.write_text(json.dumps([EVENT, EVENT, EVENT], indent=2))
    bus = RecordingServiceBus()
    assert cli("send", "-f", str(path), bus=bus).status == 0
    assert len(bus.messages(QUEUE)) == 3


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (f'{json.dumps(EVENT)}\n{json.dumps(EVENT)}\n{{"registryName": "{REGISTRY}", "isArchiveEnabled": true}}\n', "line 3: runId: required"),
        (f'{json.dumps(EVENT)}\n{{"runId": "cab7", "isArchiveEnabled": "true"}}\n', "line 2: isArchiveEnabled: must be a JSON boolean"),
        (f'{json.dumps(EVENT)}\n{{"runId": \n', "line 2: not valid JSON"),
        ('[\n  {"runId": "cab7", "isArchiveEnabled": true},\n  {"runId": "..", "isArchiveEnabled": true}\n]', "line 3: runId:"),
    ],
    ids=["missing-field", "string-flag", "broken-json", "array-element"],
)
def test_send_refuses_the_first_bad_event_naming_field_and_line(tmp_path: Path, content: str, fragment: str) -> None:
    """Nothing is sent when any event is invalid; the error names the file line and the field."""
    path = tmp_path / "events.jsonl"
    path.write_text(content)
    bus = RecordingServiceBus()
    result = cli("send", "--file", str(path), bus=bus, env={**SETTINGS, "DEFAULT_REGISTRY_NAME": REGISTRY})
    assert_one_line_error(result, 2, f"{path} {fragment}")
    assert bus.sent == [] and bus.clients_created == 0


def test_send_refuses_a_registry_the_app_would_reject() -> None:
    """ALLOWED_REGISTRIES applies as it does in the app."""
    bus = RecordingServiceBus()
    result = cli("send", json.dumps(EVENT), bus=bus, env={**SETTINGS, "ALLOWED_REGISTRIES": "otherRegistry"})
    assert_one_line_error(result, 2, "argument 1: registryName:", "ALLOWED_REGISTRIES")
    assert bus.sent == []


def test_send_dry_run_validates_and_sends_nothing() -> None:
    """--dry-run: valid events are counted, no client is even opened."""
    bus = RecordingServiceBus()
    result = cli("send", "--dry-run", json.dumps(EVENT), bus=bus)
    assert result.status == 0 and "1 valid event(s); nothing sent" in result.err
    assert bus.clients_created == 0


def test_send_many_events_in_batches_with_a_progress_bar(tmp_path: Path) -> None:
    """120 events: three sends of at most 50, and a progress bar on stderr that reaches 120/120."""
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({**EVENT, "runId": f"run{n}"}) + "\n" for n in range(120)))
    bus = RecordingServiceBus()
    result = cli("--progress", "send", "-f", str(path), bus=bus)
    assert result.status == 0, result.err
    assert len(bus.messages(QUEUE)) == 120
    assert [b"".join(m.body) for m in bus.messages(QUEUE)][-1] == json.dumps({**EVENT, "runId": "run119"}, separators=(",", ":")).encode()
    assert "sending to acr-archive-events: 120/120 (" in result.err  # piped: plain lines, the last one complete
    assert len([entry for entry in bus.log if entry[0] == "send"]) == 120


def test_a_refused_send_says_how_many_went_through(tmp_path: Path) -> None:
    """A Service Bus failure on the second batch: one line with the count already sent, exit status 1."""
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({**EVENT, "runId": f"run{n}"}) + "\n" for n in range(60)))
    bus = RecordingServiceBus()
    bus.fail_next(None, ServiceBusConnectionError(message="connection to the namespace was lost\nmore detail"))
    result = cli("send", "-f", str(path), bus=bus)
    assert_one_line_error(result, 1, "sent 50 of 60 event(s)", "ServiceBusConnectionError: connection to the namespace was lost")
    assert len(bus.messages(QUEUE)) == 50


def test_send_without_any_service_bus_setting_says_which_to_set() -> None:
    """No connection string and no namespace: exit status 2 naming the settings."""
    result = cli("send", json.dumps(EVENT), env=SETTINGS)
    assert_one_line_error(result, 2, "ServiceBusConnection__fullyQualifiedNamespace", "--namespace")


def test_a_malformed_connection_string_is_named_never_shown() -> None:
    """A bad ServiceBusConnection is reported by name; its value never appears."""
    secret = "Endpoint=nonsense;SharedAccessKey=do-not-print-me"
    result = cli("send", json.dumps(EVENT), env={**SETTINGS, "ServiceBusConnection": secret})
    assert_one_line_error(result, 2, "ServiceBusConnection")
    assert "do-not-print-me" not in result.err + result.out


# -- dead-letters --------------------------------------------------------------------------------


def test_dead_letters_list_browses_without_removing() -> None:
    """list: sequence number, reason and the event, for each dead letter; all stay in the dead-letter queue."""
    bus = RecordingServiceBus()
    for n in range(3):
        dead_letter(bus, {**EVENT, "runId": f"run{n}"}, f"m{n}")
    result = cli("dead-letters", "list", bus=bus)
    assert result.status == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split()[:4] == ["SEQ", "ENQUEUED", "DELIVERIES", "REASON"]
    assert len(lines) == 5 and "MaxDeliveryCountExceeded" in lines[2] and f"{REGISTRY}/run0 isArchiveEnabled=True" in lines[2]
    assert len(bus.waiting(DLQ)) == 3
    assert [entry for entry in bus.log if entry[0] != "send"] == []


def test_dead_letters_list_as_json_lines() -> None:
    """-o json: one object per dead letter with the reason, the description and the decoded event."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "m1", origin="pipeline")
    (item,) = cli("dead-letters", "-o", "json", bus=bus).json_lines()
    assert item["messageId"] == "m1" and item["correlationId"] == "corr-m1"
    assert item["deadLetterReason"] == "MaxDeliveryCountExceeded" and item["deadLetterErrorDescription"]
    assert item["applicationProperties"] == {"origin": "pipeline"}
    assert item["body"] == EVENT


def test_resubmit_sends_each_copy_before_completing_its_dead_letter() -> None:
    """Every dead letter: the copy is sent to the queue first, and only then is the dead letter completed."""
    bus = RecordingServiceBus()
    for n in range(3):
        dead_letter(bus, {**EVENT, "runId": f"run{n}"}, f"m{n}", origin="pipeline")
    result = cli("dead-letters", "resubmit", bus=bus)
    assert result.status == 0, result.err
    assert bus.log == [
        entry
        for n in range(3)
        for entry in (("send", QUEUE, f"m{n}:resubmit-1"), ("complete", DLQ, f"m{n}"))
    ]
    assert bus.waiting(DLQ) == []
    assert "re-submitted 3 dead letter(s) to acr-archive-events" in result.err


def test_a_resubmitted_copy_keeps_body_correlation_and_properties() -> None:
    """Same body, content type and correlation id; properties kept, plus resubmittedFrom and resubmitCount."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "m1", origin="pipeline")
    cli("dead-letters", "resubmit", bus=bus)
    (copy,) = bus.messages(QUEUE)
    assert json.loads(b"".join(copy.body)) == EVENT
    assert copy.content_type == "application/json" and copy.correlation_id == "corr-m1"
    assert copy.message_id == "m1:resubmit-1"
    assert copy.application_properties == {"origin": "pipeline", "resubmittedFrom": "m1", "resubmitCount": 1}


def test_a_copy_dead_lettered_again_is_resubmitted_under_the_next_count() -> None:
    """The chain keeps its first message id; the count grows."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "m1")
    cli("dead-letters", "resubmit", bus=bus)
    (copy,) = bus.messages(QUEUE)
    bus.dead_letter(QUEUE, copy)
    cli("dead-letters", "resubmit", bus=bus)
    second = bus.messages(QUEUE)[-1]
    assert second.message_id == "m1:resubmit-2"
    assert second.application_properties["resubmittedFrom"] == "m1" and second.application_properties["resubmitCount"] == 2
    assert second.correlation_id == "corr-m1"


def test_a_failed_send_leaves_the_dead_letter_in_place() -> None:
    """The second copy is refused: it and the rest are abandoned, never completed; exit status 1, one line."""
    bus = RecordingServiceBus()
    for n in range(3):
        dead_letter(bus, {**EVENT, "runId": f"run{n}"}, f"m{n}")
    bus.fail_send_of("m1:resubmit-1", ServiceBusConnectionError(message="link detached"))
    result = cli("dead-letters", "resubmit", bus=bus)
    assert_one_line_error(result, 1, "#2 was not re-submitted", "stays in the dead-letter queue", "link detached")
    assert bus.log == [
        ("send", QUEUE, "m0:resubmit-1"),
        ("complete", DLQ, "m0"),
        ("abandon", DLQ, "m1"),
        ("abandon", DLQ, "m2"),
    ]
    waiting = bus.waiting(DLQ)
    assert [m.sequence_number for m in waiting] == [2, 3] and all(m.locked_by is None for m in waiting)
    assert "re-submitted 1 dead letter(s)" in result.err


def test_a_dead_letter_that_cannot_be_completed_is_reported_after_its_copy_was_sent() -> None:
    """Lock lost after the send: the copy stays sent, the dead letter stays, the line says a re-run is a duplicate."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "m1")
    bus.fail_next_settlement(MessageLockLostError(message="lock expired"))
    result = cli("dead-letters", "resubmit", bus=bus)
    assert_one_line_error(result, 1, "re-submitted as m1:resubmit-1 but could not be removed", "duplicate-detection")
    assert [m.message_id for m in bus.messages(QUEUE)] == ["m1:resubmit-1"]
    assert len(bus.waiting(DLQ)) == 1


def test_resubmit_dry_run_sends_and_settles_nothing() -> None:
    """--dry-run lists what would be sent, with the new message ids; the dead letters are only peeked."""
    bus = RecordingServiceBus()
    dead_letter(bus, EVENT, "m1")
    result = cli("dead-letters", "resubmit", "--dry-run", bus=bus)
    assert result.status == 0, result.err
    assert "m1:resubmit-1" in result.out and "would re-submit 1 dead letter(s)" in result.err
    assert bus.log == [] and len(bus.waiting(DLQ)) == 1 and bus.waiting(DLQ)[0].locked_by is None


def test_resubmit_stops_at_max_and_shows_progress() -> None:
    """--max bounds the run; --progress draws the bar against the peeked total."""
    bus = RecordingServiceBus()
    for n in range(30):
        dead_letter(bus, {**EVENT, "runId": f"run{n}"}, f"m{n}")
    result = cli("--progress", "dead-letters", "resubmit", "--max", "25", bus=bus)
    assert result.status == 0, result.err
    assert len(bus.messages(QUEUE)) == 25 and len(bus.waiting(DLQ)) == 5
    assert "25/25" in result.err


# -- outcomes ------------------------------------------------------------------------------------


def _outcome_message(run_id: str, *, failed: bool) -> ServiceBusMessage:
    request = ArchiveRequest(SUB, GROUP, REGISTRY, run_id, True)
    inbound = Inbound(source="servicebus", correlation_id=f"corr-{run_id}", message_id=f"in-{run_id}", delivery_count=1, raw="{}")
    if failed:
        error = ArmError("The Resource was not found.", code="ResourceNotFound", status=404, request_id="req-1")
        return to_message(build_outcome(inbound, request, error=error))
    run = {"id": run_resource_id(run_id), "name": run_id, "properties": {"isArchiveEnabled": True, "provisioningState": "Succeeded"}}
    return to_message(build_outcome(inbound, request, result=ArmResult(run, 200, 1, "req-2")))


def test_outcomes_are_received_printed_and_completed() -> None:
    """The table shows outcome, run, HTTP status and error; each message is completed after it is printed."""
    bus = RecordingServiceBus()
    bus.deliver(TOPIC, DEFAULT_SUBSCRIPTION, _outcome_message("gone1", failed=True))
    bus.deliver(TOPIC, DEFAULT_SUBSCRIPTION, _outcome_message("gone2", failed=True))
    result = cli("outcomes", bus=bus)
    assert result.status == 0, result.err
    header, _, first, second = result.out.splitlines()
    assert header.split()[:3] == ["COMPLETED", "OUTCOME", "SOURCE"]
    assert "failed" in first and f"{REGISTRY}/gone1" in first and "404" in first and "ResourceNotFound" in first and "corr-gone1" in first
    assert f"{REGISTRY}/gone2" in second
    assert bus.waiting(subscription_path(TOPIC, DEFAULT_SUBSCRIPTION)) == []
    assert [entry[0] for entry in bus.log] == ["complete", "complete"]
    assert "2 outcome(s) from acr-archive-outcomes/failed-outcomes" in result.err


def test_outcomes_as_json_are_outcome_file_lines() -> None:
    """-o json prints exactly what OUTCOME_FILE would hold: properties with their JSON types, and the body."""
    bus = RecordingServiceBus()
    message = _outcome_message("cab7", failed=False)
    bus.deliver(TOPIC, "all", message)
    (line,) = cli("outcomes", "--subscription", "all", "-o", "json", bus=bus).json_lines()
    assert line["message_id"] == "in-cab7:outcome" and line["correlation_id"] == "corr-cab7"
    assert line["subject"] == "RunArchiveUpdated" and line["content_type"] == "application/json"
    assert line["application_properties"] == message.application_properties
    assert line["application_properties"]["isArchiveEnabled"] is True and line["application_properties"]["httpStatus"] == 200
    assert line["body"] == json.loads(b"".join(message.body))


def test_outcomes_peek_leaves_them_on_the_subscription() -> None:
    """--peek browses: nothing is completed."""
    bus = RecordingServiceBus()
    bus.deliver(TOPIC, DEFAULT_SUBSCRIPTION, _outcome_message("gone1", failed=True))
    result = cli("outcomes", "--peek", bus=bus)
    assert result.status == 0 and "gone1" in result.out
    assert len(bus.waiting(subscription_path(TOPIC, DEFAULT_SUBSCRIPTION))) == 1 and bus.log == []


def test_outcomes_stop_at_max() -> None:
    """--max 1 takes one outcome and leaves the rest."""
    bus = RecordingServiceBus()
    for n in range(3):
        bus.deliver(TOPIC, DEFAULT_SUBSCRIPTION, _outcome_message(f"gone{n}", failed=True))
    assert cli("outcomes", "--max", "1", bus=bus).status == 0
    assert len(bus.waiting(subscription_path(TOPIC, DEFAULT_SUBSCRIPTION))) == 2


def test_outcomes_of_an_outcome_file_are_printed_the_same_way(tmp_path: Path) -> None:
    """--file reads OUTCOME_FILE lines (the local sink) into the same table."""
    path = tmp_path / "outcomes.jsonl"
    inbound = Inbound(source="http", correlation_id="c1", raw='{"runId": 5}')
    rejected = build_outcome(inbound, None, error=InvalidEvent("runId", "must be a string, not a number"))
    path.write_text(json.dumps(rejected.as_record()) + "\n")
    result = cli("outcomes", "--file", str(path))
    assert result.status == 0, result.err
    assert "rejected" in result.out and "InvalidEvent: runId: must be a string" in result.out


def _outcome_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "outcomes.jsonl"
    inbound = Inbound(source="http", correlation_id="c1", raw='{"runId": 5}')
    line = json.dumps(build_outcome(inbound, None, error=InvalidEvent("runId", "must be a string, not a number")).as_record())
    path.write_text((line + "\n") * count)
    return path


@pytest.mark.parametrize("output", ["table", "json"])
def test_outcomes_of_a_file_stop_at_max(tmp_path: Path, output: str) -> None:
    """--max bounds --file too: --max 2 of 5 lines prints two."""
    result = cli("outcomes", "--file", str(_outcome_file(tmp_path, 5)), "--max", "2", "-o", output)
    assert result.status == 0, result.err
    assert len([line for line in result.out.splitlines() if "rejected" in line]) == 2 and "2 outcome(s)" in result.err


@pytest.mark.parametrize(
    "option",
    [["--follow"], ["--subscription", "all"], ["--topic", "t"], ["--peek"], ["--wait", "1"]],
    ids=["follow", "subscription", "topic", "peek", "wait"],
)
def test_outcomes_of_a_file_refuse_the_subscription_options(tmp_path: Path, option: list[str]) -> None:
    """An option that only means something for a subscription is refused with --file, never silently ignored."""
    result = cli("outcomes", "--file", str(_outcome_file(tmp_path, 1)), *option)
    assert_one_line_error(result, 2, option[0], "--file")
    assert result.out == ""


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"body": {}}\n[1, 2]\n', "line 2: not an OUTCOME_FILE line (a JSON array, not an object)"),
        (b'"outcome"\n', "line 1: not an OUTCOME_FILE line (a JSON string, not an object)"),
        (b'{"body": {}}\n\xff\xfe{}\n', "line 2: not an OUTCOME_FILE line (not UTF-8)"),
        (b"[" * 100_000 + b"\n", "line 1: not an OUTCOME_FILE line (not JSON)"),
        (b'{"body": 1\n', "line 1: not an OUTCOME_FILE line (not JSON)"),
    ],
    ids=["array", "string", "not-utf8", "deeply-nested", "broken-json"],
)
def test_outcomes_of_a_file_refuse_a_bad_line_by_number(tmp_path: Path, content: bytes, fragment: str) -> None:
    """A line that is not a UTF-8 JSON object: one line naming the file line and what is wrong, exit status 2."""
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(content)
    assert_one_line_error(cli("outcomes", "--file", str(path)), 2, f"{path} {fragment}")


_KEYS = st.sampled_from(["body", "application_properties", "request", "error", "outcome", "x"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)
_LINES = st.lists(st.one_of(st.binary(max_size=60), _JSON.map(lambda value: json.dumps(value).encode())), max_size=6)


@settings(max_examples=150, deadline=None)
@given(lines=_LINES, output=st.sampled_from(["table", "json"]))
def test_any_outcome_file_prints_or_is_refused_in_one_line(lines: list[bytes], output: str) -> None:
    """Whatever a file holds, `outcomes --file` prints it (one printable row each) or refuses it in one line; never crashes."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "outcomes.jsonl"
        path.write_bytes(b"\n".join(lines))
        result = cli("outcomes", "--file", str(path), "-o", output)
    if result.status == 0:
        assert "unexpected" not in result.err
        if output == "table":
            assert all(ch.isprintable() or ch == "\n" for ch in result.out)
        else:
            assert all(isinstance(line, dict) for line in result.json_lines())
    else:
        assert_one_line_error(result, 2, "not an OUTCOME_FILE line")


def test_a_table_cell_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """An escape sequence, control character or lone surrogate in an outcome never reaches the terminal as such."""
    path = tmp_path / "outcomes.jsonl"
    error = {"code": "E\r\nX", "message": "\ud800"}
    hostile = {"body": {"outcome": "failed\x1b[2J\x1b]0;owned\x07", "source": "x\x9b", "error": error}}
    path.write_text(json.dumps(hostile) + "\n")
    result = cli("outcomes", "--file", str(path))
    assert result.status == 0, result.err
    assert not any(ch in result.out for ch in "\x1b\x07\r\x9b\ud800")
    assert result.out.count("\n") == 3  # header, rule, one row


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`acr-archiver outcomes --file … | head -1`: exit status 0 and nothing on stderr, as Unix filters do."""
    path = _outcome_file(tmp_path, 5000)  # about 1 MB of table: far more than a pipe holds, so the writer meets EPIPE
    with subprocess.Popen(
        [sys.executable, "-m", "archiver_cli", "outcomes", "--file", str(path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stdout.readline().startswith(b"COMPLETED")
        process.stdout.close()
        err = process.stderr.read()
        status = process.wait(timeout=60)
    assert (status, err) == (0, b"")


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, as rich and the CLI decide by isatty()."""

    def isatty(self) -> bool:
        return True


def test_a_table_on_a_terminal_is_drawn_by_rich() -> None:
    """On a terminal the table is rich's (a header rule of box characters); piped, it stays plain `az -o table` text."""
    from archiver_cli.output import print_table

    terminal, pipe = _Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        print_table(("RUN ID", "STATUS"), [["ca1", "Succeeded"], ["ca2", None]], stream)
    assert "━" in terminal.getvalue() or "─" in terminal.getvalue()
    assert "ca1" in terminal.getvalue() and "Succeeded" in terminal.getvalue()
    markup = _Terminal()
    print_table(("TASK",), [["[bold red]x[/]\x1b[2J"]], markup)
    assert "[bold red]x[/]" in markup.getvalue() and "\x1b[2J" not in markup.getvalue()  # a cell is text, never markup
    assert pipe.getvalue().splitlines() == ["RUN ID  STATUS", "------  ---------", "ca1     Succeeded", "ca2"]


def test_progress_on_a_terminal_shows_count_rate_and_eta() -> None:
    """rich's progress on a terminal: the count, a rate per second and the time remaining."""
    from archiver_cli.output import Progress

    stream = _Terminal()
    with Progress(40, "sending to q", stream) as bar:
        for _ in range(40):
            bar.advance()
    drawn = stream.getvalue()
    assert "sending to q" in drawn and "40/40" in drawn and "/s" in drawn and "ETA" in drawn


def test_progress_when_piped_is_plain_lines() -> None:
    """Forced (--progress) into a pipe: one plain line per tenth, no carriage returns or escape sequences."""
    from archiver_cli.output import Progress

    stream = io.StringIO()
    with Progress(100, "sending to q", stream, enabled=True) as bar:
        for _ in range(100):
            bar.advance()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"sending to q: {n}/100" for n in range(10, 101, 10)]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_commands_without_a_table_never_import_rich() -> None:
    """rich is imported lazily: `--help` and JSON output do not pay its import time."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "archiver_cli", "--help"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in completed.stderr.splitlines() if line.startswith("import time:")}
    assert "archiver_cli.app" in imported and not any(name == "rich" or name.startswith("rich.") for name in imported)


def test_outcomes_without_a_topic_name_say_which_setting() -> None:
    """No OUTCOME_TOPIC_NAME and no --topic: exit status 2."""
    result = cli("outcomes", bus=RecordingServiceBus(), env={"ARCHIVE_QUEUE_NAME": QUEUE})
    assert_one_line_error(result, 2, "OUTCOME_TOPIC_NAME", "--topic")


# -- settings and entry points -------------------------------------------------------------------


def test_settings_come_from_a_local_settings_file(tmp_path: Path) -> None:
    """--settings reads local.settings.json Values (the same names the app reads)."""
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"ARCHIVE_QUEUE_NAME": "from-file", "DEFAULT_REGISTRY_NAME": REGISTRY}}))
    bus = RecordingServiceBus()
    result = cli("--settings", str(path), "send", json.dumps({"runId": "cab7", "isArchiveEnabled": True}), bus=bus, env=SETTINGS)
    assert result.status == 0, result.err
    assert [sent.entity for sent in bus.sent] == ["from-file"]


def test_a_malformed_setting_is_named(tmp_path: Path) -> None:
    """Settings errors are the app's own ConfigurationError: the name, never the value; exit status 2."""
    result = cli("send", json.dumps(EVENT), env={**SETTINGS, "MAX_DELIVERY_COUNT": "lots"})
    assert_one_line_error(result, 2, "MAX_DELIVERY_COUNT: must be an integer")


def test_usage_errors_exit_2() -> None:
    """An unknown command is argparse's usage error."""
    assert cli("frobnicate").status == 2


def test_the_console_script_and_module_entry_points_exist() -> None:
    """pyproject.toml declares `acr-archiver = archiver_cli:main`, and `python -m archiver_cli --help` works."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["acr-archiver"] == "archiver_cli:main"
    assert "archiver_cli" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    completed = subprocess.run(
        [sys.executable, "-m", "archiver_cli", "--help"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0
    for command in ("archive", "send", "dead-letters", "outcomes"):
        assert command in completed.stdout


def test_the_cli_is_its_own_package_and_never_deployed() -> None:
    """The CLI lives in archiver_cli beside the app, .funcignore keeps it (and its requirements) out of the deployment,
    and its library (rich) is a CLI requirement, never a runtime one."""
    ignored = (ROOT / ".funcignore").read_text().split()
    assert "archiver_cli" in ignored and "requirements-cli.txt" in ignored
    assert not (ROOT / "shared" / "cli").exists()
    assert "rich" not in (ROOT / "requirements.txt").read_text()
    assert any(line.startswith("rich==") for line in (ROOT / "requirements-cli.txt").read_text().splitlines())
    assert "-r requirements-cli.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["dynamic"]["optional-dependencies"]["cli"] == {"file": ["requirements-cli.txt"]}
