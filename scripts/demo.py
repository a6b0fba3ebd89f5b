"""`make demo`: the whole app on the wire, against the local emulators, in seconds.

Starts ARM, managed identity, the local AMQP Service Bus and the Functions host stand-in on loopback (in this
process: `scripts.wire`). Events go to the archive queue with `acr-archiver send` and over HTTP to the
stand-in with the function key (and the webhook signature); the app publishes its outcomes to the topic, and
the demo reads them back from the topic's subscriptions with the real azure-servicebus receiver. It shows a
transient fault redelivered by the broker (delivery 1 -> 2 -> 3), an event dead-lettered with its `failed`
outcome, a long throttle re-scheduled and processed later, `acr-archiver dead-letters resubmit` bringing the
dead letter back to success, and discovery (a policy sweep over several ARM pages, an ImagePushed event).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from emulators.arm import ArmEmulator
from emulators.faults import Fault
from scripts.wire import WireStack, drain, entity_config, receive_outcomes, send_events, wire_stack

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "myRegistry"
SEED_RUN = "0accec26-d6de-4757-8e74-d080f38eaaab"
MISSING_RUN = "doesnotexist1"
SECRET = "demo-webhook-secret"
MAX_DELIVERIES = 3
# Locks of 10 s (renewed by the stand-in): a delivery the stand-in never saw comes round again within the demo's time.
PLATFORM = "platformRegistry"
POLICY = {
    "name": "release-builds",
    "registry": f"{SUBSCRIPTION}/{GROUP}/{PLATFORM}",
    "filter": "TaskName eq 'release' and Status eq 'Succeeded'",
}
SETTINGS = {
    "WEBHOOK_SECRET": SECRET,
    "MAX_DELIVERY_COUNT": str(MAX_DELIVERIES),  # the queue's MaxDeliveryCount below matches it
    "ARM_MAX_ATTEMPTS": "1",  # one PATCH per delivery: each transient fault is one redelivery
    "ARM_RETRY_MAX_SECONDS": "1",  # a Retry-After longer than this re-schedules instead of waiting
    "ARCHIVE_POLICIES": json.dumps([POLICY]),
}
TIMEOUT = 60.0


def main() -> int:
    """Run the demo; exit 0 when every flow ended as it should."""
    logging.basicConfig(level=logging.CRITICAL)
    _show_app_log()
    started = time.monotonic()
    seeded: list[dict[str, Any]] = []
    with wire_stack(
        SETTINGS,
        config=entity_config(max_delivery_count=MAX_DELIVERIES, lock_seconds=10),
        arm_options={"page_size": 10},
        prepare=lambda arm: seeded.extend(_seed(arm)),
    ) as stack:
        print(
            f"ARM {stack.arm.url}   identity {stack.identity.endpoint}\nService Bus {stack.servicebus.connection_string}"
            f"\nfunctions {stack.host.url}/api (function key set)   queue {stack.queue} -> topic {stack.topic}\n"
        )
        pusher = next(run for run in seeded if _pushes_image(run))
        flows = (_entry_points, _redelivery, _reschedule, _dead_letter_and_resubmit, lambda s: _discovery(s, pusher))
        checks = []
        for flow in flows:
            began = time.monotonic()
            checks.append(flow(stack))
            print(f"  ({time.monotonic() - began:.1f} s)")
        token_calls, connections = stack.identity.calls, stack.arm.stats()["connections"]
    print(
        f"\nmanaged-identity token requests: {token_calls}; TCP connections to ARM: {connections}; {time.monotonic() - started:.1f} s"
    )
    failed = [name for name, ok in checks if not ok]
    if failed:
        print(f"demo FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("demo ok: every flow ended as it should")
    return 0


def _seed(arm: ArmEmulator) -> list[dict[str, Any]]:
    """The runs the flows archive, and a registry of 400 realistic runs for the policy sweep."""
    for run in ("lroqueue1", "lropost1", "lropatch1", "flaky1", "doomed1", "throttled1"):
        arm.add_run(SUBSCRIPTION, GROUP, REGISTRY, run, example="RunsGet")
    return arm.seed_registry(SUBSCRIPTION, GROUP, PLATFORM, 400, seed=2)


class _Printer(logging.Handler):
    """The app's own redelivery, dead-letter and re-schedule log lines, as they happen."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if any(word in text for word in ("redelivery", "dead-letter", "re-scheduled")):
            print(f"    [app log] {text}")


