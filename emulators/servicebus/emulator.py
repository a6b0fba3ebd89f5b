"""`ServiceBusEmulator`: start the broker on a loopback port, read its state, inject faults."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Self

from emulators.servicebus.broker import Broker
from emulators.servicebus.cbs import Keys
from emulators.servicebus.config import load_config
from emulators.servicebus.faults import SendRejection
from emulators.servicebus.store import MessageQueue, Namespace, StoredMessage

__all__ = ["ServiceBusEmulator"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "servicebus-emulator" / "Config.json"


def _describe(message: StoredMessage) -> dict[str, Any]:
    return {
        "sequence_number": message.sequence_number,
        "message_id": message.message_id,
        "delivery_count": message.delivery_count,
        "locked": message.lock_token is not None,
        "scheduled_at": message.scheduled_at,
        "application_properties": dict(message.application_properties),
        "dead_letter_reason": message.dead_letter[0] if message.dead_letter else None,
        "dead_letter_description": message.dead_letter[1] if message.dead_letter else None,
    }


class ServiceBusEmulator:
    """A local AMQP 1.0 Service Bus for the real `azure-servicebus` client (sync and async)."""

    def __init__(
        self,
        config: str | Path | Mapping[str, Any] = DEFAULT_CONFIG,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Keys = Keys(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        # The clock drives locks, schedules, TTL and duplicate windows; tests may move it forward.
        self.namespace = Namespace(load_config(config), clock)
        self._broker = Broker(self.namespace, keys, host, port)
        self._thread: threading.Thread | None = None
        self.host = host

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Self:
        """Listen and serve on a background thread; raise if the port cannot be bound."""
        self._thread = threading.Thread(target=self._broker.run, name="servicebus-emulator", daemon=True)
        self._thread.start()
        self._broker.ready.wait(10)
        if self._broker.startup_error is not None:
            self._thread.join(5)
            where = f"{self.host}:{self._broker.port}"
            raise OSError(f"Service Bus emulator could not listen on {where}") from self._broker.startup_error
        return self

    def stop(self) -> None:
        """Close every connection, stop the reactor and join its thread."""
        if self._thread is None:
            return
        if self._thread.is_alive():
            try:
                self._broker.call(self._broker.stop)
            except TimeoutError:
                pass
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (resolved when started on port 0)."""
        return self._broker.port

    @property
    def connection_string(self) -> str:
        """The official emulator's connection string form, pointing at this broker."""
        return (
            f"Endpoint=sb://{self.host}:{self.port};SharedAccessKeyName={self.keys.name};"
            f"SharedAccessKey={self.keys.key};UseDevelopmentEmulator=true;"
        )

    @property
    def fully_qualified_namespace(self) -> str:
        """`host:port`, for `ServiceBusClient(namespace, credential, use_tls=False)` (the bearer-token form)."""
        return f"{self.host}:{self.port}"

    # ---- state -------------------------------------------------------------------------------------
    def _queue(self, path: str) -> MessageQueue:
        return self.namespace.receiver(path)

    def messages(self, path: str) -> list[dict[str, Any]]:
        """The messages an entity holds now (a queue, `topic/Subscriptions/sub`, or either's `/$deadletterqueue`)."""
        return self._broker.call(lambda: [_describe(m) for m in self._queue(path).messages.values()])

    def dead_letters(self, path: str) -> list[dict[str, Any]]:
        """The messages in an entity's dead-letter sub-queue."""
        return self.messages(f"{path}/$deadletterqueue")

    def scheduled(self, path: str) -> list[dict[str, Any]]:
        """Messages a queue or topic holds for a later ScheduledEnqueueTime."""
        return self._broker.call(lambda: [_describe(m) for m in self.namespace.sender(path).scheduled.values()])

    def duplicates_dropped(self, path: str) -> int:
        """How many sends to a queue or topic duplicate detection has dropped."""
        return self._broker.call(lambda: self.namespace.sender(path).duplicates_dropped)

    def connection_count(self) -> int:
        """Open client connections."""
        return self._broker.call(lambda: len(self._broker.connections))

    def link_count(self, path: str | None = None) -> int:
        """Open links (to one entity or its management node, or all links but `$cbs`)."""
        def count() -> int:
            from emulators.servicebus.broker import _links
            from emulators.servicebus.store import management_base

            total = 0
            for connection in self._broker.connections.values():
                for link in _links(connection, lambda l: "sb_kind" in l._attrs and l.sb_kind != "cbs"):
                    base = management_base(link.sb_path) or link.sb_path
                    total += path is None or base.lower() == path.lower()
            return total

        return self._broker.call(count)

    def operations(self) -> dict[str, int]:
        """Requests served so far: management operations by name, put-tokens as `$cbs:put-token:<type>`."""
        return self._broker.call(lambda: dict(self._broker.operations))

    # ---- faults ------------------------------------------------------------------------------------
    def refuse_cbs(self, times: int = 1) -> None:
        """Answer the next `times` put-token requests with 401."""
        self._broker.call(lambda: setattr(self._broker.faults, "refuse_cbs", self._broker.faults.refuse_cbs + times))

    def reject_sends(self, times: int = 1, rejection: SendRejection = SendRejection()) -> None:
        """Reject the next `times` transfers on send links with `rejection`'s error."""
        self._broker.call(lambda: self._broker.faults.reject_sends.extend([rejection] * times))

    def detach_links(self, path: str | None = None, condition: str = "amqp:link:detach-forced") -> int:
        """Detach the links to an entity (all entity links when None) with an error; returns how many."""
        description = "The emulator detached this link (injected fault)."
        return self._broker.call(lambda: self._broker.detach(path, condition, description))

    def drop_connections(self, graceful: bool = False) -> int:
        """Drop every client connection: cut the socket, or send close with amqp:connection:forced."""
        return self._broker.call(lambda: self._broker.drop(graceful))
