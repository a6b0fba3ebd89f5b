"""A recording stand-in for azure.servicebus.ServiceBusClient: the one seam the tests replace.

It receives the real azure.servicebus.ServiceBusMessage objects the app builds, records them, and
checks what the real client would not tolerate: a sender used by two threads at once, or used after
close. It can be told to fail the next sends with the errors a dropped connection raises.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from azure.servicebus import ServiceBusMessage

__all__ = ["RecordingServiceBus", "Sent"]


@dataclass
class Sent:
    """One message as the broker would have accepted it."""

    entity: str
    message: ServiceBusMessage
    scheduled_for: datetime | None = None


@dataclass
class RecordingServiceBus:
    """A fake namespace: hands out clients and senders, records every message sent through them."""

    send_delay: float = 0.0
    sent: list[Sent] = field(default_factory=list)
    clients_created: int = 0
    senders_created: int = 0
    failures: list[BaseException] = field(default_factory=list)
    concurrent_use: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> FakeClient:
        """A new client, as ServiceBusClient(...) would be."""
        with self._lock:
            self.clients_created += 1
        return FakeClient(self)

    def fail_next(self, *errors: BaseException) -> None:
        """Make the next sends raise these errors, one each."""
        with self._lock:
            self.failures.extend(errors)

    def messages(self, entity: str | None = None) -> list[ServiceBusMessage]:
        """The messages sent, optionally to one queue or topic."""
        return [s.message for s in self.sent if entity is None or s.entity == entity]


class FakeClient:
    """The part of ServiceBusClient the app uses."""

    def __init__(self, bus: RecordingServiceBus) -> None:
        self._bus = bus
        self.closed = False

    def get_topic_sender(self, topic_name: str, **_: Any) -> FakeSender:
        return self._sender(topic_name)

    def get_queue_sender(self, queue_name: str, **_: Any) -> FakeSender:
        return self._sender(queue_name)

    def _sender(self, entity: str) -> FakeSender:
        assert not self.closed, "sender requested from a closed client"
        with self._bus._lock:
            self._bus.senders_created += 1
        return FakeSender(self._bus, entity)

    def close(self) -> None:
        self.closed = True


class FakeSender:
    """Records sends; detects concurrent use, which the real ServiceBusSender does not support."""

    def __init__(self, bus: RecordingServiceBus, entity: str) -> None:
        self._bus = bus
        self._entity = entity
        self._in_use = threading.Lock()
        self.closed = False

    def send_messages(self, message: ServiceBusMessage | list[ServiceBusMessage], **_: Any) -> None:
        self._use(message, None)

    def schedule_messages(self, message: ServiceBusMessage, schedule_time_utc: datetime, **_: Any) -> list[int]:
        self._use(message, schedule_time_utc)
        return [len(self._bus.sent)]

    def _use(self, message: Any, when: datetime | None) -> None:
        assert not self.closed, "send on a closed sender"
        if not self._in_use.acquire(blocking=False):
            with self._bus._lock:
                self._bus.concurrent_use += 1
            self._in_use.acquire()
        try:
            with self._bus._lock:
                failure = self._bus.failures.pop(0) if self._bus.failures else None
            if failure is not None:
                raise failure
            if self._bus.send_delay:
                time.sleep(self._bus.send_delay)
            for one in message if isinstance(message, list) else [message]:
                assert isinstance(one, ServiceBusMessage), f"not a ServiceBusMessage: {type(one)!r}"
                with self._bus._lock:
                    self._bus.sent.append(Sent(self._entity, one, when))
        finally:
            self._in_use.release()

    def close(self) -> None:
        self.closed = True