def _show_app_log() -> None:
    logger = logging.getLogger("shared.service")
    logger.setLevel(logging.WARNING)
    logger.addHandler(_Printer(logging.WARNING))
    logger.propagate = False
    # A client closing its connection makes proton log a broken pipe at ERROR: not news in a demo.
    logging.getLogger("proton").setLevel(logging.CRITICAL)


# ---- the three entry points ---------------------------------------------------------------------------


def _entry_points(stack: WireStack) -> tuple[str, bool]:
    """The same four events to the queue (CLI), POST /api/archive-events and the ARM-compatible PATCH route."""
    print("-- entry points: acr-archiver send -> queue, POST /api/archive-events, PATCH /api/subscriptions/... --")
    stack.arm.set_lro("lroqueue1", polls=2, via="async")
    queued = send_events(stack, [_event(SEED_RUN, True), _event("lroqueue1", True), _event(MISSING_RUN, True)])
    print(
        f"  acr-archiver send: {len(queued)} events on {stack.queue} (an invalid one is refused by the CLI itself: it validates as the app does)"
    )
    statuses = []
    for channel, lro, via in (("POST", "lropost1", "location"), ("PATCH", "lropatch1", "run")):
        stack.arm.set_lro(lro, polls=2, via=via)
        invalid = "../../etc" if channel == "POST" else "not%20a%20run"  # in a PATCH URL it must still match the route
        for run_id, flag in ((SEED_RUN, channel != "POST"), (lro, True), (MISSING_RUN, True), (invalid, "yes")):
            statuses.append(f"{channel} {run_id[:12]} -> HTTP {_http(stack, channel, run_id, flag).status_code}")
    print("  " + "; ".join(statuses))
    records = receive_outcomes(stack, "all-outcomes", 11, timeout=TIMEOUT)  # 3 queued + 4 POST + 4 PATCH
    _table(records)
    failed = receive_outcomes(stack, "failed-outcomes", 3, timeout=TIMEOUT)
    print(
        f"  subscription failed-outcomes (rule outcome = 'failed') received {len(failed)}: "
        + ", ".join(f"{r['body']['source']} {r['body']['request']['runId']}" for r in failed)
    )
    kinds = {r["body"]["outcome"] for r in records}
    return "entry points", len(records) == 11 and kinds == {"succeeded", "failed", "rejected"} and len(failed) == 3


def _event(run_id: str, flag: Any) -> dict[str, Any]:
    return {"runResourceId": _resource_id(run_id), "isArchiveEnabled": flag}


def _resource_id(run_id: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/runs/{run_id}"


def _http(stack: WireStack, method: str, run_id: str, flag: Any) -> requests.Response:
    """One request to the stand-in, with the function key and the webhook signature."""
    if method == "POST":
        url = f"{stack.host.url}/api/archive-events"
        payload: Any = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/pipelines/nightly",
            "type": "Acr.Run.ArchiveRequested",
            "data": {"registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": flag},
        }
    else:
        url = f"{stack.host.url}/api{_resource_id(run_id)}?api-version=2019-04-01"
        payload = {"isArchiveEnabled": flag}
    return _signed(stack, method, url, payload)


def _signed(stack: WireStack, method: str, url: str, payload: Any) -> requests.Response:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Signature-256": signature, "x-functions-key": stack.host.key}
    return requests.request(method, url, data=body, headers=headers, timeout=TIMEOUT)


