"""Archive policy sweeps (contract §8) through the sweep route: the `$filter`, paging, ids, the summary, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from emulators import ArmEmulator, Fault
from shared.messaging import policy_message_id
from shared.publisher import ServiceBusPublisher
from shared.reschedule import ServiceBusScheduler
from tests import support
from tests.fakes import RecordingServiceBus
from tests.support import SUB, http_request, read_outcomes, response_json, sign

GROUP = "sweepGroup"
REGISTRY = "sweptRegistry"
QUEUE, TOPIC = "acr-archive-events", "acr-archive-outcomes"
RELEASE = "TaskName eq 'release' and Status eq 'Succeeded'"
SUMMARY_KEYS = {
    "outcome",
    "source",
    "policy",
    "registry",
    "filter",
    "matched",
    "enqueued",
    "pages",
    "error",
    "startedAt",
    "completedAt",
}


def policy(
    name: str = "release-builds", *, registry: str = REGISTRY, filter: str | None = RELEASE, flag: bool | None = None
) -> dict[str, Any]:
    """One ARCHIVE_POLICIES entry for a registry of the test subscription."""
    entry: dict[str, Any] = {"name": name, "registry": f"{SUB}/{GROUP}/{registry}"}
    if filter is not None:
        entry["filter"] = filter
    if flag is not None:
        entry["isArchiveEnabled"] = flag
    return entry


def configure(monkeypatch: pytest.MonkeyPatch, *policies: dict[str, Any], **settings: str) -> None:
    """ARCHIVE_POLICIES (and its schedule) in the test's environment."""
    monkeypatch.setenv("ARCHIVE_POLICIES", json.dumps(list(policies)))
    monkeypatch.setenv("ARCHIVE_POLICY_SCHEDULE", "0 */15 * * * *")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)


def sweep(functions: Any, name: str, **headers: str) -> Any:
    """POST /api/archive-policies/{name}/sweep through the real function."""
    return functions["sweep_policy"](
        http_request("POST", f"archive-policies/{name}/sweep", headers=headers, route_params={"name": name})
    )


def since_of(summary: dict[str, Any], days: float = 30) -> datetime:
    """The CreateTime bound a sweep sends: its start time minus the lookback, to the second."""
    started = datetime.fromisoformat(summary["startedAt"].replace("Z", "+00:00"))
    return (started - timedelta(days=days)).replace(microsecond=0)


def expected_runs(
    runs: list[dict[str, Any]], since: datetime, wanted: Callable[[dict[str, Any]], bool], flag: bool = True
) -> set[str]:
    """The oracle: which seeded runs the sweep's $filter selects, asked of the bodies in Python."""
    return {
        run["name"]
        for run in runs
        if wanted(run["properties"])
        and run["properties"]["isArchiveEnabled"] is not flag
        and datetime.fromisoformat(run["properties"]["createTime"].replace("Z", "+00:00")) >= since
    }


def release(properties: dict[str, Any]) -> bool:
    return properties.get("task") == "release" and properties["status"] == "Succeeded"


def list_queries(arm: ArmEmulator, registry: str = REGISTRY) -> list[dict[str, str]]:
    """The query of every Runs - List request the emulator received for a registry."""
    return [
        entry["query"]
        for entry in arm.requests_log
        if entry["method"] == "GET" and entry["path"].split("?")[0].endswith(f"/{registry}/runs")
    ]


# -- with OUTCOME_FILE: the sweep processes the runs itself ------------------------------------------


