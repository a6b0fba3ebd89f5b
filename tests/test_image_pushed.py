"""ACR ImagePushed events (contract §2 shape 4): archive the runs that produced the image, on the queue and over HTTP."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from azure.functions.servicebus import ServiceBusMessage
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from emulators import ArmEmulator, Fault
from shared.discovery import image_filter
from shared.errors import ArchiverError, InvalidEvent
from shared.events import ImagePush, parse_event
from shared.settings import Settings
from tests.support import SUB, http_request, read_outcomes, response_json

GROUP, REGISTRY = "pushGroup", "pushRegistry"
REGISTRY_ID = f"/subscriptions/{SUB}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
PUSHED = "Microsoft.ContainerRegistry.ImagePushed"


def event_grid(repository: str, digest: str, *, topic: str = REGISTRY_ID, event_type: str = PUSHED) -> dict[str, Any]:
    """An ImagePushed event in the Event Grid schema, as ACR sends it."""
    return {
        "id": "831e1650-001e-001b-66ab-eeb76e069631",
        "topic": topic,
        "subject": f"{repository}:v1",
        "eventType": event_type,
        "eventTime": "2026-11-27T16:30:00Z",
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "id": "31c51664-e5bd-416a-a5df-e5206bc47ed0",
            "timestamp": "2026-11-27T16:29:59Z",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "size": 3023,
                "digest": digest,
                "length": 3023,
                "repository": repository,
                "tag": "v1",
            },
            "request": {"id": "r1", "host": f"{REGISTRY.lower()}.azurecr.io", "method": "PUT", "useragent": "docker/27"},
        },
    }


def cloud_event(repository: str, digest: str, *, source: str = REGISTRY_ID) -> dict[str, Any]:
    """The same event as CloudEvents 1.0 (the registry in `source`)."""
    grid = event_grid(repository, digest)
    return {
        "specversion": "1.0",
        "id": grid["id"],
        "source": source,
        "type": PUSHED,
        "subject": grid["subject"],
        "time": grid["eventTime"],
        "data": grid["data"],
    }


@pytest.fixture
def seeded(arm: ArmEmulator) -> list[dict[str, Any]]:
    """A registry of 120 realistic runs, some of which pushed images."""
    return arm.seed_registry(SUB, GROUP, REGISTRY, 120, seed=31, archived_share=0)


def pushing_run(runs: list[dict[str, Any]], index: int = 0) -> tuple[dict[str, Any], str, str]:
    """A seeded run that pushed an image, with that image's repository and digest."""
    run = [r for r in runs if r["properties"].get("outputImages")][index]
    image = run["properties"]["outputImages"][0]
    return run, image["repository"], image["digest"]


def queue_message(event: Any, message_id: str = "push-1", delivery_count: int = 1) -> ServiceBusMessage:
    """What the trigger hands the function for a message holding `event`."""
    return ServiceBusMessage(
        body=json.dumps(event).encode(),
        message_id=message_id,
        correlation_id="corr-push",
        content_type="application/json",
        delivery_count=delivery_count,
        application_properties={},
        user_properties={},
    )


def post(functions: Any, body: Any, **headers: str) -> Any:
    return functions["archive_events"](http_request("POST", "archive-events", json_body=body, headers=headers))


def list_filters(arm: ArmEmulator) -> list[str]:
    return [
        e["query"].get("$filter", "")
        for e in arm.requests_log
        if e["method"] == "GET" and e["path"].split("?")[0].endswith("/runs")
    ]


def test_a_push_on_the_queue_archives_the_run_that_pushed_the_image(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], outcome_file: Path
) -> None:
    """$filter contains(OutputImageManifests, 'repo@digest'); that run archived; outcome ids from the message id and the run."""
    run, repository, digest = pushing_run(seeded)
    assert functions["archive_queue"](queue_message(event_grid(repository, digest))) is None
    assert list_filters(arm) == [f"contains(OutputImageManifests, '{repository}@{digest}')"]
    (record,) = read_outcomes(outcome_file)
    body = record["body"]
    assert (body["outcome"], body["source"], body["request"]["runId"], body["inboundMessageId"]) == (
        "succeeded",
        "servicebus",
        run["name"],
        "push-1",
    )
    assert record["message_id"] == f"push-1:run:{run['name']}:outcome"
    assert record["correlation_id"] == "corr-push"
    assert arm.get_run(SUB, GROUP, REGISTRY, run["name"])["properties"]["isArchiveEnabled"] is True


def test_a_cloudevents_push_over_http_is_answered_like_a_batch(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], outcome_file: Path
) -> None:
    """One event, answered 200 {"outcomes": [...]}; the registry from `source`; ids derive from x-correlation-id and the run."""
    run, repository, digest = pushing_run(seeded, 1)
    response = post(functions, cloud_event(repository, digest), **{"x-correlation-id": "cid-7"})
    assert response.status_code == 200
    (outcome,) = response_json(response)["outcomes"]
    assert (outcome["outcome"], outcome["source"], outcome["request"]["runId"]) == ("succeeded", "http", run["name"])
    assert read_outcomes(outcome_file)[0]["message_id"] == f"http:cid-7:0:run:{run['name']}:outcome"


