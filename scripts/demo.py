"""`make demo`: sample archive events through the real functions, against the local emulators.

Starts the ARM/ACR emulator and the managed-identity endpoint on loopback, points the app at them,
sends events through the queue trigger and both HTTP routes, and prints every outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage

from emulators import ArmEmulator, IdentityEmulator
from shared.app import build_app

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "myRegistry"
SEED_RUN = "0accec26-d6de-4757-8e74-d080f38eaaab"
MISSING_RUN = "doesnotexist1"
SECRET = "demo-webhook-secret"


def main() -> int:
    """Run the demo; exit 0 when succeeded, failed and rejected outcomes all came out."""
    logging.basicConfig(level=logging.ERROR, format="  [log] %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="acr-archiver-demo-") as folder:  # removed at the end: the demo prints every outcome
        return _demo(Path(folder) / "outcomes.jsonl")


def _demo(outcome_file: Path) -> int:
    """Send the sample events, with OUTCOME_FILE at `outcome_file`, and print the outcomes."""
    with IdentityEmulator() as identity, ArmEmulator(token_validator=identity.is_valid) as arm:
        os.environ.update(identity.environ())
        os.environ.update(
            {
                "ARM_ENDPOINT": arm.url,
                "ARCHIVE_QUEUE_NAME": "acr-archive-events",
                "OUTCOME_FILE": str(outcome_file),
                "DEFAULT_SUBSCRIPTION_ID": SUBSCRIPTION,
                "DEFAULT_RESOURCE_GROUP": GROUP,
                "WEBHOOK_SECRET": SECRET,
                "MAX_DELIVERY_COUNT": "10",
            }
        )
        app = build_app(dict(os.environ))
        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
        senders = {"queue": _send_queue, "POST": _send_post, "PATCH": _send_patch}
        print(f"ARM emulator {arm.url}   identity endpoint {identity.endpoint}\noutcomes -> {outcome_file}\n")
        settled = []
        for channel, send in senders.items():
            lro_run = f"lro{channel.lower()}1"
            arm.add_run(SUBSCRIPTION, GROUP, REGISTRY, lro_run, example="RunsGet")
            arm.set_lro(lro_run, polls=2, via={"queue": "async", "POST": "location", "PATCH": "run"}[channel])
            for run_id, flag in ((SEED_RUN, channel != "POST"), (lro_run, True), (MISSING_RUN, True), ("../../etc", "yes")):
                settled.append(send(functions, run_id, flag))
        token_calls = identity.calls
        connections = arm.stats()["connections"]
    records = [json.loads(line) for line in outcome_file.read_text(encoding="utf-8").split("\n") if line]
    print(f"{'entry':<6} {'settled':<9} {'outcome':<9} {'subject':<24} {'registry/run':<48} {'tries':>5} {'arm':>4}  detail")
    for channel_result, record in zip(settled, records):
        print(f"{channel_result:<16} {_line(record)}")
    seen = {record["body"]["outcome"] for record in records}
    print(f"\n{len(records)} outcomes from {len(settled)} events; managed-identity token requests: {token_calls}; TCP connections to ARM: {connections}")
    missing = {"succeeded", "failed", "rejected"} - seen
    if missing or len(records) != len(settled):
        print(f"demo FAILED: outcomes missing ({', '.join(sorted(missing)) or 'count'})", file=sys.stderr)
        return 1
    return demo_discovery()


def _resource_id(run_id: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/runs/{run_id}"


def _route(run_id: str) -> dict[str, str]:
    return {"subscriptionId": SUBSCRIPTION, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run_id}


def _send_queue(functions: dict[str, Any], run_id: str, flag: Any) -> str:
    """Through the queue trigger, as a resource-id event; returns how the message was settled."""
    event = {"runResourceId": _resource_id(run_id), "isArchiveEnabled": flag}
    if not isinstance(flag, bool):
        event = {"registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": flag}
    message = ServiceBusMessage(
        body=json.dumps(event).encode(),
        message_id=str(uuid.uuid4()),
        delivery_count=1,
        application_properties={},
        user_properties={},
    )
    try:
        functions["archive_queue"](message)
    except Exception as error:  # the host would abandon the message: Service Bus redelivers it
        return f"queue  raised {type(error).__name__}"
    return "queue  completed"


def _send_post(functions: dict[str, Any], run_id: str, flag: Any) -> str:
    """POST archive-events with a CloudEvent; returns the HTTP status."""
    event = {
        "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/pipelines/nightly", "type": "Acr.Run.ArchiveRequested",
        "data": {"registryName": REGISTRY, "runId": run_id, "isArchiveEnabled": flag},
    }
    response = functions["archive_events"](_request("POST", "archive-events", event, {}))
    return f"POST   HTTP {response.status_code}"


def _send_patch(functions: dict[str, Any], run_id: str, flag: Any) -> str:
    """The ARM-compatible PATCH route; returns the HTTP status."""
    response = functions["arm_patch_run"](_request("PATCH", _resource_id(run_id).lstrip("/"), {"isArchiveEnabled": flag}, _route(run_id)))
    return f"PATCH  HTTP {response.status_code}"


def _request(method: str, path: str, payload: Any, route: dict[str, str]) -> func.HttpRequest:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return func.HttpRequest(
        method,
        f"http://localhost:7071/api/{path}?api-version=2019-04-01",
        headers={"Content-Type": "application/json", "X-Signature-256": signature},
        params={"api-version": "2019-04-01"} if method == "PATCH" else {},
        route_params=route,
        body=body,
    )


def _line(record: dict[str, Any]) -> str:
    body = record["body"]
    request = body["request"] or {}
    run = body["run"] or {}
    properties = run.get("properties", {})
    where = f"{request.get('registryName', '-')}/{request.get('runId', '-')}"
    if body["error"]:
        detail = f"{body['error']['code']}: {body['error']['message']}"
    else:
        detail = f"provisioningState={properties.get('provisioningState')} status={properties.get('status')} isArchiveEnabled={properties.get('isArchiveEnabled')}"
    status = record["application_properties"].get("httpStatus", "-")
    return f"{body['outcome']:<9} {record['subject']:<24} {where:<48} {body['attempts']:>5} {status!s:>4}  {detail[:100]}"


def demo_discovery() -> int:
    """Discovery (contract §8): a policy sweep of a seeded registry over several pages, then an ImagePushed event.

    Self-contained: its own emulators, settings and outcome file. Under OUTCOME_FILE the sweep processes
    the runs it lists itself (`source: "policy"`); with Service Bus it would enqueue them instead.
    """
    from azure.functions import meta
    from azure.functions.timer import TimerRequestConverter

    registry = "platformRegistry"
    registry_id = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{registry}"
    outcome_file = Path(tempfile.mkdtemp(prefix="acr-archiver-discovery-")) / "outcomes.jsonl"
    policy = {"name": "release-builds", "registry": f"{SUBSCRIPTION}/{GROUP}/{registry}", "filter": "TaskName eq 'release' and Status eq 'Succeeded'"}
    with IdentityEmulator() as identity, ArmEmulator(token_validator=identity.is_valid, page_size=10) as arm:
        runs = arm.seed_registry(SUBSCRIPTION, GROUP, registry, 400, seed=2)
        os.environ.update(identity.environ())
        env = {
            **identity.environ(), "ARM_ENDPOINT": arm.url, "ARCHIVE_QUEUE_NAME": "acr-archive-events", "OUTCOME_FILE": str(outcome_file),
            "ARCHIVE_POLICIES": json.dumps([policy]), "ARCHIVE_POLICY_SCHEDULE": "0 */15 * * * *",
        }
        app = build_app(env)
        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
        print(f"\n-- discovery: policy {policy['name']!r} on {registry} (400 seeded runs, ARM pages of 10) --")
        timer = TimerRequestConverter.decode(meta.Datum(json.dumps({"IsPastDue": False}), "json"), trigger_metadata={})
        functions["archive_policy_timer"](timer)
        records = [json.loads(line) for line in outcome_file.read_text().splitlines()]
        summary = records[-1]["body"]
        print(f"timer sweep  $filter={summary['filter']}")
        print(f"             {summary['outcome']}: {summary['pages']} pages, matched {summary['matched']}, archived "
              f"{sum(r['body']['outcome'] == 'succeeded' for r in records[:-1])} (outcomes source={records[0]['body']['source'] if records[:-1] else '-'})")
        pusher = next(r for r in runs if r["properties"].get("outputImages") and r["properties"].get("task") != "release")
        image = pusher["properties"]["outputImages"][0]
        push = {
            "id": str(uuid.uuid4()), "topic": registry_id, "subject": f"{image['repository']}:{image['tag']}",
            "eventType": "Microsoft.ContainerRegistry.ImagePushed", "eventTime": "2026-12-01T10:00:00Z", "dataVersion": "1.0",
            "data": {"action": "push", "target": {"repository": image["repository"], "digest": image["digest"], "tag": image["tag"]}},
        }
        response = functions["archive_events"](_request("POST", "archive-events", [push], {}))
        outcomes = json.loads(response.get_body())["outcomes"]
        print(f"ImagePushed  {image['repository']}@{image['digest'][:19]}... -> HTTP {response.status_code}, "
              + ", ".join(f"{o['outcome']} run {o['request']['runId'] if o['request'] else '-'}" for o in outcomes))
        archived = arm.get_run(SUBSCRIPTION, GROUP, registry, pusher["name"])["properties"]["isArchiveEnabled"]
        app.close()
    ok = summary["outcome"] == "succeeded" and summary["pages"] > 1 and summary["matched"] > 0 and archived is True
    print(f"discovery {'ok' if ok else 'FAILED'}: sweep {summary['outcome']}, pushed run {pusher['name']} isArchiveEnabled={archived}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
