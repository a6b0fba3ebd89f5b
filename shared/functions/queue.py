"""The queue trigger: a Service Bus message in, settlement out (return completes, raise redelivers)."""

from __future__ import annotations

import azure.functions as func

from shared.runtime import Runtime
from shared.service import QueueMessage

__all__ = ["queue_blueprint"]


def queue_blueprint(runtime: Runtime) -> func.Blueprint:
    """The `archive_queue` function on %ARCHIVE_QUEUE_NAME% (contract §5)."""
    blueprint = func.Blueprint()

    @blueprint.function_name("archive_queue")
    @blueprint.service_bus_queue_trigger(arg_name="msg", queue_name="%ARCHIVE_QUEUE_NAME%", connection="ServiceBusConnection")
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

    return blueprint