def test_an_event_grid_array_with_a_push_lists_each_runs_outcome(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]]
) -> None:
    """Event Grid delivers arrays: two pushes, two outcomes, in order."""
    (first, repo1, digest1), (second, repo2, digest2) = pushing_run(seeded, 2), pushing_run(seeded, 3)
    response = post(functions, [event_grid(repo1, digest1), event_grid(repo2, digest2)])
    assert response.status_code == 200
    assert [o["request"]["runId"] for o in response_json(response)["outcomes"]] == [first["name"], second["name"]]


def test_an_image_pushed_by_two_runs_archives_both(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], outcome_file: Path
) -> None:
    """A re-run that pushed the same digest: one outcome per run, each with its own message id."""
    run, repository, digest = pushing_run(seeded)
    other = copy.deepcopy(pushing_run(seeded, 4)[0])
    other["properties"]["outputImages"] = copy.deepcopy(run["properties"]["outputImages"])
    arm._state.add_bodies([other])  # the emulator's seeded bodies, one changed to share the image
    response = post(functions, event_grid(repository, digest))
    outcomes = response_json(response)["outcomes"]
    assert sorted(o["request"]["runId"] for o in outcomes) == sorted([run["name"], other["name"]])
    assert len({r["message_id"] for r in read_outcomes(outcome_file)}) == 2


def test_a_push_that_matches_no_run_is_rejected_no_matching_run(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], outcome_file: Path
) -> None:
    """No run lists the image: one rejected NoMatchingRun naming it; over HTTP still 200, so Event Grid does not retry."""
    digest = "sha256:" + "0" * 64
    response = post(functions, [event_grid("release/app", digest)])
    assert response.status_code == 200
    (outcome,) = response_json(response)["outcomes"]
    assert (outcome["outcome"], outcome["error"]["code"]) == ("rejected", "NoMatchingRun")
    assert f"release/app@{digest}" in outcome["error"]["message"]
    assert arm.stats()["patches"] == 0


def test_a_push_that_matches_no_run_completes_the_queue_message(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], outcome_file: Path
) -> None:
    """On the queue: the rejected outcome is published and the message completed (no redelivery of a push nothing made)."""
    assert functions["archive_queue"](queue_message(event_grid("release/app", "sha256:" + "1" * 64))) is None
    (record,) = read_outcomes(outcome_file)
    assert (record["subject"], record["body"]["error"]["code"]) == ("RunArchiveEventRejected", "NoMatchingRun")


def test_a_registry_outside_allowed_registries_is_refused_without_calling_arm(
    functions: Any, arm: ArmEmulator, seeded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, outcome_file: Path
) -> None:
    """ALLOWED_REGISTRIES does not list the topic's registry: RegistryNotAllowed, and ARM hears nothing."""
    monkeypatch.setenv("ALLOWED_REGISTRIES", "someOtherRegistry")
    _, repository, digest = pushing_run(seeded)
    (outcome,) = response_json(post(functions, event_grid(repository, digest)))["outcomes"]
    assert (outcome["outcome"], outcome["error"]["code"]) == ("rejected", "RegistryNotAllowed")
    assert arm.requests_log == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (event_grid("app", "sha256:ab", topic="/subscriptions/x/resourceGroups/g"), "topic"),
        (cloud_event("app", "sha256:ab", source="https://evil.example/registries/x"), "source"),
        (event_grid("app", "sha256:ab", topic=REGISTRY_ID.replace(REGISTRY, "no")), "topic"),
        ({**event_grid("app", "sha256:ab"), "data": {"target": {"digest": "sha256:ab"}}}, "data.target.repository"),
        ({**event_grid("app", "sha256:ab"), "data": {"target": {"repository": "app"}}}, "data.target.digest"),
        (event_grid("app", "not a digest"), "data.target.digest"),
        (event_grid("app\u0000x", "sha256:ab"), "data.target.repository"),
        ({**event_grid("app", "sha256:ab"), "data": {"action": "push"}}, "data.target"),
        (event_grid("app", "sha256:ab", event_type="Microsoft.ContainerRegistry.ImageDeleted"), "eventType"),
        (event_grid("app", "sha256:ab", event_type="Microsoft.ContainerRegistry.ChartPushed"), "eventType"),
        ({**cloud_event("app", "sha256:ab"), "type": "Microsoft.ContainerRegistry.ImageDeleted"}, "eventType"),
    ],
    ids=[
        "topic-not-a-registry",
        "source-not-a-registry",
        "registry-name-too-short",
        "no-repository",
        "no-digest",
        "bad-digest",
        "control-character",
        "no-target",
        "image-deleted",
        "chart-pushed",
        "cloudevents-image-deleted",
    ],
)
def test_a_malformed_push_or_another_acr_event_is_invalid_naming_the_field(
    functions: Any, arm: ArmEmulator, outcome_file: Path, event: dict[str, Any], field: str
) -> None:
    """InvalidEvent naming the field, published as rejected with the raw event; ARM is never called."""
    assert functions["archive_queue"](queue_message(event)) is None
    (record,) = read_outcomes(outcome_file)
    error = record["body"]["error"]
    assert (error["code"], error["message"].split(":")[0]) == ("InvalidEvent", field)
    assert json.loads(record["body"]["rawEvent"]) == event
    assert arm.requests_log == []


