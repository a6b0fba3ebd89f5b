"""The HTTP routes (contract §6): an azure.functions request in, an HttpResponse out."""

from __future__ import annotations

import azure.functions as func

from shared import webhook
from shared.runtime import Runtime

__all__ = ["RUN_ROUTE", "SWEEP_ROUTE", "http_blueprint"]

RUN_ROUTE = (
    "subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    "/providers/Microsoft.ContainerRegistry/registries/{registryName}/runs/{runId}"
)

SWEEP_ROUTE = "archive-policies/{name}/sweep"


def http_blueprint(runtime: Runtime) -> func.Blueprint:
    """The ARM mirror, the archive-events webhook (POST and OPTIONS), the policy sweep and the anonymous health check."""
    blueprint = func.Blueprint()

    @blueprint.function_name("arm_patch_run")
    @blueprint.route(route=RUN_ROUTE, methods=["PATCH"])
    def arm_patch_run(req: func.HttpRequest) -> func.HttpResponse:
        """ARM-compatible mirror of Runs - Update."""
        return _response(webhook.arm_patch(runtime, req))

    @blueprint.function_name("archive_events")
    @blueprint.route(route="archive-events", methods=["POST"])
    def archive_events(req: func.HttpRequest) -> func.HttpResponse:
        """One archive event, a batch, or Event Grid's subscription validation."""
        return _response(webhook.archive_events(runtime, req))

    @blueprint.function_name("archive_events_options")
    @blueprint.route(route="archive-events", methods=["OPTIONS"])
    def archive_events_options(req: func.HttpRequest) -> func.HttpResponse:
        """CloudEvents webhook validation handshake."""
        return _response(webhook.webhook_options(req))

    @blueprint.function_name("sweep_policy")
    @blueprint.route(route=SWEEP_ROUTE, methods=["POST"])
    def sweep_policy(req: func.HttpRequest) -> func.HttpResponse:
        """Run one archive policy's sweep now (contract §8)."""
        return _response(webhook.sweep_policy(runtime, req))

    @blueprint.function_name("health")
    @blueprint.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        """Liveness and configuration check; names missing settings, never their values."""
        return _response(webhook.health(runtime))

    return blueprint


def _response(reply: webhook.HttpReply) -> func.HttpResponse:
    mimetype = "application/json" if reply.body is not None else None
    return func.HttpResponse(reply.body_bytes(), status_code=reply.status, headers=reply.headers, mimetype=mimetype, charset="utf-8")
