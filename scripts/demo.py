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

SUBSCRIPTION = "4385cf00-2d3a-425a-832f-f4285b1c9dce"
GROUP = "myResourceGroup"
REGISTRY = "myRegistry"
SEED_RUN = "0accec26-d6de-4757-8e74-d080f38eaaab"
LRO_RUN = "cab7"
MISSING_RUN = "doesnotexist1"
SECRET = "demo-webhook-secret"


def main() -> int:
    """Run the demo; exit 0 when succeeded, failed and rejected outcomes all came out."""
    logging.basicConfig(level=logging.WARNING, format="  [log] %(levelname)s %(name)s: %(message)s")
    outcome_file = Path(tempfile.mkdtemp(prefix="acr-archiver-demo-")) / "outcomes.jsonl"
    with IdentityEmulator() as identity, ArmEmulator(token_validator=identity.is_valid) as arm:
        arm.add_run(SUBSCRIPTION, GROUP, REGISTRY, LRO_RUN, example="RunsGet")
        arm.set_lro(LRO_RUN, polls=2, via="async")
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
        from function_app import app  # imported after the settings are in place, as the host would

        functions = {f.get_function_name(): f.get_user_function() for f in app.get_functions()}
        print(f"ARM emulator {arm.url}  identity endpoint {identity.endpoint}  outcomes -> {outcome_file}\n")
        _send_queue(functions, {"subscriptionId": SUBSCRIPTION, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": True})
        _send_queue(functions, {"runResourceId": _resource_id(LRO_RUN), "isArchiveEnabled": True})
        _send_queue(functions, {"registryName": REGISTRY, "runId": MISSING_RUN, "isArchiveEnabled": True})
        _send_queue(functions, {"registryName": REGISTRY, "runId": "../../etc", "isArchiveEnabled": "yes"})
        cloud_event = {
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "/pipelines/nightly", "type": "Acr.Run.ArchiveRequested",
            "data": {"registryName": REGISTRY, "runId": SEED_RUN, "isArchiveEnabled": False},
        }
        _post(functions["archive_events"], "archive-events", cloud_event, "POST")
        _post(functions["arm_patch_run"], _resource_id(SEED_RUN).lstrip("/"), {"isArchiveEnabled": True}, "PATCH", route=_route(SEED_RUN))
        _post(functions["archive_events"], "archive-events", [{"registryName": "no", "runId": SEED_RUN, "isArchiveEnabled": True}], "POST")
        token_calls = identity.calls
    records = [json.loads(line) for line in outcome_file.read_text().splitlines()]
    print(f"{'source':<10} {'outcome':<9} {'subject':<24} {'registry/run':<50} {'archive':<7} {'tries':>5} {'http':>4}  detail")
    for record in records:
        print(_line(record))
    seen = {record["body"]["outcome"] for record in records}
    print(f"\n{len(records)} outcomes; managed-identity token requests: {token_calls}")
    missing = {"succeeded", "failed", "rejected"} - seen
    if missing:
        print(f"demo FAILED: no {', '.join(sorted(missing))} outcome", file=sys.stderr)
        return 1
    return 0


def _resource_id(run_id: str) -> str:
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.ContainerRegistry/registries/{REGISTRY}/runs/{run_id}"


def _route(run_id: str) -> dict[str, str]:
    return {"subscriptionId": SUBSCRIPTION, "resourceGroupName": GROUP, "registryName": REGISTRY, "runId": run_id}


def _send_queue(functions: dict[str, Any], event: dict[str, Any]) -> None:
    message = ServiceBusMessage(
        body=json.dumps(event).encode(),
        message_id=str(uuid.uuid4()),
        delivery_count=1,
        application_properties={},
        user_properties={},
    )
    functions["archive_queue"](message)


def _post(function: Any, path: str, payload: Any, method: str, route: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = func.HttpRequest(
        method,
        f"http://localhost:7071/api/{path}",
        headers={"Content-Type": "application/json", "X-Signature-256": signature},
        route_params=route or {},
        body=body,
    )
    function(request)


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
    archive = request.get("isArchiveEnabled", "-")
    return f"{body['source']:<10} {body['outcome']:<9} {record['subject']:<24} {where:<50} {str(archive):<7} {body['attempts']:>5} {status!s:>4}  {detail[:110]}"


if __name__ == "__main__":
    sys.exit(main())
