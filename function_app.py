"""ACR Run Archiver function app (Python v2 programming model): triggers and routes, wiring only.

Each function decodes its input, calls one function of the `shared` package and maps the result to
an HTTP response or to Service Bus settlement (return = complete, raise = redelivery / dead-letter).
"""

from __future__ import annotations

import os

import azure.functions as func

from shared import webhook
from shared.runtime import Runtime
from shared.service import QueueMessage

RUN_ROUTE = (
    "subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
    "/providers/Microsoft.ContainerRegistry/registries/{registryName}/runs/{runId}"
)


class _FunctionApp(func.FunctionApp):
    """FunctionApp whose indexing can be repeated.

    azure-functions 1.26 remembers every name get_functions() returned and refuses a second call
    ("does not have a unique function name"); the worker indexes once, but tests and tools index
    again. Names are still checked for uniqueness within each call.
    """

    def get_functions(self) -> list[func.Function]:
        self.functions_bindings = {}
        return super().get_functions()


app = _FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
runtime = Runtime(os.environ)  # the environment is passed, not read: settings are built on first use


@app.function_name("archive_queue")
@app.service_bus_queue_trigger(arg_name="msg", queue_name="%ARCHIVE_QUEUE_NAME%", connection="ServiceBusConnection")
def archive_queue(msg: func.ServiceBusMessage) -> None:
    """Archive-change events from the queue; raising leaves the message to Service Bus (contract §5)."""
    runtime.archiver().handle_queue_message(
        QueueMessage(
            body=msg.get_body(),
            message_id=msg.message_id,
            correlation_id=msg.correlation_id,
            delivery_count=msg.delivery_count,
            content_type=msg.content_type,
            application_properties=msg.application_properties or {},
        )
    )


@app.function_name("arm_patch_run")
@app.route(route=RUN_ROUTE, methods=["PATCH"])
def arm_patch_run(req: func.HttpRequest) -> func.HttpResponse:
    """ARM-compatible mirror of Runs - Update."""
    return _response(webhook.arm_patch(runtime, req))


@app.function_name("archive_events")
@app.route(route="archive-events", methods=["POST"])
def archive_events(req: func.HttpRequest) -> func.HttpResponse:
    """One archive event, a batch, or Event Grid's subscription validation."""
    return _response(webhook.archive_events(runtime, req))


@app.function_name("archive_events_options")
@app.route(route="archive-events", methods=["OPTIONS"])
def archive_events_options(req: func.HttpRequest) -> func.HttpResponse:
    """CloudEvents webhook validation handshake."""
    return _response(webhook.webhook_options(req))


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness and configuration check; names missing settings, never their values."""
    return _response(webhook.health(runtime))


def _response(reply: webhook.HttpReply) -> func.HttpResponse:
    mimetype = "application/json" if reply.body is not None else None
    return func.HttpResponse(reply.body_bytes(), status_code=reply.status, headers=reply.headers, mimetype=mimetype, charset="utf-8")