def test_a_sweep_sends_the_contracts_filter_and_archives_every_matching_run_over_several_pages(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """`(filter) and IsArchiveEnabled eq false and CreateTime ge {now-30d}`, all pages, a `policy` outcome per run, a summary."""
    seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 400, seed=3)
    arm.set_page_size(7)
    configure(monkeypatch, policy())
    response = sweep(functions, "release-builds")
    assert response.status_code == 200
    summary = response_json(response)
    since = since_of(summary)
    wanted = expected_runs(seeded, since, release)
    assert len(wanted) > 14, "the seed must give several pages of matches"
    expected_filter = f"({RELEASE}) and IsArchiveEnabled eq false and CreateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    assert summary["filter"] == expected_filter
    queries = list_queries(arm)
    assert queries[0]["$filter"] == expected_filter and "$top" not in queries[0]
    assert summary["pages"] == len(queries) == -(-len(wanted) // 7)
    assert (summary["outcome"], summary["matched"], summary["enqueued"], summary["error"]) == (
        "succeeded",
        len(wanted),
        len(wanted),
        None,
    )
    records = read_outcomes(outcome_file)
    outcomes, (last,) = records[:-1], records[-1:]
    assert {r["body"]["request"]["runId"] for r in outcomes} == wanted
    assert all(r["body"]["source"] == "policy" and r["body"]["outcome"] == "succeeded" for r in outcomes)
    assert all(
        r["body"]["inboundMessageId"] == policy_message_id("release-builds", r["body"]["request"]["runId"], True)
        for r in outcomes
    )
    assert all(arm.get_run(SUB, GROUP, REGISTRY, run)["properties"]["isArchiveEnabled"] is True for run in wanted)
    assert last["body"] == summary and last["subject"] == "ArchivePolicySwept"


def test_the_summary_has_the_contracts_ids_properties_and_keys(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """Subject ArchivePolicySwept, ids `sweep:{name}:{start}`, properties outcome/source/policy/registryName/matched/enqueued."""
    arm.seed_registry(SUB, GROUP, REGISTRY, 50, seed=4)
    configure(monkeypatch, policy())
    summary = response_json(sweep(functions, "release-builds"))
    record = read_outcomes(outcome_file)[-1]
    assert set(summary) == SUMMARY_KEYS
    assert record["message_id"] == record["correlation_id"] == f"sweep:release-builds:{summary['startedAt']}"
    assert record["application_properties"] == {
        "outcome": "succeeded",
        "source": "http",
        "policy": "release-builds",
        "registryName": REGISTRY,
        "matched": summary["matched"],
        "enqueued": summary["enqueued"],
    }
    assert summary["registry"] == {"subscriptionId": SUB, "resourceGroupName": GROUP, "registryName": REGISTRY}


def test_the_lookback_window_bounds_create_time(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """ARCHIVE_POLICY_LOOKBACK_DAYS=5: only runs created in the last five days are listed, nothing older is touched."""
    seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 300, seed=5)
    configure(monkeypatch, policy(filter=None), ARCHIVE_POLICY_LOOKBACK_DAYS="5")
    summary = response_json(sweep(functions, "release-builds"))
    since = since_of(summary, days=5)
    assert summary["filter"] == f"IsArchiveEnabled eq false and CreateTime ge {since.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    wanted = expected_runs(seeded, since, lambda p: True)
    older = expected_runs(seeded, datetime.min.replace(tzinfo=timezone.utc), lambda p: True) - wanted
    assert wanted and older
    assert summary["matched"] == len(wanted)
    assert not any(arm.get_run(SUB, GROUP, REGISTRY, run)["properties"]["isArchiveEnabled"] for run in older)


def test_a_policy_that_unarchives_asks_for_archived_runs(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """isArchiveEnabled false: the filter asks `IsArchiveEnabled eq true`, and each event carries false."""
    seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 200, seed=6, archived_share=0.5)
    configure(monkeypatch, policy("unkeep", filter="Status eq 'Failed'", flag=False))
    summary = response_json(sweep(functions, "unkeep"))
    assert " and IsArchiveEnabled eq true and " in summary["filter"]
    wanted = expected_runs(seeded, since_of(summary), lambda p: p["status"] == "Failed", flag=False)
    assert wanted and summary["enqueued"] == len(wanted)
    outcomes = read_outcomes(outcome_file)[:-1]
    assert {r["body"]["request"]["runId"] for r in outcomes} == wanted
    assert all(r["body"]["request"]["isArchiveEnabled"] is False for r in outcomes)


def test_a_second_sweep_finds_nothing_left(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """The IsArchiveEnabled clause makes a sweep idempotent: what the first archived is not listed again."""
    arm.seed_registry(SUB, GROUP, REGISTRY, 200, seed=7)
    configure(monkeypatch, policy())
    first = response_json(sweep(functions, "release-builds"))
    second = response_json(sweep(functions, "release-builds"))
    assert first["enqueued"] > 0
    assert (second["outcome"], second["matched"], second["enqueued"]) == ("succeeded", 0, 0)


def test_an_unknown_policy_is_404_policy_not_found(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """A name ARCHIVE_POLICIES does not hold: 404 PolicyNotFound, nothing listed, nothing published."""
    configure(monkeypatch, policy())
    response = sweep(functions, "no-such-policy")
    assert response.status_code == 404
    assert response_json(response)["error"]["code"] == "PolicyNotFound"
    assert list_queries(arm) == [] and read_outcomes(outcome_file) == []


def test_policy_names_match_regardless_of_case(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """Names are unique regardless of case, so the route finds `Release-Builds` too."""
    configure(monkeypatch, policy())
    assert response_json(sweep(functions, "RELEASE-BUILDS"))["policy"] == "release-builds"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Signature-256": "sha256=00"}, 401), ({"Content-Type": "text/plain"}, 415)],
    ids=["unsigned", "bad-signature", "not-json"],
)
def test_the_sweep_route_runs_the_checks_of_every_write(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path, headers: dict[str, str], status: int
) -> None:
    """With WEBHOOK_SECRET, an unsigned or wrongly signed sweep is 401; a non-JSON content type 415; neither lists anything."""
    configure(monkeypatch, policy(), WEBHOOK_SECRET="sweep-secret")
    if status == 415:
        headers = {**headers, "X-Signature-256": sign(b"", "sweep-secret")}
    assert sweep(functions, "release-builds", **headers).status_code == status
    assert list_queries(arm) == [] and read_outcomes(outcome_file) == []


def test_a_signed_sweep_runs(functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path) -> None:
    """The signature of the (empty) body lets the sweep through."""
    configure(monkeypatch, policy(), WEBHOOK_SECRET="sweep-secret")
    assert sweep(functions, "release-builds", **{"X-Signature-256": sign(b"", "sweep-secret")}).status_code == 200


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "outcome", "code", "pages"),
    [
        ([Fault.status(429, retry_after="0")], "succeeded", None, None),
        ([Fault.status(503, retry_after="0")], "succeeded", None, None),
        ([Fault.status(503, retry_after="0")] * 2, "failed", "ServiceUnavailable", 0),
        (
            [Fault.delay(0), Fault.status(500, retry_after="0"), Fault.status(500, retry_after="0")],
            "failed",
            "InternalServerError",
            1,
        ),
        ([Fault.status(403, error_code="AuthorizationFailed")], "failed", "AuthorizationFailed", 0),
    ],
    ids=["429-once-retried", "503-once-retried", "503-until-the-attempts-run-out", "500-on-page-two", "403-final"],
)
def test_arm_errors_while_listing(
    functions: Any,
    arm: ArmEmulator,
    monkeypatch: pytest.MonkeyPatch,
    outcome_file: Path,
    faults: list[Fault],
    outcome: str,
    code: str | None,
    pages: int | None,
) -> None:
    """429/5xx are retried (§3); what still fails ends the sweep `failed` with ARM's code, after handing on what it listed."""
    seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 60, seed=8, archived_share=0)
    arm.set_page_size(10)
    configure(monkeypatch, policy(filter=None), ARM_MAX_ATTEMPTS="2")
    arm.script_list(REGISTRY, *faults)  # one per request in turn; delay(0) lets a page through untouched
    summary = response_json(sweep(functions, "release-builds"))
    wanted = expected_runs(seeded, since_of(summary), lambda p: True)
    assert len(wanted) > 20
    listed = len(wanted) if pages is None else 10 * pages
    assert (summary["outcome"], summary["pages"]) == (outcome, -(-listed // 10))
    assert (summary["error"] or {}).get("code") == code
    processed = [r for r in read_outcomes(outcome_file) if r["subject"] != "ArchivePolicySwept"]
    assert len(processed) == summary["enqueued"] == summary["matched"] == listed
    assert read_outcomes(outcome_file)[-1]["application_properties"].get("errorCode") == code


def test_a_failing_policy_does_not_stop_the_timer_from_sweeping_the_next(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """The first policy's listing is refused for good; the second policy is still swept and archived."""
    from tests.test_timer import timer_request

    arm.seed_registry(SUB, GROUP, "brokenRegistry", 20, seed=9)
    arm.seed_registry(SUB, GROUP, REGISTRY, 60, seed=10)
    arm.script_list("brokenRegistry", Fault.status(404, error_code="ResourceNotFound"))
    configure(monkeypatch, policy("broken", registry="brokenRegistry", filter=None), policy())
    assert functions["archive_policy_timer"](timer_request()) is None
    summaries = [r for r in read_outcomes(outcome_file) if r["subject"] == "ArchivePolicySwept"]
    assert [(s["body"]["policy"], s["body"]["outcome"], s["body"]["source"]) for s in summaries] == [
        ("broken", "failed", "timer"),
        ("release-builds", "succeeded", "timer"),
    ]
    assert summaries[0]["body"]["error"]["code"] == "ResourceNotFound"
    assert summaries[1]["body"]["enqueued"] > 0


# -- with Service Bus: the sweep enqueues ---------------------------------------------------------


@pytest.fixture
def bus(app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RecordingServiceBus:
    """The app's outcome topic and archive queue on the recording Service Bus instead of OUTCOME_FILE."""
    monkeypatch.delenv("OUTCOME_FILE")
    monkeypatch.setenv("OUTCOME_TOPIC_NAME", TOPIC)
    monkeypatch.setenv("ServiceBusConnection__fullyQualifiedNamespace", "sb-test.servicebus.windows.net")
    return RecordingServiceBus()


@pytest.fixture
def bus_functions(bus: RecordingServiceBus) -> support.LazyFunctions:
    """The app's functions on the recording Service Bus (topic publisher and queue sender)."""
    return support.LazyFunctions(
        publisher_factory=lambda s: ServiceBusPublisher(bus.client, s.outcome_topic_name or ""),
        scheduler_factory=lambda s: ServiceBusScheduler(bus.client, s.archive_queue_name or ""),
    )


def test_a_sweep_enqueues_one_shape_2_event_per_run_in_batches(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run: body `{runResourceId, isArchiveEnabled}`, id `policy:{name}:{runId}:true`, prop `policy`; batched, no PATCH."""
    seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 400, seed=11)
    arm.set_page_size(20)
    configure(monkeypatch, policy())
    summary = response_json(sweep(bus_functions, "release-builds"))
    wanted = expected_runs(seeded, since_of(summary), release)
    queued = bus.messages(QUEUE)
    assert len(queued) == summary["enqueued"] == summary["matched"] == len(wanted)
    by_run = {json.loads(b"".join(m.body))["runResourceId"].rsplit("/", 1)[1]: m for m in queued}
    assert set(by_run) == wanted
    for run_id, message in by_run.items():
        assert json.loads(b"".join(message.body)) == {
            "runResourceId": support.run_resource_id(run_id, group=GROUP, registry=REGISTRY),
            "isArchiveEnabled": True,
        }
        assert message.message_id == f"policy:release-builds:{run_id}:true"
        assert dict(message.application_properties) == {"policy": "release-builds"}
        assert message.correlation_id == f"sweep:release-builds:{summary['startedAt']}"
        assert message.content_type == "application/json"
    assert sum(bus.batch_sizes) == len(queued) and len(bus.batch_sizes) == summary["pages"]  # one batch per page here
    assert arm.stats()["patches"] == 0
    (published,) = bus.messages(TOPIC)
    assert published.subject == "ArchivePolicySwept" and json.loads(b"".join(published.body)) == summary


def test_sweeping_twice_before_the_queue_drains_repeats_the_same_ids(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idempotent ids: the same runs found again get the same message ids, which queue duplicate detection drops."""
    arm.seed_registry(SUB, GROUP, REGISTRY, 120, seed=12)
    configure(monkeypatch, policy())
    first = response_json(sweep(bus_functions, "release-builds"))
    ids = [m.message_id for m in bus.messages(QUEUE)]
    second = response_json(sweep(bus_functions, "release-builds"))
    assert first["enqueued"] == second["enqueued"] > 0
    assert [m.message_id for m in bus.messages(QUEUE)] == ids + ids


def test_a_failed_enqueue_ends_the_sweep_as_failed(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Service Bus refusing the batch: the summary says failed, PublishFailed, nothing counted as enqueued."""
    from azure.servicebus.exceptions import ServiceBusError

    arm.seed_registry(SUB, GROUP, REGISTRY, 120, seed=13)
    configure(monkeypatch, policy())
    bus.fail_next(ServiceBusError("refused"))
    summary = response_json(sweep(bus_functions, "release-builds"))
    assert (summary["outcome"], summary["enqueued"], summary["error"]["code"]) == ("failed", 0, "PublishFailed")
    assert summary["matched"] > 0 and bus.messages(QUEUE) == []


def test_an_enqueued_policy_event_is_processed_by_the_queue_trigger(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A swept event is an ordinary archive event: the trigger archives the run, the outcome's ids derive from the policy id."""
    from azure.functions.servicebus import ServiceBusMessage as TriggerMessage

    arm.seed_registry(SUB, GROUP, REGISTRY, 60, seed=14)
    configure(monkeypatch, policy())
    response_json(sweep(bus_functions, "release-builds"))
    message = bus.messages(QUEUE)[0]
    delivered = TriggerMessage(
        body=b"".join(message.body),
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        delivery_count=1,
        application_properties=dict(message.application_properties),
        user_properties={},
    )
    assert bus_functions["archive_queue"](delivered) is None
    outcome = bus.messages(TOPIC)[-1]
    body = json.loads(b"".join(outcome.body))
    assert (body["outcome"], body["inboundMessageId"], outcome.message_id) == (
        "succeeded",
        message.message_id,
        message.message_id + ":outcome",
    )


# -- the origin rule, the registry rule, the bounds ------------------------------------------------


def test_a_nextlink_on_another_origin_fails_the_sweep_and_never_carries_the_token(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """The first page is archived; the foreign nextLink is never requested (the recorder sees no connection); PolicyFailed."""
    from tests.test_arm_origin import Recorder

    recorder = Recorder()
    try:
        seeded = arm.seed_registry(SUB, GROUP, REGISTRY, 80, seed=15, archived_share=0)
        arm.set_page_size(10)
        arm.set_next_link_origin(f"http://127.0.0.1:{recorder.port}")
        configure(monkeypatch, policy(filter=None))
        summary = response_json(sweep(functions, "release-builds"))
    finally:
        recorder.close()
    assert len(expected_runs(seeded, since_of(summary), lambda p: True)) > 10
    assert (summary["outcome"], summary["error"]["code"], summary["error"]["retryable"]) == ("failed", "PolicyFailed", False)
    assert (summary["pages"], summary["matched"], summary["enqueued"]) == (1, 10, 10)
    assert recorder.connections == 0 and recorder.received == b""
    assert read_outcomes(outcome_file)[-1]["application_properties"]["errorCode"] == "PolicyFailed"


def test_a_policy_registry_outside_allowed_registries_is_refused_with_the_settings(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """The settings refuse the policy, naming it and the field; health is 503, the sweep route 500, ARM is never called."""
    configure(monkeypatch, policy(), ALLOWED_REGISTRIES="someOtherRegistry")
    health = functions["health"](http_request("GET", "health"))
    assert health.status_code == 503 and "ARCHIVE_POLICIES" in response_json(health)["invalidSettings"]
    assert any("ARCHIVE_POLICIES[release-builds].registry" in line for line in response_json(health)["detail"])
    response = sweep(functions, "release-builds")
    assert response.status_code == 500 and "ARCHIVE_POLICIES" in response_json(response)["error"]["message"]
    assert arm.requests_log == [] and read_outcomes(outcome_file) == []


def test_a_sweep_of_ten_thousand_runs_fits_its_bounds(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10,000 matching runs at ARM's 100 a page: 100 pages, every run enqueued, in batches, within the page and time bounds."""
    arm.seed_registry(SUB, GROUP, REGISTRY, 10_000, seed=16, archived_share=0)  # created over 40 days
    configure(monkeypatch, policy(filter=None), ARCHIVE_POLICY_LOOKBACK_DAYS="60")
    summary = response_json(sweep(bus_functions, "release-builds"))
    assert (summary["outcome"], summary["matched"], summary["enqueued"], summary["pages"]) == ("succeeded", 10_000, 10_000, 100)
    assert len({m.message_id for m in bus.messages(QUEUE)}) == 10_000
    assert len(bus.batch_sizes) >= 100 and sum(bus.batch_sizes) == 10_000


def test_a_failed_sweep_logs_the_line_the_alert_looks_for(
    functions: Any, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch, outcome_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """alert-failed-policy-sweeps matches trace lines with `ArchivePolicySwept` and `failed`: one such line per failed sweep."""
    arm.script_list(REGISTRY, Fault.status(403, error_code="AuthorizationFailed"))
    configure(monkeypatch, policy())
    sweep(functions, "release-builds")
    lines = [r.getMessage() for r in caplog.records if "ArchivePolicySwept" in r.getMessage()]
    assert len(lines) == 1 and "failed" in lines[0] and "error=AuthorizationFailed" in lines[0]


def test_a_summary_that_cannot_be_published_is_a_503_to_retry(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The topic refuses the summary: 503 PublishFailed with Retry-After (the caller may sweep again; the ids repeat)."""
    from azure.servicebus.exceptions import ServiceBusError

    configure(monkeypatch, policy())
    bus.fail_next(ServiceBusError("refused"))
    response = sweep(bus_functions, "release-builds")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response_json(response)["error"]["code"] == "PublishFailed"


def test_the_timer_sweeps_on_after_a_summary_fails_then_raises(
    bus_functions: Any, bus: RecordingServiceBus, arm: ArmEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first summary cannot be published: the second policy is still swept and its summary sent; the invocation then fails."""
    from azure.servicebus.exceptions import ServiceBusError

    from shared.errors import PublishFailed
    from tests.test_timer import timer_request

    configure(monkeypatch, policy("first", filter=None), policy("second", filter=None))
    bus.fail_next(ServiceBusError("refused"))
    with pytest.raises(PublishFailed):
        bus_functions["archive_policy_timer"](timer_request())
    (published,) = bus.messages(TOPIC)
    assert json.loads(b"".join(published.body))["policy"] == "second"