def _table(records: list[dict[str, Any]]) -> None:
    print(f"  {'source':<10} {'outcome':<9} {'subject':<24} {'run':<40} {'dlv':>3} {'tries':>5} {'arm':>4}  detail")
    for record in sorted(records, key=lambda r: (r["body"]["source"], r["body"]["outcome"])):
        body = record["body"]
        run = (body["request"] or {}).get("runId", "-")
        properties = (body["run"] or {}).get("properties", {})
        detail = (
            f"{body['error']['code']}: {body['error']['message']}"
            if body["error"]
            else f"status={properties.get('status')} isArchiveEnabled={properties.get('isArchiveEnabled')}"
        )
        status = record["application_properties"].get("httpStatus", "-")
        delivery = body["deliveryCount"] if body["deliveryCount"] is not None else "-"
        print(
            f"  {body['source']:<10} {body['outcome']:<9} {record['subject']:<24} {run:<40} {delivery!s:>3} {body['attempts']:>5} {status!s:>4}  {detail[:70]}"
        )


# ---- Service Bus flows ---------------------------------------------------------------------------------


def _wait(what: str, observe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = observe()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"never observed: {what}")


def _redelivery(stack: WireStack) -> tuple[str, bool]:
    """Two 503s: the function raises, the stand-in abandons, the broker redelivers with a growing delivery count."""
    print("\n-- transient fault: ARM answers 503 twice; the broker redelivers --")
    stack.arm.script("flaky1", *[Fault.status(503, error_code="ServiceUnavailable")] * 2)
    (message_id,) = send_events(stack, [_event("flaky1", True)])
    (record,) = receive_outcomes(stack, "all-outcomes", 1, timeout=TIMEOUT)
    body = record["body"]
    print(
        f"  outcome {body['outcome']} for {message_id} on delivery {body['deliveryCount']} "
        f"(the broker's delivery count went 1 -> 2 -> 3; nothing was published for deliveries 1 and 2)"
    )
    return "redelivery", (body["outcome"], body["deliveryCount"]) == ("succeeded", 3)


def _dead_letter_and_resubmit(stack: WireStack) -> tuple[str, bool]:
    """503 on every delivery: the last one publishes `failed` and the broker dead-letters; the CLI re-submits it."""
    print(f"\n-- dead letter: ARM answers 503 on all {MAX_DELIVERIES} deliveries (MaxDeliveryCount {MAX_DELIVERIES}) --")
    stack.arm.script("doomed1", *[Fault.status(503, error_code="ServiceUnavailable")] * MAX_DELIVERIES)
    (message_id,) = send_events(stack, [_event("doomed1", True)])
    (failed,) = receive_outcomes(stack, "failed-outcomes", 1, timeout=TIMEOUT)
    error = failed["body"]["error"]
    print(
        f"  failed-outcomes: {failed['subject']} {error['code']} retryable={error['retryable']} on delivery {failed['body']['deliveryCount']}"
    )
    _wait("the dead letter", lambda: stack.servicebus.dead_letters(stack.queue))
    status, out, _ = stack.cli("dead-letters", "list", "--wait", "1")
    print("  $ acr-archiver dead-letters list\n" + "\n".join(f"    {line}" for line in out.splitlines()))
    status, out, _ = stack.cli("dead-letters", "resubmit", "--wait", "1")
    print(
        "  $ acr-archiver dead-letters resubmit   (the fault has cleared)\n"
        + "\n".join(f"    {line}" for line in out.splitlines())
    )
    records = receive_outcomes(stack, "all-outcomes", 2, timeout=TIMEOUT)
    ends = [r["body"]["outcome"] for r in records]
    run = stack.arm.get_run(SUBSCRIPTION, GROUP, REGISTRY, "doomed1")["properties"]["isArchiveEnabled"]
    print(
        f"  all-outcomes: {' then '.join(ends)}; run doomed1 isArchiveEnabled={run}; dead-letter queue now holds "
        f"{len(stack.servicebus.dead_letters(stack.queue))}"
    )
    ok = status == 0 and ends == ["failed", "succeeded"] and run is True and failed["body"]["inboundMessageId"] == message_id
    return "dead letter and resubmit", ok