# -- settlement of several runs ---------------------------------------------------------------------


@pytest.fixture
def two_runs(arm: ArmEmulator, seeded: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[str]]:
    """An ImagePushed event whose image two runs pushed; the second run's PATCH keeps failing with 503."""
    monkeypatch.setenv("MAX_DELIVERY_COUNT", "3")
    monkeypatch.setenv("ARM_MAX_ATTEMPTS", "1")
    run, repository, digest = pushing_run(seeded)
    other = copy.deepcopy(pushing_run(seeded, 5)[0])
    other["properties"]["outputImages"] = copy.deepcopy(run["properties"]["outputImages"])
    arm._state.add_bodies([other])
    arm.script(other["name"], *[Fault.status(503, retry_after="0")] * 10)
    return event_grid(repository, digest), [run["name"], other["name"]]


def test_a_transient_failure_of_one_run_redelivers_the_whole_push_publishing_nothing(
    functions: Any, arm: ArmEmulator, outcome_file: Path, two_runs: tuple[dict[str, Any], list[str]]
) -> None:
    """Not the last delivery: raise before publishing anything, so the redelivery repeats every run (the PATCH is idempotent)."""
    event, _ = two_runs
    with pytest.raises(ArchiverError) as caught:
        functions["archive_queue"](queue_message(event, delivery_count=1))
    assert caught.value.retryable
    assert read_outcomes(outcome_file) == []


def test_on_the_last_delivery_every_runs_outcome_is_published_then_it_dead_letters(
    functions: Any, arm: ArmEmulator, outcome_file: Path, two_runs: tuple[dict[str, Any], list[str]]
) -> None:
    """Last delivery: the succeeded and the failed (retryable) outcome are both published, then the trigger raises."""
    event, (good, bad) = two_runs
    with pytest.raises(ArchiverError):
        functions["archive_queue"](queue_message(event, delivery_count=3))
    outcomes = {r["body"]["request"]["runId"]: r["body"] for r in read_outcomes(outcome_file)}
    assert outcomes[good]["outcome"] == "succeeded"
    assert (outcomes[bad]["outcome"], outcomes[bad]["error"]["retryable"]) == ("failed", True)


def test_a_registry_the_list_client_cannot_path_fails_without_raising(
    functions: Any, arm: ArmEmulator, outcome_file: Path
) -> None:
    """A resource group of non-ASCII letters (valid in Azure): one failed, final outcome, the message completed."""
    topic = f"/subscriptions/{SUB}/resourceGroups/gruppé/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}"
    assert functions["archive_queue"](queue_message(event_grid("app", "sha256:ab", topic=topic))) is None
    (record,) = read_outcomes(outcome_file)
    assert (record["body"]["outcome"], record["body"]["error"]["code"], record["body"]["error"]["retryable"]) == (
        "failed",
        "PolicyFailed",
        False,
    )


# -- hostile pushes -------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=8,
)


@hypothesis_settings(max_examples=300)
@given(
    st.one_of(st.just(REGISTRY_ID), st.text(), JSON),
    st.one_of(st.text(), JSON),
    st.one_of(st.just("sha256:ab"), st.text(), JSON),
    st.booleans(),
)
def test_any_push_parses_to_an_image_push_or_invalid_event(topic: Any, repository: Any, digest: Any, cloud: bool) -> None:
    """Any topic/source, repository and digest: an ImagePush whose filter keeps the image one quoted literal, or InvalidEvent."""
    base = cloud_event("app", "sha256:ab") if cloud else event_grid("app", "sha256:ab")
    event = {**base, ("source" if cloud else "topic"): topic, "data": {"target": {"repository": repository, "digest": digest}}}
    try:
        push = parse_event(event, Settings.from_env({}))
    except InvalidEvent as error:
        assert error.field in {"topic", "source", "data.target.repository", "data.target.digest"}
        return
    assert isinstance(push, ImagePush)
    literal = image_filter(push.repository, push.digest).removeprefix("contains(OutputImageManifests, ").removesuffix(")")
    assert literal[0] == literal[-1] == "'" and literal[1:-1].replace("''", "").count("'") == 0