def _reschedule(stack: WireStack) -> tuple[str, bool]:
    """429 with Retry-After 2 s, longer than the 1 s budget: a copy is scheduled, the original completed, the copy succeeds later."""
    print("\n-- long throttle: ARM answers 429 Retry-After: 2 (budget ARM_RETRY_MAX_SECONDS=1) --")
    stack.arm.script("throttled1", Fault.status(429, retry_after=2, error_code="TooManyRequests"))
    (message_id,) = send_events(stack, [_event("throttled1", True)])
    sent = time.monotonic()
    (scheduled,) = _wait("the scheduled copy", lambda: stack.servicebus.scheduled(stack.queue))
    print(f"  scheduled on {stack.queue}: {scheduled['message_id']} {scheduled['application_properties']}")
    (record,) = receive_outcomes(stack, "all-outcomes", 1, timeout=TIMEOUT)
    body = record["body"]
    print(
        f"  {time.monotonic() - sent:.1f} s later: outcome {body['outcome']} inboundMessageId={body['inboundMessageId']} "
        f"message id {record['message_id']}"
    )
    return "re-schedule", body["outcome"] == "succeeded" and body["inboundMessageId"] == message_id


def _discovery(stack: WireStack, pusher: dict[str, Any]) -> tuple[str, bool]:
    """A policy sweep over HTTP (several ARM pages): its events go onto the queue and come back as outcomes; then an ImagePushed event."""
    print(f"\n-- discovery: policy {POLICY['name']!r} on {PLATFORM} (400 seeded runs, ARM pages of 10) --")
    response = _signed(stack, "POST", f"{stack.host.url}/api/archive-policies/{POLICY['name']}/sweep", {})
    summary = response.json()
    print(
        f"  POST /api/archive-policies/{POLICY['name']}/sweep -> HTTP {response.status_code}: {summary['outcome']}, "
        f"{summary['pages']} pages, matched {summary['matched']}, enqueued {summary['enqueued']}"
    )
    records = receive_outcomes(stack, "all-outcomes", summary["enqueued"] + 1, timeout=TIMEOUT)
    subjects = [r["subject"] for r in records]
    archived = sum(r["body"].get("outcome") == "succeeded" and r["subject"] == "RunArchiveUpdated" for r in records)
    print(
        f"  all-outcomes: {subjects.count('ArchivePolicySwept')} ArchivePolicySwept summary, {archived} runs archived through the queue"
    )
    pushed_ok = _image_pushed(stack, pusher)
    drain(stack, "failed-outcomes", quiet=0.2)
    ok = response.status_code == 200 and summary["pages"] > 1 and archived == summary["enqueued"] > 0 and pushed_ok
    return "discovery", ok


def _pushes_image(run: dict[str, Any]) -> bool:
    properties = run.get("properties", {})
    return bool(properties.get("outputImages")) and properties.get("task") != "release"


def _image_pushed(stack: WireStack, pusher: dict[str, Any]) -> bool:
    """An Event Grid ImagePushed event over HTTP archives the run that pushed the image."""
    image = pusher["properties"]["outputImages"][0]
    registry_id = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{PLATFORM}"
    )
    push = {
        "id": str(uuid.uuid4()),
        "topic": registry_id,
        "subject": f"{image['repository']}:{image['tag']}",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2026-12-01T10:00:00Z",
        "dataVersion": "1.0",
        "data": {"action": "push", "target": {"repository": image["repository"], "digest": image["digest"], "tag": image["tag"]}},
    }
    response = _signed(stack, "POST", f"{stack.host.url}/api/archive-events", [push])
    outcomes = response.json()["outcomes"]
    (record,) = receive_outcomes(stack, "all-outcomes", 1, timeout=TIMEOUT)
    archived = stack.arm.get_run(SUBSCRIPTION, GROUP, PLATFORM, pusher["name"])["properties"]["isArchiveEnabled"]
    print(
        f"  ImagePushed {image['repository']}@{image['digest'][:19]}... -> HTTP {response.status_code}, "
        + ", ".join(f"{o['outcome']} run {o['request']['runId'] if o['request'] else '-'}" for o in outcomes)
        + f"; topic got {record['subject']} (source {record['body']['source']}); isArchiveEnabled={archived}"
    )
    return response.status_code == 200 and archived is True


if __name__ == "__main__":
    sys.exit(main())
